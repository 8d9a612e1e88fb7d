//! The io_uring engine: one ring per worker, multishot accept on every
//! listener, multishot receive into a provided-buffer ring, sends of owned
//! buffers, and one `io_uring_enter` per `wait` that both submits
//! everything queued since the last one and waits for completions.
//!
//! # Ownership rule
//!
//! **Memory handed to the kernel belongs to the operation until its
//! completion arrives.** A send's buffers stay in the connection's
//! `SendQueue` and its iovec array/`msghdr` stay in the slot until the send
//! completes (cancelled or not), and so do the file and the pipe a splice
//! names; the receive buffers belong to the
//! buffer ring, which outlives every receive. So:
//! * a connection slot is freed — and its id handed out again — only when
//!   every operation of that connection (receive, send, close)
//!   has posted its last completion (`Conn::ops` counts them);
//! * `close` cancels the outstanding operations and queues a `Close`; it
//!   never frees anything itself;
//! * dropping the engine cancels everything and waits for the completions;
//!   if the kernel does not answer in time, the memory is leaked rather
//!   than freed under it.
//!
//! The per-operation code (accept, recv, send, close, watch) lives next to
//! its epoll counterpart in `engine/op/`; this file holds the ring, the
//! connection slots and the wait loop. Imports only `sys` and `log`.

pub mod bufring;
mod pipe;
pub mod probe;

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, squeue, types, IoUring};

use self::bufring::BufRing;
pub use self::pipe::{Pipe, Stage};
use crate::engine::queue::{SendQueue, Spare};
use crate::engine::token::{self, Kind};
use crate::engine::{ConnId, EngineConfig, Event, ListenerId};
use crate::sys::uring::{enter, register_ring_fd, RingRef};

/// Submission queue size. Large enough that a wait's worth of re-arms and
/// sends fits; when full, entries are submitted early (one extra enter).
const SQ_ENTRIES: u32 = 2048;
/// Completion queue size: completions of a busy batch never overflow.
const CQ_ENTRIES: u32 = 8192;
/// Flushes of the overflow list per turn; what is left waits a turn.
const OVERFLOW_ROUNDS: usize = 4;
/// Receive buffers per worker, and their size, 4 MiB either way. In an
/// incrementally consumed ring (see `bufring`) receives share buffers, so
/// fewer, larger ones serve as many receives per batch and let a large body
/// arrive in 64 KiB pieces (as the epoll engine reads it); a classic ring
/// spends one buffer per receive, so it needs more of them. A buffer is
/// returned right after its bytes are handed over, so the count bounds
/// receives per batch, not open connections.
pub const RECV_BUFFERS: u16 = 256;
pub const RECV_BUFFER_SIZE: usize = 16 * 1024;
pub const RECV_BUFFERS_INC: u16 = 32;
pub const RECV_BUFFER_SIZE_INC: usize = 128 * 1024;
/// The buffer group id of the receive buffer ring.
const BGID: u16 = 0;
/// How long dropping the engine waits for cancelled operations.
const DRAIN_LIMIT: Duration = Duration::from_millis(500);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ConnState {
    #[default]
    Free,
    Open,
    /// The worker called `close`; operations are still completing.
    Closing,
}

/// Progress of `shutdown_write`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Shut {
    #[default]
    No,
    /// Requested; issued once the queue drains.
    Requested,
    /// Issued.
    Done,
}

