//! Sans-IO HTTP/1.1: bytes in, requests out; responses in, bytes out.
//!
//! Owns request parsing (its own scanner, with gunicorn 27's limits and
//! request-smuggling rules, which httparse cannot express), body framing
//! (Content-Length, chunked), the PROXY protocol preamble, response encoding
//! and the keep-alive/pipelining state of one connection, and the request,
//! connection and response-head types every bridge and the hand-off share.
//! It imports nothing else of the crate: no sockets, no Python, no libc.
//! Every error carries the status a server should answer.
//!
//! Request bodies: a body of at most `Config::body_buffer_size` bytes is
//! kept in memory; a larger one (by its Content-Length, or once its chunks
//! pass the size) is written to an anonymous temporary file as its bytes are
//! fed, so neither the body nor the connection's input buffer grows with the
//! upload. This layer still owns no I/O of its own: the caller supplies the
//! file factory (`Config::temp_files`, a `TempFiles`), and the layer only
//! writes decoded body bytes to the `std::fs::File` it returns, from inside
//! `Conn::feed`, and hands the file over in `RequestBody::File`. A plain
//! `File` rather than a sink trait keeps the finished body readable at any
//! offset by whoever gets the request, on any thread.

#![forbid(unsafe_code)]

mod body;
#[cfg(test)]
mod conformance;
mod conn;
mod date;
mod decode;
mod encode;
mod error;
mod exchange;
mod fields;
mod framing;
mod latin1;
mod limits;
mod parse;
mod proxy;
mod scan;
mod status;
mod target;

pub use body::{BodyWriter, RequestBody, TempFiles};
pub use conn::CONTINUE;
pub use conn::{BodyEvent, Conn, ParserPool};
pub use date::DateCache;
pub use encode::{
    decimal, early_hints, error_response, RequestInfo, ResponseFraming, ResponseWriter,
};
pub use error::{HttpError, HttpErrorKind};
pub use exchange::{ConnInfo, HeaderList, Status};
pub use fields::{apply_field_policy, forbidden_in_trailers};
pub use latin1::{latin1_bytes, latin1_string};
pub use proxy::ProxyInfo;
pub use status::{
    reason_phrase, validate_header_name, validate_header_value, validate_response_header,
    validate_status,
};
pub use target::percent_decode;

use std::net::IpAddr;
use std::ops::Range;
use std::sync::Arc;

/// Parser settings, gunicorn's names and meanings (see docs/settings.md).
#[derive(Clone, Debug)]
pub struct Config {
    /// Max bytes of the request line (0 = unlimited; values >= 8190 are capped at 8190). Over it: 414.
    pub limit_request_line: usize,
    /// Max number of header fields (0 or > 32768 means 32768). Over it: 431.
    pub limit_request_fields: usize,
    /// Max bytes of one header line including CRLF (0 means 8190, as in gunicorn). Over it: 431.
    pub limit_request_field_size: usize,
    pub permit_obsolete_folding: bool,
    pub strip_header_spaces: bool,
    pub permit_unconventional_http_method: bool,
    pub permit_unconventional_http_version: bool,
    pub casefold_http_method: bool,
    pub header_map: HeaderMapPolicy,
    /// Underscore header names a trusted forwarder may pass (gunicorn `forwarder_headers`), upper-case.
    pub forwarder_headers: Vec<String>,
    /// gunicorn `secure_scheme_headers`: (UPPER-CASE NAME, value meaning https).
    pub secure_scheme_headers: Vec<(String, String)>,
    pub proxy_protocol: ProxyProtocol,
    /// Max bytes of a request body (0 = unlimited). Larger: 413, refused
    /// from the Content-Length before any of the body is read.
    pub limit_request_body: u64,
    /// Bodies larger than this many bytes go to a temporary file from
    /// `temp_files` (none: every body stays in memory).
    pub body_buffer_size: u64,
    pub temp_files: Option<Arc<dyn TempFiles>>,
    /// Hand a request over as soon as its head is parsed, and its body in
    /// pieces as it arrives (`RequestBody::Streamed`, `Conn::take_body`)
    /// instead of whole: for ASGI apps. A body that arrived with its head
    /// still comes whole.
    pub stream_bodies: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            limit_request_line: 4094,
            limit_request_fields: 100,
            limit_request_field_size: 8190,
            permit_obsolete_folding: false,
            strip_header_spaces: false,
            permit_unconventional_http_method: false,
            permit_unconventional_http_version: false,
            casefold_http_method: false,
            header_map: HeaderMapPolicy::Drop,
            forwarder_headers: vec!["SCRIPT_NAME".into(), "PATH_INFO".into()],
            secure_scheme_headers: vec![
                ("X-FORWARDED-PROTOCOL".into(), "ssl".into()),
                ("X-FORWARDED-PROTO".into(), "https".into()),
                ("X-FORWARDED-SSL".into(), "on".into()),
            ],
            proxy_protocol: ProxyProtocol::Off,
            limit_request_body: 0,
            body_buffer_size: 1 << 20,
            temp_files: None,
            stream_bodies: false,
        }
    }
}

