//! The engine contract, checked against both engines with real sockets on
//! 127.0.0.1 (and one unix socket). Every wait is bounded.
//!
//! The io_uring tests fail when io_uring is unusable here, unless
//! FERROCORN_SKIP_URING=1 says this environment is known not to have it.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

use super::*;

/// Longest any single expectation may take.
const DEADLINE: Duration = Duration::from_secs(10);
/// How long "nothing happens" is watched for.
const QUIET: Duration = Duration::from_millis(150);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Accepted(ConnId, Option<SocketAddr>),
    Data(ConnId, Vec<u8>),
    /// A lent buffer back, whole (what it held before and what came).
    Filled(ConnId, Vec<u8>),
    Eof(ConnId),
    Sent(ConnId),
    SendFailed(ConnId, i32),
    Readable(RawFd),
}

impl Ev {
    fn conn(&self) -> Option<ConnId> {
        match *self {
            Ev::Accepted(c, _)
            | Ev::Data(c, _)
            | Ev::Filled(c, _)
            | Ev::Eof(c)
            | Ev::Sent(c)
            | Ev::SendFailed(c, _) => Some(c),
            Ev::Readable(_) => None,
        }
    }
}

impl From<Event<'_>> for Ev {
    fn from(ev: Event<'_>) -> Ev {
        match ev {
            Event::Accepted { conn, peer, .. } => Ev::Accepted(conn, peer),
            Event::Data { conn, data } => Ev::Data(conn, data.to_vec()),
            Event::Filled { conn, buf } => Ev::Filled(conn, buf),
            Event::Eof { conn } => Ev::Eof(conn),
            Event::Sent { conn } => Ev::Sent(conn),
            Event::SendFailed { conn, errno } => Ev::SendFailed(conn, errno),
            Event::Readable { fd } => Ev::Readable(fd),
        }
    }
}

/// Should this kind be tested here? Uring must work unless skipping is asked for.
fn available(kind: EngineKind) -> bool {
    if kind == EngineKind::Epoll {
        return true;
    }
    match Engine::probe_uring() {
        Ok(()) => true,
        Err(why) if std::env::var("FERROCORN_SKIP_URING").as_deref() == Ok("1") => {
            eprintln!("skipping io_uring test: {}", why.0);
            false
        }
        Err(why) => panic!(
            "{} (set FERROCORN_SKIP_URING=1 to skip the io_uring tests)",
            why.0
        ),
    }
}

struct Harness {
    engine: Engine,
    /// Everything delivered so far, in order.
    log: Vec<Ev>,
    /// How much of `log` the expectations have looked at.
    seen: usize,
}

impl Harness {
    fn new(kind: EngineKind, listeners: &[RawFd]) -> Harness {
        let engine = Engine::new(
            kind,
            listeners,
            &EngineConfig {
                max_connections: 1024,
            },
        )
        .expect("engine");
        assert_eq!(engine.kind(), kind);
        Harness {
            engine,
            log: Vec::new(),
            seen: 0,
        }
    }

    /// A harness whose io_uring engine checks the page cache before a
    /// file piece only when `cachestat` is set (see `each_file_path!`).
    fn for_files(kind: EngineKind, listeners: &[RawFd], cachestat: bool) -> Harness {
        let mut h = Harness::new(kind, listeners);
        if let Engine(Inner::Uring(e)) = &mut h.engine {
            e.cachestat = cachestat;
        }
        h
    }

    fn turn(&mut self, timeout: Duration) {
        let log = &mut self.log;
        self.engine
            .wait(Some(timeout), &mut |ev| log.push(Ev::from(ev)))
            .expect("wait");
    }

    /// The part of a turn that never sleeps (`Engine::deliver`).
    fn deliver(&mut self) -> bool {
        let log = &mut self.log;
        self.engine.deliver(&mut |ev| log.push(Ev::from(ev)))
    }

    /// Pump until an event not seen before matches; returns it.
    fn expect(&mut self, what: &str, mut pred: impl FnMut(&Ev) -> bool) -> Ev {
        let start = Instant::now();
        loop {
            while self.seen < self.log.len() {
                let ev = self.log[self.seen].clone();
                self.seen += 1;
                if pred(&ev) {
                    return ev;
                }
            }
            assert!(
                start.elapsed() < DEADLINE,
                "timed out waiting for {what}; events: {:?}",
                self.log
            );
            self.turn(Duration::from_millis(20));
        }
    }

    fn accept(&mut self) -> (ConnId, Option<SocketAddr>) {
        match self.expect("a connection", |e| matches!(e, Ev::Accepted(..))) {
            Ev::Accepted(c, peer) => (c, peer),
            _ => unreachable!(),
        }
    }

    /// Pump until `len` bytes of Data for `conn` arrived (from now on).
    fn read(&mut self, conn: ConnId, len: usize) -> Vec<u8> {
        let mut got = Vec::new();
        while got.len() < len {
            if let Ev::Data(_, d) =
                self.expect("data", |e| matches!(e, Ev::Data(c, _) if *c == conn))
            {
                got.extend_from_slice(&d);
            }
        }
        got
    }

    /// Lend a buffer holding `prefix`, with room for `max` more bytes, until
    /// `max` bytes came into it (lending again after a partial fill, until
    /// a loan is refused); then the bytes that came, and every event of
    /// `conn` seen meanwhile.
    fn fill(&mut self, conn: ConnId, prefix: &[u8], max: usize) -> (Vec<u8>, Vec<Ev>) {
        let mut buf = Vec::with_capacity(prefix.len() + max);
        buf.extend_from_slice(prefix);
        let mut seen = Vec::new();
        loop {
            let have = buf.len();
            let want = prefix.len() + max - have;
            if want == 0 {
                return (buf[prefix.len()..].to_vec(), seen);
            }
            let before = buf.clone();
            if let Err(back) = self.engine.recv_into(conn, buf, want) {
                // Refused: the connection ended (or is paused).
                return (back[prefix.len()..].to_vec(), seen);
            }
            loop {
                let ev = self.expect("the loan back", |e| e.conn() == Some(conn));
                seen.push(ev.clone());
                if let Ev::Filled(_, back) = ev {
                    assert_eq!(&back[..have], &before[..], "what the buffer held");
                    buf = back;
                    break;
                }
            }
        }
    }

