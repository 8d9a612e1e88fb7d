//! The asyncio side's handle on the shared inbox (`inbox.rs`): `Hub::take`
//! turns everything the loop thread posted into cycles and notes at once,
//! and the glue reports its heartbeat, its lifespan outcome and its log
//! lines through it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use pyo3::prelude::*;
use pyo3::types::PyList;

use super::cycle::Cycle;
use super::inbox::{lock, Shared};
use super::scope;
use super::websocket::WsCycle;
use crate::handoff::Mailbox;

/// Per-worker facts the cycles need.
pub(crate) struct Context {
    pub root_path: String,
}

/// What `Hub::take` hands the asyncio side: new cycles, notes
/// `(kind, cycle id)`, the stop timeout in seconds.
type Taken<'py> = (Bound<'py, PyList>, Vec<(u8, u64)>, Option<f64>);

/// The asyncio side's handle on `Shared` (the `hub` of `ferrocorn._asgi`).
#[pyclass(frozen)]
pub(crate) struct Hub {
    pub shared: Arc<Shared>,
    pub mailbox: Arc<Mailbox>,
    pub ctx: Arc<Context>,
    next_id: AtomicU64,
    /// Where the outcome of the lifespan startup goes (once).
    started: Mutex<Option<mpsc::Sender<Option<String>>>>,
}

impl Hub {
    pub fn new(
        shared: Arc<Shared>,
        mailbox: Arc<Mailbox>,
        ctx: Arc<Context>,
        started: mpsc::Sender<Option<String>>,
    ) -> Hub {
        Hub {
            shared,
            mailbox,
            ctx,
            next_id: AtomicU64::new(1),
            started: Mutex::new(Some(started)),
        }
    }

    /// Report the startup outcome unless it was reported already; says
    /// whether it was delivered now.
    pub fn report_started(&self, outcome: Option<String>) -> bool {
        match lock(&self.started).take() {
            Some(tx) => tx.send(outcome).is_ok(),
            None => false,
        }
    }
}

#[pymethods]
impl Hub {
    /// The eventfd to watch.
    #[getter]
    fn fd(&self) -> i32 {
        self.shared.fd()
    }

    /// Everything posted since the last call: new requests (as cycles),
    /// notes `(kind, id)`, and the stop timeout in seconds (or None).
    fn take<'py>(&self, py: Python<'py>) -> PyResult<Taken<'py>> {
        let inbox = self.shared.take();
        let cycles = PyList::empty(py);
        for job in inbox.jobs {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let scope = scope::build(
                py,
                &job.req,
                &job.conn,
                &self.ctx.root_path,
                job.websocket.as_deref(),
            )?
            .unbind();
            let (shared, mailbox) = (self.shared.clone(), self.mailbox.clone());
            if job.websocket.is_some() {
                let cycle = WsCycle::new(id, scope, job, shared, mailbox);
                cycles.append(Py::new(py, cycle)?)?;
            } else {
                let cycle = Cycle::new(id, scope, job, shared, mailbox);
                cycles.append(Py::new(py, cycle)?)?;
            }
        }
        Ok((cycles, inbox.notes, inbox.stop.map(|d| d.as_secs_f64())))
    }

    /// The asyncio loop is alive (called from a timer four times a second):
    /// a loop blocked by the app for `--timeout` gets the worker replaced.
    fn beat(&self) {
        self.shared
            .beat_ms
            .store(crate::sys::shm::monotonic_ms(), Ordering::Relaxed);
    }

    /// The lifespan startup finished: `None`, or why the worker must stop.
    #[pyo3(signature = (error))]
    fn started(&self, error: Option<String>) {
        self.report_started(error);
    }

    fn log_info(&self, message: &str) {
        crate::info!("{message}");
    }

    fn log_debug(&self, message: &str) {
        crate::debug!("{message}");
    }

    fn log_error(&self, message: &str) {
        crate::error!("{message}");
    }
}
