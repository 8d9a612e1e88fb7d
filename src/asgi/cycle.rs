//! One request in flight on the asyncio side: its `http.request` events,
//! the checks on what the app sends, and the `Output` messages posted to
//! the worker's mailbox.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use pyo3::exceptions::{PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict};

use super::inbox::{Shared, NOTE_HANGUP, NOTE_INBOUND, NOTE_ROOM};
use crate::handoff::{Flow, Inbound, Job, Mailbox, Output, Room, Ticket};
use crate::http::{self, ConnInfo, Request, RequestBody};

pyo3::create_exception!(
    ferrocorn,
    ClientDisconnected,
    PyOSError,
    "The client went away: nothing more can be sent (ASGI spec 2.4)."
);

/// `http.request` events carry the body in pieces of at most this size,
/// so apps that stream the request body see it in several events.
pub const BODY_PIECE: usize = 64 * 1024;

/// Where the response is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Nothing sent yet.
    Waiting,
    /// `http.response.start` received; its head is posted with the first body.
    Started,
    /// The head is posted, more body to come.
    Streaming,
    /// The body is complete; `http.response.trailers` messages to come
    /// (the app announced `"trailers": True`).
    Trailing,
    /// `End` (or `Failed`) posted.
    Complete,
}

#[pyclass]
pub(crate) struct Cycle {
    #[pyo3(get)]
    id: u64,
    scope: Option<Py<PyDict>>,
    ticket: Ticket,
    req: Request,
    conn: ConnInfo,
    flow: Arc<Flow>,
    /// Body bytes already handed to the app.
    body_given: usize,
    body_done: bool,
    /// The body streams in through the flow's inbound queue as it arrives
    /// (`RequestBody::Streamed`), instead of being all in `req`.
    streamed: bool,
    /// The app called `receive()` (the loop was told, for `100 Continue`).
    asked: bool,
    /// The body was lost (the client left): `receive()` gives `http.disconnect`.
    lost: bool,
    stage: Stage,
    /// `http.response.start` said `"trailers": True`.
    trailers: bool,
    /// Trailer fields gathered over `more_trailers` messages.
    trailer_fields: Vec<(Vec<u8>, Vec<u8>)>,
    status: u16,
    headers: crate::http::HeaderList,
    sent: u64,
    shared: Arc<Shared>,
    mailbox: Arc<Mailbox>,
    start: Instant,
    start_sys: SystemTime,
}

impl Cycle {
    pub fn new(
        id: u64,
        scope: Py<PyDict>,
        job: Job,
        shared: Arc<Shared>,
        mailbox: Arc<Mailbox>,
    ) -> Cycle {
        let streamed = matches!(job.req.body, RequestBody::Streamed);
        Cycle {
            id,
            scope: Some(scope),
            streamed,
            asked: false,
            lost: false,
            ticket: job.ticket,
            req: job.req,
            conn: job.conn,
            flow: job.flow,
            body_given: 0,
            body_done: false,
            stage: Stage::Waiting,
            trailers: false,
            trailer_fields: Vec::new(),
            status: 0,
            headers: Arc::new([]),
            sent: 0,
            shared,
            mailbox,
            start: Instant::now(),
            start_sys: SystemTime::now(),
        }
    }

    /// The next piece of the request body (at most `BODY_PIECE` bytes)
    /// and whether more follows; read from the temporary file for a body
    /// that went to disk.
    fn next_body_piece(&mut self) -> std::io::Result<(Vec<u8>, bool)> {
        let total = self.req.body.len();
        let start = (self.body_given as u64).min(total);
        let end = (start + BODY_PIECE as u64).min(total);
        let piece = match &self.req.body {
            RequestBody::Memory(v) => v[start as usize..end as usize].to_vec(),
            RequestBody::File { file, .. } => {
                use std::os::unix::fs::FileExt;
                let mut buf = vec![0; (end - start) as usize];
                file.read_exact_at(&mut buf, start)?;
                buf
            }
            RequestBody::Streamed => Vec::new(),
        };
        self.body_given = end as usize;
        Ok((piece, end < total))
    }

