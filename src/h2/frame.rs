//! HTTP/2 frames (RFC 9113 4 and 6): the 9-byte header, each type's payload
//! checked and borrowed from the input, and the frames a server writes.

use super::error::{H2Error, Reason};

/// The connection preface a client sends first (RFC 9113 3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pub const HEADER_LEN: usize = 9;
/// The highest stream id, and the highest window (2^31 - 1).
pub const MAX_STREAM_ID: u32 = (1 << 31) - 1;
pub const MAX_WINDOW: u32 = (1 << 31) - 1;
/// SETTINGS_MAX_FRAME_SIZE's default and smallest value, and its largest.
pub const DEFAULT_MAX_FRAME_SIZE: u32 = 1 << 14;
pub const MAX_MAX_FRAME_SIZE: u32 = (1 << 24) - 1;
/// The initial window of every stream and of the connection (RFC 9113 6.9.2).
pub const DEFAULT_WINDOW: u32 = 65_535;

pub mod kind {
    pub const DATA: u8 = 0x0;
    pub const HEADERS: u8 = 0x1;
    pub const PRIORITY: u8 = 0x2;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const PUSH_PROMISE: u8 = 0x5;
    pub const PING: u8 = 0x6;
    pub const GOAWAY: u8 = 0x7;
    pub const WINDOW_UPDATE: u8 = 0x8;
    pub const CONTINUATION: u8 = 0x9;
}

pub mod flag {
    pub const END_STREAM: u8 = 0x1;
    pub const ACK: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const PADDED: u8 = 0x8;
    pub const PRIORITY: u8 = 0x20;
}

pub mod setting {
    pub const HEADER_TABLE_SIZE: u16 = 0x1;
    pub const ENABLE_PUSH: u16 = 0x2;
    pub const MAX_CONCURRENT_STREAMS: u16 = 0x3;
    pub const INITIAL_WINDOW_SIZE: u16 = 0x4;
    pub const MAX_FRAME_SIZE: u16 = 0x5;
    pub const MAX_HEADER_LIST_SIZE: u16 = 0x6;
}

/// The 9-byte frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHead {
    pub len: u32,
    pub kind: u8,
    pub flags: u8,
    /// The stream id, reserved bit dropped.
    pub stream: u32,
}

impl FrameHead {
    pub fn parse(b: &[u8; HEADER_LEN]) -> FrameHead {
        FrameHead {
            len: u32::from_be_bytes([0, b[0], b[1], b[2]]),
            kind: b[3],
            flags: b[4],
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & MAX_STREAM_ID,
        }
    }

    fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// A stream dependency (RFC 9113 5.3.2, deprecated): parsed for its
/// checks, otherwise ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Priority {
    pub depends_on: u32,
    pub exclusive: bool,
    pub weight: u8,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    Data {
        stream: u32,
        data: &'a [u8],
        end_stream: bool,
        /// The whole payload, padding included: what flow control counts.
        flow_len: u32,
    },
    Headers {
        stream: u32,
        block: &'a [u8],
        end_stream: bool,
        end_headers: bool,
        /// The stream depends on itself: a stream error (RFC 9113 5.3.1),
        /// raised once the block is decoded, so HPACK stays in step.
        self_dependent: bool,
    },
    Priority {
        stream: u32,
    },
    RstStream {
        stream: u32,
        reason: Reason,
    },
    Settings(Settings<'a>),
    SettingsAck,
    Ping {
        ack: bool,
        data: [u8; 8],
    },
    GoAway {
        last_stream: u32,
        reason: Reason,
    },
    WindowUpdate {
        stream: u32,
        increment: u32,
    },
    Continuation {
        stream: u32,
        block: &'a [u8],
        end_headers: bool,
    },
    /// A type this version does not know: ignored (RFC 9113 4.1).
    Unknown,
}

/// A SETTINGS payload, checked: iterate for (id, value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings<'a>(&'a [u8]);

impl<'a> Settings<'a> {
    pub fn iter(&self) -> impl Iterator<Item = (u16, u32)> + 'a {
        self.0.chunks_exact(6).map(|c| {
            (
                u16::from_be_bytes([c[0], c[1]]),
                u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
            )
        })
    }
}

fn conn(reason: Reason, detail: &'static str) -> H2Error {
    H2Error::conn(reason, detail)
}

