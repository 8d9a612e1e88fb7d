//! The request head: request line, then the header section, into one owned
//! `Head` with spans.
//!
//! Read incrementally: the parser remembers how far it has looked, so bytes
//! arriving one at a time cost O(n) in total, and the request-line limit is
//! enforced before the line ends. Rules are gunicorn 27's
//! (`Request._parse_python`, `parse_request_line`), error kinds included.

use super::error::{HttpError, HttpErrorKind};
use super::fields::{FieldCtx, FieldSection, Section, FOLDED};
use super::limits::Limits;
use super::scan::{is_token, seek_line_end, LineEnd};
use super::target::split_target;
use super::{Config, Head, Header, Span, Version};

/// A complete head and what the body reader needs from the header section.
#[derive(Debug)]
pub(super) struct ParsedHead {
    pub head: Head,
    /// HTTP/1.1+ request with `Expect: 100-continue`.
    pub expect_continue: bool,
    /// A kept field is Content-Length, Transfer-Encoding or Connection.
    pub framing_fields: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Nothing examined: an empty line may still be skipped.
    Start,
    RequestLine,
    Fields,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct RequestLine {
    method: Span,
    target: Span,
    path: Span,
    query: Span,
    version: Version,
}

#[derive(Debug)]
pub(super) struct HeadParser {
    phase: Phase,
    /// Where the request line starts (after one ignored CRLF).
    line_start: usize,
    /// Where the search for the request line's LF resumes.
    scanned: usize,
    line: Option<RequestLine>,
    fields: FieldSection,
}

fn err(kind: HttpErrorKind, detail: &str) -> HttpError {
    HttpError::new(kind, detail)
}

fn span(start: usize, end: usize) -> Span {
    start as u32..end as u32
}

impl HeadParser {
    pub fn new() -> HeadParser {
        HeadParser {
            phase: Phase::Start,
            line_start: 0,
            scanned: 0,
            line: None,
            fields: FieldSection::default(),
        }
    }

    /// Get ready for the next request, keeping allocations.
    pub fn reset(&mut self) {
        self.phase = Phase::Start;
        self.line_start = 0;
        self.scanned = 0;
        self.line = None;
        self.fields.reset(0);
    }

    /// Parse what `buf` (the bytes from the start of this request) holds.
    /// `Some(end)` once the head is complete: it is `buf[..end]`, leading
    /// empty line included, and `assemble` makes it a `Head`.
    pub fn advance(
        &mut self,
        buf: &[u8],
        cfg: &Config,
        limits: &Limits,
        trusted: bool,
    ) -> Result<Option<usize>, HttpError> {
        if self.phase == Phase::Start {
            match buf {
                [] | [b'\r'] => return Ok(None),
                // RFC 9112 §2.2: one empty line before the request line is ignored.
                [b'\r', b'\n', ..] => self.line_start = 2,
                _ => self.line_start = 0,
            }
            self.scanned = self.line_start;
            self.phase = Phase::RequestLine;
        }
        if self.phase == Phase::RequestLine {
            let start = self.line_start;
            // The line may hold `request_line` bytes plus its CRLF.
            let lf = match seek_line_end(buf, self.scanned, start + limits.request_line + 2) {
                LineEnd::At(lf) => lf,
                LineEnd::NeedMore(scanned) => {
                    self.scanned = scanned;
                    return Ok(None);
                }
                LineEnd::TooLong => {
                    return Err(err(
                        HttpErrorKind::LimitRequestLine,
                        "request line too long",
                    ))
                }
            };
            if lf == start || buf[lf - 1] != b'\r' {
                return Err(err(
                    HttpErrorKind::InvalidRequestLine,
                    "bare LF as line terminator",
                ));
            }
            self.line = Some(parse_request_line(buf, start, lf - 1, cfg)?);
            self.fields.reset(lf + 1);
            self.phase = Phase::Fields;
        }
        let Some(line) = self.line.as_ref() else {
            return Err(err(HttpErrorKind::InvalidRequestLine, "no request line"));
        };
        let section = Section::Head {
            at_least_11: line.version.at_least_11(),
            trusted,
        };
        let ctx = FieldCtx {
            cfg,
            limits,
            section,
        };
        self.fields.advance(buf, &ctx)
    }

