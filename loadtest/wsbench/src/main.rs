//! The load test's WebSocket echo client: N connections on one thread, each
//! sending a text message of SIZE bytes and waiting for its echo before the
//! next, for SECONDS. Prints one line of JSON with the messages echoed.
//!
//!     wsbench HOST PORT PATH CONNECTIONS SECONDS SIZE [HOLD]
//!
//! With HOLD, every connection then stays open and idle for HOLD more
//! seconds before the client exits (for measuring what idle connections
//! cost the server); the JSON line is printed when the echo part ends.
//!
//! Its own cost per message is a few hundred nanoseconds (one write and one
//! read per message per connection, masking precomputed), so the server
//! under test, not the client, sets the pace.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

/// base64 of the 16 bytes 0..16: a valid Sec-WebSocket-Key.
const KEY: &str = "AAECAwQFBgcICQoLDA0ODw==";

struct Conn {
    stream: TcpStream,
    /// The handshake's response is still being read.
    upgrading: bool,
    inbuf: Vec<u8>,
    /// Bytes of the current frame still to write.
    written: usize,
    /// Pongs that wait for a partly written message to be finished.
    pongs: Vec<u8>,
}

fn main() {
    if let Err(e) = run() {
        eprintln!("wsbench: {e}");
        std::process::exit(1);
    }
}

fn usage() -> io::Error {
    io::Error::other("usage: wsbench HOST PORT PATH CONNECTIONS SECONDS SIZE [HOLD]")
}

