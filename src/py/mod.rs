//! What every place that runs Python shares about Python's values: the text
//! of an exception (as Python prints it) and latin-1 strings (WSGI's
//! native strings, HTTP's header bytes); and `GilMutex` (`gil.rs`), the
//! lock for state app threads share that holds Python objects. The
//! config-file loader, the hooks and both app bridges use it; it imports
//! only `http`.

#![forbid(unsafe_code)]

mod gil;

pub(crate) use gil::GilMutex;

use pyo3::prelude::*;
use pyo3::types::PyString;

/// The traceback of `err` as Python prints it (`traceback.format_exception`),
/// without the final newline; the exception's `str` when that fails.
pub fn exception_text(py: Python<'_>, err: &PyErr) -> String {
    traceback_call(
        py,
        "format_exception",
        (err.get_type(py), err.value(py), err.traceback(py)),
    )
    .unwrap_or_else(|_| err.to_string())
}

/// The last line of the traceback alone, `ExceptionType: message`
/// (`traceback.format_exception_only`), trimmed.
pub fn exception_only(py: Python<'_>, err: &PyErr) -> String {
    traceback_call(
        py,
        "format_exception_only",
        (err.get_type(py), err.value(py)),
    )
    .map(|t| t.trim_start().to_string())
    .unwrap_or_else(|_| err.to_string())
}

fn traceback_call<'py>(
    py: Python<'py>,
    name: &str,
    args: impl pyo3::call::PyCallArgs<'py>,
) -> PyResult<String> {
    let lines = py.import("traceback")?.call_method1(name, args)?;
    let mut text: String = PyString::new(py, "")
        .call_method1("join", (lines,))?
        .extract()?;
    text.truncate(text.trim_end().len());
    Ok(text)
}

/// Bytes as a native string: each byte is the code point of the same value.
pub fn latin1_str<'py>(py: Python<'py>, bytes: &[u8]) -> Bound<'py, PyString> {
    if bytes.is_ascii() {
        if let Ok(s) = std::str::from_utf8(bytes) {
            return PyString::new(py, s);
        }
    }
    PyString::new(py, &crate::http::latin1_string(bytes))
}