/// Strip padding (RFC 9113 6.1, 6.2): pad length at least the rest of the
/// payload is a PROTOCOL_ERROR.
fn unpad<'a>(head: &FrameHead, payload: &'a [u8]) -> Result<&'a [u8], H2Error> {
    if !head.has(flag::PADDED) {
        return Ok(payload);
    }
    let (&pad, rest) = payload.split_first().ok_or(conn(
        Reason::FRAME_SIZE_ERROR,
        "padded frame without a pad length",
    ))?;
    let pad = usize::from(pad);
    if pad >= payload.len() {
        return Err(conn(Reason::PROTOCOL_ERROR, "padding exceeds the payload"));
    }
    Ok(&rest[..rest.len() - pad])
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn priority(stream: u32, b: &[u8]) -> Result<Priority, H2Error> {
    let raw = be32(b);
    let p = Priority {
        depends_on: raw & MAX_STREAM_ID,
        exclusive: raw >> 31 == 1,
        weight: b[4],
    };
    if p.depends_on == stream {
        return Err(H2Error::stream(
            stream,
            Reason::PROTOCOL_ERROR,
            "stream depends on itself",
        ));
    }
    Ok(p)
}

/// Parse one frame whose header is `head` and whose payload (exactly
/// `head.len` bytes) is `payload`. The caller has checked `head.len`
/// against our SETTINGS_MAX_FRAME_SIZE. PUSH_PROMISE is refused: a client
/// may not send one (RFC 9113 8.4).
pub fn parse<'a>(head: &FrameHead, payload: &'a [u8]) -> Result<Frame<'a>, H2Error> {
    debug_assert_eq!(payload.len(), head.len as usize);
    let stream = head.stream;
    let on_stream = |detail| {
        if stream == 0 {
            Err(conn(Reason::PROTOCOL_ERROR, detail))
        } else {
            Ok(())
        }
    };
    let on_conn = |detail| {
        if stream != 0 {
            Err(conn(Reason::PROTOCOL_ERROR, detail))
        } else {
            Ok(())
        }
    };
    Ok(match head.kind {
        kind::DATA => {
            on_stream("DATA on stream 0")?;
            Frame::Data {
                stream,
                data: unpad(head, payload)?,
                end_stream: head.has(flag::END_STREAM),
                flow_len: head.len,
            }
        }
        kind::HEADERS => {
            on_stream("HEADERS on stream 0")?;
            let mut block = unpad(head, payload)?;
            let mut self_dependent = false;
            if head.has(flag::PRIORITY) {
                if block.len() < 5 {
                    return Err(conn(
                        Reason::FRAME_SIZE_ERROR,
                        "HEADERS too short for priority",
                    ));
                }
                self_dependent = priority(stream, block).is_err();
                block = &block[5..];
            }
            Frame::Headers {
                stream,
                block,
                end_stream: head.has(flag::END_STREAM),
                end_headers: head.has(flag::END_HEADERS),
                self_dependent,
            }
        }
        kind::PRIORITY => {
            on_stream("PRIORITY on stream 0")?;
            if payload.len() != 5 {
                return Err(H2Error::stream(
                    stream,
                    Reason::FRAME_SIZE_ERROR,
                    "PRIORITY is not 5 bytes",
                ));
            }
            priority(stream, payload)?;
            Frame::Priority { stream }
        }
        kind::RST_STREAM => {
            on_stream("RST_STREAM on stream 0")?;
            if payload.len() != 4 {
                return Err(conn(Reason::FRAME_SIZE_ERROR, "RST_STREAM is not 4 bytes"));
            }
            Frame::RstStream {
                stream,
                reason: Reason(be32(payload)),
            }
        }
        kind::SETTINGS => {
            on_conn("SETTINGS on a stream")?;
            if head.has(flag::ACK) {
                if !payload.is_empty() {
                    return Err(conn(
                        Reason::FRAME_SIZE_ERROR,
                        "SETTINGS ACK with a payload",
                    ));
                }
                return Ok(Frame::SettingsAck);
            }
            if payload.len() % 6 != 0 {
                return Err(conn(
                    Reason::FRAME_SIZE_ERROR,
                    "SETTINGS not a multiple of 6 bytes",
                ));
            }
            let settings = Settings(payload);
            for (id, value) in settings.iter() {
                match id {
                    setting::ENABLE_PUSH if value > 1 => {
                        return Err(conn(Reason::PROTOCOL_ERROR, "ENABLE_PUSH not 0 or 1"));
                    }
                    setting::INITIAL_WINDOW_SIZE if value > MAX_WINDOW => {
                        return Err(conn(
                            Reason::FLOW_CONTROL_ERROR,
                            "INITIAL_WINDOW_SIZE above 2^31-1",
                        ));
                    }
                    setting::MAX_FRAME_SIZE
                        if !(DEFAULT_MAX_FRAME_SIZE..=MAX_MAX_FRAME_SIZE).contains(&value) =>
                    {
                        return Err(conn(Reason::PROTOCOL_ERROR, "MAX_FRAME_SIZE out of range"));
                    }
                    _ => {}
                }
            }
            Frame::Settings(settings)
        }
        kind::PUSH_PROMISE => {
            return Err(conn(Reason::PROTOCOL_ERROR, "PUSH_PROMISE from a client"));
        }
        kind::PING => {
            on_conn("PING on a stream")?;
            let data: [u8; 8] = payload
                .try_into()
                .map_err(|_| conn(Reason::FRAME_SIZE_ERROR, "PING is not 8 bytes"))?;
            Frame::Ping {
                ack: head.has(flag::ACK),
                data,
            }
        }
        kind::GOAWAY => {
            on_conn("GOAWAY on a stream")?;
            if payload.len() < 8 {
                return Err(conn(
                    Reason::FRAME_SIZE_ERROR,
                    "GOAWAY shorter than 8 bytes",
                ));
            }
            Frame::GoAway {
                last_stream: be32(payload) & MAX_STREAM_ID,
                reason: Reason(be32(&payload[4..])),
            }
        }
        kind::WINDOW_UPDATE => {
            if payload.len() != 4 {
                return Err(conn(
                    Reason::FRAME_SIZE_ERROR,
                    "WINDOW_UPDATE is not 4 bytes",
                ));
            }
            let increment = be32(payload) & MAX_WINDOW;
            if increment == 0 {
                return Err(if stream == 0 {
                    conn(Reason::PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
                } else {
                    H2Error::stream(stream, Reason::PROTOCOL_ERROR, "WINDOW_UPDATE of 0")
                });
            }
            Frame::WindowUpdate { stream, increment }
        }
        kind::CONTINUATION => {
            on_stream("CONTINUATION on stream 0")?;
            Frame::Continuation {
                stream,
                block: payload,
                end_headers: head.has(flag::END_HEADERS),
            }
        }
        _ => Frame::Unknown,
    })
}

