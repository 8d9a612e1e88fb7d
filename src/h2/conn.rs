//! One server connection: the preface, SETTINGS, frames dispatched to
//! streams, flow control of what the client sends, and the connection's end
//! (GOAWAY in two phases for a graceful stop, or at once on an error).
//!
//! The caller feeds bytes with `feed`, takes `Event`s with `poll`, answers
//! through `send_response` / `send_data` / `send_trailers` (send.rs), and
//! writes what `output` holds.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use super::error::{H2Error, Reason};
use super::flood::Floods;
use super::frame::{self, setting, FrameHead, HEADER_LEN, PREFACE};
use super::hpack::{Decoder, Encoder};
use super::request::Trailers;
use super::stream::{ClosedBy, Recv, Stream};
use crate::http::Head;

/// Our settings, gunicorn 27's `http2_*` defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub max_concurrent_streams: u32,
    pub initial_window_size: u32,
    pub max_frame_size: u32,
    /// 0: no limit beyond `UNLIMITED_HEADER_BLOCK`.
    pub max_header_list_size: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_concurrent_streams: 100,
            initial_window_size: 65_535,
            max_frame_size: 16_384,
            max_header_list_size: 65_536,
        }
    }
}

/// The dynamic table we let the client use: the protocol default, so we
/// never need to announce it.
pub const HEADER_TABLE_SIZE: usize = 4096;
/// With `max_header_list_size` 0 ("unlimited") a header block's raw bytes
/// are still capped here, so CONTINUATION frames cannot grow memory forever.
pub const UNLIMITED_HEADER_BLOCK: usize = 1 << 20;
/// How many closed streams a connection remembers, to tell a late frame
/// on a stream we reset (ignored) from a frame on a stream the client
/// closed (an error).
pub const CLOSED_MEMORY: usize = 256;
/// The payload of the PING that ends the first phase of a graceful stop.
pub const SHUTDOWN_PING: [u8; 8] = *b"ferrogo!";

#[derive(Debug)]
pub enum Event {
    /// A request head; its body follows as `Data` unless `end_stream`.
    Request {
        stream: u32,
        head: Head,
        end_stream: bool,
    },
    /// Request body bytes (padding removed). Call `release(stream, len)`
    /// once they are taken, so the client may send more.
    Data {
        stream: u32,
        data: Vec<u8>,
        end_stream: bool,
    },
    /// Request trailers; the request is complete.
    Trailers { stream: u32, trailers: Trailers },
    /// The stream ended before its response did (the client reset it, or
    /// broke a rule on it): drop the request's work.
    Reset { stream: u32, reason: Reason },
    /// Response data queued on this stream has all gone out: send more.
    Writable { stream: u32 },
    /// The client will open no streams above `last_stream`.
    GoAway { last_stream: u32, reason: Reason },
    /// The connection is over: write `output()`, then close. `error` is
    /// the client's fault we answered with GOAWAY, if any.
    Closed { error: Option<H2Error> },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum State {
    /// Waiting for the client preface; holds how many bytes matched.
    Preface(usize),
    /// Preface seen; the first frame must be SETTINGS.
    FirstSettings,
    Open,
    Closed,
}

/// A graceful stop (RFC 9113 6.8): first GOAWAY with the largest id and a
/// PING, then, when the PING comes back, GOAWAY with the real last id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Stopping {
    No,
    Announced,
    Final(u32),
}

/// Where the liveness check of a connection is (liveness.rs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Liveness {
    /// Nothing asked.
    Quiet,
    /// A PING went out at this time and has not come back.
    Asked(Instant),
}

/// A header block still taking CONTINUATION frames.
#[derive(Debug)]
pub(super) struct PartialBlock {
    pub stream: u32,
    pub end_stream: bool,
    pub self_dependent: bool,
    pub bytes: Vec<u8>,
}

/// What the client told us in its SETTINGS.
#[derive(Debug)]
pub(super) struct PeerSettings {
    pub initial_window: u32,
    pub max_frame: u32,
}

