//! One stream's state (RFC 9113 5.1) as two halves, and its flow-control
//! windows and queued response.
//!
//! A server stream starts when the client's HEADERS arrive, so it is never
//! idle or reserved here: `open` is both halves open, `half-closed (remote)`
//! is `recv: Closed`, `half-closed (local)` is `send: Closed`, and a stream
//! with both halves closed is dropped from the connection's table.

/// The client's half: request body still coming, or done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recv {
    Open,
    Closed,
}

/// Our half: no response head yet, head sent, or END_STREAM sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Send {
    Idle,
    Open,
    Closed,
}

/// Who closed a stream the connection still remembers: frames the client
/// sent before it saw our RST_STREAM are ignored (RFC 9113 5.1), frames on
/// a stream it closed itself are errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClosedBy {
    Us,
    Peer,
}

#[derive(Debug)]
pub struct Stream {
    pub recv: Recv,
    pub send: Send,
    /// Credit the client still has on this stream.
    pub recv_window: i64,
    /// Bytes the consumer took that we have not yet returned as WINDOW_UPDATE.
    pub recv_unacked: u32,
    /// Declared content-length and DATA bytes so far.
    pub content_length: Option<u64>,
    pub received: u64,
    /// Credit we have to send on this stream.
    pub send_window: i64,
    /// Response bytes waiting for window: `queued[sent..]`.
    pub queued: Vec<u8>,
    pub sent: usize,
    /// END_STREAM once `queued` is out (after the trailers, if any).
    pub end_queued: bool,
    pub trailers: Option<Vec<(Vec<u8>, Vec<u8>)>>,
    /// The caller saw data left queued, so wants `Writable` when it drains.
    pub notify_writable: bool,
}

impl Stream {
    pub fn new(recv_window: u32, send_window: i64, end_stream: bool) -> Stream {
        Stream {
            recv: if end_stream { Recv::Closed } else { Recv::Open },
            send: Send::Idle,
            recv_window: i64::from(recv_window),
            recv_unacked: 0,
            content_length: None,
            received: 0,
            send_window,
            queued: Vec::new(),
            sent: 0,
            end_queued: false,
            trailers: None,
            notify_writable: false,
        }
    }

    pub fn pending(&self) -> usize {
        self.queued.len() - self.sent
    }

    pub fn is_closed(&self) -> bool {
        self.recv == Recv::Closed && self.send == Send::Closed
    }
}
