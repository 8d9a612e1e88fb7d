//! A field section (the headers of a request, or the trailers of a chunked
//! body), read line by line as bytes arrive.
//!
//! The checks are gunicorn 27's `parse_headers` and `_apply_header_policy`,
//! in the same order per line. Each decision depends only on bytes already
//! seen, so a section fed in pieces ends exactly as if fed whole; the size
//! limits are enforced while a line is still incomplete.

use super::error::{HttpError, HttpErrorKind};
use super::limits::Limits;
use super::scan::{
    eq_lower, has_value_ctl, is_ows, seek_line_end, token_run, trim_ows_range, LineEnd,
};
use super::{Config, Header, HeaderMapPolicy};

/// Spans of values joined from obs-fold lines point into `FieldSection::extra`
/// at this offset until the head is assembled (see `Header` remapping).
pub(super) const FOLDED: u32 = 1 << 31;

/// Fields gunicorn refuses in a trailer section (RFC 9110 §6.5.1).
const FORBIDDEN_TRAILERS: [&[u8]; 6] = [
    b"host",
    b"content-length",
    b"transfer-encoding",
    b"trailer",
    b"authorization",
    b"te",
];

/// Whether `name` may not be sent in a response's trailers: the fields
/// refused in request trailers, pseudo-header names, and the connection-
/// specific fields HTTP/2 forbids anywhere (RFC 9113 8.2.2).
pub fn forbidden_in_trailers(name: &[u8]) -> bool {
    const CONNECTION_SPECIFIC: [&[u8]; 4] = [
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"upgrade",
    ];
    name.first() == Some(&b':')
        || FORBIDDEN_TRAILERS
            .iter()
            .chain(CONNECTION_SPECIFIC.iter())
            .any(|f| name.eq_ignore_ascii_case(f))
}

/// What the section belongs to: head fields carry policy that trailers do not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Section {
    /// Request headers. `trusted`: the peer may set scheme and forwarder headers.
    Head {
        at_least_11: bool,
        trusted: bool,
    },
    Trailer,
}

pub(super) struct FieldCtx<'a> {
    pub cfg: &'a Config,
    pub limits: &'a Limits,
    pub section: Section,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LineKind {
    Field,
    Continuation,
}

/// The last field line seen: it may still get obs-fold continuation lines.
#[derive(Debug)]
struct Pending {
    name: (usize, usize),
    /// In the input, or in `extra` when `folded`.
    value: (usize, usize),
    folded: bool,
    /// gunicorn's `header_length`: every line of the field with its CRLF.
    length: usize,
    /// The name holds an `_`.
    underscore: bool,
}

#[derive(Debug, Default)]
pub(super) struct FieldSection {
    /// Where the section starts in the input.
    start: usize,
    /// Where the current line starts.
    line: usize,
    /// Where the search for the current line's LF resumes.
    scanned: usize,
    kind: Option<LineKind>,
    pending: Option<Pending>,
    /// Kept fields in arrival order (spans into the input, or `FOLDED` + offset into `extra`).
    pub headers: Vec<Header>,
    /// Values joined from obs-fold lines.
    pub extra: Vec<u8>,
    seen_host: bool,
    seen_content_type: bool,
    /// Whether the first secure-scheme header said https.
    scheme_https: Option<bool>,
    pub expect_continue: bool,
    /// A kept field is Content-Length, Transfer-Encoding or Connection
    /// (otherwise the body framing needs no look at the fields).
    pub framing_fields: bool,
}

fn err(kind: HttpErrorKind, detail: &str) -> HttpError {
    HttpError::new(kind, detail)
}

impl FieldSection {
    /// Start a section at `start` of the input, keeping allocations.
    pub fn reset(&mut self, start: usize) {
        self.start = start;
        self.line = start;
        self.scanned = start;
        self.kind = None;
        self.pending = None;
        self.headers.clear();
        self.extra.clear();
        self.seen_host = false;
        self.seen_content_type = false;
        self.scheme_https = None;
        self.expect_continue = false;
        self.framing_fields = false;
    }

    /// `Some(true)` when a trusted peer said https through `secure_scheme_headers`.
    pub fn https_forwarded(&self) -> bool {
        self.scheme_https == Some(true)
    }