pub struct Connection {
    pub(super) settings: Settings,
    pub(super) state: State,
    pub(super) stopping: Stopping,
    pub(super) input: Vec<u8>,
    pub(super) out: Vec<u8>,
    pub(super) events: VecDeque<Event>,
    pub(super) decoder: Decoder,
    pub(super) encoder: Encoder,
    pub(super) block: Vec<u8>,
    /// A response field name, lower-cased.
    pub(super) lower: Vec<u8>,
    pub(super) partial: Option<PartialBlock>,
    pub(super) streams: HashMap<u32, Stream>,
    /// Recently closed streams, oldest first.
    pub(super) closed: VecDeque<(u32, ClosedBy)>,
    /// The highest stream id the client has opened.
    pub(super) last_stream: u32,
    pub(super) peer: PeerSettings,
    pub(super) send_window: i64,
    pub(super) recv_window: i64,
    pub(super) recv_unacked: u32,
    /// Streams with queued data and window to send it, in turn.
    pub(super) ready: VecDeque<u32>,
    pub(super) settings_acked: bool,
    pub(super) floods: Floods,
    pub(super) now: Instant,
    /// When bytes last came from the client.
    pub(super) last_recv: Instant,
    pub(super) liveness: Liveness,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("state", &self.state)
            .field("stopping", &self.stopping)
            .field("streams", &self.streams.len())
            .field("last_stream", &self.last_stream)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// A server connection expecting the client preface. Our SETTINGS are
    /// already in `output()` (RFC 9113 3.4: the server's preface).
    pub fn new(settings: Settings, now: Instant) -> Connection {
        let mut c = Connection {
            state: State::Preface(0),
            stopping: Stopping::No,
            input: Vec::new(),
            out: Vec::new(),
            events: VecDeque::new(),
            decoder: Decoder::new(HEADER_TABLE_SIZE),
            encoder: Encoder::new(),
            block: Vec::new(),
            lower: Vec::new(),
            partial: None,
            streams: HashMap::new(),
            closed: VecDeque::new(),
            last_stream: 0,
            peer: PeerSettings {
                initial_window: frame::DEFAULT_WINDOW,
                max_frame: frame::DEFAULT_MAX_FRAME_SIZE,
            },
            send_window: i64::from(frame::DEFAULT_WINDOW),
            recv_window: i64::from(frame::DEFAULT_WINDOW),
            recv_unacked: 0,
            ready: VecDeque::new(),
            settings_acked: false,
            floods: Floods::default(),
            now,
            last_recv: now,
            liveness: Liveness::Quiet,
            settings,
        };
        let s = &c.settings;
        let mut ours = vec![
            (setting::ENABLE_PUSH, 0),
            (setting::MAX_CONCURRENT_STREAMS, s.max_concurrent_streams),
            (setting::INITIAL_WINDOW_SIZE, s.initial_window_size),
            (setting::MAX_FRAME_SIZE, s.max_frame_size),
        ];
        if s.max_header_list_size > 0 {
            ours.push((setting::MAX_HEADER_LIST_SIZE, s.max_header_list_size));
        }
        frame::write_settings(&mut c.out, &ours);
        // The connection window is not a setting: raise it to match a
        // larger stream window, or one stream could never use its own.
        let target = c.conn_window_target();
        if target > i64::from(frame::DEFAULT_WINDOW) {
            let raise = target - c.recv_window;
            frame::write_window_update(&mut c.out, 0, raise as u32);
            c.recv_window = target;
        }
        c
    }

    pub(super) fn conn_window_target(&self) -> i64 {
        i64::from(self.settings.initial_window_size.max(frame::DEFAULT_WINDOW))
    }

    /// The window a new stream starts with: ours once the client has our
    /// SETTINGS, until then the larger of ours and the default it assumes.
    pub(super) fn stream_recv_window(&self) -> u32 {
        if self.settings_acked {
            self.settings.initial_window_size
        } else {
            self.settings.initial_window_size.max(frame::DEFAULT_WINDOW)
        }
    }

    pub(super) fn header_block_limit(&self) -> usize {
        match self.settings.max_header_list_size {
            0 => UNLIMITED_HEADER_BLOCK,
            n => n as usize,
        }
    }

    pub(super) fn list_size_limit(&self) -> usize {
        match self.settings.max_header_list_size {
            0 => usize::MAX,
            n => n as usize,
        }
    }

    /// Bytes received from the client, at `now`.
    pub fn feed(&mut self, data: &[u8], now: Instant) {
        self.now = now;
        if !data.is_empty() {
            self.last_recv = now;
        }
        if self.state == State::Closed {
            return;
        }
        if self.input.is_empty() {
            let used = self.process(data);
            if self.state != State::Closed {
                self.input.extend_from_slice(&data[used..]);
            }
        } else {
            self.input.extend_from_slice(data);
            let input = std::mem::take(&mut self.input);
            let used = self.process(&input);
            self.input = input;
            if self.state == State::Closed {
                self.input = Vec::new();
            } else {
                self.input.drain(..used);
            }
        }
        self.flush();
    }

