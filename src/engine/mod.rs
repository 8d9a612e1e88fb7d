//! The io engines: accept, receive, send and close on sockets, with either
//! io_uring (`uring/`) or readiness polling on mio/epoll (`epoll/`).
//!
//! An engine knows nothing of HTTP: it hands out connection ids, delivers
//! received bytes and reports when queued output has been written. Both
//! engines implement the same op set; `Engine` is an enum matched at each
//! call, not a trait object. Imports only `sys` and `log` of this crate.
//!
//! Layout: `uring/` and `epoll/` hold each engine's state, connection
//! slots and wait loop; `op/` holds one file per operation (accept, recv,
//! send, send_file, close, watch) with both engines' code side by side;
//! `slab.rs` is the connection table both use (slots with generations);
//! `state.rs` the sending side's states both share; `queue.rs` the output
//! queue both use; `token.rs` the tag layout shared by io_uring
//! `user_data` and mio tokens. `tests.rs` runs the contract against both
//! engines.
//!
//! Everything but this file's interface is private to the engine: the
//! worker sees `Engine`, its events and its ids, never an io_uring or
//! epoll type, and cannot submit work to the kernel but through `Engine`.
//!
//! Output queued with `send` is written during the next `wait`, so all the
//! responses queued for a connection between two waits leave in one
//! vectored write.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{OwnedFd, RawFd};
use std::time::Duration;

mod backoff;
mod epoll;
mod op;
mod queue;
mod slab;
mod state;
mod token;
mod uring;

pub use op::send_file::{dup_fd, PIECE as FILE_PIECE};
pub use queue::Bytes;

#[cfg(test)]
mod tests;

/// Which engine a worker runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineKind {
    Uring,
    Epoll,
}

/// A connection handed out by the engine. Ids are reused only after the
/// worker called `close` on the previous holder and the engine finished
/// closing it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u32);

impl ConnId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Index of a listener in the slice given to `Engine::new`.
pub type ListenerId = usize;

/// Something that happened, delivered by `Engine::wait`.
#[derive(Debug)]
pub enum Event<'a> {
    /// A new connection from `listener`. `peer` is `None` for unix sockets.
    Accepted {
        listener: ListenerId,
        conn: ConnId,
        peer: Option<SocketAddr>,
    },
    /// Bytes received on `conn` (valid only during the callback).
    Data { conn: ConnId, data: &'a [u8] },
    /// The buffer lent with `recv_into`, back with the bytes received into
    /// it appended (none when the connection ended first; `Eof` follows).
    Filled { conn: ConnId, buf: Vec<u8> },
    /// The peer closed its sending side (a read returned 0), or the
    /// connection failed (reset): no more `Data` will come.
    Eof { conn: ConnId },
    /// Everything queued with `send` on `conn` has been written.
    Sent { conn: ConnId },
    /// Writing failed (peer gone): the worker should `close` the connection.
    SendFailed { conn: ConnId, errno: i32 },
    /// One of the fds registered with `watch` became readable.
    Readable { fd: RawFd },
}

/// Sizes an engine is built with.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Upper bound on open connections (slab size hint).
    pub max_connections: usize,
}

/// A worker's io engine: io_uring or epoll, chosen once (`Engine::new`).
pub struct Engine(Inner);

// One engine per worker, built once and never moved on the hot path, so
// the size difference between the variants costs nothing.
#[allow(clippy::large_enum_variant)]
enum Inner {
    Uring(uring::UringEngine),
    Epoll(epoll::EpollEngine),
}

/// Why io_uring cannot be used here (for the start-up log).
#[derive(Clone, Debug)]
pub struct Unavailable(pub String);

/// Call the same method on whichever engine this is.
macro_rules! each {
    ($self:expr, $e:ident => $body:expr) => {
        match $self {
            Engine(Inner::Uring($e)) => $body,
            Engine(Inner::Epoll($e)) => $body,
        }
    };
}

impl Engine {
    /// Can io_uring be used in this process? `Err` says why not, e.g.
    /// "io_uring unavailable: EPERM (blocked by seccomp or kernel.io_uring_disabled)".
    pub fn probe_uring() -> Result<(), Unavailable> {
        uring::probe::probe()
    }

    /// Build an engine of `kind` serving `listeners` (non-blocking listening
    /// sockets the caller keeps open) and start accepting on all of them.
    pub fn new(kind: EngineKind, listeners: &[RawFd], config: &EngineConfig) -> io::Result<Engine> {
        Ok(Engine(match kind {
            EngineKind::Uring => Inner::Uring(uring::UringEngine::new(listeners, config)?),
            EngineKind::Epoll => Inner::Epoll(epoll::EpollEngine::new(listeners, config)?),
        }))
    }

    pub fn kind(&self) -> EngineKind {
        match self.0 {
            Inner::Uring(_) => EngineKind::Uring,
            Inner::Epoll(_) => EngineKind::Epoll,
        }
    }

    /// Report `Readable { fd }` whenever `fd` (a pipe or eventfd the caller
    /// drains itself) has data.
    pub fn watch(&mut self, fd: RawFd) -> io::Result<()> {
        each!(self, e => e.watch(fd))
    }

    /// Stop accepting new connections (graceful stop, connection cap).
    pub fn pause_accept(&mut self) {
        each!(self, e => e.pause_accept())
    }

    /// Stop accepting for good (graceful stop). Unlike `pause_accept`,
    /// connections the kernel already accepted for this engine are still
    /// delivered as `Accepted`, so their clients get an answer.
    pub fn close_accept(&mut self) {
        each!(self, e => e.close_accept())
    }

    /// After `close_accept`: no connection can reach this engine any more
    /// and every one it accepted was delivered.
    pub fn accept_closed(&self) -> bool {
        each!(self, e => e.accept_closed())
    }

