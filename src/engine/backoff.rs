//! The rest a listener takes after accept fails for want of resources
//! (EMFILE, ENFILE, ENOBUFS, ENOMEM): `ACCEPT_RETRY` first, doubling up to
//! `ACCEPT_RETRY_MAX` while the errors go on, back to the start after an
//! accept succeeds (nginx rests 500 ms; uvicorn and gunicorn retry at once
//! and spin). Connections already open are served meanwhile; the warning is
//! logged at most once per `ACCEPT_LOG_EVERY`, with the count of those it
//! stood for. Both engines keep one (`op/accept.rs` uses it).

use std::time::{Duration, Instant};

/// How long a listener rests after EMFILE/ENFILE/ENOBUFS/ENOMEM...
pub const ACCEPT_RETRY: Duration = Duration::from_millis(100);
/// ...doubling while the errors go on, up to this.
pub const ACCEPT_RETRY_MAX: Duration = Duration::from_secs(1);
/// At most one "accept failed" warning this often.
const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(1);

/// The rest after accept errors, shared by an engine's listeners (running
/// out of descriptors concerns the whole process).
#[derive(Debug, Default)]
pub struct AcceptBackoff {
    /// The next rest; zero until the first error.
    delay: Duration,
    last_log: Option<Instant>,
    /// Errors not logged since the last warning.
    unlogged: u64,
    /// Rests taken since the engine started (for metrics).
    pub rests: u64,
}

impl AcceptBackoff {
    /// An accept failed with `err`: when the listener may try again.
    pub fn failed(&mut self, err: &std::io::Error, now: Instant) -> Instant {
        self.delay = if self.delay.is_zero() {
            ACCEPT_RETRY
        } else {
            (self.delay * 2).min(ACCEPT_RETRY_MAX)
        };
        self.rests += 1;
        if self
            .last_log
            .is_none_or(|t| now.duration_since(t) >= ACCEPT_LOG_EVERY)
        {
            let more = std::mem::take(&mut self.unlogged);
            let also = if more > 0 {
                format!(" ({more} more since the last report)")
            } else {
                String::new()
            };
            warn!(
                "accept failed: {err}; not accepting for {:?}, open connections are served meanwhile{also}",
                self.delay
            );
            self.last_log = Some(now);
        } else {
            self.unlogged += 1;
        }
        now + self.delay
    }

    /// An accept succeeded: the next error rests `ACCEPT_RETRY` again.
    pub fn succeeded(&mut self) {
        self.delay = Duration::ZERO;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rests_double_up_to_the_limit_and_start_over_after_an_accept() {
        let err = std::io::Error::from_raw_os_error(libc::EMFILE);
        let now = Instant::now();
        let mut b = AcceptBackoff::default();
        let rests: Vec<u64> = (0..6)
            .map(|_| (b.failed(&err, now) - now).as_millis() as u64)
            .collect();
        assert_eq!(rests, [100, 200, 400, 800, 1000, 1000]);
        b.succeeded();
        assert_eq!(b.failed(&err, now) - now, ACCEPT_RETRY);
        assert_eq!(b.rests, 7);
        // One warning for the first error; the others within the second are
        // counted for the next one.
        assert_eq!(b.unlogged, 6);
        b.failed(&err, now + ACCEPT_LOG_EVERY);
        assert_eq!(b.unlogged, 0);
    }
}
