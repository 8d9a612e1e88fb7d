//! The ASGI bridge (ASGI 3.0, HTTP spec 2.4, lifespan): one thread per
//! worker runs an asyncio (or uvloop) event loop with the app; the worker's
//! loop thread hands it complete requests and gets `Output` messages back.
//!
//! ```text
//! loop thread ── submit(Job) ──▶ Shared inbox + eventfd ──▶ asyncio loop (add_reader)
//!      ▲                                                     │ one task per request
//!      └──────────── Mailbox (Head, Data, End, Failed) ◀─────┘ Cycle.send
//! ```
//!
//! Flow control: a `send` that leaves too many bytes unwritten waits on a
//! future resolved when the loop thread reports room (`Flow::on_room`, a
//! note through the same eventfd); `Flow::on_hangup` gives `http.disconnect`
//! and, after `--asgi-disconnect-grace-period`, cancels an app still
//! producing a response nobody will read.
//!
//! The asyncio glue (futures, tasks, lifespan) is `glue.py` next to this file,
//! compiled into the extension; the per-message work is in `cycle` (Rust).
//! Imports `handoff`, `http` (the request, ConnInfo), `config` (the
//! settings' enums), `sys` and `log`; never `wsgi`, `engine` or `worker`.

#![forbid(unsafe_code)]

mod cycle;
mod hub;
mod inbox;
mod scope;
mod websocket;

use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyModule;

use crate::config::{AsgiLifespan, AsgiLoop};
use crate::handoff::{Job, Mailbox, Runner};

pub use cycle::BODY_PIECE;
use hub::{Context, Hub};
use inbox::Shared;

/// The asyncio side, compiled from its source at start-up so it needs no
/// import path (and works the same in the tests).
/// Compiled into the extension, not shipped as a module of its own: the
/// glue is loaded from here only (as `ferrocorn._asgi`).
const GLUE: &str = include_str!("glue.py");
/// The glue's file name in tracebacks.
const GLUE_FILE: &str = "ferrocorn/_asgi.py";

/// How long `stop` waits beyond its timeout for the loop thread to end
/// (lifespan shutdown and cancellation).
const STOP_MARGIN: Duration = Duration::from_secs(5);

/// The ASGI settings.
#[derive(Clone, Debug)]
pub struct AsgiOptions {
    pub event_loop: AsgiLoop,
    pub lifespan: AsgiLifespan,
    pub disconnect_grace: Duration,
    pub root_path: String,
}

impl AsgiOptions {
    pub fn from_config(cfg: &crate::config::Config) -> AsgiOptions {
        AsgiOptions {
            event_loop: cfg.asgi_loop,
            lifespan: cfg.asgi_lifespan,
            disconnect_grace: cfg.asgi_disconnect_grace_period,
            root_path: cfg.root_path.clone(),
        }
    }
}

/// A running ASGI app: its event-loop thread and the queue into it.
pub struct AsgiApp {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    /// Receives once the loop thread has ended.
    ended: mpsc::Receiver<()>,
}

/// Whether `obj` is an ASGI 3 app: a coroutine function, or an object
/// whose `__call__` is one (FastAPI and Starlette apps).
pub fn is_asgi_app(py: Python<'_>, obj: &Bound<'_, PyAny>) -> bool {
    let check = || -> PyResult<bool> {
        let inspect = py.import("inspect")?;
        let is_coro = |o: &Bound<'_, PyAny>| -> PyResult<bool> {
            inspect
                .call_method1("iscoroutinefunction", (o,))?
                .is_truthy()
        };
        if is_coro(obj)? {
            return Ok(true);
        }
        // A plain function is not an instance with __call__ of interest.
        if inspect.call_method1("isroutine", (obj,))?.is_truthy()?
            || inspect.call_method1("isclass", (obj,))?.is_truthy()?
        {
            return Ok(false);
        }
        match obj.getattr("__call__") {
            Ok(call) => is_coro(&call),
            Err(_) => Ok(false),
        }
    };
    check().unwrap_or(false)
}

