//! Per-connection budgets for what costs us more than it costs the client:
//! resets (CVE-2023-44487 "rapid reset", and resets the client provokes),
//! frames that make us answer (SETTINGS, PING) and frames that carry
//! nothing (empty DATA, CONTINUATION, PRIORITY). Each budget is a count per
//! fixed window of time; the clock is the caller's.

use std::time::{Duration, Instant};

/// How long a window lasts.
pub const WINDOW: Duration = Duration::from_secs(10);
/// Streams the client may reset before their response is done, per window.
/// A browser cancels a page's worth of requests at once (about 100, the
/// default concurrency); nginx and h2 allow a few times the concurrency.
pub const RESETS_PER_WINDOW: u32 = 200;
/// Streams we may have to reset for the client's faults, per window
/// (CVE-2025-8671 provokes resets with bad frames instead of sending them).
pub const LOCAL_RESETS_PER_WINDOW: u32 = 200;
/// SETTINGS and PING frames per window: a client sends a few.
pub const ANSWERED_PER_WINDOW: u32 = 100;
/// Frames that carry nothing (empty DATA without END_STREAM, empty
/// CONTINUATION, PRIORITY), per window.
pub const EMPTY_PER_WINDOW: u32 = 1000;

#[derive(Debug)]
pub struct Budget {
    limit: u32,
    used: u32,
    since: Option<Instant>,
}

impl Budget {
    pub fn new(limit: u32) -> Budget {
        Budget {
            limit,
            used: 0,
            since: None,
        }
    }

    /// Count one at `now`: `false` once the window's budget is spent.
    pub fn spend(&mut self, now: Instant) -> bool {
        match self.since {
            Some(start) if now.saturating_duration_since(start) < WINDOW => {}
            _ => {
                self.since = Some(now);
                self.used = 0;
            }
        }
        self.used += 1;
        self.used <= self.limit
    }
}

#[derive(Debug)]
pub struct Floods {
    pub resets: Budget,
    pub local_resets: Budget,
    pub answered: Budget,
    pub empty: Budget,
}

impl Default for Floods {
    fn default() -> Self {
        Floods {
            resets: Budget::new(RESETS_PER_WINDOW),
            local_resets: Budget::new(LOCAL_RESETS_PER_WINDOW),
            answered: Budget::new(ANSWERED_PER_WINDOW),
            empty: Budget::new(EMPTY_PER_WINDOW),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_refills_after_the_window() {
        let t0 = Instant::now();
        let mut b = Budget::new(2);
        assert!(b.spend(t0));
        assert!(b.spend(t0 + Duration::from_secs(1)));
        assert!(!b.spend(t0 + Duration::from_secs(2)));
        assert!(b.spend(t0 + WINDOW + Duration::from_secs(1)));
    }
}
