//! The arbiter's listening sockets. With SO_REUSEPORT each worker slot has
//! its own socket, owned by the arbiter for its whole life, so a worker that
//! dies leaves its kernel accept queue to its replacement instead of
//! resetting it. Unix sockets are one socket shared by every worker.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use crate::config::{BindAddr, Config};
use crate::sys::socket;

pub struct Listener {
    pub bind: BindAddr,
    /// The bound address (the real port when 0 was asked for).
    pub local: Option<SocketAddr>,
    /// One socket per worker slot (SO_REUSEPORT), or one shared socket.
    fds: Vec<OwnedFd>,
    per_slot: bool,
    backlog: i32,
}

/// What a worker needs to know about one of its listening sockets.
#[derive(Clone, Debug)]
pub struct SlotListener {
    pub fd: RawFd,
    pub local: Option<SocketAddr>,
    pub unix_path: Option<String>,
}

impl Listener {
    pub fn bind_all(cfg: &Config) -> io::Result<Vec<Listener>> {
        let mut out = Vec::new();
        for bind in &cfg.binds {
            let listener = match bind {
                BindAddr::Tcp(addr) => {
                    let fds = socket::bind_tcp(*addr, cfg.backlog, cfg.reuse_port, cfg.workers)
                        .map_err(|e| {
                            io::Error::new(e.kind(), format!("cannot bind {bind}: {e}"))
                        })?;
                    let local = socket::local_addr(&fds[0]);
                    Listener {
                        bind: bind.clone(),
                        local,
                        fds,
                        per_slot: cfg.reuse_port,
                        backlog: cfg.backlog,
                    }
                }
                BindAddr::Unix(path) => {
                    let fd = socket::bind_unix(path, cfg.backlog).map_err(|e| {
                        io::Error::new(e.kind(), format!("cannot bind {bind}: {e}"))
                    })?;
                    Listener {
                        bind: bind.clone(),
                        local: None,
                        fds: vec![fd],
                        per_slot: false,
                        backlog: cfg.backlog,
                    }
                }
            };
            out.push(listener);
        }
        Ok(out)
    }

    /// The address users connect to, for the start-up log.
    pub fn display(&self) -> String {
        match (&self.bind, self.local) {
            (BindAddr::Tcp(_), Some(addr)) => format!("http://{addr}"),
            _ => self.bind.to_string(),
        }
    }

    /// The socket worker `slot` accepts on (binding another one when the
    /// number of workers grew past the sockets made at start).
    pub fn for_slot(&mut self, slot: usize) -> io::Result<SlotListener> {
        let fd = if self.per_slot {
            while self.fds.len() <= slot {
                let addr = self
                    .local
                    .ok_or_else(|| io::Error::other("listener has no address"))?;
                self.fds.push(socket::bind_tcp_another(addr, self.backlog)?);
            }
            self.fds[slot].as_raw_fd()
        } else {
            self.fds[0].as_raw_fd()
        };
        let unix_path = match &self.bind {
            BindAddr::Unix(p) => Some(p.clone()),
            BindAddr::Tcp(_) => None,
        };
        Ok(SlotListener {
            fd,
            local: self.local,
            unix_path,
        })
    }

    /// Remove the socket file of a unix listener (at exit).
    pub fn unlink(&self) {
        if let BindAddr::Unix(path) = &self.bind {
            let _ = std::fs::remove_file(path);
        }
    }
}
