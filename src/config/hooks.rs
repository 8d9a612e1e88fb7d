//! The hook registry: which of gunicorn's server hooks the config file set,
//! as in gunicorn's `config.py`. Calling them is `hooks/`'s job.

/// Each server hook, in gunicorn's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    OnStarting,
    OnReload,
    WhenReady,
    PreFork,
    PostFork,
    PostWorkerInit,
    WorkerInt,
    WorkerAbort,
    PreExec,
    PreRequest,
    PostRequest,
    ChildExit,
    WorkerExit,
    NworkersChanged,
    OnExit,
}

impl Hook {
    pub const ALL: [Hook; 15] = [
        Hook::OnStarting,
        Hook::OnReload,
        Hook::WhenReady,
        Hook::PreFork,
        Hook::PostFork,
        Hook::PostWorkerInit,
        Hook::WorkerInt,
        Hook::WorkerAbort,
        Hook::PreExec,
        Hook::PreRequest,
        Hook::PostRequest,
        Hook::ChildExit,
        Hook::WorkerExit,
        Hook::NworkersChanged,
        Hook::OnExit,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Hook::OnStarting => "on_starting",
            Hook::OnReload => "on_reload",
            Hook::WhenReady => "when_ready",
            Hook::PreFork => "pre_fork",
            Hook::PostFork => "post_fork",
            Hook::PostWorkerInit => "post_worker_init",
            Hook::WorkerInt => "worker_int",
            Hook::WorkerAbort => "worker_abort",
            Hook::PreExec => "pre_exec",
            Hook::PreRequest => "pre_request",
            Hook::PostRequest => "post_request",
            Hook::ChildExit => "child_exit",
            Hook::WorkerExit => "worker_exit",
            Hook::NworkersChanged => "nworkers_changed",
            Hook::OnExit => "on_exit",
        }
    }

    pub fn from_name(name: &str) -> Option<Hook> {
        Hook::ALL.into_iter().find(|h| h.name() == name)
    }
}

/// A Python callable (only with the `python` feature; without it no hook can be set).
#[cfg(feature = "python")]
pub type Callable = pyo3::Py<pyo3::PyAny>;
#[cfg(not(feature = "python"))]
#[derive(Debug)]
pub enum Callable {}

/// The hooks a config file set, with the number of positional parameters
/// each takes (post_request may take 2, 3 or 4).
#[derive(Default)]
pub struct Hooks {
    slots: [Option<(Callable, usize)>; 15],
}

impl Hooks {
    pub fn set(&mut self, hook: Hook, f: Callable, arity: usize) {
        self.slots[hook as usize] = Some((f, arity));
    }

    #[inline]
    pub fn get(&self, hook: Hook) -> Option<&(Callable, usize)> {
        self.slots[hook as usize].as_ref()
    }

    #[inline]
    pub fn is_set(&self, hook: Hook) -> bool {
        self.slots[hook as usize].is_some()
    }

    /// The names of the hooks that are set.
    pub fn names(&self) -> Vec<&'static str> {
        Hook::ALL
            .into_iter()
            .filter(|h| self.is_set(*h))
            .map(Hook::name)
            .collect()
    }
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.names()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::settings::{find, Kind};

    #[test]
    fn every_hook_is_a_hook_row_in_the_settings_table() {
        for h in Hook::ALL {
            let (_, s) = find(h.name()).unwrap();
            assert!(matches!(s.kind, Kind::Hook { .. }), "{}", h.name());
            assert_eq!(Hook::from_name(h.name()), Some(h));
            assert_eq!(Hook::ALL[h as usize], h);
        }
    }

    #[test]
    fn empty_hooks_report_nothing_set() {
        let h = Hooks::default();
        assert!(!h.is_set(Hook::PreRequest));
        assert!(h.names().is_empty());
    }
}
