//! StatsD metrics with gunicorn's names and line format:
//! `<prefix><name>:<value>|c|@1.0`, `|g` or `|ms`, plus `|#<tags>` when
//! dogstatsd tags are set.
//!
//! * `gunicorn.requests` (counter), `gunicorn.request.duration` (timer, ms)
//!   and `gunicorn.request.status.<code>` (counter) for each response, from
//!   the worker;
//! * `gunicorn.workers` (gauge), from the master once per loop turn;
//! * `gunicorn.log.critical|error|warning|exception` (counters), from any
//!   process that logs at those levels.
//!
//! Datagrams go to UDP `host:port` or a unix datagram socket, from a
//! non-blocking socket; a lost datagram or a send error is ignored. A
//! worker batches its request metrics, newline-separated, into datagrams
//! of at most `MAX_DATAGRAM` bytes, sent once per loop turn (`flush`).
//! Nothing is built or sent when statsd is off.

use std::io::Write;
use std::net::{ToSocketAddrs, UdpSocket};
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// gunicorn's default StatsD port.
pub const DEFAULT_PORT: u16 = 8125;
/// Batched lines are sent before a datagram grows past this (fits a 1500-byte MTU).
const MAX_DATAGRAM: usize = 1432;

/// Where metrics go: `--statsd-host`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Addr {
    Udp { host: String, port: u16 },
    Unix(String),
}

impl Addr {
    /// `host`, `host:port`, `[v6]:port` (default port 8125), or
    /// `unix://PATH` / `unix:PATH`.
    pub fn parse(spec: &str) -> Result<Addr, String> {
        let spec = spec.trim();
        if let Some(path) = spec
            .strip_prefix("unix://")
            .or_else(|| spec.strip_prefix("unix:"))
        {
            if path.is_empty() {
                return Err("expected unix://PATH".into());
            }
            return Ok(Addr::Unix(path.to_string()));
        }
        let (host, port) = if let Some(rest) = spec.strip_prefix('[') {
            let (host, after) = rest
                .split_once(']')
                .ok_or("expected [IPV6]:PORT, host:port or unix://PATH")?;
            match after.strip_prefix(':') {
                Some(p) => (host, Some(p)),
                None if after.is_empty() => (host, None),
                None => return Err("expected [IPV6]:PORT".into()),
            }
        } else {
            match spec.rsplit_once(':') {
                Some((h, p)) if !h.contains(':') => (h, Some(p)),
                Some(_) => return Err("an IPv6 address goes in brackets: [::1]:8125".into()),
                None => (spec, None),
            }
        };
        if host.is_empty() {
            return Err("expected host:port or unix://PATH".into());
        }
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|&p| p > 0)
                .ok_or_else(|| format!("{p:?} is not a port number"))?,
            None => DEFAULT_PORT,
        };
        Ok(Addr::Udp {
            host: host.to_string(),
            port,
        })
    }
}

/// The statsd settings (`statsd_host`, `statsd_prefix`, `dogstatsd_tags`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub addr: Addr,
    /// Already normalized by `prefix`.
    pub prefix: String,
    pub tags: String,
}

/// gunicorn's prefix rule: a non-empty prefix ends with exactly one `.`.
pub fn prefix(raw: &str) -> String {
    let base = raw.trim_end_matches('.');
    if base.is_empty() {
        String::new()
    } else {
        format!("{base}.")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Timer,
}

/// Append one metric line (no newline) to `out`.
pub fn line(
    out: &mut Vec<u8>,
    prefix: &str,
    name: &str,
    value: std::fmt::Arguments<'_>,
    kind: Kind,
    tags: &str,
) {
    let suffix = match kind {
        Kind::Counter => "|c|@1.0",
        Kind::Gauge => "|g",
        Kind::Timer => "|ms",
    };
    let _ = write!(out, "{prefix}{name}:{value}{suffix}");
    if !tags.is_empty() {
        let _ = write!(out, "|#{tags}");
    }
}

/// A duration in milliseconds with microsecond precision, as gunicorn sends it.
pub fn millis(d: Duration) -> impl std::fmt::Display {
    struct Ms(u128);
    impl std::fmt::Display for Ms {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{}.{:03}", self.0 / 1000, self.0 % 1000)
        }
    }
    Ms(d.as_micros())
}

enum Socket {
    Udp(UdpSocket),
    Unix(UnixDatagram, String),
}

