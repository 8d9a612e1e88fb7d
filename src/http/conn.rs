//! One connection's request side: buffered bytes → `Event`s, in order.
//!
//! States: an optional PROXY preamble, then per request a head and a body.
//! Every state remembers how far it has looked, so feeding bytes one at a
//! time costs no rescans. Unconsumed bytes stay buffered for the next
//! request (pipelining). Errors are sticky.

use std::mem;
use std::sync::Arc;

use super::decode::Decoder;
use super::error::{HttpError, HttpErrorKind};
use super::framing::{framing, BodyKind};
use super::limits::Limits;
use super::parse::HeadParser;
use super::proxy::{read_preamble, Preamble, ProxyInfo};
use super::{Config, Event, Head, PeerTrust, ProxyProtocol, Request};

/// `HTTP/1.1 100 Continue`, sent when a request with `Expect: 100-continue` waits for its body.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

enum State {
    /// The first bytes of the connection may be a PROXY header.
    Preamble,
    Head,
    Body(Box<BodyState>),
    /// The last request did not allow another one; nothing more is read.
    Finished,
    Failed(HttpError),
}

struct BodyState {
    head: Head,
    decoder: Decoder,
    body: Vec<u8>,
    keep_alive: bool,
    /// `Expect: 100-continue` on HTTP/1.1, and no `SendContinue` returned yet.
    wants_continue: bool,
}

pub struct Conn {
    config: Arc<Config>,
    trust: PeerTrust,
    limits: Limits,
    buf: Vec<u8>,
    /// Start of the bytes not yet consumed by a returned request.
    pos: usize,
    eof: bool,
    state: State,
    head: HeadParser,
    proxy: Option<ProxyInfo>,
}

impl Conn {
    pub fn new(config: Arc<Config>, trust: PeerTrust) -> Conn {
        let limits = Limits::from_config(&config);
        let state = if config.proxy_protocol == ProxyProtocol::Off {
            State::Head
        } else {
            State::Preamble
        };
        Conn {
            config,
            trust,
            limits,
            buf: Vec::new(),
            pos: 0,
            eof: false,
            state,
            head: HeadParser::new(),
            proxy: None,
        }
    }

    /// Append bytes received from the peer.
    pub fn feed(&mut self, data: &[u8]) {
        if self.eof || matches!(self.state, State::Failed(_) | State::Finished) {
            return;
        }
        if self.pos > 0 {
            // Positions inside the parsers are relative to `pos`.
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// The peer shut down its sending side (a read returned 0).
    pub fn feed_eof(&mut self) {
        self.eof = true;
    }

    /// Parse what has been fed so far.
    pub fn poll(&mut self) -> Event {
        match self.step() {
            Ok(event) => event,
            Err(e) => {
                self.state = State::Failed(e.clone());
                Event::Error(e)
            }
        }
    }

    /// Bytes received and not yet consumed by a returned request; the
    /// worker stops reading while this is large (pipelining floods).
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn step(&mut self) -> Result<Event, HttpError> {
        loop {
            let input = &self.buf[self.pos..];
            match &mut self.state {
                State::Failed(e) => return Ok(Event::Error(e.clone())),
                State::Finished => return Ok(Event::Closed),
                State::Preamble => {
                    match read_preamble(input, self.config.proxy_protocol, self.trust.proxy)? {
                        Preamble::NeedMore => return self.need_more(),
                        Preamble::Absent => {}
                        Preamble::Found { info, len } => {
                            self.proxy = Some(info);
                            self.pos += len;
                        }
                    }
                    self.state = State::Head;
                }
                State::Head => {
                    let Some(parsed) = self.head.advance(
                        input,
                        &self.config,
                        &self.limits,
                        self.trust.forwarded,
                    )?
                    else {
                        return self.need_more();
                    };
                    self.pos += parsed.len;
                    self.head.reset();
                    let framing = framing(&parsed.head)?;
                    let decoder = match framing.body {
                        BodyKind::Empty => {
                            return Ok(self.request(parsed.head, Vec::new(), framing.keep_alive))
                        }
                        BodyKind::Length(n) => Decoder::length(n),
                        BodyKind::Chunked => Decoder::chunked(),
                    };
                    let body = Vec::with_capacity(decoder.size_hint());
                    self.state = State::Body(Box::new(BodyState {
                        head: parsed.head,
                        decoder,
                        body,
                        keep_alive: framing.keep_alive,
                        wants_continue: parsed.expect_continue,
                    }));
                }
                State::Body(b) => {
                    let progress =
                        b.decoder
                            .decode(input, &mut b.body, &self.config, &self.limits)?;
                    self.pos += progress.consumed;
                    if progress.done {
                        let State::Body(b) = mem::replace(&mut self.state, State::Head) else {
                            unreachable!("state checked above")
                        };
                        let BodyState {
                            head,
                            body,
                            keep_alive,
                            ..
                        } = *b;
                        return Ok(self.request(head, body, keep_alive));
                    }
                    if self.eof {
                        return Err(b.decoder.eof_error());
                    }
                    if mem::take(&mut b.wants_continue) {
                        return Ok(Event::SendContinue);
                    }
                    return Ok(Event::NeedMore);
                }
            }
        }
    }

    /// The current state needs more bytes: wait, or end at EOF.
    fn need_more(&mut self) -> Result<Event, HttpError> {
        if !self.eof {
            return Ok(Event::NeedMore);
        }
        if self.buf.len() == self.pos {
            self.state = State::Finished;
            return Ok(Event::Closed);
        }
        Err(HttpError::new(
            HttpErrorKind::NoMoreData,
            "connection closed inside a request head",
        ))
    }

    fn request(&mut self, head: Head, body: Vec<u8>, keep_alive: bool) -> Event {
        self.state = if keep_alive {
            State::Head
        } else {
            State::Finished
        };
        Event::Request(Request {
            head,
            body,
            keep_alive,
            proxy: self.proxy.clone(),
        })
    }
}
