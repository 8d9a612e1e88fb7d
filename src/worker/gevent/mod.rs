//! `-k gevent`: the app runs as greenlets on a gevent hub, one greenlet per
//! request, at most `--worker-connections` at a time.
//!
//! ```text
//! io thread (the loop: engine, parsing, encoding)
//!   │ submit(Job) ──▶ Inbox + eventfd ──▶ hub (main thread): io watcher
//!   │                                      └─ greenlet per request: threads::answer
//!   ◀──────────── Mailbox (Head, Data, End, Failed) ◀──┘
//! ```
//!
//! gevent patches the standard library on the worker's main thread before
//! the app is imported (as gunicorn's GeventWorker does), so the hub runs
//! there and the loop moves to a thread of its own, which opens the io
//! engine. Both take the interpreter lock in turn; the hub lets it go while
//! it waits in its own loop. Signals stay with the loop's signal pipe; the
//! only Python handler (SIGABRT at `--timeout`) runs on the main thread,
//! which the hub keeps running Python.
//!
//! A greenlet waits for a slow client by yielding to the hub (`bridge.rs`),
//! never by blocking the thread. The hub beats four times a second; the loop
//! reports the older of its own turn and that beat, so a hub blocked by
//! CPU-bound code gets the worker replaced at `--timeout`, and the abort
//! handler logs every greenlet's stack.
//!
//! Per request it runs what app threads run (`threads::answer`).

mod bridge;

use std::sync::Arc;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyModule;

use super::threads;
use super::Exit;
use crate::config::Config;
use crate::handoff::{Job, Mailbox, Runner};
use crate::wsgi::WsgiApp;

use bridge::{Bridge, GreenletPark, Inbox};

/// The gevent side, compiled into the extension and loaded from here only
/// (as `ferrocorn._gevent`).
const GLUE: &str = include_str!("glue.py");
/// The glue's file name in tracebacks.
const GLUE_FILE: &str = "ferrocorn/_gevent.py";

/// The name the start-up error gives, with the way to get it.
const NEEDS: &str = "-k gevent needs the gevent package (pip install gevent)";

/// Whether gevent can be imported (`--check-config`), without patching.
pub(super) fn check_installed(py: Python<'_>) -> Result<(), String> {
    py.import("gevent")
        .map(drop)
        .map_err(|e| format!("{NEEDS}: {}", crate::py::exception_text(py, &e).trim_end()))
}

/// Patch the standard library as gunicorn's GeventWorker does
/// (`monkey.patch_all()` with its defaults), then make the hub fit for
/// this forked process. Call on the main thread, before the app import.
pub(super) fn patch(py: Python<'_>) -> Result<(), String> {
    check_installed(py)?;
    py.run(
        c"from gevent import monkey, hub\nmonkey.patch_all()\nhub.reinit()",
        None,
        None,
    )
    .map_err(|e| {
        format!(
            "gevent could not patch the standard library:\n{}",
            crate::py::exception_text(py, &e).trim_end()
        )
    })
}

/// The app side as the loop sees it: jobs go into the inbox.
pub(super) struct GeventRunner {
    inbox: Arc<Inbox>,
}

impl Runner for GeventRunner {
    fn submit(&self, job: Job) {
        self.inbox.push_job(job);
    }

    fn backlog(&self) -> usize {
        self.inbox.backlog()
    }

    /// Ask the hub to stop once the requests still running finished, for
    /// at most `timeout`. The hub runs on the main thread, which returns
    /// from `serve` when it has.
    fn stop(&mut self, timeout: Duration) {
        self.inbox.request_stop(timeout);
    }

    fn alive_at_ms(&self) -> Option<u64> {
        Some(self.inbox.beat_ms())
    }
}

/// The hub, ready to run on this (the main) thread.
pub(super) struct Hub {
    server: Py<PyAny>,
    inbox: Arc<Inbox>,
}

