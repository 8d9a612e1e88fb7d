//! Starting workers: the preloaded app, the fork, the hooks around it,
//! and keeping the number of workers right.

use super::*;

/// `--preload`: import the app here, once, before any fork; every worker
/// inherits the object (and the memory of what it imported) copy-on-write.
pub(super) fn preload(py: Python<'_>, cfg: &Config) -> Result<Py<PyAny>, String> {
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
pub(super) fn python_thread_names(py: Python<'_>) -> String {
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

pub(super) fn python_fork_hooks() -> ForkHooks {
    ForkHooks {
        before: pyo3::ffi::PyOS_BeforeFork,
        after_parent: pyo3::ffi::PyOS_AfterFork_Parent,
        after_child: pyo3::ffi::PyOS_AfterFork_Child,
    }
}

pub(super) fn mask_signals(how: SigmaskHow) {
    let mut set = SigSet::empty();
    for &s in ARBITER_SIGNALS {
        set.add(s);
    }
    let _ = nix::sys::signal::sigprocmask(how, Some(&set), None);
}

impl Arbiter {
    pub(super) fn set_workers(&mut self, py: Python<'_>, n: usize) {
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
    pub(super) fn manage_workers(&mut self, py: Python<'_>) {
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
            // and the newest booting one still have a job (serving, or
            // becoming able to, until a successor is ready): older ones go
            // at once, so repeated HUPs do not pile workers up. A booting
            // one stays because the reload may fail: then it is the slot's
            // only worker with code that loads.
            let newer_replaced = |ready: bool| {
                self.children.iter().any(|d| {
                    d.slot == c.slot
                        && d.replaced
                        && !d.retiring
                        && d.started > c.started
                        && (!ready || self.status(d).is_some_and(|s| s.is_ready()))
                })
            };
            let booting = || !self.status(c).is_some_and(|s| s.is_ready());
            let superseded = || {
                if booting() {
                    newer_replaced(false)
                } else {
                    newer_replaced(true)
                }
            };
            if c.slot >= self.num_workers || (c.replaced && (successor_ready() || superseded())) {
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

    pub(super) fn retire(&mut self, pid: Pid) {
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

    pub(super) fn signal_workers(&self, sig: Signal) {
        for c in &self.children {
            process::send_signal(c.pid, sig);
        }
    }

    pub(super) fn spawn(&mut self, py: Python<'_>, slot: usize) {
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
}

/// The TLS configuration when TLS is on; a bad certificate, key or setting
/// is an error naming the file.
pub(super) fn load_tls(cfg: &Config) -> Result<Option<crate::tls::TlsConfig>, String> {
    if !cfg.tls.is_enabled() {
        return Ok(None);
    }
    crate::tls::TlsConfig::load(&cfg.tls)
        .map(Some)
        .map_err(|e| e.to_string())
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