    /// `receive()` while the body streams in: the next piece the loop
    /// queued, or None (wait for `NOTE_INBOUND`).
    fn receive_piece<'py>(
        &mut self,
        py: Python<'py>,
        event: Bound<'py, PyDict>,
    ) -> PyResult<Option<Bound<'py, PyDict>>> {
        if !self.asked {
            self.asked = true;
            // The app wants the body: the loop answers a waiting
            // `Expect: 100-continue` now, not when the head arrived.
            self.post(Output::Resume);
        }
        let (body, more) = match self.flow.take_inbound() {
            Some((item, resume)) => {
                if resume {
                    // The queue has room again: the loop reads on.
                    self.post(Output::Resume);
                }
                match item {
                    Inbound::Body(piece) => (piece, true),
                    Inbound::BodyEnd => (Vec::new(), false),
                    Inbound::BodyLost | Inbound::Closed { .. } | Inbound::Message(_) => {
                        self.lost = true;
                        return disconnect(py, event);
                    }
                }
            }
            None if self.flow.room() == Room::Gone => {
                self.lost = true;
                return disconnect(py, event);
            }
            None => return Ok(None),
        };
        self.body_done = !more;
        event.set_item(intern!(py, "type"), intern!(py, "http.request"))?;
        event.set_item(intern!(py, "body"), PyBytes::new(py, &body))?;
        event.set_item(intern!(py, "more_body"), more)?;
        Ok(Some(event))
    }

    fn post(&self, out: Output) {
        self.mailbox.post(self.ticket, out);
    }

    fn context(&self) -> String {
        format!(
            "Error handling request {} {}",
            String::from_utf8_lossy(self.req.head.method()),
            String::from_utf8_lossy(self.req.head.target())
        )
    }

    /// The response cannot be completed: a 500 when nothing was posted,
    /// else the loop closes the connection.
    fn fail(&mut self) {
        if self.stage == Stage::Complete {
            return;
        }
        self.post(Output::Failed);
        if !matches!(self.stage, Stage::Streaming | Stage::Trailing) {
            self.status = 500;
            self.headers = Arc::new([]);
        }
        self.stage = Stage::Complete;
        self.log_access();
    }

    fn log_access(&self) {
        if !crate::log::access_enabled() {
            return;
        }
        let head = &self.req.head;
        let client = self
            .req
            .proxy
            .as_ref()
            .and_then(|p| p.source)
            .or(self.conn.peer);
        let peer = client.map(|a| a.ip().to_string()).unwrap_or_default();
        let path = http::percent_decode(head.path());
        let mut rec = crate::log::AccessRecord::for_request(head, &peer, self.start_sys);
        rec.path = &path;
        // A streamed body that timed out or grew too large was answered
        // by the loop (408, 413), whatever the app did after.
        let answered = self.streamed.then(|| self.flow.answered()).flatten();
        rec.status = answered.unwrap_or(self.status);
        rec.response_headers = match answered {
            Some(_) => crate::log::Headers::None,
            None => crate::log::Headers::Owned(&self.headers),
        };
        rec.bytes_sent = Some(self.sent);
        rec.duration = self.start.elapsed();
        crate::log::access(&rec);
    }

    fn start_response(&mut self, message: &Bound<'_, PyDict>) -> PyResult<()> {
        let py = message.py();
        if self.stage != Stage::Waiting {
            return Err(PyRuntimeError::new_err(
                "Unexpected ASGI message 'http.response.start' sent, after response already started.",
            ));
        }
        let status = match message.get_item(intern!(py, "status"))? {
            Some(s) => s
                .extract::<i64>()
                .map_err(|_| PyTypeError::new_err("http.response.start 'status' must be an int"))?,
            None => return Err(PyValueError::new_err("http.response.start has no 'status'")),
        };
        let status = u16::try_from(status)
            .ok()
            .filter(|s| (100..=999).contains(s))
            .ok_or_else(|| PyValueError::new_err(format!("invalid HTTP status {status}")))?;
        let headers = match message.get_item(intern!(py, "headers"))? {
            Some(list) => headers_of(&list)?,
            None => Vec::new(),
        };
        self.trailers = match message.get_item(intern!(py, "trailers"))? {
            Some(t) => t.is_truthy()?,
            None => false,
        };
        self.status = status;
        self.headers = headers.into();
        self.stage = Stage::Started;
        Ok(())
    }

    /// `http.response.trailers` (the ASGI HTTP Trailers extension): fields
    /// gathered until `more_trailers` is false, then the response ends.
    fn trailers_message(&mut self, message: &Bound<'_, PyDict>) -> PyResult<()> {
        let py = message.py();
        if self.stage != Stage::Trailing {
            return Err(PyRuntimeError::new_err(
                "Unexpected ASGI message 'http.response.trailers' sent, before the last body of a response started with 'trailers': True.",
            ));
        }
        let fields = match message.get_item(intern!(py, "headers"))? {
            Some(list) => headers_of(&list)?,
            None => Vec::new(),
        };
        if let Some((name, _)) = fields.iter().find(|(n, _)| http::forbidden_in_trailers(n)) {
            return Err(PyValueError::new_err(format!(
                "{:?} is not allowed in trailers",
                String::from_utf8_lossy(name)
            )));
        }
        self.trailer_fields.extend(fields);
        let more = match message.get_item(intern!(py, "more_trailers"))? {
            Some(m) => m.is_truthy()?,
            None => false,
        };
        if !more {
            if self.flow.room() == Room::Gone {
                return Err(ClientDisconnected::new_err("the client disconnected"));
            }
            let fields = std::mem::take(&mut self.trailer_fields);
            if !fields.is_empty() && self.client_takes_trailers() {
                self.post(Output::Trailers(fields));
            }
            self.post(Output::End);
            self.stage = Stage::Complete;
            self.log_access();
        }
        Ok(())
    }

    /// HTTP/2 always carries trailers; HTTP/1.1 only in a chunked body to
    /// a client that said `TE: trailers` (RFC 9110 6.5.1). Looked up only
    /// when an app sends trailers.
    fn client_takes_trailers(&self) -> bool {
        let head = &self.req.head;
        match head.version.as_str() {
            "HTTP/2.0" => true,
            "HTTP/1.1" => head
                .header_pairs()
                .filter(|(n, _)| n.eq_ignore_ascii_case(b"te"))
                .flat_map(|(_, v)| v.split(|&b| b == b','))
                .any(|t| {
                    let t = t.trim_ascii();
                    let token = t.split(|&b| b == b';').next().unwrap_or_default();
                    token.trim_ascii().eq_ignore_ascii_case(b"trailers")
                }),
            _ => false,
        }
    }

    /// Returns whether the caller must wait for room before sending more.
    fn body_message(&mut self, message: &Bound<'_, PyDict>) -> PyResult<bool> {
        let py = message.py();
        match self.stage {
            Stage::Waiting => {
                return Err(PyRuntimeError::new_err(
                    "Unexpected ASGI message 'http.response.body' sent, before 'http.response.start'.",
                ))
            }
            Stage::Complete | Stage::Trailing => {
                return Err(PyRuntimeError::new_err(
                    "Unexpected ASGI message 'http.response.body' sent, after response already completed.",
                ))
            }
            Stage::Started | Stage::Streaming => {}
        }
        let body = match message.get_item(intern!(py, "body"))? {
            Some(b) => bytes_of(&b, "body")?,
            None => Vec::new(),
        };
        let more = match message.get_item(intern!(py, "more_body"))? {
            Some(m) => m.is_truthy()?,
            None => false,
        };
        if self.flow.room() == Room::Gone {
            return Err(ClientDisconnected::new_err("the client disconnected"));
        }
        // A HEAD response carries no body: nothing to hand over.
        let body = if self.req.head.is_head() {
            Vec::new()
        } else {
            body
        };
        if self.stage == Stage::Started {
            // A response whose whole body comes in its first message gets a
            // Content-Length instead of chunked framing.
            // Trailers need a chunked body on HTTP/1.1.
            let known_len =
                (!more && !self.trailers && !self.req.head.is_head()).then_some(body.len() as u64);
            let reason = http::reason_phrase(self.status);
            self.post(Output::Head {
                status: format!("{} {reason}", self.status).into_bytes().into(),
                headers: self.headers.clone(),
                known_len,
            });
            self.stage = Stage::Streaming;
        }
        let mut room = Room::Free;
        if !body.is_empty() {
            room = self.flow.add(body.len());
            if room == Room::Gone {
                return Err(ClientDisconnected::new_err("the client disconnected"));
            }
            self.sent += body.len() as u64;
            self.post(Output::Data(body));
        }
        if !more && self.trailers {
            self.stage = Stage::Trailing;
            return Ok(false);
        }
        if !more {
            self.post(Output::End);
            self.stage = Stage::Complete;
            self.log_access();
            // Nothing more will be sent: no reason to wait for the client.
            return Ok(false);
        }
        Ok(room == Room::Full)
    }
}

