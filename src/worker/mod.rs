//! A worker process: the only place where the io engine, the HTTP layer and
//! the WSGI bridge meet.
//!
//! One thread runs the loop: wait for engine events with the interpreter
//! lock released (recording bytes and state changes only), then, holding
//! the lock once for the whole batch, answer every connection that became
//! ready and hand the output back to the engine.

#![forbid(unsafe_code)]

mod boot;
mod conn;
mod direct;
mod events;
mod exit;
mod reload;
mod sendfile;
mod threads;
mod websocket;

pub use boot::{check_app, preload, run};
pub use exit::Exit;

/// What `--io-engine auto` picks on this machine, and why not io_uring
/// when it does not (for `--version`).
pub fn auto_engine() -> String {
    match crate::engine::Engine::probe_uring() {
        Ok(()) => "uring".to_string(),
        Err(why) => format!("epoll ({})", why.0),
    }
}

use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use pyo3::prelude::*;

use crate::engine::{Bytes, ConnId, Engine};
use crate::handoff::{Flow, Job, Mailbox, Output, Runner, Ticket};
use crate::http::{self, ConnInfo, DateCache, RequestInfo, ResponseWriter};
use crate::sys::shm::{self, Status};
use crate::sys::signal;
use crate::sys::signal::SignalPipe;
use crate::sys::socket::SlotListener;
use crate::ws;
use crate::wsgi::{Chunk, Reply, WsgiApp};

use conn::{reuse_output, Connection, InFlight, Phase, Stream};

/// Stop pulling a response body or answering pipelined requests while this
/// many output bytes wait to be written (backpressure): the mark app threads
/// and the asyncio thread wait at too.
const OUTPUT_HIGH_WATER: usize = crate::handoff::HIGH_WATER;
/// Body chunks (an app's `bytes` objects) from this size on are sent from
/// where they are instead of being copied into the connection's output.
const SEND_IN_PLACE_MIN: usize = 16 * 1024;
/// A body of known length with at least this much still to come is received
/// straight into its memory (`Engine::recv_into`) instead of through the
/// engine's buffers.
const LEND_BODY_MIN: u64 = 32 * 1024;

/// How long a closing connection drains unread client bytes (gunicorn's close_graceful: 2 s).
const LINGER: Duration = Duration::from_secs(2);
/// How long kept-alive connections stay open after a graceful stop begins
/// (a request arriving then is answered with `Connection: close`; gunicorn 27.0.1: 2 s).
const STOP_KEEPALIVE_LINGER: Duration = Duration::from_secs(2);
/// Timers (keep-alive, linger) are checked this often.
const SWEEP_EVERY: Duration = Duration::from_millis(250);

/// Signals a worker handles itself; the rest of the arbiter's go back to default.
const WORKER_SIGNALS: &[Signal] = &[
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
];

/// Everything the event callback touches (kept apart from the engine so
/// both can be borrowed at once).
struct State {
    conns: Vec<Option<Connection>>,
    /// Parser memory of closed connections, for new ones.
    parsers: http::ParserPool,
    /// Per listener: the environ's SERVER_NAME/SERVER_PORT (peer filled per connection).
    listeners: Vec<ConnInfo>,
    ready: Vec<ConnId>,
    open: usize,
    http: Arc<http::Config>,
    trust_forwarded: http::AllowList,
    trust_proxy: http::AllowList,
    signal_fd: i32,
    signalled: bool,
    /// The `--reload` inotify descriptor, and whether it fired.
    reload_fd: Option<i32>,
    reload_notified: bool,
    /// The mailbox of app threads, and whether it was written to.
    mail_fd: Option<i32>,
    mail: bool,
    tls: Option<crate::tls::TlsConfig>,
    /// Scratch space for decrypted bytes.
    plain: Vec<u8>,
}

/// The first `.1` bytes of an app's `bytes` object (all of it unless a
/// Content-Length ends inside it), as the engine sends them.
struct Prefix(pyo3::pybacked::PyBackedBytes, usize);

impl AsRef<[u8]> for Prefix {
    fn as_ref(&self) -> &[u8] {
        &self.0[..self.1]
    }
}

/// What the arbiter hands a new worker.
pub struct WorkerContext<'a> {
    pub slot: usize,
    pub cpu: usize,
    pub listeners: Vec<SlotListener>,
    /// This worker's entry in the shared status table (heartbeat, readiness).
    pub status: Option<&'a Status>,
    /// Write a byte here to wake the arbiter after a status change.
    pub wake_fd: i32,
    /// Serve TLS on every listener.
    pub tls: Option<crate::tls::TlsConfig>,
    /// gunicorn's `worker.age`: how many workers the arbiter spawned before this one, plus one.
    pub age: u64,
    /// `--preload`: the app object the master imported before forking.
    pub preloaded: Option<&'a Py<PyAny>>,
}