/// The traceback of `err` as Python prints it.
fn traceback(py: Python<'_>, err: &PyErr) -> String {
    crate::py::exception_text(py, err)
}

/// Why the ASGI app could not start (its lifespan startup failed, or the
/// event-loop thread could not run): the worker exits as for a failed import.
#[derive(Debug)]
pub struct StartError(pub String);

impl AsgiApp {
    /// Start the event-loop thread for `app` and run the lifespan startup;
    /// returns once the app is ready to serve, or with the reason it is
    /// not (a failed startup: the worker exits as for a failed import).
    /// Call with the interpreter lock held (it is released while waiting).
    pub fn start(
        py: Python<'_>,
        app: Py<PyAny>,
        opts: AsgiOptions,
        mailbox: Arc<Mailbox>,
    ) -> Result<AsgiApp, StartError> {
        let err = |e: PyErr| StartError(traceback(py, &e));
        let glue = PyModule::from_code(
            py,
            &std::ffi::CString::new(GLUE).map_err(|e| StartError(e.to_string()))?,
            &std::ffi::CString::new(GLUE_FILE).map_err(|e| StartError(e.to_string()))?,
            c"ferrocorn._asgi",
        )
        .map_err(err)?;
        // Tracebacks through the glue show its lines: linecache has them
        // from here (mtime None: never checked against a file).
        let lines: Vec<&str> = GLUE.split_inclusive('\n').collect();
        py.import("linecache")
            .and_then(|lc| lc.getattr("cache"))
            .and_then(|cache| cache.set_item(GLUE_FILE, (GLUE.len(), py.None(), lines, GLUE_FILE)))
            .map_err(err)?;
        // The note kinds are the inbox's: the glue gets them from here.
        glue.setattr("NOTE_ROOM", inbox::NOTE_ROOM).map_err(err)?;
        glue.setattr("NOTE_HANGUP", inbox::NOTE_HANGUP)
            .map_err(err)?;
        glue.setattr("NOTE_INBOUND", inbox::NOTE_INBOUND)
            .map_err(err)?;
        let run = glue.getattr("run").map_err(err)?.unbind();
        let shared = Arc::new(
            Shared::new()
                .map_err(|e| StartError(format!("cannot create the ASGI eventfd: {e}")))?,
        );
        let ctx = Arc::new(Context {
            root_path: opts.root_path.clone(),
        });
        let (started_tx, started_rx) = mpsc::channel();
        let hub = Py::new(py, Hub::new(shared.clone(), mailbox, ctx, started_tx)).map_err(err)?;
        let (ended_tx, ended) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("asgi".into())
            .spawn(move || {
                Python::attach(|py| {
                    let args = (
                        hub.clone_ref(py),
                        app,
                        opts.event_loop.as_str(),
                        opts.lifespan.as_str(),
                        opts.disconnect_grace.as_secs_f64(),
                    );
                    if let Err(e) = run.bind(py).call1(args) {
                        let text = traceback(py, &e);
                        if !hub.get().report_started(Some(text.clone())) {
                            crate::error!("The ASGI event loop failed:\n{text}");
                        }
                    }
                    // Ended without a word (cannot happen unless the glue
                    // is broken): the waiting starter must not hang.
                    hub.get()
                        .report_started(Some("the ASGI event loop ended at start-up".into()));
                    drop(hub);
                });
                let _ = ended_tx.send(());
            })
            .map_err(|e| StartError(format!("cannot start the ASGI thread: {e}")))?;
        let outcome = py.detach(move || started_rx.recv());
        let app = AsgiApp {
            shared,
            thread: Some(thread),
            ended,
        };
        match outcome {
            Ok(None) => Ok(app),
            Ok(Some(message)) => {
                let mut app = app;
                py.detach(|| app.join(STOP_MARGIN));
                Err(StartError(message))
            }
            Err(_) => Err(StartError(
                "the ASGI event loop thread ended before the app started".into(),
            )),
        }
    }

