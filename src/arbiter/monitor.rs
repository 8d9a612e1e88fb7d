//! Watching the workers: reaping the ones that ended, killing the silent,
//! and the state the metrics endpoint and /readyz report.

use super::*;

impl Arbiter {
    /// Add the monitor's descriptors to `watch`; returns `ms` shortened to
    /// the nearest client deadline.
    pub(super) fn monitor_interests(&self, watch: &mut Vec<Interest>, ms: u16) -> u16 {
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
    pub(super) fn serve_monitor(&mut self) {
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

    pub(super) fn snapshot(&self) -> metrics::Snapshot {
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
    pub(super) fn not_ready(&self) -> Option<String> {
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

    pub(super) fn status(&self, child: &Child) -> Option<&shm::Status> {
        self.table.get(child.entry)
    }

    /// Reap exited workers. Returns an exit code when a worker failed to
    /// boot or load the app and no older worker can keep serving, which
    /// stops the server.
    pub(super) fn reap(&mut self, py: Python<'_>) -> Option<i32> {
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
    pub(super) fn murder_silent(&mut self) {
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
}