    /// Read the lines now available in `buf` (the whole input, from offset 0).
    /// Returns the offset just past the empty line that ends the section.
    pub fn advance(&mut self, buf: &[u8], ctx: &FieldCtx<'_>) -> Result<Option<usize>, HttpError> {
        loop {
            let start = self.line;
            let Some(&first) = buf.get(start) else {
                return Ok(None);
            };
            if first == b'\r' {
                let Some(&second) = buf.get(start + 1) else {
                    return Ok(None);
                };
                if second == b'\n' {
                    if let Some(p) = self.pending.take() {
                        self.finish_field(p, buf, ctx)?;
                    }
                    return Ok(Some(start + 2));
                }
            }
            if first == b'\n' {
                return Err(err(
                    HttpErrorKind::InvalidHeader,
                    "bare LF as line terminator",
                ));
            }
            let kind = match self.kind {
                Some(kind) => kind,
                None => {
                    let kind = self.begin_line(first, buf, ctx)?;
                    self.kind = Some(kind);
                    kind
                }
            };
            let budget = match (kind, &self.pending) {
                (LineKind::Continuation, Some(p)) => ctx.limits.field_size.saturating_sub(p.length),
                _ => ctx.limits.field_size,
            };
            let window_end = (start + budget).min(self.start + ctx.limits.block);
            let lf = match seek_line_end(buf, self.scanned.max(start), window_end) {
                LineEnd::At(lf) => lf,
                LineEnd::NeedMore(scanned) => {
                    self.scanned = scanned;
                    return Ok(None);
                }
                LineEnd::TooLong => {
                    return Err(err(
                        HttpErrorKind::LimitRequestHeaders,
                        "field line too large",
                    ))
                }
            };
            if buf[lf - 1] != b'\r' {
                return Err(err(
                    HttpErrorKind::InvalidHeader,
                    "bare LF as line terminator",
                ));
            }
            self.line = lf + 1;
            self.scanned = lf + 1;
            self.kind = None;
            match kind {
                LineKind::Field => self.read_field_line(buf, start, lf - 1, ctx)?,
                LineKind::Continuation => self.read_continuation(buf, start, lf - 1),
            }
        }
    }

    /// The first byte of a line decides whether it continues the last field;
    /// a new field first finishes the previous one and counts against the limit.
    fn begin_line(
        &mut self,
        first: u8,
        buf: &[u8],
        ctx: &FieldCtx<'_>,
    ) -> Result<LineKind, HttpError> {
        if is_ows(first) && self.pending.is_some() {
            if !ctx.cfg.permit_obsolete_folding {
                return Err(err(HttpErrorKind::ObsoleteFolding, "obsolete line folding"));
            }
            return Ok(LineKind::Continuation);
        }
        if let Some(p) = self.pending.take() {
            self.finish_field(p, buf, ctx)?;
        }
        if self.headers.len() >= ctx.limits.fields {
            return Err(err(HttpErrorKind::LimitRequestHeaders, "too many fields"));
        }
        Ok(LineKind::Field)
    }

    fn read_field_line(
        &mut self,
        buf: &[u8],
        start: usize,
        end: usize,
        ctx: &FieldCtx<'_>,
    ) -> Result<(), HttpError> {
        let line = &buf[start..end];
        // One pass finds the colon and how far the bytes before it are tchar.
        let (token_run, underscore) = token_run(line);
        let colon = if line.get(token_run) == Some(&b':') {
            token_run
        } else {
            line.iter().position(|&b| b == b':').unwrap_or(0)
        };
        if colon == 0 {
            return Err(err(
                HttpErrorKind::InvalidHeader,
                "field line without a name and colon",
            ));
        }
        let mut name_end = colon;
        if ctx.cfg.strip_header_spaces {
            while name_end > 0 && is_ows(line[name_end - 1]) {
                name_end -= 1;
            }
        }
        if name_end == 0 || token_run < name_end {
            return Err(err(
                HttpErrorKind::InvalidHeaderName,
                "field name is not a token",
            ));
        }
        let name = &line[..name_end];
        if ctx.section == Section::Trailer
            && FORBIDDEN_TRAILERS
                .iter()
                .any(|f| name.eq_ignore_ascii_case(f))
        {
            return Err(err(
                HttpErrorKind::InvalidHeaderName,
                "field not allowed in trailers",
            ));
        }
        let (vs, ve) = trim_ows_range(&line[colon + 1..]);
        let value_start = start + colon + 1;
        self.pending = Some(Pending {
            name: (start, start + name_end),
            value: (value_start + vs, value_start + ve),
            folded: false,
            length: end - start + 2,
            // The name is the token run (the byte after it is `:` or OWS).
            underscore,
        });
        Ok(())
    }

