//! One connection's request side: buffered bytes → `Event`s, in order.
//!
//! States: an optional PROXY preamble, then per request a head and a body.
//! Every state remembers how far it has looked, so feeding bytes one at a
//! time costs no rescans. Unconsumed bytes stay buffered for the next
//! request (pipelining). Errors are sticky.
//!
//! Once a head is parsed, body bytes are decoded as soon as they are fed
//! (not at the next `poll`), straight into the body's memory or file: the
//! input buffer only ever holds a partial chunk-size line or trailer, and
//! the bytes after the body.

use std::mem;
use std::sync::Arc;

use super::body::{too_large, BodyWriter, RequestBody};
use super::decode::Decoder;
use super::error::{HttpError, HttpErrorKind};
use super::framing::{framing, BodyKind};
use super::limits::Limits;
use super::parse::HeadParser;
use super::proxy::{read_preamble, Preamble, ProxyInfo};
use super::{Config, Event, Head, Header, PeerTrust, ProxyProtocol, Request};

/// The most memory one `lend_body` reserves beyond what the body holds.
const LEND_MAX: u64 = 1 << 20;

/// `HTTP/1.1 100 Continue`, sent when a request with `Expect: 100-continue` waits for its body.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Closed connections' parser memory kept for new ones, at most.
const POOL_MAX: usize = 32;
/// Larger input buffers (a big head, a pipelined burst) are not kept.
const POOL_BUF_MAX: usize = 8 * 1024;
/// Longer lists of fields are not kept.
const POOL_FIELDS_MAX: usize = 128;

/// The input buffer and list of fields of closed connections, for new
/// ones. Under `Connection: close` (nginx's default towards upstreams)
/// every request comes on a new connection; with this pool its parser
/// starts with memory and the request costs no allocation.
#[derive(Default)]
pub struct ParserPool {
    spares: Vec<(Vec<u8>, Vec<Header>)>,
}

impl ParserPool {
    /// A new connection's parser, given memory a closed one left.
    pub fn conn(&mut self, config: Arc<Config>, trust: PeerTrust) -> Conn {
        let mut conn = Conn::new(config, trust);
        if let Some((buf, headers)) = self.spares.pop() {
            conn.adopt(buf, headers);
        }
        conn
    }

    /// A connection is closing: keep its memory, within the bounds.
    pub fn keep(&mut self, conn: &mut Conn) {
        if self.spares.len() >= POOL_MAX {
            return;
        }
        let mut buf = mem::take(&mut conn.buf);
        let mut headers = conn.head.take_fields();
        if buf.capacity() > POOL_BUF_MAX {
            buf = Vec::new();
        }
        if headers.capacity() > POOL_FIELDS_MAX {
            headers = Vec::new();
        }
        if buf.capacity() == 0 && headers.capacity() == 0 {
            return;
        }
        // Emptied when adopted.
        self.spares.push((buf, headers));
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.spares.len()
    }
}

enum State {
    /// The first bytes of the connection may be a PROXY header.
    Preamble,
    Head,
    Body(Box<BodyState>),
    /// The last request did not allow another one; nothing more is read.
    Finished,
    Failed(HttpError),
}

/// Where a body's decoded bytes go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Delivery {
    /// Collected whole and returned with its request (`Event::Request`).
    Whole,
    /// The request was returned already (`RequestBody::Streamed`): the
    /// bytes wait to be taken with `take_body`.
    Pieces,
    /// The request was answered without reading all of its body: the rest
    /// is decoded and dropped, until the body has `limit` bytes in all
    /// (past that the connection ends).
    Skip { limit: u64 },
}

/// What `Conn::take_body` found for a body delivered in pieces.
#[derive(Debug, PartialEq, Eq)]
pub enum BodyEvent {
    /// The next decoded bytes, in order.
    Data(Vec<u8>),
    /// The body is complete; the connection goes on with the next request.
    End,
    /// Nothing decoded is waiting: feed more bytes.
    NeedMore,
    /// The body is broken (bad framing, over `limit_request_body`, or the
    /// peer closed before its end). Answer `error.status()` if nothing was
    /// answered yet, and close the connection.
    Error(HttpError),
}

struct BodyState {
    head: Head,
    delivery: Delivery,
    /// An error met while delivering in pieces, reported by `take_body`
    /// once the bytes before it are taken.
    error: Option<HttpError>,
    decoder: Decoder,
    body: BodyWriter,
    keep_alive: bool,
    /// `Expect: 100-continue` on HTTP/1.1, and no `SendContinue` returned yet.
    wants_continue: bool,
    /// The decoder has seen the end of the body; the next `poll` returns it.
    done: bool,
    /// The body's memory is lent out (`lend_body`) and held this many
    /// bytes then; nothing is decoded until it is back.
    lent: Option<usize>,
}

impl BodyState {
    /// Decode body bytes from the start of `input`; returns how many were used.
    fn advance(&mut self, input: &[u8], cfg: &Config, limits: &Limits) -> Result<usize, HttpError> {
        if self.done || self.lent.is_some() || self.error.is_some() {
            return Ok(0);
        }
        let progress = self.decoder.decode(input, &mut self.body, cfg, limits)?;
        self.done = progress.done;
        Ok(progress.consumed)
    }
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

    /// Append bytes received from the peer. While a body is being received
    /// its bytes are decoded here and now (an error is kept for `poll`).
    #[inline]
    pub fn feed(&mut self, data: &[u8]) {
        if let State::Body(_) = self.state {
            return self.feed_body(data);
        }
        if self.eof || matches!(self.state, State::Failed(_) | State::Finished) {
            return;
        }
        self.compact();
        self.buf.extend_from_slice(data);
    }

