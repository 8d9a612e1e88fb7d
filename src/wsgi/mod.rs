//! The WSGI bridge (PEP 3333): load the app, build the environ, run
//! `start_response`, hand the response body to the worker chunk by chunk,
//! and always call the iterable's `close()`.
//!
//! Imports `http` (request and response types) and `log`; never `engine`.
//! No Rust panic crosses into Python: callables exposed to Python catch them.

use std::net::SocketAddr;

use pyo3::prelude::*;

use crate::http::Request;

/// Per-listener and per-connection facts the environ needs.
#[derive(Clone, Debug)]
pub struct ConnInfo {
    /// TCP peer; `None` for a unix socket (REMOTE_ADDR is then empty, no REMOTE_PORT).
    pub peer: Option<SocketAddr>,
    /// SERVER_NAME and SERVER_PORT: the listener's address (gunicorn's rule),
    /// or for a unix socket the `Host` header (port 80) or the socket path.
    pub server_name: String,
    pub server_port: String,
    /// The listener speaks TLS (wsgi.url_scheme `https`).
    pub tls: bool,
}

/// Worker-wide facts for the environ.
#[derive(Clone, Debug)]
pub struct WorkerInfo {
    /// wsgi.multiprocess: more than one worker.
    pub multiprocess: bool,
    /// wsgi.multithread.
    pub multithread: bool,
}

/// Why the app could not be loaded: the worker exits with APP_LOAD_ERROR.
#[derive(Debug)]
pub struct AppLoadError(pub String);

/// The loaded application and everything built once per worker.
pub struct WsgiApp {
    #[doc(hidden)]
    pub app: Py<PyAny>,
}

/// The status line and headers the app gave to `start_response`.
#[derive(Debug)]
pub struct ResponseHead {
    /// e.g. `200 OK`, validated.
    pub status: Vec<u8>,
    /// Validated (name, value) pairs, latin-1 encoded.
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
}

/// What the app answered.
pub enum Reply {
    /// A response to send: its head, then `body` chunk by chunk.
    Response { head: ResponseHead, body: Body },
    /// The app failed before a response could start (exception, bad status
    /// or headers, no start_response). The error is logged with its
    /// traceback and `close()` was called: answer 500.
    Failed,
}

/// A response body being produced by the app.
pub struct Body {
    #[doc(hidden)]
    pub placeholder: (),
}

/// The next piece of a body.
pub enum Chunk {
    Data(Vec<u8>),
    /// The iterable is exhausted.
    End,
    /// The iterable raised (logged with traceback): close the connection.
    Failed,
}

impl WsgiApp {
    /// Import `spec` (`module`, `module:name`, `module:factory(args)`), after
    /// adding `pythonpath` entries to `sys.path`. The error says what failed
    /// (missing module, missing attribute, not callable) with the traceback.
    pub fn load(py: Python<'_>, spec: &str, worker: WorkerInfo) -> Result<WsgiApp, AppLoadError> {
        let _ = (py, spec, worker);
        todo!()
    }

    /// Call the app for `req`. Runs until the app has produced its first
    /// non-empty chunk (or exhausted its iterable), so `start_response` has
    /// been called when this returns `Reply::Response`.
    pub fn call(&self, py: Python<'_>, req: &Request, conn: &ConnInfo) -> Reply {
        let _ = (py, req, conn);
        todo!()
    }
}

impl Body {
    /// The total body size when it is known without iterating further
    /// (a list or tuple of bytes), for a Content-Length the app left out.
    pub fn known_len(&self) -> Option<u64> {
        todo!()
    }

    /// The next chunk, pulling from the app's iterable as needed.
    pub fn next_chunk(&mut self, py: Python<'_>) -> Chunk {
        let _ = py;
        todo!()
    }

    /// Call the iterable's `close()` (exceptions are logged). Called exactly
    /// once per body: after the last chunk, or when the client went away.
    pub fn close(self, py: Python<'_>) {
        let _ = py;
        todo!()
    }
}
