//! The meeting point of the worker's loop thread and the asyncio thread:
//! jobs handed over, notes from flow wakers, the stop request, and the
//! eventfd the asyncio loop watches (`loop.add_reader`).
//!
//! The loop thread only pushes into `Shared` (no interpreter lock); the
//! asyncio thread takes everything at once through `Hub::take`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyList;

use super::cycle::Cycle;
use super::scope;
use crate::handoff::{Job, Mailbox, Waker};

/// A waiting `send` may go on: there is room, or the client is gone.
pub(crate) const NOTE_ROOM: u8 = 0;
/// The client hung up (or the connection closed).
pub(crate) const NOTE_HANGUP: u8 = 1;

#[derive(Default)]
struct Inbox {
    jobs: VecDeque<Job>,
    /// (kind, cycle id)
    notes: Vec<(u8, u64)>,
    /// Stop, letting requests in flight finish for this long.
    stop: Option<Duration>,
}

impl Inbox {
    fn is_empty(&self) -> bool {
        self.jobs.is_empty() && self.notes.is_empty() && self.stop.is_none()
    }
}

/// What both threads share, without Python objects.
pub(crate) struct Shared {
    inbox: Mutex<Inbox>,
    waker: Waker,
}

impl Shared {
    pub fn new() -> std::io::Result<Shared> {
        Ok(Shared {
            inbox: Mutex::new(Inbox::default()),
            waker: Waker::new()?,
        })
    }

    /// Change the inbox; wake the asyncio loop when it was empty (else a
    /// wake is already pending).
    fn post(&self, f: impl FnOnce(&mut Inbox)) {
        let mut inbox = lock(&self.inbox);
        let was_empty = inbox.is_empty();
        f(&mut inbox);
        drop(inbox);
        if was_empty {
            self.waker.wake();
        }
    }

    pub fn push_job(&self, job: Job) {
        self.post(|i| i.jobs.push_back(job));
    }

    pub fn note(&self, kind: u8, id: u64) {
        self.post(|i| i.notes.push((kind, id)));
    }

    pub fn request_stop(&self, timeout: Duration) {
        self.post(|i| i.stop = Some(timeout));
    }

    /// Jobs handed over and not yet taken by the asyncio loop.
    pub fn backlog(&self) -> usize {
        lock(&self.inbox).jobs.len()
    }

    fn take(&self) -> Inbox {
        // Reset the eventfd first: a post landing in between either is
        // taken now or writes it again.
        self.waker.clear();
        std::mem::take(&mut *lock(&self.inbox))
    }
}

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
        self.shared.waker.fd()
    }

    /// Everything posted since the last call: new requests (as cycles),
    /// notes `(kind, id)`, and the stop timeout in seconds (or None).
    fn take<'py>(&self, py: Python<'py>) -> PyResult<Taken<'py>> {
        let inbox = self.shared.take();
        let cycles = PyList::empty(py);
        for job in inbox.jobs {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            let scope = scope::build(py, &job.req, &job.conn, &self.ctx.root_path)?;
            let cycle = Cycle::new(
                id,
                scope.unbind(),
                job,
                self.shared.clone(),
                self.mailbox.clone(),
            );
            cycles.append(Py::new(py, cycle)?)?;
        }
        Ok((cycles, inbox.notes, inbox.stop.map(|d| d.as_secs_f64())))
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

/// A poisoned lock only means a thread panicked while holding it; the
/// queues are still usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