    /// Drop the bytes consumed by returned requests.
    #[inline]
    fn compact(&mut self) {
        if self.pos > 0 {
            // Positions inside the parsers are relative to `pos`.
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
    }

    /// `feed` while a body is being received: decode `data` into the body,
    /// buffering only what the decoder cannot use yet.
    fn feed_body(&mut self, data: &[u8]) {
        if self.eof {
            return;
        }
        let nothing_buffered = self.pos == self.buf.len();
        self.compact();
        let State::Body(b) = &mut self.state else {
            return;
        };
        let decoded = if nothing_buffered {
            // Decode straight from `data`; keep only what is left.
            b.advance(data, &self.config, &self.limits).map(|used| {
                self.buf.extend_from_slice(&data[used..]);
                0
            })
        } else {
            self.buf.extend_from_slice(data);
            b.advance(&self.buf, &self.config, &self.limits)
        };
        match decoded {
            Ok(used) => self.pos = used,
            Err(e) => self.body_failed(e),
        }
    }

    /// A body's bytes are broken: the error is the next event (for a body
    /// in pieces, once the bytes before it are taken); a skipped body just
    /// ends the connection (its request was answered).
    fn body_failed(&mut self, e: HttpError) {
        match &mut self.state {
            State::Body(b) if b.delivery == Delivery::Pieces => b.error = Some(e),
            State::Body(b) if matches!(b.delivery, Delivery::Skip { .. }) => {
                self.state = State::Finished
            }
            _ => self.state = State::Failed(e),
        }
    }

    /// The peer shut down its sending side (a read returned 0).
    pub fn feed_eof(&mut self) {
        self.eof = true;
    }

    /// Parse what has been fed so far. After a request whose `keep_alive`
    /// is false (HTTP/1.0 without keep-alive, `Connection: close`, CONNECT,
    /// a gzip-like coding before chunked) nothing more is parsed: the next
    /// poll returns `Closed`.
    pub fn poll(&mut self) -> Event {
        match self.step() {
            Ok(event) => event,
            Err(e) => {
                self.state = State::Failed(e.clone());
                Event::Error(e)
            }
        }
    }

    /// A request head has been parsed and its body is still arriving
    /// (the worker times body reads differently from the head).
    pub fn reading_body(&self) -> bool {
        matches!(self.state, State::Body(_))
    }

    /// For a body of known length, kept in memory, with at least `min`
    /// bytes still to come and none waiting in the input: the body's memory
    /// with room for the rest (at most `LEND_MAX` more), and that room. The caller
    /// appends received bytes (at most that many) and gives it back with
    /// `return_body`, saving the copy through the input buffer; meanwhile
    /// fed bytes wait in the input.
    pub fn lend_body(&mut self, min: u64) -> Option<(Vec<u8>, usize)> {
        let State::Body(b) = &mut self.state else {
            return None;
        };
        let rest = b.decoder.length_remaining()?;
        if self.eof || b.done || b.lent.is_some() || rest < min.max(1) || self.pos < self.buf.len()
        {
            return None;
        }
        // Room for what has to come, but never reserved ahead in large
        // steps: with --body-buffer-size 0 any announced length is kept
        // in memory, and memory follows the bytes that arrive.
        let room = usize::try_from(rest.min(LEND_MAX)).ok()?;
        let mut memory = b.body.take_memory()?;
        memory.reserve_exact(room);
        b.lent = Some(memory.len());
        Some((memory, room))
    }

    /// Take back what `lend_body` lent, with the body bytes received into it.
    pub fn return_body(&mut self, memory: Vec<u8>) {
        let State::Body(b) = &mut self.state else {
            return;
        };
        let Some(before) = b.lent.take() else {
            return;
        };
        let added = memory.len().saturating_sub(before) as u64;
        b.done = b.decoder.skip(added);
        b.body.put_memory(memory);
    }

    /// The connection leaves HTTP (a WebSocket upgrade was accepted): the
    /// bytes received after the last request, which belong to the new
    /// protocol. Nothing more is parsed.
    pub fn take_buffered(&mut self) -> Vec<u8> {
        let rest = self.buf.split_off(self.pos);
        self.buf.clear();
        self.pos = 0;
        self.state = State::Finished;
        rest
    }

    /// The bytes received and not yet consumed by a returned request (to
    /// look for the HTTP/2 preface before parsing).
    pub fn pending(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Bytes received and not yet consumed by a returned request; the
    /// worker stops reading while this is large (pipelining floods).
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    // Inlined: `poll` is its one caller, and a request is not moved twice.
    #[inline(always)]
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
                    continue;
                }
                State::Head => {
                    let Some(end) = self.head.advance(
                        input,
                        &self.config,
                        &self.limits,
                        self.trust.forwarded,
                    )?
                    else {
                        return self.need_more();
                    };
                    let head_buf = self.take_head(end);
                    let parsed = self.head.assemble(head_buf, &self.config);
                    self.head.reset();
                    let framing = framing(&parsed.head, parsed.framing_fields)?;
                    let limit = self.config.limit_request_body;
                    if let BodyKind::Length(n) = framing.body {
                        if limit > 0 && n > limit {
                            return Err(too_large(limit));
                        }
                    }
                    let (decoder, expected) = match framing.body {
                        BodyKind::Empty => {
                            let body = RequestBody::default();
                            return Ok(self.request(parsed.head, body, framing.keep_alive));
                        }
                        BodyKind::Length(n) => (Decoder::length(n), Some(n)),
                        BodyKind::Chunked => (Decoder::chunked(), None),
                    };
                    let streamed = self.config.stream_bodies;
                    let (body, delivery) = if streamed {
                        (BodyWriter::stream(), Delivery::Pieces)
                    } else {
                        (BodyWriter::new(expected, &self.config)?, Delivery::Whole)
                    };
                    self.state = State::Body(Box::new(BodyState {
                        head: parsed.head,
                        delivery,
                        error: None,
                        decoder,
                        body,
                        keep_alive: framing.keep_alive,
                        wants_continue: parsed.expect_continue,
                        done: false,
                        lent: None,
                    }));
                    if streamed {
                        return self.start_pieces();
                    }
                    continue;
                }
                State::Body(b) => {
                    match b.delivery {
                        Delivery::Whole => {}
                        Delivery::Pieces => return Ok(Event::NeedMore),
                        Delivery::Skip { limit } => {
                            match b.advance(input, &self.config, &self.limits) {
                                Ok(used) => {
                                    self.pos += used;
                                    if b.done {
                                        self.state = if b.keep_alive {
                                            State::Head
                                        } else {
                                            State::Finished
                                        };
                                        continue;
                                    }
                                    if b.body.len() <= limit && !self.eof {
                                        return Ok(Event::NeedMore);
                                    }
                                    self.state = State::Finished;
                                    continue;
                                }
                                Err(_) => {
                                    self.state = State::Finished;
                                    continue;
                                }
                            }
                        }
                    }
                    if b.lent.is_some() {
                        return Ok(Event::NeedMore);
                    }
                    self.pos += b.advance(input, &self.config, &self.limits)?;
                    if b.done {
                        break;
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
        // A body is complete.
        match mem::replace(&mut self.state, State::Head) {
            State::Body(b) => {
                let BodyState {
                    head,
                    body,
                    keep_alive,
                    ..
                } = *b;
                let body = body.finish()?;
                Ok(self.request(head, body, keep_alive))
            }
            other => {
                self.state = other;
                Ok(Event::NeedMore)
            }
        }
    }

    /// A head whose body is delivered in pieces was parsed (the state is
    /// its `Body`): decode what is buffered; a body that is all there
    /// already comes whole with its request, as without streaming. Else
    /// the request comes now with `RequestBody::Streamed`, and its bytes
    /// through `take_body`.
    fn start_pieces(&mut self) -> Result<Event, HttpError> {
        let State::Body(b) = &mut self.state else {
            return Ok(Event::NeedMore);
        };
        self.pos += b.advance(&self.buf[self.pos..], &self.config, &self.limits)?;
        if !b.done {
            if self.eof {
                return Err(b.decoder.eof_error());
            }
            let head = mem::replace(&mut b.head, Head::placeholder());
            return Ok(Event::Request(Request {
                head,
                body: RequestBody::Streamed,
                keep_alive: b.keep_alive,
                proxy: self.proxy.clone(),
            }));
        }
        match mem::replace(&mut self.state, State::Head) {
            State::Body(b) => {
                let BodyState {
                    head,
                    body,
                    keep_alive,
                    ..
                } = *b;
                let body = body.finish()?;
                Ok(self.request(head, body, keep_alive))
            }
            other => {
                self.state = other;
                Ok(Event::NeedMore)
            }
        }
    }

    /// A body delivered in pieces is arriving (`Config::stream_bodies`):
    /// its request was returned, and `take_body` gives its bytes.
    pub fn streaming_body(&self) -> bool {
        matches!(&self.state, State::Body(b) if b.delivery == Delivery::Pieces)
    }

    /// The rest of an answered request's body is being dropped (`skip_body`).
    pub fn skipping_body(&self) -> bool {
        matches!(&self.state, State::Body(b) if matches!(b.delivery, Delivery::Skip { .. }))
    }

    /// The next piece of a body delivered in pieces: at most `max` decoded
    /// bytes, then `End` once (the state is the next request's), or the
    /// error that broke the body. Outside such a body: `NeedMore`.
    pub fn take_body(&mut self, max: usize) -> BodyEvent {
        let State::Body(b) = &mut self.state else {
            return BodyEvent::NeedMore;
        };
        if b.delivery != Delivery::Pieces {
            return BodyEvent::NeedMore;
        }
        if let Some(piece) = b.body.take_piece(max.max(1)) {
            return BodyEvent::Data(piece);
        }
        let error = if let Some(e) = b.error.take() {
            e
        } else if b.done {
            self.state = if b.keep_alive {
                State::Head
            } else {
                State::Finished
            };
            return BodyEvent::End;
        } else if self.eof {
            b.decoder.eof_error()
        } else {
            return BodyEvent::NeedMore;
        };
        self.state = State::Failed(error.clone());
        BodyEvent::Error(error)
    }

    /// The request whose body arrives in pieces announced
    /// `Expect: 100-continue`, and no `100 Continue` was sent for it.
    pub fn awaits_continue(&self) -> bool {
        matches!(&self.state, State::Body(b) if b.delivery == Delivery::Pieces && b.wants_continue)
    }

    /// `awaits_continue`, once: the caller sends `CONTINUE` now.
    pub fn take_continue(&mut self) -> bool {
        match &mut self.state {
            State::Body(b) if b.delivery == Delivery::Pieces => mem::take(&mut b.wants_continue),
            _ => false,
        }
    }

    /// The request whose body arrives in pieces was answered: drop the
    /// rest of the body as it comes, then go on with the next request.
    /// Returns false when that cannot be done within `max` more bytes (a
    /// longer announced length, a broken body, or a client still waiting
    /// for its `100 Continue`, which may never send the body): the caller
    /// closes the connection. Outside such a body: true, nothing to do.
    pub fn skip_body(&mut self, max: u64) -> bool {
        let State::Body(b) = &mut self.state else {
            return true;
        };
        if b.delivery != Delivery::Pieces {
            return true;
        }
        let fits = b.error.is_none()
            && !b.wants_continue
            && b.decoder.length_remaining().is_none_or(|rest| rest <= max);
        b.body.discard();
        b.delivery = Delivery::Skip {
            limit: b.body.len().saturating_add(max),
        };
        fits
    }

    /// The `end` bytes of a complete head, consumed. When they are all
    /// that is buffered (a request without body bytes behind it, the usual
    /// case), the input buffer itself becomes the head's: no copy and no
    /// allocation, and `recycle` gives it back once the request is done.
    fn take_head(&mut self, end: usize) -> Vec<u8> {
        if self.pos + end == self.buf.len() {
            self.compact();
            return mem::take(&mut self.buf);
        }
        let mut head = Vec::with_capacity(end + self.head.extra_len());
        head.extend_from_slice(&self.buf[self.pos..self.pos + end]);
        self.pos += end;
        head
    }

    /// A request is done with: its head's memory serves the next request
    /// (as the input buffer, when that has none, and as the parser's list
    /// of fields), so a keep-alive connection parses without allocating.
    pub fn recycle(&mut self, head: Head) {
        let Head { buf, headers, .. } = head;
        self.adopt(buf, headers);
    }

    /// Take `buf` as the input buffer while there is none, and `headers`
    /// as the parser's list of fields while it has none; both emptied.
    fn adopt(&mut self, mut buf: Vec<u8>, headers: Vec<Header>) {
        if self.buf.capacity() == 0 {
            buf.clear();
            self.buf = buf;
        }
        self.head.give_back(headers);
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

    /// A complete request; the state is `Head` again (its callers made it so).
    fn request(&mut self, head: Head, body: RequestBody, keep_alive: bool) -> Event {
        debug_assert!(matches!(self.state, State::Head));
        // Only a closing request changes the state: keep-alive costs no drop.
        if !keep_alive {
            self.state = State::Finished;
        }
        Event::Request(Request {
            head,
            body,
            keep_alive,
            proxy: self.proxy.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::body::testing::{Refusing, Unlinked};
    use crate::http::HeaderMapPolicy;

    /// A request reduced to what the tests compare.
    #[derive(Debug, PartialEq, Eq)]
    struct Got {
        method: String,
        target: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        /// The body came in a temporary file.
        spilled: bool,
        keep_alive: bool,
        proxy: Option<ProxyInfo>,
        https: bool,
    }

    #[derive(Debug, PartialEq, Eq)]
    enum End {
        /// Still waiting for bytes (no EOF fed).
        NeedMore,
        Closed,
        Error(HttpErrorKind),
    }

    fn text(b: &[u8]) -> String {
        String::from_utf8_lossy(b).into_owned()
    }

    fn got(r: &Request) -> Got {
        Got {
            method: text(r.head.method()),
            target: text(r.head.target()),
            headers: r
                .head
                .header_pairs()
                .map(|(n, v)| (text(n), text(v)))
                .collect(),
            body: r.body.to_vec().expect("body file readable"),
            spilled: matches!(r.body, RequestBody::File { .. }),
            keep_alive: r.keep_alive,
            proxy: r.proxy.clone(),
            https: r.head.https_forwarded,
        }
    }

    fn drain(conn: &mut Conn, out: &mut Vec<Got>) -> Option<End> {
        loop {
            match conn.poll() {
                Event::NeedMore => return None,
                Event::SendContinue => {}
                Event::Request(r) => {
                    out.push(got(&r));
                    // As the worker does: the head's memory serves the next one.
                    conn.recycle(r.head);
                }
                Event::Error(e) => return Some(End::Error(e.kind)),
                Event::Closed => return Some(End::Closed),
            }
        }
    }

    fn run(cfg: &Arc<Config>, trust: &PeerTrust, pieces: &[&[u8]], eof: bool) -> (Vec<Got>, End) {
        let mut conn = Conn::new(cfg.clone(), trust.clone());
        let mut out = Vec::new();
        for piece in pieces {
            conn.feed(piece);
            if let Some(end) = drain(&mut conn, &mut out) {
                return (out, end);
            }
        }
        if !eof {
            return (out, End::NeedMore);
        }
        conn.feed_eof();
        let end = drain(&mut conn, &mut out).unwrap_or(End::NeedMore);
        (out, end)
    }

    /// Feed `input` whole, one byte at a time and split in two at every
    /// boundary; all must agree. Returns the requests and how it ended.
    fn feed_everywhere(cfg: Config, trust: PeerTrust, input: &[u8], eof: bool) -> (Vec<Got>, End) {
        let cfg = Arc::new(cfg);
        let whole = run(&cfg, &trust, &[input], eof);
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        assert_eq!(
            run(&cfg, &trust, &bytes, eof),
            whole,
            "fed one byte at a time"
        );
        for k in 0..=input.len() {
            let (a, b) = input.split_at(k);
            assert_eq!(run(&cfg, &trust, &[a, b], eof), whole, "split at {k}");
        }
        whole
    }

    fn trusted() -> PeerTrust {
        PeerTrust {
            forwarded: true,
            proxy: true,
        }
    }

    fn parse(input: &[u8]) -> (Vec<Got>, End) {
        feed_everywhere(Config::default(), trusted(), input, true)
    }

    fn error_of(input: &[u8]) -> HttpErrorKind {
        match parse(input) {
            (reqs, End::Error(kind)) if reqs.is_empty() => kind,
            other => panic!("expected an error, got {other:?}"),
        }
    }

    fn limited(limit: u64, input: &[u8]) -> (Vec<Got>, End) {
        let cfg = Config {
            limit_request_body: limit,
            ..Config::default()
        };
        feed_everywhere(cfg, trusted(), input, true)
    }

    #[test]
    fn body_over_the_limit_is_413_from_content_length_or_chunks() {
        let (reqs, end) = limited(4, b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n");
        assert!(reqs.is_empty());
        assert_eq!(end, End::Error(HttpErrorKind::RequestBodyTooLarge));
        let (reqs, end) = limited(4, b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n");
        assert!(reqs.is_empty());
        assert_eq!(end, End::Error(HttpErrorKind::RequestBodyTooLarge));
        let (reqs, _) = limited(5, b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello");
        assert_eq!(reqs[0].body, b"hello");
        let (reqs, _) = limited(0, b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello");
        assert_eq!(reqs[0].body, b"hello");
        assert_eq!(
            HttpError::new(HttpErrorKind::RequestBodyTooLarge, "").status(),
            Some(413)
        );
    }

    #[test]
    fn a_kept_alive_connection_parses_its_next_request_without_allocating() {
        let mut conn = Conn::new(Arc::new(Config::default()), trusted());
        let req =
            b"GET /a?x=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: wrk\r\nAccept: */*\r\n\r\n";
        let answer = |conn: &mut Conn| {
            conn.feed(req);
            let Event::Request(r) = conn.poll() else {
                panic!("no request")
            };
            assert_eq!((r.head.target(), r.head.headers.len()), (&b"/a?x=1"[..], 3));
            conn.recycle(r.head);
            assert!(matches!(conn.poll(), Event::NeedMore));
        };
        // The first request sizes the buffers.
        answer(&mut conn);
        let ((), n) = crate::alloc_count::allocations(|| answer(&mut conn));
        assert_eq!(n, 0, "allocations for a request on a kept-alive connection");
        // Without the head back, the next one allocates again (and still works).
        conn.feed(req);
        let Event::Request(r) = conn.poll() else {
            panic!("no request")
        };
        let (second, n) = crate::alloc_count::allocations(|| {
            conn.feed(b"GET /b HTTP/1.1\r\nHost: h\r\n\r\n");
            conn.poll()
        });
        assert!(n > 0);
        assert!(matches!(second, Event::Request(ref s) if s.head.target() == b"/b"));
        assert_eq!(r.head.target(), b"/a?x=1", "the first head is intact");
    }

    /// One `Connection: close` request on `conn`, as the worker answers it.
    fn answer_closing(conn: &mut Conn) {
        conn.feed(b"GET /a HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n");
        let Event::Request(r) = conn.poll() else {
            panic!("no request")
        };
        assert_eq!((r.head.target(), r.keep_alive), (&b"/a"[..], false));
        conn.recycle(r.head);
    }

    #[test]
    fn a_new_connection_with_pooled_memory_parses_without_allocating() {
        let cfg = Arc::new(Config::default());
        let mut pool = ParserPool::default();
        // The first connection sizes the memory and leaves it to the pool.
        let mut first = pool.conn(cfg.clone(), trusted());
        answer_closing(&mut first);
        pool.keep(&mut first);
        assert_eq!(pool.len(), 1);
        let ((), n) = crate::alloc_count::allocations(|| {
            let mut conn = pool.conn(cfg.clone(), trusted());
            answer_closing(&mut conn);
            pool.keep(&mut conn);
        });
        assert_eq!(n, 0, "allocations for a request on a new connection");
        assert_eq!(pool.len(), 1);
        // With the pool empty, a new connection allocates (and works).
        let _taken = pool.conn(cfg.clone(), trusted());
        let ((), n) = crate::alloc_count::allocations(|| {
            answer_closing(&mut pool.conn(cfg.clone(), trusted()));
        });
        assert!(n > 0);
    }

    #[test]
    fn the_parser_pool_keeps_bounded_memory_only() {
        let cfg = Arc::new(Config::default());
        let mut pool = ParserPool::default();
        // A connection whose memory is out with a request in flight leaves nothing.
        let mut busy = pool.conn(cfg.clone(), trusted());
        busy.feed(b"GET / HTTP/1.1\r\n\r\n");
        let Event::Request(in_flight) = busy.poll() else {
            panic!("no request")
        };
        pool.keep(&mut busy);
        assert_eq!(pool.len(), 0);
        assert_eq!(in_flight.head.target(), b"/");
        // A big input buffer is dropped; the list of fields is still kept.
        let mut big = pool.conn(cfg.clone(), trusted());
        big.feed(&vec![b'x'; POOL_BUF_MAX + 1]);
        big.feed_eof();
        assert!(matches!(big.poll(), Event::Error(_)));
        pool.keep(&mut big);
        assert_eq!(pool.len(), 0, "nothing worth keeping");
        let mut conns: Vec<Conn> = (0..POOL_MAX + 5)
            .map(|_| {
                let mut c = Conn::new(cfg.clone(), trusted());
                answer_closing(&mut c);
                c
            })
            .collect();
        for c in &mut conns {
            pool.keep(c);
        }
        assert_eq!(pool.len(), POOL_MAX);
        // Kept memory comes back empty: the next request parses as on a fresh connection.
        let mut reused = pool.conn(cfg, trusted());
        assert_eq!(reused.buffered(), 0);
        answer_closing(&mut reused);
    }

    #[test]
    fn pipelined_requests_come_out_in_order() {
        let (reqs, end) = parse(b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyzGET /c HTTP/1.1\r\n\r\n");
        assert_eq!(end, End::Closed);
        let targets: Vec<_> = reqs.iter().map(|r| r.target.as_str()).collect();
        assert_eq!(targets, ["/a", "/b", "/c"]);
        assert_eq!(reqs[1].body, b"xyz");
        assert!(reqs.iter().all(|r| r.keep_alive));
    }

    #[test]
    fn bytes_after_a_request_stay_buffered_for_the_next_poll() {
        let mut conn = Conn::new(Arc::new(Config::default()), trusted());
        let second = b"GET /b HTTP/1.1\r\n";
        conn.feed(b"GET /a HTTP/1.1\r\n\r\n");
        conn.feed(second);
        assert!(matches!(conn.poll(), Event::Request(r) if r.head.target() == b"/a"));
        assert_eq!(conn.buffered(), second.len());
        assert!(matches!(conn.poll(), Event::NeedMore));
        conn.feed(b"\r\n");
        assert!(matches!(conn.poll(), Event::Request(r) if r.head.target() == b"/b"));
        assert_eq!(conn.buffered(), 0);
    }

    #[test]
    fn chunked_body_is_dechunked_before_the_request_is_returned() {
        let (reqs, end) = parse(b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n6\r\n world\r\n0\r\nVary: *\r\n\r\n");
        assert_eq!(end, End::Closed);
        assert_eq!(reqs[0].body, b"hello world");
        assert!(reqs[0].keep_alive);
    }

    #[test]
    fn request_without_length_has_an_empty_body() {
        let (reqs, _) = parse(b"POST /x HTTP/1.1\r\n\r\nGET /y HTTP/1.1\r\n\r\n");
        assert_eq!(reqs.len(), 2);
        assert!(reqs[0].body.is_empty());
    }

    #[test]
    fn expect_continue_is_signalled_once_while_the_body_is_missing() {
        let cfg = Arc::new(Config::default());
        let mut conn = Conn::new(cfg.clone(), trusted());
        conn.feed(b"POST /e HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhe");
        assert!(matches!(conn.poll(), Event::SendContinue));
        assert!(matches!(conn.poll(), Event::NeedMore));
        conn.feed(b"llo");
        assert!(
            matches!(conn.poll(), Event::Request(r) if r.body.as_bytes() == Some(&b"hello"[..]))
        );

        // Body already there: no interim response needed.
        let mut conn = Conn::new(cfg.clone(), trusted());
        conn.feed(b"POST /e HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello");
        assert!(matches!(conn.poll(), Event::Request(_)));

        // Ignored on HTTP/1.0.
        let mut conn = Conn::new(cfg, trusted());
        conn.feed(b"POST /e HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
        assert!(matches!(conn.poll(), Event::NeedMore));
    }

    #[test]
    fn unknown_expectation_is_417() {
        assert_eq!(
            error_of(b"POST / HTTP/1.1\r\nExpect: later\r\n\r\n"),
            HttpErrorKind::ExpectationFailed
        );
    }

    #[test]
    fn clean_eof_between_requests_is_closed() {
        assert_eq!(parse(b""), (vec![], End::Closed));
        let (reqs, end) = parse(b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!((reqs.len(), end), (1, End::Closed));
    }

    #[test]
    fn eof_inside_a_head_or_body_is_no_more_data_without_an_answer() {
        assert_eq!(
            error_of(b"GET /foo/bar HTTP/1.0\r\nbaz"),
            HttpErrorKind::NoMoreData
        );
        assert_eq!(error_of(b"\r\n"), HttpErrorKind::NoMoreData);
        assert_eq!(
            error_of(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhel"),
            HttpErrorKind::NoMoreData
        );
        assert_eq!(HttpError::new(HttpErrorKind::NoMoreData, "").status(), None);
    }

    #[test]
    fn errors_are_sticky_and_later_bytes_ignored() {
        let mut conn = Conn::new(Arc::new(Config::default()), trusted());
        conn.feed(b"GET / HTTP/9.9\r\n\r\n");
        let Event::Error(first) = conn.poll() else {
            panic!("expected an error")
        };
        assert_eq!(first.status(), Some(400));
        conn.feed(b"GET / HTTP/1.1\r\n\r\n");
        assert!(matches!(conn.poll(), Event::Error(e) if e == first));
        assert!(matches!(conn.poll(), Event::Error(e) if e == first));
    }

    #[test]
    fn request_that_ends_keep_alive_ends_the_connection() {
        for input in [
            &b"GET /first HTTP/1.0\r\n\r\nGET /second HTTP/1.1\r\n\r\n"[..],
            b"GET /first HTTP/1.1\r\nConnection: close\r\n\r\nGET /second HTTP/1.1\r\n\r\n",
            b"CONNECT h:443 HTTP/1.1\r\n\r\nGET /second HTTP/1.1\r\n\r\n",
            b"POST /first HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\nGET /second HTTP/1.1\r\n\r\n",
        ] {
            let (reqs, end) = parse(input);
            assert_eq!(end, End::Closed);
            assert_eq!(reqs.len(), 1, "{}", text(input));
            assert!(!reqs[0].keep_alive);
        }
        let (reqs, _) = parse(
            b"GET /first HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /second HTTP/1.1\r\n\r\n",
        );
        assert_eq!(reqs.len(), 2);
    }

    #[test]
    fn bare_lf_anywhere_in_the_head_is_400() {
        for input in [
            &b"GET / HTTP/1.1\n\r\n"[..],
            b"GET / HTTP/1.1\r\nA: b\n\r\n",
            b"GET / HTTP/1.1\r\nA: b\r\n\n",
        ] {
            let kind = error_of(input);
            assert_eq!(
                HttpError::new(kind.clone(), "").status(),
                Some(400),
                "{kind:?} for {}",
                text(input)
            );
        }
    }

    #[test]
    fn smuggling_framings_are_refused() {
        let invalid = HttpErrorKind::InvalidHeader;
        assert_eq!(
            error_of(b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc"),
            invalid
        );
        assert_eq!(
            error_of(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"),
            invalid
        );
        assert_eq!(
            error_of(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
            invalid
        );
        assert_eq!(
            error_of(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"),
            invalid
        );
        assert_eq!(
            error_of(b"POST / HTTP/1.1\r\nContent-Length: 1, 1\r\n\r\na"),
            invalid
        );
        assert_eq!(
            error_of(b"POST / HTTP/1.1\r\nTransfer-Encoding: br, chunked\r\n\r\n"),
            HttpErrorKind::UnsupportedTransferCoding
        );
    }

    #[test]
    fn underscore_header_names_are_dropped_by_default() {
        let (reqs, _) = parse(b"GET / HTTP/1.0\r\nTransfer_Encoding: tricked\r\nContent-Length: 7\r\nContent_Length: -1E23\r\n\r\ntricked\r\n");
        assert_eq!(
            reqs[0].headers,
            [("Content-Length".to_string(), "7".to_string())]
        );
        assert_eq!(reqs[0].body, b"tricked");
        let refuse = Config {
            header_map: HeaderMapPolicy::Refuse,
            ..Config::default()
        };
        let (_, end) =
            feed_everywhere(refuse, trusted(), b"GET / HTTP/1.0\r\nX_Y: 1\r\n\r\n", true);
        assert_eq!(end, End::Error(HttpErrorKind::InvalidHeaderName));
    }

    #[test]
    fn scheme_headers_count_only_from_trusted_peers() {
        let input = b"GET / HTTP/1.1\r\nX-Forwarded-Proto: https\r\n\r\n";
        assert!(parse(input).0[0].https);
        let untrusted = PeerTrust {
            forwarded: false,
            proxy: false,
        };
        assert!(!feed_everywhere(Config::default(), untrusted, input, true).0[0].https);
    }

    #[test]
    fn incomplete_head_over_the_limits_is_refused_early() {
        let cfg = Config {
            limit_request_fields: 3,
            limit_request_field_size: 50,
            ..Config::default()
        };
        let mut input = b"GET / HTTP/1.1\r\n".to_vec();
        input.extend_from_slice(&[b'x'; 60]);
        let (_, end) = feed_everywhere(cfg.clone(), trusted(), &input, false);
        assert_eq!(end, End::Error(HttpErrorKind::LimitRequestHeaders));
        let (_, end) = feed_everywhere(
            cfg,
            trusted(),
            b"GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD",
            false,
        );
        assert_eq!(end, End::Error(HttpErrorKind::LimitRequestHeaders));
        let mut line = b"GET /".to_vec();
        line.extend_from_slice(&[b'a'; 5000]);
        let (_, end) = feed_everywhere(Config::default(), trusted(), &line, false);
        assert_eq!(end, End::Error(HttpErrorKind::LimitRequestLine));
    }

    fn proxy_cfg() -> Config {
        Config {
            proxy_protocol: ProxyProtocol::Auto,
            ..Config::default()
        }
    }

    #[test]
    fn proxy_info_is_carried_on_every_request_of_the_connection() {
        let input = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n";
        let (reqs, end) = feed_everywhere(proxy_cfg(), trusted(), input, true);
        assert_eq!(end, End::Closed);
        let want = ProxyInfo {
            protocol: "TCP4",
            source: Some("192.168.0.1:56324".parse().unwrap()),
            dest: Some("192.168.0.11:443".parse().unwrap()),
        };
        assert_eq!(reqs.len(), 2);
        assert!(reqs.iter().all(|r| r.proxy.as_ref() == Some(&want)));
    }

    #[test]
    fn proxy_header_only_at_the_start_and_only_from_allowed_peers() {
        let untrusted = PeerTrust {
            forwarded: false,
            proxy: false,
        };
        let input = b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\nGET / HTTP/1.1\r\n\r\n";
        let (_, end) = feed_everywhere(proxy_cfg(), untrusted.clone(), input, true);
        assert_eq!(end, End::Error(HttpErrorKind::ForbiddenProxyRequest));
        // Without a header an untrusted peer is served normally.
        let (reqs, _) = feed_everywhere(proxy_cfg(), untrusted, b"GET / HTTP/1.1\r\n\r\n", true);
        assert!(reqs[0].proxy.is_none());
        // A second PROXY line is a bad request line.
        let second = b"GET / HTTP/1.1\r\n\r\nPROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n\r\n";
        let (reqs, end) = feed_everywhere(proxy_cfg(), trusted(), second, true);
        assert_eq!(
            (reqs.len(), end),
            (1, End::Error(HttpErrorKind::InvalidRequestLine))
        );
        // With the protocol off, a PROXY line is not HTTP.
        let (_, end) = feed_everywhere(Config::default(), trusted(), input, true);
        assert_eq!(end, End::Error(HttpErrorKind::InvalidRequestLine));
    }

    /// Bodies over `buffer` bytes go to unlinked files in the temp dir.
    fn spilling(buffer: u64) -> Config {
        Config {
            body_buffer_size: buffer,
            temp_files: Some(Arc::new(Unlinked)),
            ..Config::default()
        }
    }

    const CHUNKED_11: &[u8] = b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n4;x=y\r\n wor\r\n2\r\nld\r\n0\r\nVary: *\r\n\r\n";

    #[test]
    fn chunked_body_crossing_the_buffer_size_spills_however_it_is_split() {
        // The body is 11 bytes: its chunks end at 5, 9 and 11. Every buffer
        // size puts the crossing in a different chunk (or nowhere).
        for buffer in 0..=12 {
            let (reqs, end) = feed_everywhere(spilling(buffer), trusted(), CHUNKED_11, true);
            assert_eq!(end, End::Closed, "buffer {buffer}");
            assert_eq!(reqs[0].body, b"hello world", "buffer {buffer}");
            assert_eq!(reqs[0].spilled, buffer < 11, "buffer {buffer}");
            assert!(reqs[0].keep_alive);
        }
    }

    #[test]
    fn length_body_over_the_buffer_size_spills_and_pipelining_goes_on() {
        let input = b"POST /a HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789POST /b HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyzGET /c HTTP/1.1\r\n\r\n";
        let (reqs, end) = feed_everywhere(spilling(4), trusted(), input, true);
        assert_eq!(end, End::Closed);
        let bodies: Vec<_> = reqs
            .iter()
            .map(|r| (r.body.as_slice(), r.spilled))
            .collect();
        assert_eq!(
            bodies,
            [
                (&b"0123456789"[..], true),
                (&b"xyz"[..], false),
                (&b""[..], false)
            ]
        );
    }

    #[test]
    fn body_bytes_do_not_stay_in_the_input_buffer_while_a_body_streams() {
        let mut conn = Conn::new(Arc::new(spilling(1024)), trusted());
        let total = 1 << 20;
        conn.feed(format!("POST / HTTP/1.1\r\nContent-Length: {total}\r\n\r\n").as_bytes());
        assert!(matches!(conn.poll(), Event::NeedMore));
        let piece = vec![b'z'; 16 * 1024];
        for _ in 0..total / piece.len() - 1 {
            conn.feed(&piece);
            assert_eq!(conn.buffered(), 0);
        }
        conn.feed(&piece);
        conn.feed(b"GET /next HTTP/1.1\r\n\r\n");
        match conn.poll() {
            Event::Request(r) => {
                assert!(matches!(r.body, RequestBody::File { len, .. } if len == total as u64));
                assert!(r.body.to_vec().unwrap().iter().all(|&b| b == b'z'));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(conn.poll(), Event::Request(r) if r.head.target() == b"/next"));

        // Chunked: only a partial size line is ever kept.
        let mut conn = Conn::new(Arc::new(spilling(1024)), trusted());
        conn.feed(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert!(matches!(conn.poll(), Event::NeedMore));
        let mut chunk = b"4000\r\n".to_vec();
        chunk.extend_from_slice(&piece);
        chunk.extend_from_slice(b"\r\n");
        for _ in 0..64 {
            for part in chunk.chunks(5000) {
                conn.feed(part);
                assert!(conn.buffered() < 8, "{}", conn.buffered());
            }
        }
        conn.feed(b"0\r\n\r\n");
        assert!(matches!(conn.poll(), Event::Request(r) if r.body.len() == 64 * 16 * 1024));
    }

    #[test]
    fn limit_request_body_holds_for_spilled_bodies() {
        let cfg = Config {
            limit_request_body: 10,
            ..spilling(4)
        };
        let (reqs, end) = feed_everywhere(cfg.clone(), trusted(), CHUNKED_11, true);
        assert!(reqs.is_empty());
        assert_eq!(end, End::Error(HttpErrorKind::RequestBodyTooLarge));
        let big = b"POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\n";
        let (_, end) = feed_everywhere(cfg.clone(), trusted(), big, false);
        assert_eq!(end, End::Error(HttpErrorKind::RequestBodyTooLarge));
        let ok = b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123456789";
        let (reqs, _) = feed_everywhere(cfg, trusted(), ok, true);
        assert!(reqs[0].spilled);
    }

    #[test]
    fn a_body_that_cannot_be_stored_is_a_500() {
        let cfg = Config {
            body_buffer_size: 4,
            temp_files: Some(Arc::new(Refusing)),
            ..Config::default()
        };
        let (_, end) = feed_everywhere(cfg.clone(), trusted(), CHUNKED_11, true);
        assert_eq!(end, End::Error(HttpErrorKind::BodyNotStored));
        let big = b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n";
        let (_, end) = feed_everywhere(cfg.clone(), trusted(), big, false);
        assert_eq!(end, End::Error(HttpErrorKind::BodyNotStored));
        // Small bodies never need a file.
        let small = b"POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\nabcd";
        let (reqs, _) = feed_everywhere(cfg, trusted(), small, true);
        assert_eq!(reqs[0].body, b"abcd");
    }

    #[test]
    fn expect_continue_is_still_signalled_for_a_spilled_body() {
        let mut conn = Conn::new(Arc::new(spilling(2)), trusted());
        conn.feed(b"POST /e HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
        assert!(matches!(conn.poll(), Event::SendContinue));
        conn.feed(b"hel");
        assert!(matches!(conn.poll(), Event::NeedMore));
        conn.feed(b"lo");
        assert!(matches!(conn.poll(), Event::Request(r) if r.body.to_vec().unwrap() == b"hello"));
    }

    #[test]
    fn eof_inside_a_spilled_body_is_no_more_data() {
        let input = b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n01234";
        let (reqs, end) = feed_everywhere(spilling(2), trusted(), input, true);
        assert!(reqs.is_empty());
        assert_eq!(end, End::Error(HttpErrorKind::NoMoreData));
    }

    #[test]
    fn a_lent_body_is_filled_in_place_and_pipelining_goes_on() {
        let mut conn = Conn::new(Arc::new(Config::default()), trusted());
        conn.feed(b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n012");
        assert!(matches!(conn.poll(), Event::NeedMore));
        assert!(conn.lend_body(8).is_none(), "7 bytes to come, 8 asked");
        let (mut memory, rest) = conn.lend_body(7).expect("lent");
        assert_eq!((memory.as_slice(), rest), (&b"012"[..], 7));
        assert!(memory.capacity() - memory.len() >= rest);
        assert!(conn.lend_body(1).is_none(), "lent twice");
        // Bytes fed meanwhile wait; nothing is decoded into the loan.
        conn.feed(b"89GET /next HTTP/1.1\r\n\r\n");
        assert!(matches!(conn.poll(), Event::NeedMore));
        memory.extend_from_slice(b"34567");
        conn.return_body(memory);
        match conn.poll() {
            Event::Request(r) => assert_eq!(r.body.as_bytes(), Some(&b"0123456789"[..])),
            other => panic!("{other:?}"),
        }
        assert!(matches!(conn.poll(), Event::Request(r) if r.head.target() == b"/next"));
        assert!(matches!(conn.poll(), Event::NeedMore));
    }

    #[test]
    fn a_body_lent_twice_completes_when_its_length_is_reached() {
        let mut conn = Conn::new(Arc::new(Config::default()), trusted());
        conn.feed(b"POST / HTTP/1.1\r\nContent-Length: 6\r\n\r\n");
        assert!(matches!(conn.poll(), Event::NeedMore));
        let (mut memory, rest) = conn.lend_body(1).expect("lent");
        assert_eq!(rest, 6);
        memory.extend_from_slice(b"ab");
        conn.return_body(memory);
        assert!(matches!(conn.poll(), Event::NeedMore));
        let (mut memory, rest) = conn.lend_body(1).expect("lent again");
        assert_eq!((memory.as_slice(), rest), (&b"ab"[..], 4));
        memory.extend_from_slice(b"cdef");
        conn.return_body(memory);
        assert!(
            matches!(conn.poll(), Event::Request(r) if r.body.as_bytes() == Some(&b"abcdef"[..]))
        );
        // A loan given back with nothing in it changes nothing.
        conn.feed(b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\n");
        assert!(matches!(conn.poll(), Event::NeedMore));
        let (memory, _) = conn.lend_body(1).expect("lent");
        conn.return_body(memory);
        conn.feed(b"xy");
        assert!(matches!(conn.poll(), Event::Request(r) if r.body.as_bytes() == Some(&b"xy"[..])));
    }

    #[test]
    fn a_loan_reserves_at_most_lend_max_whatever_length_is_announced() {
        let cfg = Config {
            limit_request_body: 0,
            ..Config::default()
        };
        let mut conn = Conn::new(Arc::new(cfg), trusted());
        conn.feed(b"POST / HTTP/1.1\r\nContent-Length: 10000000000\r\n\r\n");
        assert!(matches!(conn.poll(), Event::NeedMore));
        let (memory, room) = conn.lend_body(1).expect("lent");
        assert_eq!(room as u64, LEND_MAX);
        assert!(
            memory.capacity() < 2 * LEND_MAX as usize,
            "{}",
            memory.capacity()
        );
    }

    #[test]
    fn only_a_length_body_in_memory_with_nothing_buffered_is_lent() {
        let lend = |cfg: Config, input: &[u8], eof: bool| {
            let mut conn = Conn::new(Arc::new(cfg), trusted());
            conn.feed(input);
            let _ = conn.poll();
            if eof {
                conn.feed_eof();
            }
            conn.lend_body(1).is_some()
        };
        let head = b"POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\n";
        assert!(lend(Config::default(), head, false));
        assert!(!lend(Config::default(), head, true), "after EOF");
        assert!(!lend(spilling(10), head, false), "a body in a file");
        let chunked = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab";
        assert!(!lend(Config::default(), chunked, false), "chunked");
        assert!(
            !lend(Config::default(), b"GET / HTTP/1.1\r\n\r\n", false),
            "no body"
        );
        // Bytes waiting in the input come first.
        let mut conn = Conn::new(Arc::new(Config::default()), trusted());
        conn.feed(head);
        let _ = conn.poll();
        let (memory, _) = conn.lend_body(1).expect("lent");
        conn.feed(b"waiting");
        conn.return_body(memory);
        assert!(
            conn.lend_body(1).is_none(),
            "bytes are waiting in the input"
        );
        assert!(matches!(conn.poll(), Event::NeedMore));
        assert!(conn.lend_body(1).is_some(), "decoded, then lent");
    }

    // ---- bodies delivered in pieces (Config::stream_bodies) ----

    /// What a streaming caller sees: each request with its body, however
    /// it came (whole, or in pieces), and how the input ended.
    #[derive(Debug, PartialEq, Eq)]
    struct Streamed {
        reqs: Vec<(String, Vec<u8>, bool)>,
        end: End,
    }

    /// Feed `pieces`, polling after each; a streamed body is taken in
    /// pieces of at most `max` bytes as they come. With `skip`, a streamed
    /// request is answered at once without reading (`skip_body(skip)`);
    /// a body that does not fit ends the run with `Closed`.
    fn stream_run(
        cfg: &Arc<Config>,
        pieces: &[&[u8]],
        eof: bool,
        max: usize,
        skip: Option<u64>,
    ) -> Streamed {
        let mut conn = Conn::new(cfg.clone(), trusted());
        let mut reqs = Vec::new();
        // The request whose body is still coming.
        let mut open: Option<usize> = None;
        let mut step = |conn: &mut Conn, reqs: &mut Vec<(String, Vec<u8>, bool)>| -> Option<End> {
            loop {
                if let Some(i) = open {
                    match conn.take_body(max) {
                        BodyEvent::Data(d) => {
                            assert!(!d.is_empty() && d.len() <= max, "piece of {}", d.len());
                            let r: &mut (String, Vec<u8>, bool) = &mut reqs[i];
                            r.1.extend_from_slice(&d);
                            continue;
                        }
                        BodyEvent::End => open = None,
                        BodyEvent::NeedMore => return None,
                        BodyEvent::Error(e) => return Some(End::Error(e.kind)),
                    }
                }
                match conn.poll() {
                    Event::NeedMore => return None,
                    Event::SendContinue => panic!("no SendContinue when streaming"),
                    Event::Request(r) => {
                        let streamed = matches!(r.body, RequestBody::Streamed);
                        let body = r.body.to_vec().expect("memory");
                        reqs.push((text(r.head.target()), body, r.keep_alive));
                        if streamed {
                            assert!(conn.streaming_body());
                            match skip {
                                Some(max) => {
                                    if !conn.skip_body(max) {
                                        return Some(End::Closed);
                                    }
                                }
                                None => open = Some(reqs.len() - 1),
                            }
                        }
                    }
                    Event::Error(e) => return Some(End::Error(e.kind)),
                    Event::Closed => return Some(End::Closed),
                }
            }
        };
        for piece in pieces {
            conn.feed(piece);
            if let Some(end) = step(&mut conn, &mut reqs) {
                return Streamed { reqs, end };
            }
        }
        if !eof {
            return Streamed {
                reqs,
                end: End::NeedMore,
            };
        }
        conn.feed_eof();
        let end = step(&mut conn, &mut reqs).unwrap_or(End::NeedMore);
        Streamed { reqs, end }
    }

    /// `stream_run` on `input` whole, one byte at a time, and split in two
    /// at every boundary: what `key` keeps of each run agrees (how far a
    /// request got before an error, or the bodies of skipped requests,
    /// depend on the split by design).
    fn stream_everywhere(
        cfg: Config,
        input: &[u8],
        eof: bool,
        max: usize,
        skip: Option<u64>,
        key: fn(&Streamed) -> String,
    ) -> Streamed {
        let cfg = Arc::new(Config {
            stream_bodies: true,
            ..cfg
        });
        let whole = stream_run(&cfg, &[input], eof, max, skip);
        let bytes: Vec<&[u8]> = input.chunks(1).collect();
        let one = stream_run(&cfg, &bytes, eof, max, skip);
        assert_eq!(key(&one), key(&whole), "one byte at a time");
        for k in 0..=input.len() {
            let (a, b) = input.split_at(k);
            let split = stream_run(&cfg, &[a, b], eof, max, skip);
            assert_eq!(key(&split), key(&whole), "split at {k}");
        }
        whole
    }

    fn all(s: &Streamed) -> String {
        format!("{s:?}")
    }

    fn targets_and_end(s: &Streamed) -> String {
        let targets: Vec<&str> = s.reqs.iter().map(|r| r.0.as_str()).collect();
        format!("{targets:?} {:?}", s.end)
    }

    fn end_of(s: &Streamed) -> String {
        format!("{:?}", s.end)
    }

    fn req(target: &str, body: &[u8]) -> (String, Vec<u8>, bool) {
        (target.into(), body.to_vec(), true)
    }

    #[test]
    fn streamed_bodies_come_in_bounded_pieces_however_the_input_is_split() {
        let input = b"POST /a HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello world\
POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nchunk\r\n3\r\nabc\r\n0\r\nX-Trailer: t\r\n\r\n\
POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n\
POST /d HTTP/1.1\r\nContent-Length: 0\r\n\r\n\
GET /e HTTP/1.1\r\n\r\n";
        let got = stream_everywhere(Config::default(), input, true, 4, None, all);
        assert_eq!(
            got,
            Streamed {
                reqs: vec![
                    req("/a", b"hello world"),
                    req("/b", b"chunkabc"),
                    req("/c", b""),
                    req("/d", b""),
                    req("/e", b""),
                ],
                end: End::Closed,
            }
        );
    }

    #[test]
    fn a_streamed_request_comes_before_its_body_and_a_body_with_its_head_comes_whole() {
        let cfg = Arc::new(Config {
            stream_bodies: true,
            ..Config::default()
        });
        let mut conn = Conn::new(cfg.clone(), trusted());
        conn.feed(b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc");
        assert!(
            matches!(conn.poll(), Event::Request(r) if matches!(r.body, RequestBody::Streamed))
        );
        // Nothing more from poll until the body is taken to its end.
        assert!(matches!(conn.poll(), Event::NeedMore));
        assert_eq!(conn.take_body(2), BodyEvent::Data(b"ab".to_vec()));
        assert_eq!(conn.take_body(2), BodyEvent::Data(b"c".to_vec()));
        assert_eq!(conn.take_body(2), BodyEvent::NeedMore);
        conn.feed(b"defghijGET / HTTP/1.1\r\n\r\n");
        assert_eq!(conn.take_body(100), BodyEvent::Data(b"defghij".to_vec()));
        assert!(conn.reading_body() && conn.streaming_body());
        assert_eq!(conn.take_body(100), BodyEvent::End);
        assert!(!conn.streaming_body());
        assert!(matches!(conn.poll(), Event::Request(r) if r.head.method() == b"GET"));

        let mut conn = Conn::new(cfg, trusted());
        conn.feed(b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc");
        assert!(matches!(conn.poll(), Event::Request(r) if r.body.as_bytes() == Some(&b"abc"[..])));
        assert!(!conn.streaming_body());
    }

    #[test]
    fn expect_continue_is_left_to_the_caller_when_streaming() {
        let cfg = Arc::new(Config {
            stream_bodies: true,
            ..Config::default()
        });
        let mut conn = Conn::new(cfg.clone(), trusted());
        conn.feed(b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n");
        assert!(matches!(conn.poll(), Event::Request(_)));
        assert!(matches!(conn.poll(), Event::NeedMore), "no SendContinue");
        assert!(conn.awaits_continue());
        assert!(conn.take_continue());
        assert!(!conn.awaits_continue() && !conn.take_continue(), "once");
        conn.feed(b"ok");
        assert_eq!(conn.take_body(10), BodyEvent::Data(b"ok".to_vec()));
        assert_eq!(conn.take_body(10), BodyEvent::End);

        // Answered while the client still waits for its 100: the client
        // may never send the body, so the connection cannot go on.
        let mut conn = Conn::new(cfg, trusted());
        conn.feed(b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n");
        assert!(matches!(conn.poll(), Event::Request(_)));
        assert!(!conn.skip_body(1 << 16));
    }

    #[test]
    fn an_unread_body_is_skipped_and_the_next_request_parsed_however_split() {
        let input = b"POST /a HTTP/1.1\r\nContent-Length: 6\r\n\r\nskip-1\
POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nskip\r\n0\r\n\r\n\
GET /c HTTP/1.1\r\n\r\n";
        let got = stream_everywhere(Config::default(), input, true, 4, Some(10), targets_and_end);
        // A body that came with its head is whole; a skipped one is empty here.
        assert_eq!(got.end, End::Closed);
        assert_eq!(got.reqs.len(), 3);
        assert_eq!(got.reqs[2], req("/c", b""));

        // Past the budget: a known length is refused at once, chunks when they pass it.
        let cfg = Arc::new(Config {
            stream_bodies: true,
            ..Config::default()
        });
        let long = b"POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\nab";
        let got = stream_run(&cfg, &[&long[..]], false, 4, Some(10));
        assert_eq!(got.end, End::Closed);
        let chunked = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let mut conn = Conn::new(cfg, trusted());
        conn.feed(chunked);
        assert!(matches!(conn.poll(), Event::Request(_)));
        assert!(conn.skip_body(10));
        assert!(conn.skipping_body());
        conn.feed(b"8\r\n12345678\r\n");
        assert!(matches!(conn.poll(), Event::NeedMore));
        conn.feed(b"8\r\n12345678\r\n");
        assert!(matches!(conn.poll(), Event::Closed));
        // Broken framing while skipping: just the end (the request was answered).
        let mut conn = Conn::new(
            Arc::new(Config {
                stream_bodies: true,
                ..Config::default()
            }),
            trusted(),
        );
        conn.feed(chunked);
        assert!(matches!(conn.poll(), Event::Request(_)));
        assert!(conn.skip_body(10));
        conn.feed(b"zz\r\n");
        assert!(matches!(conn.poll(), Event::Closed));
    }

    #[test]
    fn eof_or_bad_framing_inside_a_streamed_body_comes_after_its_bytes() {
        let input = b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nhalf";
        let got = stream_everywhere(Config::default(), input, true, 3, None, all);
        assert_eq!(got.end, End::Error(HttpErrorKind::NoMoreData));
        // The bytes before the end come first, however split.
        assert_eq!(got.reqs, [req("/", b"half")]);
        let cfg = Arc::new(Config {
            stream_bodies: true,
            ..Config::default()
        });

        let input = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nxyz\r\n";
        let got = stream_everywhere(Config::default(), input, false, 3, None, end_of);
        assert_eq!(got.end, End::Error(HttpErrorKind::InvalidChunkSize));
        // Split before the bad size line: the good chunk arrives first.
        let (a, b) = input.split_at(input.len() - 5);
        let got = stream_run(&cfg, &[a, b], false, 3, None);
        assert_eq!(got.reqs, [req("/", b"abc")]);
    }

    #[test]
    fn limit_request_body_holds_for_streamed_chunks() {
        let cfg = Config {
            limit_request_body: 5,
            ..Config::default()
        };
        let input = b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n4\r\nefgh\r\n0\r\n\r\n";
        let got = stream_everywhere(cfg.clone(), input, true, 8, None, end_of);
        assert_eq!(got.end, End::Error(HttpErrorKind::RequestBodyTooLarge));
        // A known length over the limit is refused before the request is returned.
        let got = stream_everywhere(
            cfg,
            b"POST / HTTP/1.1\r\nContent-Length: 6\r\n\r\n",
            false,
            8,
            None,
            all,
        );
        assert_eq!(
            got,
            Streamed {
                reqs: vec![],
                end: End::Error(HttpErrorKind::RequestBodyTooLarge)
            }
        );
    }
}
