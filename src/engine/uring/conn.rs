//! One io_uring connection slot: what the kernel holds for it (a receive,
//! a send, a close), what the worker asked (pause, a lent buffer, a FIN),
//! and the memory the kernel may be using. Each course is an enum changed
//! by named steps, so a slot cannot be, say, receiving into a lent buffer
//! and armed for a multishot receive at once.

use std::os::fd::RawFd;

use super::pipe::{Pipe, Stage};
use crate::engine::queue::SendQueue;
use crate::engine::state::Writing;

/// The connection's life in the table. A free slot is the table's
/// (`Slab`); these are the states of an occupied one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::engine) enum Life {
    Open,
    /// The worker called `close`; operations on the descriptor are still
    /// completing, and the `Close` goes out after the last of them.
    CloseWaits,
    /// The `Close` is submitted (or, when the engine stops, the descriptor
    /// closed): the slot is freed when the last completion arrives.
    Closing,
}

/// The receive the kernel holds for the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::engine) enum RecvOp {
    /// None: the end came, a loan came back, or a pause had it cancelled.
    Idle,
    /// A multishot receive, or a single bounded one, into the buffer ring.
    Armed,
    /// Armed, and a cancel of it is on its way.
    Cancelling,
    /// One receive into the buffer the worker lent (`recv_into`).
    Into,
}

impl RecvOp {
    /// A receive into the buffer ring is in flight (cancelled or not).
    pub(in crate::engine) fn armed(self) -> bool {
        matches!(self, RecvOp::Armed | RecvOp::Cancelling)
    }

    /// Submitting the ring receive.
    pub(in crate::engine) fn arm(&mut self) {
        debug_assert_eq!(*self, RecvOp::Idle, "a second receive on one connection");
        *self = RecvOp::Armed;
    }

    /// Whether a cancel of the armed receive is to be sent now (none is
    /// on its way yet).
    pub(in crate::engine) fn cancel(&mut self) -> bool {
        if *self == RecvOp::Armed {
            *self = RecvOp::Cancelling;
            return true;
        }
        false
    }

    /// The ring receive posted its last completion.
    pub(in crate::engine) fn ended(&mut self) {
        debug_assert!(self.armed(), "the end of a receive never armed");
        *self = RecvOp::Idle;
    }

    /// Submitting the receive into the lent buffer.
    pub(in crate::engine) fn lend(&mut self) {
        debug_assert_eq!(*self, RecvOp::Idle, "a loan beside another receive");
        *self = RecvOp::Into;
    }

    /// The receive into the lent buffer completed.
    pub(in crate::engine) fn returned(&mut self) {
        debug_assert_eq!(*self, RecvOp::Into, "a loan came back twice");
        *self = RecvOp::Idle;
    }
}

/// The end of the peer's stream, and whether the worker has heard of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::engine) enum Eof {
    /// Not seen: bytes may still come.
    No,
    /// Seen while the connection was paused or had a buffer lent: `Eof`
    /// is reported after what was held.
    Held,
    /// Seen, and reported (or about to be, in the same call).
    Delivered,
}

impl Eof {
    pub(in crate::engine) fn seen(self) -> bool {
        self != Eof::No
    }

    /// Whether a held end is to be reported now; it is reported once.
    pub(in crate::engine) fn take_held(&mut self) -> bool {
        if *self == Eof::Held {
            *self = Eof::Delivered;
            return true;
        }
        false
    }
}

/// The send the kernel holds for the connection: one at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::engine) enum SendOp {
    Idle,
    /// In flight, doing this step.
    Busy(Stage),
}

impl SendOp {
    pub(in crate::engine) fn busy(self) -> bool {
        matches!(self, SendOp::Busy(_))
    }

    /// Submitting a send step.
    pub(in crate::engine) fn start(&mut self, stage: Stage) {
        debug_assert_eq!(*self, SendOp::Idle, "a second send on one connection");
        *self = SendOp::Busy(stage);
    }

    /// Its completion arrived: what the step was.
    pub(in crate::engine) fn finish(&mut self) -> Stage {
        match std::mem::replace(self, SendOp::Idle) {
            SendOp::Busy(stage) => stage,
            // Never: a completion comes only for a step submitted. Read
            // as a plain send, whose outcome needs no more state.
            SendOp::Idle => Stage::Bytes,
        }
    }
}

/// A buffer the worker lent with `recv_into`: the kernel writes into its
/// spare capacity while a `RecvOp::Into` is in flight, so it stays in the
/// slot until then.
pub(in crate::engine) struct Loan {
    pub(in crate::engine) buf: Vec<u8>,
    /// Bytes it may still take.
    pub(in crate::engine) room: usize,
    /// Its length when it was lent.
    pub(in crate::engine) start: usize,
}

pub(in crate::engine) struct Conn {
    pub(in crate::engine) fd: RawFd,
    pub(in crate::engine) life: Life,
    /// Operations issued and not yet finished (multishot receive counts
    /// once until its last completion).
    pub(in crate::engine) ops: u32,
    pub(in crate::engine) recv: RecvOp,
    /// The worker paused receiving (`pause_recv`); the receive may stay
    /// armed (see `op/recv.rs`).
    pub(in crate::engine) paused: bool,
    pub(in crate::engine) eof: Eof,
    /// Bytes that arrived after `pause_recv`, until the receive's
    /// cancellation took effect, or past a loan's room; delivered on
    /// `resume_recv` or after the loan.
    pub(in crate::engine) held: Vec<u8>,
    pub(in crate::engine) loan: Option<Loan>,
    /// Received with bounded single receives instead of the multishot one
    /// (the connection sends large bodies); never unset.
    pub(in crate::engine) bounded: bool,
    pub(in crate::engine) out: SendQueue,
    pub(in crate::engine) send: SendOp,
    pub(in crate::engine) writing: Writing,
    /// The pipe a file range goes through, while the connection sends one.
    pub(in crate::engine) pipe: Option<Pipe>,
    /// Bytes of the front file range in `pipe`, not yet in the socket.
    pub(in crate::engine) in_pipe: u32,
    /// The memory a small file range is read into (`Stage::FileRead`),
    /// the kernel's until the read completes.
    pub(in crate::engine) file_buf: Vec<u8>,
    pub(in crate::engine) iovs: Vec<libc::iovec>,
    pub(in crate::engine) msg: Box<libc::msghdr>,
    /// In the dirty list (a send to start at the next wait).
    pub(in crate::engine) dirty: bool,
}

