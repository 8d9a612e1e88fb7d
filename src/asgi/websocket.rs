//! One WebSocket on the asyncio side (ASGI WebSocket spec 2.4): the
//! `websocket.*` events `receive()` gives, the checks on what the app
//! sends, and the `Output` messages posted to the worker's mailbox. The
//! frames themselves are the loop thread's business (`ws::Connection`):
//! this side only sees whole messages.

use std::sync::Arc;

use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};

use super::cycle::{bytes_of, headers_of, traceback_text, ClientDisconnected};
use super::inbox::{Shared, NOTE_HANGUP, NOTE_INBOUND, NOTE_ROOM};
use crate::handoff::{Flow, Inbound, Job, Mailbox, Message, Output, Room, Ticket};
use crate::http;

/// The close code the app sees when the connection ended without a close
/// frame (RFC 6455 §7.1.5).
const ABNORMAL_CLOSURE: u16 = 1006;
/// An app that fails after accepting: "internal error" (RFC 6455 §7.4.1).
const INTERNAL_ERROR: u16 = crate::ws::close_code::INTERNAL_ERROR;
/// 123: a close frame's 125 bytes of payload less the status code.
const MAX_CLOSE_REASON: usize = 123;
/// A close before accepting is refused with 403, as uvicorn does.
const DENIED: &[u8] = b"403 Forbidden";

/// Where the handshake and the app's side of the connection are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Neither accepted nor denied yet.
    Handshake,
    /// `websocket.http.response.start` received; its head goes with the first body.
    DenyStarted,
    /// The denial's head is posted, more body to come.
    Denying,
    /// Accepted: messages go both ways.
    Open,
    /// The app closed, or the denial is complete, or it failed: nothing more goes out.
    Done,
}

#[pyclass]
pub(crate) struct WsCycle {
    #[pyo3(get)]
    id: u64,
    scope: Option<Py<PyDict>>,
    ticket: Ticket,
    target: String,
    subprotocols: Vec<String>,
    flow: Arc<Flow>,
    connect_given: bool,
    stage: Stage,
    status: u16,
    headers: http::HeaderList,
    shared: Arc<Shared>,
    mailbox: Arc<Mailbox>,
}

impl WsCycle {
    pub fn new(
        id: u64,
        scope: Py<PyDict>,
        job: Job,
        shared: Arc<Shared>,
        mailbox: Arc<Mailbox>,
    ) -> WsCycle {
        WsCycle {
            id,
            scope: Some(scope),
            ticket: job.ticket,
            target: String::from_utf8_lossy(job.req.head.target()).into_owned(),
            subprotocols: job.websocket.unwrap_or_default(),
            flow: job.flow,
            connect_given: false,
            stage: Stage::Handshake,
            status: 0,
            headers: Arc::new([]),
            shared,
            mailbox,
        }
    }

    fn post(&self, out: Output) {
        self.mailbox.post(self.ticket, out);
    }

    fn context(&self) -> String {
        format!("Error in WebSocket {}", self.target)
    }

    fn unexpected(&self, kind: &str) -> PyErr {
        let expected = match self.stage {
            Stage::Handshake => {
                "'websocket.accept', 'websocket.close' or 'websocket.http.response.start'"
            }
            Stage::DenyStarted | Stage::Denying => "'websocket.http.response.body'",
            Stage::Open => "'websocket.send' or 'websocket.close'",
            Stage::Done => "nothing more (the connection is closed)",
        };
        PyRuntimeError::new_err(format!(
            "Expected ASGI message {expected}, but got '{kind}'."
        ))
    }

    fn accept(&mut self, message: &Bound<'_, PyDict>) -> PyResult<()> {
        let py = message.py();
        let subprotocol = match message.get_item(intern!(py, "subprotocol"))? {
            Some(p) if !p.is_none() => Some(p.extract::<String>().map_err(|_| {
                PyTypeError::new_err("websocket.accept 'subprotocol' must be a str")
            })?),
            _ => None,
        };
        if let Some(p) = &subprotocol {
            if !self.subprotocols.iter().any(|o| o == p) {
                return Err(PyValueError::new_err(format!(
                    "websocket.accept: subprotocol {p:?} was not offered by the client"
                )));
            }
        }
        let headers = match message.get_item(intern!(py, "headers"))? {
            Some(list) => headers_of(&list)?,
            None => Vec::new(),
        };
        self.post(Output::Accept {
            subprotocol,
            headers: headers.into(),
        });
        self.stage = Stage::Open;
        Ok(())
    }

