//! Calling the hooks. Each function returns at once when its hook is not set.

use pyo3::prelude::*;
use pyo3::types::{PyString, PyTuple};

use super::objects::{cfg_object, header_list, log_object, make};
use super::HookFailed;
use crate::config::{Config, Hook};
use crate::http::latin1_string as latin1;
use crate::log::Headers;
use crate::py::GilMutex;

/// The master, as `server` in hooks.
pub struct ServerInfo<'a> {
    pub cfg: &'a Config,
    /// The master's pid.
    pub pid: u32,
    /// The current target number of workers.
    pub num_workers: usize,
}

/// A worker, as `worker` in hooks.
pub struct WorkerInfo<'a> {
    pub cfg: &'a Config,
    /// 0 before the fork (`pre_fork`): `worker.pid` is then None.
    pub pid: u32,
    /// The master's pid.
    pub ppid: u32,
    /// gunicorn's `worker.age`: the spawn counter of the arbiter.
    pub age: u64,
}

impl<'a> WorkerInfo<'a> {
    /// The calling process, a worker, as hooks see it.
    pub fn this_process(cfg: &'a Config, age: u64) -> WorkerInfo<'a> {
        WorkerInfo {
            cfg,
            pid: std::process::id(),
            ppid: nix::unistd::getppid().as_raw() as u32,
            age,
        }
    }
}

/// A request, as `req` in `pre_request`/`post_request`.
pub struct RequestInfo<'a> {
    pub method: &'a [u8],
    /// The target as sent (`req.uri`).
    pub uri: &'a [u8],
    /// `req.path` (not percent-decoded, as gunicorn's).
    pub path: &'a [u8],
    pub query: &'a [u8],
    /// (1, 1) for HTTP/1.1.
    pub version: (u8, u8),
    pub headers: Headers<'a>,
    /// The peer address (`req.remote_addr`); empty for a unix socket.
    pub remote_addr: &'a str,
    /// `http` or `https`.
    pub scheme: &'a str,
}

impl<'a> RequestInfo<'a> {
    /// From a parsed head.
    pub fn from_head(
        head: &'a crate::http::Head,
        remote_addr: &'a str,
        scheme: &'a str,
    ) -> RequestInfo<'a> {
        RequestInfo {
            method: head.method(),
            uri: head.target(),
            path: head.path(),
            query: head.query(),
            version: head.version.major_minor(),
            headers: Headers::Head(head),
            remote_addr,
            scheme,
        }
    }
}

/// A response, as `resp` in `post_request`.
pub struct ResponseInfo<'a> {
    /// The status line, e.g. `200 OK`.
    pub status: &'a [u8],
    pub headers: Headers<'a>,
    /// Body bytes sent.
    pub sent: u64,
}

/// The `worker` object of this process, built once (per pid and age) for
/// the per-request hooks.
static WORKER_OBJECT: GilMutex<Option<(u32, u64, Py<PyAny>)>> = GilMutex::new(None);

fn server_object<'py>(py: Python<'py>, s: &ServerInfo<'_>) -> PyResult<Bound<'py, PyAny>> {
    make(
        py,
        "Server",
        &[
            ("cfg", cfg_object(py, &s.cfg.settings)?),
            ("pid", s.pid.into_pyobject(py)?.into_any()),
            ("num_workers", s.num_workers.into_pyobject(py)?.into_any()),
            ("proc_name", PyString::new(py, &s.cfg.proc_name).into_any()),
            ("app_uri", PyString::new(py, &s.cfg.app).into_any()),
            ("log", log_object(py)?),
        ],
    )
}

fn new_worker_object<'py>(py: Python<'py>, w: &WorkerInfo<'_>) -> PyResult<Bound<'py, PyAny>> {
    let pid = if w.pid == 0 {
        py.None().into_bound(py)
    } else {
        w.pid.into_pyobject(py)?.into_any()
    };
    make(
        py,
        "Worker",
        &[
            ("cfg", cfg_object(py, &w.cfg.settings)?),
            ("pid", pid),
            ("ppid", w.ppid.into_pyobject(py)?.into_any()),
            ("age", w.age.into_pyobject(py)?.into_any()),
            ("alive", true.into_pyobject(py)?.to_owned().into_any()),
            (
                "booted",
                (w.pid != 0).into_pyobject(py)?.to_owned().into_any(),
            ),
            ("log", log_object(py)?),
        ],
    )
}

