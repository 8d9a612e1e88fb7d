//! One client connection as the worker sees it: the HTTP state, the output
//! being built, the response body being pulled, and where it is in its life.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use crate::http::{self, ConnInfo, ResponseWriter};
use crate::wsgi::Body;

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Reading requests and answering them.
    Open,
    /// The last response is queued: once it is written, shut down our side.
    CloseAfterSend,
    /// Our side is shut down; unread client bytes are drained (so the
    /// kernel does not answer them with a reset that destroys the response
    /// in flight) until EOF or the deadline.
    Lingering { until: Instant },
}

/// A response whose body is still being pulled from the app.
pub struct Stream {
    pub writer: ResponseWriter,
    pub body: Body,
    /// Kept for the access log / post_request hook when either is on.
    pub done: Option<Box<super::RequestDone>>,
    /// Status code and start of the app call, when metrics are on.
    pub metric: Option<(u16, Instant)>,
}

/// A request handed to app threads (`--threads`, ASGI) and not yet fully
/// answered: the loop encodes what they post back.
pub struct InFlight {
    pub serial: u64,
    pub flow: std::sync::Arc<crate::handoff::Flow>,
    pub req: http::RequestInfo,
    pub force_close: bool,
    /// Set once the head arrived.
    pub writer: Option<ResponseWriter>,
    /// Start of the request, when metrics are on; the status code once known.
    pub metric_start: Option<Instant>,
    pub code: u16,
    /// Body bytes put in `out` and not yet handed to the engine.
    pub body_unflushed: usize,
    /// Body bytes handed to the engine and not yet reported written.
    pub body_handed: usize,
}

impl InFlight {
    /// The engine wrote everything handed to it: tell the app side.
    pub fn handed_written(&mut self) {
        self.flow.written(std::mem::take(&mut self.body_handed));
    }

    /// The output was handed to the engine; with nothing queued there
    /// (a HEAD response drops body bytes), all of it counts as written.
    pub fn flushed(&mut self, queued: usize) {
        self.body_handed += std::mem::take(&mut self.body_unflushed);
        if queued == 0 {
            self.handed_written();
        }
    }
}

impl Stream {
    /// The body ended (`keep`: the connection may serve another request):
    /// close the iterable, count the response, log it and run post_request.
    pub fn end(
        self,
        py: pyo3::Python<'_>,
        c: &mut Connection,
        keep: bool,
        status: Option<&crate::sys::shm::Status>,
        cfg: &crate::config::Config,
        age: u64,
    ) {
        self.body.close(py);
        if !keep {
            c.phase = Phase::CloseAfterSend;
        }
        if let Some((code, t)) = self.metric {
            super::response_ended(status, code, t);
        }
        if let Some(d) = self.done {
            d.report(py, cfg, age);
            c.http.recycle(d.head);
        }
    }
}

/// Before a response head is written into a connection's `out`: when it
/// has no memory (it went to the engine with the last response), take a
/// buffer the engine has written, so the response costs no allocation.
pub fn reuse_output(out: &mut Vec<u8>, engine: &mut crate::engine::Engine) {
    if out.capacity() == 0 {
        *out = engine.buffer();
    }
}

pub struct Connection {
    pub http: http::Conn,
    /// The environ's view of the connection (listener address, peer), built once at accept.
    pub info: ConnInfo,
    pub peer: Option<SocketAddr>,
    /// `peer`'s address as text, once asked for (`peer_ip`).
    peer_text: Option<Arc<str>>,
    /// Response bytes built but not yet handed to the engine.
    pub out: Vec<u8>,
    /// Bytes handed to the engine and not yet reported written.
    pub queued: usize,
    pub stream: Option<Stream>,
    /// A request being answered by app threads.
    pub inflight: Option<InFlight>,
    pub phase: Phase,
    pub last_active: Instant,
    /// When the first byte of the request being received arrived.
    pub request_started: Option<Instant>,
    pub requests: u64,
    /// The peer closed its side (or the connection broke).
    pub eof: bool,
    /// A write failed: the connection is to be closed at once.
    pub broken: bool,
    pub recv_paused: bool,
    /// Already in the worker's ready list.
    pub ready: bool,
    /// TLS state when the listener serves HTTPS. Boxed: it is large, and
    /// plain connections would otherwise copy its room on every move.
    pub tls: Option<Box<crate::tls::TlsConn>>,
    /// Encrypted bytes waiting to be handed to the engine.
    pub wire: Vec<u8>,
    /// An upgraded connection: its WebSocket (boxed: rare, and large).
    pub ws: Option<Box<super::websocket::WsConn>>,
    /// An unread ASGI request body is being dropped until then (`upload`).
    pub drain_until: Option<Instant>,
    /// An HTTP/2 connection (ALPN h2, or h2c).
    pub h2: Option<Box<super::http2::H2Conn>>,
}

impl Connection {
    pub fn new(http: http::Conn, info: ConnInfo, now: Instant) -> Connection {
        let peer = info.peer;
        Connection {
            http,
            info,
            peer,
            peer_text: None,
            out: Vec::new(),
            queued: 0,
            stream: None,
            inflight: None,
            phase: Phase::Open,
            last_active: now,
            request_started: None,
            requests: 0,
            eof: false,
            broken: false,
            recv_paused: false,
            ready: false,
            tls: None,
            wire: Vec::new(),
            ws: None,
            drain_until: None,
            h2: None,
        }
    }

    /// Nothing in flight: no partial request, no response being produced or written.
    pub fn is_idle(&self) -> bool {
        self.phase == Phase::Open
            && self.stream.is_none()
            && self.inflight.is_none()
            && self.queued == 0
            && self.out.is_empty()
            && self.http.buffered() == 0
            && !self.http.reading_body()
            && self.h2.as_ref().is_none_or(|h| h.is_idle())
    }

    /// Bytes from the peer (decrypted on TLS): to the HTTP parser, or to
    /// the WebSocket or HTTP/2 once upgraded.
    #[inline]
    pub fn feed(&mut self, data: &[u8], now: Instant) {
        if let Some(h) = &mut self.h2 {
            return h.conn.feed(data, now);
        }
        match &mut self.ws {
            None => self.http.feed(data),
            Some(ws) => ws.feed(data),
        }
    }

    pub fn pending_output(&self) -> usize {
        self.queued + self.out.len() + self.wire.len()
    }

    /// The peer's address as text (empty for a unix socket peer), made
    /// once per connection: the access log and hooks ask for every request.
    pub fn peer_ip(&mut self) -> Arc<str> {
        let peer = self.peer;
        self.peer_text
            .get_or_insert_with(|| peer.map(|p| p.ip().to_string()).unwrap_or_default().into())
            .clone()
    }
}