#[pymethods]
impl Cycle {
    /// The request's scope (built once; the same dict every time).
    #[getter]
    fn scope<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyDict>> {
        self.scope.as_ref().map(|s| s.bind(py).clone())
    }

    /// The response is complete (or failed): nothing more goes out.
    #[getter]
    fn complete(&self) -> bool {
        self.stage == Stage::Complete
    }

    /// The connection is closed (not merely half-closed by the client).
    #[getter]
    fn gone(&self) -> bool {
        self.flow.room() == Room::Gone
    }

    /// The next `receive()` event, or None when the app must wait (the body
    /// was delivered and the client is still there).
    fn receive<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let event = PyDict::new(py);
        if self.lost {
            return disconnect(py, event);
        }
        if !self.body_done && self.streamed {
            return self.receive_piece(py, event);
        }
        if !self.body_done {
            let (piece, more) = self.next_body_piece().map_err(|e| {
                PyOSError::new_err(format!("cannot read the request body back: {e}"))
            })?;
            let piece = PyBytes::new(py, &piece);
            self.body_done = !more;
            event.set_item(intern!(py, "type"), intern!(py, "http.request"))?;
            event.set_item(intern!(py, "body"), piece)?;
            event.set_item(intern!(py, "more_body"), more)?;
            return Ok(Some(event));
        }
        if self.stage == Stage::Complete || self.flow.hung_up() {
            event.set_item(intern!(py, "type"), intern!(py, "http.disconnect"))?;
            return Ok(Some(event));
        }
        Ok(None)
    }

    /// Handle one message from the app. Returns True when the caller must
    /// wait (`wait_room`) before sending more.
    fn send(&mut self, message: &Bound<'_, PyAny>) -> PyResult<bool> {
        let py = message.py();
        let message = message
            .cast::<PyDict>()
            .map_err(|_| PyTypeError::new_err("an ASGI message must be a dict"))?;
        let kind = match message.get_item(intern!(py, "type"))? {
            Some(t) => t
                .extract::<String>()
                .map_err(|_| PyTypeError::new_err("an ASGI message's 'type' must be a str"))?,
            None => return Err(PyValueError::new_err("an ASGI message needs a 'type'")),
        };
        match kind.as_str() {
            "http.response.start" => self.start_response(message).map(|()| false),
            "http.response.body" => self.body_message(message),
            "http.response.trailers" => self.trailers_message(message).map(|()| false),
            other => Err(PyRuntimeError::new_err(format!(
                "Unexpected ASGI message '{other}' sent for an http request."
            ))),
        }
    }

    /// Note this cycle (`NOTE_ROOM`) once there is room again or the client is gone.
    fn wait_room(&self) {
        let shared = self.shared.clone();
        let id = self.id;
        self.flow
            .on_room(Box::new(move || shared.note(NOTE_ROOM, id)));
    }

    /// While the body streams in: note this cycle (`NOTE_INBOUND`) once a
    /// piece arrives or the client is gone. After the body nothing
    /// arrives: `receive` waits for the hang-up (`watch_hangup`) alone.
    fn watch_inbound(&self) {
        if self.streamed && !self.body_done {
            let shared = self.shared.clone();
            let id = self.id;
            self.flow
                .on_inbound(Box::new(move || shared.note(NOTE_INBOUND, id)));
        }
    }

    /// Note this cycle (`NOTE_HANGUP`) once the client hangs up or is gone.
    fn watch_hangup(&self) {
        let shared = self.shared.clone();
        let id = self.id;
        self.flow
            .on_hangup(Box::new(move || shared.note(NOTE_HANGUP, id)));
    }

    /// Raise `ClientDisconnected` if the client is gone.
    fn check_gone(&self) -> PyResult<()> {
        if self.flow.room() == Room::Gone {
            return Err(ClientDisconnected::new_err("the client disconnected"));
        }
        Ok(())
    }

    /// The app raised.
    fn failed(&mut self, exc: &Bound<'_, PyAny>) {
        let py = exc.py();
        if self.flow.room() == Room::Gone {
            // The client left and the app stopped because of it: not an error.
            crate::debug!(
                "{}: the client disconnected ({})",
                self.context(),
                exc.repr().map(|r| r.to_string()).unwrap_or_default()
            );
        } else {
            crate::log::exception(format_args!(
                "{}\n{}",
                self.context(),
                traceback_text(py, exc)
            ));
        }
        self.fail();
    }

    /// The app was cancelled (its client left and the grace period ran out,
    /// or the worker is stopping).
    fn cancelled(&mut self) {
        if self.stage != Stage::Complete {
            crate::info!(
                "{}: cancelled before its response was complete",
                self.context()
            );
        }
        self.fail();
    }

    /// The app returned.
    fn returned(&mut self) {
        match self.stage {
            Stage::Complete => {}
            Stage::Waiting => {
                // An app whose client left mid-body may just stop.
                if self.flow.room() != Room::Gone {
                    crate::error!(
                        "{}: the ASGI app returned without starting a response",
                        self.context()
                    );
                }
                self.fail();
            }
            Stage::Started | Stage::Streaming | Stage::Trailing => {
                if self.flow.room() != Room::Gone {
                    crate::error!(
                        "{}: the ASGI app returned without completing its response",
                        self.context()
                    );
                }
                self.fail();
            }
        }
    }
}

