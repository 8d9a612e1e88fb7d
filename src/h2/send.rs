//! The response side of a connection: heads, body data within the stream
//! and connection windows, trailers, and resets from the application.
//!
//! Data that does not fit the windows is queued on its stream; `send_data`
//! says how much is left, and `Event::Writable` says when it has all gone,
//! so the caller holds back one stalled stream and keeps serving the rest.

use super::conn::{Connection, Event};
use super::error::Reason;
use super::frame;
use super::hpack::{Encoder, Indexing};
use super::request::is_connection_specific;
use super::stream::{ClosedBy, Recv, Send};

/// Why a response part was not sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SendError {
    /// The stream (or the connection) is gone, reset or closed: drop the
    /// response.
    StreamGone,
    /// Parts out of order (data before the head, anything after the end).
    OutOfOrder(&'static str),
}

/// How a response field may be kept in the client's table: credentials
/// never, values that change per response not at all.
fn indexing(name: &[u8], value: &[u8]) -> Indexing {
    match name {
        b"set-cookie" | b"authorization" | b"proxy-authorization" | b"cookie" => Indexing::Never,
        b"content-length" | b"etag" | b"last-modified" | b"content-range" | b"location"
        | b"age" | b"expires" => Indexing::Without,
        // A large value would flush the table for a single use.
        _ if value.len() > 256 => Indexing::Without,
        _ => Indexing::Incremental,
    }
}

fn encode_fields<'a>(
    encoder: &mut Encoder,
    block: &mut Vec<u8>,
    lower: &mut Vec<u8>,
    fields: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
) {
    for (name, value) in fields {
        lower.clear();
        lower.extend(name.iter().map(u8::to_ascii_lowercase));
        if is_connection_specific(lower) {
            continue;
        }
        encoder.encode(lower, value, indexing(lower, value), block);
    }
}

