//! What app threads and the asyncio loop post back, applied to the
//! connections' output.

use std::time::Instant;

use crate::engine::ConnId;
use crate::handoff::Output;
use crate::http::{self, ResponseWriter};

use super::*;

impl Worker<'_> {
    /// Apply what app threads posted: encode heads and body bytes into
    /// their connections' output, finish responses, then flush.
    pub(super) fn apply_mail(&mut self) {
        let Some(mailbox) = &self.mailbox else { return };
        let mut mail = std::mem::take(&mut self.mail);
        mailbox.drain(&mut mail);
        for (ticket, out) in mail.drain(..) {
            let id = ConnId(ticket.conn);
            let Some(c) = self.state.get(id) else {
                continue;
            };
            if c.h2.is_some() {
                self.h2_mail(id, ticket, out);
                continue;
            }
            let Some(f) = c.inflight.as_mut().filter(|f| f.serial == ticket.serial) else {
                // A message for a connection that has closed since.
                continue;
            };
            let mut ended = None;
            match out {
                Output::Head {
                    status,
                    headers,
                    known_len,
                } => {
                    f.code = status_code(&status);
                    conn::reuse_output(&mut c.out, &mut self.engine);
                    f.writer = Some(ResponseWriter::start(
                        &mut c.out,
                        &mut self.date,
                        f.req,
                        &status,
                        &headers,
                        known_len,
                        f.force_close
                            || self.stopping.is_some()
                            || upload::head_must_close(&c.http),
                    ));
                }
                Output::EarlyHints(headers) => {
                    if f.writer.is_none() && f.req.version == http::Version::Http11 {
                        conn::reuse_output(&mut c.out, &mut self.engine);
                        http::early_hints(&mut c.out, &headers);
                    }
                }
                Output::Data(data) => {
                    f.body_unflushed += data.len();
                    if let Some(w) = &mut f.writer {
                        w.body(&mut c.out, &data);
                    }
                }
                Output::Trailers(trailers) => {
                    // The response ends here; the `End` that follows finds
                    // it answered.
                    let keep = match &mut f.writer {
                        Some(w) => {
                            conn::reuse_output(&mut c.out, &mut self.engine);
                            w.finish_with_trailers(&mut c.out, &trailers)
                        }
                        None => {
                            http::error_response(&mut c.out, 500, "Internal Server Error");
                            false
                        }
                    };
                    ended = Some((keep, f.code));
                }
                Output::End => {
                    let keep = match &mut f.writer {
                        Some(w) => w.finish(&mut c.out),
                        None => {
                            http::error_response(&mut c.out, 500, "Internal Server Error");
                            false
                        }
                    };
                    ended = Some((keep, f.code));
                }
                Output::Accept {
                    subprotocol,
                    headers,
                } => {
                    if let Some(ws) = c.ws.as_deref_mut() {
                        conn::reuse_output(&mut c.out, &mut self.engine);
                        let cfg = &self.ws.cfg;
                        if let Err(e) = ws.accept(cfg, subprotocol.as_deref(), &headers, &mut c.out)
                        {
                            crate::error!("Cannot accept the WebSocket: {e}");
                            http::error_response(&mut c.out, 500, "Internal Server Error");
                            ended = Some((false, 500));
                        }
                    }
                }
                Output::Message(m) => {
                    f.body_unflushed += m.len();
                    if let Some(ws) = c.ws.as_deref_mut() {
                        conn::reuse_output(&mut c.out, &mut self.engine);
                        ws.send(&m, &mut c.out);
                    }
                }
                Output::Close { code, reason } => {
                    if let Some(ws) = c.ws.as_deref_mut() {
                        conn::reuse_output(&mut c.out, &mut self.engine);
                        ws.close(code, &reason, &mut c.out);
                    }
                }
                Output::Resume => {
                    let head_sent = f.writer.is_some();
                    upload::resumed(c, head_sent);
                }
                Output::DisconnectTaken => {
                    if let Some(ws) = c.ws.as_deref_mut() {
                        conn::reuse_output(&mut c.out, &mut self.engine);
                        ws.disconnect_taken(&mut c.out);
                    }
                }
                Output::Failed => {
                    if f.writer.is_none() {
                        http::error_response(&mut c.out, 500, "Internal Server Error");
                        f.code = 500;
                    }
                    ended = Some((false, f.code));
                }
            }
            if let Some((keep, code)) = ended {
                // Before the flow goes: an unread request body is dropped or closes.
                let keep = upload::after_response(c) && keep;
                if let Some(mut f) = c.inflight.take() {
                    // The app side is done: whatever it handed over no longer needs counting.
                    f.body_unflushed = 0;
                    f.handed_written();
                    if c.ws.is_some() {
                        // A WebSocket denied or failed: a later receive() is a disconnect.
                        f.flow.close();
                    }
                    if let Some(t) = f.metric_start {
                        response_ended(self.status, code, t);
                    }
                }
                if !keep {
                    c.phase = Phase::CloseAfterSend;
                }
                c.last_active = Instant::now();
            }
            self.state.mark_ready(id);
        }
        self.mail = mail;
    }
}
