//! One connection's request side: buffered bytes → `Event`s, in order.

use std::sync::Arc;

use super::{Config, Event, PeerTrust};

/// `HTTP/1.1 100 Continue`, sent when a request with `Expect: 100-continue` waits for its body.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

pub struct Conn {
    config: Arc<Config>,
    trust: PeerTrust,
    buf: Vec<u8>,
}

impl Conn {
    pub fn new(config: Arc<Config>, trust: PeerTrust) -> Conn {
        Conn {
            config,
            trust,
            buf: Vec::new(),
        }
    }

    /// Append bytes received from the peer.
    pub fn feed(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The peer shut down its sending side (a read returned 0).
    pub fn feed_eof(&mut self) {
        todo!()
    }

    /// Parse what has been fed so far.
    pub fn poll(&mut self) -> Event {
        let _ = (&self.config, &self.trust);
        todo!()
    }

    /// Bytes received and not yet consumed by a returned request; the
    /// worker stops reading while this is large (pipelining floods).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}
