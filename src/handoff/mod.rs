//! Hand-off between a worker's loop thread and the threads that run the
//! app: the `--threads` pool (WSGI) or the asyncio loop (ASGI).
//!
//! The loop thread keeps all I/O. It turns a complete request into a `Job`
//! and hands it to the app side; the app side answers with `Output`
//! messages posted to the worker's `Mailbox`, whose eventfd the engine
//! watches, so the loop wakes without polling. Each job carries a `Flow`:
//! the app side counts the body bytes it hands over and waits (a blocked
//! thread, or an asyncio future) while too many are unwritten; the loop
//! counts them down as the engine writes them, and marks the flow gone
//! when the client leaves, so the app side stops producing and runs the
//! iterable's `close()` promptly.
//!
//! Pure Rust: no Python, no engine. Imports only `http` (the request, the
//! connection facts and the response head every bridge shares).

#![forbid(unsafe_code)]

use std::collections::VecDeque;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

use nix::sys::eventfd::{EfdFlags, EventFd};

use crate::http::{ConnInfo, Request};

/// The app side waits while this many body bytes it handed over are not
/// yet written to the client (the same mark the loop uses for inline apps).
pub const HIGH_WATER: usize = 64 * 1024;

/// Which request a message belongs to: the connection slot and a serial
/// number unique within the worker, so a message for a connection that
/// closed (and whose slot was reused) is recognised and dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ticket {
    pub conn: u32,
    pub serial: u64,
}

/// A complete request handed to the app side.
pub struct Job {
    pub ticket: Ticket,
    pub req: Request,
    pub conn: ConnInfo,
    pub flow: std::sync::Arc<Flow>,
    /// When the request's first byte arrived (for `--max-queue-wait-ms`).
    pub arrived: Instant,
    /// The loop will close the connection after this response (graceful
    /// stop or keep-alive off): the app side may say `Connection: close`.
    pub closing: bool,
    /// A valid WebSocket upgrade: the subprotocols the client offered.
    pub websocket: Option<Vec<String>>,
}

/// A WebSocket message, either way.
#[derive(Debug, PartialEq, Eq)]
pub enum Message {
    Text(String),
    Binary(Vec<u8>),
}

