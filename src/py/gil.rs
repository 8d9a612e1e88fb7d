//! A mutex for state that threads running Python share.
//!
//! The interpreter lock (the GIL) is a lock like any other: a thread that
//! holds a Rust lock and then waits for the GIL, while another thread holds
//! the GIL and waits for that Rust lock, hangs both for good. Python code
//! gives the GIL away at unexpected points: a call into the app, an
//! interned string that another thread is initialising (PyO3's `intern!`
//! waits for it detached), an allocation that runs the garbage collector
//! and with it a finaliser. So the rule (docs/architecture.md, "Locks and
//! the interpreter lock") is:
//!
//! * a `std::sync::Mutex` guards only pure-Rust work: its critical sections
//!   make no Python call, create and drop no Python object;
//! * state that holds Python objects, or whose critical sections touch
//!   Python, is a [`GilMutex`]. Locking it takes the `Python` token, and a
//!   thread that has to wait for it waits detached from the interpreter,
//!   so the holder can always get the GIL back and finish.
//!
//! Uncontended, a `GilMutex` costs what a `Mutex` costs: it tries the lock
//! first and detaches only when that fails.

use std::sync::{Mutex, MutexGuard};

use pyo3::sync::MutexExt;
use pyo3::Python;

#[derive(Default)]
pub(crate) struct GilMutex<T>(Mutex<T>);

impl<T> GilMutex<T> {
    pub const fn new(value: T) -> GilMutex<T> {
        GilMutex(Mutex::new(value))
    }

    /// Lock, waiting detached from the interpreter if another thread holds
    /// it. A poisoned lock is still handed out: nothing here leaves the
    /// guarded state half-changed on a panic that matters more than
    /// serving the next request.
    pub fn lock<'a>(&'a self, py: Python<'_>) -> MutexGuard<'a, T> {
        self.0
            .lock_py_attached(py)
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{mpsc, Arc, Barrier};
    use std::time::Duration;

    use pyo3::prelude::*;

    use super::GilMutex;

    /// The inversion that hung fresh workers: one thread holds the Rust
    /// lock and needs the GIL back; another holds the GIL and wants the
    /// Rust lock. With a GilMutex the second waits detached, so the first
    /// gets the GIL and both finish.
    #[test]
    fn a_holder_that_needs_the_gil_back_finishes_while_another_thread_waits() {
        Python::initialize();
        let lock = Arc::new(GilMutex::new(0u32));
        let holding = Arc::new(Barrier::new(2));
        let holder = {
            let (lock, holding) = (lock.clone(), holding.clone());
            std::thread::spawn(move || {
                Python::attach(|py| {
                    let mut guard = lock.lock(py);
                    // Give the GIL away while holding the lock, as an
                    // intern! that waits for another thread does, and
                    // take it back once the other thread has had time to
                    // take the GIL and ask for the lock.
                    py.detach(|| {
                        holding.wait();
                        std::thread::sleep(Duration::from_millis(100));
                    });
                    *guard += 1;
                })
            })
        };
        let (finished, outcome) = mpsc::channel();
        let waiter = {
            let lock = lock.clone();
            std::thread::spawn(move || {
                Python::attach(|py| {
                    py.detach(|| holding.wait());
                    // The holder now waits for the GIL this thread holds.
                    *lock.lock(py) += 1;
                });
                let _ = finished.send(());
            })
        };
        // A deadlock never ends: give up on it after far longer than the
        // exchange takes, and fail (the two threads are left behind).
        assert!(
            outcome.recv_timeout(Duration::from_secs(30)).is_ok(),
            "the two threads deadlocked"
        );
        holder.join().unwrap();
        waiter.join().unwrap();
        Python::attach(|py| assert_eq!(*lock.lock(py), 2));
    }
}
