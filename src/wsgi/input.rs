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

#[cfg(test)]
mod tests {
    use pyo3::types::PyDict;

    use super::super::testing::with_py;
    use super::*;

    /// Run `code` with `inp` bound to a fresh input over `body`.
    fn check(body: &[u8], code: &std::ffi::CStr) {
        with_py(|py| {
            let input = Py::new(py, Input::new(PyBytes::new(py, body).unbind())).unwrap();
            let globals = PyDict::new(py);
            globals.set_item("inp", input).unwrap();
            if let Err(e) = py.run(code, Some(&globals), None) {
                panic!("{}", super::super::report::format_exception(py, &e));
            }
        });
    }

    const BODY: &[u8] = b"line1\nline2\n\nlast";

    #[test]
    fn read_without_size_returns_the_rest() {
        check(
            BODY,
            c"
assert inp.read() == b'line1\\nline2\\n\\nlast'
assert inp.read() == b''
assert inp.read(5) == b''
",
        );
        check(
            BODY,
            c"
assert inp.read(3) == b'lin'
assert inp.read(None) == b'e1\\nline2\\n\\nlast'
",
        );
        check(
            BODY,
            c"
assert inp.read(0) == b''
assert inp.read(-1) == b'line1\\nline2\\n\\nlast'
",
        );
        check(
            BODY,
            c"
assert inp.read(1000) == b'line1\\nline2\\n\\nlast'
",
        );
    }

    #[test]
    fn readline_stops_after_newline_or_size() {
        check(
            BODY,
            c"
assert inp.readline() == b'line1\\n'
assert inp.readline(3) == b'lin'
assert inp.readline(-1) == b'e2\\n'
assert inp.readline() == b'\\n'
assert inp.readline(0) == b''
assert inp.readline() == b'last'
assert inp.readline() == b''
",
        );
    }

    #[test]
    fn readlines_honours_the_hint() {
        check(
            BODY,
            c"
assert inp.readlines() == [b'line1\\n', b'line2\\n', b'\\n', b'last']
assert inp.readlines() == []
",
        );
        check(
            BODY,
            c"
assert inp.readlines(7) == [b'line1\\n', b'line2\\n']
assert inp.readlines(-1) == [b'\\n', b'last']
",
        );
        check(
            BODY,
            c"
assert inp.readlines(6) == [b'line1\\n']
assert inp.readlines(None) == [b'line2\\n', b'\\n', b'last']
",
        );
    }

    #[test]
    fn iteration_yields_lines() {
        check(
            BODY,
            c"
assert iter(inp) is inp
assert list(inp) == [b'line1\\n', b'line2\\n', b'\\n', b'last']
assert list(inp) == []
",
        );
        check(
            b"",
            c"
assert list(inp) == []
assert inp.read() == b''
assert inp.readline() == b''
",
        );
    }

    #[test]
    fn bad_sizes_raise_instead_of_crashing() {
        check(
            BODY,
            c"
for bad in ('3', 1.5, 10**30):
    try:
        inp.read(bad)
    except (TypeError, OverflowError):
        pass
    else:
        raise AssertionError(bad)
assert inp.read() == b'line1\\nline2\\n\\nlast'
",
        );
    }
}
