//! What the io thread and the hub share: the inbox (jobs, woken waits, the
//! stop request, one eventfd the hub's io watcher watches), the bridge the
//! glue calls, and the way a greenlet waits for a slow client.
//!
//! The inbox's lock guards Rust data only (no Python object is made or
//! dropped under it): the io thread and the flow wakers take it without
//! the interpreter lock.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use pyo3::prelude::*;

use super::threads::{self, Park};
use crate::handoff::{Flow, Job, Room, Waker};
use crate::wsgi::WriteSink;

#[derive(Default)]
struct Pending {
    jobs: VecDeque<Job>,
    /// Keys of greenlets that may write again.
    woken: Vec<u64>,
    /// Stop, letting the requests still running finish for this long.
    stop: Option<Duration>,
    /// The eventfd was written and the hub has not taken since.
    signalled: bool,
}

/// Jobs and wake-ups for the hub, and its heartbeat.
pub(super) struct Inbox {
    pending: Mutex<Pending>,
    waker: Waker,
    /// When the hub's heartbeat timer last ran (monotonic ms).
    beat_ms: AtomicU64,
}

impl Inbox {
    pub fn new() -> std::io::Result<Inbox> {
        Ok(Inbox {
            pending: Mutex::new(Pending::default()),
            waker: Waker::new()?,
            beat_ms: AtomicU64::new(crate::sys::shm::monotonic_ms()),
        })
    }

    /// Change what is pending and wake the hub, once until it takes.
    fn post(&self, f: impl FnOnce(&mut Pending)) {
        let mut p = lock(&self.pending);
        f(&mut p);
        let wake = !std::mem::replace(&mut p.signalled, true);
        drop(p);
        if wake {
            self.waker.wake();
        }
    }

    pub fn push_job(&self, job: Job) {
        self.post(|p| p.jobs.push_back(job));
    }

    pub fn wake_waiter(&self, key: u64) {
        self.post(|p| p.woken.push(key));
    }

    /// The first request wins: the loop's own (with the graceful time)
    /// comes before the one made when its thread ends.
    pub fn request_stop(&self, grace: Duration) {
        self.post(|p| {
            p.stop.get_or_insert(grace);
        });
    }

    /// Jobs not yet taken by a greenlet.
    pub fn backlog(&self) -> usize {
        lock(&self.pending).jobs.len()
    }

    pub fn beat_ms(&self) -> u64 {
        self.beat_ms.load(Ordering::Relaxed)
    }

    /// The keys woken and the stop request since the last take; resets the
    /// eventfd. Jobs stay until `take_jobs`.
    fn take_notes(&self) -> (Vec<u64>, Option<Duration>) {
        // Reset the eventfd first: a post landing in between either is
        // taken now or writes it again.
        self.waker.clear();
        let mut p = lock(&self.pending);
        p.signalled = false;
        (std::mem::take(&mut p.woken), p.stop)
    }

    fn take_jobs(&self, n: usize) -> Vec<Job> {
        let mut p = lock(&self.pending);
        let n = n.min(p.jobs.len());
        p.jobs.drain(..n).collect()
    }
}

/// A poisoned lock only means a thread panicked while holding it; the
/// queues are still usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One request, handed to the greenlet that answers it.
#[pyclass(frozen, module = "ferrocorn")]
pub(super) struct PendingJob(Mutex<Option<Job>>);

/// The glue's handle on the inbox and on the per-request work.
#[pyclass(frozen, module = "ferrocorn", name = "GeventBridge")]
pub(super) struct Bridge {
    inbox: Arc<Inbox>,
    shared: threads::Shared,
}

impl Bridge {
    pub fn new(inbox: Arc<Inbox>, shared: threads::Shared) -> Bridge {
        Bridge { inbox, shared }
    }
}

#[pymethods]
impl Bridge {
    /// The eventfd the hub watches.
    #[getter]
    fn fd(&self) -> i32 {
        self.inbox.waker.fd()
    }

    /// `(keys woken, stop grace in seconds or None)` since the last call.
    fn take(&self) -> (Vec<u64>, Option<f64>) {
        let (woken, stop) = self.inbox.take_notes();
        (woken, stop.map(|d| d.as_secs_f64()))
    }

    /// Up to `n` requests, in arrival order.
    fn take_jobs(&self, py: Python<'_>, n: usize) -> PyResult<Vec<Py<PendingJob>>> {
        self.inbox
            .take_jobs(n)
            .into_iter()
            .map(|job| Py::new(py, PendingJob(Mutex::new(Some(job)))))
            .collect()
    }

