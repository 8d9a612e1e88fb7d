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

mod bufring;
mod conn;
mod pipe;
pub(in crate::engine) mod probe;

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, squeue, types, IoUring};

use self::bufring::BufRing;
pub(in crate::engine) use self::conn::{Conn, Eof, Life, Loan, RecvOp};
pub(in crate::engine) use self::pipe::{Pipe, Stage};
use crate::engine::queue::Spare;
use crate::engine::slab::{Key, Slab};
use crate::engine::token::{self, Kind};
use crate::engine::{EngineConfig, Event, ListenerId};
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
pub(in crate::engine) const RECV_BUFFERS: u16 = 256;
pub(in crate::engine) const RECV_BUFFER_SIZE: usize = 16 * 1024;
pub(in crate::engine) const RECV_BUFFERS_INC: u16 = 32;
pub(in crate::engine) const RECV_BUFFER_SIZE_INC: usize = 128 * 1024;
/// The buffer group id of the receive buffer ring.
const BGID: u16 = 0;
/// How long dropping the engine waits for cancelled operations.
const DRAIN_LIMIT: Duration = Duration::from_millis(500);

pub(in crate::engine) struct Listener {
    pub(in crate::engine) fd: RawFd,
    pub(in crate::engine) unix: bool,
    /// TCP_NODELAY is set on each accepted socket, not inherited (see
    /// `transport::nodelay_inherited`).
    pub(in crate::engine) nodelay_each: bool,
    pub(in crate::engine) armed: bool,
    /// After a resource error (EMFILE...): re-arm no sooner than this.
    pub(in crate::engine) retry_at: Option<Instant>,
}

pub(in crate::engine) struct Watch {
    pub(in crate::engine) fd: RawFd,
    pub(in crate::engine) armed: bool,
}

/// Something to deliver at the start of the next `wait`.
pub(in crate::engine) enum Pending {
    /// Bytes held while paused, for this connection.
    Held(Key),
    /// A connection accepted while accepting was paused.
    Accept(ListenerId, RawFd),
}

