//! `wsgi.errors`: a text stream the app writes diagnostics to; it goes to
//! the process's stderr, where the error log goes.

use std::io::Write;

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyString;

#[pyclass(frozen, module = "ferrocorn", name = "ErrorStream")]
pub(crate) struct ErrorStream;

fn text<'a>(s: &'a Bound<'_, PyAny>) -> PyResult<std::borrow::Cow<'a, str>> {
    let s = s
        .cast::<PyString>()
        .map_err(|_| PyTypeError::new_err("wsgi.errors accepts str only"))?;
    Ok(s.to_string_lossy())
}

#[pymethods]
impl ErrorStream {
    fn write(&self, data: &Bound<'_, PyAny>) -> PyResult<usize> {
        let s = text(data)?;
        let _ = std::io::stderr().lock().write_all(s.as_bytes());
        Ok(s.chars().count())
    }

    fn writelines(&self, lines: &Bound<'_, PyAny>) -> PyResult<()> {
        let mut buf = String::new();
        for line in lines.try_iter()? {
            buf.push_str(&text(&line?)?);
        }
        let _ = std::io::stderr().lock().write_all(buf.as_bytes());
        Ok(())
    }

    /// stderr is unbuffered.
    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use pyo3::types::PyDict;

    use super::super::testing::with_py;
    use super::*;

    #[test]
    fn accepts_text_and_refuses_bytes() {
        with_py(|py| {
            let globals = PyDict::new(py);
            globals
                .set_item("err", Py::new(py, ErrorStream).unwrap())
                .unwrap();
            let code = c"
assert err.write('') == 0
err.writelines([])
err.flush()
for call in (lambda: err.write(b'x'), lambda: err.writelines([b'x']), lambda: err.write(None)):
    try:
        call()
    except TypeError:
        pass
    else:
        raise AssertionError('accepted non-text')
";
            if let Err(e) = py.run(code, Some(&globals), None) {
                panic!("{}", super::super::report::format_exception(py, &e));
            }
        });
    }
}
