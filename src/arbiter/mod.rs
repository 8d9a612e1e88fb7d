//! The arbiter (master process): owns the listeners, forks one pinned
//! worker per slot, reaps and replaces them, kills the silent, and turns
//! signals into actions. It never touches a client socket. Its loop reads
//! like a checklist: wait (at most a second) → dispatch signals → reap →
//! kill the silent → fix the workers.

// `deny`, not `forbid`: the fork calls below are the arbiter's only unsafe
// code, each allowed where it is made.
#![deny(unsafe_code)]

mod control;
mod listeners;
mod upgrade;

pub use listeners::Listener;

use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::unistd::Pid;
use pyo3::prelude::*;

use crate::config::{self, Config};
use crate::hooks;
use crate::metrics;
use crate::sys::notify::sd_notify;
use crate::sys::process::{self, ChildExit, ForkHooks, Forked};
use crate::sys::shm::{self, StatusTable};
use crate::sys::signal::{Interest, SignalPipe, ARBITER_SIGNALS};
use crate::sys::{affinity, proctitle, stackdump};
use crate::worker::Exit;

use upgrade::{Pidfile, Upgrade};

/// A worker could not start (exit code; the arbiter stops instead of restarting it forever).
pub const WORKER_BOOT_ERROR: i32 = 3;
/// A worker could not import the application.
pub const APP_LOAD_ERROR: i32 = 4;

/// Tell systemd what the master is doing (when it asked, `Type=notify`);
/// a failure matters only to someone debugging the unit.
fn notify_systemd(state: &str) {
    if let Err(e) = sd_notify(state) {
        crate::debug!("sd_notify {state:?} to {e}");
    }
}

/// The exit status of a worker process that ended this way.
fn exit_code(exit: Exit) -> i32 {
    match exit {
        Exit::Stopped => 0,
        Exit::BootError => WORKER_BOOT_ERROR,
        Exit::AppLoadError => APP_LOAD_ERROR,
    }
}

/// A worker hit an internal error and stopped (it is restarted).
pub const WORKER_CRASHED: i32 = 70;

/// Longest wait between two housekeeping rounds.
const LOOP_WAIT_MS: u16 = 1000;
/// A worker that dies sooner than this after its start is restarted with a growing delay.
const QUICK_DEATH: Duration = Duration::from_secs(1);
const MAX_RESPAWN_DELAY: Duration = Duration::from_secs(5);
/// After SIGABRT (timeout), a worker gets this long to write its traceback
/// and exit; one still there is asked for a stack dump.
const ABORT_GRACE: Duration = Duration::from_secs(2);
/// After the stack dump signal, this long to write it before SIGKILL.
const DUMP_GRACE: Duration = Duration::from_secs(2);
/// Status entries in the shared table: workers plus overlapping generations.
const STATUS_ENTRIES: usize = 4096;
/// /readyz says "shedding load" while a worker shed a request this recently.
const SHED_NOT_READY_MS: u64 = 1000;

struct Child {
    pid: Pid,
    slot: usize,
    /// Spawn order (gunicorn's `worker.age`).
    age: u64,
    /// Index in the shared status table.
    entry: usize,
    started: Instant,
    /// A newer worker is to take this one's slot (reload, --max-requests);
    /// it is retired once that one is ready.
    replaced: bool,
    /// Sent TERM: no longer counted for its slot.
    retiring: bool,
    /// When the timeout abort was sent.
    aborted: Option<Instant>,
    /// When the stack dump was asked for (still there after the abort).
    dumped: Option<Instant>,
}

