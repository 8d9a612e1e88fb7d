//! The sending side's course, the same in both engines: open, a FIN
//! asked for and waiting for the queue to drain, the FIN sent, or writing
//! failed. Each engine keeps what it has in flight beside it (io_uring:
//! `uring::conn::SendOp`; epoll: a short write waiting for the writable
//! edge).

/// Where the sending side of a connection is. Output is taken only while
/// `Open`; `Shut` and `Failed` are final.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(in crate::engine) enum Writing {
    #[default]
    Open,
    /// `shutdown_write` was called with output still queued or in flight:
    /// the FIN follows the last byte.
    ShutRequested,
    /// The FIN is sent.
    Shut,
    /// A write failed (`SendFailed` reported); the queue was dropped.
    Failed,
}

impl Writing {
    /// `send` and `send_file` queue output.
    pub(in crate::engine) fn takes_output(self) -> bool {
        self == Writing::Open
    }

    pub(in crate::engine) fn failed(self) -> bool {
        self == Writing::Failed
    }

    /// `shutdown_write`: whether to send the FIN now (nothing is left to
    /// write). Only an open side changes; asking twice changes nothing.
    pub(in crate::engine) fn shut(&mut self, drained: bool) -> bool {
        if *self != Writing::Open {
            return false;
        }
        *self = if drained {
            Writing::Shut
        } else {
            Writing::ShutRequested
        };
        drained
    }

    /// The queue drained: whether the FIN asked for is due now.
    pub(in crate::engine) fn drained(&mut self) -> bool {
        if *self == Writing::ShutRequested {
            *self = Writing::Shut;
            return true;
        }
        false
    }

    /// A write failed; whatever was asked before no longer matters.
    pub(in crate::engine) fn fail(&mut self) {
        *self = Writing::Failed;
    }
}

#[cfg(test)]
mod tests {
    use super::Writing;

    #[test]
    fn shut_with_nothing_queued_sends_the_fin_at_once() {
        let mut w = Writing::Open;
        assert!(w.takes_output());
        assert!(w.shut(true));
        assert_eq!(w, Writing::Shut);
        assert!(!w.takes_output());
        assert!(!w.shut(true), "a second FIN is never sent");
        assert!(!w.drained());
    }

    #[test]
    fn shut_with_output_queued_waits_for_the_drain() {
        let mut w = Writing::Open;
        assert!(!w.shut(false));
        assert_eq!(w, Writing::ShutRequested);
        assert!(
            !w.takes_output(),
            "nothing is queued after the FIN is asked for"
        );
        assert!(!w.shut(true), "asking again changes nothing");
        assert!(w.drained());
        assert_eq!(w, Writing::Shut);
        assert!(!w.drained());
    }

    #[test]
    fn a_failure_is_final() {
        for start in [Writing::Open, Writing::ShutRequested, Writing::Shut] {
            let mut w = start;
            w.fail();
            assert!(w.failed());
            assert!(!w.takes_output());
            assert!(!w.shut(true), "no FIN after a failed write");
            assert!(!w.drained());
            assert_eq!(w, Writing::Failed);
        }
        assert!(!Writing::Open.failed());
    }
}
