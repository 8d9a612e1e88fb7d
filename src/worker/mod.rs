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
mod gevent;
mod http2;
mod http2_app;
mod http2_timers;
mod lifecycle;
mod mail;
mod output;
mod reload;
mod request;
mod sendfile;
mod serve;
mod step;
mod threads;
mod upload;
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

use crate::engine::{ConnId, Engine};
use crate::handoff::{Mailbox, Output, Runner, Ticket};
use crate::http::{self, ConnInfo, DateCache};
use crate::sys::shm::Status;
use crate::sys::signal::SignalPipe;
use crate::sys::socket::SlotListener;
use crate::wsgi::WsgiApp;

use conn::{reuse_output, Connection, InFlight, Phase, Stream};
pub(crate) use request::RequestDone;
use request::{
    overloaded_headers, response_ended, response_started, status_code, write_overloaded, Policy,
    OVERLOADED_BODY,
};

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
    /// What each request's life asks for (hooks, access log, metrics, admission).
    policy: Policy,
    age: u64,
    status: Option<&'a Status>,
    header_timeout: Duration,
    body_timeout: Duration,
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
