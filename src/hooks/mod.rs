//! Server hooks: gunicorn's `on_starting` ... `on_exit`, callables set in the
//! config file, called through PyO3 with objects that carry the attributes
//! real hooks use (`server.cfg`, `server.pid`, `server.log`, `worker.pid`,
//! `worker.age`, `req.method`, `req.path`, `req.headers`, `resp.status` ...).
//!
//! Every `call_*` function is a cheap no-op when its hook is not set (one
//! array load), so `call_pre_request`/`call_post_request` can sit on the
//! request path. A hook that raises is logged with its traceback and the
//! function returns `Err(HookFailed)`; what the caller does then follows
//! gunicorn and is written on each function.
//!
//! The hook registry (which hooks a config file set) is configuration and
//! lives in `config::hooks`; this module only calls them.
//!
//! Imports `config` and `log`; Python only behind the `python` feature.

#![forbid(unsafe_code)]

#[cfg(feature = "python")]
mod call;
#[cfg(feature = "python")]
mod objects;

#[cfg(feature = "python")]
pub use call::*;

/// A hook raised; its traceback is already in the error log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookFailed {
    pub hook: &'static str,
    /// `ExceptionType: message`.
    pub message: String,
}

impl std::fmt::Display for HookFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the {} hook failed: {}", self.hook, self.message)
    }
}