    /// Run `client` on a thread while pumping the engine; returns its result.
    fn pump_while<T: Send + 'static>(&mut self, client: impl FnOnce() -> T + Send + 'static) -> T {
        let start = Instant::now();
        let thread = std::thread::spawn(client);
        while !thread.is_finished() {
            assert!(
                start.elapsed() < DEADLINE,
                "client did not finish; events: {:?}",
                self.log
            );
            self.turn(Duration::from_millis(20));
        }
        thread.join().expect("client thread")
    }

    /// Pump for `QUIET` and return what arrived.
    fn quiet(&mut self) -> Vec<Ev> {
        let start = Instant::now();
        while start.elapsed() < QUIET {
            self.turn(Duration::from_millis(20));
        }
        let new = self.log[self.seen..].to_vec();
        self.seen = self.log.len();
        new
    }
}

fn tcp_listener() -> TcpListener {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.set_nonblocking(true).expect("nonblocking");
    l
}

fn client(l: &TcpListener) -> TcpStream {
    let s = TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
    s.set_read_timeout(Some(DEADLINE)).expect("timeout");
    s
}

/// Close `c` with a reset instead of a FIN (SO_LINGER 0).
fn reset(c: TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt with a live linger struct of the size given.
    unsafe {
        libc::setsockopt(
            c.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    drop(c);
}

/// Run a test body once per engine kind, as two named tests.
macro_rules! both {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[test]
            fn uring() {
                if available(EngineKind::Uring) {
                    ($body)(EngineKind::Uring);
                }
            }
            #[test]
            fn epoll() {
                ($body)(EngineKind::Epoll);
            }
        }
    };
}

/// Run a file test body on each way a file can go out: io_uring for
/// ranges in the page cache (sendfile), io_uring with the cache check off
/// (splice through a pipe), and epoll. The body gets the engine kind and
/// whether cached ranges may take the sendfile path.
macro_rules! each_file_path {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[test]
            fn uring() {
                if available(EngineKind::Uring) {
                    ($body)(EngineKind::Uring, true);
                }
            }
            #[test]
            fn uring_spliced() {
                if available(EngineKind::Uring) {
                    ($body)(EngineKind::Uring, false);
                }
            }
            #[test]
            fn epoll() {
                ($body)(EngineKind::Epoll, true);
            }
        }
    };
}

both!(accept_reports_peer_and_data_arrives, |kind| {
    let l = tcp_listener();
    let mut h = Harness::new(kind, &[l.as_raw_fd()]);
    let mut c = client(&l);
    let (conn, peer) = h.accept();
    assert_eq!(peer, Some(c.local_addr().unwrap()));
    c.write_all(b"hello").unwrap();
    assert_eq!(h.read(conn, 5), b"hello");
});

both!(accepted_socket_is_nonblocking_cloexec_nodelay, |kind| {
    let l = tcp_listener();
    let mut h = Harness::new(kind, &[l.as_raw_fd()]);
    let _c = client(&l);
    let (conn, _) = h.accept();
    let fd = match &h.engine {
        Engine(Inner::Uring(e)) => e.conns[conn.0].fd,
        Engine(Inner::Epoll(e)) => e.conns[conn.0].fd,
    };
    // SAFETY: fcntl/getsockopt on a descriptor the engine keeps open, with
    // a live c_int of the size given.
    let (fl, fdfl, nodelay) = unsafe {
        let mut v: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        );
        (
            libc::fcntl(fd, libc::F_GETFL),
            libc::fcntl(fd, libc::F_GETFD),
            v,
        )
    };
    assert_ne!(fl & libc::O_NONBLOCK, 0, "non-blocking");
    assert_ne!(fdfl & libc::FD_CLOEXEC, 0, "close-on-exec");
    assert_ne!(nodelay, 0, "TCP_NODELAY");
});

both!(echo_round_trip, |kind| {
    let l = tcp_listener();
    let mut h = Harness::new(kind, &[l.as_raw_fd()]);
    let mut c = client(&l);
    let (conn, _) = h.accept();
    for round in 0..3 {
        let msg = format!("ping {round}");
        c.write_all(msg.as_bytes()).unwrap();
        let got = h.read(conn, msg.len());
        h.engine.send(conn, got);
        h.expect("sent", |e| *e == Ev::Sent(conn));
        let mut back = vec![0; msg.len()];
        c.read_exact(&mut back).unwrap();
        assert_eq!(back, msg.as_bytes());
    }
});

both!(deliver_writes_output_and_the_next_turn_polls, |kind| {
    let l = tcp_listener();
    let mut h = Harness::new(kind, &[l.as_raw_fd()]);
    let mut c = client(&l);
    let (conn, _) = h.accept();
    // The accepting turn polled. On epoll the next turn's queued output is
    // written and reported with no wait at all; io_uring enters its ring
    // every turn, so there `deliver` leaves everything to `wait`.
    h.engine.send(conn, b"first".to_vec());
    let before = h.log.len();
    let done = h.deliver();
    match kind {
        EngineKind::Epoll => {
            assert!(done, "output written without a poll ends the turn");
            assert_eq!(h.log[before..], [Ev::Sent(conn)]);
        }
        EngineKind::Uring => {
            assert!(!done, "io_uring always waits");
            assert_eq!(h.log.len(), before, "nothing delivered before the wait");
            h.expect("sent", |e| *e == Ev::Sent(conn));
        }
    }
    h.seen = h.log.len();
    let mut back = [0; 5];
    c.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"first");
    // A turn that skipped its poll is followed by one that polls, even
    // with output delivered again: bytes the peer sent meanwhile are read.
    c.write_all(b"ping").unwrap();
    h.engine.send(conn, b"second".to_vec());
    assert!(!h.deliver(), "the turn after a skipped poll polls");
    h.turn(Duration::from_millis(20));
    h.expect("sent", |e| *e == Ev::Sent(conn));
    assert_eq!(h.read(conn, 4), b"ping");
    let mut back = [0; 6];
    c.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"second");
});

both!(pipelined_sends_arrive_in_order_with_one_sent, |kind| {
    let l = tcp_listener();
    let mut h = Harness::new(kind, &[l.as_raw_fd()]);
    let mut c = client(&l);
    let (conn, _) = h.accept();
    h.engine.send(conn, b"one ".to_vec());
    h.engine.send(conn, Vec::new());
    h.engine.send(conn, b"two ".to_vec());
    h.engine.send(conn, b"three".to_vec());
    h.expect("sent", |e| *e == Ev::Sent(conn));
    let mut back = vec![0; 13];
    c.read_exact(&mut back).unwrap();
    assert_eq!(back, b"one two three");
    let sent = h.quiet().iter().filter(|e| **e == Ev::Sent(conn)).count();
    assert_eq!(sent, 0, "one Sent per drained queue");
});

