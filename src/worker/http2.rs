//! HTTP/2 connections, the loop thread's side: when a connection becomes
//! HTTP/2 (ALPN `h2`, the h2c preface from a trusted peer), its streams'
//! requests, handed to the app one at a time in the sync worker or each
//! as its own job with `--threads` and ASGI, and their responses framed
//! under the stream and connection windows (`h2::Connection`).
//!
//! A request is the same `http::Request` the HTTP/1.1 parser gives, so
//! the bridges, hooks, access log and metrics serve it unchanged.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pyo3::prelude::*;

use super::lifecycle::{response_ended, status_code, RequestDone};
use super::{Phase, Worker, OUTPUT_HIGH_WATER};
use crate::config::Http2;
use crate::engine::ConnId;
use crate::h2::{self, h2c, Event, Reason};
use crate::handoff::{Flow, Job, Output, Ticket};
use crate::http;
use crate::sys::shm;
use crate::wsgi::{Chunk, Reply};

/// A graceful stop sends the final GOAWAY this long after the first one
/// when the client has not answered the PING (RFC 9113 6.8: "at least one
/// round-trip time").
const GOAWAY_GRACE: Duration = Duration::from_secs(1);

/// The core's settings from `--http2-*`.
pub(super) fn settings(cfg: &Http2) -> h2::Settings {
    h2::Settings {
        max_concurrent_streams: cfg.max_concurrent_streams,
        initial_window_size: cfg.initial_window_size,
        max_frame_size: cfg.max_frame_size,
        max_header_list_size: cfg.max_header_list_size,
    }
}

/// A stream's request while its body arrives.
struct Incoming {
    head: http::Head,
    body: http::BodyWriter,
}

/// A stream whose response is being produced.
enum Answer {
    /// By an app thread or the asyncio loop (`--threads`, ASGI).
    Job {
        serial: u64,
        flow: Arc<Flow>,
        /// Body bytes handed to the connection, and those reported written.
        handed: usize,
        reported: usize,
        head_sent: bool,
        /// A HEAD request: the response has no body.
        is_head: bool,
        code: u16,
        metric_start: Option<Instant>,
    },
    /// By the sync worker, in the loop thread: the body being pulled.
    Inline {
        body: crate::wsgi::Body,
        done: Option<Box<RequestDone>>,
        metric: Option<(u16, Instant)>,
    },
}

/// One HTTP/2 connection of the worker.
pub(super) struct H2Conn {
    pub conn: h2::Connection,
    incoming: HashMap<u32, Incoming>,
    /// Complete requests the sync worker has not started, in order.
    waiting: VecDeque<(u32, http::Request)>,
    answers: HashMap<u32, Answer>,
    /// When a graceful stop sent its first GOAWAY.
    stop_sent: Option<Instant>,
}

impl H2Conn {
    pub fn new(conn: h2::Connection) -> H2Conn {
        H2Conn {
            conn,
            incoming: HashMap::new(),
            waiting: VecDeque::new(),
            answers: HashMap::new(),
            stop_sent: None,
        }
    }

    /// No stream is open or being answered: the keep-alive timer runs.
    pub fn is_idle(&self) -> bool {
        self.conn.active_streams() == 0
            && self.incoming.is_empty()
            && self.waiting.is_empty()
            && self.answers.is_empty()
    }

    /// Begin a graceful stop (TERM, HUP, --max-requests).
    pub fn shutdown(&mut self, now: Instant) {
        if self.stop_sent.is_none() {
            self.conn.shutdown();
            self.stop_sent = Some(now);
        }
    }

