//! Response side: status line and headers, body framing, error pages.
//!
//! Header order and framing follow gunicorn's `Response`: status line,
//! `Server`, `Date`, `Connection`, `Transfer-Encoding: chunked` when chunked,
//! then the app's headers minus hop-by-hop and server-owned ones.

use std::io::Write;

use super::scan::{eq_lower, trim_ows};
use super::status::{reason_phrase, status_code};
use super::{DateCache, Version};

/// What the server does with an app header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AppField {
    Kept,
    ContentLength,
    /// Hop-by-hop (RFC 9110 §7.6.1) or the server's own: Connection,
    /// Keep-Alive, Proxy-Authenticate, Proxy-Authorization, TE, Trailers,
    /// Transfer-Encoding, Upgrade, Server, Date.
    Dropped,
}

/// Sorts an app header name, comparing it only with the names of its length.
fn app_field(name: &[u8]) -> AppField {
    let is = |known: &[u8]| eq_lower(name, known);
    let dropped = match name.len() {
        2 => is(b"te"),
        4 => is(b"date"),
        6 => is(b"server"),
        7 => is(b"upgrade"),
        8 => is(b"trailers"),
        10 => is(b"connection") || is(b"keep-alive"),
        14 if is(b"content-length") => return AppField::ContentLength,
        17 => is(b"transfer-encoding"),
        18 => is(b"proxy-authenticate"),
        19 => is(b"proxy-authorization"),
        _ => false,
    };
    if dropped {
        AppField::Dropped
    } else {
        AppField::Kept
    }
}

fn is_content_length(name: &[u8]) -> bool {
    eq_lower(name, b"content-length")
}

/// How the body of a response is delimited on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseFraming {
    /// `Content-Length: n`; bytes past n are dropped.
    Length(u64),
    /// `Transfer-Encoding: chunked` (HTTP/1.1, no length given).
    Chunked,
    /// No length on HTTP/1.0: the body ends when the connection closes.
    CloseDelimited,
    /// HEAD, 1xx, 204, 304: body bytes are dropped.
    NoBody,
}

/// What the server knows about the request a response answers.
#[derive(Clone, Copy, Debug)]
pub struct RequestInfo {
    pub version: Version,
    pub is_head: bool,
    /// The request allows keep-alive (`Request::keep_alive`).
    pub keep_alive: bool,
}

/// Encodes one response into an output buffer.
pub struct ResponseWriter {
    framing: ResponseFraming,
    keep_alive: bool,
    /// Body bytes still owed under `Length`.
    remaining: u64,
}

/// `n` in decimal ASCII digits, written at the end of `buf`.
pub fn decimal(mut n: u64, buf: &mut [u8; 20]) -> &str {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // Only ASCII digits were written.
    std::str::from_utf8(&buf[at..]).unwrap_or("0")
}

/// `n` in decimal.
fn put_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(decimal(n, &mut [0u8; 20]).as_bytes());
}

/// `n` in lower-case hex, as a chunk size.
fn put_hex(out: &mut Vec<u8>, mut n: usize) {
    let mut digits = [0u8; 16];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b"0123456789abcdef"[n & 0xf];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// The app's Content-Length, when it is a plain number.
fn parse_length(value: &[u8]) -> Option<u64> {
    let value = trim_ows(value);
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        value
            .iter()
            .fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')),
    )
}

