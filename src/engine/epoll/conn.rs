//! One epoll connection slot: the readiness the kernel reported and the
//! engine has not used up, what the worker asked (pause, a lent buffer, a
//! FIN), and the output queue.

use std::os::fd::RawFd;

use crate::engine::queue::SendQueue;
use crate::engine::state::Writing;

/// The receiving side, as far as edges and reads have told.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(in crate::engine) enum Read {
    /// Everything the socket had is read: the next bytes raise an edge.
    #[default]
    Waiting,
    /// An edge came that reads have not used up.
    Ready,
    /// An edge also said the peer closed its side (or the socket failed):
    /// read until a read says so, even after a short read.
    ReadyToEnd,
    /// A read returned the end of the stream or an error, and `Eof` was
    /// reported: nothing is read any more.
    Ended,
}

impl Read {
    /// A readable edge; `closed`: it also reported the peer's end or an
    /// error. An end once announced is not forgotten by a later edge.
    pub(in crate::engine) fn edge(&mut self, closed: bool) {
        *self = match *self {
            Read::Ended => Read::Ended,
            Read::ReadyToEnd => Read::ReadyToEnd,
            _ if closed => Read::ReadyToEnd,
            _ => Read::Ready,
        };
    }

    /// Reads may find bytes (or the end).
    pub(in crate::engine) fn ready(self) -> bool {
        matches!(self, Read::Ready | Read::ReadyToEnd)
    }

    /// A short read leaves nothing behind, unless the end was announced.
    pub(in crate::engine) fn to_end(self) -> bool {
        self == Read::ReadyToEnd
    }

    /// A read found the socket empty (EAGAIN, or a short read while no
    /// end was announced).
    pub(in crate::engine) fn drained(&mut self) {
        if self.ready() {
            *self = Read::Waiting;
        }
    }

    pub(in crate::engine) fn ended(self) -> bool {
        self == Read::Ended
    }
}

pub(in crate::engine) struct Conn {
    pub(in crate::engine) fd: RawFd,
    pub(in crate::engine) read: Read,
    /// The worker paused receiving (`pause_recv`): a recorded edge waits
    /// for `resume_recv`.
    pub(in crate::engine) paused: bool,
    /// A buffer lent with `recv_into`, and how many bytes it may take.
    pub(in crate::engine) target: Option<(Vec<u8>, usize)>,
    pub(in crate::engine) out: SendQueue,
    /// A write came up short: the rest waits for the writable edge.
    pub(in crate::engine) blocked: bool,
    pub(in crate::engine) writing: Writing,
    /// In the dirty list (output to write at the next wait).
    pub(in crate::engine) dirty: bool,
}

impl Conn {
    pub(in crate::engine) fn new() -> Conn {
        Conn {
            fd: -1,
            read: Read::Waiting,
            paused: false,
            target: None,
            out: SendQueue::default(),
            blocked: false,
            writing: Writing::Open,
            dirty: false,
        }
    }

    /// Ready the slot for a new connection on `fd`, keeping the queue's
    /// memory.
    pub(in crate::engine) fn reset(&mut self, fd: RawFd) {
        self.fd = fd;
        self.read = Read::Waiting;
        self.paused = false;
        self.target = None;
        self.blocked = false;
        self.writing = Writing::Open;
        self.dirty = false;
    }
}

#[cfg(test)]
mod tests {
    use super::Read;

    #[test]
    fn an_edge_makes_the_socket_ready_until_a_read_drains_it() {
        let mut r = Read::Waiting;
        assert!(!r.ready());
        r.edge(false);
        assert_eq!(r, Read::Ready);
        assert!(r.ready() && !r.to_end());
        r.drained();
        assert_eq!(r, Read::Waiting);
        r.drained();
        assert_eq!(r, Read::Waiting);
    }

    #[test]
    fn an_announced_end_is_kept_until_it_is_read() {
        let mut r = Read::Waiting;
        r.edge(true);
        assert!(r.ready() && r.to_end());
        r.edge(false);
        assert_eq!(r, Read::ReadyToEnd, "a later edge does not forget it");
        let mut r = Read::Ready;
        r.edge(true);
        assert_eq!(r, Read::ReadyToEnd);
    }

    #[test]
    fn the_end_is_final() {
        let mut r = Read::Ended;
        r.edge(true);
        r.edge(false);
        r.drained();
        assert_eq!(r, Read::Ended);
        assert!(r.ended() && !r.ready());
    }
}
