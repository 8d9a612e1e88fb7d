//! The master's tiny HTTP responder for `--metrics-bind`. It never blocks:
//! the listening socket and every client are non-blocking and watched by
//! the master's poll; a request must arrive whole within `DEADLINE` and fit
//! in `MAX_REQUEST` bytes, or the client is dropped. Every answer ends with
//! `Connection: close`.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use crate::sys::signal::Interest;

/// How long a client has to send its request and read the answer.
pub const DEADLINE: Duration = Duration::from_millis(500);
/// The longest request head read.
const MAX_REQUEST: usize = 4096;
/// Clients served at once; more are refused (closed at accept).
const MAX_CLIENTS: usize = 16;

/// What a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Metrics,
    Healthz,
    Readyz,
}

/// The answer to a route: status code and a text body.
pub struct Answer {
    pub status: u16,
    pub body: String,
    /// `text/plain; version=0.0.4` for /metrics.
    pub content_type: &'static str,
}

impl Answer {
    pub fn text(status: u16, body: impl Into<String>) -> Answer {
        Answer {
            status,
            body: body.into(),
            content_type: "text/plain; charset=utf-8",
        }
    }
}

struct Client {
    stream: TcpStream,
    deadline: Instant,
    buf: Vec<u8>,
    /// The answer, once built, and how much of it is written.
    out: Option<(Vec<u8>, usize)>,
}

pub struct Server {
    listener: TcpListener,
    clients: Vec<Client>,
}

enum Progress {
    Waiting,
    Done,
}

impl Server {
    /// Bind `addr` (with SO_REUSEPORT, so a new master started by USR2 can
    /// bind it while the old one still runs).
    pub fn bind(addr: SocketAddr) -> io::Result<Server> {
        use socket2::{Domain, Socket, Type};
        let sock = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        sock.set_reuse_address(true)?;
        sock.set_reuse_port(true)?;
        sock.bind(&addr.into())?;
        sock.listen(64)?;
        sock.set_nonblocking(true)?;
        Ok(Server {
            listener: sock.into(),
            clients: Vec::new(),
        })
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// What to poll for: new connections, and each client's next step.
    pub fn interests(&self, out: &mut Vec<Interest>) {
        out.push(Interest::read(self.listener.as_raw_fd()));
        for c in &self.clients {
            let fd = c.stream.as_raw_fd();
            out.push(match c.out {
                Some(_) => Interest::write(fd),
                None => Interest::read(fd),
            });
        }
    }

    /// The earliest client deadline, for the poll timeout.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.clients.iter().map(|c| c.deadline).min()
    }

