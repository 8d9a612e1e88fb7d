//! ferrocorn: a pre-fork HTTP server for Python web applications.
//!
//! `run(argv)` (called by the `ferrocorn` console script) parses the command
//! line, binds the listeners and runs the arbiter, which forks one pinned
//! worker per slot; each worker runs an io engine, the sans-IO HTTP layer and
//! the WSGI bridge.

#[macro_use]
pub mod log;

pub mod engine;
pub mod http;
pub mod sys;

#[cfg(feature = "python")]
pub mod wsgi;

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
