//! One request's life in the sync worker: admission, pre_request, the
//! app call, and what is reported once the response ends.

use std::sync::Arc;
use std::time::Instant;

use pyo3::prelude::*;

use crate::engine::ConnId;
use crate::handoff::{Flow, Job, Ticket};
use crate::http::{self, DateCache, RequestInfo, ResponseWriter};
use crate::sys::shm::{self, Status};
use crate::sys::signal;
use crate::ws;
use crate::wsgi::Reply;

use super::*;

/// What the access log and the post_request hook need once a response ends.
pub(crate) struct RequestDone {
    pub(super) head: http::Head,
    pub(super) status: crate::http::Status,
    pub(super) headers: crate::http::HeaderList,
    pub(super) start_sys: std::time::SystemTime,
    pub(super) start: Instant,
    pub(super) sent: u64,
    pub(super) peer: Arc<str>,
    pub(super) scheme: &'static str,
    /// The environ the app received, kept when post_request or a `{NAME}e`
    /// access-log atom needs it.
    pub(super) environ: Option<Py<PyAny>>,
}

impl RequestDone {
    pub(super) fn report(&self, py: Python<'_>, cfg: &crate::config::Config, age: u64) {
        let environ = self.environ.as_ref().map(|e| e.bind(py));
        if crate::log::access_enabled() {
            let path = http::percent_decode(self.head.path());
            let mut rec =
                crate::log::AccessRecord::for_request(&self.head, &self.peer, self.start_sys);
            rec.path = &path;
            rec.status = status_code(&self.status);
            rec.response_headers = crate::log::Headers::Owned(&self.headers);
            rec.bytes_sent = Some(self.sent);
            rec.duration = self.start.elapsed();
            // `{NAME}e` atoms read the environ the app received, by the name
            // as written in the format, else upper-cased.
            let lookup = |name: &str| {
                let e = environ?;
                let value = e
                    .get_item(name)
                    .or_else(|_| e.get_item(name.to_ascii_uppercase()))
                    .ok()?;
                value.str().ok().map(|s| s.to_string())
            };
            rec.environ = Some(&lookup);
            crate::log::access(&rec);
        }
        let req = crate::hooks::RequestInfo::from_head(&self.head, &self.peer, self.scheme);
        let resp = crate::hooks::ResponseInfo {
            status: &self.status,
            headers: crate::log::Headers::Owned(&self.headers),
            sent: self.sent,
        };
        let _ = crate::hooks::call_post_request(
            py,
            &crate::hooks::WorkerInfo::this_process(cfg, age),
            &req,
            environ,
            &resp,
        );
    }
}

/// The status code at the start of a status line (`200 OK`), 0 if none.
pub(super) fn status_code(status: &[u8]) -> u16 {
    match status.get(..3) {
        Some(&[a, b, c]) if [a, b, c].iter().all(u8::is_ascii_digit) => {
            (a - b'0') as u16 * 100 + (b - b'0') as u16 * 10 + (c - b'0') as u16
        }
        _ => 0,
    }
}

/// A response ended (metrics on): count it in the status table and for statsd.
pub(super) fn response_ended(status: Option<&Status>, code: u16, started: Instant) {
    let took = started.elapsed();
    if let Some(s) = status {
        s.record_response(code, took.as_micros() as u64);
        s.in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
    crate::log::statsd::request(code, took);
}

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
        let shed = (self.max_queued_requests > 0 && queued >= self.max_queued_requests)
            || self.max_queue_wait.is_some_and(|w| waited > w);
        if shed {
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
            let metric_start = (self.metrics && websocket.is_none()).then(|| {
                if let Some(s) = self.status {
                    s.in_flight
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                Instant::now()
            });
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
        let track = self.track;
        let scheme = if c.info.https(&req.head) {
            "https"
        } else {
            "http"
        };
        let started = track.then(|| (std::time::SystemTime::now(), Instant::now(), c.peer_ip()));
        if self.pre_request {
            let ip = c.peer_ip();
            let info = crate::hooks::RequestInfo::from_head(&req.head, &ip, scheme);
            if crate::hooks::call_pre_request(
                py,
                &crate::hooks::WorkerInfo::this_process(self.cfg, self.age),
                &info,
            )
            .is_err()
            {
                http::error_response(&mut c.out, 500, "Internal Server Error");
                c.phase = Phase::CloseAfterSend;
                return;
            }
        }
        let metric_start = self.metrics.then(|| {
            if let Some(s) = self.status {
                s.in_flight
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            started.as_ref().map_or_else(Instant::now, |t| t.1)
        });
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
        let (reply, environ) = self
            .app
            .call_with(py, &req, &c.info, self.keep_environ, direct);
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
                if let Some((start_sys, start, peer)) = started {
                    let done = RequestDone {
                        head: req.head,
                        status: crate::http::Status::from(&b"500 Internal Server Error"[..]),
                        headers: std::sync::Arc::new([]),
                        start_sys,
                        start,
                        sent: (c.out.len() - before) as u64,
                        peer,
                        scheme,
                        environ,
                    };
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
                let done = match started {
                    Some((start_sys, start, peer)) => Some(Box::new(RequestDone {
                        head: req.head,
                        status: head.status,
                        headers: head.headers,
                        start_sys,
                        start,
                        sent: direct_sent,
                        peer,
                        scheme,
                        environ,
                    })),
                    None => {
                        c.http.recycle(req.head);
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

/// The body of the 503 answer to requests shed by admission control.
pub(super) const OVERLOADED_BODY: &[u8] =
    b"Service Unavailable: the server is overloaded, retry shortly.\n";

pub(super) fn overloaded_headers() -> Vec<(Vec<u8>, Vec<u8>)> {
    vec![
        (
            b"Content-Type".to_vec(),
            b"text/plain; charset=utf-8".to_vec(),
        ),
        (b"Retry-After".to_vec(), b"1".to_vec()),
        (
            b"Content-Length".to_vec(),
            OVERLOADED_BODY.len().to_string().into_bytes(),
        ),
    ]
}

/// 503 with Retry-After, for requests shed by admission control.
fn write_overloaded(out: &mut Vec<u8>, date: &mut DateCache, req: RequestInfo) -> bool {
    let mut w = ResponseWriter::start(
        out,
        date,
        req,
        b"503 Service Unavailable",
        &overloaded_headers(),
        None,
        false,
    );
    w.body(out, OVERLOADED_BODY);
    w.finish(out)
}