fn worker_object<'py>(py: Python<'py>, w: &WorkerInfo<'_>) -> PyResult<Bound<'py, PyAny>> {
    if w.pid == 0 {
        return new_worker_object(py, w);
    }
    // Building the object may release the interpreter lock (imports):
    // it is built outside the lock.
    {
        let cache = WORKER_OBJECT.lock(py);
        if let Some((pid, age, obj)) = cache.as_ref() {
            if *pid == w.pid && *age == w.age {
                return Ok(obj.bind(py).clone());
            }
        }
    }
    let obj = new_worker_object(py, w)?;
    let old = WORKER_OBJECT
        .lock(py)
        .replace((w.pid, w.age, obj.clone().unbind()));
    // The object it replaces is dropped outside the lock.
    drop(old);
    Ok(obj)
}

fn request_object<'py>(py: Python<'py>, r: &RequestInfo<'_>) -> PyResult<Bound<'py, PyAny>> {
    let s = |b: &[u8]| PyString::new(py, &latin1(b)).into_any();
    let fragment = PyString::new(py, "").into_any();
    make(
        py,
        "Request",
        &[
            ("method", s(r.method)),
            ("uri", s(r.uri)),
            ("path", s(r.path)),
            ("query", s(r.query)),
            ("fragment", fragment),
            (
                "version",
                (r.version.0, r.version.1).into_pyobject(py)?.into_any(),
            ),
            ("headers", header_list(py, r.headers, true)?),
            ("remote_addr", PyString::new(py, r.remote_addr).into_any()),
            ("scheme", PyString::new(py, r.scheme).into_any()),
        ],
    )
}

fn response_object<'py>(py: Python<'py>, r: &ResponseInfo<'_>) -> PyResult<Bound<'py, PyAny>> {
    let status = latin1(r.status);
    let code: Option<u16> = status
        .split_whitespace()
        .next()
        .and_then(|c| c.parse().ok());
    let length: Option<u64> = r
        .headers
        .get("content-length")
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.trim().parse().ok());
    make(
        py,
        "Response",
        &[
            ("status", PyString::new(py, &status).into_any()),
            ("status_code", code.into_pyobject(py)?.into_any()),
            ("headers", header_list(py, r.headers, false)?),
            ("response_length", length.into_pyobject(py)?.into_any()),
            ("sent", r.sent.into_pyobject(py)?.into_any()),
        ],
    )
}

/// Call `hook` with the arguments `args` builds (only when it is set);
/// log an exception with its traceback.
fn invoke<'py>(
    py: Python<'py>,
    cfg: &Config,
    hook: Hook,
    args: impl FnOnce(Python<'py>) -> PyResult<Vec<Bound<'py, PyAny>>>,
) -> Result<(), HookFailed> {
    let Some((f, arity)) = cfg.hooks.get(hook) else {
        return Ok(());
    };
    let result = args(py).and_then(|mut a| {
        // post_request may take 2, 3 or 4 arguments (gunicorn's wrapper).
        if hook == Hook::PostRequest {
            a.truncate((*arity).clamp(2, 4));
        }
        f.call1(py, PyTuple::new(py, a)?)
    });
    match result {
        Ok(_) => Ok(()),
        Err(e) => Err(report(py, hook, &e)),
    }
}

fn report(py: Python<'_>, hook: Hook, e: &PyErr) -> HookFailed {
    let full = crate::py::exception_text(py, e);
    let only = crate::py::exception_only(py, e);
    crate::error!("Exception in {} hook\n{full}", hook.name());
    HookFailed {
        hook: hook.name(),
        message: only,
    }
}

fn cheap(cfg: &Config, hook: Hook) -> bool {
    !cfg.hooks.is_set(hook)
}

/// Master, before the listeners are opened. gunicorn: an exception stops the
/// master; do the same (log "Reason: ..." and exit 1).
pub fn call_on_starting(py: Python<'_>, s: &ServerInfo<'_>) -> Result<(), HookFailed> {
    if cheap(s.cfg, Hook::OnStarting) {
        return Ok(());
    }
    invoke(py, s.cfg, Hook::OnStarting, |py| {
        Ok(vec![server_object(py, s)?])
    })
}

