//! Accepting connections, and pausing it — both engines.
//!
//! * io_uring: one multishot accept per listener. Pausing cancels it;
//!   connections the kernel accepted before the cancel landed are held and
//!   handed over on resume.
//! * epoll: each listener registered edge-triggered for reading; on an edge,
//!   `accept4` until EAGAIN. Pausing deregisters the listeners so a paused
//!   worker is not woken; re-registering on resume reports connections that
//!   queued meanwhile.
//!
//! Closing (`close_accept`, before the worker closes its copy of each
//! listener) first takes every connection already waiting in the listeners'
//! queues, on both engines: when the last copy of a listening socket closes
//! (a slot the arbiter gave up), the kernel resets every connection still
//! queued on it. On io_uring the accepts in flight are cancelled
//! synchronously first, so none is left to keep the socket open past the
//! worker's close.
//!
//! Both: accepted sockets are non-blocking and close-on-exec; TCP ones get
//! TCP_NODELAY, inherited from the listener (set once when the engine
//! starts), else set one by one. After a resource error (out of fds or memory) a listener
//! rests instead of spinning on the error (`engine::backoff`).

use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, types};

use crate::engine::epoll::EpollEngine;
use crate::engine::token::{self, Kind};
use crate::engine::uring::UringEngine;
use crate::engine::{ConnId, Event, ListenerId};
use crate::sys::transport;

/// Errors that concern one aborted connection only: keep accepting.
fn transient(errno: i32) -> bool {
    matches!(
        errno,
        libc::ECONNABORTED | libc::EINTR | libc::EAGAIN | libc::EPROTO | libc::EPERM
    )
}

/// Most connections taken from one listener's queue when accepting stops:
/// the kernel's default cap on a listen queue (`net.core.somaxconn`).
/// Connections keep arriving until the socket closes; this ends the loop.
const QUEUED_MAX: usize = 4096;

/// Accept, without waiting, the connections already queued on `listener`.
fn take_queued(listener: RawFd) -> Vec<(RawFd, Option<std::net::SocketAddr>)> {
    let mut out = Vec::new();
    while out.len() < QUEUED_MAX {
        match transport::accept(listener) {
            Ok(accepted) => out.push(accepted),
            Err(e)
                if e.raw_os_error()
                    .is_some_and(|n| n != libc::EAGAIN && transient(n)) => {}
            Err(_) => break,
        }
    }
    out
}

/// Shorten `timeout` so a wait wakes when the first resting listener may
/// try again.
fn until_retry(timeout: Option<Duration>, retry_at: Instant, now: Instant) -> Option<Duration> {
    let left = retry_at.saturating_duration_since(now);
    Some(timeout.map_or(left, |t| t.min(left)))
}

// ---------------------------------------------------------------- io_uring

impl UringEngine {
    pub(in crate::engine) fn arm_accept(&mut self, l: usize) {
        if self.accept_paused || self.is_stopping() || self.listeners[l].armed {
            return;
        }
        let listener = &mut self.listeners[l];
        listener.armed = true;
        listener.retry_at = None;
        let sqe = opcode::AcceptMulti::new(types::Fd(listener.fd))
            .flags(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC)
            .build()
            .user_data(token::encode(Kind::Accept, 0, l as u32));
        self.push(&sqe);
    }

    pub(in crate::engine) fn pause_accept(&mut self) {
        if self.accept_paused {
            return;
        }
        self.accept_paused = true;
        for l in 0..self.listeners.len() {
            if self.listeners[l].armed {
                self.cancel(token::encode(Kind::Accept, 0, l as u32));
            }
        }
    }

    /// Stop accepting for good; connections the kernel accepted before the
    /// cancel landed, and those still queued on the listeners, are
    /// delivered, so their clients get an answer.
    pub(in crate::engine) fn close_accept(&mut self) {
        if self.accept_closed {
            return;
        }
        self.cancel_accepts_now();
        self.pause_accept();
        self.accept_closed = true;
        for (l, fd) in self.held_accepts.drain(..) {
            self.pending
                .push(crate::engine::uring::Pending::Accept(l, fd));
        }
        for l in 0..self.listeners.len() {
            for (fd, _) in take_queued(self.listeners[l].fd) {
                self.pending
                    .push(crate::engine::uring::Pending::Accept(l, fd));
            }
        }
    }