both!(written_buffers_come_back_for_the_next_responses, |kind| {
    let l = tcp_listener();
    let mut h = Harness::new(kind, &[l.as_raw_fd()]);
    let mut c = client(&l);
    let (conn, _) = h.accept();
    let mut out = h.engine.buffer();
    assert_eq!(out.capacity(), 0, "nothing written yet");
    out.extend_from_slice(b"HTTP/1.1 200 OK\r\n\r\n");
    let (ptr, cap) = (out.as_ptr(), out.capacity());
    h.engine.send(conn, out);
    h.engine.send(conn, b"body".to_vec());
    h.expect("sent", |e| *e == Ev::Sent(conn));
    let mut back = [0; 23];
    c.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"HTTP/1.1 200 OK\r\n\r\nbody");
    // Both came back emptied, the last written first.
    let body = h.engine.buffer();
    let head = h.engine.buffer();
    assert_eq!((body.len(), body.capacity()), (0, 4));
    assert_eq!((head.as_ptr(), head.capacity(), head.len()), (ptr, cap, 0));
    assert_eq!(
        h.engine.buffer().capacity(),
        0,
        "two were written, two kept"
    );
});

both!(empty_send_reports_sent, |kind| {
    let l = tcp_listener();
    let mut h = Harness::new(kind, &[l.as_raw_fd()]);
    let _c = client(&l);
    let (conn, _) = h.accept();
    h.engine.send(conn, Vec::new());
    h.expect("sent", |e| *e == Ev::Sent(conn));
});

both!(large_send_to_slow_reader_completes_with_one_sent, |kind| {
    const LEN: usize = 8 << 20;
    let l = tcp_listener();
    let mut h = Harness::new(kind, &[l.as_raw_fd()]);
    let mut c = client(&l);
    let (conn, _) = h.accept();
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0; 256 * 1024];
        let mut total = 0;
        let mut sum = 0u64;
        while total < LEN {
            std::thread::sleep(Duration::from_millis(2));
            let n = c.read(&mut buf).unwrap();
            assert!(n > 0, "early end of stream at {total}");
            sum += buf[..n].iter().map(|&b| b as u64).sum::<u64>();
            total += n;
        }
        (total, sum)
    });
    let data: Vec<u8> = (0..LEN).map(|i| (i % 251) as u8).collect();
    let expected_sum: u64 = data.iter().map(|&b| b as u64).sum();
    h.engine.send(conn, data);
    h.expect("sent", |e| matches!(e, Ev::Sent(c) if *c == conn));
    let (total, sum) = reader.join().unwrap();
    assert_eq!((total, sum), (LEN, expected_sum));
    assert_eq!(h.log.iter().filter(|e| matches!(e, Ev::Sent(_))).count(), 1);
});

both!(peer_close_reports_eof, |kind| {
    let l = tcp_listener();
    let mut h = Harness::new(kind, &[l.as_raw_fd()]);
    let mut c = client(&l);
    let (conn, _) = h.accept();
    c.write_all(b"last words").unwrap();
    drop(c);
    assert_eq!(h.read(conn, 10), b"last words");
    h.expect("eof", |e| *e == Ev::Eof(conn));
});

both!(peer_reset_reports_eof_then_send_fails, |kind| {
    let l = tcp_listener();
    let mut h = Harness::new(kind, &[l.as_raw_fd()]);
    let c = client(&l);
    let (conn, _) = h.accept();
    reset(c);
    h.expect("eof", |e| *e == Ev::Eof(conn));
    h.engine.send(conn, b"anyone there?".to_vec());
    match h.expect("send failure", |e| e.conn() == Some(conn)) {
        Ev::SendFailed(_, errno) => assert!(
            errno == libc::EPIPE || errno == libc::ECONNRESET,
            "errno {errno}"
        ),
        other => panic!("expected SendFailed, got {other:?}"),
    }
});

both!(close_stops_events_and_id_is_reused, |kind| {
    let l = tcp_listener();
    let mut h = Harness::new(kind, &[l.as_raw_fd()]);
    let mut a = client(&l);
    let (conn, _) = h.accept();
    a.write_all(b"unread").unwrap();
    h.engine.send(conn, b"unsent?".to_vec());
    h.engine.close(conn);
    let after = h.quiet();
    assert!(
        after.iter().all(|e| e.conn() != Some(conn)),
        "events after close: {after:?}"
    );
    // The client sees the connection end (FIN or reset).
    let mut rest = Vec::new();
    let _ = a.read_to_end(&mut rest);
    let _b = client(&l);
    let (again, _) = h.accept();
    assert_eq!(again, conn, "the freed id is handed out again");
});

both!(
    shutdown_write_sends_data_then_fin_and_keeps_reading,
    |kind| {
        let l = tcp_listener();
        let mut h = Harness::new(kind, &[l.as_raw_fd()]);
        let mut c = client(&l);
        let (conn, _) = h.accept();
        h.engine.send(conn, b"bye".to_vec());
        h.engine.shutdown_write(conn);
        h.engine.send(conn, b"ignored after shutdown".to_vec());
        let got = h.pump_while(|| {
            let mut got = Vec::new();
            c.read_to_end(&mut got).unwrap();
            (c, got)
        });
        let (mut c, got) = got;
        assert_eq!(got, b"bye");
        c.write_all(b"still talking").unwrap();
        assert_eq!(h.read(conn, 13), b"still talking");
        c.shutdown(Shutdown::Write).unwrap();
        h.expect("eof", |e| *e == Ev::Eof(conn));
    }
);

both!(the_fin_leaves_with_the_last_bytes_in_one_turn, |kind| {
    let l = tcp_listener();
    let mut h = Harness::new(kind, &[l.as_raw_fd()]);
    let mut c = client(&l);
    let (conn, _) = h.accept();
    h.engine.send(conn, b"last".to_vec());
    h.engine.shutdown_write(conn);
    // One turn, as when a worker answers `Connection: close` and goes
    // on to other connections: the client sees the bytes and the end
    // without waiting for another.
    h.turn(Duration::from_millis(100));
    c.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut got = Vec::new();
    c.read_to_end(&mut got).expect("bytes, then the end");
    assert_eq!(got, b"last");
});

