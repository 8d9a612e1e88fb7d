//! The timers of HTTP/2 connections, run with the worker's sweep: the
//! final GOAWAY of a graceful stop, responses stalled on a shut window and
//! request bodies that stopped (both `--body-timeout`), and our PING to a
//! silent client (`--keep-alive`, `--timeout`).

use std::time::{Duration, Instant};

use pyo3::prelude::*;

use super::http2::{end_answer, Answer, H2Conn};
use super::Worker;
use crate::engine::ConnId;
use crate::h2::{self, Reason};

/// A graceful stop sends the final GOAWAY this long after the first one
/// when the client has not answered the PING (RFC 9113 6.8: "at least one
/// round-trip time").
const GOAWAY_GRACE: Duration = Duration::from_secs(1);

impl H2Conn {
    /// Reset streams whose queued response data has not moved for `limit`
    /// (the client keeps their window shut), so a client cannot hold a
    /// worker's answer forever. Returns the streams reset, with the app
    /// work to stop for those still being answered.
    pub fn reset_stalled(&mut self, now: Instant, limit: Duration) -> Vec<(u32, Option<Answer>)> {
        let mut expired = Vec::new();
        let conn = &self.conn;
        self.draining.retain(|&s| conn.queued(s) > 0);
        for &stream in self.answers.keys().chain(self.draining.iter()) {
            let queued = self.conn.queued(stream);
            if queued == 0 {
                self.stalled.remove(&stream);
                continue;
            }
            let (since, seen) = self.stalled.entry(stream).or_insert((now, queued));
            if *seen != queued {
                *since = now;
                *seen = queued;
            } else if now.saturating_duration_since(*since) >= limit {
                expired.push(stream);
            }
        }
        self.stalled
            .retain(|s, _| self.answers.contains_key(s) || self.draining.contains(s));
        let mut reset = Vec::with_capacity(expired.len());
        for stream in expired {
            crate::debug!("HTTP/2 stream {stream} stalled on a closed window: reset");
            self.conn.reset(stream, Reason::CANCEL);
            self.stalled.remove(&stream);
            self.draining.remove(&stream);
            reset.push((stream, self.answers.remove(&stream)));
        }
        reset
    }

    /// Reset streams whose request body has had no byte for `limit`: the
    /// app was not called for them (a body is gathered first), as an
    /// HTTP/1.1 request whose body stops is never seen by the app. True if
    /// any was reset.
    pub fn reset_silent_bodies(&mut self, now: Instant, limit: Duration) -> bool {
        let silent: Vec<u32> = self
            .incoming
            .iter()
            .filter(|(_, inc)| now.saturating_duration_since(inc.last) >= limit)
            .map(|(&s, _)| s)
            .collect();
        for &stream in &silent {
            crate::debug!("HTTP/2 stream {stream}: the request body stopped arriving: reset");
            self.incoming.remove(&stream);
            self.conn.reset(stream, Reason::CANCEL);
        }
        !silent.is_empty()
    }

    /// The PING of a graceful stop has had its round trip: final GOAWAY.
    pub fn shutdown_due(&mut self, now: Instant) -> bool {
        match self.stop_sent {
            Some(t) if now.saturating_duration_since(t) >= GOAWAY_GRACE => {
                self.conn.shutdown_now();
                true
            }
            _ => false,
        }
    }
}

impl Worker<'_> {
    /// Timers of HTTP/2 connections at each sweep: the final GOAWAY of a
    /// graceful stop, and responses stalled on the client's window.
    pub(super) fn sweep_h2(&mut self, py: Python<'_>, now: Instant) {
        let mut due = Vec::new();
        let mut dead = Vec::new();
        let limit = self.body_timeout;
        let (silence, answer_within) = liveness_bounds(self.keep_alive, self.cfg.timeout);
        for (i, c) in self.state.conns.iter_mut().enumerate() {
            if let Some(h) = c.as_mut().and_then(|c| c.h2.as_deref_mut()) {
                let mut touched = h.shutdown_due(now);
                let stalled = h.reset_stalled(now, limit);
                touched |= !stalled.is_empty();
                for answer in stalled.into_iter().filter_map(|(_, a)| a) {
                    end_answer(py, answer, self.status);
                }
                touched |= h.reset_silent_bodies(now, limit);
                match answer_within.map(|bound| h.conn.check_liveness(now, silence, bound)) {
                    Some(h2::Probe::Dead) => dead.push(ConnId(i as u32)),
                    Some(h2::Probe::Sent) => touched = true,
                    _ => {}
                }
                if touched {
                    due.push(ConnId(i as u32));
                }
            }
        }
        for id in due {
            self.state.mark_ready(id);
        }
        for id in dead {
            if let Some(c) = self.state.get(id) {
                crate::debug!(
                    "HTTP/2 client ip={} did not answer a PING: closing",
                    c.peer_ip()
                );
            }
            self.close(py, id);
        }
    }
}