/// Append a frame header.
pub fn write_head(out: &mut Vec<u8>, len: usize, kind: u8, flags: u8, stream: u32) {
    debug_assert!(len <= MAX_MAX_FRAME_SIZE as usize);
    let len = (len as u32).to_be_bytes();
    out.extend_from_slice(&[len[1], len[2], len[3], kind, flags]);
    out.extend_from_slice(&(stream & MAX_STREAM_ID).to_be_bytes());
}

pub fn write_settings(out: &mut Vec<u8>, settings: &[(u16, u32)]) {
    write_head(out, settings.len() * 6, kind::SETTINGS, 0, 0);
    for (id, value) in settings {
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&value.to_be_bytes());
    }
}

pub fn write_settings_ack(out: &mut Vec<u8>) {
    write_head(out, 0, kind::SETTINGS, flag::ACK, 0);
}

pub fn write_ping(out: &mut Vec<u8>, ack: bool, data: [u8; 8]) {
    write_head(out, 8, kind::PING, if ack { flag::ACK } else { 0 }, 0);
    out.extend_from_slice(&data);
}

pub fn write_goaway(out: &mut Vec<u8>, last_stream: u32, reason: Reason, debug: &[u8]) {
    write_head(out, 8 + debug.len(), kind::GOAWAY, 0, 0);
    out.extend_from_slice(&(last_stream & MAX_STREAM_ID).to_be_bytes());
    out.extend_from_slice(&reason.0.to_be_bytes());
    out.extend_from_slice(debug);
}

pub fn write_rst_stream(out: &mut Vec<u8>, stream: u32, reason: Reason) {
    write_head(out, 4, kind::RST_STREAM, 0, stream);
    out.extend_from_slice(&reason.0.to_be_bytes());
}

pub fn write_window_update(out: &mut Vec<u8>, stream: u32, increment: u32) {
    write_head(out, 4, kind::WINDOW_UPDATE, 0, stream);
    out.extend_from_slice(&increment.to_be_bytes());
}

pub fn write_data(out: &mut Vec<u8>, stream: u32, data: &[u8], end_stream: bool) {
    let flags = if end_stream { flag::END_STREAM } else { 0 };
    write_head(out, data.len(), kind::DATA, flags, stream);
    out.extend_from_slice(data);
}

