//! Binary upgrade (USR2) and the pidfile.
//!
//! USR2 forks and execs a new arbiter from the same interpreter and command
//! line; it inherits every listening socket (`FERROCORN_FDS`) and learns the
//! old arbiter's pid (`FERROCORN_PID`). Both serve until the old one is
//! stopped; the new one notices its parent is gone, says it was promoted,
//! and renames its pidfile `<name>.2` to `<name>`.

use std::io;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;

use nix::sys::signal::SigmaskHow;
use nix::unistd::Pid;
use pyo3::prelude::*;

use super::listeners::{Listener, FDS_ENV};
use super::mask_signals;
use crate::sys::process::{self, ForkHooks, Forked};
use crate::sys::socket;

/// The old arbiter's pid, in a new arbiter started by USR2.
const PID_ENV: &str = "FERROCORN_PID";

pub struct Upgrade {
    /// `sys.executable` and `sys.orig_argv`: how to start the same server again.
    executable: String,
    orig_argv: Vec<String>,
    start_cwd: PathBuf,
    /// The new arbiter this one started on USR2, while it runs.
    child: Option<Pid>,
    /// This arbiter was started by USR2 from this one, until promoted.
    parent: Option<Pid>,
    inherited: bool,
}

impl Upgrade {
    pub fn detect(py: Python<'_>, start_cwd: PathBuf) -> PyResult<Upgrade> {
        let sys = py.import("sys")?;
        let executable: String = sys.getattr("executable")?.extract()?;
        let orig_argv: Vec<String> = sys.getattr("orig_argv")?.extract()?;
        let inherited = std::env::var_os(FDS_ENV).is_some();
        let parent = std::env::var(PID_ENV)
            .ok()
            .and_then(|p| p.parse::<i32>().ok())
            .map(Pid::from_raw)
            .filter(|p| *p == nix::unistd::getppid());
        std::env::remove_var(PID_ENV);
        Ok(Upgrade {
            executable,
            orig_argv,
            start_cwd,
            child: None,
            parent,
            inherited,
        })
    }

    pub fn is_new_master(&self) -> bool {
        self.parent.is_some()
    }

    pub fn inherited_listeners(&self) -> usize {
        usize::from(self.inherited)
    }

    pub fn child(&self) -> Option<Pid> {
        self.child
    }

    /// The old arbiter is gone: this one takes over its name and pidfile.
    pub fn maybe_promote(&mut self, pidfile: Option<&mut Pidfile>) -> bool {
        let Some(parent) = self.parent else {
            return false;
        };
        if nix::unistd::getppid() == parent {
            return false;
        }
        self.parent = None;
        crate::info!("Master has been promoted.");
        if let Some(p) = pidfile {
            p.promote();
        }
        true
    }

    /// Is `pid` the new arbiter started by USR2? (It exited.)
    pub fn reaped(&mut self, pid: Pid) -> bool {
        if self.child == Some(pid) {
            crate::warn!("The new master (pid:{pid}) exited; this master keeps serving");
            self.child = None;
            return true;
        }
        false
    }

    pub fn reexec(
        &mut self,
        py: Python<'_>,
        listeners: &[Listener],
        hooks: &ForkHooks,
        server: &crate::hooks::ServerInfo<'_>,
    ) -> io::Result<()> {
        if let Some(child) = self.child {
            crate::warn!("USR2 ignored: a new master (pid:{child}) is already running");
            return Ok(());
        }
        if self.parent.is_some() {
            crate::warn!("USR2 ignored: this master is an upgrade that has not been promoted yet");
            return Ok(());
        }
        let spec = Listener::handover_spec(listeners);
        let me = std::process::id().to_string();
        let _ = py.run(
            c"import sys\nsys.stdout.flush()\nsys.stderr.flush()",
            None,
            None,
        );
        mask_signals(SigmaskHow::SIG_BLOCK);
        // SAFETY: the arbiter runs on one thread and holds the interpreter
        // lock (`py`); the child leaves by exec or `exit_now`.
        #[allow(unsafe_code)]
        let forked = unsafe { process::fork(hooks) };
        match forked {
            Ok(Forked::Child) => {
                let _ = crate::hooks::call_pre_exec(py, server);
                for fd in listeners.iter().flat_map(Listener::sockets) {
                    let _ = socket::set_inheritable(fd);
                }
                let _ = std::env::set_current_dir(&self.start_cwd);
                let err = std::process::Command::new(&self.executable)
                    .args(self.orig_argv.iter().skip(1))
                    .env(FDS_ENV, &spec)
                    .env(PID_ENV, &me)
                    .exec();
                crate::error!("Cannot exec {}: {err}", self.executable);
                process::exit_now(1);
            }
            Ok(Forked::Parent(pid)) => {
                mask_signals(SigmaskHow::SIG_UNBLOCK);
                crate::info!("Started a new master (pid:{pid}) with the same listeners (USR2)");
                self.child = Some(pid);
                Ok(())
            }
            Err(e) => {
                mask_signals(SigmaskHow::SIG_UNBLOCK);
                Err(e)
            }
        }
    }
}

/// `-p/--pid`: the arbiter's pid in a file; `<name>.2` for a new arbiter
/// until it is promoted.
pub struct Pidfile {
    path: PathBuf,
    written: PathBuf,
}

impl Pidfile {
    pub fn create(path: &str, new_master: bool) -> io::Result<Pidfile> {
        let path = PathBuf::from(path);
        let written = if new_master {
            PathBuf::from(format!("{}.2", path.display()))
        } else {
            path.clone()
        };
        std::fs::write(&written, format!("{}\n", std::process::id()))?;
        Ok(Pidfile { path, written })
    }

    fn promote(&mut self) {
        if self.written != self.path {
            if let Err(e) = std::fs::rename(&self.written, &self.path) {
                crate::error!(
                    "Cannot rename the pidfile {} to {}: {e}",
                    self.written.display(),
                    self.path.display()
                );
                return;
            }
            self.written = self.path.clone();
        }
    }

    /// Remove the file if it still names this process.
    pub fn remove(&self) {
        let mine = std::fs::read_to_string(&self.written)
            .map(|s| s.trim() == std::process::id().to_string())
            .unwrap_or(false);
        if mine {
            let _ = std::fs::remove_file(&self.written);
        }
    }
}