/// Master, on HUP before the new generation starts. Logged and ignored
/// (gunicorn's master would exit: its exception escapes the main loop).
pub fn call_on_reload(py: Python<'_>, s: &ServerInfo<'_>) -> Result<(), HookFailed> {
    if cheap(s.cfg, Hook::OnReload) {
        return Ok(());
    }
    invoke(py, s.cfg, Hook::OnReload, |py| {
        Ok(vec![server_object(py, s)?])
    })
}

/// Master, once the listeners are open (and on each HUP). gunicorn: an
/// exception at start stops the master; do the same (exit 1).
pub fn call_when_ready(py: Python<'_>, s: &ServerInfo<'_>) -> Result<(), HookFailed> {
    if cheap(s.cfg, Hook::WhenReady) {
        return Ok(());
    }
    invoke(py, s.cfg, Hook::WhenReady, |py| {
        Ok(vec![server_object(py, s)?])
    })
}

/// Master, just before fork (`w.pid` = 0). Logged; spawn the worker anyway.
pub fn call_pre_fork(
    py: Python<'_>,
    s: &ServerInfo<'_>,
    w: &WorkerInfo<'_>,
) -> Result<(), HookFailed> {
    if cheap(s.cfg, Hook::PreFork) {
        return Ok(());
    }
    invoke(py, s.cfg, Hook::PreFork, |py| {
        Ok(vec![server_object(py, s)?, worker_object(py, w)?])
    })
}

/// Worker, just after fork. On `Err` the worker exits with WORKER_BOOT_ERROR (3).
pub fn call_post_fork(
    py: Python<'_>,
    s: &ServerInfo<'_>,
    w: &WorkerInfo<'_>,
) -> Result<(), HookFailed> {
    if cheap(s.cfg, Hook::PostFork) {
        return Ok(());
    }
    invoke(py, s.cfg, Hook::PostFork, |py| {
        Ok(vec![server_object(py, s)?, worker_object(py, w)?])
    })
}

/// Worker, after the app is loaded. On `Err` the worker exits with WORKER_BOOT_ERROR (3).
pub fn call_post_worker_init(py: Python<'_>, w: &WorkerInfo<'_>) -> Result<(), HookFailed> {
    if cheap(w.cfg, Hook::PostWorkerInit) {
        return Ok(());
    }
    invoke(py, w.cfg, Hook::PostWorkerInit, |py| {
        Ok(vec![worker_object(py, w)?])
    })
}

/// Worker, on INT or QUIT. Logged; the worker exits as it would anyway.
pub fn call_worker_int(py: Python<'_>, w: &WorkerInfo<'_>) -> Result<(), HookFailed> {
    if cheap(w.cfg, Hook::WorkerInt) {
        return Ok(());
    }
    invoke(py, w.cfg, Hook::WorkerInt, |py| {
        Ok(vec![worker_object(py, w)?])
    })
}

/// Worker, on ABRT (timeout). Logged; the worker exits as it would anyway.
pub fn call_worker_abort(py: Python<'_>, w: &WorkerInfo<'_>) -> Result<(), HookFailed> {
    if cheap(w.cfg, Hook::WorkerAbort) {
        return Ok(());
    }
    invoke(py, w.cfg, Hook::WorkerAbort, |py| {
        Ok(vec![worker_object(py, w)?])
    })
}

/// The forked child of USR2, before exec. Logged; exec anyway.
pub fn call_pre_exec(py: Python<'_>, s: &ServerInfo<'_>) -> Result<(), HookFailed> {
    if cheap(s.cfg, Hook::PreExec) {
        return Ok(());
    }
    invoke(py, s.cfg, Hook::PreExec, |py| {
        Ok(vec![server_object(py, s)?])
    })
}

/// Worker, before the app is called. gunicorn: an exception fails the
/// request, so on `Err` answer 500 without calling the app.
#[inline]
pub fn call_pre_request(
    py: Python<'_>,
    w: &WorkerInfo<'_>,
    req: &RequestInfo<'_>,
) -> Result<(), HookFailed> {
    if cheap(w.cfg, Hook::PreRequest) {
        return Ok(());
    }
    invoke(py, w.cfg, Hook::PreRequest, |py| {
        Ok(vec![worker_object(py, w)?, request_object(py, req)?])
    })
}

