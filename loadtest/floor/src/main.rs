//! The floor of the load test: a minimal HTTP/1.1 responder on io_uring that
//! does nothing but answer `Hello, World!`. One thread, one ring, one
//! receive buffer per connection; no parsing beyond counting the requests in
//! what arrived (each ends with an empty line) and noticing
//! `Connection: close`. What it costs per request is what the kernel's
//! loopback TCP and io_uring cost: the floor any server's figure stands on.
//!
//!     floor HOST PORT
//!
//! It answers GET requests without bodies only (the hello cell); it is not a
//! server for anything else.

use std::io;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::time::{SystemTime, UNIX_EPOCH};

use io_uring::{opcode, squeue, types, IoUring};

const BUF: usize = 4096;
const ACCEPT: u64 = u64::MAX;
const BODY: &[u8] = b"Hello, World!";

/// What a connection's last completion was for, in the low bits of its user data.
const RECV: u64 = 0;
const SEND: u64 = 1;

struct Conn {
    fd: i32,
    buf: Box<[u8; BUF]>,
    /// How far into "\r\n\r\n" the bytes so far have matched.
    matched: usize,
    /// How far into "connection: close" the current line has matched.
    close_matched: usize,
    close_after: bool,
    out: Vec<u8>,
    sent: usize,
}

fn main() -> io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(host), Some(port)) = (args.next(), args.next()) else {
        eprintln!("usage: floor HOST PORT");
        std::process::exit(2);
    };
    let listener = TcpListener::bind((
        host.as_str(),
        port.parse::<u16>().map_err(io::Error::other)?,
    ))?;
    let lfd = listener.as_raw_fd();
    let mut ring = IoUring::new(4096)?;
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut date = DateLine::default();
    push(
        &mut ring,
        opcode::AcceptMulti::new(types::Fd(lfd))
            .build()
            .user_data(ACCEPT),
    )?;
    loop {
        ring.submit_and_wait(1)?;
        let cqes: Vec<(u64, i32, u32)> = ring
            .completion()
            .map(|c| (c.user_data(), c.result(), c.flags()))
            .collect();
        for (data, res, flags) in cqes {
            if data == ACCEPT {
                if !io_uring::cqueue::more(flags) {
                    push(
                        &mut ring,
                        opcode::AcceptMulti::new(types::Fd(lfd))
                            .build()
                            .user_data(ACCEPT),
                    )?;
                }
                if res < 0 {
                    continue;
                }
                let conn = Conn {
                    fd: res,
                    buf: Box::new([0; BUF]),
                    matched: 0,
                    close_matched: 0,
                    close_after: false,
                    out: Vec::new(),
                    sent: 0,
                };
                let i = match free.pop() {
                    Some(i) => {
                        conns[i] = Some(conn);
                        i
                    }
                    None => {
                        conns.push(Some(conn));
                        conns.len() - 1
                    }
                };
                recv(&mut ring, &mut conns, i)?;
                continue;
            }
            let (i, kind) = ((data >> 1) as usize, data & 1);
            let Some(c) = conns[i].as_mut() else { continue };
            if res <= 0 {
                close(&mut conns, &mut free, i);
                continue;
            }
            if kind == RECV {
                let n = count_requests(c, res as usize);
                if n == 0 {
                    recv(&mut ring, &mut conns, i)?;
                    continue;
                }
                c.out.clear();
                c.sent = 0;
                let head = date.response_head();
                for _ in 0..n {
                    c.out.extend_from_slice(head);
                    c.out.extend_from_slice(BODY);
                }
                send(&mut ring, c, i)?;
            } else {
                c.sent += res as usize;
                if c.sent < c.out.len() {
                    send(&mut ring, c, i)?;
                } else if c.close_after {
                    close(&mut conns, &mut free, i);
                } else {
                    recv(&mut ring, &mut conns, i)?;
                }
            }
        }
    }
}