fn run() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 6 && args.len() != 7 {
        return Err(usage());
    }
    let num = |i: usize| args[i].parse::<u64>().map_err(|_| usage());
    let (host, port, path) = (&args[0], num(1)? as u16, &args[2]);
    let (conns_n, seconds, size) = (num(3)? as usize, num(4)?, num(5)? as usize);
    let addr: SocketAddr = (host.as_str(), port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| io::Error::other("no address"))?;
    let frame = text_frame(size);
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    let mut poll = Poll::new()?;
    let mut conns = Vec::with_capacity(conns_n);
    for i in 0..conns_n {
        let std_stream = std::net::TcpStream::connect(addr)?;
        std_stream.set_nonblocking(true)?;
        let mut stream = TcpStream::from_std(std_stream);
        stream.set_nodelay(true)?;
        // The handshake is small: a blocking-style write is fine before polling.
        write_all(&mut stream, request.as_bytes())?;
        poll.registry().register(
            &mut stream,
            Token(i),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        conns.push(Conn {
            stream,
            upgrading: true,
            inbuf: Vec::with_capacity(size + 16),
            written: frame.len(),
            pongs: Vec::new(),
        });
    }
    let mut events = Events::with_capacity(1024);
    let mut messages: u64 = 0;
    let mut upgraded = 0;
    let mut started: Option<Instant> = None;
    let deadline = Duration::from_secs(seconds);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if let Some(t) = started {
            if t.elapsed() >= deadline {
                break;
            }
        }
        poll.poll(&mut events, Some(Duration::from_millis(100)))?;
        for ev in events.iter() {
            let i = ev.token().0;
            let c = &mut conns[i];
            loop {
                match c.stream.read(&mut buf) {
                    Ok(0) => {
                        return Err(io::Error::other(format!(
                            "connection {i} closed by the server"
                        )))
                    }
                    Ok(n) => c.inbuf.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
            if c.upgrading {
                let Some(end) = find(&c.inbuf, b"\r\n\r\n") else {
                    continue;
                };
                if !c.inbuf.starts_with(b"HTTP/1.1 101") {
                    let head = String::from_utf8_lossy(&c.inbuf[..end]).into_owned();
                    return Err(io::Error::other(format!("not upgraded: {head}")));
                }
                c.inbuf.drain(..end + 4);
                c.upgrading = false;
                c.written = 0;
                upgraded += 1;
                if upgraded == conns_n {
                    started = Some(Instant::now());
                }
            }
            // Whole echoed frames: count them; each lets the next message go.
            let mid_frame = c.written > 0 && c.written < frame.len();
            let echoes = take_frames(c, mid_frame)?;
            if echoes > 0 {
                if started.is_some() {
                    messages += echoes;
                }
                c.written = 0;
            }
            if !c.upgrading && c.written < frame.len() {
                match c.stream.write(&frame[c.written..]) {
                    Ok(n) => c.written += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
            if !c.pongs.is_empty() && (c.written == 0 || c.written == frame.len()) {
                let pongs = std::mem::take(&mut c.pongs);
                write_all(&mut c.stream, &pongs)?;
            }
        }
        if started.is_none() && upgraded < conns_n {
            continue;
        }
    }
    let elapsed = started.map_or(0.0, |t| t.elapsed().as_secs_f64());
    println!(
        "{{\"messages\": {messages}, \"seconds\": {elapsed:.3}, \"connections\": {conns_n}, \"size\": {size}}}"
    );
    if args.len() == 7 {
        use std::io::Write as _;
        io::stdout().flush()?;
        // Idle: no message is sent; the connections stay open until the
        // end, answering the server's pings (uvicorn's and ferrocorn's
        // close a connection whose pings go unanswered).
        let hold = Instant::now();
        let idle = Duration::from_secs(num(6)?);
        while hold.elapsed() < idle {
            poll.poll(&mut events, Some(Duration::from_millis(200)))?;
            for ev in events.iter() {
                let c = &mut conns[ev.token().0];
                loop {
                    match c.stream.read(&mut buf) {
                        Ok(0) => {
                            // Closed by the server: nothing more to answer.
                            poll.registry().deregister(&mut c.stream)?;
                            break;
                        }
                        Ok(n) => c.inbuf.extend_from_slice(&buf[..n]),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    }
                }
                take_frames(c, false)?;
            }
        }
    }
    drop(conns);
    Ok(())
}

/// Take the whole server frames at the start of `c.inbuf`: answer pings
/// with pongs (kept back while a message is partly written), skip pongs,
/// and return how many text messages (echoes) came.
fn take_frames(c: &mut Conn, mid_frame: bool) -> io::Result<u64> {
    let mut echoes = 0;
    while let Some((head, len)) = frame_len(&c.inbuf) {
        match c.inbuf[0] & 0x0f {
            0x1 => echoes += 1,
            0x9 => {
                let pong = masked(0x8a, &c.inbuf[head..len]);
                if mid_frame {
                    c.pongs.extend_from_slice(&pong);
                } else {
                    write_all(&mut c.stream, &pong)?;
                }
            }
            0xa => {}
            op => return Err(io::Error::other(format!("unexpected opcode {op:#x}"))),
        }
        c.inbuf.drain(..len);
    }
    Ok(echoes)
}

fn write_all(stream: &mut TcpStream, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        match stream.write(data) {
            Ok(n) => data = &data[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::yield_now(),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A masked text frame of `size` bytes of 'x' (clients must mask).
fn text_frame(size: usize) -> Vec<u8> {
    masked(0x81, &vec![b'x'; size])
}

/// A masked frame with this first byte and payload.
fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37u8, 0xfa, 0x21, 0x3d];
    let size = payload.len();
    let mut f = vec![first];
    match size {
        0..=125 => f.push(0x80 | size as u8),
        126..=65535 => {
            f.push(0x80 | 126);
            f.extend_from_slice(&(size as u16).to_be_bytes());
        }
        _ => {
            f.push(0x80 | 127);
            f.extend_from_slice(&(size as u64).to_be_bytes());
        }
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// The header length and whole length of the unmasked server frame at the
/// start of `b`, once all of it is there.
fn frame_len(b: &[u8]) -> Option<(usize, usize)> {
    if b.len() < 2 {
        return None;
    }
    let (len, head) = match b[1] & 0x7f {
        126 if b.len() >= 4 => (u16::from_be_bytes([b[2], b[3]]) as usize, 4),
        127 if b.len() >= 10 => (u64::from_be_bytes(b[2..10].try_into().ok()?) as usize, 10),
        126 | 127 => return None,
        n => (n as usize, 2),
    };
    (b.len() >= head + len).then_some((head, head + len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_measured_whole() {
        assert_eq!(frame_len(&[0x81, 3, b'a', b'b', b'c']), Some((2, 5)));
        assert_eq!(frame_len(&[0x81, 3, b'a']), None);
        let mut big = vec![0x81, 126, 0x04, 0x00];
        assert_eq!(frame_len(&big), None);
        big.resize(4 + 1024, b'x');
        assert_eq!(frame_len(&big), Some((4, 1028)));
    }

    #[test]
    fn a_pong_carries_the_pings_payload_masked() {
        let p = masked(0x8a, b"hi");
        assert_eq!(&p[..2], &[0x8a, 0x80 | 2]);
        assert_eq!(p[6] ^ p[2], b'h');
        assert_eq!(p[7] ^ p[3], b'i');
    }

    #[test]
    fn a_client_frame_is_masked_text() {
        let f = text_frame(1024);
        assert_eq!(f[0], 0x81);
        assert_eq!(f[1], 0x80 | 126);
        assert_eq!(u16::from_be_bytes([f[2], f[3]]), 1024);
        assert_eq!(f.len(), 4 + 4 + 1024);
        assert_eq!(f[8] ^ f[4], b'x');
    }
}