both!(
    a_shutdown_behind_a_send_that_fills_the_socket_waits_for_every_byte,
    |kind| {
        let l = tcp_listener();
        let mut h = Harness::new(kind, &[l.as_raw_fd()]);
        let c = client(&l);
        let (conn, _) = h.accept();
        // Far more than the socket buffers hold: the send cannot finish
        // until the client reads, and the FIN must not overtake it.
        let body: Vec<u8> = (0..8 << 20).map(|i: u32| (i % 251) as u8).collect();
        h.engine.send(conn, body[..1 << 20].to_vec());
        h.engine.send(conn, body[1 << 20..].to_vec());
        h.engine.shutdown_write(conn);
        h.quiet();
        let (_c, got) = h.pump_while(move || {
            let mut c = c;
            let mut got = Vec::new();
            c.read_to_end(&mut got).unwrap();
            (c, got)
        });
        assert!(got == body, "{} of {} bytes", got.len(), body.len());
        h.expect("sent", |e| *e == Ev::Sent(conn));
    }
);

both!(pause_recv_holds_data_until_resume, |kind| {
    let l = tcp_listener();
    let mut h = Harness::new(kind, &[l.as_raw_fd()]);
    let mut c = client(&l);
    let (conn, _) = h.accept();
    c.write_all(b"first").unwrap();
    assert_eq!(h.read(conn, 5), b"first");
    // Bytes already on their way when pausing, and bytes sent after.
    c.write_all(b"racing ").unwrap();
    h.engine.pause_recv(conn);
    h.quiet();
    c.write_all(b"later").unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let during = h.quiet();
    assert!(
        during.iter().all(|e| e.conn() != Some(conn)),
        "delivered while paused: {during:?}"
    );
    h.engine.resume_recv(conn);
    assert_eq!(h.read(conn, 12), b"racing later");
    h.expect("eof", |e| *e == Ev::Eof(conn));
});

both!(pause_costs_nothing_until_bytes_arrive, |kind| {
    let l = tcp_listener();
    let mut h = Harness::new(kind, &[l.as_raw_fd()]);
    let mut c = client(&l);
    let (conn, _) = h.accept();
    let cancels = |h: &Harness| match &h.engine {
        Engine(Inner::Uring(e)) => Some(e.recv_cancels),
        _ => None,
    };
    // A client waiting for its response sends nothing while paused.
    h.engine.pause_recv(conn);
    h.quiet();
    h.engine.resume_recv(conn);
    h.quiet();
    assert!(matches!(cancels(&h), None | Some(0)), "{:?}", cancels(&h));
    c.write_all(b"after").unwrap();
    assert_eq!(h.read(conn, 5), b"after");
    // One that keeps sending gets its receive cancelled, and loses nothing.
    h.engine.pause_recv(conn);
    c.write_all(b"pipelined").unwrap();
    let during = h.quiet();
    assert!(
        during.iter().all(|e| e.conn() != Some(conn)),
        "delivered while paused: {during:?}"
    );
    assert!(matches!(cancels(&h), None | Some(1)), "{:?}", cancels(&h));
    c.write_all(b" more").unwrap();
    h.quiet();
    h.engine.resume_recv(conn);
    assert_eq!(h.read(conn, 14), b"pipelined more");
    c.write_all(b"!").unwrap();
    assert_eq!(h.read(conn, 1), b"!");
});

both!(
    recv_into_fills_a_lent_buffer_and_then_data_flows_as_before,
    |kind| {
        let l = tcp_listener();
        let mut h = Harness::new(kind, &[l.as_raw_fd()]);
        let mut c = client(&l);
        let (conn, _) = h.accept();
        c.write_all(b"head").unwrap();
        assert_eq!(h.read(conn, 4), b"head");
        // Not while a loan is out, nor while paused.
        h.engine
            .recv_into(conn, Vec::with_capacity(8), 8)
            .expect("lent");
        let second = h.engine.recv_into(conn, Vec::with_capacity(8), 8);
        assert!(second.is_err(), "a second loan was taken");
        c.write_all(b"01234567").unwrap();
        let back = h.expect("the loan back", |e| matches!(e, Ev::Filled(..)));
        let Ev::Filled(_, mut got) = back else {
            unreachable!()
        };
        let rest = 8 - got.len();
        if rest > 0 {
            let (more, _) = h.fill(conn, b"", rest);
            got.extend_from_slice(&more);
        }
        assert_eq!(got, b"01234567");
        h.engine.pause_recv(conn);
        let paused = h.engine.recv_into(conn, Vec::with_capacity(8), 8);
        assert!(paused.is_err(), "lent while paused");
        h.engine.resume_recv(conn);
        // Bytes past the loan's room, and later ones, come as Data, in order.
        c.write_all(b"abcdefgh").unwrap();
        let (got, seen) = h.fill(conn, b"<<", 3);
        assert_eq!(got, b"abc");
        assert!(
            seen.iter().all(|e| !matches!(e, Ev::Data(..))),
            "Data before the loan came back: {seen:?}"
        );
        c.write_all(b"ijk").unwrap();
        assert_eq!(h.read(conn, 8), b"defghijk");
        let quiet = h.quiet();
        assert!(
            quiet.iter().all(|e| e.conn() != Some(conn)),
            "more events: {quiet:?}"
        );
    }
);

both!(
    recv_into_returns_the_buffer_at_end_of_stream_and_on_close,
    |kind| {
        let l = tcp_listener();
        let mut h = Harness::new(kind, &[l.as_raw_fd()]);
        let mut c = client(&l);
        let (conn, _) = h.accept();
        c.write_all(b"xy").unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        let (got, seen) = h.fill(conn, b"kept", 10);
        assert_eq!(got, b"xy", "{seen:?}");
        h.expect("eof", |e| *e == Ev::Eof(conn));
        let after = h.engine.recv_into(conn, Vec::with_capacity(8), 8);
        assert!(after.is_err(), "lent after the end of stream");

        // Closed with a loan out: the buffer is dropped once the kernel is
        // done, and the slot serves the next connection.
        let _c2 = client(&l);
        let (conn2, _) = h.accept();
        h.engine
            .recv_into(conn2, Vec::with_capacity(64), 64)
            .expect("lent");
        h.quiet();
        h.engine.close(conn2);
        let during = h.quiet();
        assert!(
            during.iter().all(|e| e.conn() != Some(conn2)),
            "events after close: {during:?}"
        );
        let mut c3 = client(&l);
        let (conn3, _) = h.accept();
        c3.write_all(b"fresh").unwrap();
        assert_eq!(h.read(conn3, 5), b"fresh");
    }
);

