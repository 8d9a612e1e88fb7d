//! HTTP/2 connections, the loop thread's side: when a connection becomes
//! HTTP/2 (ALPN `h2`, the h2c preface or `Upgrade: h2c` from a trusted
//! peer), its frames through `h2::Connection`, its streams' requests
//! gathered (body included) and handed to `http2_app.rs`, the graceful
//! stop's first GOAWAY, and the connection's end. Its timers are in
//! `http2_timers.rs`.
//!
//! A request is the same `http::Request` the HTTP/1.1 parser gives, so
//! the bridges, hooks, access log and metrics serve it unchanged.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use pyo3::prelude::*;

use super::request::RequestDone;
use super::{Phase, Worker};
use crate::config::Http2;
use crate::engine::ConnId;
use crate::h2::{self, h2c, Event, Reason};
use crate::handoff::Flow;
use crate::http;
use crate::sys::shm;

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
pub(super) struct Incoming {
    head: http::Head,
    body: http::BodyWriter,
    /// When its last body bytes (or its head) came.
    pub last: Instant,
}

/// A stream whose response is being produced.
pub(super) enum Answer {
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

/// What `H2Conn::take_events` found.
#[derive(Default)]
pub(super) struct Taken {
    pub ready: Vec<(u32, http::Head, http::RequestBody)>,
    pub ended: Vec<Answer>,
    pub closed: bool,
}

/// One HTTP/2 connection of the worker.
pub(super) struct H2Conn {
    pub conn: h2::Connection,
    pub incoming: HashMap<u32, Incoming>,
    /// Complete requests the sync worker has not started, in order.
    pub waiting: VecDeque<(u32, http::Request)>,
    pub answers: HashMap<u32, Answer>,
    /// When a graceful stop sent its first GOAWAY.
    pub stop_sent: Option<Instant>,
    /// Streams whose response data waits for the client's window: since
    /// when, and how much was waiting then.
    pub stalled: HashMap<u32, (Instant, usize)>,
    /// Streams whose app side has finished while their data still waits
    /// for the client's window.
    pub draining: HashSet<u32>,
}

impl H2Conn {
    pub fn new(conn: h2::Connection) -> H2Conn {
        H2Conn {
            conn,
            incoming: HashMap::new(),
            waiting: VecDeque::new(),
            answers: HashMap::new(),
            stop_sent: None,
            stalled: HashMap::new(),
            draining: HashSet::new(),
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

    /// Take the core's events: heads and bodies gathered into requests
    /// (`ready` once complete), the work of streams the client reset
    /// (`ended`: to be stopped), and whether the connection is over.
    pub(super) fn take_events(&mut self, body_cfg: &http::Config, ip: &str, now: Instant) -> Taken {
        let mut taken = Taken::default();
        while let Some(ev) = self.conn.poll() {
            match ev {
                Event::Request {
                    stream,
                    head,
                    end_stream,
                } => {
                    if end_stream {
                        taken
                            .ready
                            .push((stream, head, http::RequestBody::default()));
                        continue;
                    }
                    match http::BodyWriter::new(None, body_cfg) {
                        Ok(body) => {
                            let last = now;
                            self.incoming.insert(stream, Incoming { head, body, last });
                        }
                        Err(e) => {
                            crate::error!("Cannot store a request body from ip={ip}: {e}");
                            self.conn.reset(stream, Reason::INTERNAL_ERROR);
                        }
                    }
                }
                Event::Data {
                    stream,
                    data,
                    end_stream,
                } => {
                    self.conn.release(stream, data.len());
                    let Some(inc) = self.incoming.get_mut(&stream) else {
                        continue;
                    };
                    if !data.is_empty() {
                        inc.last = now;
                    }
                    if let Err(e) = inc.body.write(&data, body_cfg) {
                        crate::warn!("Invalid request from ip={ip}: {e}");
                        self.incoming.remove(&stream);
                        self.conn.reset(stream, Reason::REFUSED_STREAM);
                        continue;
                    }
                    if end_stream {
                        if let Some(inc) = self.incoming.remove(&stream) {
                            self.finish_incoming(stream, inc, &mut taken.ready, ip);
                        }
                    }
                }
                Event::Trailers { stream, .. } => {
                    // Request trailers: no interface carries them to the app.
                    if let Some(inc) = self.incoming.remove(&stream) {
                        self.finish_incoming(stream, inc, &mut taken.ready, ip);
                    }
                }
                Event::Reset { stream, .. } => {
                    self.incoming.remove(&stream);
                    self.waiting.retain(|(s, _)| *s != stream);
                    if let Some(answer) = self.answers.remove(&stream) {
                        taken.ended.push(answer);
                    }
                }
                Event::Writable { .. } | Event::GoAway { .. } => {}
                Event::Closed { error } => {
                    if let Some(e) = error {
                        crate::debug!("HTTP/2 connection error from ip={ip}: {e}");
                    }
                    taken.closed = true;
                }
            }
        }
        taken
    }

    /// A request whose body is complete: on to the app.
    fn finish_incoming(
        &mut self,
        stream: u32,
        inc: Incoming,
        ready: &mut Vec<(u32, http::Head, http::RequestBody)>,
        ip: &str,
    ) {
        match inc.body.finish() {
            Ok(body) => ready.push((stream, inc.head, body)),
            Err(e) => {
                crate::error!("Cannot store the request body from ip={ip}: {e}");
                self.conn.reset(stream, Reason::INTERNAL_ERROR);
            }
        }
    }
}

pub(super) fn end_answer(py: Python<'_>, answer: Answer, status: Option<&shm::Status>) {
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
        let taken = {
            let Some(c) = self.state.get(id) else { return };
            let ip = c.peer_ip();
            let Some(h) = c.h2.as_deref_mut() else { return };
            h.take_events(&body_cfg, &ip, Instant::now())
        };
        for answer in taken.ended {
            end_answer(py, answer, self.status);
        }
        let (ready, closed) = (taken.ready, taken.closed);
        let trusted = {
            let peer = self.state.get(id).and_then(|c| c.peer);
            match self.state.get(id) {
                Some(_) => self.state.trust_for(peer).forwarded,
                None => return,
            }
        };
        for (stream, mut head, body) in ready {
            // Underscores in names and `secure_scheme_headers`, as an
            // HTTP/1.1 head gets them.
            if let Err(e) = http::apply_field_policy(&mut head, trusted, &body_cfg) {
                if let Some(c) = self.state.get(id) {
                    crate::warn!("Invalid request from ip={}: {e}", c.peer_ip());
                    if let Some(h) = c.h2.as_deref_mut() {
                        plain_response(&mut h.conn, stream, 400, &e.detail);
                    }
                }
                continue;
            }
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
}

/// A short text answer the server makes itself (errors).
pub(super) fn plain_response(conn: &mut h2::Connection, stream: u32, status: u16, text: &str) {
    let len = text.len().to_string();
    let fields = [
        (&b"content-type"[..], &b"text/plain; charset=utf-8"[..]),
        (&b"content-length"[..], len.as_bytes()),
    ];
    if conn.send_response(stream, status, fields, false).is_ok() {
        let _ = conn.send_data(stream, text.as_bytes(), true);
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

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::h2::frame::{flag, kind};
    use crate::h2::testing::{frame, Client, Out};

    /// A worker-side connection past the preface, and a client to write
    /// its frames.
    pub(in crate::worker) fn rig() -> (Client, H2Conn) {
        let mut client = Client::new();
        let spare = h2::Connection::new(h2::Settings::default(), client.now);
        let conn = std::mem::replace(&mut client.conn, spare);
        (client, H2Conn::new(conn))
    }

    pub(in crate::worker) fn post(client: &mut Client, stream: u32) -> Vec<u8> {
        let fields = [
            (":method", "POST"),
            (":scheme", "http"),
            (":authority", "x"),
            (":path", "/upload"),
        ];
        client.headers(stream, &fields, false)
    }

    pub(in crate::worker) fn data(stream: u32, bytes: &[u8], end: bool) -> Vec<u8> {
        frame(
            kind::DATA,
            if end { flag::END_STREAM } else { 0 },
            stream,
            bytes,
        )
    }

    pub(in crate::worker) fn take(h: &mut H2Conn, now: Instant) -> Taken {
        h.take_events(&http::Config::default(), "127.0.0.1", now)
    }

    pub(in crate::worker) fn resets(frames: &[Out]) -> Vec<(u32, Reason)> {
        frames
            .iter()
            .filter(|f| f.kind == kind::RST_STREAM)
            .map(|f| (f.stream, f.reason()))
            .collect()
    }

    pub(in crate::worker) fn job(serial: u64, flow: &Arc<Flow>) -> Answer {
        Answer::Job {
            serial,
            flow: flow.clone(),
            handed: 0,
            reported: 0,
            head_sent: false,
            is_head: false,
            code: 0,
            metric_start: None,
        }
    }

    #[test]
    fn a_body_in_pieces_becomes_one_request() {
        let (mut client, mut h) = rig();
        let now = client.now;
        h.conn.feed(&post(&mut client, 1), now);
        let taken = take(&mut h, now);
        assert!(taken.ready.is_empty() && !taken.closed);
        assert!(!h.is_idle(), "a body on its way is not idle");
        let mut bytes = data(1, b"hello ", false);
        bytes.extend(data(1, b"world", true));
        h.conn.feed(&bytes, now);
        let taken = take(&mut h, now);
        assert_eq!(taken.ready.len(), 1);
        let (stream, head, body) = &taken.ready[0];
        assert_eq!((*stream, head.method()), (1, &b"POST"[..]));
        assert_eq!(body.len(), 11);
        assert!(h.incoming.is_empty());
    }

    #[test]
    fn a_client_reset_hands_back_the_stream_work() {
        let (mut client, mut h) = rig();
        let now = client.now;
        let get = client.get(1, "/slow");
        h.conn.feed(&get, now);
        let _ = take(&mut h, now);
        let flow = Arc::new(Flow::new());
        h.answers.insert(1, job(7, &flow));
        let rst = frame(kind::RST_STREAM, 0, 1, &Reason::CANCEL.0.to_be_bytes());
        h.conn.feed(&rst, now);
        let taken = take(&mut h, now);
        assert!(matches!(taken.ended[..], [Answer::Job { serial: 7, .. }]));
        assert!(h.answers.is_empty());
        assert!(h.is_idle());
    }
}
