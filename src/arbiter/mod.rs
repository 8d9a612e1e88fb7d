//! The arbiter (master process): binds the listeners, forks one pinned
//! worker per slot, reaps and replaces them, and turns signals into actions.
//! It never touches a client socket. Its loop reads like a checklist:
//! wait for a signal (at most a second) → dispatch signals → reap → fix the
//! worker count.

#![forbid(unsafe_code)]

mod listeners;

pub use listeners::{Listener, SlotListener};

use std::time::{Duration, Instant};

use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::unistd::Pid;
use pyo3::prelude::*;

use crate::config::Config;
use crate::sys::affinity;
use crate::sys::process::{self, ChildExit, ForkHooks, Forked};
use crate::sys::signal::SignalPipe;

/// A worker could not start (exit code; the arbiter stops instead of restarting it forever).
pub const WORKER_BOOT_ERROR: i32 = 3;
/// A worker could not import the application.
pub const APP_LOAD_ERROR: i32 = 4;

/// The signals the arbiter handles; workers reset them.
pub const SIGNALS: &[Signal] = &[
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGTTIN,
    Signal::SIGTTOU,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
    Signal::SIGCHLD,
];

/// Longest wait between two housekeeping rounds.
const LOOP_WAIT_MS: u16 = 1000;
/// A worker that dies sooner than this after its start is restarted with a growing delay.
const QUICK_DEATH: Duration = Duration::from_secs(1);
const MAX_RESPAWN_DELAY: Duration = Duration::from_secs(5);

struct Child {
    pid: Pid,
    slot: usize,
    started: Instant,
    /// Sent TERM (retired by TTOU or a reload): not counted for its slot.
    retiring: bool,
}

#[derive(Default, Clone, Copy)]
struct SlotState {
    quick_deaths: u32,
    not_before: Option<Instant>,
}

enum Stop {
    Graceful,
    Quick,
}

pub struct Arbiter {
    cfg: Config,
    listeners: Vec<Listener>,
    children: Vec<Child>,
    slots: Vec<SlotState>,
    num_workers: usize,
    cpus: Vec<usize>,
    signals: SignalPipe,
}

fn python_fork_hooks() -> ForkHooks {
    ForkHooks {
        before: pyo3::ffi::PyOS_BeforeFork,
        after_parent: pyo3::ffi::PyOS_AfterFork_Parent,
        after_child: pyo3::ffi::PyOS_AfterFork_Child,
    }
}

fn block_signals(how: SigmaskHow) {
    let mut set = SigSet::empty();
    for &s in SIGNALS {
        set.add(s);
    }
    let _ = nix::sys::signal::sigprocmask(how, Some(&set), None);
}

impl Arbiter {
    /// Bind every listener; errors here stop the server before any fork.
    pub fn new(cfg: Config) -> Result<Arbiter, String> {
        let listeners = Listener::bind_all(&cfg).map_err(|e| e.to_string())?;
        let signals = SignalPipe::install(SIGNALS)
            .map_err(|e| format!("cannot install signal handlers: {e}"))?;
        let mut cpus = affinity::allowed_cpus();
        if cpus.is_empty() {
            cpus.push(0);
        }
        let num_workers = cfg.workers;
        Ok(Arbiter {
            cfg,
            listeners,
            children: Vec::new(),
            slots: Vec::new(),
            num_workers,
            cpus,
            signals,
        })
    }

    /// Run until stopped; returns the process exit code.
    pub fn run(&mut self, py: Python<'_>) -> i32 {
        crate::info!("Starting ferrocorn {}", crate::VERSION);
        for l in &self.listeners {
            crate::info!("Listening at: {} ({})", l.display(), std::process::id());
        }
        crate::info!(
            "Using worker: ferrocorn (io engine {}), {} worker(s)",
            match self.cfg.io_engine {
                crate::engine::EngineChoice::Auto => "auto",
                crate::engine::EngineChoice::Uring => "uring",
                crate::engine::EngineChoice::Epoll => "epoll",
            },
            self.num_workers
        );
        let code = loop {
            self.manage_workers(py);
            let signals = &self.signals;
            py.detach(|| signals.wait(LOOP_WAIT_MS));
            let mut stop = None;
            for sig in self.signals.drain() {
                if sig != Signal::SIGCHLD {
                    crate::info!("Handling signal: {}", signal_name(sig));
                }
                match sig {
                    Signal::SIGTERM => stop = Some(Stop::Graceful),
                    Signal::SIGINT | Signal::SIGQUIT => stop = Some(Stop::Quick),
                    Signal::SIGTTIN => self.num_workers += 1,
                    Signal::SIGTTOU => self.decrease_workers(),
                    Signal::SIGHUP => self.reload(),
                    Signal::SIGUSR1 => self.signal_workers(Signal::SIGUSR1),
                    Signal::SIGCHLD => {}
                    other => {
                        crate::info!("Ignoring signal {} (not supported yet)", signal_name(other))
                    }
                }
            }
            if let Some(how) = stop {
                break self.stop(py, how, 0);
            }
            if let Some(code) = self.reap() {
                let reason = if code == APP_LOAD_ERROR {
                    "App failed to load."
                } else {
                    "Worker failed to boot."
                };
                crate::error!("Shutting down: Master");
                crate::error!("Reason: {reason}");
                break self.stop(py, Stop::Graceful, code);
            }
        };
        for l in &self.listeners {
            l.unlink();
        }
        code
    }

