//! A parsed request's way to the app: the WebSocket handshake, admission,
//! then either the hand-off to app threads or the asyncio loop, or the
//! sync worker's own call of the app (its life in `request.rs`).

use std::sync::Arc;
use std::time::Instant;

use pyo3::prelude::*;

use crate::engine::ConnId;
use crate::handoff::{Flow, Job, Ticket};
use crate::http::{self, RequestInfo, ResponseWriter};
use crate::sys::shm;
use crate::sys::signal;
use crate::ws;
use crate::wsgi::Reply;

use super::*;

impl Worker<'_> {
    pub(super) fn respond(&mut self, py: Python<'_>, id: ConnId, req: http::Request) {
        let Some(req) = self.upgrade_h2c(py, id, req) else {
            return;
        };
        let stopping = self.stopping.is_some();
        let force_close = stopping || self.keep_alive.is_zero();
        let Some(c) = self.state.get(id) else {
            return;
        };
        c.requests += 1;
        let req_info = RequestInfo {
            version: req.head.version,
            is_head: req.head.is_head(),
            keep_alive: req.keep_alive,
        };
        let mut websocket = None;
        if self.asgi && websocket::asks_upgrade(&req.head) {
            match ws::check(&req.head, &self.ws.cfg) {
                ws::Handshake::NotUpgrade => {}
                ws::Handshake::Reject(r) => {
                    crate::debug!(
                        "Invalid WebSocket upgrade from ip={}: {}",
                        c.peer_ip(),
                        r.detail
                    );
                    c.out.extend_from_slice(&r.response());
                    c.phase = Phase::CloseAfterSend;
                    return;
                }
                ws::Handshake::Upgrade(u) => websocket = Some(u),
            }
        }
        let waited = c.last_active.elapsed();
        let queued = match &self.runner {
            Some(r) => r.backlog(),
            None => self.batch_calls,
        };
        if self.policy.sheds(queued, waited) {
            crate::debug!(
                "Overloaded: 503 for a request that waited {:.3} s",
                waited.as_secs_f64()
            );
            if let Some(s) = self.status {
                s.record_shed(shm::coarse_monotonic_ms());
            }
            if !write_overloaded(&mut c.out, &mut self.date, req_info) {
                c.phase = Phase::CloseAfterSend;
            }
            return;
        }
        self.batch_calls += 1;
        if let Some(runner) = &self.runner {
            self.next_serial += 1;
            let serial = self.next_serial;
            let flow = Arc::new(Flow::new());
            // A WebSocket is not a response in flight for the metrics.
            let metric_start = (self.policy.metrics && websocket.is_none())
                .then(|| response_started(self.status, Instant::now()));
            let subprotocols = websocket.as_ref().map(|u| u.subprotocols.clone());
            if let Some(upgrade) = websocket {
                // The connection leaves HTTP: what follows the request is
                // WebSocket frames, and the parser's memory goes back.
                let early = c.http.take_buffered();
                c.ws = Some(Box::new(websocket::WsConn::new(upgrade, early)));
            }
            c.inflight = Some(InFlight {
                serial,
                flow: flow.clone(),
                req: req_info,
                force_close: force_close || subprotocols.is_some(),
                writer: None,
                metric_start,
                code: 0,
                body_unflushed: 0,
                body_handed: 0,
            });
            if c.eof {
                flow.hang_up();
            }
            let job = Job {
                ticket: Ticket { conn: id.0, serial },
                req,
                conn: c.info.clone(),
                flow,
                arrived: c.request_started.unwrap_or_else(Instant::now),
                closing: force_close,
                websocket: subprotocols,
            };
            let upgraded = job.websocket.is_some();
            runner.submit(job);
            if upgraded {
                let st = &mut self.state;
                if let Some(Some(c)) = st.conns.get_mut(id.index()) {
                    st.parsers.keep(&mut c.http);
                }
            }
            self.count_request();
            return;
        }
        let https = c.info.https(&req.head);
        let begun = match self
            .policy
            .begin(py, self.cfg, self.age, &req.head, https, || c.peer_ip())
        {
            Ok(begun) => begun,
            Err(_) => {
                http::error_response(&mut c.out, 500, "Internal Server Error");
                c.phase = Phase::CloseAfterSend;
                return;
            }
        };
        let metric_start = self
            .policy
            .metrics
            .then(|| response_started(self.status, begun.started()));
        if let Some(s) = self.status {
            s.begin_call(
                shm::coarse_monotonic_ms(),
                req.head.method(),
                req.head.target(),
            );
        }
        // write() goes straight to the socket while nothing else is queued for it.
        let direct = match (c.tls.is_none() && c.pending_output() == 0)
            .then(|| self.engine.raw_fd(id))
            .flatten()
        {
            Some(fd) => {
                self.direct.prepare(fd, req_info, force_close);
                Some(self.direct.clone() as Arc<dyn crate::wsgi::WriteSink>)
            }
            None => None,
        };
        let used_direct = direct.is_some();
        let (reply, environ) =
            self.app
                .call_with(py, &req, &c.info, self.policy.keep_environ, direct);
        let (streamed_writer, direct_failed, direct_sent) = if used_direct {
            self.direct.finish()
        } else {
            (None, false, 0)
        };
        if let Some(s) = self.status {
            s.end_call();
        }
        self.count_request();
        let Some(c) = self.state.get(id) else {
            return;
        };
        if direct_failed {
            c.broken = true;
        }
        match reply {
            Reply::Failed if streamed_writer.is_some() => {
                // The head already went out with write(): end the connection.
                c.phase = Phase::CloseAfterSend;
                if let Some(t) = metric_start {
                    response_ended(self.status, 500, t);
                }
            }
            Reply::Failed => {
                let before = c.out.len();
                http::error_response(&mut c.out, 500, "Internal Server Error");
                c.phase = Phase::CloseAfterSend;
                if let Some(t) = metric_start {
                    response_ended(self.status, 500, t);
                }
                let status = crate::http::Status::from(&b"500 Internal Server Error"[..]);
                if let Ok(mut done) = begun.finish(req.head, status, Arc::new([]), environ) {
                    done.sent = (c.out.len() - before) as u64;
                    done.report(py, self.cfg, self.age);
                }
            }
            Reply::Response { head, body } => {
                conn::reuse_output(&mut c.out, &mut self.engine);
                let writer = match streamed_writer {
                    Some(w) if body.head_streamed() => w,
                    _ => ResponseWriter::start(
                        &mut c.out,
                        &mut self.date,
                        req_info,
                        &head.status,
                        &head.headers,
                        body.known_len(),
                        force_close,
                    ),
                };
                let metric = metric_start.map(|t| (status_code(&head.status), t));
                let done = match begun.finish(req.head, head.status, head.headers, environ) {
                    Ok(mut done) => {
                        done.sent = direct_sent;
                        Some(done)
                    }
                    Err(head) => {
                        c.http.recycle(head);
                        None
                    }
                };
                c.stream = Some(Stream {
                    writer,
                    body,
                    done,
                    metric,
                });
            }
        }
    }

    /// One more request answered: count it, and ask for a replacement at `--max-requests`.
    pub(super) fn count_request(&mut self) {
        if let Some(s) = self.status {
            s.requests
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        self.requests += 1;
        if self.max_requests == Some(self.requests) {
            crate::info!(
                "Autorestarting worker after current request ({} requests).",
                self.requests
            );
            if let Some(s) = self.status {
                s.state
                    .fetch_or(shm::REPLACE, std::sync::atomic::Ordering::AcqRel);
                signal::poke(self.wake_fd);
            }
        }
    }
}