/// Count the requests that ended in the `len` bytes just received, and note
/// a `Connection: close` header line.
fn count_requests(c: &mut Conn, len: usize) -> usize {
    const END: &[u8] = b"\r\n\r\n";
    const CLOSE: &[u8] = b"\nconnection: close";
    let mut n = 0;
    for &b in &c.buf[..len] {
        c.matched = if b == END[c.matched] {
            c.matched + 1
        } else if b == END[0] {
            1
        } else {
            0
        };
        if c.matched == END.len() {
            n += 1;
            c.matched = 0;
        }
        let lower = b.to_ascii_lowercase();
        c.close_matched = if lower == CLOSE[c.close_matched] {
            c.close_matched + 1
        } else if lower == CLOSE[0] {
            1
        } else {
            0
        };
        if c.close_matched == CLOSE.len() {
            c.close_after = true;
            c.close_matched = 0;
        }
    }
    n
}

fn recv(ring: &mut IoUring, conns: &mut [Option<Conn>], i: usize) -> io::Result<()> {
    let c = conns[i].as_mut().expect("open connection");
    let op = opcode::Recv::new(types::Fd(c.fd), c.buf.as_mut_ptr(), BUF as u32)
        .build()
        .user_data((i as u64) << 1 | RECV);
    push(ring, op)
}

fn send(ring: &mut IoUring, c: &mut Conn, i: usize) -> io::Result<()> {
    let rest = &c.out[c.sent..];
    let op = opcode::Send::new(types::Fd(c.fd), rest.as_ptr(), rest.len() as u32)
        .build()
        .user_data((i as u64) << 1 | SEND);
    push(ring, op)
}

fn close(conns: &mut [Option<Conn>], free: &mut Vec<usize>, i: usize) {
    if let Some(c) = conns[i].take() {
        // SAFETY: the descriptor came from accept and is closed once, here;
        // no operation on it is in flight (each connection has at most one).
        unsafe { libc::close(c.fd) };
        free.push(i);
    }
}

fn push(ring: &mut IoUring, op: squeue::Entry) -> io::Result<()> {
    // SAFETY: every buffer an entry points at (a connection's receive
    // buffer or output) lives in its connection until the entry completes:
    // a connection has one operation in flight and is dropped only after it.
    while unsafe { ring.submission().push(&op) }.is_err() {
        ring.submit()?;
    }
    Ok(())
}

/// The response head with a Date line renewed once a second.
#[derive(Default)]
struct DateLine {
    second: u64,
    head: Vec<u8>,
}

impl DateLine {
    fn response_head(&mut self) -> &[u8] {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if now != self.second || self.head.is_empty() {
            self.second = now;
            self.head = format!(
                "HTTP/1.1 200 OK\r\nServer: floor\r\nDate: {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
                http_date(now),
                BODY.len()
            )
            .into_bytes();
        }
        &self.head
    }
}

/// RFC 9110's IMF-fixdate for a Unix time.
fn http_date(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[(days % 7) as usize],
        day,
        MONTHS[(month - 1) as usize],
        year,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn() -> Conn {
        Conn {
            fd: -1,
            buf: Box::new([0; BUF]),
            matched: 0,
            close_matched: 0,
            close_after: false,
            out: Vec::new(),
            sent: 0,
        }
    }

    fn feed(c: &mut Conn, bytes: &[u8]) -> usize {
        c.buf[..bytes.len()].copy_from_slice(bytes);
        count_requests(c, bytes.len())
    }

    #[test]
    fn requests_are_counted_across_reads() {
        let mut c = conn();
        let req = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(feed(&mut c, &[req.as_slice(), req.as_slice()].concat()), 2);
        for split in 1..req.len() {
            let mut c = conn();
            assert_eq!(feed(&mut c, &req[..split]) + feed(&mut c, &req[split..]), 1);
        }
        assert!(!c.close_after);
    }

    #[test]
    fn connection_close_is_noticed() {
        let mut c = conn();
        assert_eq!(
            feed(
                &mut c,
                b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            ),
            1
        );
        assert!(c.close_after);
    }

    #[test]
    fn dates_are_imf_fixdates() {
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(1_796_644_800), "Mon, 07 Dec 2026 12:00:00 GMT");
        assert_eq!(http_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
    }
}
