//! `wsgi.early_hints(headers)` (gunicorn 25's extension): one callable per
//! worker, in the environ template, that sends a `103 Early Hints` through
//! the `WriteSink` of the request running on the calling thread.
//!
//! The sync worker's app runs on the loop thread, whose sink is set once at
//! start (its `write()` sink, which knows the request of the moment); an app
//! thread sets its request's sink around the app call. So the plain request
//! path pays nothing for the key. Greenlets share their thread, so each
//! keeps its sink in a context variable instead (every greenlet runs in a
//! context of its own): `set_task_hint_sink`.

use std::cell::RefCell;
use std::sync::Arc;

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyList, PyString};

use super::start_response::{latin1, trim_sp_htab};
use super::WriteSink;
use crate::http::{
    validate_header_name as valid_header_name, validate_header_value as valid_header_value,
};

thread_local! {
    /// Where this thread's app call sends early hints (none: they are dropped).
    static SINK: RefCell<Option<Arc<dyn WriteSink>>> = const { RefCell::new(None) };
}

/// Send this thread's early hints to `sink` from now on (`None`: drop them).
pub fn set_hint_sink(sink: Option<Arc<dyn WriteSink>>) {
    let old = SINK.with(|s| s.replace(sink));
    drop(old);
}

/// The context variable holding the running greenlet's sink, once a
/// greenlet has set one.
static TASK_SINK: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// A sink as a Python object, for the context variable.
#[pyclass(frozen, module = "ferrocorn")]
struct HintTarget(Arc<dyn WriteSink>);

/// Send the early hints of the task (greenlet) running now to `sink`
/// (`None`: drop them). For tasks that share a thread.
pub fn set_task_hint_sink(py: Python<'_>, sink: Option<Arc<dyn WriteSink>>) -> PyResult<()> {
    let var = TASK_SINK.get_or_try_init(py, || -> PyResult<Py<PyAny>> {
        Ok(py
            .import("contextvars")?
            .getattr("ContextVar")?
            .call1(("ferrocorn.early_hints",))?
            .unbind())
    })?;
    let value = match sink {
        Some(s) => Py::new(py, HintTarget(s))?.into_any(),
        None => py.None(),
    };
    var.bind(py).call_method1("set", (value,))?;
    Ok(())
}

/// The running task's sink, when tasks share the thread.
fn task_sink(py: Python<'_>) -> Option<Arc<dyn WriteSink>> {
    let var = TASK_SINK.get(py)?.bind(py);
    let value = var.call_method1("get", (py.None(),)).ok()?;
    let target = value.cast::<HintTarget>().ok()?;
    Some(target.get().0.clone())
}

/// The callable behind `wsgi.early_hints`.
#[pyclass(frozen, module = "ferrocorn", name = "EarlyHints")]
pub(crate) struct EarlyHints;

#[pymethods]
impl EarlyHints {
    /// `headers`: `(name, value)` pairs of `str` (or `bytes`, as gunicorn
    /// allows), checked as `start_response` checks response headers: a bad
    /// one raises `ValueError` or `TypeError` and nothing is sent.
    fn __call__(&self, py: Python<'_>, headers: &Bound<'_, PyAny>) -> PyResult<()> {
        let not_a_list =
            || PyTypeError::new_err("wsgi.early_hints() takes a list of (name, value) tuples");
        if headers.is_instance_of::<PyString>() || headers.is_instance_of::<PyBytes>() {
            return Err(not_a_list());
        }
        let mut fields = Vec::new();
        for item in headers.try_iter().map_err(|_| not_a_list())? {
            fields.push(field(&item?)?);
        }
        if let Some(sink) = SINK.with(|s| s.borrow().clone()).or_else(|| task_sink(py)) {
            sink.early_hints(py, fields);
        }
        Ok(())
    }
}

/// One `(name, value)` pair, validated; the value trimmed of SP and HTAB.
fn field(item: &Bound<'_, PyAny>) -> PyResult<(Vec<u8>, Vec<u8>)> {
    let pair = || {
        PyTypeError::new_err(format!(
            "early hint {} is not a (name, value) tuple",
            item.repr().map(|r| r.to_string()).unwrap_or_default()
        ))
    };
    let (name, value) = match item.cast::<PyList>() {
        Ok(l) if l.len() == 2 => (l.get_item(0)?, l.get_item(1)?),
        _ => item
            .extract::<(Bound<'_, PyAny>, Bound<'_, PyAny>)>()
            .map_err(|_| pair())?,
    };
    let text = |o: &Bound<'_, PyAny>| -> Option<Vec<u8>> {
        match o.cast::<PyBytes>() {
            Ok(b) => Some(b.as_bytes().to_vec()),
            Err(_) => latin1(o.cast::<PyString>().ok()?),
        }
    };
    let shown = name.repr().map(|r| r.to_string()).unwrap_or_default();
    let name = text(&name)
        .filter(|n| valid_header_name(n))
        .ok_or_else(|| PyValueError::new_err(format!("Invalid response header name {shown}")))?;
    // The value is left out of the message, as in start_response.
    let value = text(&value)
        .filter(|v| valid_header_value(v))
        .ok_or_else(|| {
            PyValueError::new_err(format!("Invalid response header value for {shown}"))
        })?;
    Ok((name, trim_sp_htab(value)))
}