    pub fn resume_accept(&mut self) {
        each!(self, e => e.resume_accept())
    }

    /// Stop delivering `Data` for `conn` until `resume_recv` (backpressure).
    /// Bytes (and an end of stream) that arrive meanwhile are kept and
    /// delivered after `resume_recv`.
    pub fn pause_recv(&mut self, conn: ConnId) {
        each!(self, e => e.pause_recv(conn.0))
    }

    pub fn resume_recv(&mut self, conn: ConnId) {
        each!(self, e => e.resume_recv(conn.0))
    }

    /// Receive the next bytes of `conn` into `buf`'s spare capacity, at
    /// most `max`, instead of through the engine's own buffers: one copy
    /// fewer for a large body. `Filled` hands `buf` back, after bytes that
    /// arrived before this call (as `Data`) and before any that follow it.
    /// Refused, with `buf` returned, while paused, after `Eof`, or with a
    /// loan already out.
    pub fn recv_into(&mut self, conn: ConnId, buf: Vec<u8>, max: usize) -> Result<(), Vec<u8>> {
        each!(self, e => e.recv_into(conn.0, buf, max))
    }

    /// `conn` sends large bodies: from now on receive it in pieces small
    /// enough that a body's bulk is still unread when its head has been
    /// parsed, so `recv_into` can take it. Costs one submission per receive
    /// on io_uring; nothing on epoll.
    pub fn recv_bounded(&mut self, conn: ConnId) {
        each!(self, e => e.recv_bounded(conn.0))
    }

    /// Queue `data` to be written on `conn` after anything queued before.
    /// `Sent` is reported once all queued data is written. The write itself
    /// happens in the next `wait`, together with everything else queued for
    /// the connection. Ignored after `shutdown_write` or `SendFailed`.
    /// Shared bytes (`Bytes::Shared`) are written from where they are; the
    /// engine drops their holder once they are written or the connection
    /// ends.
    pub fn send(&mut self, conn: ConnId, data: impl Into<Bytes>) {
        let data = data.into();
        each!(self, e => e.send(conn.0, data))
    }

    /// An empty buffer to build output in, from those the engine has
    /// written (`send`'s owned buffers come back here once written), or a
    /// new one: a kept-alive connection's responses then cost no allocation.
    pub fn buffer(&mut self) -> Vec<u8> {
        each!(self, e => e.spare.take())
    }

    /// Queue `len` bytes of `file` from `offset` to be written on `conn`
    /// after anything queued before and before anything queued after,
    /// without passing through user memory: sendfile (epoll) or splice
    /// through a pipe (io_uring), at most `FILE_PIECE` bytes per operation.
    /// The engine owns `file` (pass a `dup_fd`) and closes it once the range
    /// is written or the connection ends. `Sent` and `SendFailed` as for
    /// `send`; a file shorter than the range fails with EIO. Ignored (and
    /// `file` closed) after `shutdown_write` or `SendFailed`.
    pub fn send_file(&mut self, conn: ConnId, file: OwnedFd, offset: u64, len: u64) {
        each!(self, e => e.send_file(conn.0, file, offset, len))
    }

    /// Shut down the sending side once queued data is written (FIN), and
    /// keep delivering `Data`/`Eof`, so a response is not lost to a reset
    /// when the peer still had unread bytes in flight (RFC 9112 §9.6).
    pub fn shutdown_write(&mut self, conn: ConnId) {
        each!(self, e => e.shutdown_write(conn.0))
    }

    /// The socket of `conn`, for writing to it directly while nothing is
    /// queued for it here (the sync worker's WSGI `write()`, which blocks
    /// like gunicorn's). `None` once the connection is closed.
    pub fn raw_fd(&self, conn: ConnId) -> Option<RawFd> {
        each!(self, e => e.raw_fd(conn.0))
    }

    /// Close `conn` now; no event for it is delivered after this call.
    /// Output not yet written gets one best-effort attempt.
    pub fn close(&mut self, conn: ConnId) {
        each!(self, e => e.close(conn.0))
    }

    /// What the engine met and survived so far (for metrics).
    pub fn faults(&self) -> crate::sys::shm::EngineFaults {
        match &self.0 {
            Inner::Uring(e) => crate::sys::shm::EngineFaults {
                accept_rests: e.accept_backoff.rests,
                cq_overflows: e.cq_overflows,
                recv_no_buffers: e.recv_out_of_buffers,
            },
            Inner::Epoll(e) => crate::sys::shm::EngineFaults {
                accept_rests: e.accept_backoff.rests,
                ..Default::default()
            },
        }
    }

    /// The part of a turn that never sleeps: deliver what needs no wait
    /// for the kernel (on epoll: output written, bytes left unread by the
    /// last turn, late accepts). `true` when this turn is done and `wait`
    /// is not to be called; `false`: call `wait` next, which delivers the
    /// rest. A caller that releases a lock while it sleeps (the worker and
    /// the interpreter lock) keeps it across this call. io_uring enters
    /// the ring every turn, so this delivers nothing there.
    #[inline]
    pub fn deliver(&mut self, on_event: &mut dyn FnMut(Event<'_>)) -> bool {
        each!(self, e => e.deliver(on_event))
    }

    /// Submit queued work and wait up to `timeout` (forever if `None`) for
    /// at least one event; call `on_event` for each event ready. After a
    /// `deliver` that returned `false`, this completes the same turn.
    pub fn wait(
        &mut self,
        timeout: Option<Duration>,
        on_event: &mut dyn FnMut(Event<'_>),
    ) -> io::Result<()> {
        each!(self, e => e.wait(timeout, on_event))
    }
}