    /// Answer one request (in its own greenlet): pre_request, the app, the
    /// body, the access log line, post_request.
    fn answer(&self, py: Python<'_>, job: &PendingJob) {
        let taken = lock(&job.0).take();
        if let Some(job) = taken {
            threads::answer(py, &self.shared, job);
        }
    }

    /// The hub is alive (its heartbeat timer ran).
    fn beat(&self) {
        self.inbox
            .beat_ms
            .store(crate::sys::shm::monotonic_ms(), Ordering::Relaxed);
    }
}

/// A greenlet's way to wait for room: yield to the hub until the io thread
/// wakes its key (the flow's waker posts it to the inbox).
pub(super) struct GreenletPark {
    inbox: Arc<Inbox>,
    /// The glue's `wait(key)`.
    wait: Py<PyAny>,
    next_key: AtomicU64,
}

impl GreenletPark {
    pub fn new(inbox: Arc<Inbox>, wait: Py<PyAny>) -> GreenletPark {
        GreenletPark {
            inbox,
            wait,
            next_key: AtomicU64::new(1),
        }
    }
}

impl Park for GreenletPark {
    fn wait_room(&self, py: Python<'_>, flow: &Arc<Flow>) -> Room {
        loop {
            let room = flow.room();
            if room != Room::Full {
                return room;
            }
            let key = self.next_key.fetch_add(1, Ordering::Relaxed);
            let inbox = self.inbox.clone();
            // Runs at once if there is room by now: the key is then taken
            // by the hub only after this greenlet has yielded.
            flow.on_room(Box::new(move || inbox.wake_waiter(key)));
            if let Err(e) = self.wait.call1(py, (key,)) {
                // Killed (GreenletExit) or the hub is going away: stop
                // producing, as for a client that left.
                crate::debug!(
                    "A greenlet waiting for its client stopped: {}",
                    crate::py::exception_text(py, &e).trim_end()
                );
                return Room::Gone;
            }
        }
    }

    fn hint_sink(&self, py: Python<'_>, sink: Option<Arc<dyn WriteSink>>) {
        if let Err(e) = crate::wsgi::set_task_hint_sink(py, sink) {
            crate::warn!(
                "wsgi.early_hints is unavailable to this request: {}",
                crate::py::exception_text(py, &e).trim_end()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::handoff::Ticket;
    use crate::wsgi::testing::{conn, request};

    fn job(serial: u64) -> Job {
        Job {
            ticket: Ticket { conn: 1, serial },
            req: request("GET", "/", &[], b""),
            conn: conn(),
            flow: Arc::new(Flow::new()),
            arrived: Instant::now(),
            closing: false,
            websocket: None,
        }
    }

    /// A wake is pending (the eventfd was written since the last take).
    fn signalled(inbox: &Inbox) -> bool {
        lock(&inbox.pending).signalled
    }

    #[test]
    fn the_hub_is_woken_once_until_it_takes() {
        let inbox = Inbox::new().unwrap();
        assert!(!signalled(&inbox));
        inbox.push_job(job(1));
        assert!(signalled(&inbox));
        inbox.wake_waiter(7);
        inbox.push_job(job(2));
        let (woken, stop) = inbox.take_notes();
        assert_eq!((woken, stop), (vec![7], None));
        assert!(!signalled(&inbox));
        // Jobs wait for a free greenlet, and a waiter woken meanwhile
        // wakes the hub again (queued jobs do not hide it).
        assert_eq!(inbox.backlog(), 2);
        inbox.wake_waiter(8);
        assert!(signalled(&inbox));
        assert_eq!(inbox.take_notes().0, vec![8]);
    }

    #[test]
    fn jobs_are_taken_in_order_at_most_n_at_a_time() {
        let inbox = Inbox::new().unwrap();
        for serial in 1..=3 {
            inbox.push_job(job(serial));
        }
        let serials = |jobs: Vec<Job>| jobs.iter().map(|j| j.ticket.serial).collect::<Vec<_>>();
        assert_eq!(serials(inbox.take_jobs(2)), [1, 2]);
        assert_eq!(serials(inbox.take_jobs(5)), [3]);
        assert!(inbox.take_jobs(5).is_empty());
    }

    #[test]
    fn the_first_stop_request_wins_and_stays() {
        let inbox = Inbox::new().unwrap();
        inbox.request_stop(Duration::from_secs(30));
        inbox.request_stop(Duration::ZERO);
        assert_eq!(inbox.take_notes().1, Some(Duration::from_secs(30)));
        assert_eq!(inbox.take_notes().1, Some(Duration::from_secs(30)));
    }
}
