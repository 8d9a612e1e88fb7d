//! The WSGI bridge (PEP 3333): load the app, build the environ, run
//! `start_response`, hand the response body to the worker chunk by chunk,
//! and always call the iterable's `close()`.
//!
//! Imports `http` (request and response types) and `log`; never `engine`.
//! No Rust panic crosses into Python: the methods exposed to Python have no
//! panicking paths (no unwrap, no unchecked indexing), and PyO3 would turn
//! one into a `PanicException` anyway.
//!
//! Layout: `load` finds the app, `environ` builds the environ, `input`,
//! `errors` and `file_wrapper` are the objects the environ hands out,
//! `start_response` holds what the app said about the head, `body` pulls
//! the iterable, `report` logs failures with their tracebacks.

#![forbid(unsafe_code)]

mod body;
mod environ;
mod errors;
mod file_wrapper;
mod hints;
mod input;
mod load;
mod report;
mod start_response;

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::http::{ConnInfo, HeaderList, Request, Status};

pub use file_wrapper::FileWrapper;
pub use hints::{set_hint_sink, set_task_hint_sink};

use body::{Pool, Source};
use environ::{EnvironError, Template};
use start_response::Responder;

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
    app: Py<PyAny>,
    template: Template,
    pool: Arc<Pool>,
}

/// The status line and headers the app gave to `start_response`.
#[derive(Debug)]
pub struct ResponseHead {
    /// e.g. `200 OK`, validated.
    pub status: Status,
    pub headers: HeaderList,
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
    /// The app's return value, whose `close()` is called once; `None` for
    /// an exact list or tuple (nothing to close).
    iterable: Option<Py<PyAny>>,
    source: Source,
    /// Chunks ready to go out, in order.
    queued: body::Queued,
    known_len: Option<u64>,
    /// This request's start_response, returned to `pool` on close.
    responder: Option<Responder>,
    pool: Arc<Pool>,
    failed: bool,
    /// A `wsgi.file_wrapper` nothing has been read from yet.
    file_untouched: bool,
    /// The head already went out through a `WriteSink`.
    head_streamed: bool,
}

/// Where `write()` data goes as soon as the app writes it, when the app
/// runs in a thread of its own (the worker's app threads). Without a sink,
/// `write()` data is queued and sent with the body once the app returns.
pub trait WriteSink: Send + Sync {
    /// The first `write()`: the head is final, send it.
    fn head(&self, head: &ResponseHead);
    /// Send body bytes; may wait (with the interpreter lock released)
    /// while the client is behind. `false`: the client is gone.
    fn data(&self, py: Python<'_>, data: Vec<u8>) -> bool;
    /// `wsgi.early_hints(headers)` with validated headers: send a
    /// `103 Early Hints` unless the head went out already or the client
    /// speaks HTTP/1.0 (then nothing).
    fn early_hints(&self, py: Python<'_>, headers: Vec<(Vec<u8>, Vec<u8>)>) {
        let _ = (py, headers);
    }
}

/// Body bytes: copied out of Python (`write()` data), or the app's own
/// `bytes` object, read in place while the interpreter lock is held.
pub enum Piece {
    Owned(Vec<u8>),
    Shared(Py<PyBytes>),
}

impl Piece {
    pub fn bytes<'a>(&'a self, py: Python<'_>) -> &'a [u8] {
        match self {
            Piece::Owned(v) => v,
            Piece::Shared(b) => b.as_bytes(py),
        }
    }

    pub fn len(&self, py: Python<'_>) -> usize {
        self.bytes(py).len()
    }

    pub fn into_vec(self, py: Python<'_>) -> Vec<u8> {
        match self {
            Piece::Owned(v) => v,
            Piece::Shared(b) => b.as_bytes(py).to_vec(),
        }
    }

    /// The app's `bytes` object as a handle that may outlive the lock (its
    /// bytes never change or move), `None` for owned bytes.
    pub fn backed(&self, py: Python<'_>) -> Option<pyo3::pybacked::PyBackedBytes> {
        match self {
            Piece::Owned(_) => None,
            Piece::Shared(b) => Some(b.bind(py).clone().into()),
        }
    }
}

/// The next piece of a body: its bytes (`Vec<u8>` from `next_chunk`, a
/// `Piece` from `next_piece`), the end, or a failure.
pub enum Chunk<T = Vec<u8>> {
    Data(T),
    /// The iterable is exhausted.
    End,
    /// The iterable raised (logged with traceback): close the connection.
    Failed,
}

/// Where the app object comes from.
pub enum AppSource<'a> {
    /// `module`, `module:name` or `module:factory(args)`.
    Spec(&'a str),
    /// A PasteDeploy `config:` URI and its global variables.
    Paste {
        uri: &'a str,
        global_conf: &'a [(String, String)],
    },
}

impl WsgiApp {
    /// Import `spec` (`module`, `module:name`, `module:factory(args)`), with
    /// the current directory first on `sys.path` as gunicorn does (other
    /// `--pythonpath` entries are the caller's). The error says what failed
    /// (missing module, missing attribute, not callable) with the traceback.
    pub fn load(py: Python<'_>, spec: &str, worker: WorkerInfo) -> Result<WsgiApp, AppLoadError> {
        let app = load::import_app(py, spec)?;
        WsgiApp::from_object(py, app, worker)
    }

    /// Find the app object where `source` says, without building anything
    /// around it (`--preload` does this in the master).
    pub fn import(py: Python<'_>, source: &AppSource<'_>) -> Result<Py<PyAny>, AppLoadError> {
        match source {
            AppSource::Spec(spec) => load::import_app(py, spec),
            AppSource::Paste { uri, global_conf } => load::load_paste(py, uri, global_conf),
        }
    }

    /// Serve an app object found already.
    pub fn from_object(
        py: Python<'_>,
        app: Py<PyAny>,
        worker: WorkerInfo,
    ) -> Result<WsgiApp, AppLoadError> {
        let template = Template::new(py, &worker)
            .map_err(|e| AppLoadError(report::format_exception(py, &e)))?;
        Ok(WsgiApp {
            app,
            template,
            pool: Arc::default(),
        })
    }

