//! `wsgi.input`: the request body, already read in full, behind PEP 3333's
//! `read`, `readline`, `readlines` and iteration.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

#[pyclass(module = "ferrocorn", name = "Input")]
pub(crate) struct Input {
    body: Py<PyBytes>,
    pos: usize,
}

impl Input {
    pub fn new(body: Py<PyBytes>) -> Input {
        Input { body, pos: 0 }
    }

    /// The next `len` bytes at most (all of them for `None`), as bytes.
    /// Reading the whole body at once returns the body object itself.
    fn take<'py>(&mut self, py: Python<'py>, len: Option<usize>) -> Bound<'py, PyBytes> {
        let body = self.body.bind(py);
        let all = body.as_bytes();
        let rest = all.get(self.pos..).unwrap_or_default();
        let n = len.map_or(rest.len(), |l| l.min(rest.len()));
        if self.pos == 0 && n == all.len() {
            self.pos = n;
            return body.clone();
        }
        let out = PyBytes::new(py, &rest[..n]);
        self.pos += n;
        out
    }

    /// Length of the next line (through its `\n`), at most `limit`.
    fn line_len(&self, py: Python<'_>, limit: Option<usize>) -> usize {
        let all = self.body.bind(py).as_bytes();
        let rest = all.get(self.pos..).unwrap_or_default();
        let window = &rest[..limit.map_or(rest.len(), |l| l.min(rest.len()))];
        window
            .iter()
            .position(|&c| c == b'\n')
            .map_or(window.len(), |i| i + 1)
    }
}

/// A size argument: `None` or a negative number means "no limit".
fn limit(size: Option<isize>) -> Option<usize> {
    size.and_then(|s| usize::try_from(s).ok())
}

#[pymethods]
impl Input {
    #[pyo3(signature = (size = None))]
    fn read<'py>(&mut self, py: Python<'py>, size: Option<isize>) -> Bound<'py, PyBytes> {
        self.take(py, limit(size))
    }

    #[pyo3(signature = (size = None))]
    fn readline<'py>(&mut self, py: Python<'py>, size: Option<isize>) -> Bound<'py, PyBytes> {
        let n = self.line_len(py, limit(size));
        self.take(py, Some(n))
    }

    #[pyo3(signature = (hint = None))]
    fn readlines<'py>(
        &mut self,
        py: Python<'py>,
        hint: Option<isize>,
    ) -> PyResult<Bound<'py, PyList>> {
        let hint = limit(hint).filter(|&h| h > 0);
        let lines = PyList::empty(py);
        let mut total = 0usize;
        loop {
            let n = self.line_len(py, None);
            if n == 0 {
                break;
            }
            lines.append(self.take(py, Some(n)))?;
            total += n;
            if hint.is_some_and(|h| total >= h) {
                break;
            }
        }
        Ok(lines)
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&mut self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        let n = self.line_len(py, None);
        if n == 0 {
            None
        } else {
            Some(self.take(py, Some(n)))
        }
    }
}