    /// gunicorn joins the stripped pieces of a folded value with one space.
    fn read_continuation(&mut self, buf: &[u8], start: usize, end: usize) {
        let Some(p) = self.pending.as_mut() else {
            return;
        };
        p.length += end - start + 2;
        if !p.folded {
            let joined_start = self.extra.len();
            self.extra.extend_from_slice(&buf[p.value.0..p.value.1]);
            p.value = (joined_start, self.extra.len());
            p.folded = true;
        }
        let (s, e) = trim_ows_range(&buf[start..end]);
        self.extra.push(b' ');
        self.extra.extend_from_slice(&buf[start + s..start + e]);
        p.value.1 = self.extra.len();
    }

    /// The checks gunicorn makes once a field is complete, then the header policy.
    fn finish_field(
        &mut self,
        p: Pending,
        buf: &[u8],
        ctx: &FieldCtx<'_>,
    ) -> Result<(), HttpError> {
        let value = if p.folded {
            &self.extra[p.value.0..p.value.1]
        } else {
            &buf[p.value.0..p.value.1]
        };
        if has_value_ctl(value) {
            return Err(err(
                HttpErrorKind::InvalidHeader,
                "control character in field value",
            ));
        }
        let name = &buf[p.name.0..p.name.1];
        if eq_lower(name, b"host") {
            if self.seen_host {
                return Err(err(HttpErrorKind::InvalidHeader, "duplicate Host"));
            }
            self.seen_host = true;
        } else if eq_lower(name, b"content-type") {
            if self.seen_content_type {
                return Err(err(HttpErrorKind::InvalidHeader, "duplicate Content-Type"));
            }
            self.seen_content_type = true;
        }
        let trusted = match ctx.section {
            Section::Head {
                at_least_11,
                trusted,
            } => {
                if eq_lower(name, b"expect") {
                    if !value.eq_ignore_ascii_case(b"100-continue") {
                        return Err(err(
                            HttpErrorKind::ExpectationFailed,
                            "unsupported expectation",
                        ));
                    }
                    // RFC 9110 §10.1.1: ignored on HTTP/1.0.
                    self.expect_continue |= at_least_11;
                }
                if trusted {
                    apply_scheme_header(&mut self.scheme_https, name, value, ctx.cfg)?;
                }
                trusted
            }
            Section::Trailer => false,
        };
        if p.underscore {
            let forwarded = trusted
                && ctx
                    .cfg
                    .forwarder_headers
                    .iter()
                    .any(|f| f == "*" || name.eq_ignore_ascii_case(f.as_bytes()));
            if !forwarded {
                match ctx.cfg.header_map {
                    HeaderMapPolicy::Dangerous => {}
                    HeaderMapPolicy::Drop => return Ok(()),
                    HeaderMapPolicy::Refuse => {
                        return Err(err(
                            HttpErrorKind::InvalidHeaderName,
                            "underscore in field name",
                        ));
                    }
                }
            }
        }
        let value_span = if p.folded {
            FOLDED + p.value.0 as u32..FOLDED + p.value.1 as u32
        } else {
            p.value.0 as u32..p.value.1 as u32
        };
        self.framing_fields |= eq_lower(name, b"content-length")
            || eq_lower(name, b"transfer-encoding")
            || eq_lower(name, b"connection");
        self.headers.push(Header {
            name: p.name.0 as u32..p.name.1 as u32,
            value: value_span,
        });
        Ok(())
    }
}

