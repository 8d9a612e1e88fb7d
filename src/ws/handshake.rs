//! The opening handshake, server side (RFC 6455 §4.2): is this request an
//! upgrade, may it be accepted, and the 101 response that accepts it.
//!
//! A request is a WebSocket upgrade when an `Upgrade` field lists the token
//! `websocket`. Then it must be a GET over HTTP/1.1 with `upgrade` in
//! `Connection` and exactly one `Sec-WebSocket-Key` that is the base64 of 16
//! bytes, else 400; a `Sec-WebSocket-Version` other than 13 gets 426 with the
//! version we speak (§4.4).

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use sha1::{Digest, Sha1};

use super::extension::{negotiate, DeflateParams};
use super::{Config, VERSION};
use crate::http::{validate_response_header, Head, Version};

/// §1.3: appended to the client's key before hashing.
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// What to do with a request.
#[derive(Debug, PartialEq, Eq)]
pub enum Handshake {
    /// No `Upgrade: websocket`: serve it as plain HTTP.
    NotUpgrade,
    /// A valid upgrade: hand it to the app, answer with `Upgrade::response`.
    Upgrade(Upgrade),
    /// A broken upgrade: answer with `Reject::response` and close.
    Reject(Reject),
}

/// A valid upgrade request, read.
#[derive(Debug, PartialEq, Eq)]
pub struct Upgrade {
    /// The `Sec-WebSocket-Accept` value.
    pub accept: String,
    /// Every `Sec-WebSocket-Protocol` value, comma-split and trimmed, in order.
    pub subprotocols: Vec<String>,
    /// permessage-deflate, when offered acceptably and enabled.
    pub deflate: Option<DeflateParams>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reject {
    /// 400, or 426 for a version we do not speak.
    pub status: u16,
    pub detail: &'static str,
}

/// Why a 101 response could not be written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResponseError {
    /// The chosen subprotocol is not one the client offered.
    SubprotocolNotOffered(String),
    /// An extra header with a bad name or a CR, LF or NUL in its value.
    InvalidHeader(String),
    /// An extra header that the handshake itself sets.
    ReservedHeader(String),
}

impl std::fmt::Display for ResponseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ResponseError::SubprotocolNotOffered(p) => {
                write!(f, "subprotocol {p:?} was not offered by the client")
            }
            ResponseError::InvalidHeader(h) => write!(f, "invalid header {h:?}"),
            ResponseError::ReservedHeader(h) => {
                write!(f, "header {h:?} is set by the WebSocket handshake")
            }
        }
    }
}

impl std::error::Error for ResponseError {}

/// The headers of the 101 response this layer writes itself.
const RESERVED: [&str; 5] = [
    "upgrade",
    "connection",
    "sec-websocket-accept",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
];

/// `Sec-WebSocket-Accept` for a client's key: base64(SHA-1(key + GUID)).
pub fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(GUID);
    BASE64.encode(sha.finalize())
}

fn list_has(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|item| item.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

fn reject(status: u16, detail: &'static str) -> Handshake {
    Handshake::Reject(Reject { status, detail })
}

/// Decide what to do with a request head.
pub fn check(head: &Head, cfg: &Config) -> Handshake {
    let fields = |name: &'static str| {
        head.header_pairs()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    };
    if !fields("upgrade").any(|v| list_has(v, "websocket")) {
        return Handshake::NotUpgrade;
    }
    if head.method() != b"GET" {
        return reject(400, "WebSocket upgrade with a method other than GET");
    }
    if head.version != Version::Http11 {
        return reject(400, "WebSocket upgrade over a protocol other than HTTP/1.1");
    }
    if !fields("connection").any(|v| list_has(v, "upgrade")) {
        return reject(400, "WebSocket upgrade without Connection: upgrade");
    }
    let mut versions = fields("sec-websocket-version");
    match (versions.next(), versions.next()) {
        (Some(v), None) if v == VERSION.as_bytes() => {}
        _ => return reject(426, "unsupported Sec-WebSocket-Version"),
    }
    let mut keys = fields("sec-websocket-key");
    let key = match (keys.next(), keys.next()) {
        (Some(k), None) => k,
        (None, _) => return reject(400, "missing Sec-WebSocket-Key"),
        _ => return reject(400, "more than one Sec-WebSocket-Key"),
    };
    if !matches!(BASE64.decode(key), Ok(raw) if raw.len() == 16) {
        return reject(400, "Sec-WebSocket-Key is not the base64 of 16 bytes");
    }
    let subprotocols = fields("sec-websocket-protocol")
        .flat_map(|v| v.split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|p| !p.is_empty())
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .collect();
    let deflate = if cfg.permessage_deflate {
        negotiate(fields("sec-websocket-extensions"))
    } else {
        None
    };
    Handshake::Upgrade(Upgrade {
        accept: accept_key(key),
        subprotocols,
        deflate,
    })
}