    /// The next event, if any.
    pub fn poll(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Bytes to write to the client.
    pub fn output(&self) -> &[u8] {
        &self.out
    }

    /// `n` bytes of `output()` were written.
    pub fn consume_output(&mut self, n: usize) {
        if n >= self.out.len() {
            self.out.clear();
        } else {
            self.out.drain(..n);
        }
    }

    /// The connection has ended (error, or graceful stop with no stream
    /// left): close once `output()` is written.
    pub fn is_done(&self) -> bool {
        self.state == State::Closed
            || (matches!(self.stopping, Stopping::Final(_)) && self.streams.is_empty())
    }

    /// Streams open now (requests not yet fully answered).
    pub fn active_streams(&self) -> usize {
        self.streams.len()
    }

    /// Begin a graceful stop: GOAWAY with the largest stream id, then a
    /// PING; when the PING returns, the final GOAWAY names the last stream
    /// we will serve. Streams up to it are still served.
    pub fn shutdown(&mut self) {
        if self.state == State::Closed || self.stopping != Stopping::No {
            return;
        }
        // The PING goes first: some clients (Python's h2) refuse every frame
        // that follows a GOAWAY, a PING included, but answer one before it.
        frame::write_ping(&mut self.out, false, SHUTDOWN_PING);
        frame::write_goaway(&mut self.out, frame::MAX_STREAM_ID, Reason::NO_ERROR, b"");
        self.stopping = Stopping::Announced;
    }

    /// Send the final GOAWAY now (the PING did not come back in time).
    pub fn shutdown_now(&mut self) {
        if self.state == State::Closed || matches!(self.stopping, Stopping::Final(_)) {
            return;
        }
        frame::write_goaway(&mut self.out, self.last_stream, Reason::NO_ERROR, b"");
        self.stopping = Stopping::Final(self.last_stream);
    }

    /// The `n` bytes of a stream's `Data` were taken: give the credit back,
    /// in WINDOW_UPDATEs of at least half a window.
    pub fn release(&mut self, stream: u32, n: usize) {
        if self.state == State::Closed || n == 0 {
            return;
        }
        let n = n.min(frame::MAX_WINDOW as usize) as u32;
        self.credit_connection(n);
        let initial = i64::from(self.stream_recv_window());
        if let Some(s) = self.streams.get_mut(&stream) {
            if s.recv == Recv::Open {
                s.recv_unacked = s.recv_unacked.saturating_add(n);
                if i64::from(s.recv_unacked) >= (initial / 2).max(1) {
                    // Never past the initial window, whatever the caller says.
                    let increment = i64::from(s.recv_unacked).min(initial - s.recv_window);
                    if increment > 0 {
                        frame::write_window_update(&mut self.out, stream, increment as u32);
                        s.recv_window += increment;
                    }
                    s.recv_unacked = 0;
                }
            }
        }
    }

    pub(super) fn credit_connection(&mut self, n: u32) {
        self.recv_unacked = self.recv_unacked.saturating_add(n);
        let target = self.conn_window_target();
        if i64::from(self.recv_unacked) >= target / 2 {
            let increment = i64::from(self.recv_unacked).min(target - self.recv_window);
            if increment > 0 {
                frame::write_window_update(&mut self.out, 0, increment as u32);
                self.recv_window += increment;
            }
            self.recv_unacked = 0;
        }
    }

    /// Parse and act on as many whole frames as `buf` holds; the bytes used.
    fn process(&mut self, buf: &[u8]) -> usize {
        let mut at = 0;
        if let State::Preface(matched) = self.state {
            let want = &PREFACE[matched..];
            let n = want.len().min(buf.len());
            if buf[..n] != want[..n] {
                self.fail(H2Error::conn(
                    Reason::PROTOCOL_ERROR,
                    "invalid connection preface",
                ));
                return buf.len();
            }
            if n < want.len() {
                self.state = State::Preface(matched + n);
                return buf.len();
            }
            self.state = State::FirstSettings;
            at = n;
        }
        while self.state != State::Closed {
            let Some(head) = buf.get(at..at + HEADER_LEN) else {
                break;
            };
            let head = FrameHead::parse(head.try_into().expect("9 bytes"));
            if head.len > self.settings.max_frame_size {
                self.fail(H2Error::conn(
                    Reason::FRAME_SIZE_ERROR,
                    "frame larger than MAX_FRAME_SIZE",
                ));
                break;
            }
            let end = at + HEADER_LEN + head.len as usize;
            let Some(payload) = buf.get(at + HEADER_LEN..end) else {
                break;
            };
            at = end;
            if let Err(e) = self.on_frame(&head, payload) {
                match e {
                    H2Error::Connection { .. } => self.fail(e),
                    H2Error::Stream { stream, reason, .. } => {
                        self.reset_stream_for_error(stream, reason)
                    }
                }
            }
        }
        at
    }

    /// A connection error: GOAWAY with its reason, and nothing more after.
    pub(super) fn fail(&mut self, error: H2Error) {
        if self.state == State::Closed {
            return;
        }
        let detail = match &error {
            H2Error::Connection { detail, .. } | H2Error::Stream { detail, .. } => *detail,
        };
        frame::write_goaway(
            &mut self.out,
            self.last_stream,
            error.reason(),
            detail.as_bytes(),
        );
        self.state = State::Closed;
        self.streams.clear();
        self.ready.clear();
        self.events.push_back(Event::Closed { error: Some(error) });
    }

    /// Forget a stream, remembering who closed it.
    pub(super) fn close_stream(&mut self, id: u32, by: ClosedBy) -> Option<Stream> {
        if self.closed.len() == CLOSED_MEMORY {
            self.closed.pop_front();
        }
        self.closed.push_back((id, by));
        self.ready.retain(|&r| r != id);
        self.streams.remove(&id)
    }

    /// Who closed stream `id`, if it is remembered.
    pub(super) fn closed_by(&self, id: u32) -> Option<ClosedBy> {
        self.closed
            .iter()
            .rev()
            .find(|(c, _)| *c == id)
            .map(|&(_, by)| by)
    }

    /// Stream 1 of an h2c upgrade: its request came as HTTP/1.1.
    pub(super) fn adopt_upgraded_request(&mut self, head: Head) {
        let send_window = i64::from(self.peer.initial_window);
        let window = self.stream_recv_window();
        self.streams
            .insert(1, Stream::new(window, send_window, true));
        self.last_stream = 1;
        self.events.push_back(Event::Request {
            stream: 1,
            head,
            end_stream: true,
        });
    }

    pub(super) fn is_open(&self) -> bool {
        self.state != State::Closed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::h2::frame::{flag, kind};
    use crate::h2::testing::{frame, settings, Client, Out};
    use std::time::Duration;

    fn goaway_reason(c: &mut Client) -> Option<Reason> {
        let frames = c.frames();
        Client::goaway(&frames).map(Out::reason)
    }

    fn rst(frames: &[Out], stream: u32) -> Option<Reason> {
        frames
            .iter()
            .find(|f| f.kind == kind::RST_STREAM && f.stream == stream)
            .map(Out::reason)
    }

    #[test]
    fn get_becomes_a_request_head() {
        let mut c = Client::new();
        let bytes = c.get(1, "/hello?name=x");
        c.feed(&bytes);
        let events = c.events();
        let [Event::Request {
            stream: 1,
            head,
            end_stream: true,
        }] = &events[..]
        else {
            panic!("{events:?}")
        };
        assert_eq!(head.method(), b"GET");
        assert_eq!(head.path(), b"/hello");
        assert_eq!(head.query(), b"name=x");
        assert_eq!(head.version.as_str(), "HTTP/2.0");
        assert!(head
            .header_pairs()
            .any(|(n, v)| n == b"host" && v == b"example.com"));
    }

    #[test]
    fn ping_is_answered_and_settings_acknowledged() {
        let mut c = Client::new();
        let mut bytes = frame(kind::PING, 0, 0, b"12345678");
        bytes.extend(settings(&[(setting::HEADER_TABLE_SIZE, 0)]));
        c.feed(&bytes);
        let frames = c.frames();
        assert_eq!(frames[0].kind, kind::PING);
        assert_eq!(frames[0].flags, flag::ACK);
        assert_eq!(frames[0].payload, b"12345678");
        assert_eq!(
            (frames[1].kind, frames[1].flags),
            (kind::SETTINGS, flag::ACK)
        );
    }

    #[test]
    fn bad_preface_is_a_protocol_error() {
        let mut conn = Connection::new(Settings::default(), Instant::now());
        conn.feed(b"PRI * HTTP/2.0\r\n\r\nXX", Instant::now());
        assert!(conn.is_done());
        assert!(matches!(
            conn.poll(),
            Some(Event::Closed {
                error: Some(H2Error::Connection {
                    reason: Reason::PROTOCOL_ERROR,
                    ..
                })
            })
        ));
    }

    #[test]
    fn first_frame_must_be_settings() {
        let mut conn = Connection::new(Settings::default(), Instant::now());
        let mut bytes = PREFACE.to_vec();
        bytes.extend(frame(kind::PING, 0, 0, &[0; 8]));
        conn.feed(&bytes, Instant::now());
        assert!(conn.is_done());
    }

    #[test]
    fn push_promise_from_a_client_is_a_protocol_error() {
        let mut c = Client::new();
        c.feed(&frame(
            kind::PUSH_PROMISE,
            flag::END_HEADERS,
            1,
            &[0, 0, 0, 2, 0x82],
        ));
        assert_eq!(goaway_reason(&mut c), Some(Reason::PROTOCOL_ERROR));
    }

    #[test]
    fn oversized_frame_is_a_frame_size_error() {
        let mut c = Client::new();
        let mut bytes = Vec::new();
        frame::write_head(&mut bytes, 16_385, kind::DATA, 0, 1);
        c.feed(&bytes);
        assert_eq!(goaway_reason(&mut c), Some(Reason::FRAME_SIZE_ERROR));
        assert!(c.conn.is_done());
    }

    #[test]
    fn stream_ids_must_be_odd_and_increasing() {
        let mut c = Client::new();
        let b = c.get(2, "/");
        c.feed(&b);
        assert_eq!(goaway_reason(&mut c), Some(Reason::PROTOCOL_ERROR));

        let mut c = Client::new();
        let b = c.get(5, "/");
        c.feed(&b);
        let b = c.get(3, "/");
        c.feed(&b);
        assert_eq!(goaway_reason(&mut c), Some(Reason::PROTOCOL_ERROR));
    }

    #[test]
    fn the_last_stream_id_cannot_be_passed() {
        let mut c = Client::new();
        let b = c.get(frame::MAX_STREAM_ID, "/");
        c.feed(&b);
        assert!(matches!(
            c.events()[..],
            [Event::Request {
                stream: frame::MAX_STREAM_ID,
                ..
            }]
        ));
        // Ids wrap to 1 on the wire: below the last, so refused.
        let b = c.get(1, "/");
        c.feed(&b);
        assert_eq!(goaway_reason(&mut c), Some(Reason::PROTOCOL_ERROR));
    }

    #[test]
    fn streams_past_the_limit_are_refused() {
        let server = Settings {
            max_concurrent_streams: 2,
            ..Settings::default()
        };
        let mut c = Client::with(server, &[]);
        for id in [1, 3, 5] {
            let b = c.get(id, "/");
            c.feed(&b);
        }
        let frames = c.frames();
        assert_eq!(rst(&frames, 5), Some(Reason::REFUSED_STREAM));
        assert_eq!(c.events().len(), 2);
        // HPACK stayed in step: a later stream decodes fine once one ends.
        c.conn
            .send_response(1, 204, std::iter::empty(), true)
            .unwrap();
        let b = c.get(7, "/again");
        c.feed(&b);
        assert!(matches!(
            &c.events()[..],
            [Event::Request { stream: 7, .. }]
        ));
    }

    #[test]
    fn malformed_request_is_reset_and_connect_answered_501() {
        let mut c = Client::new();
        let b = c.headers(
            1,
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                ("X-Upper", "1"),
            ],
            true,
        );
        c.feed(&b);
        let frames = c.frames();
        assert_eq!(rst(&frames, 1), Some(Reason::PROTOCOL_ERROR));
        assert!(c.events().is_empty());

        let b = c.headers(
            3,
            &[(":method", "CONNECT"), (":authority", "example.com:443")],
            true,
        );
        c.feed(&b);
        let frames = c.frames();
        assert_eq!(frames[0].kind, kind::HEADERS);
        let fields = c.fields(&frames[0].payload);
        assert_eq!(fields[0], (":status".into(), "501".into()));
        assert!(c.events().is_empty());
    }

    #[test]
    fn body_arrives_as_data_and_credit_returns_on_release() {
        let mut c = Client::new();
        let b = c.headers(
            1,
            &[
                (":method", "POST"),
                (":scheme", "http"),
                (":path", "/"),
                ("content-length", "40000"),
            ],
            false,
        );
        c.feed(&b);
        c.feed(&frame(kind::DATA, 0, 1, &[b'a'; 16384]));
        c.feed(&frame(kind::DATA, 0, 1, &[b'b'; 16384]));
        c.feed(&frame(kind::DATA, flag::END_STREAM, 1, &[b'c'; 7232]));
        let events = c.events();
        assert_eq!(events.len(), 4);
        let Event::Data {
            data,
            end_stream: true,
            ..
        } = &events[3]
        else {
            panic!("{events:?}")
        };
        assert_eq!(data.len(), 7232);
        // Nothing returned until the consumer says it took the bytes.
        assert!(c.frames().is_empty());
        c.conn.release(1, 16384);
        assert!(c.frames().is_empty());
        c.conn.release(1, 16384);
        let frames = c.frames();
        // Half the connection window consumed: one connection update.
        assert_eq!(frames.len(), 1);
        assert_eq!((frames[0].kind, frames[0].stream), (kind::WINDOW_UPDATE, 0));
        assert_eq!(frames[0].payload, 32768u32.to_be_bytes());
    }

    #[test]
    fn releasing_more_than_was_sent_never_overfills_a_window() {
        let mut c = Client::new();
        let b = c.headers(
            1,
            &[(":method", "POST"), (":scheme", "http"), (":path", "/")],
            false,
        );
        c.feed(&b);
        c.feed(&frame(kind::DATA, 0, 1, &[0; 100]));
        c.conn.release(1, 1 << 30);
        let frames = c.frames();
        let increments: Vec<(u32, u32)> = frames
            .iter()
            .map(|f| {
                (
                    f.stream,
                    u32::from_be_bytes(f.payload[..4].try_into().unwrap()),
                )
            })
            .collect();
        assert_eq!(increments, [(0, 100), (1, 100)]);
    }

    #[test]
    fn stream_update_is_sent_while_the_body_is_still_coming() {
        let mut c = Client::new();
        let b = c.headers(
            1,
            &[(":method", "POST"), (":scheme", "http"), (":path", "/")],
            false,
        );
        c.feed(&b);
        c.feed(&frame(kind::DATA, 0, 1, &[0; 16384]));
        c.feed(&frame(kind::DATA, 0, 1, &[0; 16384]));
        c.conn.release(1, 32768);
        let frames = c.frames();
        let streams: Vec<u32> = frames.iter().map(|f| f.stream).collect();
        assert_eq!(streams, [0, 1]);
    }

    #[test]
    fn data_beyond_the_window_is_a_flow_control_error() {
        let mut c = Client::new();
        let b = c.headers(
            1,
            &[(":method", "POST"), (":scheme", "http"), (":path", "/")],
            false,
        );
        c.feed(&b);
        for _ in 0..3 {
            c.feed(&frame(kind::DATA, 0, 1, &[0; 16384]));
        }
        c.feed(&frame(kind::DATA, 0, 1, &[0; 16383]));
        assert!(c.frames().is_empty());
        c.feed(&frame(kind::DATA, 0, 1, &[0; 1]));
        assert_eq!(goaway_reason(&mut c), Some(Reason::FLOW_CONTROL_ERROR));
    }

    #[test]
    fn content_length_is_checked_against_data() {
        let mut c = Client::new();
        let post = [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/"),
            ("content-length", "3"),
        ];
        let b = c.headers(1, &post, false);
        c.feed(&b);
        c.feed(&frame(kind::DATA, 0, 1, b"abcd"));
        assert_eq!(rst(&c.frames(), 1), Some(Reason::PROTOCOL_ERROR));
        let b = c.headers(3, &post, false);
        c.feed(&b);
        c.feed(&frame(kind::DATA, flag::END_STREAM, 3, b"ab"));
        assert_eq!(rst(&c.frames(), 3), Some(Reason::PROTOCOL_ERROR));
        let b = c.headers(5, &post, true);
        c.feed(&b);
        assert_eq!(rst(&c.frames(), 5), Some(Reason::PROTOCOL_ERROR));
        let events = c.events();
        assert!(
            matches!(
                events[..],
                [
                    Event::Request { stream: 1, .. },
                    Event::Reset { stream: 1, .. },
                    Event::Request { stream: 3, .. },
                    Event::Reset { stream: 3, .. }
                ]
            ),
            "{events:?}"
        );
    }

    #[test]
    fn credit_of_refused_data_comes_back() {
        let mut c = Client::new();
        for id in [1, 3] {
            let b = c.headers(
                id,
                &[
                    (":method", "POST"),
                    (":scheme", "http"),
                    (":path", "/"),
                    ("content-length", "40000"),
                ],
                false,
            );
            c.feed(&b);
            c.feed(&frame(kind::DATA, flag::END_STREAM, id, &[0; 16_384]));
        }
        let frames = c.frames();
        assert_eq!(rst(&frames, 1), Some(Reason::PROTOCOL_ERROR));
        let update = frames
            .iter()
            .find(|f| f.kind == kind::WINDOW_UPDATE && f.stream == 0)
            .expect("the connection window is given back");
        assert_eq!(update.payload, 32_768u32.to_be_bytes());
    }

    #[test]
    fn trailers_end_the_request() {
        let mut c = Client::new();
        let b = c.headers(
            1,
            &[(":method", "POST"), (":scheme", "http"), (":path", "/")],
            false,
        );
        c.feed(&b);
        c.feed(&frame(kind::DATA, 0, 1, b"x"));
        let b = c.headers(1, &[("checksum", "abc")], true);
        c.feed(&b);
        let events = c.events();
        let Event::Trailers {
            stream: 1,
            trailers,
        } = &events[2]
        else {
            panic!("{events:?}")
        };
        assert_eq!(
            trailers.pairs().collect::<Vec<_>>(),
            [(&b"checksum"[..], &b"abc"[..])]
        );
        // Trailers with a pseudo-header are malformed.
        let b = c.headers(
            3,
            &[(":method", "POST"), (":scheme", "http"), (":path", "/")],
            false,
        );
        c.feed(&b);
        let b = c.headers(3, &[(":path", "/x")], true);
        c.feed(&b);
        assert_eq!(rst(&c.frames(), 3), Some(Reason::PROTOCOL_ERROR));
    }

    #[test]
    fn client_reset_is_an_event() {
        let mut c = Client::new();
        let b = c.get(1, "/");
        c.feed(&b);
        c.feed(&frame(
            kind::RST_STREAM,
            0,
            1,
            &Reason::CANCEL.0.to_be_bytes(),
        ));
        let events = c.events();
        assert!(matches!(
            events[1],
            Event::Reset {
                stream: 1,
                reason: Reason::CANCEL
            }
        ));
        assert_eq!(
            c.conn.send_response(1, 200, std::iter::empty(), true),
            Err(crate::h2::SendError::StreamGone)
        );
        // RST_STREAM on an idle stream is a connection error.
        c.feed(&frame(kind::RST_STREAM, 0, 9, &[0, 0, 0, 8]));
        assert_eq!(goaway_reason(&mut c), Some(Reason::PROTOCOL_ERROR));
    }

    #[test]
    fn rapid_reset_is_cut_off() {
        let mut c = Client::new();
        let mut id = 1;
        for _ in 0..crate::h2::flood::RESETS_PER_WINDOW {
            let mut b = c.get(id, "/");
            b.extend(frame(
                kind::RST_STREAM,
                0,
                id,
                &Reason::CANCEL.0.to_be_bytes(),
            ));
            c.feed(&b);
            id += 2;
        }
        assert_eq!(goaway_reason(&mut c), None);
        let mut b = c.get(id, "/");
        b.extend(frame(
            kind::RST_STREAM,
            0,
            id,
            &Reason::CANCEL.0.to_be_bytes(),
        ));
        c.feed(&b);
        assert_eq!(goaway_reason(&mut c), Some(Reason::ENHANCE_YOUR_CALM));
    }

    #[test]
    fn resets_spread_over_time_are_allowed() {
        let mut c = Client::new();
        let mut id = 1;
        for _ in 0..3 * crate::h2::flood::RESETS_PER_WINDOW {
            c.now += Duration::from_millis(100);
            let mut b = c.get(id, "/");
            b.extend(frame(
                kind::RST_STREAM,
                0,
                id,
                &Reason::CANCEL.0.to_be_bytes(),
            ));
            c.feed(&b);
            id += 2;
        }
        assert_eq!(goaway_reason(&mut c), None);
    }

    #[test]
    fn continuation_flood_is_cut_off_by_raw_size() {
        let mut c = Client::new();
        // A valid start, then CONTINUATION frames of literal bytes that
        // never end the block.
        let block = c.block(&[(":method", "GET"), (":scheme", "http"), (":path", "/")]);
        c.feed(&frame(kind::HEADERS, 0, 1, &block));
        let mut sent = block.len();
        while !c.conn.is_done() {
            c.feed(&frame(kind::CONTINUATION, 0, 1, &[0x40; 4096]));
            sent += 4096;
            assert!(sent <= 65_536 + 4096, "not cut off");
        }
        assert_eq!(goaway_reason(&mut c), Some(Reason::ENHANCE_YOUR_CALM));
        assert!(!c
            .events()
            .iter()
            .any(|e| matches!(e, Event::Request { .. })));
    }

    #[test]
    fn empty_continuation_flood_is_cut_off() {
        let mut c = Client::new();
        c.feed(&frame(kind::HEADERS, 0, 1, &[0x82]));
        for _ in 0..crate::h2::flood::EMPTY_PER_WINDOW + 1 {
            c.feed(&frame(kind::CONTINUATION, 0, 1, &[]));
        }
        assert_eq!(goaway_reason(&mut c), Some(Reason::ENHANCE_YOUR_CALM));
    }

    #[test]
    fn header_block_interrupted_is_a_protocol_error() {
        let mut c = Client::new();
        c.feed(&frame(kind::HEADERS, 0, 1, &[0x82]));
        c.feed(&frame(kind::PING, 0, 0, &[0; 8]));
        assert_eq!(goaway_reason(&mut c), Some(Reason::PROTOCOL_ERROR));
        let mut c = Client::new();
        c.feed(&frame(kind::CONTINUATION, flag::END_HEADERS, 1, &[0x82]));
        assert_eq!(goaway_reason(&mut c), Some(Reason::PROTOCOL_ERROR));
    }

    #[test]
    fn self_dependent_headers_reset_the_stream_and_keep_hpack_in_step() {
        let mut c = Client::new();
        let block = c.block(&[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            ("x-first", "indexed"),
        ]);
        let mut payload = vec![0, 0, 0, 1, 15];
        payload.extend(block);
        c.feed(&frame(
            kind::HEADERS,
            flag::PRIORITY | flag::END_HEADERS | flag::END_STREAM,
            1,
            &payload,
        ));
        assert_eq!(rst(&c.frames(), 1), Some(Reason::PROTOCOL_ERROR));
        c.events();
        // This block refers to the entry the refused one added.
        let b = c.headers(
            3,
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                ("x-first", "indexed"),
            ],
            true,
        );
        c.feed(&b);
        let events = c.events();
        let [Event::Request {
            stream: 3, head, ..
        }] = &events[..]
        else {
            panic!("{events:?}")
        };
        assert!(head
            .header_pairs()
            .any(|(n, v)| n == b"x-first" && v == b"indexed"));
    }

