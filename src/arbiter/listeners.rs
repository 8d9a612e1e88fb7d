//! The arbiter's listening sockets. With SO_REUSEPORT each worker slot has
//! its own socket, owned by the arbiter for its whole life, so a worker that
//! dies leaves its kernel accept queue to its replacement instead of
//! resetting it. Unix sockets, `fd://N` and sockets from systemd are one
//! socket shared by every worker.
//!
//! Sockets survive a binary upgrade (USR2): the new arbiter finds them in
//! `FERROCORN_FDS` (`fd,fd,...@bind;...`), or in systemd's `LISTEN_FDS`.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use crate::config::{BindAddr, Config};
use crate::sys::socket::{self, SlotListener};

/// The environment variable that hands listeners to a new arbiter (USR2).
pub const FDS_ENV: &str = "FERROCORN_FDS";
/// systemd passes sockets from this descriptor on (`SD_LISTEN_FDS_START`).
const SD_LISTEN_FDS_START: RawFd = 3;

pub struct Listener {
    pub bind: BindAddr,
    /// The bound address (the real port when 0 was asked for).
    pub local: Option<SocketAddr>,
    /// One socket per worker slot (SO_REUSEPORT), or one shared socket.
    fds: Vec<OwnedFd>,
    per_slot: bool,
    backlog: i32,
    /// The socket file is ours to remove at exit (we created it here).
    unlink_at_exit: bool,
}

impl Listener {
    /// The listeners to serve: inherited from an upgrading arbiter, from
    /// systemd, or bound now from `--bind`.
    pub fn open_all(cfg: &Config) -> io::Result<Vec<Listener>> {
        if let Ok(spec) = std::env::var(FDS_ENV) {
            std::env::remove_var(FDS_ENV);
            return Self::inherit(&spec, cfg);
        }
        if let Some(n) = systemd_fds() {
            return (0..n)
                .map(|i| Self::adopt(SD_LISTEN_FDS_START + i, cfg.backlog, false))
                .collect();
        }
        cfg.binds.iter().map(|b| Self::bind(b, cfg)).collect()
    }