    /// The application object.
    pub fn app(&self) -> &Py<PyAny> {
        &self.app
    }

    /// Call the app for `req`. Runs until the app has produced its first
    /// non-empty chunk (or exhausted its iterable), so `start_response` has
    /// been called when this returns `Reply::Response`.
    pub fn call(&self, py: Python<'_>, req: &Request, conn: &ConnInfo) -> Reply {
        self.call_keeping_environ(py, req, conn, false).0
    }

    /// `call`, also handing back the environ dict the app received when
    /// `keep` is set (for the `post_request` hook and `{NAME}e` access-log
    /// atoms); `None` when no environ was built.
    pub fn call_keeping_environ(
        &self,
        py: Python<'_>,
        req: &Request,
        conn: &ConnInfo,
        keep: bool,
    ) -> (Reply, Option<Py<PyAny>>) {
        self.call_with(py, req, conn, keep, None)
    }

    /// `call_keeping_environ`, with `write()` data going to `sink` as it
    /// is written (then `Body::head_streamed` says the head went out too).
    pub fn call_with(
        &self,
        py: Python<'_>,
        req: &Request,
        conn: &ConnInfo,
        keep: bool,
        sink: Option<Arc<dyn WriteSink>>,
    ) -> (Reply, Option<Py<PyAny>>) {
        let context = || {
            format!(
                "Error handling request {} {}",
                String::from_utf8_lossy(req.head.method()),
                String::from_utf8_lossy(req.head.target())
            )
        };
        let responder = match self.pool.take(py) {
            Ok(r) => r,
            Err(e) => {
                report::exception(py, &context(), &e);
                return (Reply::Failed, None);
            }
        };
        if sink.is_some() {
            start_response::lock(py, &responder.state).sink = sink;
        }
        let environ = match self.template.build(py, req, conn) {
            Ok(env) => env,
            Err(EnvironError::ScriptName(message)) => {
                // gunicorn's ConfigurationProblem: a 500, logged as a bad request.
                let ip = conn.peer.map(|p| p.ip().to_string()).unwrap_or_default();
                report::warning(&format!("Invalid request from ip={ip}: {message}"));
                self.pool.give(py, responder);
                return (Reply::Failed, None);
            }
            Err(EnvironError::Python(e)) => {
                report::exception(py, &context(), &e);
                drop(e);
                self.pool.give(py, responder);
                return (Reply::Failed, None);
            }
        };
        let kept = keep.then(|| environ.clone().into_any().unbind());
        let result = self
            .app
            .bind(py)
            .call1((environ, responder.callable.bind(py)));
        let reply = match result {
            Ok(result) => Body::begin(py, result, responder, self.pool.clone(), &context),
            Err(e) => {
                report::exception(py, &context(), &e);
                drop(e);
                self.pool.give(py, responder);
                Reply::Failed
            }
        };
        (reply, kept)
    }
}

/// Helpers for the tests of this module and its files: an interpreter,
/// fixture modules, hand-built requests.
#[cfg(test)]
pub(crate) mod testing {
    use std::ffi::CString;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use pyo3::prelude::*;
    use pyo3::types::PyModule;

    use super::*;
    use crate::http::{Head, Header, Span, Version};

    pub fn with_py<R>(f: impl for<'py> FnOnce(Python<'py>) -> R) -> R {
        Python::initialize();
        Python::attach(f)
    }