/// Worker, after the response is written (also after a failed one). Logged
/// as "Exception in post_request hook" and ignored, as gunicorn does.
/// `environ` is the request's environ dict (None when none was built).
#[inline]
pub fn call_post_request(
    py: Python<'_>,
    w: &WorkerInfo<'_>,
    req: &RequestInfo<'_>,
    environ: Option<&Bound<'_, PyAny>>,
    resp: &ResponseInfo<'_>,
) -> Result<(), HookFailed> {
    if cheap(w.cfg, Hook::PostRequest) {
        return Ok(());
    }
    invoke(py, w.cfg, Hook::PostRequest, |py| {
        let env = match environ {
            Some(e) => e.clone(),
            None => pyo3::types::PyDict::new(py).into_any(),
        };
        Ok(vec![
            worker_object(py, w)?,
            request_object(py, req)?,
            env,
            response_object(py, resp)?,
        ])
    })
}

/// Master, after reaping a worker. Logged and ignored.
pub fn call_child_exit(
    py: Python<'_>,
    s: &ServerInfo<'_>,
    w: &WorkerInfo<'_>,
) -> Result<(), HookFailed> {
    if cheap(s.cfg, Hook::ChildExit) {
        return Ok(());
    }
    invoke(py, s.cfg, Hook::ChildExit, |py| {
        Ok(vec![server_object(py, s)?, new_worker_object(py, w)?])
    })
}

/// Worker, just before it exits. Logged (gunicorn: a warning) and ignored.
pub fn call_worker_exit(
    py: Python<'_>,
    s: &ServerInfo<'_>,
    w: &WorkerInfo<'_>,
) -> Result<(), HookFailed> {
    if cheap(s.cfg, Hook::WorkerExit) {
        return Ok(());
    }
    invoke(py, s.cfg, Hook::WorkerExit, |py| {
        Ok(vec![server_object(py, s)?, worker_object(py, w)?])
    })
}

/// Master, when TTIN/TTOU/HUP change the worker count. Logged and ignored.
pub fn call_nworkers_changed(
    py: Python<'_>,
    s: &ServerInfo<'_>,
    new_value: usize,
    old_value: usize,
) -> Result<(), HookFailed> {
    if cheap(s.cfg, Hook::NworkersChanged) {
        return Ok(());
    }
    invoke(py, s.cfg, Hook::NworkersChanged, |py| {
        Ok(vec![
            server_object(py, s)?,
            new_value.into_pyobject(py)?.into_any(),
            old_value.into_pyobject(py)?.into_any(),
        ])
    })
}

