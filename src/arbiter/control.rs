//! The master's side of the control socket (`ferrocorn ctl`, `gunicornc`):
//! a non-blocking unix listener and clients watched by the master's own
//! poll, like the metrics endpoint, so no client can stall the loop. Each
//! command becomes what its signal does (reload = HUP, reopen = USR1,
//! shutdown = TERM or INT, worker add/remove = TTIN/TTOU by N) or a read of
//! the master's state.
//!
//! Only the server's own user and root are answered (SO_PEERCRED), whatever
//! the file mode. A message must arrive whole, and its reply be taken,
//! within `MESSAGE_DEADLINE`; a connection may idle `IDLE_TIMEOUT` between
//! messages (gunicornc's interactive mode keeps one open).

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use pyo3::prelude::*;
use serde_json::Value;

use crate::config::{self, BindAddr};
use crate::control::{reply, request, Command, Decoder, FrameError, Target, MAX_MESSAGE};
use crate::sys::process;
use crate::sys::shm;
use crate::sys::signal::Interest;
use crate::sys::socket::peer_uid;

use super::Arbiter;

/// From a message's first byte to its reply's last: a client that starts a
/// message and stops (or does not read the reply) is dropped after this.
const MESSAGE_DEADLINE: Duration = Duration::from_secs(5);
/// How long a connection may wait between messages (gunicorn's idle timeout).
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Connections kept at once; a new one then replaces the longest idle one.
const MAX_CLIENTS: usize = 16;
/// `worker add` never takes the target past the `workers` setting's own bound.
const MAX_WORKERS: usize = 4096;

struct Client {
    stream: UnixStream,
    decoder: Decoder,
    /// Replies not yet written, and how much of them is.
    out: Vec<u8>,
    written: usize,
    deadline: Instant,
    /// Close once `out` is written (the client hung up, or sent what cannot be read).
    closing: bool,
    /// Not allowed to control the server: its first message gets this error.
    refused: Option<String>,
}

pub struct Server {
    listener: UnixListener,
    path: PathBuf,
    /// The socket file this master made (device, inode): removed at exit
    /// only while it is still that file, not one a newer master put there.
    file: (u64, u64),
    clients: Vec<Client>,
    started: Instant,
    /// The master's effective user id: its clients must be this user or root.
    owner: u32,
}