    /// Wait up to `limit` for the loop thread to end, then join it.
    fn join(&mut self, limit: Duration) {
        if self.ended.recv_timeout(limit).is_ok() {
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }
}

impl Runner for AsgiApp {
    fn submit(&self, job: Job) {
        self.shared.push_job(job);
    }

    fn backlog(&self) -> usize {
        self.shared.backlog()
    }

    fn alive_at_ms(&self) -> Option<u64> {
        Some(
            self.shared
                .beat_ms
                .load(std::sync::atomic::Ordering::Relaxed),
        )
    }

    /// Requests in flight get `timeout` to finish (then they are
    /// cancelled), the lifespan shutdown runs, the loop stops. Call without
    /// the interpreter lock: the loop thread needs it to finish.
    fn stop(&mut self, timeout: Duration) {
        if self.thread.is_none() {
            return;
        }
        self.shared.request_stop(timeout);
        self.join(timeout + STOP_MARGIN);
        if self.thread.is_some() {
            crate::warn!("The ASGI event loop did not stop in time");
        }
    }
}

impl Drop for AsgiApp {
    fn drop(&mut self) {
        if self.thread.is_some() {
            // Not joined here: the caller may hold the interpreter lock.
            self.shared.request_stop(Duration::ZERO);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Instant;

    use super::*;
    use crate::handoff::{Flow, Output, Ticket};
    use crate::http::Request;
    use crate::wsgi::testing::{conn, module, request, with_py};

    /// An app started on its own event-loop thread, and what it posted.
    struct Rig {
        app: AsgiApp,
        mailbox: Arc<Mailbox>,
        module: Py<PyModule>,
        next: u64,
        got: HashMap<u64, Vec<Output>>,
    }

    fn options(lifespan: AsgiLifespan) -> AsgiOptions {
        AsgiOptions {
            event_loop: AsgiLoop::Asyncio,
            lifespan,
            disconnect_grace: Duration::ZERO,
            root_path: String::new(),
        }
    }

    fn start_with(code: &str, opts: AsgiOptions) -> Result<Rig, String> {
        let mailbox = Arc::new(Mailbox::new().expect("eventfd"));
        let (started, module) = with_py(|py| {
            let (_, m) = module(py, code);
            let app = m.getattr("app").expect("fixture has app").unbind();
            (AsgiApp::start(py, app, opts, mailbox.clone()), m.unbind())
        });
        started.map_err(|e| e.0).map(|app| Rig {
            app,
            mailbox,
            module,
            next: 0,
            got: HashMap::new(),
        })
    }

    fn start(code: &str) -> Rig {
        match start_with(code, options(AsgiLifespan::Auto)) {
            Ok(r) => r,
            Err(e) => panic!("the app did not start: {e}"),
        }
    }

    impl Rig {
        fn submit(&mut self, req: Request) -> (u64, Arc<Flow>) {
            self.next += 1;
            let flow = Arc::new(Flow::new());
            self.app.submit(Job {
                ticket: Ticket {
                    conn: 1,
                    serial: self.next,
                },
                req,
                conn: conn(),
                flow: flow.clone(),
                arrived: Instant::now(),
                closing: false,
                websocket: None,
            });
            (self.next, flow)
        }

        /// Submit a WebSocket upgrade offering `subprotocols`.
        fn submit_ws(&mut self, path: &str, subprotocols: &[&str]) -> (u64, Arc<Flow>) {
            self.next += 1;
            let flow = Arc::new(Flow::new());
            self.app.submit(Job {
                ticket: Ticket {
                    conn: 1,
                    serial: self.next,
                },
                req: request("GET", path, &[("Upgrade", "websocket")], b""),
                conn: conn(),
                flow: flow.clone(),
                arrived: Instant::now(),
                closing: false,
                websocket: Some(subprotocols.iter().map(|p| p.to_string()).collect()),
            });
            (self.next, flow)
        }

        /// Wait (up to 5 s) until `done` holds for what `serial` posted.
        fn wait_for(&mut self, serial: u64, done: impl Fn(&[Output]) -> bool) -> &[Output] {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let mut batch = Vec::new();
                self.mailbox.drain(&mut batch);
                for (t, out) in batch {
                    self.got.entry(t.serial).or_default().push(out);
                }
                let outs = self.got.get(&serial).map(Vec::as_slice).unwrap_or(&[]);
                if done(outs) || Instant::now() > deadline {
                    break;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            self.got.get(&serial).map(Vec::as_slice).unwrap_or(&[])
        }

        /// Everything `serial` posted once it ended (End or Failed).
        fn finished(&mut self, serial: u64) -> &[Output] {
            self.wait_for(serial, |o| {
                matches!(o.last(), Some(Output::End) | Some(Output::Failed))
            })
        }

        /// A Python expression evaluated in the fixture module.
        fn eval(&self, expr: &str) -> String {
            with_py(|py| {
                let m = self.module.bind(py);
                let code = std::ffi::CString::new(expr).expect("no NUL");
                py.eval(&code, Some(&m.dict()), None)
                    .and_then(|v| v.str().map(|s| s.to_string()))
                    .unwrap_or_else(|e| format!("<{e}>"))
            })
        }

        fn stop(mut self) -> Self {
            self.app.stop(Duration::from_secs(2));
            self
        }
    }

    fn head_of(outs: &[Output]) -> (String, Vec<(String, String)>, Option<u64>) {
        match outs.first() {
            Some(Output::Head {
                status,
                headers,
                known_len,
            }) => (
                String::from_utf8_lossy(status).into_owned(),
                headers
                    .iter()
                    .map(|(n, v)| {
                        (
                            String::from_utf8_lossy(n).into_owned(),
                            String::from_utf8_lossy(v).into_owned(),
                        )
                    })
                    .collect(),
                *known_len,
            ),
            other => panic!("expected a head first, got {other:?}"),
        }
    }

    fn body_of(outs: &[Output]) -> Vec<u8> {
        outs.iter()
            .filter_map(|o| match o {
                Output::Data(d) => Some(d.as_slice()),
                _ => None,
            })
            .collect::<Vec<_>>()
            .concat()
    }

    const ECHO: &str = r#"
import json

async def app(scope, receive, send):
    if scope["type"] != "http":
        raise RuntimeError("http only")
    chunks = []
    events = 0
    while True:
        event = await receive()
        events += 1
        chunks.append(event.get("body", b""))
        if not event.get("more_body"):
            break
    body = b"".join(chunks)
    info = {k: scope[k] for k in ("type", "asgi", "http_version", "method", "scheme",
                                   "path", "root_path", "client", "server")}
    info["raw_path"] = scope["raw_path"].decode("latin-1")
    info["query_string"] = scope["query_string"].decode("latin-1")
    info["headers"] = [[n.decode("latin-1"), v.decode("latin-1")] for n, v in scope["headers"]]
    info["events"] = events
    info["body_len"] = len(body)
    info["state"] = "state" in scope
    out = json.dumps(info).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": out})
"#;

    fn json_body(outs: &[Output]) -> serde_json::Value {
        serde_json::from_slice(&body_of(outs)).expect("the app answers JSON")
    }

    #[test]
    fn a_request_gets_head_body_and_end_with_the_scope_the_spec_describes() {
        let mut rig = start(ECHO);
        let (id, _flow) = rig.submit(request(
            "GET",
            "/caf%C3%A9/x%2Fy?a=1&b=%20",
            &[("Host", "example.com"), ("X-Custom-Thing", "Value")],
            b"",
        ));
        let outs = rig.finished(id);
        let (status, headers, known_len) = head_of(outs);
        assert_eq!(status, "200 OK");
        assert_eq!(
            headers,
            [("content-type".into(), "application/json".into())]
        );
        assert_eq!(known_len, Some(body_of(outs).len() as u64));
        assert!(matches!(outs.last(), Some(Output::End)));
        let v = json_body(outs);
        assert_eq!(v["type"], "http");
        assert_eq!(v["asgi"]["version"], "3.0");
        assert_eq!(v["asgi"]["spec_version"], "2.4");
        assert_eq!(v["http_version"], "1.1");
        assert_eq!(v["method"], "GET");
        assert_eq!(v["scheme"], "http");
        assert_eq!(v["path"], "/café/x/y");
        assert_eq!(v["raw_path"], "/caf%C3%A9/x%2Fy");
        assert_eq!(v["query_string"], "a=1&b=%20");
        assert_eq!(v["root_path"], "");
        assert_eq!(v["client"], serde_json::json!(["10.1.2.3", 45678]));
        assert_eq!(v["server"], serde_json::json!(["127.0.0.1", 8000]));
        assert_eq!(
            v["headers"],
            serde_json::json!([["host", "example.com"], ["x-custom-thing", "Value"]])
        );
        assert_eq!(v["events"], 1);
        assert_eq!(v["body_len"], 0);
        rig.stop();
    }

    #[test]
    fn root_path_prefixes_path_and_raw_path() {
        let mut opts = options(AsgiLifespan::Off);
        opts.root_path = "/api".into();
        let mut rig = start_with(ECHO, opts).expect("starts");
        let (id, _flow) = rig.submit(request("GET", "/items/1", &[], b""));
        let v = json_body(rig.finished(id));
        assert_eq!(v["root_path"], "/api");
        assert_eq!(v["path"], "/api/items/1");
        assert_eq!(v["raw_path"], "/api/items/1");
        rig.stop();
    }

    #[test]
    fn request_body_arrives_in_64k_pieces_with_more_body() {
        let mut rig = start(ECHO);
        let body = vec![b'x'; 2 * BODY_PIECE + 10];
        let (id, _flow) = rig.submit(request("POST", "/", &[], &body));
        let v = json_body(rig.finished(id));
        assert_eq!(v["events"], 3);
        assert_eq!(v["body_len"], body.len());
        rig.stop();
    }

    #[test]
    fn a_streamed_body_comes_as_it_is_queued_and_the_first_receive_asks_for_it() {
        use crate::handoff::Inbound;
        let mut rig = start(ECHO);
        let mut req = request("POST", "/", &[], b"");
        req.body = crate::http::RequestBody::Streamed;
        let (id, flow) = rig.submit(req);
        // The first receive() tells the loop (100 Continue, read on).
        let outs = rig.wait_for(id, |o| !o.is_empty());
        assert!(matches!(outs, [Output::Resume]), "{outs:?}");
        flow.push_inbound(Inbound::Body(vec![1; 10]));
        flow.push_inbound(Inbound::Body(vec![2; 20]));
        flow.push_inbound(Inbound::BodyEnd);
        let v = json_body(rig.finished(id));
        assert_eq!(v["events"], 3);
        assert_eq!(v["body_len"], 30);
        rig.stop();
    }

    #[test]
    fn a_streamed_body_that_is_lost_gives_http_disconnect() {
        use crate::handoff::Inbound;
        let mut rig = start(DISCONNECT);
        let mut req = request("POST", "/wait", &[], b"");
        req.body = crate::http::RequestBody::Streamed;
        let (id, flow) = rig.submit(req);
        flow.push_inbound(Inbound::Body(b"part".to_vec()));
        flow.push_inbound(Inbound::BodyLost);
        let outs = rig.finished(id);
        assert!(matches!(outs.last(), Some(Output::End)), "{outs:?}");
        assert_eq!(rig.eval("seen"), "['http.request', 'http.disconnect']");
        rig.stop();
    }

    const FAILING: &str = r#"
async def app(scope, receive, send):
    if scope["type"] != "http":
        raise RuntimeError("no lifespan here")
    path = scope["path"]
    if path == "/before":
        raise ValueError("boom before")
    if path == "/silent":
        return
    if path == "/unfinished":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        return
    if path == "/bad-header":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x", b"a\r\nb")]})
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"part", "more_body": True})
    raise ValueError("boom after")
"#;

    #[test]
    fn an_exception_before_the_response_starts_is_failed_alone() {
        let mut rig = start(FAILING);
        for path in ["/before", "/silent", "/bad-header"] {
            let (id, _flow) = rig.submit(request("GET", path, &[], b""));
            let outs = rig.finished(id);
            assert!(
                matches!(outs, [Output::Failed]),
                "{path}: expected Failed alone, got {outs:?}"
            );
        }
        rig.stop();
    }

    #[test]
    fn an_exception_after_the_head_is_failed_after_the_data() {
        let mut rig = start(FAILING);
        for path in ["/after", "/unfinished"] {
            let (id, _flow) = rig.submit(request("GET", path, &[], b""));
            let outs = rig.finished(id);
            assert!(
                matches!(outs, [Output::Head { known_len: None, .. }, Output::Data(d), Output::Failed] if d == b"part"),
                "{path}: {outs:?}"
            );
        }
        rig.stop();
    }

    const TRAILERS: &str = r#"
async def app(scope, receive, send):
    if scope["type"] != "http":
        raise RuntimeError("no lifespan here")
    path = scope["path"]
    assert "http.response.trailers" in scope["extensions"]
    await send({"type": "http.response.start", "status": 200, "headers": [],
                "trailers": path != "/unannounced"})
    if path == "/early":
        await send({"type": "http.response.trailers", "headers": [(b"a", b"1")]})
    await send({"type": "http.response.body", "body": b"all"})
    headers = [(b"te", b"x")] if path == "/forbidden" else [(b"grpc-status", b"0")]
    await send({"type": "http.response.trailers", "headers": headers, "more_trailers": True})
    await send({"type": "http.response.trailers", "headers": [(b"x-sum", b"abc")]})
"#;

    #[test]
    fn trailers_follow_the_body_when_the_client_takes_them() {
        let mut rig = start(TRAILERS);
        let (id, _flow) = rig.submit(request("GET", "/", &[("TE", "gzip, trailers")], b""));
        let outs = rig.finished(id);
        assert!(
            matches!(outs, [Output::Head { known_len: None, .. }, Output::Data(d), Output::Trailers(t), Output::End]
                if d == b"all" && t.len() == 2 && t[0].0 == b"grpc-status" && t[1].1 == b"abc"),
            "{outs:?}"
        );
        // No `TE: trailers`: the body ends without them.
        let (id, _flow) = rig.submit(request("GET", "/", &[], b""));
        let outs = rig.finished(id);
        assert!(
            matches!(
                outs,
                [
                    Output::Head {
                        known_len: None,
                        ..
                    },
                    Output::Data(_),
                    Output::End
                ]
            ),
            "{outs:?}"
        );
        rig.stop();
    }

    #[test]
    fn trailers_out_of_order_or_forbidden_fail_the_response() {
        let mut rig = start(TRAILERS);
        // Without `"trailers": True` the last body completed the response:
        // the trailers message after it is the app's error alone.
        for (path, failed) in [
            ("/early", true),
            ("/forbidden", true),
            ("/unannounced", false),
        ] {
            let (id, _flow) = rig.submit(request("GET", path, &[("TE", "trailers")], b""));
            let outs = rig.finished(id);
            let last_failed = matches!(outs.last(), Some(Output::Failed));
            assert_eq!(last_failed, failed, "{path}: {outs:?}");
            assert!(
                !outs.iter().any(|o| matches!(o, Output::Trailers(_))),
                "{path}: {outs:?}"
            );
        }
        rig.stop();
    }

    const STREAM: &str = r#"
progress = []

async def app(scope, receive, send):
    if scope["type"] != "http":
        raise RuntimeError("no lifespan here")
    await send({"type": "http.response.start", "status": 200, "headers": []})
    try:
        for i in range(4):
            await send({"type": "http.response.body", "body": b"x" * 65536, "more_body": True})
            progress.append(i)
        await send({"type": "http.response.body", "body": b""})
        progress.append("end")
    except OSError as e:
        progress.append(type(e).__name__)
        raise
"#;

    #[test]
    fn send_waits_while_the_output_is_unwritten_and_resumes_when_written() {
        let mut rig = start(STREAM);
        let (id, flow) = rig.submit(request("GET", "/", &[], b""));
        rig.wait_for(id, |o| o.len() >= 2);
        std::thread::sleep(Duration::from_millis(100));
        // 64 KiB handed over reach the high-water mark: the app waits.
        assert_eq!(rig.wait_for(id, |_| true).len(), 2);
        assert_eq!(rig.eval("progress"), "[]");
        for seen in 3..=5 {
            flow.written(65536);
            // The next chunk is handed over only now.
            assert_eq!(rig.wait_for(id, |o| o.len() >= seen).len(), seen);
        }
        flow.written(65536);
        let outs = rig.finished(id);
        assert_eq!(body_of(outs).len(), 4 * 65536);
        assert!(matches!(outs.last(), Some(Output::End)));
        assert_eq!(rig.eval("progress"), "[0, 1, 2, 3, 'end']");
        rig.stop();
    }

    #[test]
    fn a_send_after_the_client_is_gone_raises_an_oserror() {
        let mut rig = start(STREAM);
        let (id, flow) = rig.submit(request("GET", "/", &[], b""));
        rig.wait_for(id, |o| o.len() >= 2);
        flow.close();
        let outs = rig.finished(id);
        assert!(matches!(outs.last(), Some(Output::Failed)), "{outs:?}");
        // The waiting send woke up and raised.
        assert_eq!(rig.eval("progress"), "['ClientDisconnected']");
        rig.stop();
    }

    const DISCONNECT: &str = r#"
import asyncio
seen = []

async def app(scope, receive, send):
    if scope["type"] != "http":
        raise RuntimeError("no lifespan here")
    seen.append((await receive())["type"])
    if scope["path"] == "/wait":
        seen.append((await receive())["type"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"late"})
    else:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"", "more_body": True})
        await asyncio.sleep(30)
"#;