    /// Bytes of folded values `assemble` appends to the head's bytes.
    pub fn extra_len(&self) -> usize {
        self.fields.extra.len()
    }

    /// The complete head, from `head_buf`: exactly the `end` bytes that
    /// `advance` reported (the caller's own copy, or its input buffer
    /// itself). Folded values go after them. The parser's list of fields
    /// moves into the head; `give_back` returns it for the next request.
    pub fn assemble(&mut self, mut head_buf: Vec<u8>, cfg: &Config) -> ParsedHead {
        let end = head_buf.len();
        let line = self.line.take().unwrap_or(RequestLine {
            method: 0..0,
            target: 0..0,
            path: 0..0,
            query: 0..0,
            version: Version::Http11,
        });
        head_buf.extend_from_slice(&self.fields.extra);
        if cfg.casefold_http_method {
            head_buf[line.method.start as usize..line.method.end as usize].make_ascii_uppercase();
        }
        let mut headers = std::mem::take(&mut self.fields.headers);
        for h in headers.iter_mut() {
            if h.value.start >= FOLDED {
                let base = end as u32;
                h.value = h.value.start - FOLDED + base..h.value.end - FOLDED + base;
            }
        }
        let head = Head {
            buf: head_buf,
            method: line.method,
            target: line.target,
            path: line.path,
            query: line.query,
            version: line.version,
            headers,
            https_forwarded: self.fields.https_forwarded(),
        };
        ParsedHead {
            head,
            expect_continue: self.fields.expect_continue,
            framing_fields: self.fields.framing_fields,
        }
    }

    /// The list of fields, taken for another parser (`ParserPool`).
    pub fn take_fields(&mut self) -> Vec<Header> {
        std::mem::take(&mut self.fields.headers)
    }