/// Our PING's bounds: a connection with streams open and a silent client
/// is pinged after `--keep-alive` seconds (at least one: a kept-alive
/// HTTP/1.1 client is given that long to speak), and is closed when the
/// answer has not come within `--timeout` (the bound on a silent worker;
/// 0, no bound, sends no PING).
fn liveness_bounds(keep_alive: Duration, timeout: u32) -> (Duration, Option<Duration>) {
    let silence = keep_alive.max(Duration::from_secs(1));
    let answer_within = (timeout > 0).then(|| Duration::from_secs(u64::from(timeout)));
    (silence, answer_within)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::h2::frame::kind;
    use crate::h2::testing::{frame, frames_of};
    use crate::handoff::Flow;
    use crate::worker::http2::tests::{data, job, post, resets, rig, take};
    use std::sync::Arc;

    const LIMIT: Duration = Duration::from_secs(5);

    #[test]
    fn a_silent_request_body_is_reset_and_the_others_go_on() {
        let (mut client, mut h) = rig();
        let t0 = client.now;
        let mut bytes = post(&mut client, 1);
        bytes.extend(post(&mut client, 3));
        h.conn.feed(&bytes, t0);
        let _ = take(&mut h, t0);
        let _ = frames_of(&mut h.conn);
        // Stream 3 keeps sending; stream 1 says nothing more.
        let t1 = t0 + Duration::from_secs(3);
        h.conn.feed(&data(3, b"more", false), t1);
        let _ = take(&mut h, t1);
        assert!(!h.reset_silent_bodies(t0 + LIMIT - Duration::from_millis(1), LIMIT));
        assert!(h.reset_silent_bodies(t0 + LIMIT, LIMIT));
        let frames = frames_of(&mut h.conn);
        assert_eq!(resets(&frames), [(1, Reason::CANCEL)]);
        assert!(h.incoming.contains_key(&3) && !h.incoming.contains_key(&1));
        // Stream 3 still completes.
        h.conn.feed(&data(3, b"!", true), t1);
        let taken = take(&mut h, t1);
        assert_eq!(taken.ready.len(), 1);
        assert_eq!(taken.ready[0].0, 3);
    }

    #[test]
    fn a_graceful_stop_sends_the_final_goaway_after_the_grace() {
        let (mut client, mut h) = rig();
        let now = client.now;
        let get = client.get(1, "/");
        h.conn.feed(&get, now);
        let _ = take(&mut h, now);
        h.shutdown(now);
        let frames = frames_of(&mut h.conn);
        let kinds: Vec<u8> = frames.iter().map(|f| f.kind).collect();
        assert_eq!(kinds, [kind::PING, kind::GOAWAY]);
        assert_eq!(frames[1].goaway_last(), 0x7FFF_FFFF);
        // A second stop signal changes nothing.
        h.shutdown(now + Duration::from_millis(10));
        assert!(!h.shutdown_due(now + GOAWAY_GRACE - Duration::from_millis(1)));
        assert!(frames_of(&mut h.conn).is_empty());
        assert!(h.shutdown_due(now + GOAWAY_GRACE));
        let frames = frames_of(&mut h.conn);
        assert_eq!(frames.len(), 1);
        assert_eq!((frames[0].kind, frames[0].goaway_last()), (kind::GOAWAY, 1));
        // Stream 1 is still served; then the connection is done.
        assert!(!h.conn.is_done());
        h.conn
            .send_response(1, 200, std::iter::empty(), true)
            .unwrap();
        assert!(h.conn.is_done());
    }

    /// Stream 1 asked for a big response, whose head is out and whose data
    /// comes next: the connection, and the time it began.
    fn big_response_started() -> (H2Conn, Instant) {
        let (mut client, mut h) = rig();
        let t0 = client.now;
        let get = client.get(1, "/big");
        h.conn.feed(&get, t0);
        let _ = take(&mut h, t0);
        let flow = Arc::new(Flow::new());
        h.answers.insert(1, job(1, &flow));
        h.conn
            .send_response(1, 200, std::iter::empty(), false)
            .unwrap();
        (h, t0)
    }

    #[test]
    fn a_response_stalled_on_a_shut_window_is_reset_after_the_limit() {
        let (mut h, t0) = big_response_started();
        let queued = h.conn.send_data(1, &[0u8; 100_000], false).unwrap();
        assert!(queued > 0);
        // The timer starts when the stall is first seen.
        assert!(h.reset_stalled(t0, LIMIT).is_empty());
        assert!(h.reset_stalled(t0 + LIMIT / 2, LIMIT).is_empty());
        let reset = h.reset_stalled(t0 + LIMIT, LIMIT);
        assert!(matches!(reset[..], [(1, Some(Answer::Job { .. }))]));
        let frames = frames_of(&mut h.conn);
        assert_eq!(resets(&frames), [(1, Reason::CANCEL)]);
        assert!(h.answers.is_empty() && h.stalled.is_empty());
    }

    #[test]
    fn moving_data_restarts_the_stall_timer() {
        let (mut h, t0) = big_response_started();
        h.conn.send_data(1, &[0u8; 100_000], false).unwrap();
        assert!(h.reset_stalled(t0, LIMIT).is_empty());
        // Some window comes back at t1: data moves, the timer restarts.
        let t1 = t0 + LIMIT - Duration::from_secs(1);
        let update = frame(kind::WINDOW_UPDATE, 0, 1, &1000u32.to_be_bytes());
        let conn_update = frame(kind::WINDOW_UPDATE, 0, 0, &1000u32.to_be_bytes());
        h.conn.feed(&[update, conn_update].concat(), t1);
        assert!(h.reset_stalled(t1, LIMIT).is_empty());
        assert!(h.reset_stalled(t0 + LIMIT, LIMIT).is_empty());
        assert_eq!(h.reset_stalled(t1 + LIMIT, LIMIT).len(), 1);
    }

    #[test]
    fn liveness_follows_keep_alive_and_timeout() {
        let (silence, bound) = liveness_bounds(Duration::from_secs(2), 30);
        assert_eq!(silence, Duration::from_secs(2));
        assert_eq!(bound, Some(Duration::from_secs(30)));
        // Keep-alive 0 still leaves the client a second of silence.
        assert_eq!(
            liveness_bounds(Duration::ZERO, 30).0,
            Duration::from_secs(1)
        );
        // No --timeout: no PING.
        assert_eq!(liveness_bounds(Duration::from_secs(2), 0).1, None);
    }
}