/// The first matching secure-scheme header decides; a later one that
/// disagrees makes the request ambiguous.
fn apply_scheme_header(
    scheme_https: &mut Option<bool>,
    name: &[u8],
    value: &[u8],
    cfg: &Config,
) -> Result<(), HttpError> {
    let Some((_, https_value)) = cfg
        .secure_scheme_headers
        .iter()
        .find(|(n, _)| name.eq_ignore_ascii_case(n.as_bytes()))
    else {
        return Ok(());
    };
    let https = value == https_value.as_bytes();
    match *scheme_https {
        Some(previous) if previous != https => Err(err(
            HttpErrorKind::InvalidSchemeHeaders,
            "contradictory scheme headers",
        )),
        Some(_) => Ok(()),
        None => {
            *scheme_https = Some(https);
            Ok(())
        }
    }
}

/// The field rules of a request head that are not HTTP/1.1 syntax, for a
/// head whose fields came already decoded (HTTP/2): a name with an
/// underscore follows `header_map` (unless a trusted peer sends one of
/// `forwarder_headers`), and a trusted peer's `secure_scheme_headers` set
/// `https_forwarded` (the first decides; a disagreeing one is an error).
pub fn apply_field_policy(
    head: &mut super::Head,
    trusted: bool,
    cfg: &Config,
) -> Result<(), HttpError> {
    let forwarder = |name: &[u8]| {
        trusted
            && cfg
                .forwarder_headers
                .iter()
                .any(|f| f == "*" || name.eq_ignore_ascii_case(f.as_bytes()))
    };
    let at = |span: &super::Span| span.start as usize..span.end as usize;
    if cfg.header_map != HeaderMapPolicy::Dangerous {
        let buf = &head.buf;
        let dropped = |h: &super::Header| {
            let name = &buf[at(&h.name)];
            name.contains(&b'_') && !forwarder(name)
        };
        if head.headers.iter().any(dropped) {
            if cfg.header_map == HeaderMapPolicy::Refuse {
                return Err(err(
                    HttpErrorKind::InvalidHeaderName,
                    "underscore in field name",
                ));
            }
            head.headers.retain(|h| !dropped(h));
        }
    }
    let mut https = None;
    if trusted {
        for h in &head.headers {
            apply_scheme_header(
                &mut https,
                &head.buf[at(&h.name)],
                &head.buf[at(&h.value)],
                cfg,
            )?;
        }
    }
    head.https_forwarded = https == Some(true);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoded_head(fields: &[(&str, &str)]) -> super::super::Head {
        let mut buf = b"GET/".to_vec();
        let mut headers = Vec::new();
        for (n, v) in fields {
            let s = buf.len() as u32;
            buf.extend_from_slice(n.as_bytes());
            let m = buf.len() as u32;
            buf.extend_from_slice(v.as_bytes());
            headers.push(super::super::Header {
                name: s..m,
                value: m..buf.len() as u32,
            });
        }
        super::super::Head {
            buf,
            method: 0..3,
            target: 3..4,
            path: 3..4,
            query: 4..4,
            version: super::super::Version::Other(2, 0),
            headers,
            https_forwarded: false,
        }
    }

    #[test]
    fn decoded_fields_follow_the_head_policy() {
        let cfg = Config::default();
        let policy = |fields: &[(&str, &str)], trusted: bool, cfg: &Config| {
            let mut head = decoded_head(fields);
            apply_field_policy(&mut head, trusted, cfg)
                .map(|()| (head.https_forwarded, head.headers.len()))
                .map_err(|e| e.kind)
        };
        let proto = ("x-forwarded-proto", "https");
        assert_eq!(policy(&[proto], true, &cfg), Ok((true, 1)));
        assert_eq!(policy(&[proto], false, &cfg), Ok((false, 1)));
        assert_eq!(
            policy(&[proto, ("x-forwarded-ssl", "off")], true, &cfg),
            Err(HttpErrorKind::InvalidSchemeHeaders)
        );
        // Underscores: dropped by default, kept for a trusted forwarder header.
        let under = [
            ("x_user", "admin"),
            ("script_name", "/app"),
            ("accept", "*/*"),
        ];
        assert_eq!(policy(&under, false, &cfg), Ok((false, 1)));
        assert_eq!(policy(&under, true, &cfg), Ok((false, 2)));
        let refuse = Config {
            header_map: HeaderMapPolicy::Refuse,
            ..Config::default()
        };
        assert_eq!(
            policy(&under, false, &refuse),
            Err(HttpErrorKind::InvalidHeaderName)
        );
    }

    type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

    /// Feed `input` whole and then growing one byte at a time; both must agree.
    /// Returns the end offset and the kept (name, value) pairs.
    fn run(input: &[u8], cfg: &Config, section: Section) -> Result<(usize, Pairs), HttpErrorKind> {
        let limits = Limits::from_config(cfg);
        let ctx = FieldCtx {
            cfg,
            limits: &limits,
            section,
        };
        let collect = |s: &FieldSection| -> Pairs {
            let slice = |span: &std::ops::Range<u32>| {
                if span.start >= FOLDED {
                    s.extra[(span.start - FOLDED) as usize..(span.end - FOLDED) as usize].to_vec()
                } else {
                    input[span.start as usize..span.end as usize].to_vec()
                }
            };
            s.headers
                .iter()
                .map(|h| (slice(&h.name), slice(&h.value)))
                .collect()
        };
        let mut whole = FieldSection::default();
        let whole_result = whole
            .advance(input, &ctx)
            .map_err(|e| e.kind)
            .map(|end| end.map(|end| (end, collect(&whole))));
        let mut split = FieldSection::default();
        let mut split_result = Ok(None);
        for n in 0..=input.len() {
            split_result = split.advance(&input[..n], &ctx).map_err(|e| e.kind);
            if !matches!(split_result, Ok(None)) {
                break;
            }
        }
        let split_result = split_result.map(|end| end.map(|end| (end, collect(&split))));
        assert_eq!(
            whole_result, split_result,
            "split feeding changed the result"
        );
        whole_result.map(|r| r.expect("section is complete"))
    }

    fn head() -> Section {
        Section::Head {
            at_least_11: true,
            trusted: true,
        }
    }

    fn pairs(list: &[(&str, &str)]) -> Pairs {
        list.iter()
            .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn values_are_trimmed_and_order_kept() {
        let cfg = Config::default();
        let (end, got) = run(b"A:  1 \t\r\nB:\t2\r\nA: 3\r\n\r\nrest", &cfg, head()).unwrap();
        assert_eq!(end, 23);
        assert_eq!(got, pairs(&[("A", "1"), ("B", "2"), ("A", "3")]));
    }

    #[test]
    fn empty_section_ends_at_first_crlf() {
        assert_eq!(
            run(b"\r\n", &Config::default(), head()).unwrap(),
            (2, vec![])
        );
    }

    #[test]
    fn folded_lines_are_refused_unless_permitted_then_joined_with_one_space() {
        let input = b"Long: one\r\n two\r\n\t  three \r\nHost: h\r\n\r\n";
        assert_eq!(
            run(input, &Config::default(), head()),
            Err(HttpErrorKind::ObsoleteFolding)
        );
        let cfg = Config {
            permit_obsolete_folding: true,
            ..Config::default()
        };
        let (_, got) = run(input, &cfg, head()).unwrap();
        assert_eq!(got, pairs(&[("Long", "one two three"), ("Host", "h")]));
    }

    #[test]
    fn leading_whitespace_on_the_first_line_is_a_bad_name_not_a_fold() {
        let cfg = Config {
            permit_obsolete_folding: true,
            ..Config::default()
        };
        assert_eq!(
            run(b" X: y\r\n\r\n", &cfg, head()),
            Err(HttpErrorKind::InvalidHeaderName)
        );
    }

    #[test]
    fn whitespace_before_colon_is_refused_unless_stripping() {
        let input = b"Content-Length : 3\r\n\r\n";
        assert_eq!(
            run(input, &Config::default(), head()),
            Err(HttpErrorKind::InvalidHeaderName)
        );
        let cfg = Config {
            strip_header_spaces: true,
            ..Config::default()
        };
        assert_eq!(
            run(input, &cfg, head()).unwrap().1,
            pairs(&[("Content-Length", "3")])
        );
    }

    #[test]
    fn line_without_colon_or_name_is_invalid_header() {
        let cfg = Config::default();
        assert_eq!(
            run(b"NoColon\r\n\r\n", &cfg, head()),
            Err(HttpErrorKind::InvalidHeader)
        );
        assert_eq!(
            run(b": v\r\n\r\n", &cfg, head()),
            Err(HttpErrorKind::InvalidHeader)
        );
    }

    #[test]
    fn control_bytes_in_values_are_refused_but_obs_text_kept() {
        let cfg = Config::default();
        for bad in [
            &b"X: a\x00b\r\n\r\n"[..],
            b"X: a\x07\r\n\r\n",
            b"X: a\x7f\r\n\r\n",
            b"X: a\rb\r\n\r\n",
        ] {
            assert_eq!(run(bad, &cfg, head()), Err(HttpErrorKind::InvalidHeader));
        }
        let (_, got) = run(b"X: caf\xc3\xa9\r\n\r\n", &cfg, head()).unwrap();
        assert_eq!(got, vec![(b"X".to_vec(), b"caf\xc3\xa9".to_vec())]);
    }

    #[test]
    fn bare_lf_is_invalid_header() {
        let cfg = Config::default();
        assert_eq!(
            run(b"X: a\nY: b\r\n\r\n", &cfg, head()),
            Err(HttpErrorKind::InvalidHeader)
        );
        assert_eq!(
            run(b"X: a\r\n\n", &cfg, head()),
            Err(HttpErrorKind::InvalidHeader)
        );
    }

    #[test]
    fn duplicate_host_or_content_type_is_invalid() {
        let cfg = Config::default();
        assert_eq!(
            run(b"Host: a\r\nhost: b\r\n\r\n", &cfg, head()),
            Err(HttpErrorKind::InvalidHeader)
        );
        assert_eq!(
            run(b"Content-Type: a\r\nContent-Type: a\r\n\r\n", &cfg, head()),
            Err(HttpErrorKind::InvalidHeader)
        );
    }

    #[test]
    fn expect_other_than_100_continue_fails_and_continue_is_noted() {
        let cfg = Config::default();
        assert_eq!(
            run(b"Expect: foo\r\n\r\n", &cfg, head()),
            Err(HttpErrorKind::ExpectationFailed)
        );
        let limits = Limits::from_config(&cfg);
        let mut s = FieldSection::default();
        let ctx = FieldCtx {
            cfg: &cfg,
            limits: &limits,
            section: head(),
        };
        assert_eq!(
            s.advance(b"Expect: 100-CONTINUE\r\n\r\n", &ctx),
            Ok(Some(24))
        );
        assert!(s.expect_continue);
        let ctx10 = FieldCtx {
            cfg: &cfg,
            limits: &limits,
            section: Section::Head {
                at_least_11: false,
                trusted: true,
            },
        };
        s.reset(0);
        assert_eq!(
            s.advance(b"Expect: 100-continue\r\n\r\n", &ctx10),
            Ok(Some(24))
        );
        assert!(!s.expect_continue, "ignored on HTTP/1.0");
    }

    #[test]
    fn underscore_names_follow_header_map_and_forwarder_trust() {
        let input = b"X_Y: 1\r\nSCRIPT_NAME: /app\r\nZ: 2\r\n\r\n";
        let cfg = Config::default();
        assert_eq!(
            run(input, &cfg, head()).unwrap().1,
            pairs(&[("SCRIPT_NAME", "/app"), ("Z", "2")])
        );
        let untrusted = Section::Head {
            at_least_11: true,
            trusted: false,
        };
        assert_eq!(run(input, &cfg, untrusted).unwrap().1, pairs(&[("Z", "2")]));
        let refuse = Config {
            header_map: HeaderMapPolicy::Refuse,
            ..Config::default()
        };
        assert_eq!(
            run(input, &refuse, head()),
            Err(HttpErrorKind::InvalidHeaderName)
        );
        let dangerous = Config {
            header_map: HeaderMapPolicy::Dangerous,
            ..Config::default()
        };
        assert_eq!(run(input, &dangerous, untrusted).unwrap().1.len(), 3);
    }

    #[test]
    fn conflicting_scheme_headers_from_a_trusted_peer_are_refused() {
        let input = b"X-Forwarded-Proto: https\r\nX-Forwarded-Ssl: off\r\n\r\n";
        let cfg = Config::default();
        assert_eq!(
            run(input, &cfg, head()),
            Err(HttpErrorKind::InvalidSchemeHeaders)
        );
        let untrusted = Section::Head {
            at_least_11: true,
            trusted: false,
        };
        assert!(run(input, &cfg, untrusted).is_ok());
        let limits = Limits::from_config(&cfg);
        let mut s = FieldSection::default();
        let ctx = FieldCtx {
            cfg: &cfg,
            limits: &limits,
            section: head(),
        };
        s.advance(
            b"X-Forwarded-Proto: https\r\nX-Forwarded-Ssl: on\r\n\r\n",
            &ctx,
        )
        .unwrap();
        assert!(s.https_forwarded());
    }

    #[test]
    fn field_count_and_size_limits_answer_431() {
        let cfg = Config {
            limit_request_fields: 2,
            ..Config::default()
        };
        assert!(run(b"A: 1\r\nB: 2\r\n\r\n", &cfg, head()).is_ok());
        assert_eq!(
            run(b"A: 1\r\nB: 2\r\nC: 3\r\n\r\n", &cfg, head()),
            Err(HttpErrorKind::LimitRequestHeaders)
        );
        // A line of exactly the limit (with CRLF) passes; one byte more does not.
        let cfg = Config {
            limit_request_field_size: 10,
            ..Config::default()
        };
        assert!(run(b"A: 12345\r\n\r\n", &cfg, head()).is_ok());
        assert_eq!(
            run(b"A: 123456\r\n\r\n", &cfg, head()),
            Err(HttpErrorKind::LimitRequestHeaders)
        );
        // Folded lines count towards the same field.
        let cfg = Config {
            limit_request_field_size: 12,
            permit_obsolete_folding: true,
            ..Config::default()
        };
        assert_eq!(
            run(b"A: 1\r\n 2\r\n 3\r\n\r\n", &cfg, head()),
            Err(HttpErrorKind::LimitRequestHeaders)
        );
    }

    #[test]
    fn endless_field_line_is_refused_before_it_ends() {
        let cfg = Config {
            limit_request_field_size: 100,
            ..Config::default()
        };
        let limits = Limits::from_config(&cfg);
        let ctx = head_ctx(&cfg, &limits);
        let mut s = FieldSection::default();
        let mut line = b"X: ".to_vec();
        line.resize(99, b'a');
        assert_eq!(s.advance(&line, &ctx), Ok(None));
        line.push(b'a');
        assert_eq!(
            s.advance(&line, &ctx).map_err(|e| e.kind),
            Err(HttpErrorKind::LimitRequestHeaders)
        );
    }

    fn head_ctx<'a>(cfg: &'a Config, limits: &'a Limits) -> FieldCtx<'a> {
        FieldCtx {
            cfg,
            limits,
            section: head(),
        }
    }

    #[test]
    fn forbidden_trailer_names_are_refused() {
        let cfg = Config::default();
        for name in [
            "Host",
            "Content-Length",
            "transfer-encoding",
            "Trailer",
            "Authorization",
            "TE",
        ] {
            let input = format!("{name}: x\r\n\r\n");
            assert_eq!(
                run(input.as_bytes(), &cfg, Section::Trailer),
                Err(HttpErrorKind::InvalidHeaderName),
                "{name}"
            );
        }
        assert!(run(b"Vary: *\r\nExpect: weird\r\n\r\n", &cfg, Section::Trailer).is_ok());
    }

    #[test]
    fn response_trailers_refuse_pseudo_and_connection_fields() {
        for name in [
            &b":status"[..],
            b"Connection",
            b"keep-alive",
            b"Upgrade",
            b"Content-Length",
            b"te",
        ] {
            assert!(forbidden_in_trailers(name), "{name:?}");
        }
        for name in [&b"grpc-status"[..], b"Server-Timing", b"x-checksum"] {
            assert!(!forbidden_in_trailers(name), "{name:?}");
        }
    }
}