struct Worker<'a> {
    cfg: &'a crate::config::Config,
    /// `--reload`: watches the app's files until one changes.
    reloader: Option<reload::Reloader>,
    reload_requested: bool,
    /// Keep each request's head and timing until its response ends (for
    /// the access log or the post_request hook).
    track: bool,
    /// Count responses for `--metrics-bind` / statsd.
    metrics: bool,
    /// A pre_request hook is set.
    pre_request: bool,
    /// Keep each request's environ until its response ends (post_request,
    /// `{NAME}e` access-log atoms).
    keep_environ: bool,
    age: u64,
    status: Option<&'a Status>,
    header_timeout: Duration,
    body_timeout: Duration,
    max_queued_requests: usize,
    max_queue_wait: Option<Duration>,
    /// App calls made in this loop turn (the queue position for admission control).
    batch_calls: usize,
    /// This worker's copies of its listening sockets (closed when it stops).
    listener_fds: Vec<std::os::fd::OwnedFd>,
    wake_fd: i32,
    /// Ask for a replacement after this many requests (`--max-requests` plus jitter).
    max_requests: Option<u64>,
    requests: u64,
    /// `--max-worker-rss` in bytes, checked at each sweep; `None` once
    /// the replacement is asked for (or the check cannot run).
    max_rss: Option<u64>,
    engine: Engine,
    state: State,
    app: Arc<WsgiApp>,
    /// The app is an ASGI app: WebSocket upgrades go to it.
    asgi: bool,
    ws: websocket::WsSettings,
    /// A stopping worker has sent its WebSockets their close frames.
    websockets_closed: bool,
    /// App threads or the ASGI loop, when requests are handed off.
    runner: Option<Box<dyn Runner>>,
    mailbox: Option<Arc<Mailbox>>,
    /// Messages taken from the mailbox (kept for its allocation).
    mail: Vec<(Ticket, Output)>,
    next_serial: u64,
    /// INT/QUIT: leave without waiting for app threads.
    quick_exit: bool,
    /// The sync worker's `write()` callable sends through this.
    direct: Arc<direct::DirectSink>,
    date: DateCache,
    keep_alive: Duration,
    max_connections: usize,
    accept_paused: bool,
    stopping: Option<Instant>,
    graceful_timeout: Duration,
    signals: SignalPipe,
}

/// What the access log and the post_request hook need once a response ends.
pub(crate) struct RequestDone {
    head: http::Head,
    status: crate::http::Status,
    headers: crate::http::HeaderList,
    start_sys: std::time::SystemTime,
    start: Instant,
    sent: u64,
    peer: Arc<str>,
    scheme: &'static str,
    /// The environ the app received, kept when post_request or a `{NAME}e`
    /// access-log atom needs it.
    environ: Option<Py<PyAny>>,
}

impl RequestDone {
    fn report(&self, py: Python<'_>, cfg: &crate::config::Config, age: u64) {
        let environ = self.environ.as_ref().map(|e| e.bind(py));
        if crate::log::access_enabled() {
            let path = http::percent_decode(self.head.path());
            let mut rec =
                crate::log::AccessRecord::for_request(&self.head, &self.peer, self.start_sys);
            rec.path = &path;
            rec.status = status_code(&self.status);
            rec.response_headers = crate::log::Headers::Owned(&self.headers);
            rec.bytes_sent = Some(self.sent);
            rec.duration = self.start.elapsed();
            // `{NAME}e` atoms read the environ the app received, by the name
            // as written in the format, else upper-cased.
            let lookup = |name: &str| {
                let e = environ?;
                let value = e
                    .get_item(name)
                    .or_else(|_| e.get_item(name.to_ascii_uppercase()))
                    .ok()?;
                value.str().ok().map(|s| s.to_string())
            };
            rec.environ = Some(&lookup);
            crate::log::access(&rec);
        }
        let req = crate::hooks::RequestInfo::from_head(&self.head, &self.peer, self.scheme);
        let resp = crate::hooks::ResponseInfo {
            status: &self.status,
            headers: crate::log::Headers::Owned(&self.headers),
            sent: self.sent,
        };
        let _ = crate::hooks::call_post_request(
            py,
            &crate::hooks::WorkerInfo::this_process(cfg, age),
            &req,
            environ,
            &resp,
        );
    }
}

/// The status code at the start of a status line (`200 OK`), 0 if none.
fn status_code(status: &[u8]) -> u16 {
    match status.get(..3) {
        Some(&[a, b, c]) if [a, b, c].iter().all(u8::is_ascii_digit) => {
            (a - b'0') as u16 * 100 + (b - b'0') as u16 * 10 + (c - b'0') as u16
        }
        _ => 0,
    }
}

/// A response ended (metrics on): count it in the status table and for statsd.
fn response_ended(status: Option<&Status>, code: u16, started: Instant) {
    let took = started.elapsed();
    if let Some(s) = status {
        s.record_response(code, took.as_micros() as u64);
        s.in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
    crate::log::statsd::request(code, took);
}

/// Marks the end of an app call when dropped (whatever path leaves the pump).
struct CallGuard<'a>(Option<&'a Status>);

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        if let Some(s) = self.0 {
            s.end_call();
        }
    }
}

