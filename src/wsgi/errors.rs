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
