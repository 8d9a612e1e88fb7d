//! HUP (reload the configuration, replace every worker) and USR2 (re-exec
//! the binary beside the running master).

use super::*;

impl Arbiter {
    /// HUP: read the command line again, start a new generation of
    /// workers, and retire each old worker once its successor is ready.
    pub(super) fn reload(&mut self, py: Python<'_>) {
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
    pub(super) fn reexec(&mut self, py: Python<'_>) {
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
}