pub struct Conn {
    pub fd: RawFd,
    pub gen: u32,
    pub state: ConnState,
    /// Operations issued and not yet finished (multishot receive counts
    /// once until its last completion).
    pub ops: u32,
    pub recv_armed: bool,
    /// A cancel of the receive is on its way (bytes arrived while paused).
    pub recv_cancelling: bool,
    pub paused: bool,
    pub eof: bool,
    /// Bytes (and end of stream) that arrived after `pause_recv`, until the
    /// receive's cancellation took effect; delivered on `resume_recv`.
    pub held: Vec<u8>,
    pub held_eof: bool,
    /// A buffer lent with `recv_into`; the kernel writes into its spare
    /// capacity while `direct` is set, so it stays here until then.
    pub target: Option<Vec<u8>>,
    /// Bytes `target` may still take.
    pub target_room: usize,
    /// Its length when it was lent.
    pub target_start: usize,
    /// The receive into `target` is in flight.
    pub direct: bool,
    /// Received with bounded single receives instead of the multishot one
    /// (the connection sends large bodies).
    pub bounded: bool,
    pub out: SendQueue,
    /// The one send in flight (buffers, or a step of a file range).
    pub sending: bool,
    pub stage: Stage,
    /// The pipe a file range goes through, while the connection sends one.
    pub pipe: Option<Pipe>,
    /// Bytes of the front file range in `pipe`, not yet in the socket.
    pub in_pipe: u32,
    /// The memory a small file range is read into (`Stage::FileRead`),
    /// the kernel's until the read completes.
    pub file_buf: Vec<u8>,
    pub iovs: Vec<libc::iovec>,
    pub msg: Box<libc::msghdr>,
    pub shut: Shut,
    pub failed: bool,
    /// In the dirty list (a send to start at the next wait).
    pub dirty: bool,
    /// The worker closed the connection; the Close op goes out once every
    /// other operation on the descriptor has completed (see `op_done`).
    pub close_pending: bool,
}

impl Conn {
    fn new() -> Conn {
        Conn {
            fd: -1,
            gen: 0,
            state: ConnState::Free,
            ops: 0,
            recv_armed: false,
            recv_cancelling: false,
            paused: false,
            eof: false,
            held: Vec::new(),
            held_eof: false,
            target: None,
            target_room: 0,
            target_start: 0,
            direct: false,
            bounded: false,
            out: SendQueue::default(),
            sending: false,
            stage: Stage::Bytes,
            pipe: None,
            in_pipe: 0,
            file_buf: Vec::new(),
            iovs: Vec::new(),
            // SAFETY: msghdr is plain data; all-zero is a valid empty header.
            msg: Box::new(unsafe { std::mem::zeroed() }),
            shut: Shut::No,
            failed: false,
            dirty: false,
            close_pending: false,
        }
    }

    pub fn is_open(&self, gen: u32) -> bool {
        self.state == ConnState::Open && self.gen == gen
    }

    /// Something is queued or in the pipe, not yet written.
    pub fn has_output(&self) -> bool {
        !self.out.is_empty() || self.in_pipe > 0
    }
}

pub struct Listener {
    pub fd: RawFd,
    pub unix: bool,
    /// TCP_NODELAY is set on each accepted socket, not inherited (see
    /// `transport::nodelay_inherited`).
    pub nodelay_each: bool,
    pub armed: bool,
    /// After a resource error (EMFILE...): re-arm no sooner than this.
    pub retry_at: Option<Instant>,
}

pub struct Watch {
    pub fd: RawFd,
    pub armed: bool,
}

/// Something to deliver at the start of the next `wait`.
pub enum Pending {
    /// Bytes held while paused, for (conn, gen).
    Held(u32, u32),
    /// A connection accepted while accepting was paused.
    Accept(ListenerId, RawFd),
}