/// Master, just before it exits. Logged and ignored.
pub fn call_on_exit(py: Python<'_>, s: &ServerInfo<'_>) -> Result<(), HookFailed> {
    if cheap(s.cfg, Hook::OnExit) {
        return Ok(());
    }
    invoke(py, s.cfg, Hook::OnExit, |py| {
        Ok(vec![server_object(py, s)?])
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{self, Config};

    fn with_py<R>(f: impl for<'py> FnOnce(Python<'py>) -> R) -> R {
        Python::initialize();
        Python::attach(f)
    }

    /// A Config whose hooks come from a real config file with `code`.
    fn config_with(code: &str) -> Config {
        let dir = std::env::temp_dir().join(format!(
            "ferrocorn-hooks-{}-{}",
            std::process::id(),
            code.len()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("hooks.conf.py");
        std::fs::write(&path, code).unwrap();
        let argv: Vec<String> = ["ferrocorn", "-c", path.to_str().unwrap(), "app:app"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let env = |_: &str| None;
        match config::load(&argv, &env, &|src| config::read_file_for_tests(src)) {
            Ok(l) => l.config,
            Err(e) => panic!("{e}"),
        }
    }

    const RECORDER: &str = r#"
import builtins
calls = builtins.__dict__.setdefault("_ferrocorn_hook_calls", [])

def on_starting(server):
    server.log.info("starting %s", server.cfg.proc_name)
    calls.append(("on_starting", server.pid, server.cfg.workers, server.cfg.bind))

def pre_fork(server, worker):
    calls.append(("pre_fork", worker.pid))

def pre_request(worker, req):
    calls.append(("pre_request", worker.pid, worker.age, req.method, req.path, req.query, req.uri, req.version, req.headers))

def post_request(worker, req, environ):
    calls.append(("post_request", req.path, environ.get("PATH_INFO")))

def nworkers_changed(server, new, old):
    calls.append(("nworkers_changed", new, old))

def on_exit(server):
    raise RuntimeError("on_exit refuses")
"#;

    fn take_calls(py: Python<'_>) -> Vec<String> {
        let b = py.import("builtins").unwrap();
        let calls = b.getattr("_ferrocorn_hook_calls").unwrap();
        let out: Vec<String> = calls
            .try_iter()
            .unwrap()
            .map(|c| c.unwrap().repr().unwrap().to_string())
            .collect();
        calls.call_method0("clear").unwrap();
        out
    }

    #[test]
    fn hooks_get_objects_with_gunicorns_attributes() {
        let cfg = config_with(RECORDER);
        with_py(|py| {
            let server = ServerInfo {
                cfg: &cfg,
                pid: 42,
                num_workers: 1,
            };
            let worker = WorkerInfo {
                cfg: &cfg,
                pid: 43,
                ppid: 42,
                age: 7,
            };
            call_on_starting(py, &server).unwrap();
            call_pre_fork(py, &server, &WorkerInfo { pid: 0, ..worker }).unwrap();
            let headers: &[(&[u8], &[u8])] = &[(b"Host", b"x"), (b"x-a", b"1")];
            let req = RequestInfo {
                method: b"GET",
                uri: b"/p?q=1",
                path: b"/p",
                query: b"q=1",
                version: (1, 1),
                headers: Headers::Slices(headers),
                remote_addr: "127.0.0.1",
                scheme: "http",
            };
            call_pre_request(py, &worker, &req).unwrap();
            let environ = pyo3::types::PyDict::new(py);
            environ.set_item("PATH_INFO", "/p").unwrap();
            let resp = ResponseInfo {
                status: b"200 OK",
                headers: Headers::None,
                sent: 2,
            };
            call_post_request(py, &worker, &req, Some(environ.as_any()), &resp).unwrap();
            call_nworkers_changed(py, &server, 3, 1).unwrap();
            let err = call_on_exit(py, &server).unwrap_err();
            assert_eq!(err.hook, "on_exit");
            assert_eq!(err.message, "RuntimeError: on_exit refuses");
            // Hooks that are not set are no-ops.
            call_when_ready(py, &server).unwrap();
            call_worker_exit(py, &server, &worker).unwrap();
            assert_eq!(
                take_calls(py),
                vec![
                    "('on_starting', 42, 1, ['127.0.0.1:8000'])".to_string(),
                    "('pre_fork', None)".to_string(),
                    "('pre_request', 43, 7, 'GET', '/p', 'q=1', '/p?q=1', (1, 1), [('HOST', 'x'), ('X-A', '1')])".to_string(),
                    "('post_request', '/p', '/p')".to_string(),
                    "('nworkers_changed', 3, 1)".to_string(),
                ]
            );
        });
    }

    #[test]
    fn response_object_has_status_code_headers_and_length() {
        let cfg = config_with(
            "import builtins\nout = builtins.__dict__.setdefault('_ferrocorn_resp', [])\n\
             def post_request(worker, req, environ, resp):\n    \
             out.append((resp.status, resp.status_code, resp.headers, resp.response_length, resp.sent))\n",
        );
        with_py(|py| {
            let worker = WorkerInfo {
                cfg: &cfg,
                pid: 5,
                ppid: 4,
                age: 1,
            };
            let req = RequestInfo {
                method: b"GET",
                uri: b"/",
                path: b"/",
                query: b"",
                version: (1, 0),
                headers: Headers::None,
                remote_addr: "",
                scheme: "http",
            };
            let resp_headers = vec![(b"Content-Length".to_vec(), b"5".to_vec())];
            let resp = ResponseInfo {
                status: b"404 Not Found",
                headers: Headers::Owned(&resp_headers),
                sent: 5,
            };
            call_post_request(py, &worker, &req, None, &resp).unwrap();
            let out = py
                .import("builtins")
                .unwrap()
                .getattr("_ferrocorn_resp")
                .unwrap()
                .get_item(0)
                .unwrap()
                .repr()
                .unwrap()
                .to_string();
            assert_eq!(
                out,
                "('404 Not Found', 404, [('Content-Length', '5')], 5, 5)"
            );
        });
    }
}
