//! A request header block's fields into `http::Head` (RFC 9113 8.2, 8.3):
//! pseudo-headers checked and turned into the method and target,
//! `:authority` into `host`, cookie crumbs joined, and what HTTP/2 forbids
//! refused (connection-specific fields, upper case, `te` other than
//! `trailers`, CONNECT).

use crate::http::{Head, Header, Span, Version};

/// Why a request cannot be served. Each is answered on its stream only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Malformed (RFC 9113 8.1.1): RST_STREAM with PROTOCOL_ERROR.
    Malformed(&'static str),
    /// CONNECT (we serve no tunnels, and do not offer extended CONNECT): 501.
    Connect,
}

/// HTTP/2 as `Head::version` (SERVER_PROTOCOL `HTTP/2.0`).
pub const VERSION: Version = Version::Other(2, 0);

/// Collects the fields of one header block, in order.
#[derive(Debug, Default)]
pub struct RequestBuilder {
    buf: Vec<u8>,
    headers: Vec<Header>,
    method: Option<Span>,
    path: Option<Span>,
    scheme: bool,
    authority: Option<Span>,
    host: Option<Span>,
    cookies: Vec<u8>,
    content_length: Option<u64>,
    regular_seen: bool,
    error: Option<Refusal>,
}

/// A finished request head and what framing needs of it.
#[derive(Debug)]
pub struct Built {
    pub head: Head,
    pub content_length: Option<u64>,
}

fn is_name_byte(b: u8) -> bool {
    matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'!' | b'#' | b'$' | b'%' | b'&' | b'\''
        | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~')
}

/// RFC 9113 8.2.1: no NUL, CR or LF, no white space at either end.
pub fn valid_value(v: &[u8]) -> bool {
    !v.iter().any(|&b| matches!(b, 0 | b'\r' | b'\n'))
        && !matches!(v.first(), Some(b' ' | b'\t'))
        && !matches!(v.last(), Some(b' ' | b'\t'))
}

/// A regular field name: a lowercase token.
pub fn valid_name(n: &[u8]) -> bool {
    !n.is_empty() && n.iter().all(|&b| is_name_byte(b))
}

/// Fields that only mean something on one HTTP/1.1 connection (RFC 9113 8.2.2).
pub fn is_connection_specific(name: &[u8]) -> bool {
    matches!(
        name,
        b"connection" | b"keep-alive" | b"proxy-connection" | b"transfer-encoding" | b"upgrade"
    )
}

