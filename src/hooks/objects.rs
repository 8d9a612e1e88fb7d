//! The Python objects hooks receive: `server`, `worker`, `req`, `resp`, with
//! the attributes gunicorn's hooks read. Their classes are defined once per
//! process by `SOURCE`; `log` methods write to ferrocorn's error log.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList, PyTuple};

use crate::config::{Resolved, Value};
use crate::log::{Headers, Level};

const SOURCE: &std::ffi::CStr = cr#"
import sys, traceback, types

class Log:
    """server.log / worker.log: gunicorn's logger methods, into the error log."""
    def __init__(self, emit, reopen):
        self._emit = emit
        self._reopen = reopen
    def _log(self, level, msg, args, exc_info=False):
        try:
            text = (str(msg) % args) if args else str(msg)
        except Exception:
            text = "%s %r" % (msg, args)
        if exc_info and sys.exc_info()[0] is not None:
            text = text + "\n" + traceback.format_exc().rstrip()
        self._emit(level, text)
    def debug(self, msg, *args, **kw): self._log(10, msg, args, kw.get("exc_info"))
    def info(self, msg, *args, **kw): self._log(20, msg, args, kw.get("exc_info"))
    def warning(self, msg, *args, **kw): self._log(30, msg, args, kw.get("exc_info"))
    warn = warning
    def error(self, msg, *args, **kw): self._log(40, msg, args, kw.get("exc_info"))
    def critical(self, msg, *args, **kw): self._log(50, msg, args, kw.get("exc_info"))
    def exception(self, msg, *args, **kw): self._log(40, msg, args, kw.get("exc_info", True))
    def log(self, level, msg, *args, **kw):
        if isinstance(level, str):
            level = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}.get(level.lower(), 20)
        self._log(level, msg, args, kw.get("exc_info"))
    def reopen_files(self): self._reopen()

class Config(types.SimpleNamespace):
    """server.cfg: every setting as an attribute, plus gunicorn's helpers."""
    @property
    def address(self): return list(self.bind)
    @property
    def worker_class_str(self): return "ferrocorn"
    @property
    def env(self): return dict(kv.split("=", 1) for kv in self.raw_env)
    @property
    def is_ssl(self): return bool(self.certfile or self.keyfile)
    def get(self, name, default=None): return getattr(self, name, default)

class Server:
    def __init__(self, **kw): self.__dict__.update(kw)
    def __repr__(self): return "<ferrocorn.Arbiter pid=%s>" % self.pid

class Worker:
    def __init__(self, **kw): self.__dict__.update(kw)
    def __repr__(self): return "<ferrocorn.Worker %s>" % self.pid

class Request:
    def __init__(self, **kw): self.__dict__.update(kw)
    def __repr__(self): return "<ferrocorn.Request %s %s>" % (self.method, self.uri)

class Response:
    def __init__(self, **kw): self.__dict__.update(kw)
    def __repr__(self): return "<ferrocorn.Response %s>" % self.status
"#;

static MODULE: PyOnceLock<Py<PyDict>> = PyOnceLock::new();

/// `log` methods call this: (python level, text) into our error log.
#[pyfunction]
fn _emit(level: u8, text: &str) {
    let level = match level {
        0..=10 => Level::Debug,
        11..=20 => Level::Info,
        21..=30 => Level::Warning,
        31..=40 => Level::Error,
        _ => Level::Critical,
    };
    crate::log::write(level, format_args!("{text}"));
}

#[pyfunction]
fn _reopen() {
    crate::log::reopen();
}

fn ns(py: Python<'_>) -> PyResult<&Bound<'_, PyDict>> {
    let m = MODULE.get_or_try_init(py, || -> PyResult<Py<PyDict>> {
        let d = PyDict::new(py);
        py.run(SOURCE, Some(&d), Some(&d))?;
        Ok(d.unbind())
    })?;
    Ok(m.bind(py))
}

fn class<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
    ns(py)?
        .get_item(name)?
        .ok_or_else(|| pyo3::exceptions::PyKeyError::new_err(name.to_string()))
}

pub fn log_object(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    let emit = wrap_pyfunction!(_emit, py)?;
    let reopen = wrap_pyfunction!(_reopen, py)?;
    class(py, "Log")?.call1((emit, reopen))
}

/// `server.cfg`: every setting by its gunicorn name.
pub fn cfg_object<'py>(py: Python<'py>, r: &Resolved) -> PyResult<Bound<'py, PyAny>> {
    let kw = PyDict::new(py);
    for (s, v, _) in r.iter() {
        kw.set_item(s.name, value_to_py(py, v)?)?;
    }
    class(py, "Config")?.call((), Some(&kw))
}

fn value_to_py<'py>(py: Python<'py>, v: &Value) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        Value::None | Value::Hook(_) => py.None().into_bound(py),
        Value::Bool(b) => b.into_pyobject(py)?.to_owned().into_any(),
        Value::Int(n) => n.into_pyobject(py)?.into_any(),
        Value::Str(s) => s.into_pyobject(py)?.into_any(),
        Value::List(l) => PyList::new(py, l)?.into_any(),
        Value::Dict(d) => {
            let out = PyDict::new(py);
            for (k, v) in d {
                out.set_item(k, v)?;
            }
            out.into_any()
        }
        Value::Json(j) => py.import("json")?.call_method1("loads", (j,))?,
    })
}

pub fn make<'py>(
    py: Python<'py>,
    class_name: &str,
    attrs: &[(&str, Bound<'py, PyAny>)],
) -> PyResult<Bound<'py, PyAny>> {
    let kw = PyDict::new(py);
    for (k, v) in attrs {
        kw.set_item(*k, v)?;
    }
    class(py, class_name)?.call((), Some(&kw))
}

/// Header pairs as a list of (name, value) str tuples; names upper-cased
/// for requests, as gunicorn's `req.headers` has them.
pub fn header_list<'py>(
    py: Python<'py>,
    headers: Headers<'_>,
    upper: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let list = PyList::empty(py);
    let mut err = None;
    headers.for_each(|k, v| {
        if err.is_some() {
            return;
        }
        let name: String = if upper {
            k.iter()
                .map(|&b| (b as char).to_ascii_uppercase())
                .collect()
        } else {
            k.iter().map(|&b| b as char).collect()
        };
        let value: String = v.iter().map(|&b| b as char).collect();
        if let Err(e) = PyTuple::new(py, [name, value]).and_then(|t| list.append(t)) {
            err = Some(e);
        }
    });
    match err {
        Some(e) => Err(e),
        None => Ok(list.into_any()),
    }
}