pub struct UringEngine {
    pub ring: IoUring,
    pub ring_ref: RingRef,
    /// Dropped by hand in `Drop`, after the kernel let go of it.
    pub bufs: std::mem::ManuallyDrop<BufRing>,
    pub conns: Vec<Conn>,
    pub free: Vec<u32>,
    pub listeners: Vec<Listener>,
    pub accept_paused: bool,
    /// Accepting stopped for good (`close_accept`).
    pub accept_closed: bool,
    /// Connections accepted after `pause_accept`, before the cancel landed.
    pub held_accepts: Vec<(ListenerId, RawFd)>,
    pub watches: Vec<Watch>,
    /// Connections whose send queue has work for the next wait: (id, gen).
    pub dirty: Vec<(u32, u32)>,
    pub pending: Vec<Pending>,
    /// Empty pipes for the next file range (see `op/send_file.rs`).
    pub pipes: Vec<Pipe>,
    /// Completions copied out of the ring, so handlers can queue entries.
    cqes: Vec<cqueue::Entry>,
    /// Set while dropping: nothing is re-armed.
    stopping: bool,
    /// Rest after accept errors (EMFILE...).
    pub accept_backoff: crate::engine::backoff::AcceptBackoff,
    /// Receives that ended because the buffer ring ran dry (and were
    /// re-armed): a sign `RECV_BUFFERS` is small for the load.
    pub recv_out_of_buffers: u64,
    /// Turns that found completions waiting in the kernel's overflow list
    /// (the completion queue was full); they are flushed and handled in
    /// the same turn.
    pub cq_overflows: u64,
    /// Completions the kernel reports it dropped (never, with NODROP).
    cq_dropped: u32,
    /// Receives cancelled because bytes arrived on a paused connection.
    pub recv_cancels: u64,
    /// Connections whose receive into a lent buffer finished, or whose
    /// bounded receive ended: their receive is re-armed at the next wait
    /// unless a buffer was lent again.
    pub rearm: Vec<(u32, u32)>,
    /// File pieces that found the socket full (then a poll waited).
    pub file_waits: u64,
    /// cachestat(2) works here (Linux 6.5): file ranges in the page cache
    /// are sent by sendfile(2) (see `op/send_file.rs`).
    pub cachestat: bool,
    /// Written output buffers, for the next responses.
    pub spare: Spare,
}

// SAFETY: the raw pointers inside (buffer ring memory, iovecs and msghdr in
// the slots) point only at memory this engine owns, so moving the engine to
// another thread moves their owner with them. The worker never does that
// (it only needs `Send` to release the interpreter lock around `wait` on
// the same thread); with SINGLE_ISSUER the kernel would refuse submissions
// from another thread rather than misbehave.
unsafe impl Send for UringEngine {}