impl Socket {
    fn open(addr: &Addr) -> std::io::Result<Socket> {
        match addr {
            Addr::Udp { host, port } => {
                let target = (host.as_str(), *port)
                    .to_socket_addrs()?
                    .next()
                    .ok_or_else(|| std::io::Error::other("the host name has no address"))?;
                let local: std::net::SocketAddr = if target.is_ipv6() {
                    (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
                } else {
                    (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
                };
                let sock = UdpSocket::bind(local)?;
                sock.connect(target)?;
                sock.set_nonblocking(true)?;
                Ok(Socket::Udp(sock))
            }
            Addr::Unix(path) => {
                let sock = UnixDatagram::unbound()?;
                sock.set_nonblocking(true)?;
                Ok(Socket::Unix(sock, path.clone()))
            }
        }
    }

    fn send(&self, bytes: &[u8]) {
        let _ = match self {
            Socket::Udp(s) => s.send(bytes),
            Socket::Unix(s, path) => s.send_to(bytes, path),
        };
    }
}

struct Client {
    sock: Socket,
    prefix: String,
    tags: String,
    batch: Vec<u8>,
    scratch: Vec<u8>,
}

impl Client {
    /// Format one metric line into `scratch`.
    fn format(&mut self, name: &str, value: std::fmt::Arguments<'_>, kind: Kind) {
        self.scratch.clear();
        line(
            &mut self.scratch,
            &self.prefix,
            name,
            value,
            kind,
            &self.tags,
        );
    }

    fn send_now(&mut self, name: &str, value: std::fmt::Arguments<'_>, kind: Kind) {
        self.format(name, value, kind);
        self.sock.send(&self.scratch);
    }

    fn batch(&mut self, name: &str, value: std::fmt::Arguments<'_>, kind: Kind) {
        self.format(name, value, kind);
        if !self.batch.is_empty() && self.batch.len() + 1 + self.scratch.len() > MAX_DATAGRAM {
            self.flush();
        }
        if !self.batch.is_empty() {
            self.batch.push(b'\n');
        }
        self.batch.extend_from_slice(&self.scratch);
    }

    fn flush(&mut self) {
        if !self.batch.is_empty() {
            self.sock.send(&self.batch);
            self.batch.clear();
        }
    }
}

static ON: AtomicBool = AtomicBool::new(false);
static CLIENT: Mutex<Option<Client>> = Mutex::new(None);

fn client() -> MutexGuard<'static, Option<Client>> {
    CLIENT.lock().unwrap_or_else(|e| e.into_inner())
}

/// Start (or stop, with `None`) sending metrics. A socket that cannot be
/// made leaves statsd off; the error is returned for a warning.
pub fn install(settings: Option<&Settings>) -> Result<(), String> {
    flush();
    let made = match settings {
        None => None,
        Some(s) => match Socket::open(&s.addr) {
            Ok(sock) => Some(Client {
                sock,
                prefix: s.prefix.clone(),
                tags: s.tags.clone(),
                batch: Vec::with_capacity(MAX_DATAGRAM),
                scratch: Vec::with_capacity(128),
            }),
            Err(e) => {
                *client() = None;
                ON.store(false, Ordering::Release);
                return Err(format!("statsd_host {:?}: {e}", s.addr));
            }
        },
    };
    let on = made.is_some();
    *client() = made;
    ON.store(on, Ordering::Release);
    Ok(())
}

#[inline]
pub fn enabled() -> bool {
    ON.load(Ordering::Relaxed)
}

/// One ended response: `gunicorn.request.duration`, `gunicorn.requests`,
/// `gunicorn.request.status.<code>` (batched until `flush`).
pub fn request(status: u16, duration: Duration) {
    if !enabled() {
        return;
    }
    if let Some(c) = client().as_mut() {
        c.batch(
            "gunicorn.request.duration",
            format_args!("{}", millis(duration)),
            Kind::Timer,
        );
        c.batch("gunicorn.requests", format_args!("1"), Kind::Counter);
        let mut name = [0u8; 32];
        let mut w = &mut name[..];
        let _ = write!(w, "gunicorn.request.status.{status}");
        let used = 32 - w.len();
        if let Ok(name) = std::str::from_utf8(&name[..used]) {
            c.batch(name, format_args!("1"), Kind::Counter);
        }
    }
}

/// A gauge, sent at once (`gunicorn.workers`).
pub fn gauge(name: &str, value: u64) {
    if !enabled() {
        return;
    }
    if let Some(c) = client().as_mut() {
        c.send_now(name, format_args!("{value}"), Kind::Gauge);
    }
}

/// One more of a counted event of the master's (`ferrocorn.workers.signal_deaths`), sent at once.
pub fn increment(name: &str) {
    if !enabled() {
        return;
    }
    if let Some(c) = client().as_mut() {
        c.send_now(name, format_args!("1"), Kind::Counter);
    }
}

/// A log line at a counted level: `gunicorn.log.<what>`, sent at once.
pub fn log_line(what: &'static str) {
    if !enabled() {
        return;
    }
    let name = match what {
        "critical" => "gunicorn.log.critical",
        "error" => "gunicorn.log.error",
        "warning" => "gunicorn.log.warning",
        "exception" => "gunicorn.log.exception",
        _ => return,
    };
    // try_lock: a log line written while this process is sending must not deadlock.
    if let Ok(mut guard) = CLIENT.try_lock() {
        if let Some(c) = guard.as_mut() {
            c.send_now(name, format_args!("1"), Kind::Counter);
        }
    }
}

/// Send the batched lines (the worker calls it once per loop turn).
pub fn flush() {
    if !enabled() {
        return;
    }
    if let Some(c) = client().as_mut() {
        c.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(kind: Kind, tags: &str) -> String {
        let mut out = Vec::new();
        line(
            &mut out,
            "app.",
            "gunicorn.requests",
            format_args!("1"),
            kind,
            tags,
        );
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn lines_follow_gunicorns_format() {
        assert_eq!(text(Kind::Counter, ""), "app.gunicorn.requests:1|c|@1.0");
        assert_eq!(text(Kind::Gauge, ""), "app.gunicorn.requests:1|g");
        assert_eq!(text(Kind::Timer, ""), "app.gunicorn.requests:1|ms");
        assert_eq!(
            text(Kind::Counter, "env:prod,team:web"),
            "app.gunicorn.requests:1|c|@1.0|#env:prod,team:web"
        );
    }

    #[test]
    fn durations_are_milliseconds_with_microseconds() {
        assert_eq!(millis(Duration::from_micros(1234)).to_string(), "1.234");
        assert_eq!(millis(Duration::from_micros(5)).to_string(), "0.005");
        assert_eq!(millis(Duration::from_secs(2)).to_string(), "2000.000");
    }

    #[test]
    fn prefix_gets_one_trailing_dot() {
        assert_eq!(prefix(""), "");
        assert_eq!(prefix("app"), "app.");
        assert_eq!(prefix("app..."), "app.");
        assert_eq!(prefix("a.b"), "a.b.");
        assert_eq!(prefix("..."), "");
    }

    #[test]
    fn addresses_parse_like_gunicorns() {
        let udp = |h: &str, p| Addr::Udp {
            host: h.into(),
            port: p,
        };
        assert_eq!(Addr::parse("localhost"), Ok(udp("localhost", 8125)));
        assert_eq!(Addr::parse("10.0.0.1:9125"), Ok(udp("10.0.0.1", 9125)));
        assert_eq!(Addr::parse("[::1]:9000"), Ok(udp("::1", 9000)));
        assert_eq!(Addr::parse("[::1]"), Ok(udp("::1", 8125)));
        assert_eq!(
            Addr::parse("unix:///run/statsd.sock"),
            Ok(Addr::Unix("/run/statsd.sock".into()))
        );
        assert_eq!(
            Addr::parse("unix:/run/s.sock"),
            Ok(Addr::Unix("/run/s.sock".into()))
        );
        assert!(Addr::parse("host:port").is_err());
        assert!(Addr::parse("host:0").is_err());
        assert!(Addr::parse("::1:8125").is_err());
        assert!(Addr::parse(":8125").is_err());
        assert!(Addr::parse("unix://").is_err());
    }

    #[test]
    fn a_batch_never_exceeds_one_datagram() {
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let addr = peer.local_addr().unwrap();
        let mut c = Client {
            sock: Socket::open(&Addr::Udp {
                host: "127.0.0.1".into(),
                port: addr.port(),
            })
            .unwrap(),
            prefix: "p.".into(),
            tags: String::new(),
            batch: Vec::new(),
            scratch: Vec::new(),
        };
        for _ in 0..200 {
            c.batch("gunicorn.requests", format_args!("1"), Kind::Counter);
        }
        c.flush();
        let mut buf = [0u8; 65536];
        let mut lines = 0;
        while lines < 200 {
            let n = peer.recv(&mut buf).unwrap();
            assert!(n <= MAX_DATAGRAM);
            let text = std::str::from_utf8(&buf[..n]).unwrap();
            for l in text.split('\n') {
                assert_eq!(l, "p.gunicorn.requests:1|c|@1.0");
                lines += 1;
            }
        }
        assert_eq!(lines, 200);
    }
}