/// What to do with request header names that contain `_`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderMapPolicy {
    Drop,
    Refuse,
    Dangerous,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxyProtocol {
    Off,
    V1,
    V2,
    Auto,
}

/// What the worker knows about the peer when the connection is accepted.
#[derive(Clone, Debug, Default)]
pub struct PeerTrust {
    /// Peer may set the scheme and pass `forwarder_headers` (in `forwarded_allow_ips`, or a unix socket).
    pub forwarded: bool,
    /// Peer may send a PROXY protocol header (in `proxy_allow_from`).
    pub proxy: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
    /// Any other `HTTP/d.d`: a higher 1.x minor (accepted by default, as
    /// gunicorn does) or, with `permit_unconventional_http_version`, any
    /// other single-digit version. Holds (major, minor).
    Other(u8, u8),
}

impl Version {
    pub fn from_digits(major: u8, minor: u8) -> Version {
        match (major, minor) {
            (1, 0) => Version::Http10,
            (1, 1) => Version::Http11,
            (major, minor) => Version::Other(major.min(9), minor.min(9)),
        }
    }

    pub fn major_minor(self) -> (u8, u8) {
        match self {
            Version::Http10 => (1, 0),
            Version::Http11 => (1, 1),
            Version::Other(major, minor) => (major, minor),
        }
    }

    /// HTTP/1.1 or later: keep-alive by default, chunked allowed, 100-continue honoured.
    pub fn at_least_11(self) -> bool {
        self.major_minor() >= (1, 1)
    }

    /// `HTTP/1.1`, for SERVER_PROTOCOL and the status line.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http11 => "HTTP/1.1",
            Version::Http10 => "HTTP/1.0",
            Version::Other(..) => {
                std::str::from_utf8(&self.status_line_start()[..8]).unwrap_or("HTTP/1.1")
            }
        }
    }

    /// `HTTP/1.1 `: the start of a status line, space included.
    pub(crate) fn status_line_start(self) -> &'static [u8] {
        let (major, minor) = self.major_minor();
        &VERSION_NAMES[usize::from(major.min(9)) * 10 + usize::from(minor.min(9))]
    }
}

/// `HTTP/0.0 ` ... `HTTP/9.9 `, so `Version::as_str` can hand out `&'static str`.
static VERSION_NAMES: [[u8; 9]; 100] = version_names();

const fn version_names() -> [[u8; 9]; 100] {
    let mut names = [*b"HTTP/0.0 "; 100];
    let mut i = 0;
    while i < 100 {
        names[i][5] = b'0' + (i / 10) as u8;
        names[i][7] = b'0' + (i % 10) as u8;
        i += 1;
    }
    names
}

/// A byte range into `Head::buf`.
pub type Span = Range<u32>;

#[derive(Clone, Debug)]
pub struct Header {
    /// The name as sent (case preserved), after `--strip-header-spaces`.
    pub name: Span,
    /// The value with surrounding SP/HTAB trimmed; obs-fold lines already joined with one space.
    pub value: Span,
}

/// A parsed request head. Strings are spans into `buf`, which holds the head
/// bytes (possibly rewritten in place, e.g. a case-folded method).
#[derive(Clone, Debug)]
pub struct Head {
    pub buf: Vec<u8>,
    pub method: Span,
    /// The request target exactly as sent (RAW_URI).
    pub target: Span,
    /// The path of the target as Python's `urlsplit` finds it, not yet percent-decoded.
    pub path: Span,
    /// The query without `?`, fragment dropped (empty span when none).
    pub query: Span,
    pub version: Version,
    /// Kept headers in arrival order (dropped underscore names are gone).
    pub headers: Vec<Header>,
    /// `https` if a trusted peer said so through `secure_scheme_headers`.
    pub https_forwarded: bool,
}

impl Head {
    /// A head with nothing in it, left where a real one was moved out.
    pub(crate) fn placeholder() -> Head {
        Head {
            buf: Vec::new(),
            method: 0..0,
            target: 0..0,
            path: 0..0,
            query: 0..0,
            version: Version::Http11,
            headers: Vec::new(),
            https_forwarded: false,
        }
    }

