//! HTTP/2 over cleartext TCP (h2c): the prior-knowledge preface on a
//! connection's first bytes, and the HTTP/1.1 `Upgrade: h2c` handshake
//! (RFC 7540 3.2; RFC 9113 deprecates it, curl and some proxies still use it).

use std::time::Instant;

use super::conn::{Connection, Settings};
use super::error::{H2Error, Reason};
use super::frame::{self, Frame, FrameHead, PREFACE};
use crate::http::Head;

/// What a cleartext connection's first bytes say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preface {
    /// The whole HTTP/2 client preface: hand the bytes to `Connection`.
    H2,
    /// A prefix of it so far: read more before deciding.
    Undecided,
    /// Not HTTP/2: HTTP/1.x (or nothing we speak).
    Other,
}

/// Look at the first bytes of a cleartext connection.
pub fn detect_preface(first: &[u8]) -> Preface {
    let n = first.len().min(PREFACE.len());
    if first[..n] != PREFACE[..n] {
        Preface::Other
    } else if n == PREFACE.len() {
        Preface::H2
    } else {
        Preface::Undecided
    }
}

/// The answer that accepts an upgrade; the connection's `output()` follows it.
pub const SWITCHING_PROTOCOLS: &[u8] =
    b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n";

fn has_token(list: &[u8], token: &[u8]) -> bool {
    list.split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// The `HTTP2-Settings` value of an HTTP/1.1 request asking to upgrade to
/// h2c, or `None` when it does not ask (or asks wrongly: the field must be
/// there exactly once and named in `Connection`, RFC 7540 3.2.1).
pub fn upgrade_request(head: &Head) -> Option<&[u8]> {
    let mut upgrade = false;
    let mut connection_names_it = false;
    let mut connection_upgrade = false;
    let mut settings = None;
    for (name, value) in head.header_pairs() {
        if name.eq_ignore_ascii_case(b"upgrade") {
            upgrade |= has_token(value, b"h2c");
        } else if name.eq_ignore_ascii_case(b"connection") {
            connection_upgrade |= has_token(value, b"upgrade");
            connection_names_it |= has_token(value, b"http2-settings");
        } else if name.eq_ignore_ascii_case(b"http2-settings") {
            if settings.is_some() {
                return None;
            }
            settings = Some(value);
        }
    }
    if upgrade && connection_upgrade && connection_names_it {
        settings
    } else {
        None
    }
}

fn base64url_value(b: u8) -> Option<u32> {
    Some(match b {
        b'A'..=b'Z' => b - b'A',
        b'a'..=b'z' => b - b'a' + 26,
        b'0'..=b'9' => b - b'0' + 52,
        b'-' => 62,
        b'_' => 63,
        _ => return None,
    } as u32)
}

/// Decode an `HTTP2-Settings` value (base64url of a SETTINGS payload,
/// padding optional) and check it as a SETTINGS frame.
pub fn decode_settings(value: &[u8]) -> Result<Vec<(u16, u32)>, H2Error> {
    let bad = || H2Error::conn(Reason::PROTOCOL_ERROR, "invalid HTTP2-Settings");
    let value = value.trim_ascii();
    let value = value
        .strip_suffix(b"==")
        .or(value.strip_suffix(b"="))
        .unwrap_or(value);
    if value.len() % 4 == 1 {
        return Err(bad());
    }
    let mut payload = Vec::with_capacity(value.len() * 3 / 4);
    for chunk in value.chunks(4) {
        let mut acc = 0u32;
        for &b in chunk {
            acc = (acc << 6) | base64url_value(b).ok_or_else(bad)?;
        }
        acc <<= 6 * (4 - chunk.len() as u32);
        let bytes = acc.to_be_bytes();
        payload.extend_from_slice(&bytes[1..chunk.len()]);
    }
    let head = FrameHead {
        len: payload.len() as u32,
        kind: frame::kind::SETTINGS,
        flags: 0,
        stream: 0,
    };
    match frame::parse(&head, &payload)? {
        Frame::Settings(s) => Ok(s.iter().collect()),
        _ => Err(bad()),
    }
}

impl Connection {
    /// Start HTTP/2 on a connection whose HTTP/1.1 request `head` asked for
    /// h2c with `http2_settings` (the header's value). Send
    /// `SWITCHING_PROTOCOLS`, then `output()`. The request is stream 1,
    /// already complete on the client's side (its body, if any, was read
    /// as HTTP/1.1): it comes out of `poll` as `Event::Request`, and is
    /// answered like any other stream. The client preface comes next.
    pub fn from_upgrade(
        settings: Settings,
        mut head: Head,
        http2_settings: &[u8],
        now: Instant,
    ) -> Result<Connection, H2Error> {
        let peer = decode_settings(http2_settings)?;
        let mut conn = Connection::new(settings, now);
        for (id, value) in peer {
            conn.apply_setting(id, value)?;
        }
        head.version = super::request::VERSION;
        conn.adopt_upgraded_request(head);
        Ok(conn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Header;

    fn head(fields: &[(&str, &str)]) -> Head {
        let mut buf = b"GET/".to_vec();
        let mut headers = Vec::new();
        for (n, v) in fields {
            let s = buf.len() as u32;
            buf.extend_from_slice(n.as_bytes());
            let m = buf.len() as u32;
            buf.extend_from_slice(v.as_bytes());
            headers.push(Header {
                name: s..m,
                value: m..buf.len() as u32,
            });
        }
        Head {
            buf,
            method: 0..3,
            target: 3..4,
            path: 3..4,
            query: 4..4,
            version: crate::http::Version::Http11,
            headers,
            https_forwarded: false,
        }
    }

    #[test]
    fn preface_is_detected_at_any_length() {
        for n in 0..PREFACE.len() {
            assert_eq!(detect_preface(&PREFACE[..n]), Preface::Undecided, "{n}");
        }
        let mut more = PREFACE.to_vec();
        more.extend_from_slice(b"\0\0\0\x04");
        assert_eq!(detect_preface(&more), Preface::H2);
        assert_eq!(detect_preface(b"GET / HTTP/1.1\r\n"), Preface::Other);
        assert_eq!(detect_preface(b"PRI * HTTP/1.1\r\n"), Preface::Other);
    }

    #[test]
    fn upgrade_needs_all_three_fields() {
        let ok = head(&[
            ("Host", "a"),
            ("Connection", "Upgrade, HTTP2-Settings"),
            ("Upgrade", "h2c"),
            ("HTTP2-Settings", "AAMAAABkAAQAAP__"),
        ]);
        assert_eq!(upgrade_request(&ok), Some(&b"AAMAAABkAAQAAP__"[..]));
        let no_connection = head(&[("Upgrade", "h2c"), ("HTTP2-Settings", "")]);
        assert_eq!(upgrade_request(&no_connection), None);
        let websocket = head(&[
            ("Connection", "Upgrade, HTTP2-Settings"),
            ("Upgrade", "websocket"),
            ("HTTP2-Settings", ""),
        ]);
        assert_eq!(upgrade_request(&websocket), None);
    }

    #[test]
    fn settings_value_is_base64url() {
        // MAX_CONCURRENT_STREAMS 100, INITIAL_WINDOW_SIZE 65535 (curl's).
        let s = decode_settings(b"AAMAAABkAAQAAP__").unwrap();
        assert_eq!(s, [(3, 100), (4, 65535)]);
        assert_eq!(decode_settings(b"").unwrap(), []);
        assert!(decode_settings(b"AAMAAABkAAQAAP/+").is_err());
        assert!(decode_settings(b"AAMA").is_err()); // 3 bytes: not a whole setting
                                                    // ENABLE_PUSH 2 is refused as in a SETTINGS frame.
        assert!(decode_settings(b"AAIAAAAC").is_err());
    }
}

#[cfg(test)]
mod upgrade_tests {
    use super::*;
    use crate::h2::conn::Event;
    use crate::h2::frame::{flag, kind};
    use crate::h2::testing::{frame, settings};

    #[test]
    fn upgraded_request_is_stream_one() {
        let head = {
            let mut buf = b"GET/x".to_vec();
            buf.extend_from_slice(b"hosta");
            Head {
                buf,
                method: 0..3,
                target: 3..5,
                path: 3..5,
                query: 5..5,
                version: crate::http::Version::Http11,
                headers: vec![crate::http::Header {
                    name: 5..9,
                    value: 9..10,
                }],
                https_forwarded: false,
            }
        };
        let now = Instant::now();
        let mut conn =
            Connection::from_upgrade(Settings::default(), head, b"AAQAAAAK", now).unwrap();
        let Some(Event::Request {
            stream: 1,
            head,
            end_stream: true,
        }) = conn.poll()
        else {
            panic!()
        };
        assert_eq!(head.version.as_str(), "HTTP/2.0");
        // The client's window from HTTP2-Settings (10) applies to stream 1.
        let mut hello = PREFACE.to_vec();
        hello.extend(settings(&[]));
        conn.feed(&hello, now);
        conn.send_response(1, 200, std::iter::empty(), false)
            .unwrap();
        assert_eq!(conn.send_data(1, &[0; 15], true), Ok(5));
        // Our SETTINGS lead the output, then the ACK of theirs.
        let out = conn.output();
        assert_eq!(out[3], kind::SETTINGS);
        let mut rest = frame(kind::SETTINGS, flag::ACK, 0, &[]);
        rest.truncate(9);
        assert!(out.windows(9).any(|w| w == rest.as_slice()));
    }

    #[test]
    fn bad_http2_settings_refuses_the_upgrade() {
        let head = Head {
            buf: b"GET/".to_vec(),
            method: 0..3,
            target: 3..4,
            path: 3..4,
            query: 4..4,
            version: crate::http::Version::Http11,
            headers: Vec::new(),
            https_forwarded: false,
        };
        assert!(
            Connection::from_upgrade(Settings::default(), head, b"!!", Instant::now()).is_err()
        );
    }
}
