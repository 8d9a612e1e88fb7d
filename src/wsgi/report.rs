//! Reporting an app's failure: a message plus the Python traceback, through
//! the error log (gunicorn's `log.exception`).

use pyo3::prelude::*;
use pyo3::types::PyString;

/// The traceback of `err` as Python prints it, without the final newline.
pub(crate) fn format_exception(py: Python<'_>, err: &PyErr) -> String {
    let format = || -> PyResult<String> {
        let lines = py.import("traceback")?.call_method1(
            "format_exception",
            (err.get_type(py), err.value(py), err.traceback(py)),
        )?;
        PyString::new(py, "")
            .call_method1("join", (lines,))?
            .extract::<String>()
    };
    let mut text = format().unwrap_or_else(|_| err.to_string());
    text.truncate(text.trim_end().len());
    text
}

/// Log `context`, then the traceback of `err` on the following lines.
pub(crate) fn exception(py: Python<'_>, context: &str, err: &PyErr) {
    let message = format!("{context}\n{}", format_exception(py, err));
    #[cfg(not(test))]
    crate::log::exception(format_args!("{message}"));
    #[cfg(test)]
    captured::push(&message);
}

pub(crate) fn warning(message: &str) {
    #[cfg(not(test))]
    crate::warn!("{message}");
    #[cfg(test)]
    captured::push(message);
}

pub(crate) fn error(message: &str) {
    #[cfg(not(test))]
    crate::error!("{message}");
    #[cfg(test)]
    captured::push(message);
}

/// What this thread logged, for the tests.
#[cfg(test)]
pub(crate) mod captured {
    use std::cell::RefCell;

    thread_local! {
        static LINES: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
    }

    pub fn push(message: &str) {
        LINES.with(|l| l.borrow_mut().push(message.to_string()));
    }

    pub fn take() -> Vec<String> {
        LINES.with(|l| std::mem::take(&mut *l.borrow_mut()))
    }
}
