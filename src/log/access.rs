//! The access log: gunicorn's `access_log_format` atoms (or one JSON object
//! per line), formatted from an `AccessRecord` the worker fills after each
//! response, into a buffer flushed once per loop turn.
//!
//! Atoms (gunicorn's `glogging.Logger.atoms`, `SafeAtoms` semantics: an
//! unknown atom gives `-`, a `"` in a string value is written `\"`):
//! `h` remote address, `l` `-`, `u` Basic-auth user, `t` `[10/Oct/2000:13:55:36 -0700]`,
//! `r` request line, `s` status, `m` method, `U` path, `q` query,
//! `H` protocol, `b` bytes sent or `-`, `B` bytes sent, `f` referer,
//! `a` user agent, `T` whole seconds, `M` milliseconds, `D` microseconds,
//! `L` `seconds.micros`, `p` `<pid>`, `{name}i` request header,
//! `{name}o` response header, `{name}e` environ variable.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use crate::http::decimal;

/// gunicorn's default `access_log_format` (the settings table refers to it).
pub const DEFAULT_FORMAT: &str = r#"%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s""#;

/// Header (name, value) pairs in one of the shapes the worker holds.
#[derive(Clone, Copy)]
pub enum Headers<'a> {
    None,
    Slices(&'a [(&'a [u8], &'a [u8])]),
    Owned(&'a [(Vec<u8>, Vec<u8>)]),
    Head(&'a crate::http::Head),
}

impl<'a> Headers<'a> {
    /// Call `f` with each (name, value) pair in order.
    pub fn for_each(&self, mut f: impl FnMut(&'a [u8], &'a [u8])) {
        match *self {
            Headers::None => {}
            Headers::Slices(s) => s.iter().for_each(|(k, v)| f(k, v)),
            Headers::Owned(s) => s.iter().for_each(|(k, v)| f(k, v)),
            Headers::Head(h) => h.header_pairs().for_each(|(k, v)| f(k, v)),
        }
    }

    /// The value of the last header named `name` (ASCII case-insensitive),
    /// as gunicorn's atoms dict keeps the last one.
    pub fn get(&self, name: &str) -> Option<&'a [u8]> {
        let n = name.as_bytes();
        let mut found = None;
        self.for_each(|k, v| {
            if k.eq_ignore_ascii_case(n) {
                found = Some(v);
            }
        });
        found
    }
}

/// Looks up an environ variable by name (as written in the format; the
/// worker should try it as given and upper-cased).
pub type EnvironLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// One answered request, as the worker saw it.
#[derive(Clone, Copy)]
pub struct AccessRecord<'a> {
    /// REMOTE_ADDR (empty for a unix socket peer).
    pub remote_addr: &'a str,
    pub method: &'a [u8],
    /// The request target exactly as sent (RAW_URI).
    pub raw_uri: &'a [u8],
    /// PATH_INFO (percent-decoded path).
    pub path: &'a [u8],
    /// QUERY_STRING.
    pub query: &'a [u8],
    /// SERVER_PROTOCOL, e.g. `HTTP/1.1`.
    pub protocol: &'a str,
    pub status: u16,
    pub request_headers: Headers<'a>,
    pub response_headers: Headers<'a>,
    /// Body bytes sent (gunicorn's `resp.sent`); `None` when no response went out.
    pub bytes_sent: Option<u64>,
    /// When the request started (for the JSON `time` field).
    pub start: SystemTime,
    /// From just before the app call to the end of writing.
    pub duration: Duration,
    /// For `{var}e` atoms; `None` when no environ was built.
    pub environ: Option<EnvironLookup<'a>>,
}

