//! How a request's body is delimited and whether the connection may carry
//! another request: gunicorn's `set_body_reader` and `should_close`.

use super::error::{HttpError, HttpErrorKind};
use super::scan::{eq_lower, trim_ows};
use super::Head;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum BodyKind {
    /// No Content-Length and no Transfer-Encoding: an empty body (a request
    /// is never read until close).
    Empty,
    Length(u64),
    Chunked,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Framing {
    pub body: BodyKind,
    pub keep_alive: bool,
}

fn invalid(detail: &str) -> HttpError {
    HttpError::new(HttpErrorKind::InvalidHeader, detail)
}

/// Read Content-Length, Transfer-Encoding and Connection of a parsed head.
/// `framing_fields`: the head has one of them (when false, no field is read).
pub(super) fn framing(head: &Head, framing_fields: bool) -> Result<Framing, HttpError> {
    let mut content_length: Option<&[u8]> = None;
    let mut has_te = false;
    let mut chunked = false;
    let mut must_close = false;
    let mut close = false;
    let mut keep = false;
    let fields = if framing_fields {
        &head.headers[..]
    } else {
        &[]
    };
    for field in fields {
        let (name, value) = (head.slice(&field.name), head.slice(&field.value));
        if eq_lower(name, b"content-length") {
            if content_length.is_some() {
                return Err(invalid("duplicate Content-Length"));
            }
            content_length = Some(value);
        } else if eq_lower(name, b"transfer-encoding") {
            has_te = true;
            for coding in value.split(|&b| b == b',').map(trim_ows) {
                if coding.eq_ignore_ascii_case(b"chunked") {
                    // Stacked chunking is never meant: refuse it.
                    if chunked {
                        return Err(invalid("chunked twice in Transfer-Encoding"));
                    }
                    chunked = true;
                } else if coding.eq_ignore_ascii_case(b"identity") {
                    if chunked {
                        return Err(invalid("chunked is not the last transfer coding"));
                    }
                } else if [&b"compress"[..], b"deflate", b"gzip"]
                    .iter()
                    .any(|c| coding.eq_ignore_ascii_case(c))
                {
                    if chunked {
                        return Err(invalid("chunked is not the last transfer coding"));
                    }
                    // The app gets the body still coded; nothing after it can be trusted.
                    must_close = true;
                } else {
                    return Err(HttpError::new(
                        HttpErrorKind::UnsupportedTransferCoding,
                        "unknown transfer coding",
                    ));
                }
            }
        } else if eq_lower(name, b"connection") {
            for token in value.split(|&b| b == b',').map(trim_ows) {
                close |= token.eq_ignore_ascii_case(b"close");
                keep |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        }
    }
    // RFC 9112 §6.3: a request whose last coding is not chunked has no length.
    if has_te && !chunked {
        return Err(invalid("Transfer-Encoding does not end with chunked"));
    }
    let body = if chunked {
        if !head.version.at_least_11() {
            return Err(invalid("Transfer-Encoding on HTTP/1.0"));
        }
        if content_length.is_some() {
            return Err(invalid("both Content-Length and Transfer-Encoding"));
        }
        BodyKind::Chunked
    } else if let Some(value) = content_length {
        match parse_content_length(value) {
            Some(0) => BodyKind::Empty,
            Some(n) => BodyKind::Length(n),
            None => return Err(invalid("Content-Length is not a number")),
        }
    } else {
        BodyKind::Empty
    };
    let keep_alive = !must_close
        && head.method() != b"CONNECT"
        && !close
        && (keep || head.version.at_least_11());
    Ok(Framing { body, keep_alive })
}

/// ASCII digits only (leading zeros fine). A length beyond u64 saturates:
/// the body never completes and the peer's EOF ends it.
fn parse_content_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(value.iter().fold(0u64, |n, &d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{Header, Version};

    fn head(version: Version, method: &str, headers: &[(&str, &str)]) -> Head {
        let mut buf = method.as_bytes().to_vec();
        let method_span = 0..buf.len() as u32;
        let mut spans = Vec::new();
        for (n, v) in headers {
            let ns = buf.len() as u32;
            buf.extend_from_slice(n.as_bytes());
            let vs = buf.len() as u32;
            buf.extend_from_slice(v.as_bytes());
            spans.push(Header {
                name: ns..vs,
                value: vs..buf.len() as u32,
            });
        }
        Head {
            buf,
            method: method_span,
            target: 0..0,
            path: 0..0,
            query: 0..0,
            version,
            headers: spans,
            https_forwarded: false,
        }
    }

    fn frame(version: Version, headers: &[(&str, &str)]) -> Result<Framing, HttpErrorKind> {
        let head = head(version, "POST", headers);
        let with_fields = framing(&head, true).map_err(|e| e.kind);
        let framing_fields = headers.iter().any(|(n, _)| {
            ["content-length", "transfer-encoding", "connection"]
                .iter()
                .any(|f| n.eq_ignore_ascii_case(f))
        });
        if !framing_fields {
            assert_eq!(framing(&head, false).map_err(|e| e.kind), with_fields);
        }
        with_fields
    }

    const V11: Version = Version::Http11;
    const V10: Version = Version::Http10;

    #[test]
    fn content_length_is_plain_digits() {
        assert_eq!(
            frame(V11, &[("Content-Length", "05")]).unwrap().body,
            BodyKind::Length(5)
        );
        assert_eq!(
            frame(V11, &[("content-length", "0")]).unwrap().body,
            BodyKind::Empty
        );
        for bad in [
            "-1", "+1", "-0", "0_1", "5, 5", "0 1", "bla", "1e1", "\u{b2}", "",
        ] {
            assert_eq!(
                frame(V11, &[("Content-Length", bad)]),
                Err(HttpErrorKind::InvalidHeader),
                "{bad:?}"
            );
        }
        assert_eq!(
            frame(V11, &[("Content-Length", "99999999999999999999999")])
                .unwrap()
                .body,
            BodyKind::Length(u64::MAX)
        );
    }

    #[test]
    fn duplicate_content_length_is_refused_even_when_equal() {
        assert_eq!(
            frame(V11, &[("Content-Length", "3"), ("Content-Length", "3")]),
            Err(HttpErrorKind::InvalidHeader)
        );
    }

    #[test]
    fn transfer_encoding_must_end_with_a_single_chunked() {
        assert_eq!(
            frame(V11, &[("Transfer-Encoding", "chunked")])
                .unwrap()
                .body,
            BodyKind::Chunked
        );
        assert_eq!(
            frame(V11, &[("Transfer-Encoding", "identity, chunked")])
                .unwrap()
                .body,
            BodyKind::Chunked
        );
        assert_eq!(
            frame(
                V11,
                &[
                    ("Transfer-Encoding", "gzip"),
                    ("Transfer-Encoding", "chunked")
                ]
            )
            .unwrap(),
            Framing {
                body: BodyKind::Chunked,
                keep_alive: false
            }
        );
        let invalid = HttpErrorKind::InvalidHeader;
        assert_eq!(
            frame(V11, &[("Transfer-Encoding", "chunked, chunked")]),
            Err(invalid.clone())
        );
        assert_eq!(
            frame(
                V11,
                &[
                    ("Transfer-Encoding", "chunked"),
                    ("Transfer-Encoding", "chunked")
                ]
            ),
            Err(invalid.clone())
        );
        assert_eq!(
            frame(V11, &[("Transfer-Encoding", "chunked, gzip")]),
            Err(invalid.clone())
        );
        assert_eq!(
            frame(
                V11,
                &[
                    ("Transfer-Encoding", "chunked"),
                    ("Transfer-Encoding", "identity")
                ]
            ),
            Err(invalid.clone())
        );
        assert_eq!(
            frame(V11, &[("Transfer-Encoding", "gzip")]),
            Err(invalid.clone())
        );
        assert_eq!(
            frame(V11, &[("Transfer-Encoding", "identity")]),
            Err(invalid.clone())
        );
        assert_eq!(
            frame(V10, &[("Transfer-Encoding", "chunked")]),
            Err(invalid.clone())
        );
        assert_eq!(
            frame(
                V11,
                &[("Transfer-Encoding", "chunked"), ("Content-Length", "0")]
            ),
            Err(invalid.clone())
        );
        assert_eq!(
            frame(
                V11,
                &[("Transfer-Encoding", "identity"), ("Content-Length", "5")]
            ),
            Err(invalid)
        );
    }

    #[test]
    fn unknown_transfer_coding_is_501() {
        let unsupported = Err(HttpErrorKind::UnsupportedTransferCoding);
        assert_eq!(
            frame(V11, &[("Transfer-Encoding", "br, chunked")]),
            unsupported
        );
        assert_eq!(
            frame(V11, &[("Transfer-Encoding", "xchunked")]),
            unsupported
        );
        assert_eq!(
            frame(V11, &[("Transfer-Encoding", "chunked,")]),
            unsupported
        );
    }

    #[test]
    fn keep_alive_follows_version_and_connection_tokens() {
        assert!(frame(V11, &[]).unwrap().keep_alive);
        assert!(!frame(V10, &[]).unwrap().keep_alive);
        assert!(
            frame(V10, &[("Connection", "Keep-Alive")])
                .unwrap()
                .keep_alive
        );
        assert!(!frame(V11, &[("Connection", "Close")]).unwrap().keep_alive);
        assert!(
            !frame(V11, &[("Connection", "te, close")])
                .unwrap()
                .keep_alive
        );
        assert!(frame(V11, &[("Connection", "upgrade")]).unwrap().keep_alive);
        assert!(!frame(Version::Other(0, 9), &[]).unwrap().keep_alive);
        assert!(frame(Version::Other(1, 2), &[]).unwrap().keep_alive);
        assert!(
            !framing(&head(V11, "CONNECT", &[]), false)
                .unwrap()
                .keep_alive
        );
    }
}