    /// Cancel the armed accepts and wait for the kernel to have done so
    /// (IORING_REGISTER_SYNC_CANCEL, Linux 6.0): afterwards no accept in
    /// flight can take a connection or hold a listener open. Their final
    /// completions still come through the ring. On older kernels the
    /// asynchronous cancel of `pause_accept` does the work, at the next
    /// submission.
    fn cancel_accepts_now(&mut self) {
        // Only a submitted entry can be cancelled this way: an accept armed
        // since the last wait goes in first.
        let queued = self.ring.submission().len() as u32;
        if queued > 0 {
            let _ = crate::sys::uring::enter(self.ring_ref, queued, 0, None);
        }
        for l in 0..self.listeners.len() {
            if !self.listeners[l].armed {
                continue;
            }
            let tag = token::encode(Kind::Accept, 0, l as u32);
            // An error (an old kernel; the accept already ended) leaves it
            // to the asynchronous cancel `pause_accept` queues anyway, which
            // finds nothing left to cancel after this one.
            let _ = self
                .ring
                .submitter()
                .register_sync_cancel(None, types::CancelBuilder::user_data(tag));
        }
        // A cancelled request lets go of its file only once its completion
        // is posted, which a DEFER_TASKRUN ring does when it is next
        // entered to wait: enter it now (without waiting), or the listener
        // would stay open, queueing connections, until the worker's next
        // turn. The completions stay in the ring for that turn.
        let _ = crate::sys::uring::enter(self.ring_ref, 0, 0, Some(Duration::ZERO));
    }

    pub(in crate::engine) fn accept_closed(&self) -> bool {
        self.accept_closed
            && self.held_accepts.is_empty()
            && !self.listeners.iter().any(|l| l.armed)
            && !self
                .pending
                .iter()
                .any(|p| matches!(p, crate::engine::uring::Pending::Accept(..)))
    }

    pub(in crate::engine) fn resume_accept(&mut self) {
        if !self.accept_paused || self.accept_closed {
            return;
        }
        self.accept_paused = false;
        for (l, fd) in self.held_accepts.drain(..) {
            self.pending
                .push(crate::engine::uring::Pending::Accept(l, fd));
        }
        for l in 0..self.listeners.len() {
            if self.listeners[l].retry_at.is_none() {
                self.arm_accept(l);
            }
        }
    }