    #[test]
    fn hpack_bomb_is_answered_431() {
        let mut c = Client::new();
        // A 4000-byte field indexed once, then named again by one byte each.
        let mut block = c.block(&[(":method", "GET"), (":scheme", "http"), (":path", "/")]);
        block.extend(c.block(&[("x", &"a".repeat(4000))]));
        block.extend(std::iter::repeat_n(0xbe, 2000));
        c.feed(&frame(
            kind::HEADERS,
            flag::END_HEADERS | flag::END_STREAM,
            1,
            &block,
        ));
        let frames = c.frames();
        assert_eq!(frames[0].kind, kind::HEADERS);
        assert_eq!(
            c.fields(&frames[0].payload)[0],
            (":status".into(), "431".into())
        );
        assert!(c.events().is_empty());
        assert!(!c.conn.is_done());
    }

    #[test]
    fn table_size_update_above_ours_is_a_compression_error() {
        let mut c = Client::new();
        // 0x3f 0xe1 0x1f: size update to 4096 + 1 - 31 + ... = 4097.
        let mut block = Vec::new();
        crate::h2::hpack::tests_support::size_update(4097, &mut block);
        block.push(0x82);
        c.feed(&frame(
            kind::HEADERS,
            flag::END_HEADERS | flag::END_STREAM,
            1,
            &block,
        ));
        assert_eq!(goaway_reason(&mut c), Some(Reason::COMPRESSION_ERROR));
    }