impl Connection {
    /// Send a response head. `fields` are (name, value) in any case; names
    /// are lower-cased and connection-specific fields (Connection,
    /// Transfer-Encoding, ...) left out, as HTTP/2 requires.
    pub fn send_response<'a>(
        &mut self,
        stream: u32,
        status: u16,
        fields: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
        end_stream: bool,
    ) -> Result<(), SendError> {
        if !self.is_open() {
            return Err(SendError::StreamGone);
        }
        let s = self.streams.get_mut(&stream).ok_or(SendError::StreamGone)?;
        if s.send != Send::Idle {
            return Err(SendError::OutOfOrder("response head already sent"));
        }
        s.send = Send::Open;
        self.write_head(stream, status, fields, end_stream);
        if end_stream {
            self.end_sent(stream);
        }
        Ok(())
    }

    /// Send an informational head (1xx, such as `103 Early Hints`) before
    /// the response: a HEADERS frame without END_STREAM that leaves the
    /// stream waiting for its final head (RFC 9113 8.1).
    pub fn send_informational<'a>(
        &mut self,
        stream: u32,
        status: u16,
        fields: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    ) -> Result<(), SendError> {
        if !(100..200).contains(&status) || status == 101 {
            return Err(SendError::OutOfOrder("not an informational status"));
        }
        if !self.is_open() {
            return Err(SendError::StreamGone);
        }
        let s = self.streams.get(&stream).ok_or(SendError::StreamGone)?;
        if s.send != Send::Idle {
            return Err(SendError::OutOfOrder("response head already sent"));
        }
        self.write_head(stream, status, fields, false);
        Ok(())
    }

    /// A head's HEADERS (and CONTINUATION) frames, encoded now.
    fn write_head<'a>(
        &mut self,
        stream: u32,
        status: u16,
        fields: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
        end_stream: bool,
    ) {
        let mut block = std::mem::take(&mut self.block);
        block.clear();
        self.encoder.start_block(&mut block);
        let mut digits = [0u8; 3];
        let status = status.min(999);
        digits[0] = b'0' + (status / 100) as u8;
        digits[1] = b'0' + (status / 10 % 10) as u8;
        digits[2] = b'0' + (status % 10) as u8;
        self.encoder
            .encode(b":status", &digits, Indexing::Incremental, &mut block);
        encode_fields(&mut self.encoder, &mut block, &mut self.lower, fields);
        frame::write_headers(
            &mut self.out,
            stream,
            &block,
            end_stream,
            self.peer.max_frame as usize,
        );
        self.block = block;
    }

    /// Send body bytes (and END_STREAM with the last). What the windows
    /// allow goes out now; the rest is queued. Returns the bytes still
    /// queued on the stream: when not 0, wait for `Event::Writable`.
    pub fn send_data(
        &mut self,
        stream: u32,
        data: &[u8],
        end_stream: bool,
    ) -> Result<usize, SendError> {
        if !self.is_open() {
            return Err(SendError::StreamGone);
        }
        let s = self.streams.get_mut(&stream).ok_or(SendError::StreamGone)?;
        match s.send {
            Send::Idle => return Err(SendError::OutOfOrder("data before the response head")),
            Send::Closed => return Err(SendError::OutOfOrder("data after the end")),
            Send::Open if s.end_queued => {
                return Err(SendError::OutOfOrder("data after the end"));
            }
            Send::Open => {}
        }
        let mut data = data;
        if s.pending() == 0 && self.ready.is_empty() {
            // Nothing waits before this data (after a flush, only streams
            // stalled on the connection window stay ready): frame what
            // fits straight from the caller's slice, queue only the rest.
            let max_frame = self.peer.max_frame as usize;
            let mut room = s.send_window.min(self.send_window).max(0) as usize;
            while !data.is_empty() && room > 0 {
                let n = data.len().min(room).min(max_frame);
                let end = end_stream && n == data.len() && s.trailers.is_none();
                frame::write_data(&mut self.out, stream, &data[..n], end);
                s.send_window -= n as i64;
                self.send_window -= n as i64;
                room -= n;
                data = &data[n..];
                if end {
                    self.end_sent(stream);
                    return Ok(0);
                }
            }
        }
        s.queued.extend_from_slice(data);
        s.end_queued = end_stream;
        if !self.ready.contains(&stream) {
            self.ready.push_back(stream);
        }
        self.flush();
        Ok(self.note_queued(stream))
    }

    /// End the response with trailers (after any queued data).
    pub fn send_trailers<'a>(
        &mut self,
        stream: u32,
        fields: impl IntoIterator<Item = (&'a [u8], &'a [u8])>,
    ) -> Result<usize, SendError> {
        if !self.is_open() {
            return Err(SendError::StreamGone);
        }
        let s = self.streams.get_mut(&stream).ok_or(SendError::StreamGone)?;
        if s.send != Send::Open || s.end_queued {
            return Err(SendError::OutOfOrder("trailers outside a response body"));
        }
        // Encoded when they go out: HPACK blocks must reach the client in
        // the order they were encoded.
        let owned = fields
            .into_iter()
            .map(|(n, v)| (n.to_vec(), v.to_vec()))
            .collect();
        s.trailers = Some(owned);
        s.end_queued = true;
        if !self.ready.contains(&stream) {
            self.ready.push_back(stream);
        }
        self.flush();
        Ok(self.note_queued(stream))
    }

    /// Abandon a response (the application failed): RST_STREAM.
    pub fn reset(&mut self, stream: u32, reason: Reason) {
        if !self.is_open() {
            return;
        }
        if self.close_stream(stream, ClosedBy::Us).is_some() {
            frame::write_rst_stream(&mut self.out, stream, reason);
        }
    }

    /// Bytes still queued on a stream (0 when it is gone).
    pub fn queued(&self, stream: u32) -> usize {
        self.streams.get(&stream).map_or(0, |s| s.pending())
    }

    fn note_queued(&mut self, stream: u32) -> usize {
        match self.streams.get_mut(&stream) {
            Some(s) if s.pending() > 0 => {
                s.notify_writable = true;
                s.pending()
            }
            _ => 0,
        }
    }

    /// END_STREAM went out on `stream`.
    fn end_sent(&mut self, stream: u32) {
        let Some(s) = self.streams.get_mut(&stream) else {
            return;
        };
        s.send = Send::Closed;
        if s.recv == Recv::Open {
            // The response is complete before the request (RFC 9113 8.1):
            // ask the client to stop sending.
            frame::write_rst_stream(&mut self.out, stream, Reason::NO_ERROR);
            self.close_stream(stream, ClosedBy::Us);
        } else {
            self.close_stream(stream, ClosedBy::Peer);
        }
    }

    /// Move queued response data into the output, in turns of at most one
    /// frame per stream, within the windows.
    pub(super) fn flush(&mut self) {
        while let Some(id) = self.ready.pop_front() {
            let max_frame = self.peer.max_frame as i64;
            let Some(s) = self.streams.get_mut(&id) else {
                continue;
            };
            let pending = s.pending();
            if pending > 0 {
                if self.send_window <= 0 {
                    self.ready.push_front(id);
                    break;
                }
                if s.send_window <= 0 {
                    // Back in turn when its WINDOW_UPDATE comes.
                    continue;
                }
                let n = (pending as i64)
                    .min(s.send_window)
                    .min(self.send_window)
                    .min(max_frame) as usize;
                let last = n == pending;
                let end = last && s.end_queued && s.trailers.is_none();
                frame::write_data(&mut self.out, id, &s.queued[s.sent..s.sent + n], end);
                s.sent += n;
                s.send_window -= n as i64;
                self.send_window -= n as i64;
                if !last {
                    self.ready.push_back(id);
                    continue;
                }
                s.queued.clear();
                s.sent = 0;
                if end {
                    self.end_sent(id);
                    continue;
                }
                if s.notify_writable {
                    s.notify_writable = false;
                    self.events.push_back(Event::Writable { stream: id });
                }
            }
            if !s.end_queued || s.send != Send::Open {
                continue;
            }
            match s.trailers.take() {
                Some(trailers) => {
                    let mut block = std::mem::take(&mut self.block);
                    block.clear();
                    self.encoder.start_block(&mut block);
                    let fields = trailers.iter().map(|(n, v)| (&n[..], &v[..]));
                    encode_fields(&mut self.encoder, &mut block, &mut self.lower, fields);
                    frame::write_headers(&mut self.out, id, &block, true, max_frame as usize);
                    self.block = block;
                }
                None => frame::write_data(&mut self.out, id, &[], true),
            }
            self.end_sent(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::h2::frame::{flag, kind, setting};
    use crate::h2::testing::{frame, settings, Client};

    fn window_update(stream: u32, n: u32) -> Vec<u8> {
        frame(kind::WINDOW_UPDATE, 0, stream, &n.to_be_bytes())
    }

    #[test]
    fn hello_response_is_headers_and_data() {
        let mut c = Client::new();
        let b = c.get(1, "/");
        c.feed(&b);
        let fields = [
            (&b"Content-Type"[..], &b"text/plain"[..]),
            (b"Connection", b"keep-alive"),
            (b"Transfer-Encoding", b"chunked"),
            (b"Content-Length", b"5"),
        ];
        c.conn.send_response(1, 200, fields, false).unwrap();
        assert_eq!(c.conn.send_data(1, b"hello", true), Ok(0));
        let frames = c.frames();
        assert_eq!(frames.len(), 2);
        assert_eq!(
            (frames[0].kind, frames[0].flags),
            (kind::HEADERS, flag::END_HEADERS)
        );
        assert_eq!(
            c.fields(&frames[0].payload),
            [
                (":status".to_string(), "200".to_string()),
                ("content-type".into(), "text/plain".into()),
                ("content-length".into(), "5".into()),
            ]
        );
        assert_eq!(
            frames[0].payload[0], 0x88,
            ":status 200 from the static table"
        );
        assert_eq!(
            (frames[1].kind, frames[1].flags),
            (kind::DATA, flag::END_STREAM)
        );
        assert_eq!(frames[1].payload, b"hello");
        assert_eq!(c.conn.active_streams(), 0);
        assert_eq!(
            c.conn.send_data(1, b"more", true),
            Err(SendError::StreamGone)
        );
    }

    #[test]
    fn an_informational_head_leaves_the_stream_waiting_for_its_response() {
        let mut c = Client::new();
        let b = c.get(1, "/");
        c.feed(&b);
        let link = [(&b"Link"[..], &b"</a.css>; rel=preload"[..])];
        c.conn.send_informational(1, 103, link).unwrap();
        c.conn.send_informational(1, 103, link).unwrap();
        c.conn
            .send_response(1, 200, std::iter::empty(), true)
            .unwrap();
        let frames = c.frames();
        let flags: Vec<u8> = frames.iter().map(|f| f.flags).collect();
        assert_eq!(
            flags,
            [
                flag::END_HEADERS,
                flag::END_HEADERS,
                flag::END_HEADERS | flag::END_STREAM
            ]
        );
        assert_eq!(
            c.fields(&frames[0].payload),
            [
                (":status".to_string(), "103".to_string()),
                ("link".into(), "</a.css>; rel=preload".into()),
            ]
        );
        assert_eq!(c.fields(&frames[2].payload)[0].1, "200");
        // After the head, or for a final status, it is refused.
        assert!(matches!(
            c.conn.send_informational(1, 103, std::iter::empty()),
            Err(SendError::StreamGone)
        ));
        let b = c.get(3, "/");
        c.feed(&b);
        for status in [101, 200, 99] {
            assert!(matches!(
                c.conn.send_informational(3, status, std::iter::empty()),
                Err(SendError::OutOfOrder(_))
            ));
        }
        assert!(c.frames().is_empty());
    }

    #[test]
    fn parts_out_of_order_are_refused() {
        let mut c = Client::new();
        let b = c.get(1, "/");
        c.feed(&b);
        assert!(matches!(
            c.conn.send_data(1, b"x", false),
            Err(SendError::OutOfOrder(_))
        ));
        c.conn
            .send_response(1, 200, std::iter::empty(), false)
            .unwrap();
        assert!(matches!(
            c.conn.send_response(1, 200, std::iter::empty(), false),
            Err(SendError::OutOfOrder(_))
        ));
    }

    #[test]
    fn body_beyond_the_window_waits_for_window_update() {
        let mut c = Client::new();
        let b = c.get(1, "/big");
        c.feed(&b);
        c.conn
            .send_response(1, 200, std::iter::empty(), false)
            .unwrap();
        let body = vec![7u8; 100_000];
        let queued = c.conn.send_data(1, &body, true).unwrap();
        assert_eq!(queued, 100_000 - 65_535);
        let frames = c.frames();
        let sent: usize = frames
            .iter()
            .filter(|f| f.kind == kind::DATA)
            .map(|f| f.payload.len())
            .sum();
        assert_eq!(sent, 65_535);
        assert!(frames.iter().all(|f| f.payload.len() <= 16_384));
        assert!(frames.iter().all(|f| f.flags & flag::END_STREAM == 0));
        // The stream window alone is not enough: the connection's is spent too.
        let mut bytes = window_update(1, 100_000);
        c.feed(&bytes);
        assert!(c.frames().is_empty());
        bytes = window_update(0, 100_000);
        c.feed(&bytes);
        let frames = c.frames();
        let sent: usize = frames.iter().map(|f| f.payload.len()).sum();
        assert_eq!(sent, 100_000 - 65_535);
        assert_eq!(frames.last().unwrap().flags, flag::END_STREAM);
        // The stream ended, so no Writable: the caller is done with it.
        assert!(c
            .events()
            .iter()
            .all(|e| !matches!(e, Event::Writable { .. })));
    }

    #[test]
    fn writable_comes_when_the_queue_drains() {
        let mut c = Client::with(Default::default(), &[(setting::INITIAL_WINDOW_SIZE, 10)]);
        let b = c.get(1, "/");
        c.feed(&b);
        c.events();
        c.conn
            .send_response(1, 200, std::iter::empty(), false)
            .unwrap();
        assert_eq!(c.conn.send_data(1, &[1; 25], false), Ok(15));
        c.feed(&window_update(1, 10));
        assert!(c.events().is_empty());
        assert_eq!(c.conn.queued(1), 5);
        c.feed(&window_update(1, 10));
        assert!(matches!(c.events()[..], [Event::Writable { stream: 1 }]));
        assert_eq!(c.conn.queued(1), 0);
    }

    #[test]
    fn a_stalled_stream_does_not_block_the_others() {
        let mut c = Client::with(Default::default(), &[(setting::INITIAL_WINDOW_SIZE, 100)]);
        let b = c.get(1, "/slow");
        c.feed(&b);
        let b = c.get(3, "/fast");
        c.feed(&b);
        c.frames();
        c.conn
            .send_response(1, 200, std::iter::empty(), false)
            .unwrap();
        assert_eq!(c.conn.send_data(1, &[1; 1000], true), Ok(900));
        c.conn
            .send_response(3, 200, std::iter::empty(), false)
            .unwrap();
        assert_eq!(c.conn.send_data(3, b"quick", true), Ok(0));
        let frames = c.frames();
        let fast = frames
            .iter()
            .find(|f| f.kind == kind::DATA && f.stream == 3)
            .unwrap();
        assert_eq!(
            (fast.payload.as_slice(), fast.flags),
            (&b"quick"[..], flag::END_STREAM)
        );
    }

    #[test]
    fn window_shrunk_by_settings_can_go_negative() {
        let mut c = Client::new();
        let b = c.get(1, "/");
        c.feed(&b);
        c.conn
            .send_response(1, 200, std::iter::empty(), false)
            .unwrap();
        c.conn.send_data(1, &[0; 1000], false).unwrap();
        c.frames();
        // 1000 sent of 65535; the window drops to 500 - 1000 = -500.
        c.feed(&settings(&[(setting::INITIAL_WINDOW_SIZE, 500)]));
        assert_eq!(c.conn.send_data(1, &[0; 10], false), Ok(10));
        c.feed(&window_update(1, 505));
        let frames = c.frames();
        assert_eq!(
            frames
                .iter()
                .filter(|f| f.kind == kind::DATA)
                .map(|f| f.payload.len())
                .sum::<usize>(),
            5
        );
    }

    #[test]
    fn large_head_is_split_into_continuation() {
        let mut c = Client::new();
        let b = c.get(1, "/");
        c.feed(&b);
        let big = vec![b'v'; 40_000];
        c.conn
            .send_response(1, 200, [(&b"x-big"[..], &big[..])], true)
            .unwrap();
        let frames = c.frames();
        let kinds: Vec<u8> = frames.iter().map(|f| f.kind).collect();
        assert_eq!(
            kinds,
            [kind::HEADERS, kind::CONTINUATION, kind::CONTINUATION]
        );
        assert_eq!(frames[0].flags, flag::END_STREAM);
        assert_eq!(frames[2].flags, flag::END_HEADERS);
        let block: Vec<u8> = frames.iter().flat_map(|f| f.payload.clone()).collect();
        let fields = c.fields(&block);
        assert_eq!(fields[1].1.len(), 40_000);
    }

    #[test]
    fn trailers_follow_queued_data_in_hpack_order() {
        let mut c = Client::with(Default::default(), &[(setting::INITIAL_WINDOW_SIZE, 4)]);
        let b = c.get(1, "/");
        c.feed(&b);
        let b = c.get(3, "/");
        c.feed(&b);
        c.frames();
        c.conn
            .send_response(1, 200, std::iter::empty(), false)
            .unwrap();
        assert_eq!(c.conn.send_data(1, b"12345678", false), Ok(4));
        assert_eq!(
            c.conn.send_trailers(1, [(&b"grpc-status"[..], &b"0"[..])]),
            Ok(4)
        );
        // Another stream's head, with the same field, is encoded before the
        // trailers go out: encoded early, they would have added it to the
        // table first and this head would refer to an entry the client
        // does not have yet.
        c.conn
            .send_response(3, 200, [(&b"grpc-status"[..], &b"0"[..])], true)
            .unwrap();
        c.feed(&window_update(1, 4));
        let frames = c.frames();
        let heads: Vec<_> = frames
            .iter()
            .filter(|f| f.kind == kind::HEADERS)
            .cloned()
            .collect();
        // Decoded in wire order, every block reads right only if the
        // encoder followed that order.
        let decoded: Vec<_> = heads
            .iter()
            .map(|h| (h.stream, c.fields(&h.payload)))
            .collect();
        let pair = |n: &str, v: &str| (n.to_string(), v.to_string());
        assert_eq!(
            decoded,
            [
                (1, vec![pair(":status", "200")]),
                (3, vec![pair(":status", "200"), pair("grpc-status", "0")]),
                (1, vec![pair("grpc-status", "0")]),
            ]
        );
        let last = frames.last().unwrap();
        assert_eq!(
            (last.kind, last.stream, last.flags),
            (kind::HEADERS, 1, flag::END_STREAM | flag::END_HEADERS)
        );
    }

    #[test]
    fn early_response_resets_the_unfinished_request() {
        let mut c = Client::new();
        let b = c.headers(
            1,
            &[(":method", "POST"), (":scheme", "http"), (":path", "/")],
            false,
        );
        c.feed(&b);
        c.conn
            .send_response(1, 413, std::iter::empty(), true)
            .unwrap();
        let frames = c.frames();
        assert_eq!(frames[1].kind, kind::RST_STREAM);
        assert_eq!(frames[1].reason(), Reason::NO_ERROR);
        // Its late DATA is ignored, but its credit still comes back.
        for _ in 0..3 {
            c.feed(&frame(kind::DATA, 0, 1, &[0; 16_384]));
        }
        let frames = c.frames();
        assert_eq!(frames.len(), 1);
        assert_eq!((frames[0].kind, frames[0].stream), (kind::WINDOW_UPDATE, 0));
    }

    #[test]
    fn late_trailers_after_an_early_response_are_ignored() {
        let mut c = Client::new();
        let b = c.headers(
            1,
            &[(":method", "POST"), (":scheme", "http"), (":path", "/")],
            false,
        );
        c.feed(&b);
        c.conn
            .send_response(1, 413, std::iter::empty(), true)
            .unwrap();
        c.frames();
        // Trailers the client sent before it saw our RST_STREAM.
        let b = c.headers(1, &[("x-late", "1")], true);
        c.feed(&b);
        assert!(c.frames().is_empty());
        // HPACK is still in step: the next block refers to x-late.
        let b = c.headers(
            3,
            &[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                ("x-late", "1"),
            ],
            true,
        );
        c.feed(&b);
        let events = c.events();
        assert!(
            matches!(events.last(), Some(Event::Request { stream: 3, .. })),
            "{events:?}"
        );
    }

    #[test]
    fn frames_on_streams_the_client_closed_are_errors() {
        let mut c = Client::new();
        let b = c.headers(
            1,
            &[(":method", "POST"), (":scheme", "http"), (":path", "/")],
            false,
        );
        c.feed(&b);
        c.feed(&frame(
            kind::RST_STREAM,
            0,
            1,
            &Reason::CANCEL.0.to_be_bytes(),
        ));
        c.feed(&frame(kind::DATA, 0, 1, b"x"));
        let frames = c.frames();
        assert_eq!(frames[0].kind, kind::RST_STREAM);
        assert_eq!(frames[0].reason(), Reason::STREAM_CLOSED);

        let b = c.get(3, "/");
        c.feed(&b);
        c.conn
            .send_response(3, 204, std::iter::empty(), true)
            .unwrap();
        c.frames();
        let b = c.get(3, "/again");
        c.feed(&b);
        let frames = c.frames();
        let goaway = Client::goaway(&frames).expect("a connection error");
        assert_eq!(goaway.reason(), Reason::STREAM_CLOSED);
    }

    #[test]
    fn application_reset_sends_rst_stream() {
        let mut c = Client::new();
        let b = c.get(1, "/");
        c.feed(&b);
        c.conn.reset(1, Reason::INTERNAL_ERROR);
        let frames = c.frames();
        assert_eq!(
            (frames[0].kind, frames[0].reason()),
            (kind::RST_STREAM, Reason::INTERNAL_ERROR)
        );
        assert_eq!(c.conn.active_streams(), 0);
    }
}
