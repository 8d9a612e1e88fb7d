//! The inbox the worker's loop thread and the asyncio thread share: jobs
//! handed over, notes from flow wakers, the stop request, and the eventfd
//! the asyncio loop watches (`loop.add_reader`).
//!
//! The loop thread only pushes into `Shared` (no interpreter lock); the
//! asyncio thread takes everything at once (`Hub::take`). No Python here.

use std::collections::VecDeque;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use crate::handoff::{Job, Waker};

/// A waiting `send` may go on: there is room, or the client is gone.
pub(crate) const NOTE_ROOM: u8 = 0;
/// The client hung up (or the connection closed).
pub(crate) const NOTE_HANGUP: u8 = 1;
/// A WebSocket message (or the disconnect) arrived.
pub(crate) const NOTE_INBOUND: u8 = 2;

#[derive(Default)]
pub(super) struct Inbox {
    pub jobs: VecDeque<Job>,
    /// (kind, cycle id)
    pub notes: Vec<(u8, u64)>,
    /// Stop, letting requests in flight finish for this long.
    pub stop: Option<Duration>,
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
    /// When the asyncio loop last ran its heartbeat timer (monotonic ms).
    pub beat_ms: AtomicU64,
}

impl Shared {
    /// The eventfd the asyncio loop watches.
    pub fn fd(&self) -> i32 {
        self.waker.fd()
    }

    pub fn new() -> std::io::Result<Shared> {
        Ok(Shared {
            inbox: Mutex::new(Inbox::default()),
            waker: Waker::new()?,
            beat_ms: AtomicU64::new(crate::sys::shm::monotonic_ms()),
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

    pub(super) fn take(&self) -> Inbox {
        // Reset the eventfd first: a post landing in between either is
        // taken now or writes it again.
        self.waker.clear();
        std::mem::take(&mut *lock(&self.inbox))
    }
}

/// A poisoned lock only means a thread panicked while holding it; the
/// queues are still usable.
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