both!(bounded_receives_leave_a_body_for_the_loan, |kind| {
    let l = tcp_listener();
    let mut h = Harness::new(kind, &[l.as_raw_fd()]);
    let mut c = client(&l);
    let (conn, _) = h.accept();
    h.engine.recv_bounded(conn);
    h.quiet();
    let sent: Vec<u8> = (0..400_000).map(|i| (i % 251) as u8).collect();
    let expect = sent.clone();
    let writer = std::thread::spawn(move || {
        c.write_all(&sent).unwrap();
        c
    });
    let mut got = match h.expect("data", |e| matches!(e, Ev::Data(x, _) if *x == conn)) {
        Ev::Data(_, d) => d,
        _ => unreachable!(),
    };
    if kind == EngineKind::Uring {
        assert!(
            got.len() <= 16 * 1024,
            "a bounded receive took {}",
            got.len()
        );
    }
    let mut lent = 0;
    while got.len() < expect.len() {
        let want = expect.len() - got.len();
        if h.engine
            .recv_into(conn, Vec::with_capacity(want), want)
            .is_err()
        {
            panic!("loan refused; events: {:?}", h.log);
        }
        loop {
            match h.expect("the loan back", |e| e.conn() == Some(conn)) {
                Ev::Data(_, d) => got.extend_from_slice(&d),
                Ev::Filled(_, b) => {
                    lent += b.len();
                    got.extend_from_slice(&b);
                    break;
                }
                other => panic!("{other:?}"),
            }
        }
    }
    assert!(
        got == expect,
        "bytes differ ({} of {})",
        got.len(),
        expect.len()
    );
    if kind == EngineKind::Uring {
        assert!(
            lent >= expect.len() - 16 * 1024,
            "only {lent} bytes came through loans"
        );
    }
    // The connection goes on receiving in bounded pieces.
    let mut c = writer.join().unwrap();
    c.write_all(b"next").unwrap();
    assert_eq!(h.read(conn, 4), b"next");
});

both!(pause_accept_defers_connections_until_resume, |kind| {
    let l = tcp_listener();
    let mut h = Harness::new(kind, &[l.as_raw_fd()]);
    let _a = client(&l);
    h.accept();
    h.engine.pause_accept();
    h.quiet();
    let mut b = client(&l);
    let during = h.quiet();
    assert!(
        during.iter().all(|e| !matches!(e, Ev::Accepted(..))),
        "accepted while paused: {during:?}"
    );
    h.engine.resume_accept();
    let (conn, peer) = h.accept();
    assert_eq!(peer, Some(b.local_addr().unwrap()));
    b.write_all(b"x").unwrap();
    assert_eq!(h.read(conn, 1), b"x");
});

/// Connections queued on the listener when accepting stops for good are
/// all delivered, and are still alive once the listener is closed: closing
/// the last copy of a listening socket resets whatever is still queued on it.
fn close_accept_takes_the_queued_connections(kind: EngineKind, paused_first: bool) {
    let l = tcp_listener();
    let mut h = Harness::new(kind, &[l.as_raw_fd()]);
    if paused_first {
        // At the connection cap: the kernel queues, nothing accepts.
        h.engine.pause_accept();
    }
    // The engine has waited at least once (its accepts are in the kernel).
    h.quiet();
    let mut clients: Vec<TcpStream> = (0..5).map(|_| client(&l)).collect();
    h.engine.close_accept();
    drop(l);
    let mut conns = Vec::new();
    for c in &mut clients {
        c.write_all(b"still here").unwrap();
    }
    while conns.len() < clients.len() {
        conns.push(h.accept().0);
    }
    for conn in conns {
        assert_eq!(h.read(conn, 10), b"still here");
    }
    assert!(h.engine.accept_closed());
    // Closing is for good: neither a second close nor a resume (the
    // listener is gone, its number free for reuse) accepts again.
    let other = tcp_listener();
    let _late = client(&other);
    h.engine.close_accept();
    h.engine.resume_accept();
    assert!(h.engine.accept_closed());
    assert!(!h.quiet().iter().any(|e| matches!(e, Ev::Accepted(..))));
}

both!(
    close_accept_takes_connections_queued_while_accepting,
    |kind| { close_accept_takes_the_queued_connections(kind, false) }
);

both!(close_accept_takes_connections_queued_while_paused, |kind| {
    close_accept_takes_the_queued_connections(kind, true)
});

both!(watched_fd_reports_readable_each_time, |kind| {
    let l = tcp_listener();
    let mut h = Harness::new(kind, &[l.as_raw_fd()]);
    let (mut tx, mut rx) = UnixStream::pair().unwrap();
    rx.set_nonblocking(true).unwrap();
    let fd = rx.as_raw_fd();
    h.engine.watch(fd).unwrap();
    for _ in 0..3 {
        tx.write_all(b"!").unwrap();
        h.expect("readable", |e| *e == Ev::Readable(fd));
        let mut buf = [0u8; 16];
        assert_eq!(rx.read(&mut buf).unwrap(), 1);
    }
    let after = h.quiet();
    assert!(
        !after.contains(&Ev::Readable(fd)),
        "readable with nothing written: {after:?}"
    );
});

both!(unix_listener_has_no_peer_address, |kind| {
    let path = std::env::temp_dir().join(format!(
        "ferrocorn-engine-{}-{:?}.sock",
        std::process::id(),
        kind
    ));
    let _ = std::fs::remove_file(&path);
    let l = UnixListener::bind(&path).unwrap();
    l.set_nonblocking(true).unwrap();
    let mut h = Harness::new(kind, &[l.as_raw_fd()]);
    let mut c = UnixStream::connect(&path).unwrap();
    c.set_read_timeout(Some(DEADLINE)).unwrap();
    let (conn, peer) = h.accept();
    assert_eq!(peer, None);
    c.write_all(b"over unix").unwrap();
    let got = h.read(conn, 9);
    h.engine.send(conn, got);
    let back = h.pump_while(move || {
        let mut back = [0u8; 9];
        c.read_exact(&mut back).unwrap();
        back
    });
    assert_eq!(&back, b"over unix");
    let _ = std::fs::remove_file(&path);
});