fn parse_length(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    v.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

impl RequestBuilder {
    fn span(&mut self, bytes: &[u8]) -> Span {
        let start = self.buf.len() as u32;
        self.buf.extend_from_slice(bytes);
        start..self.buf.len() as u32
    }

    fn refuse(&mut self, why: &'static str) {
        self.error.get_or_insert(Refusal::Malformed(why));
    }

    /// One decoded field.
    pub fn field(&mut self, name: &[u8], value: &[u8]) {
        if self.error.is_some() {
            return;
        }
        if !valid_value(value) {
            return self.refuse("invalid field value");
        }
        if let Some(pseudo) = name.strip_prefix(b":") {
            if self.regular_seen {
                return self.refuse("pseudo-header after a regular field");
            }
            let slot = match pseudo {
                b"method" => &self.method,
                b"path" => &self.path,
                b"authority" => &self.authority,
                b"scheme" => {
                    if self.scheme {
                        return self.refuse("duplicate :scheme");
                    }
                    self.scheme = true;
                    return;
                }
                _ => return self.refuse("unknown pseudo-header"),
            };
            if slot.is_some() {
                return self.refuse("duplicate pseudo-header");
            }
            let span = self.span(value);
            match pseudo {
                b"method" => self.method = Some(span),
                b"path" => self.path = Some(span),
                _ => self.authority = Some(span),
            }
            return;
        }
        self.regular_seen = true;
        if !valid_name(name) {
            return self.refuse("invalid field name (upper case or not a token)");
        }
        if is_connection_specific(name) {
            return self.refuse("connection-specific field");
        }
        match name {
            b"te" if !value.eq_ignore_ascii_case(b"trailers") => {
                return self.refuse("te other than trailers");
            }
            b"cookie" => {
                // RFC 9113 8.2.3: crumbs are joined for an HTTP/1.1 consumer.
                if !self.cookies.is_empty() {
                    self.cookies.extend_from_slice(b"; ");
                }
                self.cookies.extend_from_slice(value);
                return;
            }
            b"content-length" => match parse_length(value) {
                Some(n) if self.content_length.is_none_or(|m| m == n) => {
                    self.content_length = Some(n)
                }
                _ => return self.refuse("invalid content-length"),
            },
            _ => {}
        }
        let name = self.span(name);
        let value = self.span(value);
        if self.buf[name.start as usize..name.end as usize] == *b"host" {
            if self.host.is_some() {
                return self.refuse("duplicate host");
            }
            self.host = Some(value.clone());
        }
        self.headers.push(Header { name, value });
    }

    /// The request head, once every field of the block is in.
    pub fn finish(mut self) -> Result<Built, Refusal> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let method = self
            .method
            .clone()
            .ok_or(Refusal::Malformed("no :method"))?;
        if self.buf[method.start as usize..method.end as usize] == *b"CONNECT" {
            return Err(Refusal::Connect);
        }
        if !self.scheme {
            return Err(Refusal::Malformed("no :scheme"));
        }
        let target = self.path.clone().ok_or(Refusal::Malformed("no :path"))?;
        let t = &self.buf[target.start as usize..target.end as usize];
        let options = self.buf[method.start as usize..method.end as usize] == *b"OPTIONS";
        if !(t.first() == Some(&b'/') || (t == b"*" && options)) {
            return Err(Refusal::Malformed(":path is not origin-form"));
        }
        let (path, query) = match t.iter().position(|&b| b == b'?') {
            Some(q) => {
                let q = target.start + q as u32;
                (target.start..q, q + 1..target.end)
            }
            None => (target.clone(), target.end..target.end),
        };
        if let Some(authority) = self.authority.clone() {
            let a = &self.buf[authority.start as usize..authority.end as usize];
            match &self.host {
                Some(h) if self.buf[h.start as usize..h.end as usize] != *a => {
                    return Err(Refusal::Malformed("host differs from :authority"));
                }
                Some(_) => {}
                None => {
                    let name = self.span(b"host");
                    self.headers.push(Header {
                        name,
                        value: authority,
                    });
                }
            }
        }
        if !self.cookies.is_empty() {
            let cookies = std::mem::take(&mut self.cookies);
            let name = self.span(b"cookie");
            let value = self.span(&cookies);
            self.headers.push(Header { name, value });
        }
        Ok(Built {
            head: Head {
                buf: self.buf,
                method,
                target,
                path,
                query,
                version: VERSION,
                headers: self.headers,
                https_forwarded: false,
            },
            content_length: self.content_length,
        })
    }
}

/// Trailer fields (no pseudo-headers allowed), in arrival order.
#[derive(Debug, Default)]
pub struct Trailers {
    pub buf: Vec<u8>,
    pub fields: Vec<Header>,
    error: Option<&'static str>,
}

impl Trailers {
    pub fn field(&mut self, name: &[u8], value: &[u8]) {
        if self.error.is_some() {
            return;
        }
        if name.starts_with(b":") {
            self.error = Some("pseudo-header in trailers");
        } else if !valid_name(name) || !valid_value(value) {
            self.error = Some("invalid trailer field");
        } else if is_connection_specific(name) {
            self.error = Some("connection-specific trailer field");
        } else {
            let start = self.buf.len() as u32;
            self.buf.extend_from_slice(name);
            let mid = self.buf.len() as u32;
            self.buf.extend_from_slice(value);
            self.fields.push(Header {
                name: start..mid,
                value: mid..self.buf.len() as u32,
            });
        }
    }

    pub fn finish(self) -> Result<Trailers, Refusal> {
        match self.error {
            Some(e) => Err(Refusal::Malformed(e)),
            None => Ok(self),
        }
    }