    pub fn slice(&self, span: &Span) -> &[u8] {
        &self.buf[span.start as usize..span.end as usize]
    }
    pub fn method(&self) -> &[u8] {
        self.slice(&self.method)
    }
    pub fn target(&self) -> &[u8] {
        self.slice(&self.target)
    }
    pub fn path(&self) -> &[u8] {
        self.slice(&self.path)
    }
    pub fn query(&self) -> &[u8] {
        self.slice(&self.query)
    }
    pub fn is_head(&self) -> bool {
        self.method() == b"HEAD"
    }
    /// Header (name, value) pairs in arrival order.
    pub fn header_pairs(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.headers
            .iter()
            .map(move |h| (self.slice(&h.name), self.slice(&h.value)))
    }
}

/// A complete request: head plus the whole body (de-chunked). `Send` and
/// `'static`: it may be handed to another thread.
#[derive(Debug)]
pub struct Request {
    pub head: Head,
    pub body: RequestBody,
    /// The client wants the connection kept open after this response
    /// (HTTP/1.1 without `Connection: close`, or HTTP/1.0 with `keep-alive`),
    /// and the framing allows it.
    pub keep_alive: bool,
    /// PROXY protocol addresses of the connection, if a header was received.
    pub proxy: Option<ProxyInfo>,
}

/// What `Conn::poll` found in the bytes fed so far.
#[derive(Debug)]
pub enum Event {
    /// Nothing complete yet: feed more bytes.
    NeedMore,
    /// The head of a request that announced `Expect: 100-continue` was
    /// parsed and its body has not all arrived: send `continue_bytes()` now.
    /// Returned at most once per request.
    SendContinue,
    /// A whole request. The next `poll` looks at the bytes after it
    /// (pipelining); answer requests in the order they are returned. With
    /// `Config::stream_bodies`, a request whose body is still arriving
    /// comes with `RequestBody::Streamed`: its bytes come from
    /// `Conn::take_body`, and `poll` gives nothing more until it ends.
    Request(Request),
    /// The bytes are not acceptable HTTP. Answer with `error.status()`
    /// (unless `None`: close without answering) and close the connection;
    /// `poll` returns the same error again afterwards.
    Error(HttpError),
    /// The peer closed cleanly between requests: close the connection.
    Closed,
}

/// An IP address test for trust lists ("*", addresses and CIDRs), shared by
/// `forwarded_allow_ips` and `proxy_allow_from`.
#[derive(Clone, Debug)]
pub enum AllowList {
    Any,
    Nets(Vec<(IpAddr, u8)>),
}

impl AllowList {
    /// Parse gunicorn's comma-separated form: `*`, `127.0.0.1`, `10.0.0.0/8`, `::1`.
    pub fn parse(spec: &str) -> Result<AllowList, String> {
        let mut nets = Vec::new();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if item == "*" {
                return Ok(AllowList::Any);
            }
            let (addr, bits) = match item.split_once('/') {
                Some((a, b)) => (a, Some(b)),
                None => (item, None),
            };
            let ip: IpAddr = addr
                .parse()
                .map_err(|_| format!("{item:?} is not an IP address or CIDR network"))?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let bits = match bits {
                Some(b) => b
                    .parse::<u8>()
                    .ok()
                    .filter(|b| *b <= max)
                    .ok_or_else(|| format!("{item:?}: prefix length must be 0..={max}"))?,
                None => max,
            };
            nets.push((ip, bits));
        }
        Ok(AllowList::Nets(nets))
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match self {
            AllowList::Any => true,
            AllowList::Nets(nets) => nets.iter().any(|(net, bits)| prefix_match(*net, ip, *bits)),
        }
    }
}

fn prefix_match(net: IpAddr, ip: IpAddr, bits: u8) -> bool {
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(n) & mask == u32::from(i) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(i)) => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(n) & mask == u128::from(i) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_settings_may_move_to_other_threads() {
        fn movable<T: Send + 'static>() {}
        fn shared<T: Send + Sync + 'static>() {}
        movable::<Request>();
        movable::<RequestBody>();
        shared::<Config>();
        shared::<RequestBody>();
    }

    #[test]
    fn allow_list_matches_addresses_and_networks() {
        let l = AllowList::parse("127.0.0.1, 10.0.0.0/8,::1").unwrap();
        assert!(l.contains("127.0.0.1".parse().unwrap()));
        assert!(l.contains("10.2.3.4".parse().unwrap()));
        assert!(l.contains("::1".parse().unwrap()));
        assert!(l.contains("::ffff:10.9.9.9".parse().unwrap()));
        assert!(!l.contains("127.0.0.2".parse().unwrap()));
        assert!(AllowList::parse("*")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!(AllowList::parse("nope").is_err());
        assert!(AllowList::parse("10.0.0.0/33").is_err());
    }
}