both!(many_concurrent_connections_echo, |kind| {
    const CLIENTS: usize = 200;
    let l = tcp_listener();
    let addr = l.local_addr().unwrap();
    let mut h = Harness::new(kind, &[l.as_raw_fd()]);
    let clients = std::thread::spawn(move || {
        let mut streams: Vec<TcpStream> = (0..CLIENTS)
            .map(|_| TcpStream::connect(addr).unwrap())
            .collect();
        for (i, s) in streams.iter_mut().enumerate() {
            s.set_read_timeout(Some(DEADLINE)).unwrap();
            s.write_all(format!("client {i:04}").as_bytes()).unwrap();
        }
        for (i, s) in streams.iter_mut().enumerate() {
            let mut back = [0u8; 11];
            s.read_exact(&mut back).unwrap();
            assert_eq!(back, format!("client {i:04}").as_bytes());
        }
    });
    let start = Instant::now();
    let mut echoed = 0;
    let mut accepted = std::collections::HashSet::new();
    while echoed < CLIENTS * 11 {
        assert!(
            start.elapsed() < DEADLINE,
            "timed out: {echoed} bytes echoed"
        );
        h.turn(Duration::from_millis(20));
        for ev in std::mem::take(&mut h.log) {
            match ev {
                Ev::Accepted(c, _) => assert!(accepted.insert(c), "id {c:?} given twice"),
                Ev::Data(c, d) => {
                    echoed += d.len();
                    h.engine.send(c, d);
                }
                _ => {}
            }
        }
    }
    // Flush the last sends while the clients read.
    while !clients.is_finished() {
        assert!(start.elapsed() < DEADLINE, "clients did not finish");
        h.turn(Duration::from_millis(20));
    }
    clients.join().unwrap();
    assert_eq!(accepted.len(), CLIENTS);
});

both!(receives_continue_after_the_buffer_ring_runs_dry, |kind| {
    receives_all_bytes_in_order_while_the_ring_runs_dry(kind)
});

#[test]
fn classic_buffer_ring_receives_continue_after_running_dry() {
    if available(EngineKind::Uring) {
        crate::engine::uring::tests::CLASSIC_RING.set(true);
        receives_all_bytes_in_order_while_the_ring_runs_dry(EngineKind::Uring);
    }
}

/// A burst of completions far larger than the completion queue: they wait
/// in the kernel's overflow list, are flushed and handled; none is lost
/// and no connection is left waiting.
#[test]
fn completions_past_a_full_completion_queue_are_all_delivered() {
    if !available(EngineKind::Uring) {
        return;
    }
    // Within std's listen backlog (128), so every connect completes at once.
    const CLIENTS: usize = 100;
    crate::engine::uring::tests::SMALL_RING.set(Some((8, 16)));
    let l = tcp_listener();
    let mut h = Harness::new(EngineKind::Uring, &[l.as_raw_fd()]);
    crate::engine::uring::tests::SMALL_RING.set(None);
    // Every client connects and sends before the engine turns once: one
    // accept, one receive and one end of stream per client, at once.
    let clients: Vec<TcpStream> = (0..CLIENTS)
        .map(|i| {
            let mut c = client(&l);
            c.write_all(&pattern(i, 100 + i)).unwrap();
            c.shutdown(Shutdown::Write).unwrap();
            c
        })
        .collect();
    let start = Instant::now();
    let mut got: std::collections::HashMap<ConnId, Vec<u8>> = std::collections::HashMap::new();
    let mut accepted = Vec::new();
    let mut eofs = 0;
    while eofs < CLIENTS {
        assert!(
            start.elapsed() < DEADLINE,
            "timed out: {} accepted, {eofs} ends",
            accepted.len()
        );
        h.turn(Duration::from_millis(20));
        for ev in std::mem::take(&mut h.log) {
            match ev {
                Ev::Accepted(c, _) => accepted.push(c),
                Ev::Data(c, d) => got.entry(c).or_default().extend_from_slice(&d),
                Ev::Eof(_) => eofs += 1,
                _ => {}
            }
        }
    }
    assert_eq!(accepted.len(), CLIENTS);
    // Accept order is connect order.
    for (i, c) in accepted.iter().enumerate() {
        let bytes = got.get(c).map_or(&[][..], Vec::as_slice);
        assert!(
            bytes == pattern(i, 100 + i).as_slice(),
            "bytes of client {i}"
        );
    }
    let Engine(Inner::Uring(e)) = &h.engine else {
        unreachable!()
    };
    assert!(e.cq_overflows > 0, "the completion queue never overflowed");
    assert_eq!(h.engine.faults().cq_overflows, e.cq_overflows);
    drop(clients);
}

fn receives_all_bytes_in_order_while_the_ring_runs_dry(kind: EngineKind) {
    // 67 × 64 KiB = 4.2 MiB (and 33 small writes) against 4 MiB of receive
    // buffers; 64 KiB fits in
    // a fresh loopback socket's buffers, so the writes finish before the
    // engine reads anything. Every connection's bytes differ (its own
    // offset into the pattern), and small writes sit between the large
    // ones, so receives that share a buffer must still keep each stream's
    // bytes whole and in order.
    const CLIENTS: usize = 100;
    const EACH: usize = 64 * 1024;
    let size = |i: usize| if i % 3 == 1 { 7 + i } else { EACH };
    let l = tcp_listener();
    let mut h = Harness::new(kind, &[l.as_raw_fd()]);
    let mut clients: Vec<TcpStream> = (0..CLIENTS).map(|_| client(&l)).collect();
    let mut conns = Vec::new();
    while conns.len() < CLIENTS {
        conns.push(h.accept().0);
    }
    let writer = std::thread::spawn(move || {
        for (i, c) in clients.iter_mut().enumerate() {
            c.write_all(&pattern(i * 13, size(i))).unwrap();
            c.shutdown(Shutdown::Write).unwrap();
        }
        clients
    });
    let start = Instant::now();
    while !writer.is_finished() && start.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut got: std::collections::HashMap<_, Vec<u8>> = std::collections::HashMap::new();
    let mut eofs = 0;
    while eofs < CLIENTS {
        assert!(
            start.elapsed() < DEADLINE,
            "timed out; {eofs} ends, {} bytes",
            got.values().map(Vec::len).sum::<usize>()
        );
        h.turn(Duration::from_millis(20));
        for ev in std::mem::take(&mut h.log) {
            match ev {
                Ev::Data(c, d) => got.entry(c).or_default().extend_from_slice(&d),
                Ev::Eof(_) => eofs += 1,
                _ => {}
            }
        }
    }
    let _clients = writer.join().unwrap();
    // Accept order is connect order, which is the writers' order.
    for (i, c) in conns.iter().enumerate() {
        let bytes = got.get(c).map_or(&[][..], Vec::as_slice);
        assert!(
            bytes == pattern(i * 13, size(i)).as_slice(),
            "bytes for {c:?}: {} of {}",
            bytes.len(),
            size(i)
        );
    }
    if let Engine(Inner::Uring(e)) = &h.engine {
        assert!(
            e.recv_out_of_buffers > 0,
            "the ring never ran dry: the test did not test re-arming"
        );
        if crate::engine::uring::tests::CLASSIC_RING.get() {
            assert!(!e.bufs.is_incremental(), "the ring is not a classic one");
        }
    }
}

