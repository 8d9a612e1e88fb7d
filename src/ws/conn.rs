//! One WebSocket connection after the 101, server side: bytes in, events
//! out (`receive_data`, `poll`); messages in, bytes out (`send_*`, `close`).
//!
//! Payload bytes are unmasked in the input buffer as they arrive and moved
//! to the message at once (or through the inflater), so the input never
//! holds more than a header or a short control frame; a message is checked
//! against the size limit from its frame lengths before any of its payload
//! is kept. Text is checked for UTF-8 whenever the input runs dry in the
//! middle of a message, so a bad fragment fails before the rest arrives.

use super::deflate::Codec;
use super::extension::DeflateParams;
use super::frame::{apply_mask, parse_header, write_header, Header, Opcode, MAX_CONTROL_PAYLOAD};
use super::{close_code, is_valid_close_code, Config, ErrorKind, ProtocolError};

/// Where the close handshake is (RFC 6455 §7). A protocol error does not
/// change it: the caller moves to `Closed` with `fail`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Open,
    /// Our close frame is out; waiting for the peer's.
    CloseSent,
    /// Both closes were exchanged (or the connection was failed): write
    /// what is queued, then close TCP.
    Closed,
}

/// What `poll` found in the bytes received so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Nothing complete yet: receive more bytes.
    NeedMore,
    Text(String),
    Binary(Vec<u8>),
    /// The answer to a ping we sent.
    Pong(Vec<u8>),
    /// The peer's close frame: `code` is 1005 when it had none. Our answer
    /// is already queued (unless we had closed first); the state is `Closed`.
    Close {
        code: u16,
        reason: String,
    },
    /// The peer broke the protocol. Nothing after the bad frame is read
    /// (not even a ping), but the events before it stand and may still be
    /// answered: call `fail` once they are handled, which queues a close
    /// frame with `close_code()`; then write it and close TCP. Returned
    /// again by every later poll.
    Error(ProtocolError),
    /// The close handshake is over: nothing more will come.
    Closed,
}

/// Why an outgoing frame was not written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    /// A close frame was already sent or received.
    Closed,
    /// Ping and pong payloads are limited to 125 bytes.
    ControlTooLong,
    /// Not a code that may be sent (RFC 6455 §7.4).
    InvalidCloseCode(u16),
    /// A close reason is limited to 123 bytes.
    ReasonTooLong,
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Closed => f.write_str("the WebSocket is closed"),
            SendError::ControlTooLong => f.write_str("ping/pong payload over 125 bytes"),
            SendError::InvalidCloseCode(c) => write!(f, "invalid close code {c}"),
            SendError::ReasonTooLong => f.write_str("close reason over 123 bytes"),
        }
    }
}

impl std::error::Error for SendError {}

#[derive(Clone, Copy, Debug)]
enum Reading {
    Header,
    /// A data frame's payload, `done` of its bytes consumed.
    Data {
        header: Header,
        done: u64,
    },
    /// A control frame, read once its whole payload is here.
    Control {
        header: Header,
    },
}

/// A data message being received.
struct Message {
    text: bool,
    compressed: bool,
    buf: Vec<u8>,
    /// Bytes of `buf` known to be UTF-8 (text only).
    validated: usize,
}

pub struct Connection {
    max_message_size: usize,
    state: State,
    input: Vec<u8>,
    /// Consumed bytes of `input`.
    pos: usize,
    reading: Reading,
    message: Option<Message>,
    codec: Option<Codec>,
    /// Frames the module queued itself (pongs, the close answer).
    pending: Vec<u8>,
    error: Option<ProtocolError>,
}

fn protocol(detail: &'static str) -> ProtocolError {
    ProtocolError::new(ErrorKind::Protocol, detail)
}

fn bad_utf8() -> ProtocolError {
    ProtocolError::new(ErrorKind::InvalidPayload, "text is not valid UTF-8")
}

/// 123: a close frame's 125 bytes less the status code.
const MAX_CLOSE_REASON: usize = MAX_CONTROL_PAYLOAD - 2;