#[derive(Default, Clone, Copy)]
struct SlotState {
    quick_deaths: u32,
    not_before: Option<Instant>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Stop {
    Graceful,
    Quick,
}

/// Why the arbiter could not start, and the exit code that says so.
#[derive(Debug)]
pub struct StartError {
    pub code: i32,
    pub message: String,
}

impl From<String> for StartError {
    fn from(message: String) -> StartError {
        StartError { code: 1, message }
    }
}

impl From<&str> for StartError {
    fn from(message: &str) -> StartError {
        message.to_string().into()
    }
}

/// `--preload`: import the app here, once, before any fork; every worker
/// inherits the object (and the memory of what it imported) copy-on-write.
fn preload(py: Python<'_>, cfg: &Config) -> Result<Py<PyAny>, String> {
    let threads_before = process::thread_count();
    let app = crate::worker::preload(py, cfg)
        .map_err(|tb| format!("Exception while preloading the app {:?}:\n{tb}", cfg.app))?;
    crate::info!("Preloaded the app {:?} in the master", cfg.app);
    let threads = process::thread_count();
    if let (Some(before), Some(now)) = (threads_before, threads) {
        if now > before {
            // fork() copies only the calling thread: these threads are not in
            // the workers, and a lock one of them held at that moment stays
            // locked there for good.
            crate::warn!(
                "--preload: importing the app started {} thread(s) in the master ({}); they do \
                 not exist in the workers, and a lock one of them holds when a worker is forked \
                 stays locked in that worker. Start threads in post_fork or post_worker_init",
                now - before,
                python_thread_names(py)
            );
        }
    }
    Ok(app)
}

/// The names of the live Python threads but the main one, for a warning.
fn python_thread_names(py: Python<'_>) -> String {
    let names = || -> PyResult<Vec<String>> {
        let threading = py.import("threading")?;
        let main = threading.call_method0("main_thread")?;
        let mut names = Vec::new();
        for t in threading.call_method0("enumerate")?.try_iter()? {
            let t = t?;
            if !t.is(&main) {
                names.push(t.getattr("name")?.extract()?);
            }
        }
        Ok(names)
    };
    match names() {
        Ok(n) if !n.is_empty() => n.join(", "),
        _ => "not Python threads".into(),
    }
}

pub struct Arbiter {
    /// The command line, re-read on HUP.
    argv: Vec<String>,
    cfg: Config,
    listeners: Vec<Listener>,
    children: Vec<Child>,
    slots: Vec<SlotState>,
    num_workers: usize,
    cpus: Vec<usize>,
    signals: SignalPipe,
    /// Workers write a byte here when their status changed (ready, wants a replacement).
    wake_read: OwnedFd,
    wake_write: OwnedFd,
    table: StatusTable,
    upgrade: Upgrade,
    pidfile: Option<Pidfile>,
    /// Waiting to tell systemd and the log that all workers are ready.
    announce_ready: bool,
    /// The last reload's workers could not start; the previous ones serve on.
    reload_failed: bool,
    /// Workers spawned so far (gunicorn's `worker.age`).
    spawned: u64,
    /// `--preload`: the app object imported here, inherited by every fork.
    app: Option<Py<PyAny>>,
    /// Loaded once here (so mistakes stop the start, and workers share
    /// session-ticket keys), again on HUP.
    tls: Option<crate::tls::TlsConfig>,
    /// `--metrics-bind`: /metrics, /healthz and /readyz, answered here.
    monitor: Option<metrics::Server>,
    /// Response counters of reaped workers (so totals never go backwards).
    reaped: shm::Counters,
    /// Workers that died without being asked to.
    restarts: u64,
    /// Workers aborted after `--timeout`.
    timeouts: u64,
    /// Workers ended by a signal nobody here sent (kill -9, the OOM killer, a crash).
    signal_deaths: u64,
    /// Workers replaced after passing `--max-worker-rss`.
    rss_recycles: u64,
    /// A stop has begun (/readyz answers 503).
    stopping: bool,
    /// The control socket (`ferrocorn ctl`, `gunicornc`), served in this loop.
    control: Option<control::Server>,
    /// Reloads so far, and workers told to stop, for `show stats`.
    reloads: u64,
    workers_killed: u64,
}

impl Arbiter {
    fn server_info(&self) -> hooks::ServerInfo<'_> {
        hooks::ServerInfo {
            cfg: &self.cfg,
            pid: std::process::id(),
            num_workers: self.num_workers,
        }
    }

    fn worker_info(&self, pid: u32, age: u64) -> hooks::WorkerInfo<'_> {
        hooks::WorkerInfo {
            cfg: &self.cfg,
            pid,
            ppid: std::process::id(),
            age,
        }
    }
}

fn python_fork_hooks() -> ForkHooks {
    ForkHooks {
        before: pyo3::ffi::PyOS_BeforeFork,
        after_parent: pyo3::ffi::PyOS_AfterFork_Parent,
        after_child: pyo3::ffi::PyOS_AfterFork_Child,
    }
}

fn mask_signals(how: SigmaskHow) {
    let mut set = SigSet::empty();
    for &s in ARBITER_SIGNALS {
        set.add(s);
    }
    let _ = nix::sys::signal::sigprocmask(how, Some(&set), None);
}