    /// (name, value) pairs in arrival order.
    pub fn pairs(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.fields.iter().map(move |h| {
            (
                &self.buf[h.name.start as usize..h.name.end as usize],
                &self.buf[h.value.start as usize..h.value.end as usize],
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(fields: &[(&str, &str)]) -> Result<Built, Refusal> {
        let mut b = RequestBuilder::default();
        for (n, v) in fields {
            b.field(n.as_bytes(), v.as_bytes());
        }
        b.finish()
    }

    const BASE: [(&str, &str); 4] = [
        (":method", "GET"),
        (":scheme", "https"),
        (":authority", "example.com"),
        (":path", "/a/b?x=1&y=2"),
    ];

    fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        BASE.iter().chain(extra).copied().collect()
    }

    fn malformed(fields: &[(&str, &str)]) -> bool {
        matches!(build(fields), Err(Refusal::Malformed(_)))
    }

    #[test]
    fn pseudo_headers_become_the_head() {
        let b = build(&with(&[("accept", "*/*"), ("content-length", "3")])).unwrap();
        let h = &b.head;
        assert_eq!(h.method(), b"GET");
        assert_eq!(h.target(), b"/a/b?x=1&y=2");
        assert_eq!(h.path(), b"/a/b");
        assert_eq!(h.query(), b"x=1&y=2");
        assert_eq!(h.version.as_str(), "HTTP/2.0");
        let pairs: Vec<_> = h.header_pairs().collect();
        assert_eq!(
            pairs,
            [
                (&b"accept"[..], &b"*/*"[..]),
                (b"content-length", b"3"),
                (b"host", b"example.com")
            ]
        );
        assert_eq!(b.content_length, Some(3));
    }

    #[test]
    fn cookie_crumbs_are_joined() {
        let b = build(&with(&[("cookie", "a=1"), ("x", "y"), ("cookie", "b=2")])).unwrap();
        let pairs: Vec<_> = b.head.header_pairs().collect();
        assert!(pairs.contains(&(&b"cookie"[..], &b"a=1; b=2"[..])));
    }

    #[test]
    fn host_must_agree_with_authority() {
        assert!(build(&with(&[("host", "example.com")])).is_ok());
        assert!(malformed(&with(&[("host", "evil.example")])));
    }

    #[test]
    fn malformed_requests_are_refused() {
        assert!(malformed(&with(&[("Accept", "x")])));
        assert!(malformed(&with(&[("connection", "close")])));
        assert!(malformed(&with(&[("transfer-encoding", "chunked")])));
        assert!(malformed(&with(&[("upgrade", "websocket")])));
        assert!(malformed(&with(&[("keep-alive", "5")])));
        assert!(malformed(&with(&[("te", "gzip")])));
        assert!(build(&with(&[("te", "trailers")])).is_ok());
        assert!(malformed(&with(&[("x", "a\r\nb")])));
        assert!(malformed(&with(&[("x", " padded")])));
        assert!(malformed(&with(&[
            ("content-length", "1"),
            ("content-length", "2")
        ])));
        assert!(malformed(&with(&[("content-length", "-1")])));
        assert!(malformed(&with(&[(":status", "200")])));
        assert!(malformed(&with(&[(":protocol", "websocket")])));
        assert!(malformed(&with(&[(":method", "GET")])));
        assert!(malformed(&[
            ("x", "1"),
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/")
        ]));
        assert!(malformed(&[(":method", "GET"), (":scheme", "http")]));
        assert!(malformed(&[(":method", "GET"), (":path", "/")]));
        assert!(malformed(&[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "")
        ]));
        assert!(malformed(&[
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "*")
        ]));
        assert!(build(&[(":method", "OPTIONS"), (":scheme", "http"), (":path", "*")]).is_ok());
    }

    #[test]
    fn connect_is_refused() {
        let r = build(&[(":method", "CONNECT"), (":authority", "example.com:443")]);
        assert_eq!(r.unwrap_err(), Refusal::Connect);
    }

    #[test]
    fn trailers_refuse_pseudo_headers() {
        let mut t = Trailers::default();
        t.field(b"grpc-status", b"0");
        let t = t.finish().unwrap();
        assert_eq!(
            t.pairs().collect::<Vec<_>>(),
            [(&b"grpc-status"[..], &b"0"[..])]
        );
        let mut t = Trailers::default();
        t.field(b":path", b"/");
        assert!(t.finish().is_err());
    }
}
