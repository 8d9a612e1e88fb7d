//! Syslog over a datagram socket (UDP or a unix datagram socket), in the
//! shape of gunicorn's handler: `<PRI>ferrocorn.PREFIX.error: [PID] message`.

use std::io;
use std::net::{ToSocketAddrs, UdpSocket};
use std::os::unix::net::UnixDatagram;

/// gunicorn's `SYSLOG_FACILITIES`.
pub fn facility(name: &str) -> Option<u8> {
    Some(match name.to_ascii_lowercase().as_str() {
        "kern" => 0,
        "user" => 1,
        "mail" => 2,
        "daemon" => 3,
        "auth" | "security" => 4,
        "syslog" => 5,
        "lpr" => 6,
        "news" => 7,
        "uucp" => 8,
        "cron" => 9,
        "authpriv" => 10,
        "ftp" => 11,
        "local0" => 16,
        "local1" => 17,
        "local2" => 18,
        "local3" => 19,
        "local4" => 20,
        "local5" => 21,
        "local6" => 22,
        "local7" => 23,
        _ => return None,
    })
}

#[derive(Debug)]
enum Sock {
    Udp(UdpSocket),
    Unix(UnixDatagram),
}

#[derive(Debug)]
pub struct Syslog {
    sock: Sock,
    facility: u8,
    /// `ferrocorn.PREFIX` (the `.error`/`.access` part is added per line).
    program: String,
}

impl Syslog {
    /// `addr`: `udp://HOST:PORT`, `unix://PATH` or `unix://PATH#dgram`.
    pub fn connect(addr: &str, facility: u8, program: String) -> Result<Syslog, String> {
        let sock = if let Some(path) = addr.strip_prefix("unix://") {
            let path = path.split('#').next().unwrap_or(path);
            let s = UnixDatagram::unbound().map_err(|e| e.to_string())?;
            s.connect(path).map_err(|e| format!("{path}: {e}"))?;
            Sock::Unix(s)
        } else if let Some(hostport) = addr.strip_prefix("udp://") {
            let target = if hostport.contains(':') {
                hostport.to_string()
            } else {
                format!("{hostport}:514")
            };
            let peer = target
                .to_socket_addrs()
                .map_err(|e| format!("{target}: {e}"))?
                .next()
                .ok_or_else(|| format!("{target}: no address"))?;
            let local = if peer.is_ipv4() {
                "0.0.0.0:0"
            } else {
                "[::]:0"
            };
            let s = UdpSocket::bind(local).map_err(|e| e.to_string())?;
            s.connect(peer).map_err(|e| format!("{target}: {e}"))?;
            Sock::Udp(s)
        } else {
            return Err("expected udp://HOST:PORT or unix://PATH (tcp:// is not supported)".into());
        };
        Ok(Syslog {
            sock,
            facility,
            program,
        })
    }

    /// Send one message; `severity` is syslog's (3 error, 4 warning, 6 info, 7 debug).
    pub fn send(&self, severity: u8, channel: &str, message: &str) -> io::Result<()> {
        let line = format_line(self.facility, severity, &self.program, channel, message);
        match &self.sock {
            Sock::Udp(s) => s.send(&line).map(drop),
            Sock::Unix(s) => s.send(&line).map(drop),
        }
    }
}

/// `<PRI>PROGRAM.CHANNEL: [PID] message\0`, as Python's SysLogHandler sends it.
pub fn format_line(
    facility: u8,
    severity: u8,
    program: &str,
    channel: &str,
    message: &str,
) -> Vec<u8> {
    let pri = (facility as u32) * 8 + severity as u32;
    let mut out = format!(
        "<{pri}>{program}.{channel}: [{}] {}",
        std::process::id(),
        message.trim_end_matches('\n')
    )
    .into_bytes();
    out.push(0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_has_priority_tag_and_pid() {
        let line = format_line(1, 3, "ferrocorn.shop", "error", "boom\n");
        let expect = format!("<11>ferrocorn.shop.error: [{}] boom\0", std::process::id());
        assert_eq!(line, expect.as_bytes());
    }

    #[test]
    fn udp_messages_arrive() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let addr = format!("udp://{}", rx.local_addr().unwrap());
        let s = Syslog::connect(&addr, facility("local0").unwrap(), "ferrocorn.x".into()).unwrap();
        s.send(6, "access", "GET /").unwrap();
        let mut buf = [0u8; 256];
        let n = rx.recv(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"<134>ferrocorn.x.access: ["));
    }

    #[test]
    fn unknown_scheme_and_facility_are_refused() {
        assert!(Syslog::connect("tcp://localhost:514", 1, "p".into()).is_err());
        assert_eq!(facility("nope"), None);
    }
}