/// A file in the temp dir holding `len` bytes of a pattern, a new one
/// each time; removed when dropped.
struct TempFile {
    path: std::path::PathBuf,
    file: std::fs::File,
}

impl TempFile {
    fn new(name: &str, kind: EngineKind, len: usize) -> TempFile {
        // Tests run in parallel, some with the same name and kind.
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "ferrocorn-engine-{}-{name}-{kind:?}-{n}",
            std::process::id()
        ));
        std::fs::write(&path, pattern(0, len)).expect("write temp file");
        let file = std::fs::File::open(&path).expect("open temp file");
        TempFile { path, file }
    }

    /// A descriptor for the engine to own.
    fn dup(&self) -> std::os::fd::OwnedFd {
        dup_fd(self.file.as_raw_fd()).expect("dup")
    }

    /// How many descriptors of this process refer to the file (the
    /// test's own is one).
    fn holders(&self) -> usize {
        std::fs::read_dir("/proc/self/fd")
            .expect("/proc/self/fd")
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|target| *target == self.path)
            .count()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The bytes at `offset..offset + len` of every test file.
fn pattern(offset: usize, len: usize) -> Vec<u8> {
    (offset..offset + len).map(|i| (i % 251) as u8).collect()
}

/// Read exactly `len` bytes on a thread, slowly when `pause` is set (so
/// the socket fills up and the engine has to wait for room).
fn reader(
    mut c: TcpStream,
    len: usize,
    pause: Option<Duration>,
) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut got = Vec::with_capacity(len);
        let mut buf = vec![0; 256 * 1024];
        while got.len() < len {
            if let Some(p) = pause {
                std::thread::sleep(p);
            }
            let want = buf.len().min(len - got.len());
            let n = c.read(&mut buf[..want]).expect("read");
            assert!(n > 0, "early end of stream at {}", got.len());
            got.extend_from_slice(&buf[..n]);
        }
        got
    })
}

each_file_path!(
    file_bigger_than_a_piece_arrives_in_order_between_sends,
    |kind, cachestat| {
        // More than the socket buffers hold, so the engine has to wait for room.
        let len = 12 * FILE_PIECE as usize + 12_345;
        let f = TempFile::new("between", kind, len);
        let l = tcp_listener();
        let mut h = Harness::for_files(kind, &[l.as_raw_fd()], cachestat);
        let c = client(&l);
        let (conn, _) = h.accept();
        let total = 5 + len + 5;
        let read = reader(c, total, Some(Duration::from_millis(1)));
        h.engine.send(conn, b"head:".to_vec());
        h.engine.send_file(conn, f.dup(), 0, len as u64);
        h.engine.send(conn, b":tail".to_vec());
        h.expect("sent", |e| *e == Ev::Sent(conn));
        let got = h.pump_while(move || read.join().expect("reader"));
        assert_eq!(&got[..5], b"head:");
        assert!(got[5..5 + len] == pattern(0, len)[..], "file bytes differ");
        assert_eq!(&got[5 + len..], b":tail");
        assert_eq!(h.log.iter().filter(|e| matches!(e, Ev::Sent(_))).count(), 1);
        assert_eq!(f.holders(), 1, "the engine closed its descriptor");
        if let Engine(Inner::Uring(e)) = &h.engine {
            if e.cachestat {
                // The file was just written: every piece went by sendfile.
                assert!(e.pipes.is_empty(), "a cached file went through a pipe");
            } else {
                assert_eq!(e.pipes.len(), 1, "the pipe went back to the pool");
            }
            assert!(
                e.file_waits > 0,
                "the socket never filled: waiting untested"
            );
            assert_eq!(e.conns[conn.0].in_pipe, 0);
        }
    }
);

each_file_path!(file_range_honours_offset_and_length, |kind, cachestat| {
    let f = TempFile::new("range", kind, 100_000);
    let l = tcp_listener();
    let mut h = Harness::for_files(kind, &[l.as_raw_fd()], cachestat);
    let c = client(&l);
    let (conn, _) = h.accept();
    // Two ranges back to back, then bytes: each in its place.
    h.engine.send_file(conn, f.dup(), 1_000, 5_000);
    h.engine.send_file(conn, f.dup(), 99_990, 10);
    h.engine.send(conn, b"!".to_vec());
    h.expect("sent", |e| *e == Ev::Sent(conn));
    let got = h.pump_while(move || reader(c, 5_011, None).join().expect("reader"));
    let mut want = pattern(1_000, 5_000);
    want.extend(pattern(99_990, 10));
    want.push(b'!');
    assert!(got == want, "range bytes differ");
    if let Engine(Inner::Uring(e)) = &h.engine {
        // Small ranges are read into memory, not spliced through a pipe.
        assert!(e.pipes.is_empty(), "a pipe was made for a small file");
        assert!(e.conns[conn.0].pipe.is_none());
    }
    // The app's own descriptor is untouched: its position did not move.
    use std::io::Seek;
    assert_eq!((&f.file).stream_position().unwrap(), 0);
});

each_file_path!(
    file_shorter_than_its_range_fails_with_eio,
    |kind, cachestat| {
        let f = TempFile::new("short", kind, 1_000);
        let l = tcp_listener();
        let mut h = Harness::for_files(kind, &[l.as_raw_fd()], cachestat);
        let c = client(&l);
        let (conn, _) = h.accept();
        h.engine.send_file(conn, f.dup(), 0, 5_000);
        match h.expect("send failure", |e| e.conn() == Some(conn)) {
            Ev::SendFailed(_, errno) => assert_eq!(errno, libc::EIO),
            other => panic!("expected SendFailed, got {other:?}"),
        }
        // What the file had went out first.
        let got = h.pump_while(move || reader(c, 1_000, None).join().expect("reader"));
        assert!(got == pattern(0, 1_000));
    }
);

each_file_path!(
    file_to_a_gone_peer_fails_and_is_closed,
    |kind, cachestat| {
        let f = TempFile::new("gone", kind, 4 << 20);
        let l = tcp_listener();
        let mut h = Harness::for_files(kind, &[l.as_raw_fd()], cachestat);
        let c = client(&l);
        let (conn, _) = h.accept();
        reset(c);
        h.expect("eof", |e| *e == Ev::Eof(conn));
        h.engine.send_file(conn, f.dup(), 0, 4 << 20);
        match h.expect("send failure", |e| e.conn() == Some(conn)) {
            Ev::SendFailed(_, errno) => assert!(
                errno == libc::EPIPE || errno == libc::ECONNRESET,
                "errno {errno}"
            ),
            other => panic!("expected SendFailed, got {other:?}"),
        }
        // Only the test's own descriptor is left once the failure is reported.
        assert_eq!(f.holders(), 1, "the engine still holds the file");
        h.engine.close(conn);
        h.quiet();
    }
);