impl Worker<'_> {
    fn serve(&mut self, py: Python<'_>) -> Exit {
        let mut next_sweep = Instant::now() + SWEEP_EVERY;
        loop {
            if let Some(s) = self.status {
                // An app side with a loop of its own (ASGI) must be alive too.
                let now = shm::coarse_monotonic_ms();
                let alive = self
                    .runner
                    .as_ref()
                    .and_then(|r| r.alive_at_ms())
                    .map_or(now, |t| t.min(now));
                s.loop_ms.store(alive, std::sync::atomic::Ordering::Release);
                s.store_faults(&self.engine.faults());
            }
            let now = Instant::now();
            let timeout = next_sweep.saturating_duration_since(now);
            let engine = &mut self.engine;
            let state = &mut self.state;
            // One clock read for the whole batch: its events are simultaneous.
            let mut at = None;
            let waited = py.detach(|| {
                engine.wait(Some(timeout), &mut |ev| {
                    let now = *at.get_or_insert_with(Instant::now);
                    state.on_event(ev, now);
                })
            });
            if let Err(e) = waited {
                crate::error!("io engine failed: {e}");
                return Exit::BootError;
            }
            if self.state.reload_notified {
                self.check_reload(py);
            }
            if std::mem::take(&mut self.state.signalled) {
                for sig in self.signals.drain() {
                    match sig {
                        Signal::SIGTERM => self.begin_stop(),
                        Signal::SIGINT | Signal::SIGQUIT => {
                            self.quick_exit = true;
                            let _ = crate::hooks::call_worker_int(
                                py,
                                &crate::hooks::WorkerInfo::this_process(self.cfg, self.age),
                            );
                            return Exit::Stopped;
                        }
                        Signal::SIGUSR1 => crate::log::reopen(),
                        _ => {}
                    }
                }
            }
            if std::mem::take(&mut self.state.mail) {
                self.apply_mail();
            }
            self.batch_calls = 0;
            let ready = std::mem::take(&mut self.state.ready);
            for id in &ready {
                if let Some(c) = self.state.get(*id) {
                    c.ready = false;
                    self.step(py, *id);
                }
            }
            // Give the list's allocation back for the next round.
            let mut ready = ready;
            ready.clear();
            if self.state.ready.is_empty() {
                self.state.ready = ready;
            }
            crate::log::flush();
            // The batch's time is close enough for a 250 ms sweep.
            let now = at.unwrap_or_else(Instant::now);
            if now >= next_sweep {
                self.check_reload(py);
                if self.max_rss.is_some() {
                    self.check_rss();
                }
                self.sweep(py, now);
                next_sweep = now + SWEEP_EVERY;
            }
            self.manage_accept();
            if let Some(since) = self.stopping {
                if self.state.open == 0 && self.engine.accept_closed() {
                    return Exit::Stopped;
                }
                if !self.websockets_closed
                    && since.elapsed() + websocket::STOP_CLOSE_MARGIN >= self.graceful_timeout
                {
                    self.websockets_closed = true;
                    self.close_websockets();
                }
                if since.elapsed() >= self.graceful_timeout {
                    crate::warn!(
                        "Graceful timeout reached with {} connection(s) open",
                        self.state.open
                    );
                    return Exit::Stopped;
                }
            }
        }
    }

    /// `--reload`: when a watched file changed, ask the arbiter for a
    /// replacement (it retires this worker once the new one is ready).
    fn check_reload(&mut self, py: Python<'_>) {
        let notified = std::mem::take(&mut self.state.reload_notified);
        if self.reload_requested {
            return;
        }
        let Some(r) = &mut self.reloader else { return };
        let changed = if notified { r.notified(py) } else { None };
        let Some(path) = changed.or_else(|| r.poll(py)) else {
            return;
        };
        crate::info!("Worker reloading: {} modified", path.display());
        // The reloader (and its inotify descriptor, which the engine
        // watches) stays until the worker exits; it just stops asking.
        self.reload_requested = true;
        if let Some(s) = self.status {
            s.state
                .fetch_or(shm::REPLACE, std::sync::atomic::Ordering::AcqRel);
            signal::poke(self.wake_fd);
        }
    }

    /// `--max-worker-rss`: past the limit, ask the arbiter for a replacement
    /// (as `--max-requests` does) and keep serving until it is ready.
    fn check_rss(&mut self) {
        let Some(limit) = self.max_rss else { return };
        let rss = match crate::sys::process::resident_bytes() {
            Ok(rss) => rss,
            Err(e) => {
                crate::warn!("--max-worker-rss is off in this worker: {e}");
                self.max_rss = None;
                return;
            }
        };
        if rss <= limit {
            return;
        }
        crate::info!(
            "Autorestarting worker (pid:{}): resident memory {} MiB is over --max-worker-rss {} MiB",
            std::process::id(),
            rss >> 20,
            limit >> 20
        );
        self.max_rss = None;
        if let Some(s) = self.status {
            s.state.fetch_or(
                shm::REPLACE | shm::RSS_LIMIT,
                std::sync::atomic::Ordering::AcqRel,
            );
            signal::poke(self.wake_fd);
        }
    }

    fn begin_stop(&mut self) {
        if self.stopping.is_none() {
            self.stopping = Some(Instant::now());
            self.engine.close_accept();
            self.accept_paused = true;
            // Our copy of each listener goes, so a slot the arbiter gave up
            // (fewer workers) stops receiving connections nobody will accept.
            self.listener_fds.clear();
        }
    }

    fn manage_accept(&mut self) {
        if self.stopping.is_some() {
            return;
        }
        let full = self.state.open >= self.max_connections;
        if full && !self.accept_paused {
            self.engine.pause_accept();
            self.accept_paused = true;
        } else if !full && self.accept_paused {
            self.engine.resume_accept();
            self.accept_paused = false;
        }
    }

    /// Move one ready connection forward.
    fn step(&mut self, py: Python<'_>, id: ConnId) {
        let Some(c) = self.state.get(id) else { return };
        if c.broken {
            return self.close(py, id);
        }
        match c.phase {
            Phase::Lingering { .. } => {
                if c.eof {
                    self.close(py, id);
                }
                return;
            }
            Phase::CloseAfterSend => {
                self.flush(id);
                if self.state.get(id).is_some_and(|c| c.pending_output() == 0) {
                    self.finish_close(py, id);
                }
                return;
            }
            Phase::Open if c.ws.is_some() => return self.step_ws(id),
            Phase::Open => {}
        }
        self.process(py, id);
        let Some(c) = self.state.get(id) else { return };
        if c.phase == Phase::CloseAfterSend && c.pending_output() == 0 {
            return self.finish_close(py, id);
        }
        // Reading more only makes sense while we keep up with writing.
        // While app threads answer, keep reading (to see the client leave)
        // unless pipelined requests pile up.
        let backed_up = c.stream.is_some()
            || c.pending_output() >= OUTPUT_HIGH_WATER
            || (c.inflight.is_some() && c.http.buffered() >= OUTPUT_HIGH_WATER);
        if backed_up && !c.recv_paused {
            c.recv_paused = true;
            self.engine.pause_recv(id);
        } else if !backed_up && c.recv_paused {
            c.recv_paused = false;
            self.engine.resume_recv(id);
        }
        // The rest of a large body goes straight into its memory (not for
        // TLS, whose bytes need decrypting first).
        if !c.recv_paused && c.tls.is_none() && c.http.reading_body() {
            if let Some((memory, rest)) = c.http.lend_body(LEND_BODY_MIN) {
                if let Err(memory) = self.engine.recv_into(id, memory, rest) {
                    c.http.return_body(memory);
                }
            }
        }
    }

    /// Answer what the connection's bytes hold, in order, until it needs
    /// more bytes or its output is backed up.
    fn process(&mut self, py: Python<'_>, id: ConnId) {
        loop {
            let Some(c) = self.state.get(id) else { return };
            if c.inflight.is_some() {
                break;
            }
            if c.stream.is_some() {
                self.pump(py, id);
                let Some(c) = self.state.get(id) else { return };
                if c.stream.is_some() {
                    break;
                }
                continue;
            }
            if c.phase != Phase::Open || c.pending_output() >= OUTPUT_HIGH_WATER {
                break;
            }
            match c.http.poll() {
                http::Event::NeedMore => break,
                http::Event::SendContinue => c.out.extend_from_slice(http::CONTINUE),
                http::Event::Request(req) => {
                    c.request_started = (c.http.buffered() > 0).then(Instant::now);
                    if req.body.len() >= LEND_BODY_MIN && c.tls.is_none() {
                        // An uploading client: let its next bodies skip the
                        // engine's buffers.
                        self.engine.recv_bounded(id);
                    }
                    self.respond(py, id, req)
                }
                http::Event::Error(e) => {
                    let ip = c.peer_ip();
                    match e.status() {
                        // The server's fault (a full or failing
                        // --body-temp-dir): an error, and the client gets
                        // no file names.
                        Some(status) if e.kind == http::HttpErrorKind::BodyNotStored => {
                            crate::error!(
                                "Cannot store the request body from ip={ip}: {}",
                                e.detail
                            );
                            http::error_response(
                                &mut c.out,
                                status,
                                "The request body could not be stored.",
                            );
                        }
                        Some(status) => {
                            crate::warn!("Invalid request from ip={ip}: {e}");
                            http::error_response(&mut c.out, status, &e.detail);
                        }
                        None => crate::debug!("Client ip={ip} went away mid-request: {e}"),
                    }
                    c.phase = Phase::CloseAfterSend;
                    break;
                }
                http::Event::Closed => {
                    c.phase = Phase::CloseAfterSend;
                    break;
                }
            }
        }
        self.flush(id);
    }

    fn respond(&mut self, py: Python<'_>, id: ConnId, req: http::Request) {
        let stopping = self.stopping.is_some();
        let force_close = stopping || self.keep_alive.is_zero();
        let Some(c) = self.state.get(id) else {
            return;
        };
        c.requests += 1;
        let req_info = RequestInfo {
            version: req.head.version,
            is_head: req.head.is_head(),
            keep_alive: req.keep_alive,
        };
        let mut websocket = None;
        if self.asgi && websocket::asks_upgrade(&req.head) {
            match ws::check(&req.head, &self.ws.cfg) {
                ws::Handshake::NotUpgrade => {}
                ws::Handshake::Reject(r) => {
                    crate::debug!(
                        "Invalid WebSocket upgrade from ip={}: {}",
                        c.peer_ip(),
                        r.detail
                    );
                    c.out.extend_from_slice(&r.response());
                    c.phase = Phase::CloseAfterSend;
                    return;
                }
                ws::Handshake::Upgrade(u) => websocket = Some(u),
            }
        }
        let waited = c.last_active.elapsed();
        let queued = match &self.runner {
            Some(r) => r.backlog(),
            None => self.batch_calls,
        };
        let shed = (self.max_queued_requests > 0 && queued >= self.max_queued_requests)
            || self.max_queue_wait.is_some_and(|w| waited > w);
        if shed {
            crate::debug!(
                "Overloaded: 503 for a request that waited {:.3} s",
                waited.as_secs_f64()
            );
            if let Some(s) = self.status {
                s.record_shed(shm::coarse_monotonic_ms());
            }
            if !write_overloaded(&mut c.out, &mut self.date, req_info) {
                c.phase = Phase::CloseAfterSend;
            }
            return;
        }
        self.batch_calls += 1;
        if let Some(runner) = &self.runner {
            self.next_serial += 1;
            let serial = self.next_serial;
            let flow = Arc::new(Flow::new());
            // A WebSocket is not a response in flight for the metrics.
            let metric_start = (self.metrics && websocket.is_none()).then(|| {
                if let Some(s) = self.status {
                    s.in_flight
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                Instant::now()
            });
            let subprotocols = websocket.as_ref().map(|u| u.subprotocols.clone());
            if let Some(upgrade) = websocket {
                // The connection leaves HTTP: what follows the request is
                // WebSocket frames, and the parser's memory goes back.
                let early = c.http.take_buffered();
                c.ws = Some(Box::new(websocket::WsConn::new(upgrade, early)));
            }
            c.inflight = Some(InFlight {
                serial,
                flow: flow.clone(),
                req: req_info,
                force_close: force_close || subprotocols.is_some(),
                writer: None,
                metric_start,
                code: 0,
                body_unflushed: 0,
                body_handed: 0,
            });
            if c.eof {
                flow.hang_up();
            }
            let job = Job {
                ticket: Ticket { conn: id.0, serial },
                req,
                conn: c.info.clone(),
                flow,
                arrived: c.request_started.unwrap_or_else(Instant::now),
                closing: force_close,
                websocket: subprotocols,
            };
            let upgraded = job.websocket.is_some();
            runner.submit(job);
            if upgraded {
                let st = &mut self.state;
                if let Some(Some(c)) = st.conns.get_mut(id.index()) {
                    st.parsers.keep(&mut c.http);
                }
            }
            self.count_request();
            return;
        }
        let track = self.track;
        let scheme = if c.info.https(&req.head) {
            "https"
        } else {
            "http"
        };
        let started = track.then(|| (std::time::SystemTime::now(), Instant::now(), c.peer_ip()));
        if self.pre_request {
            let ip = c.peer_ip();
            let info = crate::hooks::RequestInfo::from_head(&req.head, &ip, scheme);
            if crate::hooks::call_pre_request(
                py,
                &crate::hooks::WorkerInfo::this_process(self.cfg, self.age),
                &info,
            )
            .is_err()
            {
                http::error_response(&mut c.out, 500, "Internal Server Error");
                c.phase = Phase::CloseAfterSend;
                return;
            }
        }
        let metric_start = self.metrics.then(|| {
            if let Some(s) = self.status {
                s.in_flight
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            started.as_ref().map_or_else(Instant::now, |t| t.1)
        });
        if let Some(s) = self.status {
            s.begin_call(
                shm::coarse_monotonic_ms(),
                req.head.method(),
                req.head.target(),
            );
        }
        // write() goes straight to the socket while nothing else is queued for it.
        let direct = match (c.tls.is_none() && c.pending_output() == 0)
            .then(|| self.engine.raw_fd(id))
            .flatten()
        {
            Some(fd) => {
                self.direct.prepare(fd, req_info, force_close);
                Some(self.direct.clone() as Arc<dyn crate::wsgi::WriteSink>)
            }
            None => None,
        };
        let used_direct = direct.is_some();
        let (reply, environ) = self
            .app
            .call_with(py, &req, &c.info, self.keep_environ, direct);
        let (streamed_writer, direct_failed, direct_sent) = if used_direct {
            self.direct.finish()
        } else {
            (None, false, 0)
        };
        if let Some(s) = self.status {
            s.end_call();
        }
        self.count_request();
        let Some(c) = self.state.get(id) else {
            return;
        };
        if direct_failed {
            c.broken = true;
        }
        match reply {
            Reply::Failed if streamed_writer.is_some() => {
                // The head already went out with write(): end the connection.
                c.phase = Phase::CloseAfterSend;
                if let Some(t) = metric_start {
                    response_ended(self.status, 500, t);
                }
            }
            Reply::Failed => {
                let before = c.out.len();
                http::error_response(&mut c.out, 500, "Internal Server Error");
                c.phase = Phase::CloseAfterSend;
                if let Some(t) = metric_start {
                    response_ended(self.status, 500, t);
                }
                if let Some((start_sys, start, peer)) = started {
                    let done = RequestDone {
                        head: req.head,
                        status: crate::http::Status::from(&b"500 Internal Server Error"[..]),
                        headers: std::sync::Arc::new([]),
                        start_sys,
                        start,
                        sent: (c.out.len() - before) as u64,
                        peer,
                        scheme,
                        environ,
                    };
                    done.report(py, self.cfg, self.age);
                }
            }
            Reply::Response { head, body } => {
                conn::reuse_output(&mut c.out, &mut self.engine);
                let writer = match streamed_writer {
                    Some(w) if body.head_streamed() => w,
                    _ => ResponseWriter::start(
                        &mut c.out,
                        &mut self.date,
                        req_info,
                        &head.status,
                        &head.headers,
                        body.known_len(),
                        force_close,
                    ),
                };
                let metric = metric_start.map(|t| (status_code(&head.status), t));
                let done = match started {
                    Some((start_sys, start, peer)) => Some(Box::new(RequestDone {
                        head: req.head,
                        status: head.status,
                        headers: head.headers,
                        start_sys,
                        start,
                        sent: direct_sent,
                        peer,
                        scheme,
                        environ,
                    })),
                    None => {
                        c.http.recycle(req.head);
                        None
                    }
                };
                c.stream = Some(Stream {
                    writer,
                    body,
                    done,
                    metric,
                });
            }
        }
    }

    /// One more request answered: count it, and ask for a replacement at `--max-requests`.
    fn count_request(&mut self) {
        if let Some(s) = self.status {
            s.requests
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        self.requests += 1;
        if self.max_requests == Some(self.requests) {
            crate::info!(
                "Autorestarting worker after current request ({} requests).",
                self.requests
            );
            if let Some(s) = self.status {
                s.state
                    .fetch_or(shm::REPLACE, std::sync::atomic::Ordering::AcqRel);
                signal::poke(self.wake_fd);
            }
        }
    }

    /// Apply what app threads posted: encode heads and body bytes into
    /// their connections' output, finish responses, then flush.
    fn apply_mail(&mut self) {
        let Some(mailbox) = &self.mailbox else { return };
        let mut mail = std::mem::take(&mut self.mail);
        mailbox.drain(&mut mail);
        for (ticket, out) in mail.drain(..) {
            let id = ConnId(ticket.conn);
            let Some(c) = self.state.get(id) else {
                continue;
            };
            let Some(f) = c.inflight.as_mut().filter(|f| f.serial == ticket.serial) else {
                // A message for a connection that has closed since.
                continue;
            };
            let mut ended = None;
            match out {
                Output::Head {
                    status,
                    headers,
                    known_len,
                } => {
                    f.code = status_code(&status);
                    conn::reuse_output(&mut c.out, &mut self.engine);
                    f.writer = Some(ResponseWriter::start(
                        &mut c.out,
                        &mut self.date,
                        f.req,
                        &status,
                        &headers,
                        known_len,
                        f.force_close || self.stopping.is_some(),
                    ));
                }
                Output::EarlyHints(headers) => {
                    if f.writer.is_none() && f.req.version == http::Version::Http11 {
                        conn::reuse_output(&mut c.out, &mut self.engine);
                        http::early_hints(&mut c.out, &headers);
                    }
                }
                Output::Data(data) => {
                    f.body_unflushed += data.len();
                    if let Some(w) = &mut f.writer {
                        w.body(&mut c.out, &data);
                    }
                }
                Output::End => {
                    let keep = match &mut f.writer {
                        Some(w) => w.finish(&mut c.out),
                        None => {
                            http::error_response(&mut c.out, 500, "Internal Server Error");
                            false
                        }
                    };
                    ended = Some((keep, f.code));
                }
                Output::Accept {
                    subprotocol,
                    headers,
                } => {
                    if let Some(ws) = c.ws.as_deref_mut() {
                        conn::reuse_output(&mut c.out, &mut self.engine);
                        let cfg = &self.ws.cfg;
                        if let Err(e) = ws.accept(cfg, subprotocol.as_deref(), &headers, &mut c.out)
                        {
                            crate::error!("Cannot accept the WebSocket: {e}");
                            http::error_response(&mut c.out, 500, "Internal Server Error");
                            ended = Some((false, 500));
                        }
                    }
                }
                Output::Message(m) => {
                    f.body_unflushed += m.len();
                    if let Some(ws) = c.ws.as_deref_mut() {
                        conn::reuse_output(&mut c.out, &mut self.engine);
                        ws.send(&m, &mut c.out);
                    }
                }
                Output::Close { code, reason } => {
                    if let Some(ws) = c.ws.as_deref_mut() {
                        conn::reuse_output(&mut c.out, &mut self.engine);
                        ws.close(code, &reason, &mut c.out);
                    }
                }
                Output::Resume => {}
                Output::Failed => {
                    if f.writer.is_none() {
                        http::error_response(&mut c.out, 500, "Internal Server Error");
                        f.code = 500;
                    }
                    ended = Some((false, f.code));
                }
            }
            if let Some((keep, code)) = ended {
                if let Some(mut f) = c.inflight.take() {
                    // The app side is done: whatever it handed over no longer needs counting.
                    f.body_unflushed = 0;
                    f.handed_written();
                    if c.ws.is_some() {
                        // A WebSocket denied or failed: a later receive() is a disconnect.
                        f.flow.close();
                    }
                    if let Some(t) = f.metric_start {
                        response_ended(self.status, code, t);
                    }
                }
                if !keep {
                    c.phase = Phase::CloseAfterSend;
                }
                c.last_active = Instant::now();
            }
            self.state.mark_ready(id);
        }
        self.mail = mail;
    }

    /// Pull body chunks until the body ends or enough output is waiting.
    fn pump(&mut self, py: Python<'_>, id: ConnId) {
        let Some(c) = self.state.get(id) else { return };
        let Some(stream) = c.stream.take() else {
            return;
        };
        if let Some(s) = self.status {
            // The body is app code too: a generator stuck here is a stuck call.
            s.call_ms.store(
                shm::coarse_monotonic_ms(),
                std::sync::atomic::Ordering::Release,
            );
        }
        let _call = CallGuard(self.status);
        let Some(mut stream) = self.send_file_body(py, id, stream) else {
            return;
        };
        let Some(c) = self.state.get(id) else { return };
        while c.pending_output() < OUTPUT_HIGH_WATER {
            match stream.body.next_piece(py) {
                Chunk::Data(piece) => {
                    let data = piece.bytes(py);
                    if let Some(d) = &mut stream.done {
                        d.sent += data.len() as u64;
                    }
                    let backed = (data.len() >= SEND_IN_PLACE_MIN && c.tls.is_none())
                        .then(|| piece.backed(py))
                        .flatten();
                    let Some(backed) = backed else {
                        stream.writer.body(&mut c.out, data);
                        continue;
                    };
                    // A large bytes object goes out from where it is: what
                    // precedes it first, then the object itself.
                    let n = stream.writer.body_external(&mut c.out, backed.len());
                    if n > 0 {
                        let before = std::mem::take(&mut c.out);
                        c.queued += before.len() + n;
                        if !before.is_empty() {
                            self.engine.send(id, before);
                        }
                        self.engine
                            .send(id, Bytes::Shared(Box::new(Prefix(backed, n))));
                        stream.writer.external_end(&mut c.out, n);
                    }
                }
                Chunk::End => {
                    let keep = stream.writer.finish(&mut c.out);
                    return stream.end(py, c, keep, self.status, self.cfg, self.age);
                }
                Chunk::Failed => {
                    // The head is already out: all we can do is end the connection.
                    return stream.end(py, c, false, self.status, self.cfg, self.age);
                }
            }
        }
        c.stream = Some(stream);
        self.flush(id);
    }

    /// Hand the connection's output to the engine (encrypted first on TLS,
    /// with whatever handshake records TLS has to send).
    fn flush(&mut self, id: ConnId) {
        let Some(c) = self.state.get(id) else {
            return;
        };
        if let Some(tls) = &mut c.tls {
            if !c.out.is_empty() {
                if let Err(e) = tls.send(&c.out, &mut c.wire) {
                    crate::debug!("TLS send failed: {e}");
                    c.broken = true;
                }
                c.out.clear();
            }
            tls.take_output(&mut c.wire);
            if !c.wire.is_empty() {
                let wire = std::mem::take(&mut c.wire);
                c.queued += wire.len();
                self.engine.send(id, wire);
            }
        } else if !c.out.is_empty() {
            let out = std::mem::take(&mut c.out);
            c.queued += out.len();
            self.engine.send(id, out);
        }
        let queued = c.queued;
        if let Some(f) = &mut c.inflight {
            f.flushed(queued);
        }
    }

    /// The last response is written: close, or shut down our side and linger.
    fn finish_close(&mut self, py: Python<'_>, id: ConnId) {
        let Some(c) = self.state.get(id) else { return };
        if c.eof {
            return self.close(py, id);
        }
        c.phase = Phase::Lingering {
            until: Instant::now() + LINGER,
        };
        let had_tls = match &mut c.tls {
            Some(tls) => {
                tls.close_notify(&mut c.wire);
                true
            }
            None => false,
        };
        if had_tls {
            self.flush(id);
        }
        let Some(c) = self.state.get(id) else { return };
        self.engine.shutdown_write(id);
        if c.recv_paused {
            c.recv_paused = false;
            self.engine.resume_recv(id);
        }
    }

    fn close(&mut self, py: Python<'_>, id: ConnId) {
        let Some(slot) = self.state.conns.get_mut(id.index()) else {
            return;
        };
        // Everything is done in the slot: moving a connection out copies it.
        let Some(c) = slot.as_mut() else { return };
        if let Some(f) = c.inflight.take() {
            // The app side stops producing and closes its body.
            f.flow.close();
            if let (Some(_), Some(s)) = (f.metric_start, self.status) {
                s.in_flight
                    .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        if let Some(stream) = c.stream.take() {
            stream.body.close(py);
            // The client left mid-response: no longer in flight, not counted as answered.
            if let (Some(_), Some(s)) = (stream.metric, self.status) {
                s.in_flight
                    .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        self.state.parsers.keep(&mut c.http);
        *slot = None;
        self.state.open -= 1;
        self.engine.close(id);
    }

    /// Close connections whose time is up: lingering ones, idle kept-alive
    /// ones, and ones stalled in the middle of a request.
    fn sweep(&mut self, py: Python<'_>, now: Instant) {
        let stop_linger_over = self
            .stopping
            .is_some_and(|s| now.duration_since(s) >= STOP_KEEPALIVE_LINGER);
        let mut expired = Vec::new();
        let mut too_slow = Vec::new();
        for (i, c) in self.state.conns.iter().enumerate() {
            let Some(c) = c else { continue };
            let id = ConnId(i as u32);
            let idle_for = now.saturating_duration_since(c.last_active);
            match c.phase {
                Phase::Lingering { until } if now >= until => expired.push(id),
                Phase::Open if c.is_idle() => {
                    // Waiting for a first request, or for the next one.
                    let limit = if c.requests == 0 {
                        self.header_timeout
                    } else {
                        self.keep_alive
                    };
                    if stop_linger_over || idle_for >= limit {
                        expired.push(id);
                    }
                }
                Phase::Open if c.stream.is_none() && c.inflight.is_none() && c.queued == 0 => {
                    // In the middle of receiving a request.
                    let late = if c.http.reading_body() {
                        idle_for >= self.body_timeout
                    } else {
                        c.request_started.is_some_and(|t| {
                            now.saturating_duration_since(t) >= self.header_timeout
                        })
                    };
                    if late {
                        too_slow.push(id);
                    }
                }
                _ => {}
            }
        }
        if self.asgi {
            expired.extend(self.sweep_websockets(now));
        }
        for id in expired {
            self.close(py, id);
        }
        for id in too_slow {
            let Some(c) = self.state.get(id) else {
                continue;
            };
            crate::debug!(
                "Request timeout for ip={}: the client was too slow",
                c.peer_ip()
            );
            http::error_response(&mut c.out, 408, "The request did not arrive in time.");
            c.phase = Phase::CloseAfterSend;
            self.flush(id);
        }
    }
}

/// The body of the 503 answer to requests shed by admission control.
const OVERLOADED_BODY: &[u8] = b"Service Unavailable: the server is overloaded, retry shortly.\n";

fn overloaded_headers() -> Vec<(Vec<u8>, Vec<u8>)> {
    vec![
        (
            b"Content-Type".to_vec(),
            b"text/plain; charset=utf-8".to_vec(),
        ),
        (b"Retry-After".to_vec(), b"1".to_vec()),
        (
            b"Content-Length".to_vec(),
            OVERLOADED_BODY.len().to_string().into_bytes(),
        ),
    ]
}

/// 503 with Retry-After, for requests shed by admission control.
fn write_overloaded(out: &mut Vec<u8>, date: &mut DateCache, req: RequestInfo) -> bool {
    let mut w = ResponseWriter::start(
        out,
        date,
        req,
        b"503 Service Unavailable",
        &overloaded_headers(),
        None,
        false,
    );
    w.body(out, OVERLOADED_BODY);
    w.finish(out)
}