/// `event` as `{"type": "http.disconnect"}`.
fn disconnect<'py>(
    py: Python<'py>,
    event: Bound<'py, PyDict>,
) -> PyResult<Option<Bound<'py, PyDict>>> {
    event.set_item(intern!(py, "type"), intern!(py, "http.disconnect"))?;
    Ok(Some(event))
}

/// An ASGI message's `headers`: `[name, value]` pairs of bytes, validated.
pub(crate) fn headers_of(list: &Bound<'_, PyAny>) -> PyResult<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut headers = Vec::new();
    for pair in list.try_iter()? {
        let pair = pair?;
        let mut it = pair.try_iter()?;
        let (Some(name), Some(value), None) = (it.next(), it.next(), it.next()) else {
            return Err(PyValueError::new_err(
                "each ASGI response header must be a [name, value] pair",
            ));
        };
        let name = bytes_of(&name?, "header name")?;
        let value = bytes_of(&value?, "header value")?;
        if !http::validate_response_header(&name, &value) {
            return Err(PyValueError::new_err(format!(
                "invalid response header {:?}: {:?}",
                String::from_utf8_lossy(&name),
                String::from_utf8_lossy(&value)
            )));
        }
        headers.push((name, value));
    }
    Ok(headers)
}

/// The bytes of a `bytes` or `bytearray`.
pub(crate) fn bytes_of(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<u8>> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(b.as_bytes().to_vec());
    }
    if let Ok(b) = obj.cast::<PyByteArray>() {
        return Ok(b.to_vec());
    }
    Err(PyTypeError::new_err(format!(
        "ASGI {what} must be bytes, not {}",
        obj.get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_default()
    )))
}

/// The traceback of an exception object as Python prints it.
pub(crate) fn traceback_text(py: Python<'_>, exc: &Bound<'_, PyAny>) -> String {
    crate::py::exception_text(py, &PyErr::from_value(exc.clone()))
}