    #[test]
    fn settings_and_ping_floods_are_cut_off() {
        let mut c = Client::new();
        for _ in 0..crate::h2::flood::ANSWERED_PER_WINDOW - 1 {
            c.feed(&frame(kind::PING, 0, 0, &[0; 8]));
        }
        assert_eq!(goaway_reason(&mut c), None);
        c.feed(&settings(&[]));
        assert_eq!(goaway_reason(&mut c), Some(Reason::ENHANCE_YOUR_CALM));
    }

    #[test]
    fn empty_data_flood_is_cut_off() {
        let mut c = Client::new();
        let b = c.headers(
            1,
            &[(":method", "POST"), (":scheme", "http"), (":path", "/")],
            false,
        );
        c.feed(&b);
        for _ in 0..=crate::h2::flood::EMPTY_PER_WINDOW {
            c.feed(&frame(kind::DATA, 0, 1, &[]));
        }
        assert_eq!(goaway_reason(&mut c), Some(Reason::ENHANCE_YOUR_CALM));
    }

    #[test]
    fn zero_window_updates_reset_the_stream_then_the_connection() {
        let mut c = Client::new();
        let mut id = 1;
        for _ in 0..crate::h2::flood::LOCAL_RESETS_PER_WINDOW {
            let mut b = c.get(id, "/");
            b.extend(frame(kind::WINDOW_UPDATE, 0, id, &[0; 4]));
            c.feed(&b);
            id += 2;
        }
        let frames = c.frames();
        assert_eq!(rst(&frames, 1), Some(Reason::PROTOCOL_ERROR));
        assert!(Client::goaway(&frames).is_none());
        let mut b = c.get(id, "/");
        b.extend(frame(kind::WINDOW_UPDATE, 0, id, &[0; 4]));
        c.feed(&b);
        assert_eq!(goaway_reason(&mut c), Some(Reason::ENHANCE_YOUR_CALM));
    }