    /// Returns whether the caller must wait for room before sending more.
    fn send_message(&mut self, message: &Bound<'_, PyDict>) -> PyResult<bool> {
        let py = message.py();
        let text = message
            .get_item(intern!(py, "text"))?
            .filter(|t| !t.is_none());
        let out = match text {
            Some(t) => Message::Text(
                t.cast::<PyString>()
                    .map_err(|_| PyTypeError::new_err("websocket.send 'text' must be a str"))?
                    .to_str()?
                    .to_owned(),
            ),
            None => match message.get_item(intern!(py, "bytes"))? {
                Some(b) if !b.is_none() => Message::Binary(bytes_of(&b, "websocket.send bytes")?),
                _ => {
                    return Err(PyValueError::new_err(
                        "websocket.send needs 'bytes' or 'text'",
                    ))
                }
            },
        };
        if self.flow.room() == Room::Gone {
            return Err(ClientDisconnected::new_err("the client disconnected"));
        }
        let room = self.flow.add(out.len());
        self.post(Output::Message(out));
        Ok(room == Room::Full)
    }

    fn close(&mut self, message: &Bound<'_, PyDict>) -> PyResult<()> {
        let py = message.py();
        let code = match message.get_item(intern!(py, "code"))? {
            Some(c) if !c.is_none() => c
                .extract::<u16>()
                .map_err(|_| PyValueError::new_err("websocket.close 'code' must be an int"))?,
            _ => 1000,
        };
        let reason = match message.get_item(intern!(py, "reason"))? {
            Some(r) if !r.is_none() => r
                .extract::<String>()
                .map_err(|_| PyTypeError::new_err("websocket.close 'reason' must be a str"))?,
            _ => String::new(),
        };
        if self.stage == Stage::Handshake {
            self.post(Output::Head {
                status: DENIED.into(),
                headers: Arc::new([]),
                known_len: Some(0),
            });
            self.post(Output::End);
        } else {
            if !crate::ws::is_valid_close_code(code) {
                return Err(PyValueError::new_err(format!(
                    "websocket.close: {code} is not a close code that may be sent"
                )));
            }
            if reason.len() > MAX_CLOSE_REASON {
                return Err(PyValueError::new_err(
                    "websocket.close: the reason is longer than 123 bytes",
                ));
            }
            self.post(Output::Close { code, reason });
        }
        self.stage = Stage::Done;
        Ok(())
    }

    fn deny_start(&mut self, message: &Bound<'_, PyDict>) -> PyResult<()> {
        let py = message.py();
        let status = match message.get_item(intern!(py, "status"))? {
            Some(s) => s.extract::<u16>().map_err(|_| {
                PyTypeError::new_err("websocket.http.response.start 'status' must be an int")
            })?,
            None => {
                return Err(PyValueError::new_err(
                    "websocket.http.response.start has no 'status'",
                ))
            }
        };
        if !(100..=999).contains(&status) {
            return Err(PyValueError::new_err(format!(
                "invalid HTTP status {status}"
            )));
        }
        let headers = match message.get_item(intern!(py, "headers"))? {
            Some(list) => headers_of(&list)?,
            None => Vec::new(),
        };
        self.status = status;
        self.headers = headers.into();
        self.stage = Stage::DenyStarted;
        Ok(())
    }

    fn deny_body(&mut self, message: &Bound<'_, PyDict>) -> PyResult<bool> {
        let py = message.py();
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
        if self.stage == Stage::DenyStarted {
            let reason = http::reason_phrase(self.status);
            self.post(Output::Head {
                status: format!("{} {reason}", self.status).into_bytes().into(),
                headers: self.headers.clone(),
                known_len: (!more).then_some(body.len() as u64),
            });
            self.stage = Stage::Denying;
        }
        let mut room = Room::Free;
        if !body.is_empty() {
            room = self.flow.add(body.len());
            self.post(Output::Data(body));
        }
        if !more {
            self.post(Output::End);
            self.stage = Stage::Done;
            return Ok(false);
        }
        Ok(room == Room::Full)
    }

    /// The app stopped without closing: a failure before the handshake is
    /// a 500, after it a close with `code`.
    fn end(&mut self, code: u16) {
        match self.stage {
            Stage::Done => {}
            Stage::Open => self.post(Output::Close {
                code,
                reason: String::new(),
            }),
            Stage::Handshake | Stage::DenyStarted | Stage::Denying => self.post(Output::Failed),
        }
        self.stage = Stage::Done;
    }
}

#[pymethods]
impl WsCycle {
    #[getter]
    fn scope<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyDict>> {
        self.scope.as_ref().map(|s| s.bind(py).clone())
    }

    /// Nothing more goes out (closed, denied, or failed).
    #[getter]
    fn complete(&self) -> bool {
        self.stage == Stage::Done
    }

