//! Our own PING: a connection with streams open that has heard nothing
//! from the client for a while is asked for a PING round trip, and one
//! that does not answer in time is dead (a peer that vanished without
//! closing TCP). Idle connections (no stream) are the caller's keep-alive
//! timer's; a connection the client keeps talking on is never pinged.

use std::time::{Duration, Instant};

use super::conn::{Connection, Liveness, State};
use super::frame;

/// The payload of a liveness PING, told apart from the graceful stop's.
pub const LIVENESS_PING: [u8; 8] = *b"ferro-rt";

/// What `check_liveness` found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// Nothing to do (traffic flows, no stream is open, or a PING is out).
    Fine,
    /// A PING was queued in `output()`.
    Sent,
    /// The PING went unanswered past the bound, and nothing else came:
    /// close the connection.
    Dead,
}

impl Connection {
    /// At `now`: with streams open and nothing received for `silence`,
    /// send a PING; when one has waited `answer_within` with nothing
    /// received since, the client is gone.
    pub fn check_liveness(
        &mut self,
        now: Instant,
        silence: Duration,
        answer_within: Duration,
    ) -> Probe {
        if self.state != State::Open {
            return Probe::Fine;
        }
        match self.liveness {
            Liveness::Asked(at) if self.last_recv > at => {
                // Something came back (the ACK, or any frame): alive.
                self.liveness = Liveness::Quiet;
                Probe::Fine
            }
            Liveness::Asked(at) if now.saturating_duration_since(at) >= answer_within => {
                Probe::Dead
            }
            Liveness::Asked(_) => Probe::Fine,
            Liveness::Quiet => {
                if self.streams.is_empty()
                    || now.saturating_duration_since(self.last_recv) < silence
                {
                    return Probe::Fine;
                }
                frame::write_ping(&mut self.out, false, LIVENESS_PING);
                self.liveness = Liveness::Asked(now);
                Probe::Sent
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::h2::frame::{flag, kind};
    use crate::h2::testing::{frame, Client};

    const SILENCE: Duration = Duration::from_secs(2);
    const ANSWER: Duration = Duration::from_secs(5);

    #[test]
    fn an_idle_connection_is_never_pinged() {
        let mut c = Client::new();
        let later = c.now + Duration::from_secs(60);
        assert_eq!(c.conn.check_liveness(later, SILENCE, ANSWER), Probe::Fine);
        assert!(c.frames().is_empty());
    }

    #[test]
    fn a_silent_connection_with_a_stream_is_pinged_and_the_ack_clears_it() {
        let mut c = Client::new();
        let b = c.get(1, "/slow");
        c.feed(&b);
        let _ = c.frames();
        let t0 = c.now;
        // Within the silence: nothing.
        assert_eq!(
            c.conn
                .check_liveness(t0 + Duration::from_secs(1), SILENCE, ANSWER),
            Probe::Fine
        );
        let t1 = t0 + SILENCE;
        assert_eq!(c.conn.check_liveness(t1, SILENCE, ANSWER), Probe::Sent);
        let out = c.frames();
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].kind, out[0].flags), (kind::PING, 0));
        assert_eq!(out[0].payload, LIVENESS_PING);
        // Only one PING out at a time.
        assert_eq!(
            c.conn
                .check_liveness(t1 + Duration::from_secs(1), SILENCE, ANSWER),
            Probe::Fine
        );
        assert!(c.frames().is_empty());
        // The ACK comes back: quiet again, not dead after the bound.
        c.now = t1 + Duration::from_secs(1);
        c.feed(&frame(kind::PING, flag::ACK, 0, &LIVENESS_PING));
        assert_eq!(
            c.conn.check_liveness(t1 + ANSWER, SILENCE, ANSWER),
            Probe::Fine
        );
        assert!(c.frames().is_empty());
    }

    #[test]
    fn an_unanswered_ping_means_the_client_is_gone() {
        let mut c = Client::new();
        let b = c.get(1, "/slow");
        c.feed(&b);
        let t1 = c.now + SILENCE;
        assert_eq!(c.conn.check_liveness(t1, SILENCE, ANSWER), Probe::Sent);
        assert_eq!(
            c.conn
                .check_liveness(t1 + ANSWER - Duration::from_millis(1), SILENCE, ANSWER),
            Probe::Fine
        );
        assert_eq!(
            c.conn.check_liveness(t1 + ANSWER, SILENCE, ANSWER),
            Probe::Dead
        );
    }

    #[test]
    fn traffic_from_the_client_keeps_pings_away() {
        let mut c = Client::new();
        let b = c.get(1, "/slow");
        c.feed(&b);
        let _ = c.frames();
        for step in 1..10u64 {
            c.now += Duration::from_secs(1);
            c.feed(&frame(kind::WINDOW_UPDATE, 0, 0, &1u32.to_be_bytes()));
            let at = c.now + Duration::from_millis(500);
            assert_eq!(
                c.conn.check_liveness(at, SILENCE, ANSWER),
                Probe::Fine,
                "step {step}"
            );
        }
        assert!(c.frames().iter().all(|f| f.kind != kind::PING));
    }
}
