//! Reporting an app's failure: a message plus the Python traceback, through
//! the error log (gunicorn's `log.exception`).

use pyo3::prelude::*;

/// The traceback of `err` as Python prints it, without the final newline.
pub(crate) use crate::py::exception_text as format_exception;

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