impl Conn {
    pub(in crate::engine) fn new() -> Conn {
        Conn {
            fd: -1,
            life: Life::Open,
            ops: 0,
            recv: RecvOp::Idle,
            paused: false,
            eof: Eof::No,
            held: Vec::new(),
            loan: None,
            bounded: false,
            out: SendQueue::default(),
            send: SendOp::Idle,
            writing: Writing::Open,
            pipe: None,
            in_pipe: 0,
            file_buf: Vec::new(),
            iovs: Vec::new(),
            // SAFETY: msghdr is plain data; all-zero is a valid empty header.
            msg: Box::new(unsafe { std::mem::zeroed() }),
            dirty: false,
        }
    }

    /// Ready the slot for a new connection on `fd`, keeping the memory
    /// the previous holder left (queue, iovecs, `msghdr`).
    pub(in crate::engine) fn reset(&mut self, fd: RawFd) {
        self.fd = fd;
        self.life = Life::Open;
        self.ops = 0;
        self.recv = RecvOp::Idle;
        self.paused = false;
        self.eof = Eof::No;
        self.loan = None;
        self.bounded = false;
        self.send = SendOp::Idle;
        self.writing = Writing::Open;
        self.dirty = false;
    }

    pub(in crate::engine) fn is_open(&self) -> bool {
        self.life == Life::Open
    }

    /// Something is queued or in the pipe, not yet written.
    pub(in crate::engine) fn has_output(&self) -> bool {
        !self.out.is_empty() || self.in_pipe > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_receive_arms_cancels_once_and_ends() {
        let mut r = RecvOp::Idle;
        assert!(!r.armed());
        assert!(!r.cancel(), "nothing to cancel");
        r.arm();
        assert!(r.armed());
        assert!(r.cancel());
        assert_eq!(r, RecvOp::Cancelling);
        assert!(r.armed(), "still the kernel's until its last completion");
        assert!(!r.cancel(), "one cancel is enough");
        r.ended();
        assert_eq!(r, RecvOp::Idle);
        r.arm();
        r.ended();
        assert_eq!(r, RecvOp::Idle, "a receive may end uncancelled");
    }

    #[test]
    fn a_loan_is_its_own_receive() {
        let mut r = RecvOp::Idle;
        r.lend();
        assert!(!r.armed(), "a loan is not a ring receive");
        assert!(!r.cancel(), "close cancels a loan by its own tag");
        r.returned();
        assert_eq!(r, RecvOp::Idle);
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "a loan beside another receive")]
    fn a_loan_while_armed_is_refused() {
        let mut r = RecvOp::Idle;
        r.arm();
        r.lend();
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "a second receive")]
    fn a_second_ring_receive_is_refused() {
        let mut r = RecvOp::Idle;
        r.arm();
        r.arm();
    }

    #[test]
    fn a_held_end_is_reported_once() {
        let mut e = Eof::No;
        assert!(!e.seen());
        assert!(!e.take_held());
        e = Eof::Held;
        assert!(e.seen());
        assert!(e.take_held());
        assert_eq!(e, Eof::Delivered);
        assert!(e.seen());
        assert!(!e.take_held());
    }

    #[test]
    fn one_send_step_at_a_time() {
        let mut s = SendOp::Idle;
        assert!(!s.busy());
        s.start(Stage::FileToPipe);
        assert!(s.busy());
        assert_eq!(s.finish(), Stage::FileToPipe);
        assert_eq!(s, SendOp::Idle);
        s.start(Stage::Sent { full: true });
        assert_eq!(s.finish(), Stage::Sent { full: true });
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "a second send")]
    fn a_second_send_step_is_refused() {
        let mut s = SendOp::Idle;
        s.start(Stage::Bytes);
        s.start(Stage::Bytes);
    }

    #[test]
    fn reset_keeps_the_memory_and_clears_the_course() {
        let mut c = Conn::new();
        c.iovs.reserve(8);
        c.recv = RecvOp::Cancelling;
        c.send = SendOp::Busy(Stage::WaitWritable);
        c.writing = Writing::Failed;
        c.eof = Eof::Held;
        c.life = Life::Closing;
        c.ops = 3;
        c.paused = true;
        c.bounded = true;
        c.loan = Some(Loan {
            buf: Vec::new(),
            room: 1,
            start: 0,
        });
        c.reset(7);
        assert_eq!(c.fd, 7);
        assert!(c.is_open());
        assert_eq!((c.ops, c.recv, c.send), (0, RecvOp::Idle, SendOp::Idle));
        assert_eq!((c.writing, c.eof), (Writing::Open, Eof::No));
        assert!(!c.paused && !c.bounded && c.loan.is_none() && !c.dirty);
        assert!(c.iovs.capacity() >= 8);
    }
}