    #[test]
    fn receive_gives_http_disconnect_once_the_client_hangs_up() {
        let mut rig = start(DISCONNECT);
        let (id, flow) = rig.submit(request("GET", "/wait", &[], b""));
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(rig.eval("seen"), "['http.request']");
        assert!(rig.wait_for(id, |_| true).is_empty());
        flow.hang_up();
        let outs = rig.finished(id);
        assert!(matches!(outs.last(), Some(Output::End)));
        assert_eq!(rig.eval("seen"), "['http.request', 'http.disconnect']");
        rig.stop();
    }

    #[test]
    fn an_app_still_running_after_the_grace_period_is_cancelled() {
        let mut rig = start(DISCONNECT);
        let (id, flow) = rig.submit(request("GET", "/sleep", &[], b""));
        rig.wait_for(id, |o| !o.is_empty());
        flow.close();
        let outs = rig.finished(id);
        assert!(
            matches!(outs, [Output::Head { .. }, Output::Failed]),
            "{outs:?}"
        );
        rig.stop();
    }

    const WS_ECHO: &str = r#"
events = []

async def app(scope, receive, send):
    if scope["type"] != "websocket":
        raise RuntimeError("websocket only")
    events.append((await receive())["type"])
    if scope["path"] == "/refuse":
        await send({"type": "websocket.close"})
        return
    await send({"type": "websocket.accept", "subprotocol": scope["subprotocols"][-1],
                "headers": [(b"x-hello", b"1")]})
    await send({"type": "websocket.send", "text": scope["scheme"]})
    while True:
        message = await receive()
        events.append(message["type"])
        if message["type"] == "websocket.disconnect":
            events.append(message["code"])
            return
        await send({"type": "websocket.send", "bytes": message["bytes"]})
        await send({"type": "websocket.close", "code": 4000, "reason": "done"})
"#;

