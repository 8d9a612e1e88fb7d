//! Writing responses: pulling a body, handing bytes to the engine, closing.

use std::time::Instant;

use pyo3::prelude::*;

use crate::engine::{Bytes, ConnId};
use crate::sys::shm::{self, Status};
use crate::wsgi::Chunk;

use super::*;

/// The first `.1` bytes of an app's `bytes` object (all of it unless a
/// Content-Length ends inside it), as the engine sends them.
pub(super) struct Prefix(pyo3::pybacked::PyBackedBytes, usize);

impl AsRef<[u8]> for Prefix {
    fn as_ref(&self) -> &[u8] {
        &self.0[..self.1]
    }
}

/// Marks the end of an app call when dropped (whatever path leaves the pump).
pub(super) struct CallGuard<'a>(pub(super) Option<&'a Status>);

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        if let Some(s) = self.0 {
            s.end_call();
        }
    }
}

impl Worker<'_> {
    /// Pull body chunks until the body ends or enough output is waiting.
    pub(super) fn pump(&mut self, py: Python<'_>, id: ConnId) {
        let Some(c) = self.state.get(id) else { return };
        let Some(stream) = c.stream.take() else {
            return;
        };
        if let Some(s) = self.status {
            // The body is app code too: a generator stuck here is a stuck call.
            s.call_ms.store(
                shm::coarse_monotonic_ms(),
                std::sync::atomic::Ordering::Release,
            );
        }
        let _call = CallGuard(self.status);
        let Some(mut stream) = self.send_file_body(py, id, stream) else {
            return;
        };
        let Some(c) = self.state.get(id) else { return };
        while c.pending_output() < OUTPUT_HIGH_WATER {
            match stream.body.next_piece(py) {
                Chunk::Data(piece) => {
                    let data = piece.bytes(py);
                    if let Some(d) = &mut stream.done {
                        d.sent += data.len() as u64;
                    }
                    let backed = (data.len() >= SEND_IN_PLACE_MIN && c.tls.is_none())
                        .then(|| piece.backed(py))
                        .flatten();
                    let Some(backed) = backed else {
                        stream.writer.body(&mut c.out, data);
                        continue;
                    };
                    // A large bytes object goes out from where it is: what
                    // precedes it first, then the object itself.
                    let n = stream.writer.body_external(&mut c.out, backed.len());
                    if n > 0 {
                        let before = std::mem::take(&mut c.out);
                        c.queued += before.len() + n;
                        if !before.is_empty() {
                            self.engine.send(id, before);
                        }
                        self.engine
                            .send(id, Bytes::Shared(Box::new(Prefix(backed, n))));
                        stream.writer.external_end(&mut c.out, n);
                    }
                }
                Chunk::End => {
                    let keep = stream.writer.finish(&mut c.out);
                    return stream.end(py, c, keep, self.status, self.cfg, self.age);
                }
                Chunk::Failed => {
                    // The head is already out: all we can do is end the connection.
                    return stream.end(py, c, false, self.status, self.cfg, self.age);
                }
            }
        }
        c.stream = Some(stream);
        self.flush(id);
    }

    /// Hand the connection's output to the engine (encrypted first on TLS,
    /// with whatever handshake records TLS has to send).
    pub(super) fn flush(&mut self, id: ConnId) {
        let Some(c) = self.state.get(id) else {
            return;
        };
        if let Some(tls) = &mut c.tls {
            if !c.out.is_empty() {
                if let Err(e) = tls.send(&c.out, &mut c.wire) {
                    crate::debug!("TLS send failed: {e}");
                    c.broken = true;
                }
                c.out.clear();
            }
            tls.take_output(&mut c.wire);
            if !c.wire.is_empty() {
                let wire = std::mem::take(&mut c.wire);
                c.queued += wire.len();
                self.engine.send(id, wire);
            }
        } else if !c.out.is_empty() {
            let out = std::mem::take(&mut c.out);
            c.queued += out.len();
            self.engine.send(id, out);
        }
        let queued = c.queued;
        if let Some(f) = &mut c.inflight {
            f.flushed(queued);
        }
    }

    /// The last response is written: close, or shut down our side and linger.
    pub(super) fn finish_close(&mut self, py: Python<'_>, id: ConnId) {
        let Some(c) = self.state.get(id) else { return };
        if c.eof {
            return self.close(py, id);
        }
        c.phase = Phase::Lingering {
            until: Instant::now() + LINGER,
        };
        let had_tls = match &mut c.tls {
            Some(tls) => {
                tls.close_notify(&mut c.wire);
                true
            }
            None => false,
        };
        if had_tls {
            self.flush(id);
        }
        let Some(c) = self.state.get(id) else { return };
        self.engine.shutdown_write(id);
        if c.recv_paused {
            c.recv_paused = false;
            self.engine.resume_recv(id);
        }
    }

    pub(super) fn close(&mut self, py: Python<'_>, id: ConnId) {
        let Some(slot) = self.state.conns.get_mut(id.index()) else {
            return;
        };
        // Everything is done in the slot: moving a connection out copies it.
        let Some(c) = slot.as_mut() else { return };
        if let Some(f) = c.inflight.take() {
            // The app side stops producing and closes its body.
            f.flow.close();
            if let (Some(_), Some(s)) = (f.metric_start, self.status) {
                s.in_flight
                    .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        if let Some(stream) = c.stream.take() {
            stream.body.close(py);
            // The client left mid-response: no longer in flight, not counted as answered.
            if let (Some(_), Some(s)) = (stream.metric, self.status) {
                s.in_flight
                    .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        if let Some(h) = c.h2.as_deref_mut() {
            h.drop_answers(py, self.status);
        }
        self.state.parsers.keep(&mut c.http);
        *slot = None;
        self.state.open -= 1;
        self.engine.close(id);
    }
}