pub(in crate::engine) struct UringEngine {
    pub(in crate::engine) ring: IoUring,
    pub(in crate::engine) ring_ref: RingRef,
    /// Dropped by hand in `Drop`, after the kernel let go of it.
    pub(in crate::engine) bufs: std::mem::ManuallyDrop<BufRing>,
    /// The connection slots (see "Ownership rule" for when one is freed).
    pub(in crate::engine) conns: Slab<Conn>,
    pub(in crate::engine) listeners: Vec<Listener>,
    pub(in crate::engine) accept_paused: bool,
    /// Accepting stopped for good (`close_accept`).
    pub(in crate::engine) accept_closed: bool,
    /// Connections accepted after `pause_accept`, before the cancel landed.
    pub(in crate::engine) held_accepts: Vec<(ListenerId, RawFd)>,
    pub(in crate::engine) watches: Vec<Watch>,
    /// Connections whose send queue has work for the next wait: (id, gen).
    pub(in crate::engine) dirty: Vec<Key>,
    pub(in crate::engine) pending: Vec<Pending>,
    /// Empty pipes for the next file range (see `op/send_file.rs`).
    pub(in crate::engine) pipes: Vec<Pipe>,
    /// Completions copied out of the ring, so handlers can queue entries.
    cqes: Vec<cqueue::Entry>,
    /// Set while dropping: nothing is re-armed.
    stopping: bool,
    /// Rest after accept errors (EMFILE...).
    pub(in crate::engine) accept_backoff: crate::engine::backoff::AcceptBackoff,
    /// Receives that ended because the buffer ring ran dry (and were
    /// re-armed): a sign `RECV_BUFFERS` is small for the load.
    pub(in crate::engine) recv_out_of_buffers: u64,
    /// Turns that found completions waiting in the kernel's overflow list
    /// (the completion queue was full); they are flushed and handled in
    /// the same turn.
    pub(in crate::engine) cq_overflows: u64,
    /// Completions the kernel reports it dropped (never, with NODROP).
    cq_dropped: u32,
    /// Receives cancelled because bytes arrived on a paused connection.
    pub(in crate::engine) recv_cancels: u64,
    /// Connections whose receive into a lent buffer finished, or whose
    /// bounded receive ended: their receive is re-armed at the next wait
    /// unless a buffer was lent again.
    pub(in crate::engine) rearm: Vec<Key>,
    /// File pieces that found the socket full (then a poll waited).
    pub(in crate::engine) file_waits: u64,
    /// cachestat(2) works here (Linux 6.5): file ranges in the page cache
    /// are sent by sendfile(2) (see `op/send_file.rs`).
    pub(in crate::engine) cachestat: bool,
    /// Written output buffers, for the next responses.
    pub(in crate::engine) spare: Spare,
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
    pub(in crate::engine) fn new(
        listeners: &[RawFd],
        config: &EngineConfig,
    ) -> io::Result<UringEngine> {
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
            conns: Slab::with_capacity(slots),
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
    pub(in crate::engine) fn push(&mut self, sqe: &squeue::Entry) {
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
    pub(in crate::engine) fn alloc_conn(&mut self, fd: RawFd) -> u32 {
        let (key, c) = self.conns.insert(Conn::new);
        c.reset(fd);
        key.index
    }

    /// One operation of `id` finished; free the slot once the worker closed
    /// it and nothing is outstanding (the ownership rule).
    pub(in crate::engine) fn op_done(&mut self, id: u32) {
        let c = &mut self.conns[id];
        c.ops -= 1;
        if c.ops > 0 {
            return;
        }
        match c.life {
            Life::Open => {}
            // Everything else on the descriptor is done: now it may be
            // closed, and its number handed out again by accept.
            Life::CloseWaits => self.submit_close(id),
            Life::Closing => {
                c.fd = -1;
                c.out.clear();
                c.held = Vec::new();
                // Nothing is in flight any more: the kernel is done with it.
                c.loan = None;
                c.file_buf = Vec::new();
                self.release_pipe(id);
                self.conns.remove(id);
            }
        }
    }

    /// Ask the kernel to cancel the operation tagged `tag`.
    pub(in crate::engine) fn cancel(&mut self, tag: u64) {
        let sqe = opcode::AsyncCancel::new(tag)
            .build()
            .user_data(token::CANCEL);
        self.push(&sqe);
    }

    /// Nothing is delivered before `wait`: every turn enters the ring, to
    /// submit what was queued and reap what completed.
    pub(in crate::engine) fn deliver(&mut self, _on_event: &mut dyn FnMut(Event<'_>)) -> bool {
        false
    }

    pub(in crate::engine) fn wait(
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
                Pending::Held(key) => delivered |= self.deliver_held(key, on_event),
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

    /// The tag of an operation of `id`'s current holder.
    pub(in crate::engine) fn conn_tag(&self, kind: Kind, id: u32) -> u64 {
        token::encode(kind, self.conns.key(id).gen, id)
    }

    /// The connection `key` names, if it still holds its slot and is open.
    pub(in crate::engine) fn open_conn(&mut self, key: Key) -> Option<&mut Conn> {
        self.conns.get_mut(key).filter(|c| c.is_open())
    }

    /// The open connection in slot `id`, whichever generation: the
    /// worker names connections by slot only (`ConnId`), and uses an id
    /// only until it closes it.
    pub(in crate::engine) fn worker_conn(&mut self, id: u32) -> Option<&mut Conn> {
        self.conns.at_mut(id).filter(|c| c.is_open())
    }

    pub(in crate::engine) fn fd_of(&self, id: u32) -> types::Fd {
        types::Fd(self.conns[id].fd)
    }

    pub(in crate::engine) fn is_stopping(&self) -> bool {
        self.stopping
    }

    /// Operations the kernel still owns.
    fn outstanding(&self) -> u32 {
        let conns: u32 = self.conns.values().map(|c| c.ops).sum();
        let listeners = self.listeners.iter().filter(|l| l.armed).count() as u32;
        let watches = self.watches.iter().filter(|w| w.armed).count() as u32;
        conns + listeners + watches
    }
}

impl UringEngine {
    /// Close every connection, cancel every operation and wait (bounded)
    /// for their completions; free the buffer ring if the kernel let go of
    /// everything. Returns whether it did. Runs once; `Drop` calls it.
    pub(in crate::engine) fn stop(&mut self) -> bool {
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
        let open: Vec<u32> = self.conns.indices().collect();
        for id in open {
            let c = &mut self.conns[id];
            if c.is_open() {
                // SAFETY: an open slot owns its descriptor; the slot turns
                // Closing here, so nothing closes or uses `c.fd` again.
                unsafe { crate::sys::transport::close(c.fd) };
                c.life = Life::Closing;
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
pub(in crate::engine) mod tests {
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