/// A header block as HEADERS plus as many CONTINUATION frames as
/// `max_frame` requires.
pub fn write_headers(
    out: &mut Vec<u8>,
    stream: u32,
    block: &[u8],
    end_stream: bool,
    max_frame: usize,
) {
    let mut chunks = block.chunks(max_frame.max(1));
    let first = chunks.next().unwrap_or(&[]);
    let mut flags = if end_stream { flag::END_STREAM } else { 0 };
    if first.len() == block.len() {
        flags |= flag::END_HEADERS;
    }
    write_head(out, first.len(), kind::HEADERS, flags, stream);
    out.extend_from_slice(first);
    let mut sent = first.len();
    for chunk in chunks {
        sent += chunk.len();
        let flags = if sent == block.len() {
            flag::END_HEADERS
        } else {
            0
        };
        write_head(out, chunk.len(), kind::CONTINUATION, flags, stream);
        out.extend_from_slice(chunk);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> (FrameHead, Vec<u8>) {
        let mut out = Vec::new();
        write_head(&mut out, payload.len(), kind, flags, stream);
        let head = FrameHead::parse(out[..9].try_into().unwrap());
        (head, payload.to_vec())
    }

    fn parse_one(
        kind: u8,
        flags: u8,
        stream: u32,
        payload: &[u8],
    ) -> Result<Frame<'static>, H2Error> {
        let (head, payload) = frame(kind, flags, stream, payload);
        let payload: &'static [u8] = Box::leak(payload.into_boxed_slice());
        parse(&head, payload)
    }

    fn conn_reason(r: Result<Frame<'static>, H2Error>) -> Reason {
        match r {
            Err(H2Error::Connection { reason, .. }) => reason,
            other => panic!("expected a connection error, got {other:?}"),
        }
    }

    #[test]
    fn head_round_trips_and_drops_the_reserved_bit() {
        let mut out = Vec::new();
        write_head(&mut out, 0x123456, kind::HEADERS, 0x25, 7);
        assert_eq!(out, [0x12, 0x34, 0x56, 1, 0x25, 0, 0, 0, 7]);
        out[5] |= 0x80;
        let head = FrameHead::parse(out[..9].try_into().unwrap());
        assert_eq!(head.stream, 7);
        assert_eq!(head.len, 0x123456);
    }

    #[test]
    fn padded_data_is_stripped_and_counted_whole() {
        let f = parse_one(
            kind::DATA,
            flag::PADDED | flag::END_STREAM,
            1,
            &[2, b'h', b'i', 0, 0],
        );
        assert_eq!(
            f,
            Ok(Frame::Data {
                stream: 1,
                data: b"hi",
                end_stream: true,
                flow_len: 5
            })
        );
        // Padding as long as the payload.
        assert_eq!(
            conn_reason(parse_one(kind::DATA, flag::PADDED, 1, &[2, 0])),
            Reason::PROTOCOL_ERROR
        );
        assert_eq!(
            conn_reason(parse_one(kind::DATA, flag::PADDED, 1, &[])),
            Reason::FRAME_SIZE_ERROR
        );
        assert_eq!(
            conn_reason(parse_one(kind::DATA, 0, 0, b"x")),
            Reason::PROTOCOL_ERROR
        );
    }

    #[test]
    fn headers_with_priority_and_padding() {
        let payload = [1, 0x80, 0, 0, 3, 15, 0x82, 0];
        let f = parse_one(
            kind::HEADERS,
            flag::PADDED | flag::PRIORITY | flag::END_HEADERS,
            1,
            &payload,
        );
        assert_eq!(
            f,
            Ok(Frame::Headers {
                stream: 1,
                block: &[0x82],
                end_stream: false,
                end_headers: true,
                self_dependent: false,
            })
        );
        let selfdep = parse_one(kind::HEADERS, flag::PRIORITY, 3, &[0, 0, 0, 3, 15]);
        assert!(matches!(
            selfdep,
            Ok(Frame::Headers {
                stream: 3,
                self_dependent: true,
                ..
            })
        ));
        let selfdep = parse_one(kind::PRIORITY, 0, 3, &[0, 0, 0, 3, 15]);
        assert!(matches!(
            selfdep,
            Err(H2Error::Stream {
                stream: 3,
                reason: Reason::PROTOCOL_ERROR,
                ..
            })
        ));
    }

    #[test]
    fn each_type_enforces_its_sizes_and_stream() {
        assert!(matches!(
            parse_one(kind::PRIORITY, 0, 1, &[0; 4]),
            Err(H2Error::Stream {
                reason: Reason::FRAME_SIZE_ERROR,
                ..
            })
        ));
        assert_eq!(
            conn_reason(parse_one(kind::RST_STREAM, 0, 1, &[0; 3])),
            Reason::FRAME_SIZE_ERROR
        );
        assert_eq!(
            conn_reason(parse_one(kind::RST_STREAM, 0, 0, &[0; 4])),
            Reason::PROTOCOL_ERROR
        );
        assert_eq!(
            conn_reason(parse_one(kind::SETTINGS, 0, 1, &[])),
            Reason::PROTOCOL_ERROR
        );
        assert_eq!(
            conn_reason(parse_one(kind::SETTINGS, 0, 0, &[0; 5])),
            Reason::FRAME_SIZE_ERROR
        );
        assert_eq!(
            conn_reason(parse_one(kind::SETTINGS, flag::ACK, 0, &[0; 6])),
            Reason::FRAME_SIZE_ERROR
        );
        assert_eq!(
            conn_reason(parse_one(kind::PING, 0, 0, &[0; 7])),
            Reason::FRAME_SIZE_ERROR
        );
        assert_eq!(
            conn_reason(parse_one(kind::PING, 0, 1, &[0; 8])),
            Reason::PROTOCOL_ERROR
        );
        assert_eq!(
            conn_reason(parse_one(kind::GOAWAY, 0, 0, &[0; 7])),
            Reason::FRAME_SIZE_ERROR
        );
        assert_eq!(
            conn_reason(parse_one(kind::WINDOW_UPDATE, 0, 0, &[0; 5])),
            Reason::FRAME_SIZE_ERROR
        );
        assert_eq!(
            conn_reason(parse_one(kind::WINDOW_UPDATE, 0, 0, &[0; 4])),
            Reason::PROTOCOL_ERROR
        );
        assert!(matches!(
            parse_one(kind::WINDOW_UPDATE, 0, 5, &[0; 4]),
            Err(H2Error::Stream {
                stream: 5,
                reason: Reason::PROTOCOL_ERROR,
                ..
            })
        ));
        assert_eq!(
            conn_reason(parse_one(
                kind::PUSH_PROMISE,
                flag::END_HEADERS,
                1,
                &[0, 0, 0, 2]
            )),
            Reason::PROTOCOL_ERROR
        );
        assert_eq!(
            conn_reason(parse_one(kind::CONTINUATION, 0, 0, &[])),
            Reason::PROTOCOL_ERROR
        );
        assert_eq!(parse_one(0xfa, 0, 9, b"whatever"), Ok(Frame::Unknown));
    }

    #[test]
    fn settings_values_are_checked() {
        let set = |id: u16, v: u32| {
            let mut p = id.to_be_bytes().to_vec();
            p.extend_from_slice(&v.to_be_bytes());
            parse_one(kind::SETTINGS, 0, 0, &p)
        };
        assert_eq!(
            conn_reason(set(setting::ENABLE_PUSH, 2)),
            Reason::PROTOCOL_ERROR
        );
        assert_eq!(
            conn_reason(set(setting::INITIAL_WINDOW_SIZE, 1 << 31)),
            Reason::FLOW_CONTROL_ERROR
        );
        assert_eq!(
            conn_reason(set(setting::MAX_FRAME_SIZE, 16383)),
            Reason::PROTOCOL_ERROR
        );
        assert_eq!(
            conn_reason(set(setting::MAX_FRAME_SIZE, 1 << 24)),
            Reason::PROTOCOL_ERROR
        );
        let Ok(Frame::Settings(s)) = set(0x99, 7) else {
            panic!()
        };
        assert_eq!(s.iter().collect::<Vec<_>>(), [(0x99, 7)]);
    }

    #[test]
    fn large_header_blocks_are_split_into_continuations() {
        let block: Vec<u8> = (0..40).collect();
        let mut out = Vec::new();
        write_headers(&mut out, 3, &block, true, 16);
        // HEADERS(16, END_STREAM) + CONTINUATION(16) + CONTINUATION(8, END_HEADERS)
        assert_eq!(out.len(), 40 + 27);
        assert_eq!(
            &out[..9],
            &[0, 0, 16, kind::HEADERS, flag::END_STREAM, 0, 0, 0, 3]
        );
        assert_eq!(&out[25..34], &[0, 0, 16, kind::CONTINUATION, 0, 0, 0, 0, 3]);
        assert_eq!(
            &out[50..59],
            &[0, 0, 8, kind::CONTINUATION, flag::END_HEADERS, 0, 0, 0, 3]
        );
    }
}
