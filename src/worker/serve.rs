//! The loop: wait for events, run what became ready, keep the timers
//! (keep-alive, linger, slow clients), and stop on signals.

use std::time::Instant;

use nix::sys::signal::Signal;
use pyo3::prelude::*;

use crate::engine::{ConnId, Event};
use crate::http;
use crate::sys::shm;
use crate::sys::signal;

use super::*;

impl Worker<'_> {
    pub(super) fn serve(&mut self, py: Python<'_>) -> Exit {
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
            let engine = &mut self.engine;
            let state = &mut self.state;
            // One clock read for the whole batch: its events are simultaneous.
            let mut at = None;
            let waited = {
                let mut on_event = |ev: Event<'_>| {
                    let now = *at.get_or_insert_with(Instant::now);
                    state.on_event(ev, now);
                };
                // What needs no sleep (output written, bytes already read)
                // is delivered holding the interpreter lock: a turn that
                // ends there costs no release and retake of it.
                if engine.deliver(&mut on_event) {
                    Ok(())
                } else {
                    let timeout = next_sweep.saturating_duration_since(Instant::now());
                    py.detach(|| engine.wait(Some(timeout), &mut on_event))
                }
            };
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
    pub(super) fn check_reload(&mut self, py: Python<'_>) {
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
    pub(super) fn check_rss(&mut self) {
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
            "Autorestarting worker (pid:{}): resident memory {:.1} MiB is over --max-worker-rss {} MiB",
            std::process::id(),
            rss as f64 / (1 << 20) as f64,
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

    pub(super) fn begin_stop(&mut self) {
        if self.stopping.is_none() {
            self.stopping = Some(Instant::now());
            self.engine.close_accept();
            self.accept_paused = true;
            // Our copy of each listener goes, so a slot the arbiter gave up
            // (fewer workers) stops receiving connections nobody will accept.
            self.listener_fds.clear();
            self.shutdown_h2();
        }
    }

    pub(super) fn manage_accept(&mut self) {
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

    /// Close connections whose time is up: lingering ones, idle kept-alive
    /// ones, and ones stalled in the middle of a request.
    pub(super) fn sweep(&mut self, py: Python<'_>, now: Instant) {
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
                Phase::Open
                    if c.stream.is_none()
                        && c.inflight.is_none()
                        && c.h2.is_none()
                        && c.queued == 0 =>
                {
                    // In the middle of receiving a request.
                    let late = if c.http.skipping_body() {
                        // An unread body being dropped (`sweep_uploads`).
                        false
                    } else if c.http.reading_body() {
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
            self.sweep_uploads(py, now);
        }
        self.sweep_h2(py, now);
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