each_file_path!(
    close_in_the_middle_of_a_file_releases_it,
    |kind, cachestat| {
        let f = TempFile::new("closed", kind, 16 << 20);
        let l = tcp_listener();
        let mut h = Harness::for_files(kind, &[l.as_raw_fd()], cachestat);
        let _silent = client(&l);
        let (conn, _) = h.accept();
        h.engine.send_file(conn, f.dup(), 0, 16 << 20);
        h.quiet();
        assert!(
            h.log
                .iter()
                .all(|e| e.conn() != Some(conn) || matches!(e, Ev::Accepted(..))),
            "a silent peer cannot take 16 MiB: {:?}",
            h.log
        );
        assert_eq!(f.holders(), 2, "the engine holds the file while sending");
        h.engine.close(conn);
        h.quiet();
        assert_eq!(
            f.holders(),
            1,
            "the engine still holds the file after close"
        );
    }
);

each_file_path!(
    big_file_does_not_hold_up_other_connections,
    |kind, cachestat| {
        // A fast reader takes a 32 MiB file; meanwhile another connection's
        // echo round trips complete before the file is through.
        let len = 32 << 20;
        let f = TempFile::new("fair", kind, len);
        let l = tcp_listener();
        let mut h = Harness::for_files(kind, &[l.as_raw_fd()], cachestat);
        let big = client(&l);
        let (big_conn, _) = h.accept();
        let mut small = client(&l);
        let (small_conn, _) = h.accept();
        let read = reader(big, len, None);
        h.engine.send_file(big_conn, f.dup(), 0, len as u64);
        for round in 0..3u8 {
            small.write_all(&[round]).unwrap();
            let got = h.read(small_conn, 1);
            h.engine.send(small_conn, got);
            h.expect("echo sent", |e| *e == Ev::Sent(small_conn));
            let mut back = [0u8; 1];
            small.read_exact(&mut back).unwrap();
            assert_eq!(back, [round]);
        }
        assert!(
            !h.log.contains(&Ev::Sent(big_conn)),
            "the file was through before the echoes: the test proves nothing"
        );
        h.expect("file sent", |e| *e == Ev::Sent(big_conn));
        let got = h.pump_while(move || read.join().expect("reader"));
        assert_eq!(got.len(), len);
    }
);

/// Drop `f`'s pages from the page cache; false where that cannot be done
/// (tmpfs keeps its pages: they are the file).
fn evict(f: &TempFile) -> bool {
    f.file.sync_data().expect("fdatasync");
    // SAFETY: statfs writes into a live struct; posix_fadvise takes no
    // memory of ours.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        let path = std::ffi::CString::new(f.path.as_os_str().as_encoded_bytes()).unwrap();
        if libc::statfs(path.as_ptr(), &mut st) != 0 || st.f_type == libc::TMPFS_MAGIC {
            return false;
        }
        libc::posix_fadvise(f.file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) == 0
    }
}

#[test]
fn cachestat_tells_cached_ranges_from_evicted_ones() {
    let len = 1 << 20;
    let f = TempFile::new("cachestat", EngineKind::Epoll, len);
    let fd = f.file.as_raw_fd();
    match crate::sys::transport::all_cached(fd, 0, len as u64) {
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
            eprintln!("skipping: no cachestat(2) before Linux 6.5");
            return;
        }
        got => assert!(got.unwrap(), "a file just written is cached"),
    }
    assert!(crate::sys::transport::all_cached(fd, 4096, 100).unwrap());
    // Past the end there are no pages.
    assert!(!crate::sys::transport::all_cached(fd, 0, 2 * len as u64).unwrap());
    if !evict(&f) {
        eprintln!("skipping the eviction check: the temp dir keeps its pages");
        return;
    }
    assert!(!crate::sys::transport::all_cached(fd, 0, len as u64).unwrap());
}

#[test]
fn uring_splices_a_file_that_is_not_in_the_page_cache() {
    if !available(EngineKind::Uring) {
        return;
    }
    let len = 3 << 20;
    let f = TempFile::new("evicted", EngineKind::Uring, len);
    if !evict(&f) {
        eprintln!("skipping: the temp dir keeps its pages");
        return;
    }
    let l = tcp_listener();
    let mut h = Harness::new(EngineKind::Uring, &[l.as_raw_fd()]);
    let c = client(&l);
    let (conn, _) = h.accept();
    let read = reader(c, len, None);
    h.engine.send_file(conn, f.dup(), 0, len as u64);
    h.expect("sent", |e| *e == Ev::Sent(conn));
    let got = h.pump_while(move || read.join().expect("reader"));
    assert!(got == pattern(0, len), "file bytes differ");
    let Engine(Inner::Uring(e)) = &h.engine else {
        unreachable!()
    };
    if e.cachestat {
        // At least the first piece was not cached: it went through a pipe
        // (the kernel's read-ahead may have brought the rest in meanwhile).
        assert_eq!(e.pipes.len(), 1, "an evicted file went by sendfile");
    }
}

#[test]
fn uring_stop_reclaims_a_send_stuck_on_a_silent_peer() {
    if !available(EngineKind::Uring) {
        return;
    }
    let l = tcp_listener();
    let mut h = Harness::new(EngineKind::Uring, &[l.as_raw_fd()]);
    let _silent = client(&l);
    let (conn, _) = h.accept();
    h.engine.send(conn, vec![0; 8 << 20]);
    h.quiet();
    let Engine(Inner::Uring(e)) = &mut h.engine else {
        unreachable!()
    };
    assert!(e.conns[conn.0].send.busy(), "the send should be stuck");
    assert!(e.stop(), "every operation completed after the cancel");
}

#[test]
fn engine_can_be_sent_across_a_lock_release() {
    // The worker waits inside `Python::detach`, which needs `Send`.
    fn assert_send<T: Send>() {}
    assert_send::<Engine>();
}

#[test]
fn probe_answers_on_this_machine() {
    // Either answer is valid; a refusal must say why in one line.
    if let Err(why) = Engine::probe_uring() {
        assert!(why.0.starts_with("io_uring unavailable: "), "{}", why.0);
        assert!(!why.0.contains('\n'));
    }
}