impl Upgrade {
    /// Append the 101 response head to `out`: the chosen subprotocol (one
    /// the client offered), the negotiated extension, then `extra` headers.
    pub fn response(
        &self,
        subprotocol: Option<&str>,
        extra: &[(&[u8], &[u8])],
        out: &mut Vec<u8>,
    ) -> Result<(), ResponseError> {
        if let Some(p) = subprotocol {
            if !self.subprotocols.iter().any(|offered| offered == p) {
                return Err(ResponseError::SubprotocolNotOffered(p.to_owned()));
            }
        }
        for (name, value) in extra {
            let shown = || String::from_utf8_lossy(name).into_owned();
            if !validate_response_header(name, value) {
                return Err(ResponseError::InvalidHeader(shown()));
            }
            if RESERVED
                .iter()
                .any(|r| name.eq_ignore_ascii_case(r.as_bytes()))
            {
                return Err(ResponseError::ReservedHeader(shown()));
            }
        }
        out.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ");
        out.extend_from_slice(self.accept.as_bytes());
        out.extend_from_slice(b"\r\n");
        if let Some(p) = subprotocol {
            push_header(out, b"Sec-WebSocket-Protocol", p.as_bytes());
        }
        if let Some(d) = &self.deflate {
            push_header(
                out,
                b"Sec-WebSocket-Extensions",
                d.response_value().as_bytes(),
            );
        }
        for (name, value) in extra {
            push_header(out, name, value);
        }
        out.extend_from_slice(b"\r\n");
        Ok(())
    }
}

fn push_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