impl Arbiter {
    /// Open every listener and write the pidfile; errors here stop the
    /// server before any worker is forked.
    pub fn new(
        py: Python<'_>,
        argv: Vec<String>,
        start_cwd: std::path::PathBuf,
        cfg: Config,
    ) -> Result<Arbiter, StartError> {
        // A new arbiter exec'd by USR2 inherits the old one's blocked mask.
        mask_signals(SigmaskHow::SIG_UNBLOCK);
        // gunicorn imports a preloaded app first, before on_starting.
        let app = if cfg.preload_app {
            Some(preload(py, &cfg).map_err(|e| StartError {
                code: APP_LOAD_ERROR,
                message: e,
            })?)
        } else {
            None
        };
        let starting = hooks::ServerInfo {
            cfg: &cfg,
            pid: std::process::id(),
            num_workers: cfg.workers,
        };
        if hooks::call_on_starting(py, &starting).is_err() {
            return Err("the on_starting hook failed".into());
        }
        let tls = load_tls(&cfg)?;
        let upgrade = Upgrade::detect(py, start_cwd)
            .map_err(|e| format!("cannot read the interpreter's command line: {e}"))?;
        let listeners = Listener::open_all(&cfg).map_err(|e| e.to_string())?;
        let signals = SignalPipe::install(ARBITER_SIGNALS)
            .map_err(|e| format!("cannot install signal handlers: {e}"))?;
        let (wake_read, wake_write) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_CLOEXEC)
                .map_err(|e| format!("cannot create the wake-up pipe: {e}"))?;
        let table = StatusTable::new(STATUS_ENTRIES)
            .map_err(|e| format!("cannot map the status table: {e}"))?;
        let pidfile = match &cfg.pidfile {
            Some(path) => Some(
                Pidfile::create(path, upgrade.is_new_master())
                    .map_err(|e| format!("--pid {path:?}: {e}"))?,
            ),
            None => None,
        };
        let monitor = match cfg.metrics_bind {
            Some(addr) => Some(
                metrics::Server::bind(addr).map_err(|e| format!("--metrics-bind {addr}: {e}"))?,
            ),
            None => None,
        };
        let mut cpus = affinity::allowed_cpus();
        if cpus.is_empty() {
            cpus.push(0);
        }
        let num_workers = cfg.workers;
        Ok(Arbiter {
            argv,
            cfg,
            listeners,
            children: Vec::new(),
            slots: Vec::new(),
            num_workers,
            cpus,
            signals,
            wake_read,
            wake_write,
            table,
            upgrade,
            pidfile,
            announce_ready: true,
            reload_failed: false,
            spawned: 0,
            app,
            tls,
            monitor,
            reaped: shm::Counters::default(),
            restarts: 0,
            timeouts: 0,
            signal_deaths: 0,
            rss_recycles: 0,
            stopping: false,
            control: None,
            reloads: 0,
            workers_killed: 0,
        })
    }

    fn title(&self) -> String {
        let suffix = if self.upgrade.is_new_master() {
            ".2"
        } else {
            ""
        };
        format!("ferrocorn: master [{}{suffix}]", self.cfg.proc_name)
    }

    /// Run until stopped; returns the process exit code.
    pub fn run(&mut self, py: Python<'_>) -> i32 {
        proctitle::set(&self.title());
        crate::info!("Starting ferrocorn {}", crate::VERSION);
        for l in &self.listeners {
            crate::info!("Listening at: {} ({})", l.display(), std::process::id());
        }
        if let Some(addr) = self.monitor.as_ref().and_then(|m| m.local_addr()) {
            crate::info!("Metrics at: http://{addr}/metrics (health: /healthz, /readyz)");
        }
        self.open_control();
        crate::info!(
            "Using worker: ferrocorn (io engine {}), {} worker(s)",
            match self.cfg.io_engine {
                config::EngineChoice::Auto => "auto",
                config::EngineChoice::Uring => "uring",
                config::EngineChoice::Epoll => "epoll",
            },
            self.num_workers
        );
        let code = loop {
            if self.upgrade.maybe_promote(self.pidfile.as_mut()) {
                proctitle::set(&self.title());
            }
            self.manage_workers(py);
            crate::log::statsd::gauge("gunicorn.workers", self.children.len() as u64);
            self.wait(py);
            let mut stop = None;
            for sig in self.signals.drain() {
                if sig != Signal::SIGCHLD {
                    crate::info!("Handling signal: {}", signal_name(sig));
                }
                match sig {
                    Signal::SIGTERM => stop = Some(Stop::Graceful),
                    Signal::SIGINT | Signal::SIGQUIT => stop = Some(Stop::Quick),
                    Signal::SIGTTIN => self.set_workers(py, self.num_workers + 1),
                    Signal::SIGTTOU => {
                        self.set_workers(py, self.num_workers.saturating_sub(1).max(1))
                    }
                    Signal::SIGHUP => self.reload(py),
                    Signal::SIGUSR1 => {
                        crate::log::reopen();
                        self.signal_workers(Signal::SIGUSR1);
                    }
                    Signal::SIGUSR2 => self.reexec(py),
                    Signal::SIGWINCH => {
                        crate::info!(
                            "Stopping all workers; the master keeps the listeners (WINCH)"
                        );
                        self.num_workers = 0;
                    }
                    _ => {}
                }
            }
            if let Some(how) = stop {
                break self.stop(py, how, 0);
            }
            if let Some(code) = self.reap(py) {
                let reason = if code == APP_LOAD_ERROR {
                    "App failed to load."
                } else {
                    "Worker failed to boot."
                };
                crate::error!("Shutting down: Master");
                crate::error!("Reason: {reason}");
                break self.stop(py, Stop::Graceful, code);
            }
            self.murder_silent();
        };
        if self.upgrade.child().is_none() {
            for l in &self.listeners {
                l.unlink();
            }
        }
        if let Some(p) = &self.pidfile {
            p.remove();
        }
        code
    }

    /// Sleep until a signal, a worker's wake-up byte, or the next housekeeping round.
    fn wait(&mut self, py: Python<'_>) {
        let waiting_for_ready =
            self.children.iter().any(|c| c.replaced && !c.retiring) || self.announce_ready;
        let ms = if waiting_for_ready { 100 } else { LOOP_WAIT_MS };
        let mut watch = vec![Interest::read(self.wake_read.as_raw_fd())];
        let ms = self.monitor_interests(&mut watch, ms);
        let ms = self.control_interests(&mut watch, ms);
        let signals = &self.signals;
        py.detach(|| signals.wait_with(&watch, ms));
        let mut buf = [0u8; 64];
        while matches!(nix::unistd::read(&self.wake_read, &mut buf), Ok(n) if n > 0) {}
        self.serve_monitor();
        self.serve_control(py);
    }

    /// Add the monitor's descriptors to `watch`; returns `ms` shortened to
    /// the nearest client deadline.
    fn monitor_interests(&self, watch: &mut Vec<Interest>, ms: u16) -> u16 {
        let Some(m) = &self.monitor else { return ms };
        m.interests(watch);
        match m.next_deadline() {
            Some(t) => {
                let left = t.saturating_duration_since(Instant::now()).as_millis() as u16;
                ms.min(left.saturating_add(1))
            }
            None => ms,
        }
    }

    /// Answer whatever scrapes and health checks can be answered now.
    fn serve_monitor(&mut self) {
        let Some(mut m) = self.monitor.take() else {
            return;
        };
        m.turn(Instant::now(), &mut |route| match route {
            metrics::Route::Metrics => {
                let mut body = String::with_capacity(4096);
                metrics::render(&self.snapshot(), &mut body);
                metrics::Answer {
                    status: 200,
                    body,
                    content_type: "text/plain; version=0.0.4; charset=utf-8",
                }
            }
            metrics::Route::Healthz => metrics::Answer::text(200, "ok\n"),
            metrics::Route::Readyz => match self.not_ready() {
                None => metrics::Answer::text(200, "ready\n"),
                Some(why) => metrics::Answer::text(503, format!("not ready: {why}\n")),
            },
        });
        self.monitor = Some(m);
    }

    fn snapshot(&self) -> metrics::Snapshot {
        use std::sync::atomic::Ordering::Relaxed;
        let mut counters = self.reaped;
        let mut workers = Vec::with_capacity(self.children.len());
        for c in &self.children {
            if let Some(s) = self.status(c) {
                counters.add(&s.counters());
                workers.push(metrics::WorkerView {
                    pid: c.pid.as_raw(),
                    slot: c.slot,
                    engine: s.engine.load(Relaxed),
                    in_flight: s.in_flight.load(Relaxed) as i64,
                });
            }
        }
        workers.sort_by_key(|w| (w.slot, w.pid));
        metrics::Snapshot {
            counters,
            workers,
            restarts: self.restarts,
            timeouts: self.timeouts,
            rss_recycles: self.rss_recycles,
            signal_deaths: self.signal_deaths,
        }
    }

    /// Why /readyz says no, if it does.
    fn not_ready(&self) -> Option<String> {
        if self.stopping {
            return Some("the server is stopping".into());
        }
        if self.num_workers == 0 {
            return Some("no workers are running (WINCH); HUP or TTIN starts them".into());
        }
        for slot in 0..self.num_workers {
            let ready = self.children.iter().any(|c| {
                c.slot == slot && !c.retiring && self.status(c).is_some_and(|s| s.is_ready())
            });
            if !ready {
                return Some(format!("worker slot {slot} has no ready worker"));
            }
        }
        let now = shm::monotonic_ms();
        let shedding = self.children.iter().any(|c| {
            self.status(c).is_some_and(|s| {
                let t = s.shed_ms.load(std::sync::atomic::Ordering::Relaxed);
                t != 0 && now.saturating_sub(t) < SHED_NOT_READY_MS
            })
        });
        if shedding {
            return Some(
                "shedding load (admission control answered 503 in the last second)".into(),
            );
        }
        None
    }

    fn status(&self, child: &Child) -> Option<&shm::Status> {
        self.table.get(child.entry)
    }

    fn set_workers(&mut self, py: Python<'_>, n: usize) {
        if n != self.num_workers {
            crate::info!("Number of workers: {} -> {n}", self.num_workers);
            let old = self.num_workers;
            self.num_workers = n;
            let _ = hooks::call_nworkers_changed(py, &self.server_info(), n, old);
        }
    }

    /// Start workers for empty slots (respecting the crash back-off), and
    /// retire workers that are replaced (once their successor is ready) or
    /// whose slot is gone.
    fn manage_workers(&mut self, py: Python<'_>) {
        if self.slots.len() < self.num_workers {
            self.slots.resize(self.num_workers, SlotState::default());
        }
        for i in 0..self.children.len() {
            let c = &self.children[i];
            if !c.replaced && !c.retiring && self.status(c).is_some_and(|s| s.wants_replacement()) {
                let rss = self.status(c).is_some_and(|s| s.over_rss_limit());
                crate::info!(
                    "Worker (pid:{}) asked to be replaced ({}): starting its replacement",
                    c.pid,
                    if rss {
                        "--max-worker-rss"
                    } else {
                        "--max-requests or --reload"
                    }
                );
                if rss {
                    self.rss_recycles += 1;
                    crate::log::statsd::increment("ferrocorn.workers.rss_recycles");
                }
                self.children[i].replaced = true;
            }
        }
        let now = Instant::now();
        for slot in 0..self.num_workers {
            let occupied = self
                .children
                .iter()
                .any(|c| c.slot == slot && !c.replaced && !c.retiring);
            if !occupied && self.slots[slot].not_before.is_none_or(|t| t <= now) {
                self.spawn(py, slot);
            }
        }
        let mut retire = Vec::new();
        for c in self.children.iter().filter(|c| !c.retiring) {
            let successor_ready = || {
                self.children.iter().any(|d| {
                    d.slot == c.slot
                        && !d.replaced
                        && !d.retiring
                        && self.status(d).is_some_and(|s| s.is_ready())
                })
            };
            // Of the replaced workers of a slot, only the newest ready one
            // still has a job (serving until its successor is ready): older
            // ones, and ones still booting, go at once, so repeated HUPs do
            // not pile workers up.
            let newer_ready_replaced = || {
                self.children.iter().any(|d| {
                    d.slot == c.slot
                        && d.replaced
                        && !d.retiring
                        && d.started > c.started
                        && self.status(d).is_some_and(|s| s.is_ready())
                })
            };
            let booting = || !self.status(c).is_some_and(|s| s.is_ready());
            if c.slot >= self.num_workers
                || (c.replaced && (successor_ready() || booting() || newer_ready_replaced()))
            {
                retire.push(c.pid);
            }
        }
        // Let go of the sockets of removed slots before telling their workers
        // to stop: a worker's close must be the last one, after it took what
        // is queued (`close_accept`). Closed the other way round, a worker
        // could finish stopping first, and connections arriving meanwhile
        // would queue on a socket nobody accepts from, to be reset by this
        // close.
        for l in &mut self.listeners {
            l.release_slots_from(self.num_workers);
        }
        for pid in retire {
            self.retire(pid);
        }
        if self.announce_ready && self.num_workers > 0 {
            let ready = (0..self.num_workers).all(|slot| {
                self.children.iter().any(|c| {
                    c.slot == slot
                        && !c.replaced
                        && !c.retiring
                        && self.status(c).is_some_and(|s| s.is_ready())
                })
            });
            let reloading = self.children.iter().any(|c| c.replaced && !c.retiring);
            if ready && !reloading {
                self.announce_ready = false;
                crate::info!("Server is ready: {} worker(s)", self.num_workers);
                if hooks::call_when_ready(py, &self.server_info()).is_err()
                    && self.spawned <= self.num_workers as u64
                {
                    // gunicorn: a when_ready that fails at start stops the master.
                    crate::error!("Shutting down: the when_ready hook failed");
                    process::send_signal(nix::unistd::getpid(), Signal::SIGTERM);
                }
                notify_systemd("READY=1\nSTATUS=ferrocorn is ready");
            }
        }
    }

    fn retire(&mut self, pid: Pid) {
        let Some(i) = self.children.iter().position(|c| c.pid == pid) else {
            return;
        };
        if self.children[i].replaced {
            // A worker handing over to its successor (HUP, --max-requests)
            // says so to its WebSocket peers (close 1012, "service restart").
            if let Some(s) = self.status(&self.children[i]) {
                s.state
                    .fetch_or(shm::REPLACE, std::sync::atomic::Ordering::AcqRel);
            }
        }
        self.children[i].retiring = true;
        self.workers_killed += 1;
        process::send_signal(pid, Signal::SIGTERM);
    }

    /// HUP: read the command line again, start a new generation of
    /// workers, and retire each old worker once its successor is ready.
    fn reload(&mut self, py: Python<'_>) {
        // MONOTONIC_USEC lets systemd's Type=notify-reload match this to its HUP.
        let now_us = shm::monotonic_ms() * 1000;
        notify_systemd(&format!("RELOADING=1\nMONOTONIC_USEC={now_us}"));
        self.reloads += 1;
        let _ = hooks::call_on_reload(py, &self.server_info());
        match config::from_args_quiet(&self.argv) {
            Ok(cfg) => {
                if cfg.binds != self.cfg.binds && self.upgrade.inherited_listeners() == 0 {
                    match Listener::open_all(&cfg) {
                        Ok(listeners) => {
                            for l in &listeners {
                                crate::info!(
                                    "Listening at: {} ({})",
                                    l.display(),
                                    std::process::id()
                                );
                            }
                            self.listeners = listeners;
                        }
                        Err(e) => {
                            crate::error!("Reload aborted, keeping the running configuration: {e}");
                            return;
                        }
                    }
                }
                match load_tls(&cfg) {
                    Ok(tls) => self.tls = tls,
                    Err(e) => {
                        crate::error!("Reload aborted, keeping the running configuration: {e}");
                        return;
                    }
                }
                if let Err(e) = config::setup_logging(&cfg) {
                    crate::error!(
                        "Reload: cannot set up logging, keeping the running configuration: {e}"
                    );
                    return;
                }
                if cfg.metrics_bind != self.cfg.metrics_bind {
                    crate::warn!("Reload: --metrics-bind changes only when the master restarts");
                }
                match (cfg.preload_app, &self.app) {
                    (true, Some(_)) => crate::info!(
                        "Reload with --preload: the configuration is read again and the workers \
                         are forked again from the app the master loaded at start; new app code \
                         needs USR2 (or no --preload)"
                    ),
                    (true, None) => match preload(py, &cfg) {
                        Ok(app) => self.app = Some(app),
                        Err(e) => {
                            crate::error!("Reload aborted, keeping the running configuration: {e}");
                            return;
                        }
                    },
                    // Workers import the app themselves from now on.
                    (false, _) => self.app = None,
                }
                let old = self.num_workers;
                self.num_workers = cfg.workers;
                self.cfg = cfg;
                if old != self.num_workers {
                    let _ = hooks::call_nworkers_changed(
                        py,
                        &self.server_info(),
                        self.num_workers,
                        old,
                    );
                }
            }
            Err(e) => {
                crate::error!("Reload: the configuration is invalid, keeping the running one: {e}");
            }
        }
        for c in self.children.iter_mut().filter(|c| !c.retiring) {
            c.replaced = true;
        }
        self.reload_failed = false;
        self.announce_ready = true;
    }

    /// USR2: start a new arbiter from the same command line, handing it the listeners.
    fn reexec(&mut self, py: Python<'_>) {
        let server = hooks::ServerInfo {
            cfg: &self.cfg,
            pid: std::process::id(),
            num_workers: self.num_workers,
        };
        if let Err(e) = self
            .upgrade
            .reexec(py, &self.listeners, &python_fork_hooks(), &server)
        {
            crate::error!("Cannot start a new master: {e}");
        }
    }

    fn signal_workers(&self, sig: Signal) {
        for c in &self.children {
            process::send_signal(c.pid, sig);
        }
    }

    fn spawn(&mut self, py: Python<'_>, slot: usize) {
        let Some(entry) = self.table.free_entry() else {
            crate::error!("No free worker status entry: too many workers");
            return;
        };
        let mut slot_listeners = Vec::with_capacity(self.listeners.len());
        for l in &mut self.listeners {
            match l.for_slot(slot) {
                Ok(s) => slot_listeners.push(s),
                Err(e) => {
                    crate::error!("Cannot open a listening socket for worker slot {slot}: {e}");
                    self.slots[slot].not_before = Some(Instant::now() + MAX_RESPAWN_DELAY);
                    return;
                }
            }
        }
        let cpu = self.cpus[slot % self.cpus.len()];
        self.spawned += 1;
        let age = self.spawned;
        let _ = hooks::call_pre_fork(py, &self.server_info(), &self.worker_info(0, age));
        let now_ms = shm::monotonic_ms();
        // Signals stay blocked across fork so a signal meant for the new
        // worker cannot run the arbiter's handler in it.
        mask_signals(SigmaskHow::SIG_BLOCK);
        let master = nix::unistd::getpid();
        // SAFETY: the arbiter runs on one thread and holds the interpreter
        // lock (`py`); the child leaves with `exit_now` below. (A thread a
        // `--preload`ed app started is the app's, as with `os.fork()`:
        // `preload` names it in a warning. Such a thread never enters
        // ferrocorn's code, so it holds none of its locks; the interpreter's
        // own are reset by PyOS_AfterFork_Child.)
        #[allow(unsafe_code)]
        let forked = unsafe { process::fork(&python_fork_hooks()) };
        match forked {
            Ok(Forked::Child) => {
                // First of all: a master killed with -9 takes its workers
                // along (TERM: they finish what is in flight and let go of
                // the listeners). One that died before the request sends
                // nothing, so the parent is checked after it.
                let _ = process::set_parent_death_signal(Signal::SIGTERM);
                if !process::parent_is(master) {
                    process::exit_now(0);
                }
                // The arbiter's sockets are not this worker's (it has its
                // own descriptors in `slot_listeners`): holding them would
                // keep a removed slot's socket in the port's group after the
                // arbiter lets go of it. The monitor's are the master's alone.
                self.listeners.clear();
                self.monitor = None;
                self.control = None;
                if hooks::call_post_fork(
                    py,
                    &self.server_info(),
                    &self.worker_info(std::process::id(), age),
                )
                .is_err()
                {
                    process::exit_now(WORKER_BOOT_ERROR);
                }
                // Nothing may unwind out of here into the arbiter's frames.
                let status = self.table.get(entry);
                if let Some(s) = status {
                    s.reset(std::process::id() as i32, now_ms);
                }
                let ctx = crate::worker::WorkerContext {
                    slot,
                    cpu,
                    listeners: slot_listeners,
                    status,
                    wake_fd: self.wake_write.as_raw_fd(),
                    tls: self.tls.clone(),
                    age,
                    preloaded: self.app.as_ref(),
                };
                let cfg = &self.cfg;
                let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    exit_code(crate::worker::run(py, cfg, ctx))
                }))
                .unwrap_or_else(|_| {
                    crate::critical!(
                        "Worker (pid:{}) crashed: internal error (panic)",
                        std::process::id()
                    );
                    WORKER_CRASHED
                });
                process::exit_now(code);
            }
            Ok(Forked::Parent(pid)) => {
                if let Some(s) = self.table.get(entry) {
                    s.reset(pid.as_raw(), now_ms);
                }
                mask_signals(SigmaskHow::SIG_UNBLOCK);
                crate::info!("Booting worker with pid: {pid} (slot {slot}, cpu {cpu})");
                self.children.push(Child {
                    pid,
                    slot,
                    age,
                    entry,
                    started: Instant::now(),
                    replaced: false,
                    retiring: false,
                    aborted: None,
                    dumped: None,
                });
            }
            Err(e) => {
                mask_signals(SigmaskHow::SIG_UNBLOCK);
                crate::error!("Cannot fork a worker: {e}");
                self.slots[slot].not_before = Some(Instant::now() + MAX_RESPAWN_DELAY);
            }
        }
    }

    /// Reap exited workers. Returns an exit code when a worker failed to
    /// boot or load the app and no older worker can keep serving, which
    /// stops the server.
    fn reap(&mut self, py: Python<'_>) -> Option<i32> {
        let mut halt = None;
        while let Some((pid, how)) = process::reap_any() {
            if self.upgrade.reaped(pid) {
                continue;
            }
            let Some(i) = self.children.iter().position(|c| c.pid == pid) else {
                continue; // not one of ours (e.g. running as PID 1)
            };
            let child = self.children.swap_remove(i);
            let _ = hooks::call_child_exit(
                py,
                &self.server_info(),
                &self.worker_info(pid.as_raw() as u32, 0),
            );
            if let Some(s) = self.table.get(child.entry) {
                // Its counters are final: keep them before the entry is freed.
                self.reaped.add(&s.counters());
                s.pid.store(0, std::sync::atomic::Ordering::Release);
            }
            if !child.retiring {
                self.restarts += 1;
                if matches!(how, ChildExit::Signal(_)) && child.aborted.is_none() {
                    self.signal_deaths += 1;
                    crate::log::statsd::increment("ferrocorn.workers.signal_deaths");
                }
            }
            match how {
                ChildExit::Code(0) => crate::info!("Worker exiting (pid: {pid})"),
                ChildExit::Code(code @ (WORKER_BOOT_ERROR | APP_LOAD_ERROR)) => {
                    crate::error!("Worker (pid:{pid}) exited with code {code}");
                    let old: Vec<usize> = (0..self.children.len())
                        .filter(|&j| self.children[j].replaced && !self.children[j].retiring)
                        .collect();
                    if old.is_empty() && self.reload_failed {
                        // Another new worker of the same failed reload: handled already.
                    } else if old.is_empty() {
                        halt = Some(code);
                    } else {
                        self.reload_failed = true;
                        // A reload whose new code cannot start: keep the workers we have.
                        crate::error!(
                            "Reload failed: the new workers cannot start; keeping the running ones"
                        );
                        for j in old {
                            self.children[j].replaced = false;
                        }
                        self.announce_ready = false;
                        for s in &mut self.slots {
                            s.not_before = Some(Instant::now() + MAX_RESPAWN_DELAY);
                        }
                    }
                }
                ChildExit::Code(code) if child.aborted.is_some() => {
                    crate::error!(
                        "Worker (pid:{pid}) was aborted after the timeout (exit code {code})"
                    )
                }
                ChildExit::Code(code) => {
                    crate::error!("Worker (pid:{pid}) exited with code {code}")
                }
                ChildExit::Signal(sig) if child.aborted.is_some() => {
                    crate::error!(
                        "Worker (pid:{pid}) was aborted after the timeout ({})",
                        signal_name(sig)
                    )
                }
                ChildExit::Signal(Signal::SIGKILL) => {
                    crate::error!("Worker (pid:{pid}) was sent SIGKILL! Perhaps out of memory?")
                }
                ChildExit::Signal(Signal::SIGTERM) => {
                    crate::info!("Worker (pid:{pid}) was sent SIGTERM!")
                }
                ChildExit::Signal(sig) => {
                    crate::warn!("Worker (pid:{pid}) was sent {}!", signal_name(sig))
                }
            }
            if !child.retiring && !child.replaced && child.slot < self.slots.len() {
                let state = &mut self.slots[child.slot];
                if child.started.elapsed() < QUICK_DEATH {
                    state.quick_deaths += 1;
                    let delay = Duration::from_millis(100u64 << state.quick_deaths.min(6))
                        .min(MAX_RESPAWN_DELAY);
                    state.not_before = Some(Instant::now() + delay);
                } else {
                    *state = SlotState::default();
                }
            }
        }
        halt
    }

    /// `--timeout`: a worker whose loop stopped turning, or whose app call
    /// has run too long, gets SIGABRT (it writes the Python traceback of
    /// the stuck call to the error log). One that cannot run Python to do
    /// so (a deadlock, a blocked C call) is still there after ABORT_GRACE:
    /// it gets the stack dump signal (every thread's Rust and Python frames
    /// to the error log, written without the interpreter lock), then SIGKILL.
    fn murder_silent(&mut self) {
        if self.cfg.timeout == 0 {
            return;
        }
        let limit_ms = self.cfg.timeout as u64 * 1000;
        let now_ms = shm::monotonic_ms();
        for c in &mut self.children {
            let Some(s) = self.table.get(c.entry) else {
                continue;
            };
            use std::sync::atomic::Ordering::Acquire;
            let call = s.call_ms.load(Acquire);
            let since = if call != 0 {
                call
            } else {
                s.loop_ms.load(Acquire)
            };
            let age = now_ms.saturating_sub(since);
            if age <= limit_ms {
                continue;
            }
            match c.aborted {
                None => {
                    if call != 0 {
                        crate::critical!(
                            "WORKER TIMEOUT (pid:{}): {} has been running for {:.1} s",
                            c.pid,
                            s.request_line(),
                            age as f64 / 1000.0
                        );
                    } else {
                        crate::critical!(
                            "WORKER TIMEOUT (pid:{}): silent for {:.1} s",
                            c.pid,
                            age as f64 / 1000.0
                        );
                    }
                    c.aborted = Some(Instant::now());
                    self.timeouts += 1;
                    process::send_signal(c.pid, Signal::SIGABRT);
                }
                Some(t) if t.elapsed() >= ABORT_GRACE => match c.dumped {
                    None => {
                        crate::error!(
                            "Worker (pid:{}) did not exit after SIGABRT; asking for its stacks",
                            c.pid
                        );
                        c.dumped = Some(Instant::now());
                        process::send_signal(c.pid, stackdump::DUMP_SIGNAL);
                    }
                    Some(d) if d.elapsed() >= DUMP_GRACE => {
                        process::send_signal(c.pid, Signal::SIGKILL)
                    }
                    Some(_) => {}
                },
                Some(_) => {}
            }
        }
    }

    /// Stop every worker (TERM for graceful, QUIT for quick), wait up to
    /// the graceful timeout, then kill what is left.
    fn stop(&mut self, py: Python<'_>, how: Stop, code: i32) -> i32 {
        notify_systemd("STOPPING=1");
        self.stopping = true;
        // As gunicorn: no more commands once the stop has begun.
        self.close_control();
        let mut sig = match how {
            Stop::Graceful => Signal::SIGTERM,
            Stop::Quick => Signal::SIGQUIT,
        };
        // The arbiter's copies of the listening sockets go first (as
        // gunicorn closes its listeners before stopping the workers): each
        // worker then takes what is queued on its socket before closing the
        // last copy, and later clients are refused at once instead of
        // queueing until the arbiter exits and being reset then.
        for l in &mut self.listeners {
            l.close_fds();
        }
        self.signal_workers(sig);
        let deadline = Instant::now() + Duration::from_secs(self.cfg.graceful_timeout as u64);
        while !self.children.is_empty() && Instant::now() < deadline {
            let mut watch = Vec::new();
            let ms = self.monitor_interests(&mut watch, 100);
            let signals = &self.signals;
            py.detach(|| signals.wait_with(&watch, ms));
            self.serve_monitor();
            for s in self.signals.drain() {
                if matches!(s, Signal::SIGINT | Signal::SIGQUIT) && sig == Signal::SIGTERM {
                    sig = Signal::SIGQUIT;
                    self.signal_workers(sig);
                }
            }
            while let Some((pid, _)) = process::reap_any() {
                if self.children.iter().any(|c| c.pid == pid) {
                    let _ = hooks::call_child_exit(
                        py,
                        &self.server_info(),
                        &self.worker_info(pid.as_raw() as u32, 0),
                    );
                }
                self.children.retain(|c| c.pid != pid);
            }
        }
        for c in &self.children {
            crate::warn!(
                "Killing worker (pid:{}) still running after the graceful timeout",
                c.pid
            );
            process::send_signal(c.pid, Signal::SIGKILL);
        }
        while !self.children.is_empty() {
            match nix::sys::wait::waitpid(None, None) {
                Ok(status) => {
                    if let Some(pid) = status.pid() {
                        self.children.retain(|c| c.pid != pid);
                    }
                }
                Err(_) => break,
            }
        }
        crate::info!("Shutting down: Master");
        let _ = hooks::call_on_exit(py, &self.server_info());
        crate::log::flush();
        code
    }
}

