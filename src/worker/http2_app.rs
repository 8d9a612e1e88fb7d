//! The app side of HTTP/2 streams: each stream a job for app threads or
//! the asyncio loop (`--threads`, ASGI), whose messages become frames on
//! its stream; or, in the sync worker, one stream at a time called in the
//! loop thread with its body pulled while the stream has window.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use pyo3::prelude::*;

use super::http2::{plain_response, Answer, H2Conn};
use super::request::{response_ended, response_started, status_code};
use super::{Worker, OUTPUT_HIGH_WATER};
use crate::engine::ConnId;
use crate::h2::{self, Reason};
use crate::handoff::{Flow, Job, Output, Ticket};
use crate::http;
use crate::sys::shm;
use crate::wsgi::{Chunk, Reply, ResponseHead, WriteSink};

/// The response fields of an app's head, for `send_response`.
fn fields(headers: &[(Vec<u8>, Vec<u8>)]) -> impl Iterator<Item = (&[u8], &[u8])> {
    headers.iter().map(|(n, v)| (n.as_slice(), v.as_slice()))
}

impl Worker<'_> {
    /// `--threads` / ASGI: each stream is a job of its own.
    pub(super) fn submit_h2(&mut self, id: ConnId, stream: u32, req: http::Request) {
        let Some(runner) = &self.runner else { return };
        let Some(c) = self.state.get(id) else { return };
        c.requests += 1;
        let queued = runner.backlog();
        if self.policy.max_queued_requests > 0 && queued >= self.policy.max_queued_requests {
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
        let metric_start = self
            .policy
            .metrics
            .then(|| response_started(self.status, Instant::now()));
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
    pub(super) fn credit_h2(&mut self, id: ConnId) {
        let Some(c) = self.state.get(id) else { return };
        if c.queued + c.out.len() >= OUTPUT_HIGH_WATER {
            return;
        }
        if let Some(h) = c.h2.as_deref_mut() {
            h.credit_jobs();
        }
    }

    /// What an app thread or the asyncio loop posted for a stream.
    pub(super) fn h2_mail(&mut self, id: ConnId, ticket: Ticket, out: Output) {
        let status = self.status;
        let Some(c) = self.state.get(id) else { return };
        let Some(h) = c.h2.as_deref_mut() else { return };
        if let Some((code, metric_start)) = h.job_output(ticket.serial, out) {
            if let Some(t) = metric_start {
                response_ended(status, code, t);
            }
            c.last_active = Instant::now();
        }
        self.state.mark_ready(id);
    }

    /// The sync worker: serve waiting streams one at a time, pulling the
    /// current body while its stream and the connection have room.
    pub(super) fn serve_inline_h2(&mut self, py: Python<'_>, id: ConnId) {
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
        let waited = c.last_active.elapsed();
        if self.policy.sheds(self.batch_calls, waited) {
            if let Some(s) = self.status {
                s.record_shed(shm::coarse_monotonic_ms());
            }
            if let Some(h) = c.h2.as_deref_mut() {
                overloaded(&mut h.conn, stream);
            }
            return;
        }
        self.batch_calls += 1;
        let https = c.info.https(&req.head);
        let begun = match self
            .policy
            .begin(py, self.cfg, self.age, &req.head, https, || c.peer_ip())
        {
            Ok(begun) => begun,
            Err(_) => {
                if let Some(h) = c.h2.as_deref_mut() {
                    internal_error(&mut h.conn, stream);
                }
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
        // `wsgi.early_hints` of this stream are framed once the app returns,
        // ahead of its head (the stream's frames need the connection).
        let hints = Arc::new(Hints::default());
        crate::wsgi::set_hint_sink(Some(hints.clone() as Arc<dyn WriteSink>));
        let (reply, environ) =
            self.app
                .call_with(py, &req, &c.info, self.policy.keep_environ, None);
        crate::wsgi::set_hint_sink(Some(self.direct.clone() as Arc<dyn WriteSink>));
        if let Some(s) = self.status {
            s.end_call();
        }
        self.count_request();
        let Some(c) = self.state.get(id) else { return };
        let Some(h) = c.h2.as_deref_mut() else { return };
        for hint in hints.take() {
            let _ = h.conn.send_informational(stream, 103, fields(&hint));
        }
        match reply {
            Reply::Failed => {
                internal_error(&mut h.conn, stream);
                if let Some(t) = metric_start {
                    response_ended(self.status, 500, t);
                }
                let status = http::Status::from(&b"500 Internal Server Error"[..]);
                if let Ok(done) = begun.finish(req.head, status, Arc::new([]), environ) {
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
                let done = begun
                    .finish(req.head, head.status, head.headers, environ)
                    .ok();
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
}

impl H2Conn {
    /// Report to each job's app side the body bytes that have left its
    /// stream (a stream's window is its job's backpressure).
    pub(super) fn credit_jobs(&mut self) {
        for (stream, answer) in self.answers.iter_mut() {
            if let Answer::Job {
                flow,
                handed,
                reported,
                ..
            } = answer
            {
                let gone = handed.saturating_sub(self.conn.queued(*stream));
                if gone > *reported {
                    flow.written(gone - *reported);
                    *reported = gone;
                }
            }
        }
    }

    /// Frame what a job posted for its stream. When the response ended,
    /// gives its status code and the start of its metric.
    pub(super) fn job_output(
        &mut self,
        serial: u64,
        out: Output,
    ) -> Option<(u16, Option<Instant>)> {
        let wanted = serial;
        let found = self.answers.iter().find_map(|(s, a)| match a {
            Answer::Job { serial, .. } if *serial == wanted => Some(*s),
            _ => None,
        });
        let stream = found?;
        let Some(Answer::Job {
            flow,
            handed,
            reported,
            head_sent,
            is_head,
            code,
            ..
        }) = self.answers.get_mut(&stream)
        else {
            return None;
        };
        let mut ended = None;
        match out {
            Output::Head {
                status, headers, ..
            } => {
                *code = status_code(&status);
                *head_sent = self
                    .conn
                    .send_response(stream, *code, fields(&headers), *is_head)
                    .is_ok();
            }
            Output::Data(data) => {
                *handed += data.len();
                if *is_head || self.conn.send_data(stream, &data, false).is_err() {
                    // Not sent (no body for HEAD, or the stream is gone):
                    // written as far as the app side is concerned.
                    *reported += data.len();
                    flow.written(data.len());
                }
            }
            Output::EarlyHints(hints) => {
                // Only before the head; a sent head makes this an error.
                if !*head_sent {
                    let _ = self.conn.send_informational(stream, 103, fields(&hints));
                }
            }
            Output::Trailers(trailers) => {
                // The response ends here; the `End` that follows finds no
                // answer left.
                if *is_head && *head_sent {
                    // The head ended the stream.
                } else if *head_sent {
                    let _ = self.conn.send_trailers(stream, fields(&trailers));
                } else {
                    internal_error(&mut self.conn, stream);
                    *code = 500;
                }
                ended = Some(*code);
            }
            Output::End => {
                if *is_head && *head_sent {
                    // The head ended the stream.
                } else if *head_sent {
                    let _ = self.conn.send_data(stream, &[], true);
                } else {
                    internal_error(&mut self.conn, stream);
                    *code = 500;
                }
                ended = Some(*code);
            }
            Output::Failed => {
                if *head_sent {
                    self.conn.reset(stream, Reason::INTERNAL_ERROR);
                } else {
                    internal_error(&mut self.conn, stream);
                    *code = 500;
                }
                ended = Some(*code);
            }
            // HTTP/2 has no 101: WebSocket messages do not apply.
            Output::Accept { .. }
            | Output::Message(_)
            | Output::Close { .. }
            | Output::Resume
            | Output::DisconnectTaken => {}
        }
        let code = ended?;
        let mut metric = None;
        if let Some(Answer::Job {
            flow,
            handed,
            reported,
            metric_start,
            ..
        }) = self.answers.remove(&stream)
        {
            flow.written(handed.saturating_sub(reported));
            metric = metric_start;
        }
        if self.conn.queued(stream) > 0 {
            // Still timed while its data waits for the client's window.
            self.draining.insert(stream);
        }
        Some((code, metric))
    }
}

/// The early hints of the stream the sync worker is calling, kept until
/// the app returns. Only `early_hints` is used: `write()` data of an
/// HTTP/2 stream goes with its body.
#[derive(Default)]
struct Hints(Mutex<Vec<HintFields>>);

/// The fields of one `wsgi.early_hints` call.
type HintFields = Vec<(Vec<u8>, Vec<u8>)>;

impl Hints {
    fn take(&self) -> Vec<HintFields> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl WriteSink for Hints {
    fn head(&self, _head: &ResponseHead) {}

    fn data(&self, _py: Python<'_>, _data: Vec<u8>) -> bool {
        true
    }

    fn early_hints(&self, _py: Python<'_>, headers: HintFields) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(headers);
    }
}

/// 500 on a stream whose app failed before its head.
fn internal_error(conn: &mut h2::Connection, stream: u32) {
    plain_response(conn, stream, 500, "Internal Server Error");
}

/// 503 for a stream shed by admission control.
fn overloaded(conn: &mut h2::Connection, stream: u32) {
    let headers = super::request::overloaded_headers();
    let fields = headers.iter().map(|(n, v)| (n.as_slice(), v.as_slice()));
    if conn.send_response(stream, 503, fields, false).is_ok() {
        let _ = conn.send_data(stream, super::request::OVERLOADED_BODY, true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::h2::frame::{flag, kind};
    use crate::h2::testing::{frame, frames_of, Client};
    use crate::handoff::Room;
    use crate::worker::http2::tests::job;

    fn rig() -> (Client, H2Conn) {
        let mut client = Client::new();
        let spare = h2::Connection::new(h2::Settings::default(), client.now);
        let conn = std::mem::replace(&mut client.conn, spare);
        let mut h = H2Conn::new(conn);
        let get = client.get(1, "/");
        h.conn.feed(&get, client.now);
        while h.conn.poll().is_some() {}
        (client, h)
    }

    fn head(code: &[u8]) -> Output {
        Output::Head {
            status: http::Status::from(code),
            headers: Arc::new([(b"Content-Type".to_vec(), b"text/plain".to_vec())]),
            known_len: None,
        }
    }

    #[test]
    fn early_hints_go_before_the_head_and_trailers_end_the_stream() {
        let (mut client, mut h) = rig();
        let flow = Arc::new(Flow::new());
        h.answers.insert(1, job(9, &flow));
        let link = vec![(b"Link".to_vec(), b"</s.css>; rel=preload".to_vec())];
        assert_eq!(h.job_output(9, Output::EarlyHints(link.clone())), None);
        assert_eq!(h.job_output(9, head(b"200 OK")), None);
        // After the head, hints are too late: nothing is sent.
        assert_eq!(h.job_output(9, Output::EarlyHints(link)), None);
        flow.add(2);
        assert_eq!(h.job_output(9, Output::Data(b"hi".to_vec())), None);
        let trailers = vec![(b"Grpc-Status".to_vec(), b"0".to_vec())];
        assert_eq!(
            h.job_output(9, Output::Trailers(trailers)),
            Some((200, None))
        );
        // The End after the trailers finds the stream answered.
        assert_eq!(h.job_output(9, Output::End), None);
        let frames = frames_of(&mut h.conn);
        let shape: Vec<(u8, u8)> = frames.iter().map(|f| (f.kind, f.flags)).collect();
        assert_eq!(
            shape,
            [
                (kind::HEADERS, flag::END_HEADERS),
                (kind::HEADERS, flag::END_HEADERS),
                (kind::DATA, 0),
                (kind::HEADERS, flag::END_HEADERS | flag::END_STREAM),
            ]
        );
        let hint = client.fields(&frames[0].payload);
        assert_eq!(hint[0], (":status".into(), "103".into()));
        assert_eq!(hint[1], ("link".into(), "</s.css>; rel=preload".into()));
        assert_eq!(client.fields(&frames[1].payload)[0].1, "200");
        assert_eq!(
            client.fields(&frames[3].payload),
            [("grpc-status".to_string(), "0".to_string())]
        );
        assert!(h.answers.is_empty());
        assert_eq!(flow.room(), Room::Free);
    }

    #[test]
    fn a_job_is_credited_as_its_data_leaves_the_stream() {
        let (_client, mut h) = rig();
        let flow = Arc::new(Flow::new());
        h.answers.insert(1, job(9, &flow));
        h.job_output(9, head(b"200 OK"));
        let body = vec![0u8; 200_000];
        assert_eq!(flow.add(body.len()), Room::Full);
        h.job_output(9, Output::Data(body));
        // One window (65,535 bytes) left; the rest waits on the stream.
        h.credit_jobs();
        assert_eq!(h.conn.queued(1), 200_000 - 65_535);
        assert_eq!(flow.room(), Room::Full);
        // The client opens both windows: the rest goes, and is credited.
        let now = Instant::now();
        let grow = 1_000_000u32.to_be_bytes();
        let mut bytes = frame(kind::WINDOW_UPDATE, 0, 1, &grow);
        bytes.extend(frame(kind::WINDOW_UPDATE, 0, 0, &grow));
        h.conn.feed(&bytes, now);
        h.credit_jobs();
        assert_eq!(h.conn.queued(1), 0);
        assert_eq!(flow.room(), Room::Free);
        // A failure after the head resets the stream.
        assert_eq!(h.job_output(9, Output::Failed), Some((200, None)));
        let frames = frames_of(&mut h.conn);
        let last = frames.last().unwrap();
        assert_eq!(
            (last.kind, last.reason()),
            (kind::RST_STREAM, Reason::INTERNAL_ERROR)
        );
    }

    #[test]
    fn a_job_that_fails_before_its_head_is_answered_500() {
        let (mut client, mut h) = rig();
        let flow = Arc::new(Flow::new());
        h.answers.insert(1, job(9, &flow));
        assert_eq!(h.job_output(9, Output::Failed), Some((500, None)));
        let frames = frames_of(&mut h.conn);
        assert_eq!(client.fields(&frames[0].payload)[0].1, "500");
        // Mail for a stream no longer answered is ignored.
        assert_eq!(h.job_output(9, Output::End), None);
    }
}
