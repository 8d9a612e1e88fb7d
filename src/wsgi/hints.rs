//! `wsgi.early_hints(headers)` (gunicorn 25's extension): one callable per
//! worker, in the environ template, that sends a `103 Early Hints` through
//! the `WriteSink` of the request running on the calling thread.
//!
//! The sync worker's app runs on the loop thread, whose sink is set once at
//! start (its `write()` sink, which knows the request of the moment); an app
//! thread sets its request's sink around the app call. So the plain request
//! path pays nothing for the key.

use std::cell::RefCell;
use std::sync::Arc;

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;

use super::start_response::parse_header;
use super::WriteSink;

thread_local! {
    /// Where this thread's app call sends early hints (none: they are dropped).
    static SINK: RefCell<Option<Arc<dyn WriteSink>>> = const { RefCell::new(None) };
}

/// Send this thread's early hints to `sink` from now on (`None`: drop them).
pub fn set_hint_sink(sink: Option<Arc<dyn WriteSink>>) {
    let old = SINK.with(|s| s.replace(sink));
    drop(old);
}

/// The callable behind `wsgi.early_hints`.
#[pyclass(frozen, module = "ferrocorn", name = "EarlyHints")]
pub(crate) struct EarlyHints;

#[pymethods]
impl EarlyHints {
    /// `headers`: a list of `(name, value)` string tuples, checked as
    /// `start_response` checks response headers (a bad one raises
    /// `ValueError` or `TypeError` and nothing is sent).
    fn __call__(&self, py: Python<'_>, headers: &Bound<'_, PyAny>) -> PyResult<()> {
        if headers.is_instance_of::<pyo3::types::PyString>()
            || headers.is_instance_of::<pyo3::types::PyBytes>()
        {
            return Err(PyTypeError::new_err(
                "wsgi.early_hints() takes a list of (name, value) tuples",
            ));
        }
        let iter = headers.try_iter().map_err(|_| {
            PyTypeError::new_err("wsgi.early_hints() takes a list of (name, value) tuples")
        })?;
        let mut fields = Vec::new();
        for item in iter {
            fields.push(parse_header(&item?)?);
        }
        let sink = SINK.with(|s| s.borrow().clone());
        if let (Some(sink), false) = (sink, fields.is_empty()) {
            sink.early_hints(py, fields);
        }
        Ok(())
    }
}