impl ResponseWriter {
    /// Write the status line and headers. `status` is the WSGI status
    /// (`"200 OK"`), `headers` the app's (name, value) pairs, already
    /// validated with `validate_response_header`. Hop-by-hop and
    /// server-owned headers (Connection, Keep-Alive, Transfer-Encoding,
    /// Server, Date, ...) are dropped; `Server`, `Date` and `Connection` are
    /// the server's. `body_len` is the body size when the server knows it
    /// (a list body) and the app gave no Content-Length. `force_close`
    /// makes this the last response on the connection.
    ///
    /// An app Content-Length that is not a number is dropped (the body is
    /// then framed as if none was given), and only the first one counts.
    pub fn start(
        out: &mut Vec<u8>,
        date: &mut DateCache,
        req: RequestInfo,
        status: &[u8],
        headers: &[(Vec<u8>, Vec<u8>)],
        body_len: Option<u64>,
        force_close: bool,
    ) -> ResponseWriter {
        let code = status_code(status);
        let no_body = req.is_head || (100..200).contains(&code) || code == 204 || code == 304;
        // RFC 9110 §8.6: no Content-Length on 1xx and 204; HEAD and 304 keep it.
        let strip_length = (100..200).contains(&code) || code == 204;

        let mut app_length = None;
        let mut length_index = None;
        for (i, (name, value)) in headers.iter().enumerate() {
            if is_content_length(name) {
                if let Some(n) = parse_length(value) {
                    app_length = Some(n);
                    length_index = Some(i);
                    break;
                }
            }
        }

        let mut add_length = None;
        let framing = if no_body {
            ResponseFraming::NoBody
        } else if let Some(n) = app_length {
            ResponseFraming::Length(n)
        } else if let Some(n) = body_len {
            add_length = Some(n);
            ResponseFraming::Length(n)
        } else if req.version.at_least_11() {
            ResponseFraming::Chunked
        } else {
            ResponseFraming::CloseDelimited
        };
        let keep_alive =
            req.keep_alive && !force_close && framing != ResponseFraming::CloseDelimited;

        out.reserve(
            160 + headers
                .iter()
                .map(|(n, v)| n.len() + v.len() + 4)
                .sum::<usize>(),
        );
        out.extend_from_slice(req.version.status_line_start());
        out.extend_from_slice(status);
        out.extend_from_slice(date.server_fields(keep_alive));
        if framing == ResponseFraming::Chunked {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
        }
        for (i, (name, value)) in headers.iter().enumerate() {
            match app_field(name) {
                AppField::Kept => {}
                AppField::Dropped => continue,
                AppField::ContentLength if strip_length || Some(i) != length_index => continue,
                AppField::ContentLength => {}
            }
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(trim_ows(value));
            out.extend_from_slice(b"\r\n");
        }
        if let Some(n) = add_length {
            out.extend_from_slice(b"Content-Length: ");
            put_u64(out, n);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");

        let remaining = match framing {
            ResponseFraming::Length(n) => n,
            _ => 0,
        };
        ResponseWriter {
            framing,
            keep_alive,
            remaining,
        }
    }

    /// Frame a body chunk into `out` (empty chunks write nothing).
    pub fn body(&mut self, out: &mut Vec<u8>, chunk: &[u8]) {
        let n = self.body_external(out, chunk.len());
        out.extend_from_slice(&chunk[..n]);
        self.external_end(out, n);
    }

    /// Frame a body chunk of `len` bytes that goes out from where it is
    /// instead of being copied into `out`: writes what precedes it into
    /// `out` and returns how many of its bytes to send (fewer where a
    /// Content-Length ends inside it, none without a body). Then queue
    /// those bytes, and call `external_end` before anything else goes into
    /// `out`.
    pub fn body_external(&mut self, out: &mut Vec<u8>, len: usize) -> usize {
        if len == 0 {
            return 0;
        }
        match self.framing {
            ResponseFraming::Length(_) => {
                let n = self.remaining.min(len as u64) as usize;
                self.remaining -= n as u64;
                n
            }
            ResponseFraming::Chunked => {
                put_hex(out, len);
                out.extend_from_slice(b"\r\n");
                len
            }
            ResponseFraming::CloseDelimited => len,
            ResponseFraming::NoBody => 0,
        }
    }

    /// What follows a chunk framed with `body_external` (its CRLF when
    /// chunked).
    pub fn external_end(&self, out: &mut Vec<u8>, len: usize) {
        if len > 0 && self.framing == ResponseFraming::Chunked {
            out.extend_from_slice(b"\r\n");
        }
    }

    /// End the body (`0\r\n\r\n` when chunked). Returns whether the
    /// connection may carry another request: false when the framing needs a
    /// close or a Content-Length body came up short.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> bool {
        match self.framing {
            ResponseFraming::Chunked => out.extend_from_slice(b"0\r\n\r\n"),
            ResponseFraming::Length(_) if self.remaining > 0 => self.keep_alive = false,
            _ => {}
        }
        self.keep_alive
    }