    fn bind(bind: &BindAddr, cfg: &Config) -> io::Result<Listener> {
        let with_context =
            |e: io::Error| io::Error::new(e.kind(), format!("cannot bind {bind}: {e}"));
        match bind {
            BindAddr::Tcp(addr) => {
                let fds = socket::bind_tcp(*addr, cfg.backlog, cfg.reuse_port, cfg.workers)
                    .map_err(with_context)?;
                let local = socket::local_addr(&fds[0]);
                Ok(Listener {
                    bind: bind.clone(),
                    local,
                    fds,
                    per_slot: cfg.reuse_port,
                    backlog: cfg.backlog,
                    unlink_at_exit: false,
                })
            }
            BindAddr::Unix(path) => {
                let old =
                    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(cfg.umask));
                let fd = socket::bind_unix(path, cfg.backlog);
                nix::sys::stat::umask(old);
                let fd = fd.map_err(with_context)?;
                if cfg.user.is_some() || cfg.group.is_some() {
                    let uid = cfg
                        .user
                        .as_ref()
                        .map(|(u, _)| nix::unistd::Uid::from_raw(*u));
                    let gid = cfg.group.map(nix::unistd::Gid::from_raw);
                    nix::unistd::chown(path.as_str(), uid, gid)
                        .map_err(|e| with_context(e.into()))?;
                }
                Ok(Listener {
                    bind: bind.clone(),
                    local: None,
                    fds: vec![fd],
                    per_slot: false,
                    backlog: cfg.backlog,
                    unlink_at_exit: true,
                })
            }
            BindAddr::Fd(fd) => Self::adopt(*fd, cfg.backlog, false),
        }
    }

    /// Take over an open listening socket (fd://N, systemd).
    fn adopt(fd: RawFd, backlog: i32, unlink_at_exit: bool) -> io::Result<Listener> {
        // SAFETY: an fd://N bind or systemd's LISTEN_FDS names a descriptor
        // the server was started with to listen on; nothing else in the
        // process uses it.
        #[allow(unsafe_code)]
        let adopted = unsafe { socket::adopt_listener(fd, backlog) };
        let owned = adopted.map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("fd://{fd} is not a usable listening socket: {e}"),
            )
        })?;
        let (bind, local) = describe(&owned);
        Ok(Listener {
            bind,
            local,
            fds: vec![owned],
            per_slot: false,
            backlog,
            unlink_at_exit,
        })
    }

    fn inherit(spec: &str, cfg: &Config) -> io::Result<Vec<Listener>> {
        let mut out = Vec::new();
        for entry in spec.split(';').filter(|e| !e.is_empty()) {
            let (fds, _) = entry.split_once('@').unwrap_or((entry, ""));
            let mut owned = Vec::new();
            for fd in fds.split(',') {
                let fd: RawFd = fd
                    .parse()
                    .map_err(|_| io::Error::other(format!("{FDS_ENV}: bad descriptor {fd:?}")))?;
                // SAFETY: the listeners the previous arbiter or systemd passed
                // (FERROCORN_FDS, LISTEN_FDS) are this process's alone, each
                // named once.
                #[allow(unsafe_code)]
                let adopted = unsafe { socket::adopt_listener(fd, cfg.backlog) };
                owned.push(adopted?);
            }
            let Some(first) = owned.first() else { continue };
            let (bind, local) = describe(first);
            let per_slot = owned.len() > 1 || (matches!(bind, BindAddr::Tcp(_)) && cfg.reuse_port);
            // The socket file belongs to the arbiter that created it; after
            // an upgrade the new one removes it when it exits for good.
            let unlink_at_exit = matches!(bind, BindAddr::Unix(_));
            out.push(Listener {
                bind,
                local,
                fds: owned,
                per_slot,
                backlog: cfg.backlog,
                unlink_at_exit,
            });
        }
        Ok(out)
    }

    /// `FERROCORN_FDS` for a new arbiter, describing these listeners.
    pub fn handover_spec(listeners: &[Listener]) -> String {
        listeners
            .iter()
            .map(|l| {
                let fds: Vec<String> = l.fds.iter().map(|f| f.as_raw_fd().to_string()).collect();
                format!("{}@{}", fds.join(","), l.bind)
            })
            .collect::<Vec<_>>()
            .join(";")
    }

    /// Every socket of this listener (to keep open across exec).
    pub fn sockets(&self) -> impl Iterator<Item = BorrowedFd<'_>> {
        self.fds.iter().map(|f| f.as_fd())
    }

    /// The address users connect to, for the start-up log.
    pub fn display(&self) -> String {
        match (&self.bind, self.local) {
            (BindAddr::Tcp(_), Some(addr)) => format!("http://{addr}"),
            _ => self.bind.to_string(),
        }
    }

    /// The socket worker `slot` accepts on (binding another one when the
    /// number of workers grew past the sockets made at start), as a
    /// descriptor of the worker's own.
    pub fn for_slot(&mut self, slot: usize) -> io::Result<SlotListener> {
        let fd = if self.per_slot {
            while self.fds.len() <= slot {
                let addr = self
                    .local
                    .ok_or_else(|| io::Error::other("listener has no address"))?;
                self.fds.push(socket::bind_tcp_another(addr, self.backlog)?);
            }
            self.fds[slot].try_clone()?
        } else {
            self.fds[0].try_clone()?
        };
        let unix_path = match &self.bind {
            BindAddr::Unix(p) => Some(p.clone()),
            _ => None,
        };
        Ok(SlotListener {
            fd,
            local: self.local,
            unix_path,
        })
    }

    /// Let go of the per-slot sockets of slots `slots..` (the number of
    /// workers went down). Each socket closes for good when its last worker
    /// lets go of it too.
    pub fn release_slots_from(&mut self, slots: usize) {
        if self.per_slot && slots > 0 && self.fds.len() > slots {
            self.fds.truncate(slots);
        }
    }

    /// Let go of every socket (the arbiter is stopping); the workers keep
    /// their own copies until they stop accepting.
    pub fn close_fds(&mut self) {
        self.fds.clear();
    }

    /// Remove the socket file of a unix listener this arbiter created.
    pub fn unlink(&self) {
        if let (true, BindAddr::Unix(path)) = (self.unlink_at_exit, &self.bind) {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// What kind of socket `fd` is, for logs and the environ.
fn describe(fd: &OwnedFd) -> (BindAddr, Option<SocketAddr>) {
    match socket::local_addr(fd) {
        Some(addr) => (BindAddr::Tcp(addr), Some(addr)),
        None => match socket::unix_path(fd) {
            Some(path) => (BindAddr::Unix(path), None),
            None => (BindAddr::Fd(fd.as_raw_fd()), None),
        },
    }
}

/// `LISTEN_FDS` when systemd passed sockets to this very process.
fn systemd_fds() -> Option<i32> {
    let pid: u32 = std::env::var("LISTEN_PID").ok()?.parse().ok()?;
    if pid != std::process::id() {
        return None;
    }
    let n: i32 = std::env::var("LISTEN_FDS").ok()?.parse().ok()?;
    std::env::remove_var("LISTEN_PID");
    std::env::remove_var("LISTEN_FDS");
    (n > 0).then_some(n)
}