    /// The connection left: stop whatever the app side is doing for it.
    pub fn drop_answers(&mut self, py: Python<'_>, status: Option<&shm::Status>) {
        for (_, answer) in self.answers.drain() {
            end_answer(py, answer, status);
        }
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

fn end_answer(py: Python<'_>, answer: Answer, status: Option<&shm::Status>) {
    match answer {
        Answer::Job {
            flow, metric_start, ..
        } => {
            flow.close();
            if let (Some(_), Some(s)) = (metric_start, status) {
                s.in_flight
                    .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        Answer::Inline { body, metric, .. } => {
            body.close(py);
            if let (Some(_), Some(s)) = (metric, status) {
                s.in_flight
                    .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }
}

/// The response fields of an app's head, for `send_response`.
fn fields(headers: &http::HeaderList) -> impl Iterator<Item = (&[u8], &[u8])> {
    headers.iter().map(|(n, v)| (n.as_slice(), v.as_slice()))
}

impl Worker<'_> {
    /// Whether a connection that has not served a request should become
    /// HTTP/2 now: ALPN chose `h2`, or a trusted cleartext peer sent the
    /// preface. Returns true when it did (or a refusal was queued).
    pub(super) fn start_h2(&mut self, id: ConnId) -> bool {
        let http2 = &self.cfg.http2;
        if !http2.enabled() {
            return false;
        }
        let peer = match self.state.get(id) {
            Some(c) if c.requests == 0 && c.ws.is_none() && c.h2.is_none() => c.peer,
            _ => return false,
        };
        let trusted = self.state.trust_for(peer).forwarded;
        let Some(c) = self.state.get(id) else {
            return false;
        };
        let is_h2 = match &c.tls {
            Some(tls) => {
                if tls.is_handshaking() || tls.alpn() != Some(b"h2") {
                    return false;
                }
                true
            }
            None => {
                if !(http2.cleartext.prior_knowledge() && trusted) {
                    return false;
                }
                match h2c::detect_preface(c.http.pending()) {
                    h2c::Preface::H2 => true,
                    h2c::Preface::Undecided => return c.http.buffered() > 0,
                    h2c::Preface::Other => {
                        if http2.cleartext.upgrade() {
                            return false;
                        }
                        // Prior knowledge only: a trusted peer is expected to
                        // speak HTTP/2 (gunicorn 27 answers 400 too).
                        crate::debug!(
                            "ip={} sent no HTTP/2 preface on a prior-knowledge port",
                            c.peer_ip()
                        );
                        http::error_response(
                            &mut c.out,
                            400,
                            "Expected the HTTP/2 connection preface.",
                        );
                        c.phase = Phase::CloseAfterSend;
                        return true;
                    }
                }
            }
        };
        if !is_h2 {
            return false;
        }
        let early = c.http.take_buffered();
        let mut conn = h2::Connection::new(settings(http2), Instant::now());
        conn.feed(&early, Instant::now());
        c.h2 = Some(Box::new(H2Conn::new(conn)));
        let st = &mut self.state;
        if let Some(Some(c)) = st.conns.get_mut(id.index()) {
            st.parsers.keep(&mut c.http);
        }
        if self.stopping.is_some() {
            if let Some(h) = self.state.get(id).and_then(|c| c.h2.as_deref_mut()) {
                h.shutdown(Instant::now());
            }
        }
        true
    }

    /// `Upgrade: h2c` on an HTTP/1.1 request from a trusted peer: answer
    /// 101 and serve the request as stream 1. Gives the request back when
    /// it is not an upgrade this server takes.
    pub(super) fn upgrade_h2c(
        &mut self,
        py: Python<'_>,
        id: ConnId,
        req: http::Request,
    ) -> Option<http::Request> {
        let http2 = &self.cfg.http2;
        if !http2.cleartext.upgrade() {
            return Some(req);
        }
        let Some(settings_value) = h2c::upgrade_request(&req.head) else {
            return Some(req);
        };
        let (peer, tls) = match self.state.get(id) {
            Some(c) => (c.peer, c.tls.is_some()),
            None => return None,
        };
        if tls || !self.state.trust_for(peer).forwarded {
            return Some(req);
        }
        let value = settings_value.to_vec();
        let body = req.body;
        let conn =
            match h2::Connection::from_upgrade(settings(http2), req.head, &value, Instant::now()) {
                Ok(conn) => conn,
                Err(e) => {
                    let c = self.state.get(id)?;
                    crate::debug!("Invalid h2c upgrade from ip={}: {e}", c.peer_ip());
                    http::error_response(&mut c.out, 400, "Invalid HTTP2-Settings.");
                    c.phase = Phase::CloseAfterSend;
                    return None;
                }
            };
        let c = self.state.get(id)?;
        c.out.extend_from_slice(h2c::SWITCHING_PROTOCOLS);
        let early = c.http.take_buffered();
        let mut h = H2Conn::new(conn);
        // The upgrade request's body was read as HTTP/1.1: stream 1 gets it.
        let mut pending_body = Some(body);
        while let Some(ev) = h.conn.poll() {
            if let Event::Request { stream, head, .. } = ev {
                let body = pending_body.take().unwrap_or_default();
                h.waiting.push_back((
                    stream,
                    http::Request {
                        head,
                        body,
                        keep_alive: true,
                        proxy: None,
                    },
                ));
            }
        }
        h.conn.feed(&early, Instant::now());
        c.h2 = Some(Box::new(h));
        let st = &mut self.state;
        if let Some(Some(c)) = st.conns.get_mut(id.index()) {
            st.parsers.keep(&mut c.http);
        }
        self.step_h2(py, id);
        None
    }

    /// Move an HTTP/2 connection forward: take its events, start what is
    /// complete, pull inline bodies, and write what the core framed.
    pub(super) fn step_h2(&mut self, py: Python<'_>, id: ConnId) {
        let body_cfg = self.state.http.clone();
        let mut ready = Vec::new();
        let mut closed = false;
        {
            let Some(c) = self.state.get(id) else { return };
            let ip = c.peer_ip();
            let Some(h) = c.h2.as_deref_mut() else { return };
            while let Some(ev) = h.conn.poll() {
                match ev {
                    Event::Request {
                        stream,
                        head,
                        end_stream,
                    } => {
                        if end_stream {
                            ready.push((stream, head, http::RequestBody::default()));
                            continue;
                        }
                        match http::BodyWriter::new(None, &body_cfg) {
                            Ok(body) => {
                                h.incoming.insert(stream, Incoming { head, body });
                            }
                            Err(e) => {
                                crate::error!("Cannot store a request body from ip={ip}: {e}");
                                h.conn.reset(stream, Reason::INTERNAL_ERROR);
                            }
                        }
                    }
                    Event::Data {
                        stream,
                        data,
                        end_stream,
                    } => {
                        h.conn.release(stream, data.len());
                        let Some(inc) = h.incoming.get_mut(&stream) else {
                            continue;
                        };
                        if let Err(e) = inc.body.write(&data, &body_cfg) {
                            crate::warn!("Invalid request from ip={ip}: {e}");
                            h.incoming.remove(&stream);
                            h.conn.reset(stream, Reason::REFUSED_STREAM);
                            continue;
                        }
                        if end_stream {
                            if let Some(inc) = h.incoming.remove(&stream) {
                                finish_incoming(h, stream, inc, &mut ready, &ip);
                            }
                        }
                    }
                    Event::Trailers { stream, .. } => {
                        if let Some(inc) = h.incoming.remove(&stream) {
                            finish_incoming(h, stream, inc, &mut ready, &ip);
                        }
                    }
                    Event::Reset { stream, .. } => {
                        h.incoming.remove(&stream);
                        h.waiting.retain(|(s, _)| *s != stream);
                        if let Some(answer) = h.answers.remove(&stream) {
                            end_answer(py, answer, self.status);
                        }
                    }
                    Event::Writable { .. } | Event::GoAway { .. } => {}
                    Event::Closed { error } => {
                        if let Some(e) = error {
                            crate::debug!("HTTP/2 connection error from ip={ip}: {e}");
                        }
                        closed = true;
                    }
                }
            }
        }
        for (stream, head, body) in ready {
            let req = http::Request {
                head,
                body,
                keep_alive: true,
                proxy: None,
            };
            if self.runner.is_some() {
                self.submit_h2(id, stream, req);
            } else if let Some(h) = self.state.get(id).and_then(|c| c.h2.as_deref_mut()) {
                h.waiting.push_back((stream, req));
            }
        }
        if self.runner.is_none() {
            self.serve_inline_h2(py, id);
        } else {
            // The request of an `Upgrade: h2c` waits here for its job.
            let upgraded = match self.state.get(id).and_then(|c| c.h2.as_deref_mut()) {
                Some(h) => std::mem::take(&mut h.waiting),
                None => VecDeque::new(),
            };
            for (stream, req) in upgraded {
                self.submit_h2(id, stream, req);
            }
            self.credit_h2(id);
        }
        let Some(c) = self.state.get(id) else { return };
        let Some(h) = c.h2.as_deref_mut() else { return };
        if closed || h.conn.is_done() {
            h.drop_answers(py, self.status);
            c.phase = Phase::CloseAfterSend;
        }
        let out = h.conn.output();
        if !out.is_empty() {
            super::reuse_output(&mut c.out, &mut self.engine);
            c.out.extend_from_slice(out);
            let n = out.len();
            h.conn.consume_output(n);
        }
        self.flush(id);
    }

    /// `--threads` / ASGI: each stream is a job of its own.
    fn submit_h2(&mut self, id: ConnId, stream: u32, req: http::Request) {
        let Some(runner) = &self.runner else { return };
        let Some(c) = self.state.get(id) else { return };
        c.requests += 1;
        let queued = runner.backlog();
        if self.max_queued_requests > 0 && queued >= self.max_queued_requests {
            if let Some(s) = self.status {
                s.record_shed(shm::coarse_monotonic_ms());
            }
            if let Some(h) = c.h2.as_deref_mut() {
                overloaded(&mut h.conn, stream);
            }
            return;
        }
        self.next_serial += 1;
        let serial = self.next_serial;
        let flow = Arc::new(Flow::new());
        let metric_start = self.metrics.then(|| {
            if let Some(s) = self.status {
                s.in_flight
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Instant::now()
        });
        let is_head = req.head.is_head();
        let job = Job {
            ticket: Ticket { conn: id.0, serial },
            req,
            conn: c.info.clone(),
            flow: flow.clone(),
            arrived: Instant::now(),
            closing: false,
            websocket: None,
        };
        if let Some(h) = c.h2.as_deref_mut() {
            h.answers.insert(
                stream,
                Answer::Job {
                    serial,
                    flow,
                    handed: 0,
                    reported: 0,
                    head_sent: false,
                    is_head,
                    code: 0,
                    metric_start,
                },
            );
        }
        runner.submit(job);
        self.count_request();
    }

    /// Tell each job's app side how much of what it handed over has left
    /// its stream (the stream's window is its backpressure), while the
    /// connection's own output is not backed up.
    fn credit_h2(&mut self, id: ConnId) {
        let Some(c) = self.state.get(id) else { return };
        if c.queued + c.out.len() >= OUTPUT_HIGH_WATER {
            return;
        }
        let Some(h) = c.h2.as_deref_mut() else { return };
        for (stream, answer) in h.answers.iter_mut() {
            if let Answer::Job {
                flow,
                handed,
                reported,
                ..
            } = answer
            {
                let gone = handed.saturating_sub(h.conn.queued(*stream));
                if gone > *reported {
                    flow.written(gone - *reported);
                    *reported = gone;
                }
            }
        }
    }

    /// What an app thread or the asyncio loop posted for a stream.
    pub(super) fn h2_mail(&mut self, id: ConnId, ticket: Ticket, out: Output) {
        let status = self.status;
        let Some(c) = self.state.get(id) else { return };
        let Some(h) = c.h2.as_deref_mut() else { return };
        let found = h.answers.iter().find_map(|(s, a)| match a {
            Answer::Job { serial, .. } if *serial == ticket.serial => Some(*s),
            _ => None,
        });
        let Some(stream) = found else { return };
        let Some(Answer::Job {
            flow,
            handed,
            reported,
            head_sent,
            is_head,
            code,
            ..
        }) = h.answers.get_mut(&stream)
        else {
            return;
        };
        let mut ended = None;
        match out {
            Output::Head {
                status, headers, ..
            } => {
                *code = status_code(&status);
                *head_sent = h
                    .conn
                    .send_response(stream, *code, fields(&headers), *is_head)
                    .is_ok();
            }
            Output::Data(data) => {
                *handed += data.len();
                if *is_head || h.conn.send_data(stream, &data, false).is_err() {
                    // Not sent (no body for HEAD, or the stream is gone):
                    // written as far as the app side is concerned.
                    *reported += data.len();
                    flow.written(data.len());
                }
            }
            Output::End => {
                if *is_head && *head_sent {
                    // The head ended the stream.
                } else if *head_sent {
                    let _ = h.conn.send_data(stream, &[], true);
                } else {
                    internal_error(&mut h.conn, stream);
                    *code = 500;
                }
                ended = Some(*code);
            }
            Output::Failed => {
                if *head_sent {
                    h.conn.reset(stream, Reason::INTERNAL_ERROR);
                } else {
                    internal_error(&mut h.conn, stream);
                    *code = 500;
                }
                ended = Some(*code);
            }
            // HTTP/2 has no 101: WebSocket messages and early hints do not apply.
            Output::EarlyHints(_)
            | Output::Accept { .. }
            | Output::Message(_)
            | Output::Close { .. }
            | Output::Resume => {}
        }
        if let Some(code) = ended {
            if let Some(Answer::Job {
                flow,
                handed,
                reported,
                metric_start,
                ..
            }) = h.answers.remove(&stream)
            {
                flow.written(handed.saturating_sub(reported));
                if let Some(t) = metric_start {
                    response_ended(status, code, t);
                }
            }
            c.last_active = Instant::now();
        }
        self.state.mark_ready(id);
    }

    /// The sync worker: serve waiting streams one at a time, pulling the
    /// current body while its stream and the connection have room.
    fn serve_inline_h2(&mut self, py: Python<'_>, id: ConnId) {
        loop {
            let Some(c) = self.state.get(id) else { return };
            let Some(h) = c.h2.as_deref_mut() else { return };
            let current = h
                .answers
                .iter()
                .find_map(|(s, a)| matches!(a, Answer::Inline { .. }).then_some(*s));
            match current {
                Some(stream) => {
                    if !self.pump_h2(py, id, stream) {
                        return;
                    }
                }
                None => {
                    let Some((stream, req)) = h.waiting.pop_front() else {
                        return;
                    };
                    self.call_h2(py, id, stream, req);
                }
            }
        }
    }

    /// Call the app for one stream (sync worker).
    fn call_h2(&mut self, py: Python<'_>, id: ConnId, stream: u32, req: http::Request) {
        let Some(c) = self.state.get(id) else { return };
        c.requests += 1;
        let scheme = if c.info.https(&req.head) {
            "https"
        } else {
            "http"
        };
        let waited = c.last_active.elapsed();
        let shed = (self.max_queued_requests > 0 && self.batch_calls >= self.max_queued_requests)
            || self.max_queue_wait.is_some_and(|w| waited > w);
        if shed {
            if let Some(s) = self.status {
                s.record_shed(shm::coarse_monotonic_ms());
            }
            if let Some(h) = c.h2.as_deref_mut() {
                overloaded(&mut h.conn, stream);
            }
            return;
        }
        self.batch_calls += 1;
        let started = self
            .track
            .then(|| (std::time::SystemTime::now(), Instant::now(), c.peer_ip()));
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
                if let Some(h) = c.h2.as_deref_mut() {
                    internal_error(&mut h.conn, stream);
                }
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
        let (reply, environ) = self
            .app
            .call_with(py, &req, &c.info, self.keep_environ, None);
        if let Some(s) = self.status {
            s.end_call();
        }
        self.count_request();
        let Some(c) = self.state.get(id) else { return };
        let Some(h) = c.h2.as_deref_mut() else { return };
        match reply {
            Reply::Failed => {
                internal_error(&mut h.conn, stream);
                if let Some(t) = metric_start {
                    response_ended(self.status, 500, t);
                }
                if let Some((start_sys, start, peer)) = started {
                    let done = RequestDone {
                        head: req.head,
                        status: http::Status::from(&b"500 Internal Server Error"[..]),
                        headers: Arc::new([]),
                        start_sys,
                        start,
                        sent: 0,
                        peer,
                        scheme,
                        environ,
                    };
                    done.report(py, self.cfg, self.age);
                }
            }
            Reply::Response { head, body } => {
                let code = status_code(&head.status);
                let is_head = req.head.is_head();
                if h.conn
                    .send_response(stream, code, fields(&head.headers), is_head)
                    .is_err()
                {
                    body.close(py);
                    if let (Some(_), Some(s)) = (metric_start, self.status) {
                        s.in_flight
                            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    return;
                }
                let done = started.map(|(start_sys, start, peer)| {
                    Box::new(RequestDone {
                        head: req.head,
                        status: head.status,
                        headers: head.headers,
                        start_sys,
                        start,
                        sent: 0,
                        peer,
                        scheme,
                        environ,
                    })
                });
                let metric = metric_start.map(|t| (code, t));
                if is_head {
                    // No body for HEAD: the head ended the stream.
                    body.close(py);
                    if let Some((code, t)) = metric {
                        response_ended(self.status, code, t);
                    }
                    if let Some(d) = done {
                        d.report(py, self.cfg, self.age);
                    }
                    return;
                }
                h.answers
                    .insert(stream, Answer::Inline { body, done, metric });
            }
        }
    }

    /// Pull the inline body of `stream` while there is room. Returns true
    /// when the response ended (the next stream may start).
    fn pump_h2(&mut self, py: Python<'_>, id: ConnId, stream: u32) -> bool {
        let status = self.status;
        let (cfg, age) = (self.cfg, self.age);
        let Some(c) = self.state.get(id) else {
            return false;
        };
        let pending_out = c.queued + c.out.len();
        let Some(h) = c.h2.as_deref_mut() else {
            return false;
        };
        let Some(Answer::Inline {
            mut body,
            done,
            metric,
        }) = h.answers.remove(&stream)
        else {
            return false;
        };
        let mut done = done;
        if let Some(s) = status {
            s.call_ms.store(
                shm::coarse_monotonic_ms(),
                std::sync::atomic::Ordering::Release,
            );
        }
        let _call = super::output::CallGuard(status);
        loop {
            let room = h.conn.queued(stream) == 0
                && pending_out + h.conn.output().len() < OUTPUT_HIGH_WATER;
            if !room {
                h.answers
                    .insert(stream, Answer::Inline { body, done, metric });
                return false;
            }
            match body.next_piece(py) {
                Chunk::Data(piece) => {
                    let data = piece.bytes(py);
                    if let Some(d) = &mut done {
                        d.sent += data.len() as u64;
                    }
                    if h.conn.send_data(stream, data, false).is_err() {
                        // The client reset the stream.
                        body.close(py);
                        if let (Some(_), Some(s)) = (metric, status) {
                            s.in_flight
                                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        return true;
                    }
                }
                Chunk::End => {
                    let _ = h.conn.send_data(stream, &[], true);
                    body.close(py);
                    if let Some((code, t)) = metric {
                        response_ended(status, code, t);
                    }
                    if let Some(d) = done {
                        d.report(py, cfg, age);
                    }
                    return true;
                }
                Chunk::Failed => {
                    h.conn.reset(stream, Reason::INTERNAL_ERROR);
                    body.close(py);
                    if let Some((_, t)) = metric {
                        response_ended(status, 500, t);
                    }
                    return true;
                }
            }
        }
    }

    /// A graceful stop: every HTTP/2 connection gets its first GOAWAY.
    pub(super) fn shutdown_h2(&mut self) {
        let now = Instant::now();
        let mut touched = Vec::new();
        for (i, c) in self.state.conns.iter_mut().enumerate() {
            if let Some(h) = c.as_mut().and_then(|c| c.h2.as_deref_mut()) {
                h.shutdown(now);
                touched.push(ConnId(i as u32));
            }
        }
        for id in touched {
            self.state.mark_ready(id);
        }
    }

    /// Timers of HTTP/2 connections at each sweep: the final GOAWAY of a
    /// graceful stop.
    pub(super) fn sweep_h2(&mut self, now: Instant) {
        let mut due = Vec::new();
        for (i, c) in self.state.conns.iter_mut().enumerate() {
            if let Some(h) = c.as_mut().and_then(|c| c.h2.as_deref_mut()) {
                if h.shutdown_due(now) {
                    due.push(ConnId(i as u32));
                }
            }
        }
        for id in due {
            self.state.mark_ready(id);
        }
    }
}

/// A request whose body is complete: on to the app.
fn finish_incoming(
    h: &mut H2Conn,
    stream: u32,
    inc: Incoming,
    ready: &mut Vec<(u32, http::Head, http::RequestBody)>,
    ip: &str,
) {
    match inc.body.finish() {
        Ok(body) => ready.push((stream, inc.head, body)),
        Err(e) => {
            crate::error!("Cannot store the request body from ip={ip}: {e}");
            h.conn.reset(stream, Reason::INTERNAL_ERROR);
        }
    }
}

/// 500 on a stream whose app failed before its head.
fn internal_error(conn: &mut h2::Connection, stream: u32) {
    const BODY: &[u8] = b"Internal Server Error";
    let len = BODY.len().to_string();
    let fields = [
        (&b"content-type"[..], &b"text/plain"[..]),
        (&b"content-length"[..], len.as_bytes()),
    ];
    if conn.send_response(stream, 500, fields, false).is_ok() {
        let _ = conn.send_data(stream, BODY, true);
    }
}

/// 503 for a stream shed by admission control.
fn overloaded(conn: &mut h2::Connection, stream: u32) {
    let headers = super::lifecycle::overloaded_headers();
    let fields = headers.iter().map(|(n, v)| (n.as_slice(), v.as_slice()));
    if conn.send_response(stream, 503, fields, false).is_ok() {
        let _ = conn.send_data(stream, super::lifecycle::OVERLOADED_BODY, true);
    }
}

impl Worker<'_> {
    /// Step an HTTP/2 connection (or one just refused on a prior-knowledge
    /// port), then close it once its last bytes are written.
    pub(super) fn run_h2(&mut self, py: Python<'_>, id: ConnId) {
        if self.state.get(id).is_some_and(|c| c.h2.is_some()) {
            self.step_h2(py, id);
        } else {
            self.flush(id);
        }
        let Some(c) = self.state.get(id) else { return };
        if c.eof && c.phase == Phase::Open {
            // HTTP/2 clients do not half-close: the client has left, and
            // its streams' work stops.
            if let Some(h) = c.h2.as_deref_mut() {
                h.drop_answers(py, self.status);
            }
            c.phase = Phase::CloseAfterSend;
        }
        if c.recv_paused {
            // Control frames (PING, WINDOW_UPDATE, RST_STREAM) keep coming.
            c.recv_paused = false;
            self.engine.resume_recv(id);
        }
        if c.phase == Phase::CloseAfterSend && c.pending_output() == 0 {
            self.finish_close(py, id);
        }
    }
}