impl<'a> AccessRecord<'a> {
    /// The request side of a record from a parsed head: method, target,
    /// path (as sent; set `path` to PATH_INFO when the environ decoded it),
    /// query, protocol and request headers. Status 0, nothing sent, no
    /// duration: fill those in when the response is done.
    pub fn for_request(
        head: &'a crate::http::Head,
        remote_addr: &'a str,
        start: SystemTime,
    ) -> AccessRecord<'a> {
        AccessRecord {
            remote_addr,
            method: head.method(),
            raw_uri: head.target(),
            path: head.path(),
            query: head.query(),
            protocol: head.version.as_str(),
            status: 0,
            request_headers: Headers::Head(head),
            response_headers: Headers::None,
            bytes_sent: None,
            start,
            duration: Duration::ZERO,
            environ: None,
        }
    }
}

/// A parsed `access_log_format`.
#[derive(Clone, Debug, PartialEq)]
pub struct Format {
    parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq)]
enum Part {
    Lit(String),
    Atom {
        key: String,
        /// `%(x)-10s`: pad to width, left-justified when `left`.
        width: usize,
        left: bool,
    },
}

/// Printf conversion letters Python's `%` accepts after `%(name)`.
const CONVERSIONS: &str = "sdirafeEgGxXoc";

impl Format {
    /// Parse a Python `%(name)s` format. Text that is not a conversion is kept
    /// as written; `%%` is one `%`.
    pub fn parse(fmt: &str) -> Format {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let b = fmt.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' {
                if b.get(i + 1) == Some(&b'%') {
                    lit.push('%');
                    i += 2;
                    continue;
                }
                if b.get(i + 1) == Some(&b'(') {
                    if let Some(close) = fmt[i + 2..].find(')') {
                        let key = &fmt[i + 2..i + 2 + close];
                        let mut j = i + 3 + close;
                        let left = b.get(j) == Some(&b'-');
                        if left {
                            j += 1;
                        }
                        let wstart = j;
                        while j < b.len() && b[j].is_ascii_digit() {
                            j += 1;
                        }
                        let width = fmt[wstart..j].parse().unwrap_or(0);
                        if j < b.len() && CONVERSIONS.as_bytes().contains(&b[j]) {
                            if !lit.is_empty() {
                                parts.push(Part::Lit(std::mem::take(&mut lit)));
                            }
                            parts.push(Part::Atom {
                                key: key.to_string(),
                                width,
                                left,
                            });
                            i = j + 1;
                            continue;
                        }
                    }
                }
            }
            let ch_len = fmt[i..].chars().next().map_or(1, char::len_utf8);
            lit.push_str(&fmt[i..i + ch_len]);
            i += ch_len;
        }
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Format { parts }
    }

    /// The `{var}e` names the format asks for.
    pub fn environ_keys(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Atom { key, .. } => key.strip_prefix('{')?.strip_suffix("}e"),
            Part::Lit(_) => None,
        })
    }

    /// Append one line (with `\n`) for `rec` to `line`.
    pub fn render(&self, rec: &AccessRecord<'_>, now: &str, line: &mut String) {
        for part in &self.parts {
            match part {
                Part::Lit(s) => line.push_str(s),
                Part::Atom { key, width, left } => {
                    let start = line.len();
                    atom(rec, key, now, line);
                    if *width == 0 {
                        continue;
                    }
                    let len = line[start..].chars().count();
                    if len < *width {
                        let pad = " ".repeat(width - len);
                        if *left {
                            line.push_str(&pad);
                        } else {
                            line.insert_str(start, &pad);
                        }
                    }
                }
            }
        }
        line.push('\n');
    }
}

