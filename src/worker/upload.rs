//! Request bodies streamed to ASGI apps, the loop thread's side: the
//! parser hands a request over at its head (`http::Config::stream_bodies`),
//! and its body follows through the request's `Flow` in pieces of at most
//! `BODY_PIECE` bytes, as it arrives.
//!
//! * Backpressure: the socket is not read while the flow's queue is full
//!   (`handoff::BODY_HIGH_WATER`); the app's `receive()` taking a piece
//!   posts `Output::Resume`, and reading goes on.
//! * `Expect: 100-continue` is answered at the app's first `receive()` (its
//!   `Output::Resume`), unless the response has started by then.
//! * An app that answers without reading the whole body: the rest is
//!   dropped as it comes, within `DRAIN_MAX` bytes and `DRAIN_TIME`, and the
//!   connection goes on; past either, or when the client still waits for
//!   its `100 Continue` (it may never send the body), it is closed.
//! * A client that leaves, goes silent for `--body-timeout`, or breaks its
//!   framing mid-body: the app's `receive()` gives `http.disconnect`, and
//!   the connection ends (with the error status when no response started).

use std::time::{Duration, Instant};

use super::conn::Connection;
use super::{response_ended, Phase, Worker};
use crate::asgi::BODY_PIECE;
use crate::engine::ConnId;
use crate::handoff::Inbound;
use crate::http;

/// The most of an unread body dropped to keep the connection (gunicorn
/// drains at most 64 KiB before reusing a connection).
const DRAIN_MAX: u64 = 64 * 1024;
/// How long an unread body may take to arrive once the response is
/// written, before the connection is closed instead.
const DRAIN_TIME: Duration = Duration::from_secs(2);

/// The connection's reading waits for the app to take body pieces.
/// Asked on every step of every connection: a request with nothing in
/// flight (every sync-worker request) is answered by a field test.
#[inline]
pub(super) fn holds_back(c: &Connection) -> bool {
    c.inflight
        .as_ref()
        .is_some_and(|f| c.http.streaming_body() && f.flow.inbound_full())
}

/// The response head being written must say `Connection: close`: the
/// client still waits for a `100 Continue` it will now never get, so
/// whether its body follows is unknown.
pub(super) fn head_must_close(http: &http::Conn) -> bool {
    http.awaits_continue()
}

/// The app called `receive()` (first, or after a full queue): answer a
/// waiting `Expect: 100-continue` unless the response started, and time
/// the client's silence from now (it waited for the app, not we for it).
pub(super) fn resumed(c: &mut Connection, head_sent: bool) {
    if !c.http.streaming_body() {
        return;
    }
    if !head_sent && c.http.take_continue() {
        c.out.extend_from_slice(http::CONTINUE);
    }
    c.last_active = Instant::now();
}

/// The response ended: whether the connection may serve another request
/// as far as the request body is concerned. An unread rest is dropped as
/// it comes (within `DRAIN_MAX`, for `DRAIN_TIME`), or never kept when the
/// connection is to close.
pub(super) fn after_response(c: &mut Connection) -> bool {
    if !c.http.streaming_body() {
        return true;
    }
    let keep = c.http.skip_body(DRAIN_MAX);
    if keep {
        c.drain_until = Some(Instant::now() + DRAIN_TIME);
    }
    keep
}

impl Worker<'_> {
    /// A request whose body streams was answered by the loop itself (shed
    /// with 503, a refused upgrade): its body is dropped like an unread one.
    pub(super) fn unclaimed_body(&mut self, id: ConnId) {
        let Some(c) = self.state.get(id) else { return };
        if c.inflight.is_none() && !after_response(c) {
            c.phase = Phase::CloseAfterSend;
        }
    }

    /// Move the body bytes the parser decoded into the request's flow, in
    /// pieces, while its queue has room.
    pub(super) fn pass_body(&mut self, id: ConnId) {
        let Some(c) = self.state.get(id) else { return };
        if !c.http.streaming_body() {
            return;
        }
        let Some(f) = &c.inflight else { return };
        let flow = &f.flow;
        while !flow.inbound_full() {
            match c.http.take_body(BODY_PIECE) {
                http::BodyEvent::Data(piece) => {
                    flow.push_inbound(Inbound::Body(piece));
                }
                http::BodyEvent::End => {
                    flow.push_inbound(Inbound::BodyEnd);
                    if c.eof {
                        // Held back by the Eof event until the body was in.
                        flow.hang_up();
                    }
                    return;
                }
                http::BodyEvent::NeedMore => return,
                http::BodyEvent::Error(e) => {
                    let ip = c.peer_ip();
                    match e.status() {
                        Some(_) => crate::warn!("Invalid request from ip={ip}: {e}"),
                        None => crate::debug!("Client ip={ip} went away mid-request: {e}"),
                    }
                    return self.body_lost(id, e.status(), &e.detail);
                }
            }
        }
    }

    /// The body will not be complete: the app hears `http.disconnect` (and
    /// its sends fail from now), the client gets `status` if no response
    /// started, and the connection ends.
    fn body_lost(&mut self, id: ConnId, status: Option<u16>, detail: &str) {
        let Some(c) = self.state.get(id) else { return };
        let Some(f) = c.inflight.take() else { return };
        let mut code = f.code;
        if let (Some(status), None) = (status, &f.writer) {
            http::error_response(&mut c.out, status, detail);
            code = status;
            // Before the app hears of it: its access log line says so.
            f.flow.answer(status);
        }
        f.flow.push_inbound(Inbound::BodyLost);
        f.flow.close();
        if let Some(t) = f.metric_start {
            response_ended(self.status, code, t);
        }
        c.phase = Phase::CloseAfterSend;
        self.state.mark_ready(id);
    }

    /// The upload timers (run with the sweep): a client silent mid-body for
    /// `--body-timeout` while the app waits for it (408, or just the end if
    /// the response started), and unread bodies that take too long to drop.
    pub(super) fn sweep_uploads(&mut self, py: pyo3::Python<'_>, now: Instant) {
        let mut silent = Vec::new();
        let mut drained = Vec::new();
        for (i, c) in self.state.conns.iter().enumerate() {
            let Some(c) = c else { continue };
            if c.phase != Phase::Open {
                continue;
            }
            let id = ConnId(i as u32);
            if c.http.skipping_body() {
                let late = c.drain_until.is_some_and(|t| now >= t);
                if late && c.pending_output() == 0 {
                    drained.push(id);
                }
            } else if c.http.streaming_body()
                && c.inflight.is_some()
                // Not while we hold the client back, or it waits for its 100.
                && !c.recv_paused
                && !c.http.awaits_continue()
                && now.saturating_duration_since(c.last_active) >= self.body_timeout
            {
                silent.push(id);
            }
        }
        for id in silent {
            if let Some(c) = self.state.get(id) {
                crate::debug!(
                    "Request timeout for ip={}: the body stopped arriving",
                    c.peer_ip()
                );
            }
            self.body_lost(id, Some(408), "The request did not arrive in time.");
            self.flush(id);
        }
        for id in drained {
            // The response is written: shut down our side and linger.
            self.finish_close(py, id);
        }
    }
}