    /// The peer cannot be talked to any more: for a WebSocket a half-close
    /// ends the connection too (the glue cancels the app after the grace).
    #[getter]
    fn gone(&self) -> bool {
        self.flow.hung_up()
    }

    /// The next `receive()` event, or None when the app must wait.
    fn receive<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let event = PyDict::new(py);
        if !self.connect_given {
            self.connect_given = true;
            event.set_item(intern!(py, "type"), intern!(py, "websocket.connect"))?;
            return Ok(Some(event));
        }
        match self.flow.take_inbound() {
            Some((item, resume)) => {
                if resume {
                    self.post(Output::Resume);
                }
                match item {
                    Inbound::Message(m) => {
                        event.set_item(intern!(py, "type"), intern!(py, "websocket.receive"))?;
                        match m {
                            Message::Text(t) => event.set_item(intern!(py, "text"), t)?,
                            Message::Binary(b) => {
                                event.set_item(intern!(py, "bytes"), PyBytes::new(py, &b))?
                            }
                        }
                    }
                    Inbound::Closed { code, reason } => {
                        self.post(Output::DisconnectTaken);
                        disconnect(&event, code, &reason)?;
                    }
                    // Request-body items never go to a WebSocket's queue.
                    Inbound::Body(_) | Inbound::BodyEnd | Inbound::BodyLost => {
                        disconnect(&event, ABNORMAL_CLOSURE, "")?;
                    }
                }
                Ok(Some(event))
            }
            None if self.flow.hung_up() => {
                disconnect(&event, ABNORMAL_CLOSURE, "")?;
                Ok(Some(event))
            }
            None => Ok(None),
        }
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
        match (kind.as_str(), self.stage) {
            ("websocket.accept", Stage::Handshake) => self.accept(message).map(|()| false),
            ("websocket.send", Stage::Open) => self.send_message(message),
            ("websocket.close", Stage::Handshake | Stage::Open) => {
                self.close(message).map(|()| false)
            }
            // A close after the peer went away has nothing left to do.
            ("websocket.close", Stage::Done) if self.flow.room() == Room::Gone => Ok(false),
            ("websocket.http.response.start", Stage::Handshake) => {
                self.deny_start(message).map(|()| false)
            }
            ("websocket.http.response.body", Stage::DenyStarted | Stage::Denying) => {
                self.deny_body(message)
            }
            (_, Stage::Open | Stage::Done) if self.flow.room() == Room::Gone => {
                Err(ClientDisconnected::new_err("the client disconnected"))
            }
            (other, _) => Err(self.unexpected(other)),
        }
    }

    fn wait_room(&self) {
        let shared = self.shared.clone();
        let id = self.id;
        self.flow
            .on_room(Box::new(move || shared.note(NOTE_ROOM, id)));
    }

    fn watch_hangup(&self) {
        let shared = self.shared.clone();
        let id = self.id;
        self.flow
            .on_hangup(Box::new(move || shared.note(NOTE_HANGUP, id)));
    }

    /// Note this cycle (`NOTE_INBOUND`) once a message arrives or the
    /// connection is gone.
    fn watch_inbound(&self) {
        let shared = self.shared.clone();
        let id = self.id;
        self.flow
            .on_inbound(Box::new(move || shared.note(NOTE_INBOUND, id)));
    }

    fn check_gone(&self) -> PyResult<()> {
        if self.flow.room() == Room::Gone {
            return Err(ClientDisconnected::new_err("the client disconnected"));
        }
        Ok(())
    }

    fn failed(&mut self, exc: &Bound<'_, PyAny>) {
        let py = exc.py();
        if self.flow.room() == Room::Gone {
            crate::debug!("{}: the client disconnected", self.context());
        } else {
            crate::log::exception(format_args!(
                "{}\n{}",
                self.context(),
                traceback_text(py, exc)
            ));
        }
        self.end(INTERNAL_ERROR);
    }

    fn cancelled(&mut self) {
        self.end(INTERNAL_ERROR);
    }

    fn returned(&mut self) {
        match self.stage {
            Stage::Handshake => crate::error!(
                "{}: the ASGI app returned without accepting or closing",
                self.context()
            ),
            Stage::DenyStarted | Stage::Denying => crate::error!(
                "{}: the ASGI app returned without completing its response",
                self.context()
            ),
            _ => {}
        }
        // An app that returns while open has closed normally, as far as it knows.
        self.end(1000);
    }
}

fn disconnect(event: &Bound<'_, PyDict>, code: u16, reason: &str) -> PyResult<()> {
    let py = event.py();
    event.set_item(intern!(py, "type"), intern!(py, "websocket.disconnect"))?;
    event.set_item(intern!(py, "code"), code)?;
    event.set_item(intern!(py, "reason"), reason)?;
    Ok(())
}