/// The TLS configuration when TLS is on; a bad certificate, key or setting
/// is an error naming the file.
fn load_tls(cfg: &Config) -> Result<Option<crate::tls::TlsConfig>, String> {
    if !cfg.tls.is_enabled() {
        return Ok(None);
    }
    crate::tls::TlsConfig::load(&cfg.tls)
        .map(Some)
        .map_err(|e| e.to_string())
}

pub fn signal_name(sig: Signal) -> String {
    sig.as_str().trim_start_matches("SIG").to_ascii_lowercase()
}

/// `-D/--daemon`: detach from the terminal (fork, setsid, fork) before
/// anything is bound, with stdio on /dev/null.
pub fn daemonize(py: Python<'_>) {
    let _ = py.run(
        c"import sys\nsys.stdout.flush()\nsys.stderr.flush()",
        None,
        None,
    );
    for step in 0..2 {
        // SAFETY: nothing has started a thread yet and `py` is the
        // interpreter lock; the parent leaves with `exit_now`.
        #[allow(unsafe_code)]
        let forked = unsafe { process::fork(&python_fork_hooks()) };
        match forked {
            Ok(Forked::Parent(_)) => process::exit_now(0),
            Ok(Forked::Child) => {}
            Err(e) => {
                crate::error!("Cannot daemonize: {e}");
                process::exit_now(1);
            }
        }
        if step == 0 {
            let _ = nix::unistd::setsid();
        }
    }
    if let Err(e) = process::redirect_stdio_to_null() {
        crate::error!("Cannot detach from the terminal: {e}");
    }
}
