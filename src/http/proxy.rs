//! PROXY protocol v1 (text) and v2 (binary) preamble.
//!
//! Looked for only at the very start of a connection, as gunicorn does; the
//! addresses then belong to every request of that connection.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::error::{HttpError, HttpErrorKind};
use super::limits::MAX_PROXY_V1_LINE;
use super::ProxyProtocol;

/// Addresses from a PROXY header (`None` for LOCAL / UNKNOWN).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyInfo {
    /// `TCP4`, `TCP6`, `LOCAL` or `UNSPEC`, for the PROXY_PROTOCOL environ key.
    pub protocol: &'static str,
    pub source: Option<SocketAddr>,
    pub dest: Option<SocketAddr>,
}

const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
const V1_PREFIX: &[u8; 6] = b"PROXY ";

/// What the first bytes of a connection hold.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Preamble {
    NeedMore,
    /// Not a PROXY header: the bytes are the first request.
    Absent,
    /// A PROXY header of `len` bytes.
    Found {
        info: ProxyInfo,
        len: usize,
    },
}

fn invalid(detail: &str) -> HttpError {
    HttpError::new(HttpErrorKind::InvalidProxyLine, detail)
}

/// Look for a PROXY header at the start of `buf`. `allowed`: the peer may
/// send one (otherwise a header is a 403).
pub(super) fn read_preamble(
    buf: &[u8],
    mode: ProxyProtocol,
    allowed: bool,
) -> Result<Preamble, HttpError> {
    let v2 = matches!(mode, ProxyProtocol::V2 | ProxyProtocol::Auto)
        && V2_SIGNATURE.starts_with(&buf[..buf.len().min(V2_SIGNATURE.len())]);
    let v1 = matches!(mode, ProxyProtocol::V1 | ProxyProtocol::Auto)
        && V1_PREFIX.starts_with(&buf[..buf.len().min(V1_PREFIX.len())]);
    if buf.is_empty() {
        return Ok(if v1 || v2 {
            Preamble::NeedMore
        } else {
            Preamble::Absent
        });
    }
    let complete = (v2 && buf.len() >= V2_SIGNATURE.len()) || (v1 && buf.len() >= V1_PREFIX.len());
    if !v1 && !v2 {
        return Ok(Preamble::Absent);
    }
    if !complete {
        return Ok(Preamble::NeedMore);
    }
    if !allowed {
        return Err(HttpError::new(
            HttpErrorKind::ForbiddenProxyRequest,
            "PROXY header from a peer not in proxy_allow_from",
        ));
    }
    if v2 {
        read_v2(buf)
    } else {
        read_v1(buf)
    }
}

/// `PROXY TCP4|TCP6 src dst sport dport\r\n`; UNKNOWN is refused like gunicorn.
fn read_v1(buf: &[u8]) -> Result<Preamble, HttpError> {
    let window = &buf[..buf.len().min(MAX_PROXY_V1_LINE)];
    let Some(cr) = window.windows(2).position(|w| w == b"\r\n") else {
        if buf.len() >= MAX_PROXY_V1_LINE {
            return Err(invalid("PROXY line too long"));
        }
        return Ok(Preamble::NeedMore);
    };
    let line = std::str::from_utf8(&buf[..cr]).map_err(|_| invalid("PROXY line is not text"))?;
    let parts: Vec<&str> = line.split(' ').collect();
    let [_, proto, src, dst, sport, dport] = parts[..] else {
        return Err(invalid("PROXY line needs 6 fields"));
    };
    let (src, dst): (IpAddr, IpAddr) = match proto {
        "TCP4" => (
            IpAddr::V4(
                src.parse::<Ipv4Addr>()
                    .map_err(|_| invalid("bad IPv4 address"))?,
            ),
            IpAddr::V4(
                dst.parse::<Ipv4Addr>()
                    .map_err(|_| invalid("bad IPv4 address"))?,
            ),
        ),
        "TCP6" => (
            IpAddr::V6(
                src.parse::<Ipv6Addr>()
                    .map_err(|_| invalid("bad IPv6 address"))?,
            ),
            IpAddr::V6(
                dst.parse::<Ipv6Addr>()
                    .map_err(|_| invalid("bad IPv6 address"))?,
            ),
        ),
        _ => return Err(invalid("PROXY protocol not supported")),
    };
    let port = |s: &str| -> Result<u16, HttpError> {
        if s.is_empty() || s.len() > 5 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid("bad port"));
        }
        s.parse::<u16>().map_err(|_| invalid("bad port"))
    };
    let info = ProxyInfo {
        protocol: proto_name(proto),
        source: Some(SocketAddr::new(src, port(sport)?)),
        dest: Some(SocketAddr::new(dst, port(dport)?)),
    };
    Ok(Preamble::Found { info, len: cr + 2 })
}