    #[test]
    fn graceful_shutdown_has_two_phases() {
        let mut c = Client::new();
        let b = c.get(1, "/");
        c.feed(&b);
        c.conn.shutdown();
        let frames = c.frames();
        // The PING before the GOAWAY, in the same write.
        assert_eq!(
            (frames[0].kind, &frames[0].payload[..]),
            (kind::PING, &SHUTDOWN_PING[..])
        );
        assert_eq!(frames[1].kind, kind::GOAWAY);
        assert_eq!(frames[1].goaway_last(), frame::MAX_STREAM_ID);
        assert_eq!(frames[1].reason(), Reason::NO_ERROR);
        // A stream opened in flight is still served.
        let b = c.get(3, "/");
        c.feed(&b);
        c.feed(&frame(kind::PING, flag::ACK, 0, &SHUTDOWN_PING));
        let frames = c.frames();
        assert_eq!(frames[0].kind, kind::GOAWAY);
        assert_eq!(frames[0].goaway_last(), 3);
        // One after the final GOAWAY is not.
        let b = c.get(5, "/");
        c.feed(&b);
        let events = c.events();
        assert_eq!(events.len(), 2, "{events:?}");
        assert!(!c.conn.is_done());
        c.conn
            .send_response(1, 204, std::iter::empty(), true)
            .unwrap();
        c.conn
            .send_response(3, 204, std::iter::empty(), true)
            .unwrap();
        assert!(c.conn.is_done());
    }