    pub(in crate::engine) fn on_accept(
        &mut self,
        l: usize,
        res: i32,
        flags: u32,
        on_event: &mut dyn FnMut(Event<'_>),
    ) {
        let Some(listener) = self.listeners.get_mut(l) else {
            return;
        };
        let more = cqueue::more(flags);
        if !more {
            listener.armed = false;
        }
        if res >= 0 {
            self.accept_backoff.succeeded();
            if self.is_stopping() || (self.accept_paused && !self.accept_closed) {
                self.held_accepts.push((l, res));
            } else {
                self.admit(l, res, on_event);
            }
        } else if -res != libc::ECANCELED && !transient(-res) {
            let err = std::io::Error::from_raw_os_error(-res);
            let at = self.accept_backoff.failed(&err, Instant::now());
            if !more {
                self.listeners[l].retry_at = Some(at);
            }
        }
        if !more && self.listeners[l].retry_at.is_none() {
            self.arm_accept(l);
        }
    }

    /// Set up an accepted `fd` as a connection and report it.
    pub(in crate::engine) fn admit(
        &mut self,
        l: ListenerId,
        fd: RawFd,
        on_event: &mut dyn FnMut(Event<'_>),
    ) {
        let listener = &self.listeners[l];
        let peer = if listener.unix {
            None
        } else {
            if listener.nodelay_each {
                let _ = transport::set_nodelay(fd);
            }
            transport::peer_addr(fd)
        };
        let id = self.alloc_conn(fd);
        self.arm_recv(id);
        on_event(Event::Accepted {
            listener: l,
            conn: ConnId(id),
            peer,
        });
    }

    /// Re-arm listeners whose rest is over; returns the wait's timeout,
    /// shortened to the next listener's retry time.
    pub(in crate::engine) fn rearm_backed_off(
        &mut self,
        mut timeout: Option<Duration>,
    ) -> Option<Duration> {
        let now = Instant::now();
        for l in 0..self.listeners.len() {
            if let Some(at) = self.listeners[l].retry_at {
                if at <= now {
                    self.listeners[l].retry_at = None;
                    self.arm_accept(l);
                } else {
                    timeout = until_retry(timeout, at, now);
                }
            }
        }
        timeout
    }
}

// ------------------------------------------------------------------ epoll

impl EpollEngine {
    /// Stop accepting for good, taking the connections still queued on the
    /// listeners; `wait` delivers them.
    pub(in crate::engine) fn close_accept(&mut self) {
        if self.accept_closed {
            // The worker may have closed the listeners since.
            return;
        }
        self.accept_closed = true;
        self.pause_accept();
        for l in 0..self.listeners.len() {
            for (fd, peer) in take_queued(self.listeners[l].fd) {
                if let Some(id) = self.admit(l, fd, peer) {
                    self.late_accepts.push((l, id, peer));
                }
            }
        }
    }

    /// Set up a socket accepted from listener `l` as a connection; `None`
    /// (the socket closed) when it cannot be watched.
    fn admit(&mut self, l: usize, fd: RawFd, peer: Option<std::net::SocketAddr>) -> Option<u32> {
        if peer.is_some() && self.listeners[l].nodelay_each {
            let _ = transport::set_nodelay(fd);
        }
        match self.alloc_conn(fd) {
            Ok(id) => Some(id),
            Err(e) => {
                error!("cannot watch an accepted connection: {e}");
                None
            }
        }
    }

    pub(in crate::engine) fn accept_closed(&self) -> bool {
        self.accept_closed && self.late_accepts.is_empty()
    }

    /// Report the connections `close_accept` took.
    pub(in crate::engine) fn deliver_late_accepts(
        &mut self,
        on_event: &mut dyn FnMut(Event<'_>),
    ) -> bool {
        if self.late_accepts.is_empty() {
            return false;
        }
        for (l, id, peer) in std::mem::take(&mut self.late_accepts) {
            on_event(Event::Accepted {
                listener: l,
                conn: ConnId(id),
                peer,
            });
        }
        true
    }

    pub(in crate::engine) fn pause_accept(&mut self) {
        if self.accept_paused {
            return;
        }
        self.accept_paused = true;
        for listener in &mut self.listeners {
            if listener.registered {
                let _ = self
                    .poll
                    .registry()
                    .deregister(&mut mio::unix::SourceFd(&listener.fd));
                listener.registered = false;
            }
        }
    }

    pub(in crate::engine) fn resume_accept(&mut self) {
        if !self.accept_paused || self.accept_closed {
            return;
        }
        self.accept_paused = false;
        for l in 0..self.listeners.len() {
            if let Err(e) = self.register_listener(l) {
                error!("cannot watch listener again: {e}");
            }
        }
    }

    /// A listener's readable edge: accept until EAGAIN.
    pub(in crate::engine) fn on_acceptable(
        &mut self,
        l: usize,
        on_event: &mut dyn FnMut(Event<'_>),
    ) -> bool {
        let mut delivered = false;
        while !self.accept_paused
            && l < self.listeners.len()
            && self.listeners[l].retry_at.is_none()
        {
            match transport::accept(self.listeners[l].fd) {
                Ok((fd, peer)) => {
                    self.accept_backoff.succeeded();
                    if let Some(id) = self.admit(l, fd, peer) {
                        on_event(Event::Accepted {
                            listener: l,
                            conn: ConnId(id),
                            peer,
                        });
                        delivered = true;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.raw_os_error().is_some_and(transient) => continue,
                Err(e) => {
                    let at = self.accept_backoff.failed(&e, Instant::now());
                    self.listeners[l].retry_at = Some(at);
                }
            }
        }
        delivered
    }

    /// A listener rests after an accept error (`retry_backed_off`).
    #[inline]
    pub(in crate::engine) fn backed_off(&self) -> bool {
        self.listeners.iter().any(|l| l.retry_at.is_some())
    }

    /// Let listeners whose rest is over accept again; returns the wait's
    /// timeout, shortened to the next retry time, and whether any event
    /// was delivered.
    pub(in crate::engine) fn retry_backed_off(
        &mut self,
        mut timeout: Option<Duration>,
        on_event: &mut dyn FnMut(Event<'_>),
    ) -> (Option<Duration>, bool) {
        // No clock read on a turn with no listener resting (nearly all).
        if !self.backed_off() {
            return (timeout, false);
        }
        let now = Instant::now();
        let mut delivered = false;
        for l in 0..self.listeners.len() {
            if let Some(at) = self.listeners[l].retry_at {
                if at <= now {
                    self.listeners[l].retry_at = None;
                    delivered |= self.on_acceptable(l, on_event);
                } else {
                    timeout = until_retry(timeout, at, now);
                }
            }
        }
        (timeout, delivered)
    }
}
