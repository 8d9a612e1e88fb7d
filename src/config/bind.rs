//! `--bind` addresses: HOST, HOST:PORT, [IPV6]:PORT, unix:PATH.

use std::fmt;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

/// 8000: gunicorn's port when an address names only a host.
const DEFAULT_PORT: u16 = 8000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BindAddr {
    Tcp(SocketAddr),
    Unix(String),
    /// An already open listening socket (`fd://N`).
    Fd(i32),
}

impl BindAddr {
    pub fn parse(spec: &str) -> Result<BindAddr, String> {
        let spec = spec.trim();
        if let Some(path) = spec.strip_prefix("unix:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err("a unix socket needs a path, as in unix:/run/app.sock".into());
            }
            return Ok(BindAddr::Unix(path.to_string()));
        }
        if let Some(n) = spec.strip_prefix("fd://") {
            return match n.parse::<i32>() {
                Ok(fd) if fd >= 0 => Ok(BindAddr::Fd(fd)),
                _ => Err(format!("fd://{n}: expected a file descriptor number")),
            };
        }
        let spec = spec.strip_prefix("tcp://").unwrap_or(spec);
        if spec.is_empty() {
            return Err("expected HOST, HOST:PORT, [IPV6]:PORT or unix:PATH".into());
        }
        let (host, port) = split_host_port(spec)?;
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .map_err(|_| format!("port {p:?} is not a number from 0 to 65535"))?,
            None => DEFAULT_PORT,
        };
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(BindAddr::Tcp(SocketAddr::new(ip, port)));
        }
        let mut addrs = (host, port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve host {host:?}: {e}"))?;
        addrs
            .next()
            .map(BindAddr::Tcp)
            .ok_or_else(|| format!("host {host:?} has no address"))
    }
}

fn split_host_port(spec: &str) -> Result<(&str, Option<&str>), String> {
    if let Some(rest) = spec.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or("an IPv6 address must be closed with ']', as in [::1]:8000")?;
        return match after {
            "" => Ok((host, None)),
            _ => after
                .strip_prefix(':')
                .map(|p| (host, Some(p)))
                .ok_or_else(|| format!("unexpected {after:?} after the IPv6 address")),
        };
    }
    match spec.matches(':').count() {
        0 => Ok((spec, None)),
        1 => {
            let (h, p) = spec.split_once(':').unwrap_or((spec, ""));
            Ok((h, Some(p)))
        }
        // A bare IPv6 address without a port.
        _ => Ok((spec, None)),
    }
}

impl fmt::Display for BindAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindAddr::Tcp(addr) => write!(f, "http://{addr}"),
            BindAddr::Unix(path) => write!(f, "unix:{path}"),
            BindAddr::Fd(fd) => write!(f, "fd://{fd}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_bind_form() {
        assert_eq!(
            BindAddr::parse("127.0.0.1:9000").unwrap(),
            BindAddr::Tcp("127.0.0.1:9000".parse().unwrap())
        );
        assert_eq!(
            BindAddr::parse("127.0.0.1").unwrap(),
            BindAddr::Tcp("127.0.0.1:8000".parse().unwrap())
        );
        assert_eq!(
            BindAddr::parse("[::1]:9000").unwrap(),
            BindAddr::Tcp("[::1]:9000".parse().unwrap())
        );
        assert_eq!(
            BindAddr::parse("[::1]").unwrap(),
            BindAddr::Tcp("[::1]:8000".parse().unwrap())
        );
        assert_eq!(
            BindAddr::parse("::1").unwrap(),
            BindAddr::Tcp("[::1]:8000".parse().unwrap())
        );
        assert_eq!(
            BindAddr::parse("tcp://0.0.0.0:80").unwrap(),
            BindAddr::Tcp("0.0.0.0:80".parse().unwrap())
        );
        assert_eq!(
            BindAddr::parse("unix:/tmp/a.sock").unwrap(),
            BindAddr::Unix("/tmp/a.sock".into())
        );
        assert!(
            matches!(BindAddr::parse("localhost:8001").unwrap(), BindAddr::Tcp(a) if a.port() == 8001)
        );
    }

    #[test]
    fn rejects_bad_bind_forms() {
        assert!(BindAddr::parse("127.0.0.1:99999").is_err());
        assert!(BindAddr::parse("127.0.0.1:x").is_err());
        assert!(BindAddr::parse("[::1").is_err());
        assert!(BindAddr::parse("unix:").is_err());
        assert!(BindAddr::parse("").is_err());
        assert_eq!(BindAddr::parse("fd://3").unwrap(), BindAddr::Fd(3));
        assert!(BindAddr::parse("fd://x").is_err());
    }
}