impl Server {
    /// Bind `path` (relative to the current directory), creating its
    /// directory (0700) when missing. A socket file already there is taken
    /// over, as gunicorn does: the newest master (a USR2 upgrade's, or a
    /// second server given the same path) answers at the path. A file there
    /// that is not a socket is an error, never removed.
    pub fn open(path: &Path, mode: u32) -> io::Result<Server> {
        let path = std::env::current_dir()?.join(path);
        if let Some(dir) = path.parent() {
            if !dir.exists() {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)?;
            }
        }
        match fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_socket() => {
                crate::debug!(
                    "Control socket {}: replacing the socket file there",
                    path.display()
                );
                fs::remove_file(&path)?;
            }
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "a file that is not a socket is in the way",
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let listener = UnixListener::bind(&path)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))?;
        listener.set_nonblocking(true)?;
        let m = fs::symlink_metadata(&path)?;
        Ok(Server {
            listener,
            path,
            file: (m.dev(), m.ino()),
            clients: Vec::new(),
            started: Instant::now(),
            owner: nix::unistd::geteuid().as_raw(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Remove the socket file if it is still the one this master made.
    pub fn remove(&self) {
        if let Ok(m) = fs::symlink_metadata(&self.path) {
            if (m.dev(), m.ino()) == self.file {
                let _ = fs::remove_file(&self.path);
            }
        }
    }

    fn interests(&self, out: &mut Vec<Interest>) {
        use std::os::fd::AsRawFd;
        out.push(Interest::read(self.listener.as_raw_fd()));
        for c in &self.clients {
            let fd = c.stream.as_raw_fd();
            out.push(if c.written < c.out.len() {
                Interest::write(fd)
            } else {
                Interest::read(fd)
            });
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.clients.iter().map(|c| c.deadline).min()
    }

    /// Accept, read, answer and drop clients as far as possible without
    /// waiting; `run` carries out one command and gives its reply's data.
    fn turn(&mut self, now: Instant, run: &mut dyn FnMut(Command) -> Value) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => self.admit(stream, now),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        self.clients
            .retain_mut(|c| now < c.deadline && c.step(now, run).is_ok_and(|open| open));
    }

    fn admit(&mut self, stream: UnixStream, now: Instant) {
        if stream.set_nonblocking(true).is_err() {
            return;
        }
        // A refused client is answered, not cut off: its message gets the
        // reason (and nothing runs), so a client says why it failed.
        let refused = match peer_uid(&stream) {
            Ok(uid) if uid == self.owner || uid == 0 => None,
            Ok(uid) => {
                crate::warn!(
                    "Control socket: refused a client running as uid {uid} (only uid {} and root \
                     may control this server)",
                    self.owner
                );
                Some(format!(
                    "Permission denied: uid {uid} may not control this server (only uid {} and \
                     root)",
                    self.owner
                ))
            }
            Err(e) => {
                crate::warn!("Control socket: cannot read a client's credentials: {e}");
                return;
            }
        };
        if self.clients.len() >= MAX_CLIENTS {
            // Make room by dropping the connection idle the longest.
            let idle = self
                .clients
                .iter()
                .enumerate()
                .filter(|(_, c)| !c.decoder.in_progress() && c.written >= c.out.len())
                .min_by_key(|(_, c)| c.deadline)
                .map(|(i, _)| i);
            match idle {
                Some(i) => {
                    self.clients.swap_remove(i);
                }
                None => return, // every one is mid-message: this one is closed
            }
        }
        self.clients.push(Client {
            stream,
            decoder: Decoder::new(MAX_MESSAGE),
            out: Vec::new(),
            written: 0,
            // A refused client gets a message's time, not an idle one's.
            deadline: now
                + if refused.is_some() {
                    MESSAGE_DEADLINE
                } else {
                    IDLE_TIMEOUT
                },
            closing: false,
            refused,
        });
    }
}

impl Client {
    /// Write pending replies, answer every whole message received, read
    /// what is there, until the socket would block. `Ok(false)`: done with
    /// this client. Nothing is read while a reply waits, so a client that
    /// sends and never reads cannot make the master buffer without bound.
    fn step(&mut self, now: Instant, run: &mut dyn FnMut(Command) -> Value) -> io::Result<bool> {
        let mut chunk = [0u8; 4096];
        loop {
            while self.written < self.out.len() {
                match self.stream.write(&self.out[self.written..]) {
                    Ok(0) => return Ok(false),
                    Ok(n) => self.written += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            self.out.clear();
            self.written = 0;
            if self.closing {
                return Ok(false);
            }
            self.answer(run);
            if !self.out.is_empty() {
                continue;
            }
            let want = self.decoder.wanted().clamp(1, chunk.len());
            match self.stream.read(&mut chunk[..want]) {
                Ok(0) => self.closing = true,
                Ok(n) => {
                    if !self.decoder.in_progress() {
                        self.deadline = now + MESSAGE_DEADLINE;
                    }
                    self.decoder.push(&chunk[..n]);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if !self.decoder.in_progress() && self.refused.is_none() {
            self.deadline = now + IDLE_TIMEOUT;
        }
        Ok(true)
    }

    /// Queue the replies to the whole messages received. A message too
    /// large to read ends the connection after its error reply: where the
    /// next message would start is unknown.
    fn answer(&mut self, run: &mut dyn FnMut(Command) -> Value) {
        while let Some(message) = self.decoder.next_message() {
            if let Some(why) = &self.refused {
                let id = message
                    .ok()
                    .and_then(|p| request::parse(&p).ok())
                    .map_or(Value::from(0), |r| r.id);
                self.out.extend(reply::error(&id, why));
                self.closing = true;
                return;
            }
            match message {
                Ok(payload) => match request::parse(&payload) {
                    Ok(req) => {
                        let data = run(req.command);
                        self.out.extend(reply::ok(&req.id, data));
                    }
                    Err(rejected) => {
                        self.out
                            .extend(reply::error(&rejected.id, &rejected.message));
                    }
                },
                Err(e @ FrameError::TooLarge { .. }) => {
                    self.out.extend(reply::error(
                        &Value::from(0),
                        &format!("Invalid request: {e}"),
                    ));
                    self.closing = true;
                    return;
                }
            }
        }
    }
}

impl Arbiter {
    /// Open the control socket unless it is turned off. A failure is a
    /// warning, as in gunicorn: the server runs without it.
    pub(super) fn open_control(&mut self) {
        let Some(path) = self.cfg.control_socket.clone() else {
            return;
        };
        match Server::open(&path, self.cfg.control_socket_mode) {
            Ok(s) => {
                crate::info!("Control socket listening at {}", s.path().display());
                self.control = Some(s);
            }
            Err(e) => crate::warn!(
                "Cannot open the control socket {}: {e}; ferrocorn ctl and gunicornc cannot \
                 reach this server",
                path.display()
            ),
        }
    }

    /// Close the control socket and remove its file (the server is stopping).
    pub(super) fn close_control(&mut self) {
        if let Some(s) = self.control.take() {
            s.remove();
        }
    }

    /// Add the control socket's descriptors to `watch`; returns `ms`
    /// shortened to the nearest client deadline.
    pub(super) fn control_interests(&self, watch: &mut Vec<Interest>, ms: u16) -> u16 {
        let Some(s) = &self.control else { return ms };
        s.interests(watch);
        match s.next_deadline() {
            Some(t) => {
                let left = t.saturating_duration_since(Instant::now()).as_millis();
                ms.min(u16::try_from(left).unwrap_or(u16::MAX).saturating_add(1))
            }
            None => ms,
        }
    }

    /// Answer whatever control clients can be answered now.
    pub(super) fn serve_control(&mut self, py: Python<'_>) {
        let Some(mut s) = self.control.take() else {
            return;
        };
        let started = s.started;
        let path = s.path.clone();
        s.turn(Instant::now(), &mut |command| {
            self.control_command(py, command, started, &path)
        });
        self.control = Some(s);
    }

    fn control_command(
        &mut self,
        py: Python<'_>,
        command: Command,
        started: Instant,
        path: &Path,
    ) -> Value {
        let me = nix::unistd::getpid();
        match command {
            Command::Show(Target::Workers) => reply::workers(&self.worker_views()),
            Command::Show(Target::All) => reply::all(std::process::id(), &self.worker_views()),
            Command::Show(Target::Stats) => reply::stats(&reply::Stats {
                uptime: started.elapsed().as_secs_f64(),
                pid: std::process::id(),
                workers_current: self.children.len(),
                workers_target: self.num_workers,
                workers_spawned: self.spawned,
                workers_killed: self.workers_killed,
                reloads: self.reloads,
            }),
            Command::Show(Target::Listeners) => reply::listeners(&self.listener_views()),
            Command::Show(Target::Config) => reply::config(self.config_pairs(path)),
            Command::Show(Target::Dirty) => reply::dirty(),
            Command::DirtyAdd(_) | Command::DirtyRemove(_) => reply::dirty_change(),
            Command::WorkerAdd(n) => {
                let old = self.num_workers;
                let total = (old + n as usize).min(MAX_WORKERS);
                crate::info!("Control socket: worker add {n}");
                self.set_workers(py, total);
                reply::added(total - old, old, total)
            }
            Command::WorkerRemove(n) => {
                let old = self.num_workers;
                // Never below one, as TTOU; with no workers at all (WINCH) nothing to remove.
                let total = if old == 0 {
                    0
                } else {
                    old.saturating_sub(n as usize).max(1)
                };
                crate::info!("Control socket: worker remove {n}");
                self.set_workers(py, total);
                reply::removed(old - total, old, total)
            }
            Command::WorkerKill(pid) => {
                let pid = nix::unistd::Pid::from_raw(pid);
                match self
                    .children
                    .iter()
                    .find(|c| c.pid == pid)
                    .map(|c| c.retiring)
                {
                    Some(retiring) => {
                        crate::info!("Control socket: stopping worker (pid:{pid})");
                        if !retiring {
                            self.retire(pid);
                        }
                        reply::killed(pid.as_raw())
                    }
                    None => reply::not_killed(pid.as_raw()),
                }
            }
            Command::Reload => {
                process::send_signal(me, Signal::SIGHUP);
                reply::reloading()
            }
            Command::Reopen => {
                process::send_signal(me, Signal::SIGUSR1);
                reply::reopening()
            }
            Command::Shutdown(mode) => {
                let sig = match mode {
                    request::Mode::Graceful => Signal::SIGTERM,
                    request::Mode::Quick => Signal::SIGINT,
                };
                process::send_signal(me, sig);
                reply::shutting_down(mode)
            }
            Command::Help => reply::help(),
        }
    }

    fn worker_views(&self) -> Vec<reply::WorkerView> {
        use std::sync::atomic::Ordering::Acquire;
        let now_ms = shm::monotonic_ms();
        // Workers count their responses only when something reports them.
        let counted = self.cfg.metrics_bind.is_some() || self.cfg.log.statsd.is_some();
        self.children
            .iter()
            .map(|c| {
                let status = self.status(c);
                reply::WorkerView {
                    pid: c.pid.as_raw(),
                    age: c.age,
                    slot: c.slot,
                    booted: status.is_some_and(|s| s.is_ready()),
                    aborted: c.aborted.is_some(),
                    last_heartbeat: status.map(|s| {
                        let ms = now_ms.saturating_sub(s.loop_ms.load(Acquire));
                        (ms as f64 / 10.0).round() / 100.0
                    }),
                    requests: status.filter(|_| counted).map(|s| s.counters().responses()),
                }
            })
            .collect()
    }

    fn listener_views(&self) -> Vec<reply::ListenerView> {
        use std::os::fd::AsRawFd;
        self.listeners
            .iter()
            .map(|l| reply::ListenerView {
                address: l.display(),
                fd: l.sockets().next().map_or(-1, |fd| fd.as_raw_fd()),
                kind: match (&l.bind, l.local) {
                    (BindAddr::Unix(_), _) => "unix",
                    (_, Some(a)) if a.is_ipv6() => "tcp6",
                    (_, Some(_)) => "tcp",
                    (BindAddr::Tcp(a), None) if a.is_ipv6() => "tcp6",
                    (BindAddr::Tcp(_), None) => "tcp",
                    (BindAddr::Fd(_), None) => "fd",
                },
            })
            .collect()
    }

    /// The settings gunicorn's `show config` reports, as this master runs them.
    fn config_pairs(&self, path: &Path) -> Vec<(String, Value)> {
        let mut pairs = Vec::new();
        for &key in reply::CONFIG_KEYS {
            if config::settings::find(key).is_none() {
                continue;
            }
            let value = match key {
                "workers" => Value::from(self.cfg.workers),
                "control_socket" => Value::from(path.to_string_lossy().into_owned()),
                // A name from the list above, found in the table just now.
                _ => json_value(self.cfg.settings.get(config::Id::named(key))),
            };
            pairs.push((key.to_string(), value));
        }
        pairs
    }
}

fn json_value(v: &config::Value) -> Value {
    use config::Value as V;
    match v {
        V::None => Value::Null,
        V::Bool(b) => Value::from(*b),
        V::Int(n) => Value::from(*n),
        V::Str(s) | V::Hook(s) => Value::from(s.clone()),
        V::List(l) => Value::from(l.clone()),
        V::Dict(d) => Value::Object(
            d.iter()
                .map(|(k, v)| (k.clone(), Value::from(v.clone())))
                .collect(),
        ),
        V::Json(text) => serde_json::from_str(text).unwrap_or_else(|_| Value::from(text.clone())),
    }
}