/// Set up the hub for `app`: the glue, its io watcher and heartbeat, the
/// mailbox the greenlets answer through. Call on the main thread, after
/// `patch`.
pub(super) fn start(
    py: Python<'_>,
    cfg: &Config,
    app: Arc<WsgiApp>,
    opts: threads::Options,
) -> Result<(GeventRunner, Hub, Arc<Mailbox>), String> {
    let err = |e: PyErr| crate::py::exception_text(py, &e);
    let glue = load_glue(py).map_err(err)?;
    let mailbox = Arc::new(Mailbox::new().map_err(|e| format!("cannot create the mailbox: {e}"))?);
    let inbox = Arc::new(Inbox::new().map_err(|e| format!("cannot create the eventfd: {e}"))?);
    let wait = glue.getattr("wait").map_err(err)?.unbind();
    let park = Arc::new(GreenletPark::new(inbox.clone(), wait));
    // The pool's size (--worker-connections) comes as the number of tasks.
    let size = opts.threads.max(1);
    let shared = threads::Shared::new(cfg, app, mailbox.clone(), &opts, park);
    let bridge = Py::new(py, Bridge::new(inbox.clone(), shared)).map_err(err)?;
    let server = glue
        .getattr("Hub")
        .and_then(|hub| hub.call1((bridge, size)))
        .map_err(err)?
        .unbind();
    let version = py
        .import("gevent")
        .and_then(|g| g.getattr("__version__"))
        .and_then(|v| v.extract::<String>())
        .unwrap_or_else(|_| "?".into());
    crate::info!("Requests run as greenlets on the gevent {version} hub, at most {size} at a time");
    let runner = GeventRunner {
        inbox: inbox.clone(),
    };
    Ok((runner, Hub { server, inbox }, mailbox))
}

fn load_glue(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    let code = std::ffi::CString::new(GLUE)?;
    let file = std::ffi::CString::new(GLUE_FILE)?;
    let glue = PyModule::from_code(py, &code, &file, c"ferrocorn._gevent")?;
    // Tracebacks and greenlet stacks through the glue show its lines.
    let lines: Vec<&str> = GLUE.split_inclusive('\n').collect();
    py.import("linecache")?
        .getattr("cache")?
        .set_item(GLUE_FILE, (GLUE.len(), py.None(), lines, GLUE_FILE))?;
    Ok(glue)
}

/// Run `serve_loop` (the worker's loop, which opens the io engine) on a
/// thread of its own and the hub on this one, until both have stopped.
pub(super) fn serve<F>(py: Python<'_>, hub: Hub, serve_loop: F) -> Exit
where
    F: FnOnce(Python<'_>) -> Exit + Send,
{
    let inbox = hub.inbox.clone();
    std::thread::scope(|s| {
        let io = std::thread::Builder::new()
            .name("io".into())
            .spawn_scoped(s, || {
                // However the loop ends (a panic too), the hub must not wait
                // for it forever; the loop asks first with the graceful time.
                let _stop = StopHub(&inbox);
                Python::attach(serve_loop)
            });
        let io = match io {
            Ok(io) => io,
            Err(e) => {
                crate::error!("Worker failed to boot: cannot start the io thread: {e}");
                return Exit::BootError;
            }
        };
        if let Err(e) = hub.server.bind(py).call_method0("run") {
            crate::error!(
                "The gevent hub failed; the worker stops:\n{}",
                crate::py::exception_text(py, &e)
            );
            // Nobody answers requests now: the loop stops as on SIGQUIT.
            crate::sys::process::send_signal(
                nix::unistd::getpid(),
                nix::sys::signal::Signal::SIGQUIT,
            );
        }
        py.detach(|| io.join()).unwrap_or_else(|_| {
            crate::error!("The worker's io thread panicked");
            Exit::Stopped
        })
    })
}

/// Asks the hub to stop at once when dropped (a stop asked before wins).
struct StopHub<'a>(&'a Inbox);

impl Drop for StopHub<'_> {
    fn drop(&mut self) {
        self.0.request_stop(Duration::ZERO);
    }
}

/// Every greenlet's stack to the error log (a worker aborted at
/// `--timeout`; faulthandler writes the threads'); runs in the signal
/// handler on the main thread.
pub(super) fn log_greenlets(py: Python<'_>) {
    let stacks = (|| -> PyResult<String> {
        let kwargs = pyo3::types::PyDict::new(py);
        kwargs.set_item("thread_stacks", false)?;
        let lines = py
            .import("gevent.util")?
            .getattr("format_run_info")?
            .call((), Some(&kwargs))?;
        Ok(lines.extract::<Vec<String>>()?.join("\n"))
    })();
    match stacks {
        Ok(text) => crate::error!("The greenlets' stacks follow:\n{text}"),
        Err(e) => crate::error!(
            "Cannot list the greenlets' stacks:\n{}",
            crate::py::exception_text(py, &e)
        ),
    }
}