    /// A fresh module with `code`, registered in `sys.modules`; returns its name.
    pub fn module<'py>(py: Python<'py>, code: &str) -> (String, Bound<'py, PyModule>) {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!("wsgi_fixture_{}", NEXT.fetch_add(1, Ordering::Relaxed));
        let code = CString::new(code).expect("fixture code has no NUL");
        let file = CString::new(format!("{name}.py")).expect("no NUL");
        let cname = CString::new(name.clone()).expect("no NUL");
        let m = PyModule::from_code(py, &code, &file, &cname).expect("fixture module compiles");
        (name, m)
    }

    pub fn worker() -> WorkerInfo {
        WorkerInfo {
            multiprocess: true,
            multithread: false,
        }
    }

    pub fn conn() -> ConnInfo {
        ConnInfo {
            peer: Some("10.1.2.3:45678".parse().expect("addr")),
            server_name: "127.0.0.1".into(),
            server_port: "8000".into(),
            tls: false,
        }
    }

    fn span(buf: &mut Vec<u8>, s: &[u8]) -> Span {
        let start = buf.len() as u32;
        buf.extend_from_slice(s);
        start..buf.len() as u32
    }

    /// A request as the http layer would hand it over (path and query
    /// split off the target the way `urlsplit` does for origin-form).
    pub fn request(method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Request {
        let mut buf = Vec::new();
        let method = span(&mut buf, method.as_bytes());
        let target_span = span(&mut buf, target.as_bytes());
        let t = target.as_bytes();
        let path_end = t
            .iter()
            .position(|&c| c == b'?' || c == b'#')
            .unwrap_or(t.len());
        let path = target_span.start..target_span.start + path_end as u32;
        let query = if t.get(path_end) == Some(&b'?') {
            let q_end = t.iter().position(|&c| c == b'#').unwrap_or(t.len());
            target_span.start + path_end as u32 + 1..target_span.start + q_end as u32
        } else {
            target_span.end..target_span.end
        };
        let headers = headers
            .iter()
            .map(|(n, v)| Header {
                name: span(&mut buf, n.as_bytes()),
                value: span(&mut buf, v.as_bytes()),
            })
            .collect();
        Request {
            head: Head {
                buf,
                method,
                target: target_span,
                path,
                query,
                version: Version::Http11,
                headers,
                https_forwarded: false,
            },
            body: body.to_vec().into(),
            keep_alive: true,
            proxy: None,
        }
    }

    pub fn get(target: &str) -> Request {
        request("GET", target, &[("Host", "example.com")], b"")
    }

    /// Load `name` from a fresh module holding `code`.
    pub fn app<'py>(py: Python<'py>, code: &str, name: &str) -> (WsgiApp, Bound<'py, PyModule>) {
        let (module, m) = module(py, code);
        match WsgiApp::load(py, &format!("{module}:{name}"), worker()) {
            Ok(app) => (app, m),
            Err(e) => panic!("fixture app failed to load: {}", e.0),
        }
    }

    /// What a response came to once fully pulled and closed.
    #[derive(Debug)]
    pub enum Outcome {
        Failed,
        Sent {
            status: String,
            headers: Vec<(String, String)>,
            chunks: Vec<Vec<u8>>,
            known_len: Option<u64>,
            /// The body ended with `Chunk::Failed`.
            broke: bool,
        },
    }

    impl Outcome {
        pub fn body(&self) -> Vec<u8> {
            match self {
                Outcome::Sent { chunks, .. } => chunks.concat(),
                Outcome::Failed => panic!("expected a response, got Failed"),
            }
        }
        pub fn status(&self) -> &str {
            match self {
                Outcome::Sent { status, .. } => status,
                Outcome::Failed => panic!("expected a response, got Failed"),
            }
        }
    }

    pub fn run(py: Python<'_>, app: &WsgiApp, req: &Request) -> Outcome {
        match app.call(py, req, &conn()) {
            Reply::Failed => Outcome::Failed,
            Reply::Response { head, mut body } => {
                let known_len = body.known_len();
                let mut chunks = Vec::new();
                let mut broke = false;
                loop {
                    match body.next_chunk(py) {
                        Chunk::Data(d) => chunks.push(d),
                        Chunk::End => break,
                        Chunk::Failed => {
                            broke = true;
                            break;
                        }
                    }
                }
                body.close(py);
                let text = |b: &[u8]| b.iter().map(|&c| char::from(c)).collect::<String>();
                Outcome::Sent {
                    status: text(&head.status),
                    headers: head
                        .headers
                        .iter()
                        .map(|(n, v)| (text(n), text(v)))
                        .collect(),
                    chunks,
                    known_len,
                    broke,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use pyo3::types::{PyDict, PyList};

    use super::report::captured;
    use super::testing::*;
    use super::*;

    const APPS: &str = r#"
import io
import sys

seen = []
progress = []
closed = []
kept = []

def env_app(environ, start_response):
    seen.append((environ, start_response))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]

def list_app(environ, start_response):
    start_response("200 OK", [])
    return [b"hello", b"", b" world"]

def tuple_app(environ, start_response):
    start_response("200 OK", [])
    return (b"a", b"bc")

def gen_app(environ, start_response):
    start_response("200 OK", [])
    for i in range(3):
        progress.append(i)
        yield b"chunk%d" % i

def finally_gen_app(environ, start_response):
    start_response("200 OK", [])
    try:
        yield b"one"
        yield b"two"
    finally:
        closed.append("generator")

def lazy_start_app(environ, start_response):
    yield b""
    start_response("201 Created", [("X-A", "1")])
    yield b""
    yield b"data"

def empty_gen_app(environ, start_response):
    start_response("204 No Content", [])
    yield b""

def write_app(environ, start_response):
    write = start_response("200 OK", [])
    write(b"first")
    write(b"second")
    return [b"third"]

def write_gen_app(environ, start_response):
    write = start_response("200 OK", [])
    write(b"a")
    yield b"b"
    write(b"c")
    yield b"d"

class Closing:
    def __init__(self, items, fail_at=None):
        self.items = items
        self.fail_at = fail_at
    def __iter__(self):
        for i, item in enumerate(self.items):
            if i == self.fail_at:
                raise RuntimeError("boom mid-body")
            yield item
    def close(self):
        closed.append(self)

def closing_app(environ, start_response):
    start_response("200 OK", [])
    return Closing([b"a", b"b", b"c"])

def closing_fail_late_app(environ, start_response):
    start_response("200 OK", [])
    return Closing([b"a", b"b", b"c"], fail_at=1)

def closing_fail_first_app(environ, start_response):
    start_response("200 OK", [])
    return Closing([b"a"], fail_at=0)

def closing_str_app(environ, start_response):
    start_response("200 OK", [])
    return Closing(["text"])

def closing_no_start_app(environ, start_response):
    return Closing([b"a"])

def raising_app(environ, start_response):
    raise ValueError("app exploded")

def keyboard_app(environ, start_response):
    raise KeyboardInterrupt()

def exit_app(environ, start_response):
    raise SystemExit(3)

def no_start_app(environ, start_response):
    return [b"x"]

def str_item_app(environ, start_response):
    start_response("200 OK", [])
    return ["text"]

def str_later_app(environ, start_response):
    start_response("200 OK", [])
    yield b"ok"
    yield "text"

def make(status, headers):
    def app(environ, start_response):
        start_response(status, headers)
        return [b"x"]
    return app

ok_code_only = make("200", [])
ok_trimmed = make("200 OK", [("X-Pad", " \tv a l\t ")])
bad_status_int = make(200, [])
bad_status_text = make("OK", [])
bad_status_crlf = make("200 OK\r\nX: y", [])
bad_header_name = make("200 OK", [("Bad Name", "v")])
bad_header_crlf = make("200 OK", [("X-Inject", "a\r\nSet-Cookie: evil")])
bad_header_value_type = make("200 OK", [("X", 1)])
bad_header_name_type = make("200 OK", [(b"X", "v")])
bad_header_shape = make("200 OK", [("X",)])
bad_headers_str = make("200 OK", "X: y")
bad_content_length = make("200 OK", [("Content-Length", "12abc")])
ok_content_length = make("200 OK", [("content-length", " 1 ")])

def twice_app(environ, start_response):
    start_response("200 OK", [])
    start_response("500 Oops", [])
    return [b"x"]

def exc_info_before_app(environ, start_response):
    start_response("200 OK", [("X-First", "1")])
    try:
        raise ValueError("x")
    except ValueError:
        start_response("500 Internal Server Error", [("X-Second", "1")], sys.exc_info())
    return [b"error page"]

def exc_info_after_app(environ, start_response):
    start_response("200 OK", [])
    yield b"partial"
    try:
        raise ValueError("late failure")
    except ValueError:
        start_response("500 Internal Server Error", [], sys.exc_info())
    yield b"never"

def exc_info_after_write_app(environ, start_response):
    write = start_response("200 OK", [])
    write(b"x")
    try:
        raise ValueError("after write")
    except ValueError:
        start_response("500 Internal Server Error", [], sys.exc_info())
    return [b"never"]

def write_before_start_app(environ, start_response):
    kept.append(start_response)
    return [b"x"]

def keep_sr_app(environ, start_response):
    kept.append(start_response)
    start_response("200 OK", [])
    return [b"kept"]

def start_then_raise_app(environ, start_response):
    start_response("200 OK", [])
    raise RuntimeError("after start_response")
    yield b"x"

class TrackedFile(io.BytesIO):
    def close(self):
        closed.append("file")
        super().close()

def file_app(environ, start_response):
    start_response("200 OK", [])
    return environ["wsgi.file_wrapper"](TrackedFile(b"x" * 20000), 8192)

def input_app(environ, start_response):
    start_response("200 OK", [])
    inp = environ["wsgi.input"]
    return [inp.readline(), b"|", inp.read(2), b"|", b"".join(inp.readlines())]
"#;

    fn env_of<'py>(m: &Bound<'py, PyModule>) -> Bound<'py, PyDict> {
        let seen = m.getattr("seen").unwrap();
        let last = seen.get_item(-1).unwrap();
        last.get_item(0).unwrap().cast_into::<PyDict>().unwrap()
    }

    fn s(env: &Bound<'_, PyDict>, key: &str) -> Option<String> {
        env.get_item(key)
            .unwrap()
            .map(|v| v.extract::<String>().unwrap())
    }

    #[test]
    fn environ_has_gunicorns_keys_for_a_get_with_query_and_repeated_headers() {
        with_py(|py| {
            let (app, m) = app(py, APPS, "env_app");
            let req = request(
                "GET",
                "/a/b?x=1&y=%20#frag",
                &[
                    ("Host", "example.com"),
                    ("Cookie", "a=1"),
                    ("X-Custom-Thing", "v"),
                    ("cookie", "b=2"),
                    ("Accept", "*/*"),
                    ("X-Utf8", "café"),
                ],
                b"",
            );
            assert_eq!(run(py, &app, &req).body(), b"ok");
            let env = env_of(&m);
            assert_eq!(s(&env, "REQUEST_METHOD").as_deref(), Some("GET"));
            assert_eq!(s(&env, "SCRIPT_NAME").as_deref(), Some(""));
            assert_eq!(s(&env, "PATH_INFO").as_deref(), Some("/a/b"));
            assert_eq!(s(&env, "QUERY_STRING").as_deref(), Some("x=1&y=%20"));
            assert_eq!(s(&env, "RAW_URI").as_deref(), Some("/a/b?x=1&y=%20#frag"));
            assert_eq!(s(&env, "REQUEST_URI"), None);
            assert_eq!(s(&env, "SERVER_NAME").as_deref(), Some("127.0.0.1"));
            assert_eq!(s(&env, "SERVER_PORT").as_deref(), Some("8000"));
            assert_eq!(s(&env, "SERVER_PROTOCOL").as_deref(), Some("HTTP/1.1"));
            assert_eq!(
                s(&env, "SERVER_SOFTWARE"),
                Some(format!("ferrocorn/{}", crate::VERSION))
            );
            assert_eq!(s(&env, "REMOTE_ADDR").as_deref(), Some("10.1.2.3"));
            assert_eq!(s(&env, "REMOTE_PORT").as_deref(), Some("45678"));
            assert_eq!(s(&env, "HTTP_HOST").as_deref(), Some("example.com"));
            assert_eq!(s(&env, "HTTP_COOKIE").as_deref(), Some("a=1,b=2"));
            assert_eq!(s(&env, "HTTP_X_CUSTOM_THING").as_deref(), Some("v"));
            assert_eq!(s(&env, "HTTP_ACCEPT").as_deref(), Some("*/*"));
            assert_eq!(s(&env, "HTTP_X_UTF8").as_deref(), Some("cafÃ©"));
            assert_eq!(s(&env, "CONTENT_TYPE"), None);
            assert_eq!(s(&env, "CONTENT_LENGTH"), None);
            assert_eq!(s(&env, "PROXY_PROTOCOL"), None);
            assert_eq!(s(&env, "wsgi.url_scheme").as_deref(), Some("http"));
            let get = |k: &str| env.get_item(k).unwrap().unwrap();
            assert_eq!(get("wsgi.version").extract::<(i32, i32)>().unwrap(), (1, 0));
            assert!(!get("wsgi.multithread").extract::<bool>().unwrap());
            assert!(get("wsgi.multiprocess").extract::<bool>().unwrap());
            assert!(!get("wsgi.run_once").extract::<bool>().unwrap());
            assert!(get("wsgi.input_terminated").extract::<bool>().unwrap());
            assert!(get("wsgi.errors").hasattr("write").unwrap());
            assert!(get("wsgi.file_wrapper").is_callable());
            assert_eq!(
                get("wsgi.input")
                    .call_method0("read")
                    .unwrap()
                    .extract::<Vec<u8>>()
                    .unwrap(),
                b""
            );
            let http_keys: Vec<String> = env
                .keys()
                .iter()
                .map(|k| k.extract::<String>().unwrap())
                .filter(|k| k.starts_with("HTTP_"))
                .collect();
            assert_eq!(http_keys.len(), 5, "{http_keys:?}");
        });
    }

    #[test]
    fn content_type_and_length_are_not_http_prefixed_and_keep_their_value() {
        with_py(|py| {
            let (app, m) = app(py, APPS, "env_app");
            let req = request(
                "POST",
                "/submit",
                &[("Content-Type", "text/plain"), ("Content-Length", "5")],
                b"hello",
            );
            run(py, &app, &req);
            let env = env_of(&m);
            assert_eq!(s(&env, "REQUEST_METHOD").as_deref(), Some("POST"));
            assert_eq!(s(&env, "CONTENT_TYPE").as_deref(), Some("text/plain"));
            assert_eq!(s(&env, "CONTENT_LENGTH").as_deref(), Some("5"));
            assert_eq!(s(&env, "HTTP_CONTENT_TYPE"), None);
            assert_eq!(s(&env, "HTTP_CONTENT_LENGTH"), None);
            let body = env
                .get_item("wsgi.input")
                .unwrap()
                .unwrap()
                .call_method0("read")
                .unwrap();
            assert_eq!(body.extract::<Vec<u8>>().unwrap(), b"hello");
        });
    }

    #[test]
    fn path_info_is_percent_decoded_to_latin1() {
        with_py(|py| {
            let (app, m) = app(py, APPS, "env_app");
            run(py, &app, &get("/caf%C3%A9/%e9%2Fx%zz?q=%41"));
            let env = env_of(&m);
            assert_eq!(s(&env, "PATH_INFO").as_deref(), Some("/cafÃ©/é/x%zz"));
            assert_eq!(s(&env, "QUERY_STRING").as_deref(), Some("q=%41"));
            assert_eq!(
                s(&env, "RAW_URI").as_deref(),
                Some("/caf%C3%A9/%e9%2Fx%zz?q=%41")
            );
        });
    }

    fn app_with_script_name<'py>(
        py: Python<'py>,
        script_name: &str,
    ) -> (WsgiApp, Bound<'py, PyModule>) {
        let (mut app, m) = app(py, APPS, "env_app");
        app.template =
            Template::with_script_name(py, &worker(), pyo3::types::PyString::new(py, script_name))
                .unwrap();
        (app, m)
    }

    #[test]
    fn script_name_is_stripped_from_path_info() {
        with_py(|py| {
            let (app, m) = app_with_script_name(py, "/app");
            run(py, &app, &get("/app/x%20y"));
            let env = env_of(&m);
            assert_eq!(s(&env, "SCRIPT_NAME").as_deref(), Some("/app"));
            assert_eq!(s(&env, "PATH_INFO").as_deref(), Some("/x y"));
        });
    }

    #[test]
    fn path_outside_script_name_fails() {
        with_py(|py| {
            let (app, m) = app_with_script_name(py, "/app");
            captured::take();
            assert!(matches!(run(py, &app, &get("/other")), Outcome::Failed));
            assert_eq!(
                captured::take(),
                vec!["Invalid request from ip=10.1.2.3: Request path '/other' does not start with SCRIPT_NAME '/app'"]
            );
            assert_eq!(m.getattr("seen").unwrap().len().unwrap(), 0);
        });
    }

    #[test]
    fn script_name_header_overrides_the_process_value() {
        with_py(|py| {
            let (app, m) = app_with_script_name(py, "/app");
            let req = request("GET", "/mount/p", &[("SCRIPT_NAME", "/mount")], b"");
            run(py, &app, &req);
            let env = env_of(&m);
            assert_eq!(s(&env, "SCRIPT_NAME").as_deref(), Some("/mount"));
            assert_eq!(s(&env, "PATH_INFO").as_deref(), Some("/p"));
            assert_eq!(s(&env, "HTTP_SCRIPT_NAME").as_deref(), Some("/mount"));
        });
    }

    #[test]
    fn unix_peer_has_empty_remote_addr_and_no_port() {
        with_py(|py| {
            let (app, m) = app(py, APPS, "env_app");
            let conn = ConnInfo {
                peer: None,
                server_name: "/tmp/sock".into(),
                server_port: "".into(),
                tls: true,
            };
            assert!(matches!(
                app.call(py, &get("/"), &conn),
                Reply::Response { .. }
            ));
            let env = env_of(&m);
            assert_eq!(s(&env, "REMOTE_ADDR").as_deref(), Some(""));
            assert_eq!(s(&env, "REMOTE_PORT"), None);
            assert_eq!(s(&env, "wsgi.url_scheme").as_deref(), Some("https"));
        });
    }

    #[test]
    fn forwarded_https_and_proxy_protocol_show_in_environ() {
        with_py(|py| {
            let (app, m) = app(py, APPS, "env_app");
            let mut req = get("/");
            req.head.https_forwarded = true;
            req.proxy = Some(crate::http::ProxyInfo {
                protocol: "TCP4",
                source: Some("192.0.2.1:1111".parse().unwrap()),
                dest: Some("192.0.2.2:443".parse().unwrap()),
            });
            run(py, &app, &req);
            let env = env_of(&m);
            assert_eq!(s(&env, "wsgi.url_scheme").as_deref(), Some("https"));
            assert_eq!(s(&env, "PROXY_PROTOCOL").as_deref(), Some("TCP4"));
            assert_eq!(s(&env, "REMOTE_ADDR").as_deref(), Some("192.0.2.1"));
            assert_eq!(s(&env, "REMOTE_PORT").as_deref(), Some("1111"));
            assert_eq!(s(&env, "PROXY_ADDR").as_deref(), Some("192.0.2.2"));
            assert_eq!(s(&env, "PROXY_PORT").as_deref(), Some("443"));
        });
    }

    #[test]
    fn each_request_gets_its_own_environ() {
        with_py(|py| {
            let (app, m) = app(py, APPS, "env_app");
            run(py, &app, &request("GET", "/one", &[("X-A", "1")], b""));
            run(py, &app, &get("/two"));
            let seen = m.getattr("seen").unwrap();
            let first = seen
                .get_item(0)
                .unwrap()
                .get_item(0)
                .unwrap()
                .cast_into::<PyDict>()
                .unwrap();
            let second = env_of(&m);
            assert_eq!(s(&first, "PATH_INFO").as_deref(), Some("/one"));
            assert_eq!(s(&second, "PATH_INFO").as_deref(), Some("/two"));
            assert_eq!(s(&second, "HTTP_X_A"), None);
        });
    }

    #[test]
    fn wsgi_input_reads_lines_and_rest() {
        with_py(|py| {
            let (app, _m) = app(py, APPS, "input_app");
            let req = request("POST", "/", &[], b"one\ntwo\nthree\nfour");
            assert_eq!(run(py, &app, &req).body(), b"one\n|tw|o\nthree\nfour");
        });
    }

    #[test]
    fn list_body_is_known_length_and_skips_empty_items() {
        with_py(|py| {
            let (app, _m) = app(py, APPS, "list_app");
            match run(py, &app, &get("/")) {
                Outcome::Sent {
                    status,
                    chunks,
                    known_len,
                    broke,
                    ..
                } => {
                    assert_eq!(status, "200 OK");
                    assert_eq!(chunks, vec![b"hello".to_vec(), b" world".to_vec()]);
                    assert_eq!(known_len, Some(11));
                    assert!(!broke);
                }
                Outcome::Failed => panic!("failed"),
            }
            let (app, _m) = super::testing::app(py, APPS, "tuple_app");
            match run(py, &app, &get("/")) {
                Outcome::Sent { known_len, .. } => assert_eq!(known_len, Some(3)),
                Outcome::Failed => panic!("failed"),
            }
        });
    }

    #[test]
    fn generator_body_is_pulled_lazily() {
        with_py(|py| {
            let (app, m) = app(py, APPS, "gen_app");
            let progress = || {
                m.getattr("progress")
                    .unwrap()
                    .extract::<Vec<i32>>()
                    .unwrap()
            };
            let Reply::Response { head, mut body } = app.call(py, &get("/"), &conn()) else {
                panic!("failed");
            };
            assert_eq!(&*head.status, b"200 OK");
            assert_eq!(body.known_len(), None);
            // Only the first chunk was needed to settle the head.
            assert_eq!(progress(), vec![0]);
            assert!(matches!(body.next_chunk(py), Chunk::Data(d) if d == b"chunk0"));
            assert_eq!(progress(), vec![0]);
            assert!(matches!(body.next_chunk(py), Chunk::Data(d) if d == b"chunk1"));
            assert_eq!(progress(), vec![0, 1]);
            assert!(matches!(body.next_chunk(py), Chunk::Data(d) if d == b"chunk2"));
            assert!(matches!(body.next_chunk(py), Chunk::End));
            assert!(matches!(body.next_chunk(py), Chunk::End));
            body.close(py);
        });
    }

    #[test]
    fn start_response_may_come_late_inside_the_generator() {
        with_py(|py| {
            let (app, _m) = app(py, APPS, "lazy_start_app");
            let out = run(py, &app, &get("/"));
            assert_eq!(out.status(), "201 Created");
            assert_eq!(out.body(), b"data");
            let (app, _m) = super::testing::app(py, APPS, "empty_gen_app");
            let out = run(py, &app, &get("/"));
            assert_eq!(out.status(), "204 No Content");
            assert_eq!(out.body(), b"");
        });
    }

    #[test]
    fn write_data_goes_out_before_the_iterable() {
        with_py(|py| {
            let (app, _m) = app(py, APPS, "write_app");
            match run(py, &app, &get("/")) {
                Outcome::Sent {
                    chunks, known_len, ..
                } => {
                    assert_eq!(
                        chunks,
                        vec![b"first".to_vec(), b"second".to_vec(), b"third".to_vec()]
                    );
                    assert_eq!(known_len, Some(16));
                }
                Outcome::Failed => panic!("failed"),
            }
            let (app, _m) = super::testing::app(py, APPS, "write_gen_app");
            match run(py, &app, &get("/")) {
                Outcome::Sent { chunks, .. } => assert_eq!(chunks.concat(), b"abcd"),
                Outcome::Failed => panic!("failed"),
            }
        });
    }

    fn closed_count(m: &Bound<'_, PyModule>) -> usize {
        m.getattr("closed").unwrap().len().unwrap()
    }

    #[test]
    fn the_environ_the_app_saw_is_handed_back_only_when_asked() {
        with_py(|py| {
            let (app, _m) = app(py, APPS, "closing_app");
            let (reply, environ) = app.call_keeping_environ(py, &get("/"), &conn(), true);
            let Reply::Response { body, .. } = reply else {
                panic!("failed");
            };
            body.close(py);
            let environ = environ.expect("environ kept").into_bound(py);
            let path: String = environ.get_item("PATH_INFO").unwrap().extract().unwrap();
            assert_eq!(path, "/");
            let (reply, environ) = app.call_keeping_environ(py, &get("/"), &conn(), false);
            assert!(environ.is_none());
            if let Reply::Response { body, .. } = reply {
                body.close(py);
            }
        });
    }

    #[test]
    fn close_is_called_once_after_a_normal_end() {
        with_py(|py| {
            let (app, m) = app(py, APPS, "closing_app");
            assert_eq!(run(py, &app, &get("/")).body(), b"abc");
            assert_eq!(closed_count(&m), 1);
        });
    }

    #[test]
    fn close_is_called_once_when_the_client_goes_away() {
        with_py(|py| {
            let (app, m) = app(py, APPS, "closing_app");
            let Reply::Response { mut body, .. } = app.call(py, &get("/"), &conn()) else {
                panic!("failed");
            };
            assert!(matches!(body.next_chunk(py), Chunk::Data(_)));
            assert_eq!(closed_count(&m), 0);
            body.close(py);
            assert_eq!(closed_count(&m), 1);
        });
    }

    #[test]
    fn client_gone_mid_generator_runs_its_finally() {
        with_py(|py| {
            let (app, m) = app(py, APPS, "finally_gen_app");
            let Reply::Response { mut body, .. } = app.call(py, &get("/"), &conn()) else {
                panic!("failed");
            };
            assert!(matches!(body.next_chunk(py), Chunk::Data(d) if d == b"one"));
            assert_eq!(closed_count(&m), 0);
            body.close(py);
            assert_eq!(closed_count(&m), 1);
        });
    }

    #[test]
    fn exception_mid_body_fails_the_body_logs_and_closes_once() {
        with_py(|py| {
            let (app, m) = app(py, APPS, "closing_fail_late_app");
            captured::take();
            match run(py, &app, &get("/")) {
                Outcome::Sent { chunks, broke, .. } => {
                    assert_eq!(chunks, vec![b"a".to_vec()]);
                    assert!(broke);
                }
                Outcome::Failed => panic!("the head was already settled"),
            }
            assert_eq!(closed_count(&m), 1);
            let log = captured::take();
            assert_eq!(log.len(), 1);
            assert!(
                log[0].starts_with("Error handling request\nTraceback"),
                "{}",
                log[0]
            );
            assert!(log[0].contains("RuntimeError: boom mid-body"));
        });
    }

    #[test]
    fn exception_before_the_first_chunk_is_a_failure_and_closes_once() {
        with_py(|py| {
            for name in [
                "closing_fail_first_app",
                "closing_str_app",
                "closing_no_start_app",
            ] {
                let (app, m) = app(py, APPS, name);
                assert!(
                    matches!(run(py, &app, &get("/")), Outcome::Failed),
                    "{name}"
                );
                assert_eq!(closed_count(&m), 1, "{name}");
            }
        });
    }

    #[test]
    fn app_exception_is_a_failure_with_its_traceback_logged() {
        with_py(|py| {
            let (app, _m) = app(py, APPS, "raising_app");
            captured::take();
            assert!(matches!(run(py, &app, &get("/boom?x=1")), Outcome::Failed));
            let log = captured::take();
            assert_eq!(log.len(), 1);
            let lines: Vec<&str> = log[0].lines().collect();
            assert_eq!(lines[0], "Error handling request GET /boom?x=1");
            assert_eq!(lines[1], "Traceback (most recent call last):");
            assert!(log[0].contains("in raising_app"));
            assert_eq!(*lines.last().unwrap(), "ValueError: app exploded");
        });
    }

    #[test]
    fn keyboard_interrupt_and_system_exit_from_the_app_are_failures() {
        with_py(|py| {
            for (name, exc) in [
                ("keyboard_app", "KeyboardInterrupt"),
                ("exit_app", "SystemExit: 3"),
            ] {
                let (app, _m) = app(py, APPS, name);
                captured::take();
                assert!(matches!(run(py, &app, &get("/")), Outcome::Failed));
                assert!(captured::take()[0].ends_with(exc), "{name}");
            }
        });
    }

    #[test]
    fn missing_start_response_or_non_bytes_is_a_failure() {
        with_py(|py| {
            for (name, expect) in [
                ("no_start_app", "did not call start_response"),
                ("str_item_app", "TypeError: 'text' is not a byte"),
            ] {
                let (app, _m) = app(py, APPS, name);
                captured::take();
                assert!(
                    matches!(run(py, &app, &get("/")), Outcome::Failed),
                    "{name}"
                );
                let log = captured::take();
                assert!(log[0].contains(expect), "{name}: {log:?}");
            }
        });
    }

    #[test]
    fn non_bytes_after_the_head_breaks_the_body() {
        with_py(|py| {
            let (app, _m) = app(py, APPS, "str_later_app");
            captured::take();
            match run(py, &app, &get("/")) {
                Outcome::Sent { chunks, broke, .. } => {
                    assert_eq!(chunks, vec![b"ok".to_vec()]);
                    assert!(broke);
                }
                Outcome::Failed => panic!("the head was already settled"),
            }
            assert!(captured::take()[0].contains("is not a byte"));
        });
    }

    #[test]
    fn valid_status_and_headers_are_kept_as_latin1_with_values_trimmed() {
        with_py(|py| {
            let (app, _m) = app(py, APPS, "ok_code_only");
            assert_eq!(run(py, &app, &get("/")).status(), "200");
            let (app, _m) = super::testing::app(py, APPS, "ok_content_length");
            assert_eq!(run(py, &app, &get("/")).body(), b"x");
            let (app, _m) = super::testing::app(py, APPS, "ok_trimmed");
            match run(py, &app, &get("/")) {
                Outcome::Sent { headers, .. } => {
                    assert_eq!(headers, vec![("X-Pad".to_string(), "v a l".to_string())])
                }
                Outcome::Failed => panic!("failed"),
            }
        });
    }

    #[test]
    fn invalid_status_or_headers_fail_the_request() {
        with_py(|py| {
            for (name, expect) in [
                ("bad_status_int", "TypeError: 200 is not a string"),
                ("bad_status_text", "Invalid response status 'OK'"),
                ("bad_status_crlf", "Invalid response status"),
                ("bad_header_name", "Invalid response header name 'Bad Name'"),
                (
                    "bad_header_crlf",
                    "Invalid response header value for 'X-Inject'",
                ),
                ("bad_header_value_type", "TypeError: 1 is not a string"),
                ("bad_header_name_type", "TypeError: b'X' is not a string"),
                ("bad_header_shape", "is not a (name, value) tuple"),
                ("bad_headers_str", "TypeError: headers must be a list"),
                (
                    "bad_content_length",
                    "Invalid response header value for 'Content-Length': not a number",
                ),
            ] {
                let (app, _m) = app(py, APPS, name);
                captured::take();
                assert!(
                    matches!(run(py, &app, &get("/")), Outcome::Failed),
                    "{name}"
                );
                let log = captured::take();
                assert!(log[0].contains(expect), "{name}: {log:?}");
                assert!(!log[0].contains("evil"), "the bad value is not logged");
            }
        });
    }

    #[test]
    fn second_start_response_without_exc_info_is_an_error() {
        with_py(|py| {
            let (app, _m) = app(py, APPS, "twice_app");
            captured::take();
            assert!(matches!(run(py, &app, &get("/")), Outcome::Failed));
            assert!(captured::take()[0].contains("AssertionError: Response headers already set!"));
        });
    }

    #[test]
    fn exc_info_before_the_head_is_sent_replaces_it() {
        with_py(|py| {
            let (app, _m) = app(py, APPS, "exc_info_before_app");
            match run(py, &app, &get("/")) {
                Outcome::Sent {
                    status,
                    headers,
                    chunks,
                    ..
                } => {
                    assert_eq!(status, "500 Internal Server Error");
                    assert_eq!(headers, vec![("X-Second".to_string(), "1".to_string())]);
                    assert_eq!(chunks.concat(), b"error page");
                }
                Outcome::Failed => panic!("failed"),
            }
        });
    }

    #[test]
    fn exc_info_after_the_head_is_sent_reraises() {
        with_py(|py| {
            let (app, _m) = app(py, APPS, "exc_info_after_app");
            captured::take();
            match run(py, &app, &get("/")) {
                Outcome::Sent {
                    status,
                    chunks,
                    broke,
                    ..
                } => {
                    assert_eq!(status, "200 OK");
                    assert_eq!(chunks, vec![b"partial".to_vec()]);
                    assert!(broke);
                }
                Outcome::Failed => panic!("the head was already settled"),
            }
            assert!(captured::take()[0].contains("ValueError: late failure"));

            let (app, _m) = super::testing::app(py, APPS, "exc_info_after_write_app");
            captured::take();
            assert!(matches!(run(py, &app, &get("/")), Outcome::Failed));
            assert!(captured::take()[0].contains("ValueError: after write"));
        });
    }

    fn spare(app: &WsgiApp) -> Option<usize> {
        with_py(|py| app.pool.spare_ptr(py))
    }

    #[test]
    fn start_response_is_reused_unless_the_app_keeps_it() {
        with_py(|py| {
            let (app, _m) = app(py, APPS, "list_app");
            run(py, &app, &get("/1"));
            let first = spare(&app).expect("returned to the pool");
            run(py, &app, &get("/2"));
            assert_eq!(spare(&app), Some(first), "the same callable served both");

            let (app, m) = super::testing::app(py, APPS, "keep_sr_app");
            assert_eq!(run(py, &app, &get("/")).body(), b"kept");
            assert_eq!(spare(&app), None, "a kept callable is not pooled");
            assert_eq!(run(py, &app, &get("/")).body(), b"kept");
            let kept = m.getattr("kept").unwrap().cast_into::<PyList>().unwrap();
            let (first, second) = (kept.get_item(0).unwrap(), kept.get_item(1).unwrap());
            assert!(!first.is(&second));
            // The stale one still refuses a second call without exc_info:
            // it kept its own state, apart from later requests'.
            let err = first.call1(("200 OK", PyList::empty(py))).unwrap_err();
            assert!(err.to_string().contains("already set"));
        });
    }

    #[test]
    fn start_response_state_is_reset_after_failures() {
        with_py(|py| {
            let (app, _m) = app(py, APPS, "start_then_raise_app");
            assert!(matches!(run(py, &app, &get("/")), Outcome::Failed));
            assert!(matches!(run(py, &app, &get("/")), Outcome::Failed));
            let log = captured::take();
            assert!(
                log.iter()
                    .all(|l| l.contains("RuntimeError: after start_response")),
                "{log:?}"
            );

            let (app, _m) = super::testing::app(py, APPS, "exc_info_after_app");
            for _ in 0..2 {
                assert_eq!(run(py, &app, &get("/")).status(), "200 OK");
            }
            captured::take();
        });
    }

    #[test]
    fn file_wrapper_is_iterated_in_blocks_and_closes_the_file() {
        with_py(|py| {
            let (app, m) = app(py, APPS, "file_app");
            let Reply::Response { mut body, .. } = app.call(py, &get("/"), &conn()) else {
                panic!("failed");
            };
            let file = body.file(py).expect("a file_wrapper body exposes its file");
            assert_eq!(
                file.call_method0("tell").unwrap().extract::<u64>().unwrap(),
                0
            );
            let mut sizes = Vec::new();
            while let Chunk::Data(d) = body.next_chunk(py) {
                sizes.push(d.len());
            }
            assert_eq!(sizes, vec![8192, 8192, 3616]);
            assert!(body.file(py).is_none());
            body.close(py);
            assert_eq!(
                m.getattr("closed")
                    .unwrap()
                    .extract::<Vec<String>>()
                    .unwrap(),
                vec!["file"]
            );
        });
    }
}

