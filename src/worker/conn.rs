//! One client connection as the worker sees it: the HTTP state, the output
//! being built, the response body being pulled, and where it is in its life.

use std::net::SocketAddr;
use std::time::Instant;

use crate::http::{self, ResponseWriter};
use crate::wsgi::{Body, ConnInfo};

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

pub struct Connection {
    pub http: http::Conn,
    /// The environ's view of the connection (listener address, peer), built once at accept.
    pub info: ConnInfo,
    pub peer: Option<SocketAddr>,
    /// Response bytes built but not yet handed to the engine.
    pub out: Vec<u8>,
    /// Bytes handed to the engine and not yet reported written.
    pub queued: usize,
    pub stream: Option<Stream>,
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
    /// TLS state when the listener serves HTTPS.
    pub tls: Option<crate::tls::TlsConn>,
    /// Encrypted bytes waiting to be handed to the engine.
    pub wire: Vec<u8>,
}

impl Connection {
    pub fn new(http: http::Conn, info: ConnInfo, now: Instant) -> Connection {
        let peer = info.peer;
        Connection {
            http,
            info,
            peer,
            out: Vec::new(),
            queued: 0,
            stream: None,
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
        }
    }

    /// Nothing in flight: no partial request, no response being produced or written.
    pub fn is_idle(&self) -> bool {
        self.phase == Phase::Open
            && self.stream.is_none()
            && self.queued == 0
            && self.out.is_empty()
            && self.http.buffered() == 0
            && !self.http.reading_body()
    }

    pub fn pending_output(&self) -> usize {
        self.queued + self.out.len() + self.wire.len()
    }

    pub fn peer_ip(&self) -> String {
        self.peer.map(|p| p.ip().to_string()).unwrap_or_default()
    }
}