/// Write one atom's value. Strings have `"` escaped; an unknown atom is `-`.
fn atom(rec: &AccessRecord<'_>, key: &str, now: &str, out: &mut String) {
    let d = rec.duration;
    match key {
        "h" => text(out, rec.remote_addr.as_bytes()),
        "l" => out.push('-'),
        "u" => match basic_user(rec) {
            Some(u) => text(out, u.as_bytes()),
            None => out.push('-'),
        },
        "t" => out.push_str(now),
        "r" => {
            text(out, rec.method);
            out.push(' ');
            text(out, rec.raw_uri);
            out.push(' ');
            text(out, rec.protocol.as_bytes());
        }
        "s" => out.push_str(decimal(rec.status.into(), &mut [0; 20])),
        "m" => text(out, rec.method),
        "U" => text(out, rec.path),
        "q" => text(out, rec.query),
        "H" => text(out, rec.protocol.as_bytes()),
        "b" => match rec.bytes_sent {
            Some(n) => out.push_str(decimal(n, &mut [0; 20])),
            None => out.push('-'),
        },
        "B" => match rec.bytes_sent {
            Some(n) => {
                let _ = write!(out, "{n}");
            }
            None => out.push_str("None"),
        },
        "f" => or_dash(out, rec.request_headers.get("referer")),
        "a" => or_dash(out, rec.request_headers.get("user-agent")),
        "T" => {
            let _ = write!(out, "{}", d.as_secs());
        }
        "M" => {
            let _ = write!(out, "{}", d.as_millis());
        }
        "D" => {
            let _ = write!(out, "{}", d.as_micros());
        }
        "L" => {
            let _ = write!(out, "{}.{:06}", d.as_secs(), d.subsec_micros());
        }
        "p" => {
            let _ = write!(out, "<{}>", std::process::id());
        }
        _ => braced(rec, key, out),
    }
}

fn braced(rec: &AccessRecord<'_>, key: &str, out: &mut String) {
    let inner = key.strip_prefix('{').and_then(|k| {
        let (name, kind) = k.split_at(k.len().checked_sub(2)?);
        Some((name, kind))
    });
    match inner {
        Some((name, "}i")) => or_dash(out, rec.request_headers.get(name)),
        Some((name, "}o")) => or_dash(out, rec.response_headers.get(name)),
        Some((name, "}e")) => {
            let v = rec.environ.and_then(|look| {
                look(name)
                    .or_else(|| look(&name.to_ascii_uppercase()))
                    .or_else(|| look(&name.to_ascii_lowercase()))
            });
            match v {
                Some(v) => text(out, v.as_bytes()),
                None => out.push('-'),
            }
        }
        _ => out.push('-'),
    }
}

fn or_dash(out: &mut String, v: Option<&[u8]>) {
    match v {
        Some(v) => text(out, v),
        None => out.push('-'),
    }
}

/// Header bytes are latin-1 (as in the environ); `"` is escaped as `\"`.
fn text(out: &mut String, bytes: &[u8]) {
    if bytes.is_ascii() && !bytes.contains(&b'"') {
        // The usual value: ASCII is the same in latin-1 and UTF-8.
        out.push_str(std::str::from_utf8(bytes).unwrap_or_default());
        return;
    }
    for &b in bytes {
        if b == b'"' {
            out.push_str("\\\"");
        } else {
            out.push(b as char);
        }
    }
}

/// The user name of an `Authorization: Basic` header.
fn basic_user(rec: &AccessRecord<'_>) -> Option<String> {
    let auth = rec.request_headers.get("authorization")?;
    let auth = std::str::from_utf8(auth).ok()?;
    let (scheme, rest) = auth.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64_decode(rest.trim())?;
    let user = decoded.split(|&b| b == b':').next()?;
    String::from_utf8(user.to_vec()).ok()
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return None,
        } as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// One JSON object per line: the main fields of a request.