fn proto_name(proto: &str) -> &'static str {
    if proto == "TCP4" {
        "TCP4"
    } else {
        "TCP6"
    }
}

/// The binary header: signature, version/command, family/transport, length,
/// addresses. Anything gunicorn refuses is a 400 here (gunicorn lets it
/// become a 500).
fn read_v2(buf: &[u8]) -> Result<Preamble, HttpError> {
    let Some(fixed) = buf.get(..16) else {
        return Ok(Preamble::NeedMore);
    };
    let (ver_cmd, fam_proto) = (fixed[12], fixed[13]);
    let len = usize::from(u16::from_be_bytes([fixed[14], fixed[15]]));
    if ver_cmd >> 4 != 2 {
        return Err(invalid("unsupported PROXY v2 version"));
    }
    let command = ver_cmd & 0x0f;
    if command > 1 {
        return Err(invalid("unsupported PROXY v2 command"));
    }
    let total = 16 + len;
    let Some(addr) = buf.get(16..total) else {
        return Ok(Preamble::NeedMore);
    };
    let none = |protocol| {
        Ok(Preamble::Found {
            info: ProxyInfo {
                protocol,
                source: None,
                dest: None,
            },
            len: total,
        })
    };
    if command == 0 {
        return none("LOCAL");
    }
    if fam_proto & 0x0f != 1 {
        return Err(invalid("PROXY v2 transport is not STREAM"));
    }
    let (protocol, src, dst, ports) = match fam_proto >> 4 {
        0 => return none("UNSPEC"),
        1 if len >= 12 => {
            let ip = |o: usize| {
                IpAddr::V4(Ipv4Addr::new(
                    addr[o],
                    addr[o + 1],
                    addr[o + 2],
                    addr[o + 3],
                ))
            };
            ("TCP4", ip(0), ip(4), &addr[8..12])
        }
        2 if len >= 36 => {
            let ip = |o: usize| {
                let mut b = [0u8; 16];
                b.copy_from_slice(&addr[o..o + 16]);
                IpAddr::V6(Ipv6Addr::from(b))
            };
            ("TCP6", ip(0), ip(16), &addr[32..36])
        }
        1 | 2 => return Err(invalid("PROXY v2 address block too short")),
        _ => return Err(invalid("unsupported PROXY v2 address family")),
    };
    let info = ProxyInfo {
        protocol,
        source: Some(SocketAddr::new(
            src,
            u16::from_be_bytes([ports[0], ports[1]]),
        )),
        dest: Some(SocketAddr::new(
            dst,
            u16::from_be_bytes([ports[2], ports[3]]),
        )),
    };
    Ok(Preamble::Found { info, len: total })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(buf: &[u8]) -> Result<Preamble, HttpErrorKind> {
        // Every prefix but the last must ask for more, or decide the same way.
        let whole = read_preamble(buf, ProxyProtocol::Auto, true).map_err(|e| e.kind);
        for n in 0..buf.len() {
            match read_preamble(&buf[..n], ProxyProtocol::Auto, true).map_err(|e| e.kind) {
                Ok(Preamble::NeedMore) => {}
                early => assert_eq!(early, whole, "decided differently after {n} bytes"),
            }
        }
        whole
    }

    fn found(
        protocol: &'static str,
        src: &str,
        dst: &str,
        len: usize,
    ) -> Result<Preamble, HttpErrorKind> {
        Ok(Preamble::Found {
            info: ProxyInfo {
                protocol,
                source: Some(src.parse().unwrap()),
                dest: Some(dst.parse().unwrap()),
            },
            len,
        })
    }

    #[test]
    fn v1_tcp4_and_tcp6_lines_give_addresses() {
        let line = b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\nGET";
        assert_eq!(
            read(line),
            found(
                "TCP4",
                "192.168.0.1:56324",
                "192.168.0.11:443",
                line.len() - 3
            )
        );
        let line = b"PROXY TCP6 ::1 2001:db8::2 1 65535\r\n";
        assert_eq!(
            read(line),
            found("TCP6", "[::1]:1", "[2001:db8::2]:65535", line.len())
        );
    }

    #[test]
    fn bad_v1_lines_are_invalid_proxy_line() {
        for line in [
            &b"PROXY TCP4 192.168.0.1 192.16...\r\n"[..],
            b"PROXY TCP4 192.168.0.1 192.168.0.11 65iii 100000\r\n",
            b"PROXY TCP4 192.168.0.1 192.168.0.11 1 65536\r\n",
            b"PROXY UNKNOWN\r\n",
            b"PROXY UNKNOWN ::1 ::1 1 1\r\n",
            b"PROXY TCP4 ::1 ::1 1 1\r\n",
            b"PROXY TCP6 1.2.3.4 1.2.3.4 1 1\r\n",
            b"PROXY TCP4 1.2.3.4 1.2.3.4 1 1 \r\n",
        ] {
            assert_eq!(
                read(line),
                Err(HttpErrorKind::InvalidProxyLine),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
        assert_eq!(
            read(&[b'P', b'R', b'O', b'X', b'Y', b' ', b'x'].repeat(20)),
            Err(HttpErrorKind::InvalidProxyLine)
        );
    }

    #[test]
    fn v2_headers_give_addresses_or_local() {
        let mut v4 = V2_SIGNATURE.to_vec();
        v4.extend_from_slice(&[
            0x21, 0x11, 0, 12, 192, 168, 1, 10, 192, 168, 1, 1, 0x30, 0x39, 0x01, 0xbb,
        ]);
        assert_eq!(
            read(&v4),
            found("TCP4", "192.168.1.10:12345", "192.168.1.1:443", 28)
        );
        let mut v6 = V2_SIGNATURE.to_vec();
        v6.extend_from_slice(&[0x21, 0x21, 0, 36]);
        v6.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        v6.extend_from_slice(&"2001:db8::2".parse::<Ipv6Addr>().unwrap().octets());
        v6.extend_from_slice(&[0, 80, 0, 81]);
        assert_eq!(read(&v6), found("TCP6", "[::1]:80", "[2001:db8::2]:81", 52));
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 3, 1, 2, 3]);
        assert_eq!(
            read(&local),
            Ok(Preamble::Found {
                info: ProxyInfo {
                    protocol: "LOCAL",
                    source: None,
                    dest: None
                },
                len: 19
            })
        );
    }

    #[test]
    fn bad_v2_headers_are_400() {
        for tail in [
            &[0x11u8, 0x11, 0, 0][..],
            &[0x22, 0x11, 0, 0],
            &[0x21, 0x12, 0, 12],
            &[0x21, 0x11, 0, 4, 1, 2, 3, 4],
            &[0x21, 0x31, 0, 0],
        ] {
            let mut h = V2_SIGNATURE.to_vec();
            h.extend_from_slice(tail);
            h.extend_from_slice(&[0; 12]);
            assert_eq!(
                read(&h).map(|_| ()),
                Err(HttpErrorKind::InvalidProxyLine),
                "{tail:?}"
            );
        }
    }

    #[test]
    fn requests_without_a_header_pass_through() {
        assert_eq!(read(b"GET / HTTP/1.1\r\n\r\n"), Ok(Preamble::Absent));
        assert_eq!(read(b"\r\nGET / HTTP/1.1\r\n\r\n"), Ok(Preamble::Absent));
        assert_eq!(
            read_preamble(b"PROXY TCP4", ProxyProtocol::V2, true),
            Ok(Preamble::Absent)
        );
        assert_eq!(
            read_preamble(V2_SIGNATURE, ProxyProtocol::V1, true),
            Ok(Preamble::Absent)
        );
    }

    #[test]
    fn header_from_an_untrusted_peer_is_403() {
        let r = read_preamble(
            b"PROXY TCP4 1.2.3.4 1.2.3.4 1 1\r\n",
            ProxyProtocol::Auto,
            false,
        );
        assert_eq!(
            r.map_err(|e| e.kind),
            Err(HttpErrorKind::ForbiddenProxyRequest)
        );
        assert_eq!(
            read_preamble(b"GET / HTTP/1.1\r\n", ProxyProtocol::Auto, false),
            Ok(Preamble::Absent)
        );
    }
}
