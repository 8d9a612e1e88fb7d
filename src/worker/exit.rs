//! How a worker ends. The worker says what happened; the arbiter, which
//! owns the exit-code policy (gunicorn's WORKER_BOOT_ERROR / APP_LOAD_ERROR
//! split), turns it into the process's exit status.

/// The outcome of a worker's life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Stopped as asked (TERM, INT, QUIT, --max-requests, a reload).
    Stopped,
    /// Could not start, or its io engine failed: a replacement would fail
    /// the same way, so the arbiter stops instead of restarting it forever.
    BootError,
    /// The application could not be imported, or its ASGI lifespan
    /// startup failed.
    AppLoadError,
}