pub fn render_json(rec: &AccessRecord<'_>, now: &str, s: &mut String) {
    s.push('{');
    let start = rec
        .start
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let _ = write!(
        s,
        "\"time\":{},\"timestamp\":{}.{:06},",
        json_str(now.trim_start_matches('[').trim_end_matches(']').as_bytes()),
        start.as_secs(),
        start.subsec_micros()
    );
    let fields: [(&str, &[u8]); 6] = [
        ("remote_addr", rec.remote_addr.as_bytes()),
        ("method", rec.method),
        ("uri", rec.raw_uri),
        ("path", rec.path),
        ("query", rec.query),
        ("protocol", rec.protocol.as_bytes()),
    ];
    for (k, v) in fields {
        let _ = write!(s, "\"{k}\":{},", json_str(v));
    }
    let _ = write!(s, "\"status\":{},", rec.status);
    match rec.bytes_sent {
        Some(n) => {
            let _ = write!(s, "\"bytes\":{n},");
        }
        None => s.push_str("\"bytes\":null,"),
    }
    let _ = write!(
        s,
        "\"duration_us\":{},\"duration\":{}.{:06},",
        rec.duration.as_micros(),
        rec.duration.as_secs(),
        rec.duration.subsec_micros()
    );
    for (k, h) in [("referer", "referer"), ("user_agent", "user-agent")] {
        match rec.request_headers.get(h) {
            Some(v) => {
                let _ = write!(s, "\"{k}\":{},", json_str(v));
            }
            None => {
                let _ = write!(s, "\"{k}\":null,");
            }
        }
    }
    match basic_user(rec) {
        Some(u) => {
            let _ = write!(s, "\"user\":{},", json_str(u.as_bytes()));
        }
        None => s.push_str("\"user\":null,"),
    }
    let _ = write!(s, "\"pid\":{}}}", std::process::id());
    s.push('\n');
}

/// A JSON string of latin-1 bytes.
pub fn json_str(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() + 2);
    s.push('"');
    for &b in bytes {
        match b {
            b'"' => s.push_str("\\\""),
            b'\\' => s.push_str("\\\\"),
            b'\n' => s.push_str("\\n"),
            b'\r' => s.push_str("\\r"),
            b'\t' => s.push_str("\\t"),
            b if b < 0x20 || b == 0x7f => {
                let _ = write!(s, "\\u{:04x}", b);
            }
            b => s.push(b as char),
        }
    }
    s.push('"');
    s
}