    /// A finished head's list of fields, for the next head to fill
    /// (kept only while the parser has no list of its own).
    pub fn give_back(&mut self, mut headers: Vec<Header>) {
        if self.fields.headers.capacity() == 0 {
            headers.clear();
            self.fields.headers = headers;
        }
    }
}

/// `method SP target SP version`, checked in gunicorn's order.
fn parse_request_line(
    buf: &[u8],
    start: usize,
    end: usize,
    cfg: &Config,
) -> Result<RequestLine, HttpError> {
    match common_request_line(&buf[start..end], start) {
        Some(line) => Ok(line),
        None => any_request_line(buf, start, end, cfg),
    }
}

/// The usual request line, read in one pass: a common upper-case method,
/// an origin-form target (`/...`) of printable ASCII, and `HTTP/1.1` or
/// `HTTP/1.0`. Such a line passes every check of `any_request_line` under
/// any settings, with the same result; `None` for any other line.
fn common_request_line(line: &[u8], start: usize) -> Option<RequestLine> {
    let method_len = match line {
        [b'G', b'E', b'T', b' ', ..] | [b'P', b'U', b'T', b' ', ..] => 3,
        [b'P', b'O', b'S', b'T', b' ', ..] | [b'H', b'E', b'A', b'D', b' ', ..] => 4,
        [b'P', b'A', b'T', b'C', b'H', b' ', ..] => 5,
        [b'D', b'E', b'L', b'E', b'T', b'E', b' ', ..] => 6,
        _ => return None,
    };
    let version_at = line.len().checked_sub(b" HTTP/1.1".len())?;
    let version = match &line[version_at..] {
        b" HTTP/1.1" => Version::Http11,
        b" HTTP/1.0" => Version::Http10,
        _ => return None,
    };
    let target = line.get(method_len + 1..version_at)?;
    if target.first() != Some(&b'/') {
        return None;
    }
    // No SP inside (so the spaces split as Python's `split(b" ", 2)` does),
    // and where the query and the fragment start.
    let mut query = None;
    let mut fragment = None;
    for (i, &b) in target.iter().enumerate() {
        if !(0x21..=0x7e).contains(&b) {
            return None;
        }
        if b == b'?' && query.is_none() {
            query = Some(i);
        } else if b == b'#' && fragment.is_none() {
            fragment = Some(i);
        }
    }
    // `split_target` for a target starting with `/`: no scheme, no netloc.
    let end = fragment.unwrap_or(target.len());
    let (path_end, query) = match query {
        Some(q) if q < end => (q, q + 1..end),
        _ => (end, end..end),
    };
    let target_start = start + method_len + 1;
    Some(RequestLine {
        method: span(start, start + method_len),
        target: span(target_start, start + version_at),
        path: span(target_start, target_start + path_end),
        query: span(target_start + query.start, target_start + query.end),
        version,
    })
}

/// Any request line, checked step by step.
fn any_request_line(
    buf: &[u8],
    start: usize,
    end: usize,
    cfg: &Config,
) -> Result<RequestLine, HttpError> {
    let line = &buf[start..end];
    // Python's `line.split(b" ", 2)`: the version part may hold more spaces.
    let bad_line = || {
        err(
            HttpErrorKind::InvalidRequestLine,
            "request line is not three parts",
        )
    };
    let sp1 = line.iter().position(|&b| b == b' ').ok_or_else(bad_line)?;
    let sp2 = line[sp1 + 1..]
        .iter()
        .position(|&b| b == b' ')
        .map(|i| sp1 + 1 + i)
        .ok_or_else(bad_line)?;
    let method = &line[..sp1];
    let target = &line[sp1 + 1..sp2];
    let version = &line[sp2 + 1..];

    if !cfg.permit_unconventional_http_method
        && (method.iter().any(|&b| b.is_ascii_lowercase() || b == b'#')
            || !(3..=20).contains(&method.len()))
    {
        return Err(err(
            HttpErrorKind::InvalidRequestMethod,
            "unconventional method",
        ));
    }
    if !is_token(method) {
        return Err(err(
            HttpErrorKind::InvalidRequestMethod,
            "method is not a token",
        ));
    }
    let method_is = |name: &[u8]| {
        if cfg.casefold_http_method {
            method.eq_ignore_ascii_case(name)
        } else {
            method == name
        }
    };

    // RFC 9112 §3.2: printable ASCII only; the rest must be percent-encoded.
    if target.is_empty() || target.iter().any(|&b| !(0x21..=0x7e).contains(&b)) {
        return Err(err(
            HttpErrorKind::InvalidRequestLine,
            "target is empty or not printable ASCII",
        ));
    }
    if target == b"*" && !method_is(b"OPTIONS") {
        return Err(err(
            HttpErrorKind::InvalidRequestLine,
            "asterisk-form without OPTIONS",
        ));
    }
    if !method_is(b"CONNECT")
        && target != b"*"
        && target[0] != b'/'
        && !target.windows(3).any(|w| w == b"://")
    {
        return Err(err(
            HttpErrorKind::InvalidRequestLine,
            "authority-form without CONNECT",
        ));
    }
    let parts = split_target(target)
        .map_err(|()| err(HttpErrorKind::InvalidRequestLine, "target does not split"))?;

    let version = match version {
        [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            (major - b'0', minor - b'0')
        }
        _ => {
            return Err(err(
                HttpErrorKind::InvalidHttpVersion,
                "version is not HTTP/d.d",
            ))
        }
    };
    if version.0 != 1 && !cfg.permit_unconventional_http_version {
        return Err(err(
            HttpErrorKind::InvalidHttpVersion,
            "unsupported HTTP version",
        ));
    }

    let target_start = start + sp1 + 1;
    Ok(RequestLine {
        method: span(start, start + sp1),
        target: span(target_start, start + sp2),
        path: span(
            target_start + parts.path.start,
            target_start + parts.path.end,
        ),
        query: span(
            target_start + parts.query.start,
            target_start + parts.query.end,
        ),
        version: Version::from_digits(version.0, version.1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `advance`, and `assemble` from a copy once the head is complete.
    fn parse_once(
        p: &mut HeadParser,
        input: &[u8],
        cfg: &Config,
        limits: &Limits,
    ) -> Result<Option<ParsedHead>, HttpError> {
        let end = p.advance(input, cfg, limits, true)?;
        Ok(end.map(|end| p.assemble(input[..end].to_vec(), cfg)))
    }

    /// Parse `input` fed whole and fed one more byte at a time; both must agree.
    fn parse_with(input: &[u8], cfg: &Config) -> Result<Option<ParsedHead>, HttpErrorKind> {
        let limits = Limits::from_config(cfg);
        let mut whole = HeadParser::new();
        let whole_result = parse_once(&mut whole, input, cfg, &limits).map_err(|e| e.kind);
        let mut split = HeadParser::new();
        let mut split_result = Ok(None);
        for n in 0..=input.len() {
            split_result = parse_once(&mut split, &input[..n], cfg, &limits).map_err(|e| e.kind);
            if !matches!(split_result, Ok(None)) {
                break;
            }
        }
        fn summary(
            r: &Result<Option<ParsedHead>, HttpErrorKind>,
        ) -> Result<Option<(Vec<u8>, usize)>, HttpErrorKind> {
            r.as_ref()
                .map(|p| {
                    p.as_ref()
                        .map(|p| (p.head.buf.clone(), p.head.headers.len()))
                })
                .map_err(Clone::clone)
        }
        assert_eq!(
            summary(&whole_result),
            summary(&split_result),
            "split feeding changed the result"
        );
        whole_result
    }

    fn parse(input: &[u8]) -> Result<Head, HttpErrorKind> {
        parse_with(input, &Config::default()).map(|p| p.expect("head is complete").head)
    }

    fn kind(input: &[u8]) -> HttpErrorKind {
        parse(input).expect_err("head is refused")
    }

    #[test]
    fn request_line_parts_are_spans_into_the_head() {
        let head = parse(b"GET /a%20b?x=1#frag HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
        assert_eq!(head.method(), b"GET");
        assert_eq!(head.target(), b"/a%20b?x=1#frag");
        assert_eq!(head.path(), b"/a%20b");
        assert_eq!(head.query(), b"x=1");
        assert_eq!(head.version, Version::Http11);
        assert_eq!(
            head.header_pairs().collect::<Vec<_>>(),
            vec![(&b"Host"[..], &b"h"[..])]
        );
    }

    #[test]
    fn common_request_lines_read_as_the_general_parser_does() {
        let configs = [
            Config::default(),
            Config {
                casefold_http_method: true,
                permit_unconventional_http_method: true,
                permit_unconventional_http_version: true,
                ..Config::default()
            },
        ];
        let methods = [
            "GET", "PUT", "POST", "HEAD", "PATCH", "DELETE", "OPTIONS", "get", "GETS", "Get",
        ];
        let targets = [
            "/",
            "/a/b",
            "/a?x=1&y=2",
            "/a#f",
            "/a#f?x",
            "/a?q#f",
            "/a?q?r#f#g",
            "?x",
            "//evil.com/x?q",
            "/%20%zz",
            "/a b",
            "/a\x7f",
            "/a\u{e9}",
            "/a\tb",
            "/#\x01",
            "",
            "*",
            "http://h/p?q",
            "example.com:443",
        ];
        let versions = [
            "HTTP/1.1",
            "HTTP/1.0",
            "HTTP/1.2",
            "HTTP/2.0",
            "http/1.1",
            "HTTP/1.1 ",
        ];
        let mut common = 0;
        for method in methods {
            for target in targets {
                for version in versions {
                    for sep in [" ", "  "] {
                        let line = format!("{method}{sep}{target} {version}");
                        let mut buf = b"\r\n".to_vec();
                        buf.extend_from_slice(line.as_bytes());
                        let Some(fast) = common_request_line(&buf[2..], 2) else {
                            continue;
                        };
                        common += 1;
                        for cfg in &configs {
                            assert_eq!(
                                any_request_line(&buf, 2, buf.len(), cfg).map_err(|e| e.kind),
                                Ok(fast.clone()),
                                "{line:?}"
                            );
                        }
                    }
                }
            }
        }
        // GET..DELETE × the origin-form targets of printable ASCII × 1.1 and 1.0.
        assert_eq!(common, 6 * 9 * 2);
        let wrk = b"GET / HTTP/1.1";
        assert!(common_request_line(wrk, 0).is_some());
    }

    #[test]
    fn one_leading_empty_line_is_ignored_two_are_refused() {
        assert_eq!(
            parse(b"\r\nGET / HTTP/1.1\r\n\r\n").unwrap().method(),
            b"GET"
        );
        assert_eq!(
            kind(b"\r\n\r\nGET / HTTP/1.1\r\n\r\n"),
            HttpErrorKind::InvalidRequestLine
        );
        assert_eq!(
            kind(b"\nGET / HTTP/1.1\r\n\r\n"),
            HttpErrorKind::InvalidRequestLine
        );
    }

    #[test]
    fn bare_lf_in_request_line_is_refused() {
        assert_eq!(
            kind(b"GET / HTTP/1.1\n\r\n"),
            HttpErrorKind::InvalidRequestLine
        );
        assert_eq!(
            kind(b"GET /\n HTTP/1.1\r\n\r\n"),
            HttpErrorKind::InvalidRequestLine
        );
    }

    #[test]
    fn request_line_needs_exactly_single_space_separators() {
        assert_eq!(
            kind(b"GET HTTP/1.1\r\n\r\n"),
            HttpErrorKind::InvalidRequestLine
        );
        assert_eq!(
            kind(b"GET  / HTTP/1.1\r\n\r\n"),
            HttpErrorKind::InvalidRequestLine
        );
        assert_eq!(
            kind(b"GET / HTTP/1.1 x\r\n\r\n"),
            HttpErrorKind::InvalidHttpVersion
        );
    }

    #[test]
    fn method_must_be_a_conventional_token() {
        for bad in [
            &b"get"[..],
            b"GE",
            b"ABCDEFGHIJKLMNOPQRSTU",
            b"GET#",
            b"bla:rgh",
            b"-bl",
            b"GET\xc3\x9f",
            b"GET\x00X",
        ] {
            let mut req = bad.to_vec();
            req.extend_from_slice(b" / HTTP/1.1\r\n\r\n");
            assert_eq!(
                kind(&req),
                HttpErrorKind::InvalidRequestMethod,
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            parse(b"-BLARGH /foo HTTP/1.1\r\n\r\n").unwrap().method(),
            b"-BLARGH"
        );
        assert_eq!(
            parse(b"ABCDEFGHIJKLMNOPQRST / HTTP/1.1\r\n\r\n")
                .unwrap()
                .method()
                .len(),
            20
        );
    }

    #[test]
    fn unconventional_methods_pass_when_permitted_and_casefold_uppercases() {
        let permit = Config {
            permit_unconventional_http_method: true,
            ..Config::default()
        };
        let head = parse_with(b"-blargh /foo HTTP/1.1\r\n\r\n", &permit)
            .unwrap()
            .unwrap()
            .head;
        assert_eq!(head.method(), b"-blargh");
        let fold = Config {
            casefold_http_method: true,
            ..permit.clone()
        };
        let head = parse_with(b"-blargh /foo HTTP/1.1\r\n\r\n", &fold)
            .unwrap()
            .unwrap()
            .head;
        assert_eq!(head.method(), b"-BLARGH");
        // Still a token.
        assert_eq!(
            parse_with(b"a:b / HTTP/1.1\r\n\r\n", &permit).map(|p| p.is_some()),
            Err(HttpErrorKind::InvalidRequestMethod)
        );
    }

    #[test]
    fn target_must_be_printable_ascii_in_a_valid_form() {
        assert_eq!(
            kind(b"GET /\xe9 HTTP/1.1\r\n\r\n"),
            HttpErrorKind::InvalidRequestLine
        );
        assert_eq!(
            kind(b"GET /a\x00b HTTP/1.1\r\n\r\n"),
            HttpErrorKind::InvalidRequestLine
        );
        assert_eq!(
            kind(b"GET foo/bar HTTP/1.1\r\n\r\n"),
            HttpErrorKind::InvalidRequestLine
        );
        assert_eq!(
            kind(b"GET * HTTP/1.1\r\n\r\n"),
            HttpErrorKind::InvalidRequestLine
        );
        assert_eq!(
            kind(b"GET example.com:443 HTTP/1.1\r\n\r\n"),
            HttpErrorKind::InvalidRequestLine
        );
        assert_eq!(
            kind(b"GET http://[::1/x HTTP/1.1\r\n\r\n"),
            HttpErrorKind::InvalidRequestLine
        );
        assert_eq!(parse(b"OPTIONS * HTTP/1.1\r\n\r\n").unwrap().path(), b"*");
        let connect = parse(b"CONNECT example.com:443 HTTP/1.1\r\n\r\n").unwrap();
        assert_eq!(
            (connect.target(), connect.path()),
            (&b"example.com:443"[..], &b"443"[..])
        );
        assert_eq!(
            parse(b"CONNECT [::1]:443 HTTP/1.1\r\n\r\n").unwrap().path(),
            b"[::1]:443"
        );
        assert_eq!(
            parse(b"GET http://h/p?q HTTP/1.1\r\n\r\n").unwrap().path(),
            b"/p"
        );
    }

    #[test]
    fn versions_are_http_1_x_unless_permitted() {
        assert_eq!(
            parse(b"GET / HTTP/1.0\r\n\r\n").unwrap().version,
            Version::Http10
        );
        let v12 = parse(b"GET / HTTP/1.2\r\n\r\n").unwrap().version;
        assert_eq!((v12, v12.as_str()), (Version::Other(1, 2), "HTTP/1.2"));
        for bad in [
            &b"HTTP/0.99"[..],
            b"HTTP/2.0",
            b"HTTP/111",
            b"FTP/1.1",
            b"HTTP/1.1 ",
            b"http/1.1",
            b"HTTP/0.9",
        ] {
            let mut req = b"GET / ".to_vec();
            req.extend_from_slice(bad);
            req.extend_from_slice(b"\r\n\r\n");
            assert_eq!(
                kind(&req),
                HttpErrorKind::InvalidHttpVersion,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let permit = Config {
            permit_unconventional_http_version: true,
            ..Config::default()
        };
        let head = parse_with(b"GET / HTTP/2.0\r\n\r\n", &permit)
            .unwrap()
            .unwrap()
            .head;
        assert_eq!(head.version.as_str(), "HTTP/2.0");
    }

    #[test]
    fn request_line_limit_is_414_and_enforced_before_the_line_ends() {
        let cfg = Config {
            limit_request_line: 20,
            ..Config::default()
        };
        let limits = Limits::from_config(&cfg);
        let at_limit = b"GET /aaaaaaaaaaaaaa HTTP/1.1\r\n\r\n";
        assert_eq!(at_limit.iter().position(|&b| b == b'\r'), Some(28));
        let cfg28 = Config {
            limit_request_line: 28,
            ..Config::default()
        };
        assert!(parse_with(at_limit, &cfg28).unwrap().is_some());
        let cfg27 = Config {
            limit_request_line: 27,
            ..Config::default()
        };
        assert_eq!(
            parse_with(at_limit, &cfg27).map(|_| ()),
            Err(HttpErrorKind::LimitRequestLine)
        );
        // An endless line is refused once it cannot fit any more.
        let mut p = HeadParser::new();
        assert!(matches!(
            p.advance(&[b'a'; 21], &cfg, &limits, true),
            Ok(None)
        ));
        assert_eq!(
            p.advance(&[b'a'; 22], &cfg, &limits, true)
                .map(|_| ())
                .map_err(|e| e.kind),
            Err(HttpErrorKind::LimitRequestLine)
        );
    }

    #[test]
    fn reset_parser_reads_the_next_head() {
        let cfg = Config::default();
        let limits = Limits::from_config(&cfg);
        let mut p = HeadParser::new();
        let first = parse_once(&mut p, b"GET /a HTTP/1.1\r\nX: 1\r\n\r\n", &cfg, &limits)
            .unwrap()
            .unwrap();
        assert_eq!(first.head.path(), b"/a");
        p.reset();
        let second = parse_once(&mut p, b"GET /b HTTP/1.1\r\n\r\n", &cfg, &limits)
            .unwrap()
            .unwrap();
        assert_eq!(
            (second.head.path(), second.head.headers.len()),
            (&b"/b"[..], 0)
        );
    }

    #[test]
    fn folded_values_are_readable_through_the_head() {
        let cfg = Config {
            permit_obsolete_folding: true,
            ..Config::default()
        };
        let head = parse_with(
            b"GET / HTTP/1.1\r\nLong: one\r\n two\r\nHost: h\r\n\r\n",
            &cfg,
        )
        .unwrap()
        .unwrap()
        .head;
        let pairs: Vec<_> = head.header_pairs().collect();
        assert_eq!(
            pairs,
            vec![(&b"Long"[..], &b"one two"[..]), (&b"Host"[..], &b"h"[..])]
        );
    }
}
