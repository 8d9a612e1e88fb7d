//! Moving one ready connection forward: read, parse, answer in order.

use std::time::Instant;

use pyo3::prelude::*;

use crate::engine::ConnId;
use crate::http;

use super::*;

impl Worker<'_> {
    /// Move one ready connection forward.
    pub(super) fn step(&mut self, py: Python<'_>, id: ConnId) {
        let Some(c) = self.state.get(id) else { return };
        if c.broken {
            return self.close(py, id);
        }
        match c.phase {
            Phase::Lingering { .. } => {
                if c.eof {
                    self.close(py, id);
                }
                return;
            }
            Phase::CloseAfterSend => {
                self.flush(id);
                if self.state.get(id).is_some_and(|c| c.pending_output() == 0) {
                    self.finish_close(py, id);
                }
                return;
            }
            Phase::Open if c.ws.is_some() => return self.step_ws(id),
            Phase::Open if c.h2.is_some() => return self.run_h2(py, id),
            Phase::Open => {}
        }
        if self.start_h2(id) {
            return self.run_h2(py, id);
        }
        self.process(py, id);
        let Some(c) = self.state.get(id) else { return };
        if c.phase == Phase::CloseAfterSend && c.pending_output() == 0 {
            return self.finish_close(py, id);
        }
        // Reading more only makes sense while we keep up with writing.
        // While app threads answer, keep reading (to see the client leave)
        // unless pipelined requests pile up.
        let backed_up = c.stream.is_some()
            || c.pending_output() >= OUTPUT_HIGH_WATER
            || (c.inflight.is_some() && c.http.buffered() >= OUTPUT_HIGH_WATER)
            || upload::holds_back(c);
        if backed_up && !c.recv_paused {
            c.recv_paused = true;
            self.engine.pause_recv(id);
        } else if !backed_up && c.recv_paused {
            c.recv_paused = false;
            self.engine.resume_recv(id);
        }
        // The rest of a large body goes straight into its memory (not for
        // TLS, whose bytes need decrypting first).
        if !c.recv_paused && c.tls.is_none() && c.http.reading_body() {
            if let Some((memory, rest)) = c.http.lend_body(LEND_BODY_MIN) {
                if let Err(memory) = self.engine.recv_into(id, memory, rest) {
                    c.http.return_body(memory);
                }
            }
        }
    }

    /// Answer what the connection's bytes hold, in order, until it needs
    /// more bytes or its output is backed up.
    pub(super) fn process(&mut self, py: Python<'_>, id: ConnId) {
        loop {
            let Some(c) = self.state.get(id) else { return };
            if c.h2.is_some() {
                break;
            }
            if c.inflight.is_some() {
                // An ASGI app's request body still arriving goes to it.
                self.pass_body(id);
                break;
            }
            if c.stream.is_some() {
                self.pump(py, id);
                let Some(c) = self.state.get(id) else { return };
                if c.stream.is_some() {
                    break;
                }
                continue;
            }
            if c.phase != Phase::Open || c.pending_output() >= OUTPUT_HIGH_WATER {
                break;
            }
            match c.http.poll() {
                http::Event::NeedMore => break,
                http::Event::SendContinue => c.out.extend_from_slice(http::CONTINUE),
                http::Event::Request(req) => {
                    c.request_started = (c.http.buffered() > 0).then(Instant::now);
                    let streamed = matches!(req.body, http::RequestBody::Streamed);
                    if (req.body.len() >= LEND_BODY_MIN && c.tls.is_none()) || streamed {
                        // An uploading client: let its next bodies skip the
                        // engine's buffers; a body streamed to an ASGI app
                        // is received in bounded pieces, so pausing for the
                        // app leaves little held in the engine.
                        self.engine.recv_bounded(id);
                    }
                    self.respond(py, id, req);
                    if streamed {
                        self.unclaimed_body(id);
                    }
                }
                http::Event::Error(e) => {
                    let ip = c.peer_ip();
                    match e.status() {
                        // The server's fault (a full or failing
                        // --body-temp-dir): an error, and the client gets
                        // no file names.
                        Some(status) if e.kind == http::HttpErrorKind::BodyNotStored => {
                            crate::error!(
                                "Cannot store the request body from ip={ip}: {}",
                                e.detail
                            );
                            http::error_response(
                                &mut c.out,
                                status,
                                "The request body could not be stored.",
                            );
                        }
                        Some(status) => {
                            crate::warn!("Invalid request from ip={ip}: {e}");
                            http::error_response(&mut c.out, status, &e.detail);
                        }
                        None => crate::debug!("Client ip={ip} went away mid-request: {e}"),
                    }
                    c.phase = Phase::CloseAfterSend;
                    break;
                }
                http::Event::Closed => {
                    c.phase = Phase::CloseAfterSend;
                    break;
                }
            }
        }
        self.flush(id);
    }
}
