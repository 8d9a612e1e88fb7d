//! A test client: frames built by hand, the server's output read back.

use std::time::Instant;

use super::conn::{Connection, Event, Settings};
use super::error::Reason;
use super::frame::{self, flag, kind, FrameHead, PREFACE};
use super::hpack::{Decoder, Encoder, Indexing};

pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    frame::write_head(&mut out, payload.len(), kind, flags, stream);
    out.extend_from_slice(payload);
    out
}

pub fn settings(pairs: &[(u16, u32)]) -> Vec<u8> {
    let mut out = Vec::new();
    frame::write_settings(&mut out, pairs);
    out
}

/// Take a connection's output as frames.
pub fn frames_of(conn: &mut Connection) -> Vec<Out> {
    let out = conn.output().to_vec();
    conn.consume_output(out.len());
    let mut frames = Vec::new();
    let mut at = 0;
    while at < out.len() {
        let head = FrameHead::parse(out[at..at + 9].try_into().unwrap());
        let end = at + 9 + head.len as usize;
        frames.push(Out {
            kind: head.kind,
            flags: head.flags,
            stream: head.stream,
            payload: out[at + 9..end].to_vec(),
        });
        at = end;
    }
    frames
}

/// A frame the server wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Out {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl Out {
    pub fn reason(&self) -> Reason {
        let at = if self.kind == kind::GOAWAY { 4 } else { 0 };
        Reason(u32::from_be_bytes(
            self.payload[at..at + 4].try_into().unwrap(),
        ))
    }
    pub fn goaway_last(&self) -> u32 {
        u32::from_be_bytes(self.payload[..4].try_into().unwrap())
    }
}

pub struct Client {
    pub enc: Encoder,
    pub dec: Decoder,
    pub conn: Connection,
    pub now: Instant,
}

impl Client {
    /// A connection past the preface and the SETTINGS exchange.
    pub fn new() -> Client {
        Client::with(Settings::default(), &[])
    }

    pub fn with(server: Settings, client_settings: &[(u16, u32)]) -> Client {
        let now = Instant::now();
        let mut c = Client {
            enc: Encoder::new(),
            dec: Decoder::new(4096),
            conn: Connection::new(server, now),
            now,
        };
        let mut hello = PREFACE.to_vec();
        hello.extend(settings(client_settings));
        hello.extend(frame(kind::SETTINGS, flag::ACK, 0, &[]));
        c.feed(&hello);
        let out = c.frames();
        assert_eq!(out[0].kind, kind::SETTINGS);
        assert!(out
            .iter()
            .any(|f| f.kind == kind::SETTINGS && f.flags == flag::ACK));
        c
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        self.conn.feed(bytes, self.now);
    }

    pub fn block(&mut self, fields: &[(&str, &str)]) -> Vec<u8> {
        let mut block = Vec::new();
        for (n, v) in fields {
            self.enc.encode(
                n.as_bytes(),
                v.as_bytes(),
                Indexing::Incremental,
                &mut block,
            );
        }
        block
    }

    pub fn headers(&mut self, stream: u32, fields: &[(&str, &str)], end_stream: bool) -> Vec<u8> {
        let block = self.block(fields);
        let flags = flag::END_HEADERS | if end_stream { flag::END_STREAM } else { 0 };
        frame(kind::HEADERS, flags, stream, &block)
    }

    pub fn get(&mut self, stream: u32, path: &str) -> Vec<u8> {
        self.headers(
            stream,
            &[
                (":method", "GET"),
                (":scheme", "https"),
                (":authority", "example.com"),
                (":path", path),
            ],
            true,
        )
    }

    /// Take the server's output as frames.
    pub fn frames(&mut self) -> Vec<Out> {
        frames_of(&mut self.conn)
    }

    pub fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.conn.poll()).collect()
    }

    /// Decode a response header block the server sent.
    pub fn fields(&mut self, block: &[u8]) -> Vec<(String, String)> {
        let mut got = Vec::new();
        self.dec
            .decode(block, usize::MAX, |n, v| {
                got.push((
                    String::from_utf8_lossy(n).into_owned(),
                    String::from_utf8_lossy(v).into_owned(),
                ))
            })
            .unwrap();
        got
    }

    /// The GOAWAY the server sent, if any.
    pub fn goaway(frames: &[Out]) -> Option<&Out> {
        frames.iter().find(|f| f.kind == kind::GOAWAY)
    }
}