/// `[10/Oct/2000:13:55:36 -0700]` from the error log's
/// `2000-10-10 13:55:36 -0700` timestamp (both local time).
pub fn clf_time(error_log_stamp: &str) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let parse = || -> Option<String> {
        let (date, rest) = error_log_stamp.split_once(' ')?;
        let mut ymd = date.split('-');
        let (y, m, d) = (ymd.next()?, ymd.next()?, ymd.next()?);
        let month = MONTHS.get(m.parse::<usize>().ok()?.checked_sub(1)?)?;
        let (time, zone) = rest.split_once(' ')?;
        Some(format!("[{d}/{month}/{y}:{time} {zone}]"))
    };
    parse().unwrap_or_else(|| format!("[{error_log_stamp}]"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record<'a>(
        req: &'a [(&'a [u8], &'a [u8])],
        resp: &'a [(Vec<u8>, Vec<u8>)],
        environ: Option<EnvironLookup<'a>>,
    ) -> AccessRecord<'a> {
        AccessRecord {
            remote_addr: "10.0.0.1",
            method: b"GET",
            raw_uri: b"/a%20b?x=\"1\"",
            path: b"/a b",
            query: b"x=\"1\"",
            protocol: "HTTP/1.1",
            status: 200,
            request_headers: Headers::Slices(req),
            response_headers: Headers::Owned(resp),
            bytes_sent: Some(5),
            start: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            duration: Duration::from_micros(2_003_004),
            environ,
        }
    }

    fn line(fmt: &str, rec: &AccessRecord<'_>) -> String {
        let mut out = String::from("earlier line\n");
        Format::parse(fmt).render(rec, "[14/Nov/2023:22:13:20 +0000]", &mut out);
        out.strip_prefix("earlier line\n").unwrap().to_string()
    }

    const REQ: &[(&[u8], &[u8])] = &[
        (b"Host", b"example.com"),
        (b"User-Agent", b"curl/8 \"x\""),
        (b"Referer", b"http://r/"),
        (b"Authorization", b"Basic YWxpY2U6c2VjcmV0"),
        (b"X-Dup", b"one"),
        (b"x-dup", b"two"),
    ];

    #[test]
    fn default_format_matches_gunicorn() {
        let resp = vec![(b"Content-Type".to_vec(), b"text/plain".to_vec())];
        let rec = record(REQ, &resp, None);
        assert_eq!(
            line(DEFAULT_FORMAT, &rec),
            "10.0.0.1 - alice [14/Nov/2023:22:13:20 +0000] \"GET /a%20b?x=\\\"1\\\" HTTP/1.1\" 200 5 \"http://r/\" \"curl/8 \\\"x\\\"\"\n"
        );
    }

    #[test]
    fn every_atom_has_its_value() {
        let resp = vec![(b"Content-Type".to_vec(), b"text/plain".to_vec())];
        let env = |k: &str| (k == "REMOTE_PORT").then(|| "5555".to_string());
        let rec = record(REQ, &resp, Some(&env));
        assert_eq!(
            line(
                "%(m)s|%(U)s|%(q)s|%(H)s|%(s)s|%(b)s|%(B)s|%(T)s|%(M)s|%(D)s|%(L)s|%(l)s",
                &rec
            ),
            "GET|/a b|x=\\\"1\\\"|HTTP/1.1|200|5|5|2|2003|2003004|2.003004|-\n"
        );
        assert_eq!(line("%(p)s", &rec), format!("<{}>\n", std::process::id()));
        assert_eq!(
            line("%({host}i)s %({X-DUP}i)s %({content-type}o)s %({remote_port}e)s %({nope}e)s %({nope}i)s", &rec),
            "example.com two text/plain 5555 - -\n"
        );
    }

    #[test]
    fn latin1_bytes_become_their_characters_and_quotes_are_escaped() {
        let req: &[(&[u8], &[u8])] = &[
            (b"User-Agent", b"caf\xe9 \"x\" \xff"),
            (b"Referer", b"plain"),
        ];
        let rec = record(req, &[], None);
        assert_eq!(
            line("%(a)s|%(f)s", &rec),
            "caf\u{e9} \\\"x\\\" \u{ff}|plain\n"
        );
    }

    #[test]
    fn unknown_atoms_are_dashes_and_literals_survive() {
        let rec = record(&[], &[], None);
        assert_eq!(
            line("%(zz)s %(u)s %(f)s %(a)s 100%% %(h)s %x %(unclosed", &rec),
            "- - - - 100% 10.0.0.1 %x %(unclosed\n"
        );
        let mut none = rec;
        none.bytes_sent = None;
        assert_eq!(line("%(b)s %(B)s", &none), "- None\n");
    }

    #[test]
    fn width_and_other_conversions() {
        let rec = record(&[], &[], None);
        assert_eq!(
            line("[%(s)5s][%(m)-5s][%(s)d]", &rec),
            "[  200][GET  ][200]\n"
        );
    }

    #[test]
    fn environ_keys_are_listed() {
        let f = Format::parse("%({REMOTE_PORT}e)s %(h)s %({x}e)s");
        assert_eq!(
            f.environ_keys().collect::<Vec<_>>(),
            vec!["REMOTE_PORT", "x"]
        );
    }

    #[test]
    fn json_lines_hold_the_main_fields() {
        let rec = record(REQ, &[], None);
        let mut out = String::new();
        render_json(&rec, "[14/Nov/2023:22:13:20 +0000]", &mut out);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["method"], "GET");
        assert_eq!(v["uri"], "/a%20b?x=\"1\"");
        assert_eq!(v["status"], 200);
        assert_eq!(v["bytes"], 5);
        assert_eq!(v["duration_us"], 2003004);
        assert_eq!(v["user_agent"], "curl/8 \"x\"");
        assert_eq!(v["user"], "alice");
        assert_eq!(v["time"], "14/Nov/2023:22:13:20 +0000");
        assert!(out.ends_with("}\n"));
    }

    #[test]
    fn clf_time_from_the_error_log_stamp() {
        assert_eq!(
            clf_time("2026-11-26 06:35:45 +0100"),
            "[26/Nov/2026:06:35:45 +0100]"
        );
    }
}