    #[test]
    fn a_websocket_is_accepted_echoes_and_hears_the_close_code() {
        use crate::handoff::{Inbound, Message};
        let mut rig = start_with(WS_ECHO, options(AsgiLifespan::Off)).expect("starts");
        let (id, flow) = rig.submit_ws("/chat", &["a", "b"]);
        let outs = rig.wait_for(id, |o| o.len() >= 2);
        assert!(
            matches!(&outs[0], Output::Accept { subprotocol: Some(p), headers } if p == "b" && headers.len() == 1),
            "{outs:?}"
        );
        assert!(matches!(&outs[1], Output::Message(Message::Text(t)) if t == "ws"));
        flow.push_inbound(Inbound::Message(Message::Binary(b"hi".to_vec())));
        let outs = rig.wait_for(id, |o| o.len() >= 4);
        assert!(matches!(&outs[2], Output::Message(Message::Binary(b)) if b == b"hi"));
        assert!(
            matches!(&outs[3], Output::Close { code: 4000, reason } if reason == "done"),
            "{outs:?}"
        );
        flow.push_inbound(Inbound::Closed {
            code: 4000,
            reason: String::new(),
        });
        let deadline = Instant::now() + Duration::from_secs(5);
        while !rig.eval("events").contains("4000") && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(
            rig.eval("events"),
            "['websocket.connect', 'websocket.receive', 'websocket.disconnect', 4000]"
        );
        rig.stop();
    }