impl Reject {
    /// The headers this answer needs besides the usual ones.
    pub fn headers(&self) -> &'static [(&'static str, &'static str)] {
        if self.status == 426 {
            &[("Sec-WebSocket-Version", VERSION), ("Upgrade", "websocket")]
        } else {
            &[]
        }
    }

    /// A complete response that closes the connection.
    pub fn response(&self) -> Vec<u8> {
        let reason = crate::http::reason_phrase(self.status);
        let mut out = format!("HTTP/1.1 {} {reason}\r\n", self.status).into_bytes();
        for (name, value) in self.headers() {
            push_header(&mut out, name.as_bytes(), value.as_bytes());
        }
        let body = format!("{}\n", self.detail);
        out.extend_from_slice(
            format!(
                "Content-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{Config as HttpConfig, Conn, Event, PeerTrust};
    use std::sync::Arc;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn head(raw: &str) -> Head {
        let mut conn = Conn::new(Arc::new(HttpConfig::default()), PeerTrust::default());
        conn.feed(raw.as_bytes());
        match conn.poll() {
            Event::Request(r) => r.head,
            other => panic!("{other:?}"),
        }
    }

    fn request(extra: &str) -> String {
        format!(
            "GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n{extra}\r\n"
        )
    }

    fn check_raw(raw: &str) -> Handshake {
        check(&head(raw), &Config::default())
    }

    fn upgrade(raw: &str) -> Upgrade {
        match check_raw(raw) {
            Handshake::Upgrade(u) => u,
            other => panic!("{other:?}"),
        }
    }

    fn status(raw: &str) -> u16 {
        match check_raw(raw) {
            Handshake::Reject(r) => r.status,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rfc_6455_sample_key() {
        assert_eq!(accept_key(KEY.as_bytes()), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn rfc_6455_sample_request_is_accepted() {
        let u = upgrade(&request(
            "Origin: http://example.com\r\nSec-WebSocket-Protocol: chat, superchat\r\n",
        ));
        assert_eq!(u.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(u.subprotocols, ["chat", "superchat"]);
        assert_eq!(u.deflate, None);
        let mut out = Vec::new();
        u.response(Some("chat"), &[], &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: chat\r\n\r\n"
        );
    }

    #[test]
    fn plain_requests_are_not_upgrades() {
        assert_eq!(
            check_raw("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            Handshake::NotUpgrade
        );
        assert_eq!(
            check_raw("GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n"),
            Handshake::NotUpgrade
        );
        assert_eq!(
            check_raw(
                "POST / HTTP/1.1\r\nHost: x\r\nUpgrade: websockets\r\nContent-Length: 0\r\n\r\n"
            ),
            Handshake::NotUpgrade
        );
    }

    #[test]
    fn tokens_are_found_case_insensitively_anywhere_in_repeated_fields() {
        let raw = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nupgrade: h2c\r\nUPGRADE: foo, WebSocket\r\nconnection: keep-alive\r\n\
             Connection: x, UPGRADE\r\nsec-websocket-key: {KEY}\r\nsec-websocket-version: 13\r\n\
             Sec-WebSocket-Protocol: a , b\r\nSec-WebSocket-Protocol: c\r\n\r\n"
        );
        let u = upgrade(&raw);
        assert_eq!(u.subprotocols, ["a", "b", "c"]);
    }

    #[test]
    fn malformed_upgrades_are_400() {
        let ok = request("");
        let cases = [
            ok.replace("GET", "POST"),
            ok.replace("HTTP/1.1", "HTTP/1.0"),
            ok.replace("Connection: Upgrade", "Connection: keep-alive"),
            ok.replace(&format!("Sec-WebSocket-Key: {KEY}\r\n"), ""),
            ok.replace(KEY, "dGhlIHNhbXBsZSBub25jZQ"),
            ok.replace(KEY, "dGhlIHNhbXBsZSBub25jZXg="),
            ok.replace(KEY, "not base64 at all!!!!!!="),
            request(&format!("Sec-WebSocket-Key: {KEY}\r\n")),
        ];
        for raw in cases {
            assert_eq!(status(&raw), 400, "{raw}");
        }
    }

    #[test]
    fn wrong_version_is_426_with_the_version_we_speak() {
        let ok = request("");
        for raw in [
            ok.replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8"),
            ok.replace("Sec-WebSocket-Version: 13\r\n", ""),
            request("Sec-WebSocket-Version: 13\r\n"),
        ] {
            let Handshake::Reject(r) = check_raw(&raw) else {
                panic!("{raw}")
            };
            assert_eq!(r.status, 426);
            let text = String::from_utf8(r.response()).unwrap();
            assert!(
                text.starts_with("HTTP/1.1 426 Upgrade Required\r\n"),
                "{text}"
            );
            assert!(text.contains("\r\nSec-WebSocket-Version: 13\r\n"), "{text}");
        }
        let text = String::from_utf8(
            Reject {
                status: 400,
                detail: "bad",
            }
            .response(),
        )
        .unwrap();
        assert!(
            text.starts_with("HTTP/1.1 400 Bad Request\r\n") && text.ends_with("\r\n\r\nbad\n")
        );
        assert!(!text.contains("Sec-WebSocket-Version"));
    }

    #[test]
    fn permessage_deflate_is_negotiated_unless_disabled() {
        let raw =
            request("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n");
        let u = upgrade(&raw);
        assert!(u.deflate.is_some());
        let mut out = Vec::new();
        u.response(None, &[], &mut out).unwrap();
        assert!(String::from_utf8(out)
            .unwrap()
            .contains("\r\nSec-WebSocket-Extensions: permessage-deflate\r\n"));
        let cfg = Config {
            permessage_deflate: false,
            ..Config::default()
        };
        let Handshake::Upgrade(u) = check(&head(&raw), &cfg) else {
            panic!()
        };
        assert_eq!(u.deflate, None);
    }

    #[test]
    fn response_checks_the_subprotocol_and_extra_headers() {
        let u = upgrade(&request("Sec-WebSocket-Protocol: chat\r\n"));
        let mut out = Vec::new();
        assert!(matches!(
            u.response(Some("other"), &[], &mut out),
            Err(ResponseError::SubprotocolNotOffered(_))
        ));
        for (name, value) in [
            (&b"X-A"[..], &b"1\r\nX-B: 2"[..]),
            (b"X-A", b"a\nb"),
            (b"X-A", b"a\0b"),
            (b"X A", b"1"),
            (b"", b"1"),
        ] {
            assert!(matches!(
                u.response(None, &[(name, value)], &mut out),
                Err(ResponseError::InvalidHeader(_))
            ));
        }
        assert!(matches!(
            u.response(None, &[(b"sec-websocket-accept", b"x")], &mut out),
            Err(ResponseError::ReservedHeader(_))
        ));
        assert!(out.is_empty(), "nothing written on error");
        u.response(
            None,
            &[(b"Set-Cookie", b"a=b"), (b"Server", b"ferrocorn")],
            &mut out,
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.ends_with("\r\nSet-Cookie: a=b\r\nServer: ferrocorn\r\n\r\n"),
            "{text}"
        );
        assert!(!text.contains("Sec-WebSocket-Protocol"));
    }
}