/// Timing, not correctness: `cargo test --release --features python --lib
/// wsgi::bench -- --ignored --nocapture`.
#[cfg(test)]
mod bench {
    use std::time::Instant;

    use super::testing::*;
    use super::*;

    const HELLO: &str = r#"
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"Hello, World!"]
"#;

    #[test]
    #[ignore]
    fn per_request_cost_of_a_hello_world_call() {
        with_py(|py| {
            let (app, _m) = app(py, HELLO, "app");
            let req = request(
                "GET",
                "/plaintext",
                &[
                    ("Host", "localhost:8080"),
                    ("User-Agent", "wrk"),
                    ("Accept", "*/*"),
                    ("Connection", "keep-alive"),
                ],
                b"",
            );
            let conn = conn();
            let n = 200_000;
            // On-CPU time of this thread: robust to a busy machine.
            let cpu_ns = || -> u64 {
                std::fs::read_to_string("/proc/thread-self/schedstat")
                    .ok()
                    .and_then(|s| s.split_whitespace().next()?.parse().ok())
                    .unwrap_or(0)
            };
            for round in 0..5 {
                let start = Instant::now();
                let cpu_start = cpu_ns();
                for _ in 0..n {
                    match app.call(py, &req, &conn) {
                        Reply::Response { head, mut body } => {
                            std::hint::black_box(&head);
                            while let Chunk::Data(d) = body.next_chunk(py) {
                                std::hint::black_box(d);
                            }
                            body.close(py);
                        }
                        Reply::Failed => panic!("failed"),
                    }
                }
                let per = start.elapsed().as_nanos() as f64 / n as f64;
                let cpu = (cpu_ns() - cpu_start) as f64 / n as f64;
                println!("round {round}: {per:.0} ns per request, {cpu:.0} ns on CPU");
            }
        });
    }
}