/// A named way to set up the ring.
type RingMode = (&'static str, fn(&mut io_uring::Builder));

/// Build the ring with the cheapest task-running mode the kernel has.
fn build_ring() -> io::Result<IoUring> {
    let attempts: [RingMode; 3] = [
        ("single issuer, deferred task running", |b| {
            b.setup_single_issuer().setup_defer_taskrun();
        }),
        ("cooperative task running", |b| {
            b.setup_coop_taskrun().setup_taskrun_flag();
        }),
        ("plain", |_| {}),
    ];
    #[cfg(test)]
    let (sq_entries, cq_entries) = tests::SMALL_RING.get().unwrap_or((SQ_ENTRIES, CQ_ENTRIES));
    #[cfg(not(test))]
    let (sq_entries, cq_entries) = (SQ_ENTRIES, CQ_ENTRIES);
    let mut last = io::Error::from_raw_os_error(libc::EINVAL);
    for (mode, flags) in attempts {
        let mut builder = IoUring::builder();
        builder.setup_cqsize(cq_entries).setup_submit_all();
        flags(&mut builder);
        match builder.build(sq_entries) {
            Ok(ring) => {
                debug!("io_uring ring: {mode}");
                return Ok(ring);
            }
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

impl UringEngine {
    pub fn new(listeners: &[RawFd], config: &EngineConfig) -> io::Result<UringEngine> {
        let ring = build_ring()?;
        let ring_ref = match register_ring_fd(ring.as_raw_fd()) {
            Ok(index) => RingRef::Registered(index),
            Err(_) => RingRef::Fd(ring.as_raw_fd()),
        };
        let incremental = BufRing::new(&ring, BGID, RECV_BUFFERS_INC, RECV_BUFFER_SIZE_INC, true);
        #[cfg(test)]
        let incremental = match incremental {
            Ok(bufs) if tests::CLASSIC_RING.get() => {
                ring.submitter().unregister_buf_ring(BGID)?;
                drop(bufs);
                Err(io::Error::from_raw_os_error(libc::EINVAL))
            }
            other => other,
        };
        let bufs = match incremental {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                debug!("io_uring: no incrementally consumed buffer rings ({e})");
                BufRing::new(&ring, BGID, RECV_BUFFERS, RECV_BUFFER_SIZE, false)?
            }
            bufs => bufs?,
        };
        let mut listener_list = Vec::with_capacity(listeners.len());
        for &fd in listeners {
            let unix = crate::sys::transport::is_unix(fd)?;
            listener_list.push(Listener {
                fd,
                unix,
                nodelay_each: !unix && !crate::sys::transport::nodelay_inherited(fd),
                armed: false,
                retry_at: None,
            });
        }
        let slots = config.max_connections.min(1 << 16);
        let mut engine = UringEngine {
            ring,
            ring_ref,
            bufs: std::mem::ManuallyDrop::new(bufs),
            conns: Vec::with_capacity(slots),
            free: Vec::with_capacity(slots),
            listeners: listener_list,
            accept_paused: false,
            accept_closed: false,
            held_accepts: Vec::new(),
            watches: Vec::new(),
            dirty: Vec::with_capacity(64),
            pending: Vec::new(),
            pipes: Vec::new(),
            cqes: Vec::with_capacity(CQ_ENTRIES as usize),
            stopping: false,
            accept_backoff: Default::default(),
            recv_out_of_buffers: 0,
            cq_overflows: 0,
            cq_dropped: 0,
            recv_cancels: 0,
            rearm: Vec::new(),
            file_waits: 0,
            cachestat: true,
            spare: Spare::default(),
        };
        for l in 0..engine.listeners.len() {
            engine.arm_accept(l);
        }
        Ok(engine)
    }

    /// Queue one entry, submitting early if the queue is full.
    pub fn push(&mut self, sqe: &squeue::Entry) {
        for _ in 0..8 {
            // SAFETY: every entry the engine builds points only at memory
            // covered by the ownership rule above (slot-owned send buffers,
            // iovecs and msghdr; the buffer ring), which stays valid until
            // the entry's completion.
            if unsafe { self.ring.submission().push(sqe) }.is_ok() {
                return;
            }
            let queued = self.ring.submission().len() as u32;
            if let Err(e) = enter(self.ring_ref, queued, 0, None) {
                if !matches!(
                    e.raw_os_error(),
                    Some(libc::EINTR | libc::EAGAIN | libc::EBUSY)
                ) {
                    error!("io_uring submit failed: {e}");
                }
            }
        }
        error!("io_uring submission queue stuck full; an operation was dropped");
    }

    /// Take a free connection slot for `fd`.
    pub fn alloc_conn(&mut self, fd: RawFd) -> u32 {
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                self.conns.push(Conn::new());
                (self.conns.len() - 1) as u32
            }
        };
        let c = &mut self.conns[id as usize];
        c.fd = fd;
        c.state = ConnState::Open;
        c.ops = 0;
        c.recv_armed = false;
        c.recv_cancelling = false;
        c.paused = false;
        c.eof = false;
        c.held_eof = false;
        c.direct = false;
        c.bounded = false;
        c.sending = false;
        c.stage = Stage::Bytes;
        c.shut = Shut::No;
        c.failed = false;
        c.dirty = false;
        c.close_pending = false;
        id
    }

    /// One operation of `id` finished; free the slot once the worker closed
    /// it and nothing is outstanding (the ownership rule).
    pub fn op_done(&mut self, id: u32) {
        let c = &mut self.conns[id as usize];
        c.ops -= 1;
        if c.state == ConnState::Closing && c.ops == 0 && c.close_pending {
            // Everything else on the descriptor is done: now it may be
            // closed, and its number handed out again by accept.
            self.submit_close(id);
            return;
        }
        if c.state == ConnState::Closing && c.ops == 0 {
            c.state = ConnState::Free;
            c.gen = token::next_gen(c.gen);
            c.fd = -1;
            c.out.clear();
            c.held = Vec::new();
            // Nothing is in flight any more: the kernel is done with it.
            c.target = None;
            c.file_buf = Vec::new();
            self.release_pipe(id);
            self.free.push(id);
        }
    }

    /// Ask the kernel to cancel the operation tagged `tag`.
    pub fn cancel(&mut self, tag: u64) {
        let sqe = opcode::AsyncCancel::new(tag)
            .build()
            .user_data(token::CANCEL);
        self.push(&sqe);
    }

    pub fn wait(
        &mut self,
        timeout: Option<Duration>,
        on_event: &mut dyn FnMut(Event<'_>),
    ) -> io::Result<()> {
        let mut delivered = self.deliver_pending(on_event);
        self.rearm_waiting();
        delivered |= self.start_sends(on_event);
        let timeout = self.rearm_backed_off(timeout);
        let queued = self.ring.submission().len() as u32;
        let result = if delivered {
            enter(self.ring_ref, queued, 0, Some(Duration::ZERO))
        } else {
            enter(self.ring_ref, queued, 1, timeout)
        };
        if let Err(e) = result {
            // ETIME: the timeout passed; EINTR: a signal (the worker's
            // self-pipe reports it); EBUSY: completions to reap first.
            if !matches!(
                e.raw_os_error(),
                Some(libc::ETIME | libc::EINTR | libc::EBUSY)
            ) {
                return Err(e);
            }
        }
        self.reap(on_event);
        self.flush_overflow(on_event);
        Ok(())
    }

    /// Completions that found the completion queue full wait in the
    /// kernel's overflow list (IORING_FEAT_NODROP, which the probe
    /// requires); entering the ring moves them into the queue. Do it now,
    /// a few rounds at most, instead of leaving them for the next turn.
    fn flush_overflow(&mut self, on_event: &mut dyn FnMut(Event<'_>)) {
        for _ in 0..OVERFLOW_ROUNDS {
            if !self.ring.submission().cq_overflow() {
                break;
            }
            self.cq_overflows += 1;
            // ETIME (nothing more came) and EINTR are expected here.
            let _ = enter(self.ring_ref, 0, 0, Some(Duration::ZERO));
            self.reap(on_event);
        }
        let dropped = self.ring.completion().overflow();
        if dropped != self.cq_dropped {
            error!(
                "io_uring dropped {} completions (the kernel could not keep them)",
                dropped.wrapping_sub(self.cq_dropped)
            );
            self.cq_dropped = dropped;
        }
    }

    fn reap(&mut self, on_event: &mut dyn FnMut(Event<'_>)) {
        let mut cqes = std::mem::take(&mut self.cqes);
        cqes.extend(self.ring.completion());
        for cqe in &cqes {
            self.complete(cqe.user_data(), cqe.result(), cqe.flags(), on_event);
        }
        cqes.clear();
        self.cqes = cqes;
    }

    fn complete(&mut self, tag: u64, res: i32, flags: u32, on_event: &mut dyn FnMut(Event<'_>)) {
        let Some((kind, gen, index)) = token::decode(tag) else {
            return;
        };
        match kind {
            Kind::Accept => self.on_accept(index as usize, res, flags, on_event),
            Kind::Conn => self.on_recv(index, gen, res, flags, on_event),
            Kind::RecvInto => self.on_recv_into(index, gen, res, on_event),
            Kind::Send => self.on_send(index, gen, res, on_event),
            Kind::Close => self.op_done(index),
            Kind::Watch => self.on_watch(index as usize, res, flags, on_event),
            Kind::Cancel => {}
        }
    }

    /// Deliver what `resume_recv`/`resume_accept` set aside.
    fn deliver_pending(&mut self, on_event: &mut dyn FnMut(Event<'_>)) -> bool {
        if self.pending.is_empty() {
            return false;
        }
        let mut pending = std::mem::take(&mut self.pending);
        let mut delivered = false;
        for p in pending.drain(..) {
            match p {
                Pending::Held(id, gen) => delivered |= self.deliver_held(id, gen, on_event),
                Pending::Accept(l, fd) => {
                    self.admit(l, fd, on_event);
                    delivered = true;
                }
            }
        }
        if self.pending.is_empty() {
            self.pending = pending;
        }
        delivered
    }

    /// Whether `id` (any generation) may be handed to the worker.
    pub fn conn_tag(&self, kind: Kind, id: u32) -> u64 {
        token::encode(kind, self.conns[id as usize].gen, id)
    }

    pub fn conn_id(id: u32) -> ConnId {
        ConnId(id)
    }

    pub fn fd_of(&self, id: u32) -> types::Fd {
        types::Fd(self.conns[id as usize].fd)
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping
    }

    /// Operations the kernel still owns.
    fn outstanding(&self) -> u32 {
        let conns: u32 = self.conns.iter().map(|c| c.ops).sum();
        let listeners = self.listeners.iter().filter(|l| l.armed).count() as u32;
        let watches = self.watches.iter().filter(|w| w.armed).count() as u32;
        conns + listeners + watches
    }
}

impl UringEngine {
    /// Close every connection, cancel every operation and wait (bounded)
    /// for their completions; free the buffer ring if the kernel let go of
    /// everything. Returns whether it did. Runs once; `Drop` calls it.
    pub fn stop(&mut self) -> bool {
        if self.stopping {
            return self.outstanding() == 0;
        }
        self.stopping = true;
        self.accept_paused = true;
        for (_, fd) in self.held_accepts.drain(..) {
            // SAFETY: an accepted descriptor held back (over the connection
            // limit) is the engine's alone, and is dropped from the list here.
            unsafe { crate::sys::transport::close(fd) };
        }
        for p in self.pending.drain(..) {
            if let Pending::Accept(_, fd) = p {
                // SAFETY: as above, for an accept not yet given a slot.
                unsafe { crate::sys::transport::close(fd) };
            }
        }
        for id in 0..self.conns.len() as u32 {
            let c = &mut self.conns[id as usize];
            if c.state == ConnState::Open {
                // SAFETY: an open slot owns its descriptor; the slot turns
                // Closing here, so nothing closes or uses `c.fd` again.
                unsafe { crate::sys::transport::close(c.fd) };
                c.state = ConnState::Closing;
                if c.ops == 0 {
                    // Nothing outstanding: free it now (op_done frees at 0).
                    c.ops = 1;
                    self.op_done(id);
                }
            }
        }
        let cancel_all = opcode::AsyncCancel2::new(types::CancelBuilder::any())
            .build()
            .user_data(token::CANCEL);
        self.push(&cancel_all);
        let deadline = Instant::now() + DRAIN_LIMIT;
        let mut ignore = |_: Event<'_>| {};
        while self.outstanding() > 0 {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let queued = self.ring.submission().len() as u32;
            let _ = enter(self.ring_ref, queued, 1, Some(deadline - now));
            self.reap(&mut ignore);
        }
        self.outstanding() == 0
    }
}

impl Drop for UringEngine {
    fn drop(&mut self) {
        if self.stop() && self.ring.submitter().unregister_buf_ring(BGID).is_ok() {
            // SAFETY: the kernel holds no receive and no longer knows the
            // buffer ring, so its memory can be freed.
            unsafe { std::mem::ManuallyDrop::drop(&mut self.bufs) };
        } else {
            warn!("io_uring operations still outstanding at shutdown; leaking their buffers");
            std::mem::forget(std::mem::take(&mut self.conns));
        }
    }
}

#[cfg(test)]
pub mod tests {
    use std::cell::Cell;

    thread_local! {
        /// Build this thread's engines with a classic buffer ring, as on a
        /// kernel without incrementally consumed ones.
        pub static CLASSIC_RING: Cell<bool> = const { Cell::new(false) };
        /// Build this thread's rings with these (submission, completion)
        /// queue sizes, small enough for a test to overflow.
        pub static SMALL_RING: Cell<Option<(u32, u32)>> = const { Cell::new(None) };
    }
}
