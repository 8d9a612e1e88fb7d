//! The arbiter (master process): owns the listeners, forks one pinned
//! worker per slot, reaps and replaces them, kills the silent, and turns
//! signals into actions. It never touches a client socket. Its loop reads
//! like a checklist: wait (at most a second) → dispatch signals → reap →
//! kill the silent → fix the workers.

// `deny`, not `forbid`: the fork calls (spawn.rs, upgrade.rs) are the
// arbiter's only unsafe code, each allowed where it is made.
#![deny(unsafe_code)]

mod control;
mod listeners;
mod monitor;
mod reload;
mod spawn;
mod upgrade;

pub use listeners::Listener;
pub use spawn::daemonize;

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

use spawn::{load_tls, mask_signals, preload, python_fork_hooks};
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
/// After the stack dump signal, this long to write it before SIGKILL:
/// resolving every thread's frames reads the binary's debug information,
/// which takes seconds on a loaded machine.
const DUMP_GRACE: Duration = Duration::from_secs(5);
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

pub fn signal_name(sig: Signal) -> String {
    sig.as_str().trim_start_matches("SIG").to_ascii_lowercase()
}