    fn live(&self) -> impl Iterator<Item = &Child> {
        self.children.iter().filter(|c| !c.retiring)
    }

    /// Start workers for empty slots (respecting the crash back-off).
    fn manage_workers(&mut self, py: Python<'_>) {
        if self.slots.len() < self.num_workers {
            self.slots.resize(self.num_workers, SlotState::default());
        }
        let now = Instant::now();
        for slot in 0..self.num_workers {
            if self.live().any(|c| c.slot == slot) {
                continue;
            }
            if self.slots[slot].not_before.is_some_and(|t| t > now) {
                continue;
            }
            self.spawn(py, slot);
        }
        // Too many (after TTOU): retire the oldest first.
        let mut live: Vec<(Instant, Pid, usize)> =
            self.live().map(|c| (c.started, c.pid, c.slot)).collect();
        live.sort();
        let excess = live.len().saturating_sub(self.num_workers);
        for (_, pid, _) in live.into_iter().take(excess) {
            self.retire(pid);
        }
    }

    fn retire(&mut self, pid: Pid) {
        if let Some(c) = self.children.iter_mut().find(|c| c.pid == pid) {
            c.retiring = true;
            process::send_signal(pid, Signal::SIGTERM);
        }
    }

    fn decrease_workers(&mut self) {
        if self.num_workers > 1 {
            self.num_workers -= 1;
            // The highest slot goes; its worker is retired by manage_workers.
            let gone: Vec<Pid> = self
                .live()
                .filter(|c| c.slot >= self.num_workers)
                .map(|c| c.pid)
                .collect();
            for pid in gone {
                self.retire(pid);
            }
        }
    }

    /// HUP: start a fresh generation of workers, then retire the old one.
    fn reload(&mut self) {
        let old: Vec<Pid> = self.live().map(|c| c.pid).collect();
        for pid in old {
            self.retire(pid);
        }
    }

    fn signal_workers(&self, sig: Signal) {
        for c in &self.children {
            process::send_signal(c.pid, sig);
        }
    }

    fn spawn(&mut self, py: Python<'_>, slot: usize) {
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
        // Signals stay blocked across fork so a signal meant for the new
        // worker cannot run the arbiter's handler in it.
        block_signals(SigmaskHow::SIG_BLOCK);
        match process::fork(&python_fork_hooks()) {
            Ok(Forked::Child) => {
                let code = crate::worker::run(py, &self.cfg, slot, cpu, slot_listeners);
                process::exit_now(code);
            }
            Ok(Forked::Parent(pid)) => {
                block_signals(SigmaskHow::SIG_UNBLOCK);
                crate::info!("Booting worker with pid: {pid} (slot {slot}, cpu {cpu})");
                self.children.push(Child {
                    pid,
                    slot,
                    started: Instant::now(),
                    retiring: false,
                });
            }
            Err(e) => {
                block_signals(SigmaskHow::SIG_UNBLOCK);
                crate::error!("Cannot fork a worker: {e}");
                self.slots[slot].not_before = Some(Instant::now() + MAX_RESPAWN_DELAY);
            }
        }
    }

    /// Reap exited workers. Returns an exit code when a worker failed to
    /// boot or load the app, which stops the server.
    fn reap(&mut self) -> Option<i32> {
        let mut halt = None;
        while let Some((pid, how)) = process::reap_any() {
            let Some(i) = self.children.iter().position(|c| c.pid == pid) else {
                continue; // not one of ours (e.g. running as PID 1)
            };
            let child = self.children.swap_remove(i);
            match how {
                ChildExit::Code(0) => crate::info!("Worker exiting (pid: {pid})"),
                ChildExit::Code(code @ (WORKER_BOOT_ERROR | APP_LOAD_ERROR)) => {
                    crate::error!("Worker (pid:{pid}) exited with code {code}");
                    halt = Some(code);
                }
                ChildExit::Code(code) => {
                    crate::error!("Worker (pid:{pid}) exited with code {code}")
                }
                ChildExit::Signal(Signal::SIGKILL) => {
                    crate::error!("Worker (pid:{pid}) was sent SIGKILL! Perhaps out of memory?")
                }
                ChildExit::Signal(Signal::SIGTERM) if child.retiring => {}
                ChildExit::Signal(sig) => {
                    crate::warn!("Worker (pid:{pid}) was sent {}!", signal_name(sig))
                }
            }
            if !child.retiring && child.slot < self.slots.len() {
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

    /// Stop every worker (TERM for graceful, QUIT for quick), wait up to
    /// the graceful timeout, then kill what is left.
    fn stop(&mut self, py: Python<'_>, how: Stop, code: i32) -> i32 {
        let mut sig = match how {
            Stop::Graceful => Signal::SIGTERM,
            Stop::Quick => Signal::SIGQUIT,
        };
        self.signal_workers(sig);
        let deadline = Instant::now() + Duration::from_secs(self.cfg.graceful_timeout as u64);
        while !self.children.is_empty() && Instant::now() < deadline {
            let signals = &self.signals;
            py.detach(|| signals.wait(100));
            for s in self.signals.drain() {
                if matches!(s, Signal::SIGINT | Signal::SIGQUIT) && sig == Signal::SIGTERM {
                    sig = Signal::SIGQUIT;
                    self.signal_workers(sig);
                }
            }
            while let Some((pid, _)) = process::reap_any() {
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
        code
    }
}

pub fn signal_name(sig: Signal) -> String {
    sig.as_str().trim_start_matches("SIG").to_ascii_lowercase()
}
