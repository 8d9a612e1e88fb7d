//! The request target: `urlsplit`-compatible path/query, percent-decoding.
//!
//! gunicorn takes PATH_INFO and QUERY_STRING from Python's
//! `urllib.parse.urlsplit` (through `util.split_request_uri`), so the split
//! here copies its rules, quirks included: `example.com:443` has the scheme
//! `example.com` and the path `443`, and a target starting with `//` is all
//! path.

use std::net::Ipv6Addr;
use std::ops::Range;

/// Where the path and the query are in a target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct TargetParts {
    pub path: Range<usize>,
    /// Without the `?`; empty (at the end of the path) when there is none.
    pub query: Range<usize>,
}

/// `urlsplit`'s scheme characters.
fn is_scheme_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')
}

/// Split a target of printable ASCII the way gunicorn does. `Err` where
/// `urlsplit` raises `ValueError` (a bad bracketed host).
pub(super) fn split_target(t: &[u8]) -> Result<TargetParts, ()> {
    let mut rest = 0;
    // gunicorn splits "//x" as "./x" minus the dot: no scheme, no netloc.
    if !t.starts_with(b"//") {
        if let Some(colon) = t.iter().position(|&b| b == b':') {
            if colon > 0
                && t[0].is_ascii_alphabetic()
                && t[..colon].iter().all(|&b| is_scheme_byte(b))
            {
                rest = colon + 1;
            }
        }
        if t[rest..].starts_with(b"//") {
            let start = rest + 2;
            let end = t[start..]
                .iter()
                .position(|&b| matches!(b, b'/' | b'?' | b'#'))
                .map_or(t.len(), |i| start + i);
            check_netloc(&t[start..end])?;
            rest = end;
        }
    }
    let end = t[rest..]
        .iter()
        .position(|&b| b == b'#')
        .map_or(t.len(), |i| rest + i);
    Ok(match t[rest..end].iter().position(|&b| b == b'?') {
        Some(q) => TargetParts {
            path: rest..rest + q,
            query: rest + q + 1..end,
        },
        None => TargetParts {
            path: rest..end,
            query: end..end,
        },
    })
}

/// `urlsplit`'s checks of the authority: brackets must pair up and hold an
/// IPv6 address (optionally with a zone) or an IPvFuture literal.
fn check_netloc(netloc: &[u8]) -> Result<(), ()> {
    let open = netloc.iter().position(|&b| b == b'[');
    let has_close = netloc.contains(&b']');
    match (open, has_close) {
        (None, false) => Ok(()),
        (Some(open), true) => {
            let after = &netloc[open + 1..];
            let host = after
                .iter()
                .position(|&b| b == b']')
                .map_or(after, |i| &after[..i]);
            check_bracketed_host(host)
        }
        _ => Err(()),
    }
}

fn check_bracketed_host(host: &[u8]) -> Result<(), ()> {
    if let Some(future) = host.strip_prefix(b"v") {
        // \Av[a-fA-F0-9]+\..+\Z
        let hex = future.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        return match future.get(hex) {
            Some(b'.') if hex > 0 && future.len() > hex + 1 => Ok(()),
            _ => Err(()),
        };
    }
    let host = std::str::from_utf8(host).map_err(|_| ())?;
    let addr = match host.split_once('%') {
        Some((addr, zone)) if !zone.is_empty() && !zone.contains('%') => addr,
        Some(_) => return Err(()),
        None => host,
    };
    addr.parse::<Ipv6Addr>().map(|_| ()).map_err(|_| ())
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decode a path (`%41` → `A`); malformed escapes stay as they are.
pub fn percent_decode(input: &[u8]) -> Vec<u8> {
    let Some(first) = input.iter().position(|&b| b == b'%') else {
        return input.to_vec();
    };
    let mut out = Vec::with_capacity(input.len());
    out.extend_from_slice(&input[..first]);
    let mut i = first;
    while i < input.len() {
        let b = input[i];
        if b == b'%' {
            if let (Some(hi), Some(lo)) = (
                input.get(i + 1).copied().and_then(hex_value),
                input.get(i + 2).copied().and_then(hex_value),
            ) {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        out.push(b);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(t: &str) -> (String, String) {
        let parts = split_target(t.as_bytes()).expect("target splits");
        (t[parts.path].to_string(), t[parts.query].to_string())
    }

    fn pair(path: &str, query: &str) -> (String, String) {
        (path.to_string(), query.to_string())
    }

    #[test]
    fn origin_form_splits_path_query_and_drops_fragment() {
        assert_eq!(split("/a/b?x=1&y=2#frag"), pair("/a/b", "x=1&y=2"));
        assert_eq!(split("/a#f?not-query"), pair("/a", ""));
        assert_eq!(split("/a?q?r"), pair("/a", "q?r"));
        assert_eq!(split("/"), pair("/", ""));
    }

    #[test]
    fn absolute_form_keeps_only_the_path() {
        assert_eq!(split("http://example.com/foo?q=1"), pair("/foo", "q=1"));
        assert_eq!(
            split("http://user:pass@example.com:8080/foo?q=1"),
            pair("/foo", "q=1")
        );
        assert_eq!(split("http://[::1]:8080/foo"), pair("/foo", ""));
        assert_eq!(split("https://example.com"), pair("", ""));
        assert_eq!(split("http://h?q#f"), pair("", "q"));
    }

    #[test]
    fn authority_form_reads_like_urlsplit() {
        assert_eq!(split("example.com:443"), pair("443", ""));
        assert_eq!(split("[::1]:443"), pair("[::1]:443", ""));
        assert_eq!(split("127.0.0.1:443"), pair("127.0.0.1:443", ""));
        assert_eq!(split("*"), pair("*", ""));
    }

    #[test]
    fn double_slash_target_is_all_path() {
        assert_eq!(split("//evil.com/x?q"), pair("//evil.com/x", "q"));
        assert_eq!(split("//a:b@[x/y"), pair("//a:b@[x/y", ""));
    }

    #[test]
    fn bad_bracketed_hosts_are_refused_like_urlsplit() {
        assert!(split_target(b"http://[::1/x").is_err());
        assert!(split_target(b"http://::1]/x").is_err());
        assert!(split_target(b"http://[1.2.3.4]/x").is_err());
        assert!(split_target(b"http://[zz]/x").is_err());
        assert!(split_target(b"http://[fe80::1%25eth0]/x").is_ok());
        assert!(split_target(b"http://[v1.fe]/x").is_ok());
        assert!(split_target(b"http://[v1.]/x").is_err());
        assert!(split_target(b"http://[vz.a]/x").is_err());
    }

    #[test]
    fn percent_decode_decodes_valid_escapes_only() {
        assert_eq!(percent_decode(b"/a%20b%2Fc"), b"/a b/c");
        assert_eq!(percent_decode(b"/%zz%4"), b"/%zz%4");
        assert_eq!(percent_decode(b"%"), b"%");
        assert_eq!(percent_decode(b"%e9%C3%A9"), b"\xe9\xc3\xa9");
        assert_eq!(percent_decode(b"/plain"), b"/plain");
        assert_eq!(percent_decode(b"%%41"), b"%A");
    }
}