    /// Feed `pieces` to a fresh connection: its events and output.
    fn run(pieces: &[&[u8]]) -> (String, Vec<u8>) {
        let now = Instant::now();
        let mut conn = Connection::new(Settings::default(), now);
        for p in pieces {
            conn.feed(p, now);
        }
        let events: Vec<_> = std::iter::from_fn(|| conn.poll()).collect();
        (format!("{events:?}"), conn.output().to_vec())
    }

    fn same_at_every_split(bytes: &[u8]) -> (String, Vec<u8>) {
        let whole = run(&[bytes]);
        for at in 0..=bytes.len() {
            let (a, b) = bytes.split_at(at);
            assert_eq!(run(&[a, b]), whole, "split at {at}");
        }
        let bytewise: Vec<&[u8]> = bytes.chunks(1).collect();
        assert_eq!(run(&bytewise), whole);
        whole
    }

    #[test]
    fn connection_error_is_the_same_at_every_split() {
        let mut client = Client::new();
        let mut bytes = PREFACE.to_vec();
        bytes.extend(settings(&[]));
        bytes.extend(client.get(1, "/"));
        bytes.extend(frame(kind::PING, 0, 1, &[0; 8]));
        bytes.extend(client.get(3, "/never"));
        let (events, out) = same_at_every_split(&bytes);
        assert!(events.contains("Request { stream: 1"), "{events}");
        assert!(!events.contains("stream: 3"), "{events}");
        assert!(events.ends_with("Closed { error: Some(Connection { reason: PROTOCOL_ERROR, detail: \"PING on a stream\" }) }]"), "{events}");
        // The GOAWAY (8 bytes and the 16-byte detail) comes last.
        assert_eq!(out[out.len() - 9 - 8 - 16 + 3], kind::GOAWAY);
    }