impl Connection {
    /// A connection for an accepted upgrade, with its negotiated
    /// permessage-deflate parameters (`Upgrade::deflate`).
    pub fn new(cfg: &Config, deflate: Option<DeflateParams>) -> Connection {
        Connection {
            max_message_size: cfg.max_message_size,
            state: State::Open,
            input: Vec::new(),
            pos: 0,
            reading: Reading::Header,
            message: None,
            codec: deflate.map(|p| Codec::new(p, cfg.compression_level)),
            pending: Vec::new(),
            error: None,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// Bytes from the peer. Ignored once the connection is `Closed` or
    /// the peer broke the protocol, so a peer that keeps sending costs no
    /// memory.
    pub fn receive_data(&mut self, data: &[u8]) {
        if self.state != State::Closed && self.error.is_none() {
            // What was read is dropped here too, so a caller that feeds
            // after each event (not only after `NeedMore`) keeps the input small.
            self.input.drain(..self.pos);
            self.pos = 0;
            self.input.extend_from_slice(data);
        }
    }

    /// The next event in the bytes received so far.
    pub fn poll(&mut self) -> Event {
        if let Some(e) = self.error {
            return Event::Error(e);
        }
        if self.state == State::Closed {
            return Event::Closed;
        }
        match self.advance() {
            Ok(Some(event)) => event,
            Ok(None) => {
                self.input.drain(..self.pos);
                self.pos = 0;
                Event::NeedMore
            }
            Err(e) => self.stop_reading(e),
        }
    }

    /// Fail the connection after a protocol error (RFC 6455 §7.1.7): queue
    /// a close frame with the error's status code (unless our close is
    /// already out) and move to `Closed`. A caller that hands messages on
    /// calls it once those before the error are handled, so its answers to
    /// them go out before the close. No-op without an error.
    pub fn fail(&mut self) {
        let Some(e) = self.error else { return };
        if self.state == State::Open {
            write_close(&mut self.pending, Some(e.close_code()), e.detail.as_bytes());
        }
        self.state = State::Closed;
    }

    /// The protocol error the peer made, if it did (see `Event::Error`).
    pub fn error(&self) -> Option<ProtocolError> {
        self.error
    }

    /// Frames the module queued (pongs, the answer to a close) are waiting.
    pub fn wants_write(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Append the queued frames to `out`.
    pub fn drain_outgoing(&mut self, out: &mut Vec<u8>) {
        out.append(&mut self.pending);
    }

    pub fn send_text(&mut self, text: &str, out: &mut Vec<u8>) -> Result<(), SendError> {
        self.send_message(Opcode::Text, text.as_bytes(), out)
    }

    pub fn send_binary(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), SendError> {
        self.send_message(Opcode::Binary, data, out)
    }

    pub fn send_ping(&mut self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), SendError> {
        self.send_control(Opcode::Ping, payload, out)
    }

    pub fn send_pong(&mut self, payload: &[u8], out: &mut Vec<u8>) -> Result<(), SendError> {
        self.send_control(Opcode::Pong, payload, out)
    }

    /// Start the close handshake: the state becomes `CloseSent` until the
    /// peer's close arrives.
    pub fn close(&mut self, code: u16, reason: &str, out: &mut Vec<u8>) -> Result<(), SendError> {
        if !is_valid_close_code(code) {
            return Err(SendError::InvalidCloseCode(code));
        }
        if reason.len() > MAX_CLOSE_REASON {
            return Err(SendError::ReasonTooLong);
        }
        self.writable()?;
        self.drain_outgoing(out);
        write_close(out, Some(code), reason.as_bytes());
        self.state = State::CloseSent;
        Ok(())
    }

    fn writable(&self) -> Result<(), SendError> {
        match self.state {
            State::Open => Ok(()),
            State::CloseSent | State::Closed => Err(SendError::Closed),
        }
    }

    fn send_control(
        &mut self,
        opcode: Opcode,
        payload: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), SendError> {
        if payload.len() > MAX_CONTROL_PAYLOAD {
            return Err(SendError::ControlTooLong);
        }
        self.writable()?;
        self.drain_outgoing(out);
        write_header(out, true, false, opcode, payload.len(), None);
        out.extend_from_slice(payload);
        Ok(())
    }

    fn send_message(
        &mut self,
        opcode: Opcode,
        data: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), SendError> {
        self.writable()?;
        self.drain_outgoing(out);
        if let Some(codec) = self.codec.as_mut().filter(|c| c.compresses()) {
            // Compress behind room for the longest header, then close the gap.
            const ROOM: usize = 10;
            let start = out.len();
            out.resize(start + ROOM, 0);
            if codec.compress(data, out) {
                let len = out.len() - start - ROOM;
                let mut header = Vec::with_capacity(ROOM);
                write_header(&mut header, true, true, opcode, len, None);
                let gap = ROOM - header.len();
                out[start + gap..start + ROOM].copy_from_slice(&header);
                out.drain(start..start + gap);
                return Ok(());
            }
            out.truncate(start);
        }
        write_header(out, true, false, opcode, data.len(), None);
        out.extend_from_slice(data);
        Ok(())
    }

    /// The peer broke the protocol: drop the rest of the input and read
    /// nothing more; the close waits for `fail`.
    fn stop_reading(&mut self, e: ProtocolError) -> Event {
        self.error = Some(e);
        self.finish_input();
        Event::Error(e)
    }

    fn finish_input(&mut self) {
        self.input = Vec::new();
        self.pos = 0;
        self.message = None;
        self.reading = Reading::Header;
    }

    /// Read frames until one makes an event (`None`: the input ran dry).
    fn advance(&mut self) -> Result<Option<Event>, ProtocolError> {
        loop {
            match self.reading {
                Reading::Header => {
                    let Some((header, len)) = parse_header(&self.input[self.pos..])? else {
                        self.check_partial_text()?;
                        return Ok(None);
                    };
                    self.pos += len;
                    self.start_frame(header)?;
                }
                Reading::Control { header } => {
                    let len = header.len as usize;
                    let Some(payload) = self.input.get_mut(self.pos..self.pos + len) else {
                        self.check_partial_text()?;
                        return Ok(None);
                    };
                    if let Some(key) = header.mask {
                        apply_mask(payload, key, 0);
                    }
                    let payload = payload.to_vec();
                    self.pos += len;
                    self.reading = Reading::Header;
                    if let Some(event) = self.control(header.opcode, payload)? {
                        return Ok(Some(event));
                    }
                }
                Reading::Data { header, done } => {
                    let left = header.len - done;
                    let avail = (self.input.len() - self.pos)
                        .min(usize::try_from(left).unwrap_or(usize::MAX));
                    let chunk = &mut self.input[self.pos..self.pos + avail];
                    if let Some(key) = header.mask {
                        apply_mask(chunk, key, done);
                    }
                    let Some(msg) = self.message.as_mut() else {
                        return Err(protocol("data frame outside a message"));
                    };
                    match self.codec.as_mut().filter(|_| msg.compressed) {
                        Some(codec) => codec.inflate(chunk, &mut msg.buf, self.max_message_size)?,
                        None => msg.buf.extend_from_slice(chunk),
                    }
                    self.pos += avail;
                    let done = done + avail as u64;
                    if done < header.len {
                        self.reading = Reading::Data { header, done };
                        self.check_partial_text()?;
                        return Ok(None);
                    }
                    self.reading = Reading::Header;
                    if header.fin {
                        if let Some(event) = self.finish_message()? {
                            return Ok(Some(event));
                        }
                    }
                }
            }
        }
    }

    /// Check a frame header against the connection and get ready for its payload.
    fn start_frame(&mut self, header: Header) -> Result<(), ProtocolError> {
        if header.mask.is_none() {
            return Err(protocol("unmasked frame from a client"));
        }
        if header.opcode.is_control() {
            if header.rsv1 {
                return Err(protocol("RSV1 set on a control frame"));
            }
            self.reading = Reading::Control { header };
            return Ok(());
        }
        let msg = match (header.opcode, self.message.as_mut()) {
            (Opcode::Continuation, None) => {
                return Err(protocol("continuation frame without a message"))
            }
            (Opcode::Continuation, Some(msg)) => {
                if header.rsv1 {
                    return Err(protocol("RSV1 set on a continuation frame"));
                }
                msg
            }
            (_, Some(_)) => return Err(protocol("new message before the last one ended")),
            (opcode, None) => {
                if header.rsv1 && self.codec.is_none() {
                    return Err(protocol("RSV1 set without permessage-deflate"));
                }
                self.message.insert(Message {
                    text: opcode == Opcode::Text,
                    compressed: header.rsv1,
                    buf: Vec::new(),
                    validated: 0,
                })
            }
        };
        if !msg.compressed {
            let total = (msg.buf.len() as u64).saturating_add(header.len);
            if total > self.max_message_size as u64 {
                return Err(ProtocolError::new(
                    ErrorKind::TooBig,
                    "message over the size limit",
                ));
            }
            msg.buf.reserve(header.len as usize);
        }
        self.reading = Reading::Data { header, done: 0 };
        Ok(())
    }

    /// Fail fast on a text message whose bytes so far cannot begin valid UTF-8.
    fn check_partial_text(&mut self) -> Result<(), ProtocolError> {
        let Some(msg) = self.message.as_mut().filter(|m| m.text) else {
            return Ok(());
        };
        match std::str::from_utf8(&msg.buf[msg.validated..]) {
            Ok(_) => msg.validated = msg.buf.len(),
            // Cut inside a code point: fine until the message ends.
            Err(e) if e.error_len().is_none() => msg.validated += e.valid_up_to(),
            Err(_) => return Err(bad_utf8()),
        }
        Ok(())
    }

    fn finish_message(&mut self) -> Result<Option<Event>, ProtocolError> {
        let Some(mut msg) = self.message.take() else {
            return Ok(None);
        };
        if let Some(codec) = self.codec.as_mut().filter(|_| msg.compressed) {
            codec.finish_message(&mut msg.buf, self.max_message_size)?;
        }
        if self.state != State::Open {
            // Data after our close: read and dropped (§5.5.1).
            return Ok(None);
        }
        Ok(Some(if msg.text {
            Event::Text(String::from_utf8(msg.buf).map_err(|_| bad_utf8())?)
        } else {
            Event::Binary(msg.buf)
        }))
    }

    fn control(
        &mut self,
        opcode: Opcode,
        payload: Vec<u8>,
    ) -> Result<Option<Event>, ProtocolError> {
        match opcode {
            Opcode::Ping => {
                if self.state == State::Open {
                    write_header(
                        &mut self.pending,
                        true,
                        false,
                        Opcode::Pong,
                        payload.len(),
                        None,
                    );
                    self.pending.extend_from_slice(&payload);
                }
                Ok(None)
            }
            Opcode::Pong => Ok(Some(Event::Pong(payload))),
            _ => {
                let (code, reason) = match payload.as_slice() {
                    [] => (None, String::new()),
                    [_] => return Err(protocol("close frame with a 1-byte payload")),
                    [hi, lo, reason @ ..] => {
                        let code = u16::from_be_bytes([*hi, *lo]);
                        if !is_valid_close_code(code) {
                            return Err(protocol("close frame with an invalid status code"));
                        }
                        let reason = std::str::from_utf8(reason).map_err(|_| {
                            ProtocolError::new(
                                ErrorKind::InvalidPayload,
                                "close reason is not valid UTF-8",
                            )
                        })?;
                        (Some(code), reason.to_owned())
                    }
                };
                if self.state == State::Open {
                    // Echo the status code, as §5.5.1 suggests.
                    write_close(&mut self.pending, code, b"");
                }
                self.state = State::Closed;
                self.finish_input();
                Ok(Some(Event::Close {
                    code: code.unwrap_or(close_code::NO_STATUS),
                    reason,
                }))
            }
        }
    }
}

fn write_close(out: &mut Vec<u8>, code: Option<u16>, reason: &[u8]) {
    let Some(code) = code else {
        write_header(out, true, false, Opcode::Close, 0, None);
        return;
    };
    let reason = &reason[..reason.len().min(MAX_CLOSE_REASON)];
    write_header(out, true, false, Opcode::Close, 2 + reason.len(), None);
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(reason);
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    /// A client frame: `b0` is FIN/RSV/opcode, the payload is masked.
    fn frame(b0: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let opcode = match b0 & 0x0F {
            0 => Opcode::Continuation,
            1 => Opcode::Text,
            2 => Opcode::Binary,
            8 => Opcode::Close,
            9 => Opcode::Ping,
            _ => Opcode::Pong,
        };
        write_header(
            &mut out,
            b0 & 0x80 != 0,
            b0 & 0x40 != 0,
            opcode,
            payload.len(),
            Some(MASK),
        );
        out[0] = b0;
        let start = out.len();
        out.extend_from_slice(payload);
        apply_mask(&mut out[start..], MASK, 0);
        out
    }

    fn deflate_params() -> DeflateParams {
        DeflateParams {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: None,
        }
    }

    fn conn() -> Connection {
        Connection::new(&Config::default(), None)
    }

    /// Poll until the connection wants more bytes or is done.
    fn drain(c: &mut Connection, events: &mut Vec<Event>) {
        for _ in 0..10_000 {
            match c.poll() {
                Event::NeedMore => return,
                e @ (Event::Error(_) | Event::Closed) => {
                    events.push(e);
                    return;
                }
                e => events.push(e),
            }
        }
        panic!("poll does not settle");
    }

    fn run(c: &mut Connection, pieces: &[&[u8]]) -> Vec<Event> {
        let mut events = Vec::new();
        for piece in pieces {
            if matches!(events.last(), Some(Event::Error(_) | Event::Closed)) {
                break;
            }
            c.receive_data(piece);
            drain(c, &mut events);
        }
        events
    }

    /// The events of `bytes` fed whole, checked to be the same when the
    /// bytes are cut in two at each of `cuts` and when fed one at a time
    /// (short inputs only). Also returns the queued outgoing bytes, with
    /// the close of a failed connection (`fail` once the events are handled).
    fn events_split(
        make: impl Fn() -> Connection,
        bytes: &[u8],
        cuts: impl IntoIterator<Item = usize>,
    ) -> (Vec<Event>, Vec<u8>) {
        let mut c = make();
        let whole = run(&mut c, &[bytes]);
        let mut out = Vec::new();
        c.fail();
        c.drain_outgoing(&mut out);
        for cut in cuts {
            let mut c = make();
            let got = run(&mut c, &[&bytes[..cut], &bytes[cut..]]);
            assert_eq!(got, whole, "cut at {cut}");
            let mut got_out = Vec::new();
            c.fail();
            c.drain_outgoing(&mut got_out);
            assert_eq!(got_out, out, "outgoing, cut at {cut}");
        }
        if bytes.len() <= 2048 {
            let mut c = make();
            let pieces: Vec<&[u8]> = bytes.chunks(1).collect();
            assert_eq!(run(&mut c, &pieces), whole, "byte at a time");
        }
        (whole, out)
    }

    fn every_cut(bytes: &[u8]) -> std::ops::RangeInclusive<usize> {
        0..=bytes.len()
    }

    /// Cuts in the headers and at the ends; a stride through long payloads.
    fn some_cuts(len: usize) -> Vec<usize> {
        let mut cuts: Vec<usize> = (0..=20.min(len)).collect();
        cuts.extend((len.saturating_sub(20))..=len);
        cuts.extend((0..len).step_by(4099));
        cuts
    }

    fn error_code(events: &[Event]) -> Option<u16> {
        match events.last() {
            Some(Event::Error(e)) => Some(e.close_code()),
            _ => None,
        }
    }

    #[test]
    fn messages_of_every_length_class_arrive_split_at_every_boundary() {
        for len in [0usize, 1, 125, 126, 65535, 65536] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut bytes = frame(0x82, &data);
            let text = "é".repeat(len / 2) + if len % 2 == 1 { "x" } else { "" };
            bytes.extend(frame(0x81, text.as_bytes()));
            let cuts = if len <= 1024 {
                every_cut(&bytes).collect()
            } else {
                some_cuts(bytes.len())
            };
            let (events, out) = events_split(conn, &bytes, cuts);
            assert_eq!(
                events,
                [Event::Binary(data), Event::Text(text)],
                "len {len}"
            );
            assert!(out.is_empty());
        }
    }

    #[test]
    fn unmasked_client_frames_are_1002() {
        let mut c = conn();
        let events = run(&mut c, &[&[0x81, 0x02, b'h', b'i']]);
        assert_eq!(error_code(&events), Some(1002));
        assert_eq!(c.error().map(|e| e.close_code()), Some(1002));
        // The close waits for the caller.
        assert_eq!(c.state(), State::Open);
        assert!(!c.wants_write());
        c.fail();
        assert_eq!(c.state(), State::Closed);
        let mut out = Vec::new();
        c.drain_outgoing(&mut out);
        assert_eq!(&out[..4], [0x88, out[1], 0x03, 0xEA]);
        assert_eq!(out.len(), 2 + out[1] as usize);
        // Sticky, and later bytes are ignored.
        c.receive_data(&frame(0x81, b"x"));
        assert_eq!(c.poll(), events[0]);
        c.fail();
        assert!(!c.wants_write(), "one close only");
    }

    #[test]
    fn events_before_an_error_stand_and_nothing_after_it_is_read() {
        // One read: a message, a ping, a frame with RSV2, another ping, a message.
        let mut bytes = frame(0x81, b"Hello");
        bytes.extend(frame(0x89, b"p1"));
        bytes.extend(frame(0xA1, b"bad"));
        bytes.extend(frame(0x89, b"p2"));
        bytes.extend(frame(0x81, b"after"));
        for cut in every_cut(&bytes) {
            let mut c = conn();
            let events = run(&mut c, &[&bytes[..cut], &bytes[cut..]]);
            assert_eq!(events[0], Event::Text("Hello".into()), "cut at {cut}");
            assert_eq!(events.len(), 2, "cut at {cut}: {events:?}");
            assert_eq!(error_code(&events), Some(1002));
            // The answer to the message goes out after the first pong and
            // before the close; the second ping is never answered.
            let mut out = Vec::new();
            c.send_text("Hello", &mut out).unwrap();
            c.fail();
            c.drain_outgoing(&mut out);
            assert_eq!(out[..4], [0x8A, 0x02, b'p', b'1'], "cut at {cut}");
            assert_eq!(out[4..11], [0x81, 0x05, b'H', b'e', b'l', b'l', b'o']);
            assert_eq!(out[11], 0x88);
            assert_eq!(out[13..15], [0x03, 0xEA]);
            assert_eq!(out.len(), 13 + out[12] as usize, "nothing after the close");
            assert_eq!(c.state(), State::Closed);
            assert_eq!(c.send_text("late", &mut out), Err(SendError::Closed));
        }
    }

    #[test]
    fn bytes_after_an_error_are_dropped_unread() {
        let mut c = conn();
        run(&mut c, &[&frame(0x83, b"")]);
        let flood = frame(0x82, &[0; 4096]);
        for _ in 0..100 {
            c.receive_data(&flood);
            assert!(c.input.is_empty());
            assert_eq!(error_code(&[c.poll()]), Some(1002));
        }
        assert!(!c.wants_write());
    }

    #[test]
    fn an_error_after_our_close_adds_no_second_close() {
        let mut c = conn();
        let mut out = Vec::new();
        c.close(1001, "", &mut out).unwrap();
        let events = run(&mut c, &[&frame(0x80, b"stray")]);
        assert_eq!(error_code(&events), Some(1002));
        assert_eq!(c.state(), State::CloseSent);
        c.fail();
        assert_eq!(c.state(), State::Closed);
        assert!(!c.wants_write());
    }

    #[test]
    fn fragments_with_interleaved_pings_make_one_message() {
        let mut bytes = frame(0x01, b"Hel");
        bytes.extend(frame(0x89, b"p1"));
        bytes.extend(frame(0x00, b""));
        bytes.extend(frame(0x8A, b"pong"));
        bytes.extend(frame(0x00, b"lo "));
        bytes.extend(frame(0x89, b""));
        bytes.extend(frame(0x80, "wörld".as_bytes()));
        bytes.extend(frame(0x02, &[1, 2]));
        bytes.extend(frame(0x80, &[3]));
        let (events, out) = events_split(conn, &bytes, every_cut(&bytes));
        assert_eq!(
            events,
            [
                Event::Pong(b"pong".to_vec()),
                Event::Text("Hello wörld".into()),
                Event::Binary(vec![1, 2, 3])
            ]
        );
        assert_eq!(out, [&[0x8A, 0x02, b'p', b'1'][..], &[0x8A, 0x00]].concat());
    }

    #[test]
    fn protocol_violations_close_with_their_code() {
        let long_ping = {
            let mut f = frame(0x89, &[0; 125]);
            f[1] = 0x80 | 126;
            f.splice(2..2, [0, 126]);
            f
        };
        let cases: Vec<(&str, Vec<u8>, u16)> = vec![
            ("RSV1 without deflate", frame(0xC1, b"x"), 1002),
            ("RSV2", frame(0xA1, b"x"), 1002),
            ("RSV3", frame(0x91, b"x"), 1002),
            ("opcode 3", frame(0x83, b""), 1002),
            ("opcode 0xB", frame(0x8B, b""), 1002),
            ("control over 125", long_ping, 1002),
            ("fragmented ping", frame(0x09, b""), 1002),
            ("continuation without start", frame(0x80, b"x"), 1002),
            (
                "new message mid-message",
                [frame(0x01, b"a"), frame(0x81, b"b")].concat(),
                1002,
            ),
            ("close with 1 byte", frame(0x88, &[3]), 1002),
            ("close code 999", frame(0x88, &999u16.to_be_bytes()), 1002),
            ("close code 1004", frame(0x88, &1004u16.to_be_bytes()), 1002),
            ("close code 1005", frame(0x88, &1005u16.to_be_bytes()), 1002),
            ("close code 1006", frame(0x88, &1006u16.to_be_bytes()), 1002),
            ("close code 1015", frame(0x88, &1015u16.to_be_bytes()), 1002),
            ("close code 1016", frame(0x88, &1016u16.to_be_bytes()), 1002),
            ("close code 2999", frame(0x88, &2999u16.to_be_bytes()), 1002),
            ("close code 5000", frame(0x88, &5000u16.to_be_bytes()), 1002),
            (
                "close reason not UTF-8",
                frame(0x88, &[0x03, 0xE8, 0xFF]),
                1007,
            ),
            ("text not UTF-8", frame(0x81, &[b'a', 0xFF]), 1007),
            (
                "text ends inside a code point",
                frame(0x81, &[0xE2, 0x82]),
                1007,
            ),
            (
                "length top bit",
                vec![0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0],
                1002,
            ),
        ];
        for (what, bytes, code) in cases {
            let (events, out) = events_split(conn, &bytes, every_cut(&bytes));
            assert_eq!(error_code(&events), Some(code), "{what}: {events:?}");
            assert_eq!(out[0], 0x88, "{what}: a close frame");
            assert_eq!(out[2..4], code.to_be_bytes(), "{what}: its code");
        }
    }

    #[test]
    fn bad_utf8_fails_before_the_message_ends() {
        let mut c = conn();
        // The first fragment cannot start valid UTF-8: fail without waiting for the rest.
        let events = run(&mut c, &[&frame(0x01, &[b'o', b'k', 0xC0, 0x80])]);
        assert_eq!(error_code(&events), Some(1007));
        // Within one frame too, as soon as the bad byte is in.
        let mut c = conn();
        let f = frame(
            0x81,
            &[b'a'; 100]
                .iter()
                .chain(&[0xFF])
                .chain(&[b'b'; 100])
                .copied()
                .collect::<Vec<_>>(),
        );
        let events = run(&mut c, &[&f[..2 + 2 + 4 + 101]]);
        assert_eq!(error_code(&events), Some(1007));
    }

    #[test]
    fn utf8_split_inside_a_code_point_across_fragments() {
        let euro = "€".as_bytes(); // E2 82 AC
        let mut bytes = frame(0x01, &euro[..1]);
        bytes.extend(frame(0x00, &euro[1..2]));
        bytes.extend(frame(0x80, &[euro[2], b'!']));
        let (events, _) = events_split(conn, &bytes, every_cut(&bytes));
        assert_eq!(events, [Event::Text("€!".into())]);
        // An incomplete code point at the end of the final fragment.
        let mut bytes = frame(0x01, b"a");
        bytes.extend(frame(0x80, &euro[..2]));
        let (events, _) = events_split(conn, &bytes, every_cut(&bytes));
        assert_eq!(error_code(&events), Some(1007));
    }

    #[test]
    fn peer_closes_first_and_gets_the_code_echoed() {
        let mut bytes = frame(0x88, &[0x03, 0xE9, b'b', b'y', b'e']);
        bytes.extend(frame(0x81, b"ignored"));
        let (events, out) = events_split(conn, &bytes, every_cut(&bytes));
        assert_eq!(
            events,
            [
                Event::Close {
                    code: 1001,
                    reason: "bye".into()
                },
                Event::Closed
            ]
        );
        assert_eq!(out, [0x88, 0x02, 0x03, 0xE9]);
        let mut c = conn();
        run(&mut c, &[&bytes]);
        assert_eq!(c.state(), State::Closed);
        let mut out = Vec::new();
        assert_eq!(c.send_text("late", &mut out), Err(SendError::Closed));
        assert_eq!(c.close(1000, "", &mut out), Err(SendError::Closed));
        c.drain_outgoing(&mut out);
        assert_eq!(out, [0x88, 0x02, 0x03, 0xE9]);
    }

    #[test]
    fn close_without_a_code_is_1005_and_answered_empty() {
        let bytes = frame(0x88, b"");
        let (events, out) = events_split(conn, &bytes, every_cut(&bytes));
        assert_eq!(
            events,
            [
                Event::Close {
                    code: 1005,
                    reason: String::new()
                },
                Event::Closed
            ]
        );
        assert_eq!(out, [0x88, 0x00]);
    }

    #[test]
    fn server_closes_first_then_waits_for_the_peer() {
        let mut c = conn();
        let mut out = Vec::new();
        c.close(1000, "done", &mut out).unwrap();
        assert_eq!(out, [0x88, 0x06, 0x03, 0xE8, b'd', b'o', b'n', b'e']);
        assert_eq!(c.state(), State::CloseSent);
        assert_eq!(c.send_binary(b"x", &mut out), Err(SendError::Closed));
        assert_eq!(c.send_ping(b"x", &mut out), Err(SendError::Closed));
        // Data still in flight from the peer is read and dropped; pings are not answered.
        let mut bytes = frame(0x81, b"in flight");
        bytes.extend(frame(0x89, b"p"));
        bytes.extend(frame(0x88, &[0x03, 0xE8]));
        let events = run(&mut c, &[&bytes]);
        assert_eq!(
            events,
            [
                Event::Close {
                    code: 1000,
                    reason: String::new()
                },
                Event::Closed
            ]
        );
        assert_eq!(c.state(), State::Closed);
        assert!(!c.wants_write(), "no second close, no pong");
    }

    #[test]
    fn outgoing_frames_are_unmasked_and_carry_queued_pongs_first() {
        let mut c = conn();
        run(&mut c, &[&frame(0x89, b"hb")]);
        assert!(c.wants_write());
        let mut out = Vec::new();
        c.send_text("hi", &mut out).unwrap();
        assert_eq!(out, [0x8A, 0x02, b'h', b'b', 0x81, 0x02, b'h', b'i']);
        out.clear();
        c.send_binary(&[0; 126], &mut out).unwrap();
        assert_eq!(out[..4], [0x82, 126, 0, 126]);
        out.clear();
        c.send_binary(&vec![0; 65536], &mut out).unwrap();
        assert_eq!(out[..10], [0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
        out.clear();
        c.send_ping(b"abc", &mut out).unwrap();
        c.send_pong(b"", &mut out).unwrap();
        assert_eq!(out, [0x89, 0x03, b'a', b'b', b'c', 0x8A, 0x00]);
        assert_eq!(
            c.send_ping(&[0; 126], &mut out),
            Err(SendError::ControlTooLong)
        );
        assert_eq!(
            c.close(1005, "", &mut out),
            Err(SendError::InvalidCloseCode(1005))
        );
        assert_eq!(
            c.close(1000, &"x".repeat(124), &mut out),
            Err(SendError::ReasonTooLong)
        );
        assert_eq!(c.state(), State::Open);
    }

    fn small_limit() -> Connection {
        let cfg = Config {
            max_message_size: 1000,
            ..Config::default()
        };
        Connection::new(&cfg, Some(deflate_params()))
    }

    #[test]
    fn oversize_messages_are_1009_before_their_payload_is_read() {
        // The header alone is enough to refuse it.
        let f = frame(0x82, &[0; 1001]);
        let mut c = small_limit();
        assert_eq!(error_code(&run(&mut c, &[&f[..8]])), Some(1009));
        // Exactly the limit is fine, split over fragments.
        let mut bytes = frame(0x02, &[1; 600]);
        bytes.extend(frame(0x80, &[2; 400]));
        let (events, _) = events_split(small_limit, &bytes, some_cuts(bytes.len()));
        assert_eq!(events.len(), 1);
        // One byte more fails at the second header.
        let mut bytes = frame(0x02, &[1; 600]);
        let first = bytes.len();
        bytes.extend(frame(0x80, &[2; 401]));
        let mut c = small_limit();
        assert_eq!(error_code(&run(&mut c, &[&bytes[..first + 8]])), Some(1009));
        // A 64-bit length far past any limit.
        let mut c = small_limit();
        let huge = [
            0x82, 0xFF, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 1, 2, 3, 4,
        ];
        assert_eq!(error_code(&run(&mut c, &[&huge])), Some(1009));
    }

    fn compressed(codec: &mut Codec, data: &[u8]) -> Vec<u8> {
        let mut wire = Vec::new();
        assert!(codec.compress(data, &mut wire));
        wire
    }

    #[test]
    fn compressed_messages_over_the_limit_are_1009() {
        let mut tx = Codec::new(deflate_params(), 9);
        let bomb = compressed(&mut tx, &[b'a'; 100_000]);
        let mut c = small_limit();
        assert_eq!(error_code(&run(&mut c, &[&frame(0xC2, &bomb)])), Some(1009));
        let mut tx = Codec::new(deflate_params(), 9);
        let fits = compressed(&mut tx, &[b'a'; 1000]);
        let mut c = small_limit();
        assert_eq!(
            run(&mut c, &[&frame(0xC2, &fits)]),
            [Event::Binary(vec![b'a'; 1000])]
        );
    }

    #[test]
    fn rfc_7692_hello_frames() {
        let deflate = || Connection::new(&Config::default(), Some(deflate_params()));
        // §7.2.3.1: one compressed frame, then fragmented (RSV1 on the first only).
        let mut bytes = frame(0xC1, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00]);
        bytes.extend(frame(0x41, &[0xf2, 0x48, 0xcd]));
        bytes.extend(frame(0x80, &[0xc9, 0xc9, 0x07, 0x00]));
        // §7.2.3.2: with the context kept, a third "Hello" refers back.
        bytes.extend(frame(0xC1, &[0xf2, 0x00, 0x11, 0x00, 0x00]));
        let (events, _) = events_split(deflate, &bytes, every_cut(&bytes));
        assert_eq!(events, vec![Event::Text("Hello".into()); 3]);
        // Our own "Hello" twice: the RFC's bytes, the second referring back.
        let mut c = deflate();
        let mut out = Vec::new();
        c.send_text("Hello", &mut out).unwrap();
        c.send_text("Hello", &mut out).unwrap();
        assert_eq!(
            out,
            [
                0xc1, 0x07, 0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0xc1, 0x05, 0xf2, 0x00, 0x11,
                0x00, 0x00
            ]
        );
        // RSV1 on a continuation frame is an error.
        let mut bytes = frame(0x41, &[0xf2, 0x48, 0xcd]);
        bytes.extend(frame(0xC0, &[0xc9, 0xc9, 0x07, 0x00]));
        let mut c = deflate();
        assert_eq!(error_code(&run(&mut c, &[&bytes])), Some(1002));
    }

    #[test]
    fn deflate_round_trips_through_two_connections() {
        for nct in [false, true] {
            let p = DeflateParams {
                server_no_context_takeover: nct,
                client_no_context_takeover: nct,
                server_max_window_bits: 11,
                client_max_window_bits: Some(11),
            };
            // The server's outgoing frames, masked, are what a client would send.
            let mut server = Connection::new(&Config::default(), Some(p));
            let mut receiver = Connection::new(&Config::default(), Some(p));
            let messages = ["", "Hello", &"abcdefgh".repeat(5000), "Hello", "ünïcödé"];
            let mut wire = Vec::new();
            for m in messages {
                let mut out = Vec::new();
                server.send_text(m, &mut out).unwrap();
                assert_eq!(out[0], 0xC1, "RSV1 set");
                let (_, at) = parse_header(&out).unwrap().unwrap();
                wire.extend(frame(0xC1, &out[at..]));
            }
            let events = run(&mut receiver, &[&wire]);
            let want: Vec<Event> = messages
                .iter()
                .map(|m| Event::Text(m.to_string()))
                .collect();
            assert_eq!(events, want, "nct {nct}");
        }
    }

    #[test]
    fn server_window_8_sends_plain_frames() {
        let p = DeflateParams {
            server_max_window_bits: 8,
            ..deflate_params()
        };
        let mut c = Connection::new(&Config::default(), Some(p));
        let mut out = Vec::new();
        c.send_text("Hello", &mut out).unwrap();
        assert_eq!(out, [0x81, 0x05, b'H', b'e', b'l', b'l', b'o']);
        // It still inflates what the client compresses.
        let events = run(
            &mut c,
            &[&frame(0xC1, &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00])],
        );
        assert_eq!(events, [Event::Text("Hello".into())]);
    }

    #[test]
    fn corrupt_compressed_data_is_1007() {
        let mut c = Connection::new(&Config::default(), Some(deflate_params()));
        assert_eq!(
            error_code(&run(&mut c, &[&frame(0xC2, &[0xFF; 8])])),
            Some(1007)
        );
    }

    #[test]
    fn the_input_buffer_stays_small_during_a_large_message() {
        let mut c = conn();
        let data = vec![7u8; 1 << 20];
        let f = frame(0x82, &data);
        let mut events = Vec::new();
        for piece in f.chunks(60_000) {
            c.receive_data(piece);
            drain(&mut c, &mut events);
            assert!(c.input.len() < 16, "{}", c.input.len());
        }
        assert_eq!(events, [Event::Binary(data)]);
    }

    #[test]
    fn read_bytes_are_dropped_when_fed_after_each_event() {
        // A caller that polls once per feed, never seeing NeedMore.
        let mut c = conn();
        let f = frame(0x82, &[1; 1000]);
        for _ in 0..100 {
            c.receive_data(&f);
            assert_eq!(c.poll(), Event::Binary(vec![1; 1000]));
            assert!(c.input.len() <= f.len(), "{}", c.input.len());
        }
    }
}