impl Message {
    pub fn len(&self) -> usize {
        match self {
            Message::Text(t) => t.len(),
            Message::Binary(b) => b.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What the loop hands the app side of a WebSocket, or of a request whose
/// body streams (ASGI), in order.
#[derive(Debug, PartialEq, Eq)]
pub enum Inbound {
    Message(Message),
    /// The connection is closed, with the code the app sees
    /// (`websocket.disconnect`).
    Closed {
        code: u16,
        reason: String,
    },
    /// HTTP: the next piece of the request body.
    Body(Vec<u8>),
    /// HTTP: the request body is complete.
    BodyEnd,
    /// HTTP: the body will not be complete (the client left, went silent,
    /// or broke its framing): the app's `receive()` gives `http.disconnect`.
    BodyLost,
}

impl Inbound {
    /// The bytes it holds, for the queue's bound.
    fn len(&self) -> usize {
        match self {
            Inbound::Message(m) => m.len(),
            Inbound::Body(b) => b.len(),
            Inbound::Closed { .. } | Inbound::BodyEnd | Inbound::BodyLost => 0,
        }
    }
}

/// The loop stops reading a WebSocket while this many bytes, or
/// `INBOUND_MAX_MESSAGES` messages, wait for the app to take them.
pub const INBOUND_HIGH_WATER: usize = 64 * 1024;
pub const INBOUND_MAX_MESSAGES: usize = 64;
/// A request body streams through the same queue, whose bound is then
/// four of its 64 KiB pieces: the app takes one while the loop reads the
/// next, and a request holds at most this much of its body in the queue.
pub const BODY_HIGH_WATER: usize = 4 * 64 * 1024;

/// What the app side says about one request, in order: `Head`, any number
/// of `Data`, `Trailers` at most once, then `End`; or `Failed` at any point.
#[derive(Debug)]
pub enum Output {
    /// The status line and headers (validated), and the body length when
    /// the app declared it.
    Head {
        status: crate::http::Status,
        headers: crate::http::HeaderList,
        known_len: Option<u64>,
    },
    /// Body bytes (already counted on the job's `Flow`).
    Data(Vec<u8>),
    /// `wsgi.early_hints`: validated headers for a `103 Early Hints`, sent
    /// if the head has not been and the client speaks HTTP/1.1.
    EarlyHints(Vec<(Vec<u8>, Vec<u8>)>),
    /// ASGI `http.response.trailers` (validated, none forbidden in a
    /// trailer section), posted just before `End`, and only when the
    /// client can take them (HTTP/2, or HTTP/1.1 with `TE: trailers`).
    Trailers(Vec<(Vec<u8>, Vec<u8>)>),
    /// The body is complete.
    End,
    /// WebSocket: accept the upgrade (the 101), with the chosen
    /// subprotocol (one the client offered) and extra headers (validated).
    Accept {
        subprotocol: Option<String>,
        headers: crate::http::HeaderList,
    },
    /// WebSocket: a message (counted on the job's `Flow`).
    Message(Message),
    /// WebSocket: start the close handshake.
    Close { code: u16, reason: String },
    /// WebSocket: the app took messages; the loop may read again.
    Resume,
    /// WebSocket: the app's `receive()` took its `websocket.disconnect`,
    /// so what it sent before is ahead of this. A connection the peer
    /// broke waits for it to send its close after the app's answers.
    DisconnectTaken,
    /// The app failed. Before `Head`: answer 500. After: close the
    /// connection (the response cannot be completed).
    Failed,
}

/// Messages from the app side to the loop, with an eventfd that wakes it.
pub struct Mailbox {
    queue: Mutex<Vec<(Ticket, Output)>>,
    wake: Waker,
}

impl Mailbox {
    pub fn new() -> std::io::Result<Mailbox> {
        Ok(Mailbox {
            queue: Mutex::new(Vec::new()),
            wake: Waker::new()?,
        })
    }

    /// The descriptor the engine watches.
    pub fn fd(&self) -> RawFd {
        self.wake.fd()
    }

    /// Post one message; wakes the loop when the queue was empty.
    pub fn post(&self, ticket: Ticket, out: Output) {
        let mut q = lock(&self.queue);
        let was_empty = q.is_empty();
        q.push((ticket, out));
        drop(q);
        if was_empty {
            self.wake.wake();
        }
    }

    /// Take every message posted so far (loop thread), in order.
    pub fn drain(&self, into: &mut Vec<(Ticket, Output)>) {
        // Reset the counter before taking the queue: a post that lands in
        // between is either taken now or writes the eventfd again.
        self.wake.clear();
        let mut q = lock(&self.queue);
        if into.is_empty() {
            std::mem::swap(&mut *q, into);
        } else {
            into.append(&mut q);
        }
    }
}

/// Flow control and client liveness for one request in flight.
pub struct Flow {
    inner: Mutex<FlowInner>,
    changed: Condvar,
}

#[derive(Default)]
struct FlowInner {
    /// Body bytes handed over and not yet written.
    unwritten: usize,
    /// The connection is closed: nothing more will be written.
    gone: bool,
    /// The client closed its sending side (it may still read).
    hangup: bool,
    /// Called once when there is room again or the client is gone.
    on_room: Option<Box<dyn FnOnce() + Send>>,
    /// Called once when the client hangs up or is gone.
    on_hangup: Option<Box<dyn FnOnce() + Send>>,
    /// WebSocket: what arrived and the app has not taken, and its bytes.
    inbound: VecDeque<Inbound>,
    inbound_bytes: usize,
    /// The queue carries a request body (its bound is `BODY_HIGH_WATER`).
    body: bool,
    /// Called once when something arrives, or the client is gone.
    on_inbound: Option<Box<dyn FnOnce() + Send>>,
    /// The status the loop answered with itself (a request body that
    /// timed out or grew too large), for the app side's access log.
    answered: Option<u16>,
}

fn inbound_full(f: &FlowInner) -> bool {
    let mark = if f.body {
        BODY_HIGH_WATER
    } else {
        INBOUND_HIGH_WATER
    };
    f.inbound_bytes >= mark || f.inbound.len() >= INBOUND_MAX_MESSAGES
}

/// What the app side may do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Room {
    /// Below the high-water mark: hand over more.
    Free,
    /// At or above it: wait for `Free` or `Gone`.
    Full,
    /// The client is gone: stop producing and close the body.
    Gone,
}

impl Default for Flow {
    fn default() -> Self {
        Flow::new()
    }
}

impl Flow {
    pub fn new() -> Flow {
        Flow {
            inner: Mutex::new(FlowInner::default()),
            changed: Condvar::new(),
        }
    }

    fn room_of(inner: &FlowInner) -> Room {
        if inner.gone {
            Room::Gone
        } else if inner.unwritten >= HIGH_WATER {
            Room::Full
        } else {
            Room::Free
        }
    }

    // ---- app side ----

    /// Count `n` body bytes handed over; says whether there is room for more.
    pub fn add(&self, n: usize) -> Room {
        let mut f = lock(&self.inner);
        f.unwritten += n;
        Flow::room_of(&f)
    }

    pub fn room(&self) -> Room {
        Flow::room_of(&lock(&self.inner))
    }

    /// Block the calling thread until there is room or the client is gone
    /// (the caller releases the interpreter lock around this).
    pub fn wait_room(&self) -> Room {
        let mut f = lock(&self.inner);
        loop {
            let room = Flow::room_of(&f);
            if room != Room::Full {
                return room;
            }
            f = self.changed.wait(f).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Run `wake` once when there is room or the client is gone (at once,
    /// on the calling thread, if that is already so). Replaces an earlier
    /// waker that has not run.
    pub fn on_room(&self, wake: Box<dyn FnOnce() + Send>) {
        let mut f = lock(&self.inner);
        if Flow::room_of(&f) != Room::Full {
            drop(f);
            wake();
        } else {
            f.on_room = Some(wake);
        }
    }

    /// Whether the client has closed its side or is gone.
    pub fn hung_up(&self) -> bool {
        let f = lock(&self.inner);
        f.hangup || f.gone
    }

    /// Run `wake` once when the client hangs up or is gone (at once if so).
    pub fn on_hangup(&self, wake: Box<dyn FnOnce() + Send>) {
        let mut f = lock(&self.inner);
        if f.hangup || f.gone {
            drop(f);
            wake();
        } else {
            f.on_hangup = Some(wake);
        }
    }

    /// WebSocket: the next thing that arrived, and whether the loop must
    /// be told it may read again (the queue was full and is not now).
    pub fn take_inbound(&self) -> Option<(Inbound, bool)> {
        let mut f = lock(&self.inner);
        let was_full = inbound_full(&f);
        let item = f.inbound.pop_front()?;
        f.inbound_bytes -= item.len();
        Some((item, was_full && !inbound_full(&f)))
    }

    /// Run `wake` once when something arrives or the client is gone (at
    /// once if so). Replaces an earlier waker that has not run.
    pub fn on_inbound(&self, wake: Box<dyn FnOnce() + Send>) {
        let mut f = lock(&self.inner);
        if !f.inbound.is_empty() || f.gone || f.hangup {
            drop(f);
            wake();
        } else {
            f.on_inbound = Some(wake);
        }
    }

    /// The status the loop sent in the app's place (`answered`), if any.
    pub fn answered(&self) -> Option<u16> {
        lock(&self.inner).answered
    }

    // ---- loop side ----

    /// The loop answered the request with `status` itself: the app's
    /// response will not be sent.
    pub fn answer(&self, status: u16) {
        lock(&self.inner).answered = Some(status);
    }

    /// Hand the app what arrived (a WebSocket message, a piece of a
    /// request body); says whether the queue is now full (stop reading).
    pub fn push_inbound(&self, item: Inbound) -> bool {
        let mut f = lock(&self.inner);
        f.inbound_bytes += item.len();
        f.body |= matches!(item, Inbound::Body(_));
        f.inbound.push_back(item);
        let full = inbound_full(&f);
        let wake = f.on_inbound.take();
        drop(f);
        if let Some(w) = wake {
            w();
        }
        full
    }

    /// Too much waits for the app; do not read more.
    pub fn inbound_full(&self) -> bool {
        inbound_full(&lock(&self.inner))
    }

    /// `n` body bytes were written to the client.
    pub fn written(&self, n: usize) {
        let mut f = lock(&self.inner);
        let was_full = f.unwritten >= HIGH_WATER;
        f.unwritten = f.unwritten.saturating_sub(n);
        if was_full && f.unwritten < HIGH_WATER {
            let wake = f.on_room.take();
            drop(f);
            self.changed.notify_all();
            if let Some(w) = wake {
                w();
            }
        }
    }

    /// The client closed its sending side.
    pub fn hang_up(&self) {
        let mut f = lock(&self.inner);
        if f.hangup {
            return;
        }
        f.hangup = true;
        let wakes = [f.on_hangup.take(), f.on_inbound.take()];
        drop(f);
        for w in wakes.into_iter().flatten() {
            w();
        }
    }

    /// The connection is closed: wake everything waiting.
    pub fn close(&self) {
        let mut f = lock(&self.inner);
        if f.gone {
            return;
        }
        f.gone = true;
        let wakes = [f.on_room.take(), f.on_hangup.take(), f.on_inbound.take()];
        drop(f);
        self.changed.notify_all();
        for w in wakes.into_iter().flatten() {
            w();
        }
    }
}

/// The app side of a worker that hands requests off: the `--threads`
/// pool, or the ASGI runner. The loop thread calls these without holding
/// the interpreter lock.
pub trait Runner: Send {
    /// Hand a job over. Never blocks.
    fn submit(&self, job: Job);
    /// Jobs handed over and not yet started (admission control sheds
    /// requests with 503 when this reaches `--max-queued-requests`).
    fn backlog(&self) -> usize;
    /// Shut down: stop taking jobs, let those running finish for up to
    /// `timeout`, run the app's shutdown steps (ASGI lifespan), join threads.
    fn stop(&mut self, timeout: std::time::Duration);

    /// When (monotonic ms) the app side's own event loop last showed it is
    /// alive, for `--timeout`; `None` when it has no loop of its own (app
    /// threads: like gunicorn's gthread, a slow request is not a hang).
    fn alive_at_ms(&self) -> Option<u64> {
        None
    }
}

/// Jobs waiting for an app thread, first in first out.
pub struct JobQueue {
    inner: Mutex<Jobs>,
    ready: Condvar,
}

struct Jobs {
    queue: VecDeque<Job>,
    closed: bool,
}

impl Default for JobQueue {
    fn default() -> Self {
        JobQueue::new()
    }
}

impl JobQueue {
    pub fn new() -> JobQueue {
        JobQueue {
            inner: Mutex::new(Jobs {
                queue: VecDeque::new(),
                closed: false,
            }),
            ready: Condvar::new(),
        }
    }

    pub fn push(&self, job: Job) {
        lock(&self.inner).queue.push_back(job);
        self.ready.notify_one();
    }

    /// Jobs not yet taken by a thread.
    pub fn len(&self) -> usize {
        lock(&self.inner).queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Take the next job, blocking until there is one; `None` once the
    /// queue is closed and empty.
    pub fn pop(&self) -> Option<Job> {
        let mut j = lock(&self.inner);
        loop {
            if let Some(job) = j.queue.pop_front() {
                return Some(job);
            }
            if j.closed {
                return None;
            }
            j = self.ready.wait(j).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// No more jobs: threads finish what is queued, then `pop` returns `None`.
    pub fn close(&self) {
        lock(&self.inner).closed = true;
        self.ready.notify_all();
    }
}

/// A poisoned lock only means another thread panicked while holding it;
/// the data (counters and queues) is still consistent enough to go on.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// An eventfd for waking a thread that polls descriptors (the asyncio loop).
pub struct Waker {
    fd: EventFd,
}

impl Waker {
    pub fn new() -> std::io::Result<Waker> {
        Ok(Waker {
            fd: EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)?,
        })
    }
    pub fn fd(&self) -> RawFd {
        self.fd.as_fd().as_raw_fd()
    }
    /// EAGAIN means the counter is already non-zero: the wake is pending anyway.
    pub fn wake(&self) {
        let _ = self.fd.write(1);
    }
    /// Reset after waking (the woken side).
    pub fn clear(&self) {
        let _ = self.fd.read();
    }
    pub fn into_owned(self) -> OwnedFd {
        self.fd.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    fn t(serial: u64) -> Ticket {
        Ticket { conn: 1, serial }
    }

    #[test]
    fn mailbox_keeps_order_and_wakes_once_per_batch() {
        let m = Mailbox::new().unwrap();
        m.post(t(1), Output::End);
        m.post(t(2), Output::Data(b"x".to_vec()));
        let mut got = Vec::new();
        m.drain(&mut got);
        assert_eq!(
            got.iter().map(|(t, _)| t.serial).collect::<Vec<_>>(),
            [1, 2]
        );
        // The counter was reset: nothing to read until the next post.
        assert!(m.wake.fd.read().is_err());
        m.post(t(3), Output::End);
        assert_eq!(m.wake.fd.read().unwrap(), 1);
    }

    #[test]
    fn flow_is_full_at_the_high_water_mark_and_frees_when_written() {
        let f = Flow::new();
        assert_eq!(f.add(HIGH_WATER - 1), Room::Free);
        assert_eq!(f.add(1), Room::Full);
        let woken = Arc::new(AtomicUsize::new(0));
        let w = woken.clone();
        f.on_room(Box::new(move || {
            w.fetch_add(1, Ordering::SeqCst);
        }));
        assert_eq!(woken.load(Ordering::SeqCst), 0);
        f.written(1);
        assert_eq!(f.room(), Room::Free);
        assert_eq!(woken.load(Ordering::SeqCst), 1);
        // Once only.
        f.add(10);
        f.written(10);
        assert_eq!(woken.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_blocked_producer_wakes_when_the_client_leaves() {
        let f = Arc::new(Flow::new());
        f.add(HIGH_WATER);
        let f2 = f.clone();
        let h = std::thread::spawn(move || f2.wait_room());
        std::thread::sleep(std::time::Duration::from_millis(20));
        f.close();
        assert_eq!(h.join().unwrap(), Room::Gone);
        assert!(f.hung_up());
    }

    #[test]
    fn hangup_waker_runs_once_on_eof_or_close() {
        let f = Flow::new();
        let n = Arc::new(AtomicUsize::new(0));
        let n2 = n.clone();
        f.on_hangup(Box::new(move || {
            n2.fetch_add(1, Ordering::SeqCst);
        }));
        f.hang_up();
        f.close();
        assert_eq!(n.load(Ordering::SeqCst), 1);
        let n3 = n.clone();
        f.on_hangup(Box::new(move || {
            n3.fetch_add(1, Ordering::SeqCst);
        }));
        assert_eq!(n.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn inbound_queue_fills_wakes_the_taker_and_says_when_to_read_again() {
        let f = Flow::new();
        let woken = Arc::new(AtomicUsize::new(0));
        let w = woken.clone();
        f.on_inbound(Box::new(move || {
            w.fetch_add(1, Ordering::SeqCst);
        }));
        assert!(!f.push_inbound(Inbound::Message(Message::Text("a".into()))));
        assert_eq!(woken.load(Ordering::SeqCst), 1);
        // Full by bytes: one message at the mark.
        let big = Message::Binary(vec![0; INBOUND_HIGH_WATER]);
        assert!(f.push_inbound(Inbound::Message(big)));
        assert!(f.inbound_full());
        assert_eq!(
            f.take_inbound(),
            Some((Inbound::Message(Message::Text("a".into())), false))
        );
        // Taking the big one frees the queue: the loop must be told.
        assert!(matches!(f.take_inbound(), Some((_, true))));
        assert!(!f.inbound_full());
        assert_eq!(f.take_inbound(), None);
        // Full by count too.
        for _ in 0..INBOUND_MAX_MESSAGES - 1 {
            assert!(!f.push_inbound(Inbound::Message(Message::Text(String::new()))));
        }
        assert!(f.push_inbound(Inbound::Closed {
            code: 1000,
            reason: String::new()
        }));
    }

    #[test]
    fn the_status_the_loop_answered_with_is_kept_for_the_app_side() {
        let f = Flow::new();
        assert_eq!(f.answered(), None);
        f.answer(408);
        f.close();
        assert_eq!(f.answered(), Some(408));
    }

    #[test]
    fn a_request_body_queue_holds_four_pieces() {
        let f = Flow::new();
        let piece = || Inbound::Body(vec![0; 64 * 1024]);
        for _ in 0..3 {
            assert!(!f.push_inbound(piece()));
        }
        assert!(f.push_inbound(piece()));
        assert!(matches!(f.take_inbound(), Some((Inbound::Body(_), true))));
        assert!(!f.inbound_full());
        assert!(!f.push_inbound(Inbound::BodyEnd));
        for _ in 0..3 {
            assert!(matches!(f.take_inbound(), Some((Inbound::Body(_), false))));
        }
        assert_eq!(f.take_inbound(), Some((Inbound::BodyEnd, false)));
    }

    #[test]
    fn inbound_waker_runs_at_once_when_the_connection_is_gone() {
        let f = Flow::new();
        f.close();
        let woken = Arc::new(AtomicUsize::new(0));
        let w = woken.clone();
        f.on_inbound(Box::new(move || {
            w.fetch_add(1, Ordering::SeqCst);
        }));
        assert_eq!(woken.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn job_queue_drains_then_reports_closed() {
        let q = Arc::new(JobQueue::new());
        let q2 = q.clone();
        let h = std::thread::spawn(move || q2.pop().is_none());
        std::thread::sleep(std::time::Duration::from_millis(20));
        q.close();
        assert!(h.join().unwrap());
    }
}