    /// Accept, read, answer and drop clients as far as possible without
    /// waiting. `answer` builds the answer to a route.
    pub fn turn(&mut self, now: Instant, answer: &mut dyn FnMut(Route) -> Answer) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if self.clients.len() >= MAX_CLIENTS || stream.set_nonblocking(true).is_err() {
                        continue; // dropped: closed at once
                    }
                    self.clients.push(Client {
                        stream,
                        deadline: now + DEADLINE,
                        buf: Vec::new(),
                        out: None,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        self.clients.retain_mut(|c| {
            if now >= c.deadline {
                return false;
            }
            matches!(c.step(answer), Ok(Progress::Waiting))
        });
    }
}

impl Client {
    fn step(&mut self, answer: &mut dyn FnMut(Route) -> Answer) -> io::Result<Progress> {
        if self.out.is_none() {
            let mut chunk = [0u8; 1024];
            loop {
                match self.stream.read(&mut chunk) {
                    Ok(0) => return Ok(Progress::Done),
                    Ok(n) => {
                        self.buf.extend_from_slice(&chunk[..n]);
                        if self.buf.len() > MAX_REQUEST {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            match respond(&self.buf, answer) {
                Some(bytes) => self.out = Some((bytes, 0)),
                None => return Ok(Progress::Waiting),
            }
        }
        let Some((bytes, written)) = self.out.as_mut() else {
            return Ok(Progress::Waiting);
        };
        while *written < bytes.len() {
            match self.stream.write(&bytes[*written..]) {
                Ok(0) => return Ok(Progress::Done),
                Ok(n) => *written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Progress::Waiting),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let _ = self.stream.shutdown(Shutdown::Write);
        Ok(Progress::Done)
    }
}

/// The whole response to the request in `buf`, or `None` while its head is
/// incomplete (and within the size limit).
pub fn respond(buf: &[u8], answer: &mut dyn FnMut(Route) -> Answer) -> Option<Vec<u8>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let (method, path) = match req.parse(buf) {
        Ok(httparse::Status::Complete(_)) => (
            req.method.unwrap_or(""),
            req.path.unwrap_or("").split('?').next().unwrap_or(""),
        ),
        Ok(httparse::Status::Partial) if buf.len() <= MAX_REQUEST => return None,
        Ok(httparse::Status::Partial) => {
            return Some(encode(
                &Answer::text(431, "Request header too large\n"),
                false,
            ))
        }
        Err(_) => return Some(encode(&Answer::text(400, "Bad request\n"), false)),
    };
    let head = method == "HEAD";
    if method != "GET" && !head {
        return Some(encode(&Answer::text(405, "Use GET\n"), false));
    }
    let route = match path {
        "/metrics" => Route::Metrics,
        "/healthz" | "/livez" => Route::Healthz,
        "/readyz" => Route::Readyz,
        _ => {
            return Some(encode(
                &Answer::text(404, "Not found: try /metrics, /healthz or /readyz\n"),
                head,
            ))
        }
    };
    Some(encode(&answer(route), head))
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

fn encode(a: &Answer, head_only: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n",
        a.status,
        reason(a.status),
        a.content_type,
        a.body.len()
    );
    if a.status == 405 {
        out.push_str("Allow: GET, HEAD\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    if !head_only {
        bytes.extend_from_slice(a.body.as_bytes());
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(route: Route) -> Answer {
        Answer::text(200, format!("{route:?}\n"))
    }

    fn text(req: &[u8]) -> Option<String> {
        respond(req, &mut answer).map(|b| String::from_utf8(b).unwrap())
    }

    #[test]
    fn routes_are_answered_with_connection_close() {
        let r = text(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(r.contains("\r\nConnection: close\r\n"));
        assert!(r.contains("\r\nContent-Length: 7\r\n"));
        assert!(r.ends_with("\r\n\r\nReadyz\n"));
        assert!(text(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n")
            .unwrap()
            .ends_with("Metrics\n"));
        assert!(text(b"GET /healthz HTTP/1.1\r\n\r\n")
            .unwrap()
            .ends_with("Healthz\n"));
    }

    #[test]
    fn head_gets_no_body() {
        let r = text(b"HEAD /healthz HTTP/1.1\r\n\r\n").unwrap();
        assert!(r.ends_with("\r\n\r\n"), "{r}");
        assert!(r.contains("Content-Length: 8\r\n"));
    }

    #[test]
    fn incomplete_heads_wait_and_bad_ones_are_refused() {
        assert_eq!(text(b"GET /metrics HTTP/1.1\r\nHost:"), None);
        assert!(text(b"\x00\x01garbage\r\n\r\n")
            .unwrap()
            .starts_with("HTTP/1.1 400 "));
        let mut huge = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        huge.resize(MAX_REQUEST + 10, b'a');
        assert!(text(&huge).unwrap().starts_with("HTTP/1.1 431 "));
        assert!(text(b"POST /metrics HTTP/1.1\r\n\r\n")
            .unwrap()
            .starts_with("HTTP/1.1 405 "));
        assert!(text(b"GET /other HTTP/1.1\r\n\r\n")
            .unwrap()
            .starts_with("HTTP/1.1 404 "));
    }

    #[test]
    fn a_silent_client_is_dropped_after_the_deadline_while_others_are_served() {
        let mut server = Server::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = server.local_addr().unwrap();
        let mut slow = TcpStream::connect(addr).unwrap();
        slow.write_all(b"GET /metrics HTTP/1.1\r\n").unwrap();
        let start = Instant::now();
        server.turn(start, &mut answer);
        let mut fast = TcpStream::connect(addr).unwrap();
        fast.write_all(b"GET /healthz HTTP/1.1\r\n\r\n").unwrap();
        fast.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut got = String::new();
        let deadline = Instant::now() + Duration::from_secs(2);
        while !got.ends_with("Healthz\n") && Instant::now() < deadline {
            server.turn(Instant::now(), &mut answer);
            let mut buf = [0u8; 512];
            fast.set_nonblocking(true).unwrap();
            if let Ok(n) = fast.read(&mut buf) {
                got.push_str(std::str::from_utf8(&buf[..n]).unwrap());
            }
        }
        assert!(got.starts_with("HTTP/1.1 200 OK"), "{got}");
        assert_eq!(server.clients.len(), 1, "only the slow client is left");
        server.turn(start + DEADLINE, &mut answer);
        assert!(server.clients.is_empty());
        slow.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(
            slow.read(&mut buf).unwrap_or(0),
            0,
            "closed without an answer"
        );
    }
}