    /// End a chunked body with a trailer section (fields already checked
    /// with `forbidden_in_trailers`); any other framing has no place for
    /// trailers, and they are dropped. Returns as `finish` does.
    pub fn finish_with_trailers(
        &mut self,
        out: &mut Vec<u8>,
        trailers: &[(Vec<u8>, Vec<u8>)],
    ) -> bool {
        if self.framing != ResponseFraming::Chunked || trailers.is_empty() {
            return self.finish(out);
        }
        out.extend_from_slice(b"0\r\n");
        for (name, value) in trailers {
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        self.keep_alive
    }

    pub fn framing(&self) -> ResponseFraming {
        self.framing
    }

    pub fn keep_alive(&self) -> bool {
        self.keep_alive
    }
}

/// A complete error response (gunicorn's page: `Connection: close`,
/// `Content-Type: text/html`, Content-Length) for `status` with `message`.
pub fn error_response(out: &mut Vec<u8>, status: u16, message: &str) {
    let reason = reason_phrase(status);
    let mut page = Vec::with_capacity(160 + message.len());
    let _ = write!(page, "<html>\n  <head>\n    <title>{reason}</title>\n  </head>\n  <body>\n    <h1><p>{reason}</p></h1>\n    ");
    html_escape(&mut page, message);
    page.extend_from_slice(b"\n  </body>\n</html>\n");
    let _ = write!(
        out,
        "HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\r\n",
        page.len()
    );
    out.extend_from_slice(&page);
}

/// An interim `103 Early Hints` response (RFC 8297) with these headers,
/// already validated. Only for HTTP/1.1 clients: HTTP/1.0 has no 1xx.
pub fn early_hints(out: &mut Vec<u8>, headers: &[(Vec<u8>, Vec<u8>)]) {
    out.extend_from_slice(b"HTTP/1.1 103 Early Hints\r\n");
    for (name, value) in headers {
        out.extend_from_slice(name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// Python's `html.escape(s, quote=True)`.
fn html_escape(out: &mut Vec<u8>, s: &str) {
    for b in s.bytes() {
        match b {
            b'&' => out.extend_from_slice(b"&amp;"),
            b'<' => out.extend_from_slice(b"&lt;"),
            b'>' => out.extend_from_slice(b"&gt;"),
            b'"' => out.extend_from_slice(b"&quot;"),
            b'\'' => out.extend_from_slice(b"&#x27;"),
            _ => out.push(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(version: Version, is_head: bool, keep_alive: bool) -> RequestInfo {
        RequestInfo {
            version,
            is_head,
            keep_alive,
        }
    }

    #[test]
    fn early_hints_is_an_interim_head_with_the_given_fields() {
        let mut out = Vec::new();
        early_hints(
            &mut out,
            &h(&[
                ("Link", "</a.css>; rel=preload"),
                ("Link", "</b.js>; rel=preload"),
            ]),
        );
        assert_eq!(
            out,
            b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\
              Link: </b.js>; rel=preload\r\n\r\n"
        );
    }

    fn h(list: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
        list.iter()
            .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    /// The head as text with the Date value blanked.
    fn start(
        req: RequestInfo,
        status: &str,
        headers: &[(&str, &str)],
        body_len: Option<u64>,
        force_close: bool,
    ) -> (String, ResponseWriter) {
        let mut out = Vec::new();
        let mut date = DateCache::new();
        let w = ResponseWriter::start(
            &mut out,
            &mut date,
            req,
            status.as_bytes(),
            &h(headers),
            body_len,
            force_close,
        );
        let text = String::from_utf8(out).unwrap();
        let date_start = text.find("Date: ").unwrap() + 6;
        let text = format!("{}DATE{}", &text[..date_start], &text[date_start + 29..]);
        (text, w)
    }

    #[test]
    fn headers_come_in_gunicorn_order_with_hop_by_hop_dropped() {
        let (text, w) = start(
            info(Version::Http11, false, true),
            "200 OK",
            &[
                ("Content-Type", "text/plain"),
                ("Connection", "close"),
                ("Server", "x"),
                ("Date", "y"),
                ("Upgrade", "h2"),
                ("Keep-Alive", "5"),
                ("Transfer-Encoding", "gzip"),
                ("X-A", " v "),
            ],
            None,
            false,
        );
        assert_eq!(
            text,
            "HTTP/1.1 200 OK\r\nServer: ferrocorn\r\nDate: DATE\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\nX-A: v\r\n\r\n"
        );
        assert_eq!(w.framing(), ResponseFraming::Chunked);
    }

    #[test]
    fn a_chunk_sent_from_elsewhere_is_framed_like_a_copied_one() {
        // (request, headers): chunked, Content-Length shorter than the
        // body, close-delimited (HTTP/1.0), and HEAD (no body).
        let cases: [(RequestInfo, &[(&str, &str)]); 4] = [
            (info(Version::Http11, false, true), &[]),
            (
                info(Version::Http11, false, true),
                &[("Content-Length", "10")],
            ),
            (info(Version::Http10, false, false), &[]),
            (info(Version::Http11, true, true), &[]),
        ];
        let chunks: [&[u8]; 3] = [b"0123456", b"", b"789abcdef"];
        for (req, headers) in cases {
            let (_, mut copied) = start(req, "200 OK", headers, None, false);
            let (_, mut external) = start(req, "200 OK", headers, None, false);
            let (mut a, mut b) = (Vec::new(), Vec::new());
            for chunk in chunks {
                copied.body(&mut a, chunk);
                let n = external.body_external(&mut b, chunk.len());
                b.extend_from_slice(&chunk[..n]);
                external.external_end(&mut b, n);
            }
            assert_eq!(copied.finish(&mut a), external.finish(&mut b));
            assert_eq!(
                String::from_utf8_lossy(&a),
                String::from_utf8_lossy(&b),
                "{headers:?}"
            );
        }
    }

    #[test]
    fn status_line_uses_the_request_version() {
        let (text, w) = start(info(Version::Http10, false, false), "200", &[], None, false);
        assert!(text.starts_with("HTTP/1.0 200\r\n"), "{text}");
        assert_eq!(w.framing(), ResponseFraming::CloseDelimited);
        assert!(text.contains("Connection: close\r\n"));
        let (text, _) = start(
            info(Version::Other(1, 2), false, true),
            "204 No Content",
            &[],
            None,
            false,
        );
        assert!(text.starts_with("HTTP/1.2 204 No Content\r\n"), "{text}");
    }

    #[test]
    fn app_content_length_frames_and_truncates() {
        let (text, mut w) = start(
            info(Version::Http11, false, true),
            "200 OK",
            &[("Content-Length", "5")],
            None,
            false,
        );
        assert!(
            text.ends_with("Connection: keep-alive\r\nContent-Length: 5\r\n\r\n"),
            "{text}"
        );
        let mut out = Vec::new();
        w.body(&mut out, b"hel");
        w.body(&mut out, b"lo world");
        assert_eq!(out, b"hello");
        assert!(w.finish(&mut out));
        assert_eq!(out, b"hello");
    }

    #[test]
    fn short_content_length_body_ends_keep_alive() {
        let (_, mut w) = start(
            info(Version::Http11, false, true),
            "200 OK",
            &[("content-length", "10")],
            None,
            false,
        );
        let mut out = Vec::new();
        w.body(&mut out, b"12345");
        assert!(!w.finish(&mut out));
        assert!(!w.keep_alive());
    }

    #[test]
    fn known_body_length_adds_content_length() {
        let (text, w) = start(
            info(Version::Http11, false, true),
            "200 OK",
            &[("X", "1")],
            Some(12),
            false,
        );
        assert!(
            text.ends_with("X: 1\r\nContent-Length: 12\r\n\r\n"),
            "{text}"
        );
        assert_eq!(w.framing(), ResponseFraming::Length(12));
    }

    #[test]
    fn chunked_body_frames_each_write_and_ends_with_zero_chunk() {
        let (_, mut w) = start(
            info(Version::Http11, false, true),
            "200 OK",
            &[],
            None,
            false,
        );
        let mut out = Vec::new();
        w.body(&mut out, b"hello");
        w.body(&mut out, b"");
        w.body(&mut out, &[b'x'; 26]);
        assert!(w.finish(&mut out));
        let mut want = b"5\r\nhello\r\n1a\r\n".to_vec();
        want.extend_from_slice(&[b'x'; 26]);
        want.extend_from_slice(b"\r\n0\r\n\r\n");
        assert_eq!(out, want);
    }

    #[test]
    fn trailers_end_a_chunked_body_and_are_dropped_otherwise() {
        let trailers = [(b"Grpc-Status".to_vec(), b"0".to_vec())];
        let (_, mut w) = start(
            info(Version::Http11, false, true),
            "200 OK",
            &[],
            None,
            false,
        );
        let mut out = Vec::new();
        w.body(&mut out, b"hi");
        assert!(w.finish_with_trailers(&mut out, &trailers));
        assert_eq!(out, b"2\r\nhi\r\n0\r\nGrpc-Status: 0\r\n\r\n");
        let (_, mut w) = start(
            info(Version::Http11, false, true),
            "200 OK",
            &[],
            Some(2),
            false,
        );
        let mut out = Vec::new();
        w.body(&mut out, b"hi");
        assert!(w.finish_with_trailers(&mut out, &trailers));
        assert_eq!(out, b"hi");
    }

    #[test]
    fn bodiless_statuses_drop_the_body_and_strip_length_on_1xx_and_204() {
        for (status, is_head, keeps_length) in [
            ("204 No Content", false, false),
            ("101 Switching", false, false),
            ("304 Not Modified", false, true),
            ("200 OK", true, true),
        ] {
            let (text, mut w) = start(
                info(Version::Http11, is_head, true),
                status,
                &[("Content-Length", "3")],
                Some(3),
                false,
            );
            assert_eq!(w.framing(), ResponseFraming::NoBody, "{status}");
            assert_eq!(
                text.contains("Content-Length: 3"),
                keeps_length,
                "{status}: {text}"
            );
            assert!(text.contains("Connection: keep-alive"), "{status}");
            let mut out = Vec::new();
            w.body(&mut out, b"abc");
            assert!(w.finish(&mut out));
            assert!(out.is_empty());
        }
    }

    #[test]
    fn force_close_and_request_close_answer_connection_close() {
        let (text, mut w) = start(
            info(Version::Http11, false, true),
            "200 OK",
            &[("Content-Length", "0")],
            None,
            true,
        );
        assert!(text.contains("Connection: close\r\n"));
        assert!(!w.finish(&mut Vec::new()));
        let (text, _) = start(
            info(Version::Http11, false, false),
            "200 OK",
            &[("Content-Length", "0")],
            None,
            false,
        );
        assert!(text.contains("Connection: close\r\n"));
    }

    #[test]
    fn invalid_or_repeated_app_content_length_is_dropped() {
        let (text, w) = start(
            info(Version::Http11, false, true),
            "200 OK",
            &[
                ("Content-Length", "x"),
                ("Content-Length", "4"),
                ("Content-Length", "9"),
            ],
            None,
            false,
        );
        assert_eq!(w.framing(), ResponseFraming::Length(4));
        assert_eq!(text.matches("Content-Length").count(), 1, "{text}");
        assert!(text.contains("Content-Length: 4\r\n"));
    }

    #[test]
    fn error_page_matches_gunicorn_format() {
        let mut out = Vec::new();
        error_response(&mut out, 400, "Invalid Request Line '<x>'");
        let page = "<html>\n  <head>\n    <title>Bad Request</title>\n  </head>\n  <body>\n    <h1><p>Bad Request</p></h1>\n    Invalid Request Line &#x27;&lt;x&gt;&#x27;\n  </body>\n</html>\n";
        let want = format!(
            "HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\r\n{page}",
            page.len()
        );
        assert_eq!(String::from_utf8(out).unwrap(), want);
        let mut out = Vec::new();
        error_response(&mut out, 501, "x");
        assert!(out.starts_with(b"HTTP/1.1 501 Not Implemented\r\n"));
    }

    #[test]
    fn hop_by_hop_and_server_fields_are_dropped_in_any_case() {
        for name in [
            "connection",
            "Keep-Alive",
            "PROXY-AUTHENTICATE",
            "proxy-Authorization",
            "TE",
            "trailers",
            "Transfer-Encoding",
            "upgrade",
            "Server",
            "DATE",
        ] {
            assert_eq!(app_field(name.as_bytes()), AppField::Dropped, "{name}");
        }
        assert_eq!(app_field(b"CONTENT-length"), AppField::ContentLength);
        for name in [
            "Content-Type",
            "T",
            "Tf",
            "Dates",
            "Connectionx",
            "X-Server",
        ] {
            assert_eq!(app_field(name.as_bytes()), AppField::Kept, "{name}");
        }
    }

    #[test]
    fn numbers_are_written_in_decimal_and_chunk_sizes_in_hex() {
        for n in [0, 7, 10, 13, 65536, 1_000_000_007, u64::MAX] {
            let mut out = Vec::new();
            put_u64(&mut out, n);
            assert_eq!(out, n.to_string().as_bytes());
        }
        for n in [0, 1, 15, 16, 26, 0xabcdef, usize::MAX] {
            let mut out = Vec::new();
            put_hex(&mut out, n);
            assert_eq!(out, format!("{n:x}").as_bytes());
        }
    }

    #[test]
    fn continue_constant_is_an_interim_response() {
        assert_eq!(crate::http::CONTINUE, b"HTTP/1.1 100 Continue\r\n\r\n");
    }
}