    #[test]
    fn a_websocket_closed_before_accept_is_a_403() {
        let mut rig = start_with(WS_ECHO, options(AsgiLifespan::Off)).expect("starts");
        let (id, _flow) = rig.submit_ws("/refuse", &[]);
        let outs = rig.wait_for(id, |o| matches!(o.last(), Some(Output::End)));
        let (status, _, known_len) = head_of(outs);
        assert_eq!((status.as_str(), known_len), ("403 Forbidden", Some(0)));
        rig.stop();
    }

    const LIFESPAN: &str = r#"
events = []

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            events.append(message["type"])
            if message["type"] == "lifespan.startup":
                scope["state"]["greeting"] = "hello"
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = scope["state"]["greeting"].encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})
"#;

    #[test]
    fn lifespan_startup_runs_first_its_state_reaches_requests_and_shutdown_runs_on_stop() {
        let mut rig = start(LIFESPAN);
        assert_eq!(rig.eval("events"), "['lifespan.startup']");
        let (id, _flow) = rig.submit(request("GET", "/", &[], b""));
        assert_eq!(body_of(rig.finished(id)), b"hello");
        let rig = rig.stop();
        assert_eq!(
            rig.eval("events"),
            "['lifespan.startup', 'lifespan.shutdown']"
        );
    }

    #[test]
    fn a_failed_lifespan_startup_is_a_load_error_with_the_message() {
        let code = r#"
async def app(scope, receive, send):
    assert scope["type"] == "lifespan"
    await receive()
    await send({"type": "lifespan.startup.failed", "message": "database unreachable"})
"#;
        let e = start_with(code, options(AsgiLifespan::Auto))
            .err()
            .expect("startup fails");
        assert!(
            e.contains("Application startup failed") && e.contains("database unreachable"),
            "{e}"
        );
    }

    #[test]
    fn an_app_without_lifespan_is_served_in_auto_mode_and_refused_in_on_mode() {
        // FAILING raises for lifespan scopes.
        let mut rig = start(FAILING);
        let (id, _flow) = rig.submit(request("GET", "/after", &[], b""));
        assert!(!rig.finished(id).is_empty());
        rig.stop();
        let e = start_with(FAILING, options(AsgiLifespan::On))
            .err()
            .expect("lifespan on: fails");
        assert!(e.contains("no lifespan here"), "{e}");
    }

    #[test]
    fn coroutine_functions_and_objects_with_async_call_are_asgi_apps() {
        with_py(|py| {
            let (_, m) = module(
                py,
                r#"
async def coro(scope, receive, send): pass
def wsgi(environ, start_response): pass
class Asgi:
    async def __call__(self, scope, receive, send): pass
class Wsgi:
    def __call__(self, environ, start_response): pass
asgi_obj = Asgi()
wsgi_obj = Wsgi()
"#,
            );
            let is = |name: &str| is_asgi_app(py, &m.getattr(name).expect("fixture"));
            assert!(is("coro"));
            assert!(is("asgi_obj"));
            assert!(!is("wsgi"));
            assert!(!is("wsgi_obj"));
            assert!(!is("Asgi"));
        });
    }
}