    /// A request exchange fed whole, then split in two at every offset:
    /// the same events every way.
    #[test]
    fn input_split_at_every_boundary_gives_the_same_events() {
        let mut script_client = Client::new();
        let mut bytes = PREFACE.to_vec();
        bytes.extend(settings(&[(setting::INITIAL_WINDOW_SIZE, 1 << 20)]));
        bytes.extend(script_client.headers(
            1,
            &[
                (":method", "POST"),
                (":scheme", "https"),
                (":path", "/upload"),
                (":authority", "a"),
                ("content-length", "5"),
            ],
            false,
        ));
        bytes.extend(frame(
            kind::DATA,
            flag::PADDED,
            1,
            &[3, b'h', b'e', 0, 0, 0],
        ));
        bytes.extend(frame(kind::PING, 0, 0, b"pingpong"));
        let block =
            script_client.block(&[(":method", "GET"), (":scheme", "https"), (":path", "/b")]);
        let (first, rest) = block.split_at(2);
        bytes.extend(frame(kind::HEADERS, flag::END_STREAM, 3, first));
        bytes.extend(frame(kind::CONTINUATION, flag::END_HEADERS, 3, rest));
        bytes.extend(frame(kind::DATA, flag::END_STREAM, 1, b"llo"));

        let whole = same_at_every_split(&bytes);
        assert!(whole.0.contains("Request { stream: 3"), "{}", whole.0);
        assert!(whole.0.contains("end_stream: true"), "{}", whole.0);
    }
}
