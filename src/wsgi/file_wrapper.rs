//! `wsgi.file_wrapper`: iterates `filelike.read(blksize)` until it returns
//! nothing, and forwards `close()`. The bridge recognises it (see
//! `Body::file_source`) so that a real file goes out with sendfile or
//! splice instead of being iterated.

use pyo3::prelude::*;

#[pyclass(frozen, module = "ferrocorn", name = "FileWrapper")]
pub struct FileWrapper {
    #[pyo3(get)]
    filelike: Py<PyAny>,
    #[pyo3(get)]
    blksize: usize,
}

impl FileWrapper {
    pub fn filelike<'py>(&self, py: Python<'py>) -> &Bound<'py, PyAny> {
        self.filelike.bind(py)
    }
}

#[pymethods]
impl FileWrapper {
    #[new]
    #[pyo3(signature = (filelike, blksize = 8192))]
    fn new(filelike: Py<PyAny>, blksize: usize) -> FileWrapper {
        FileWrapper { filelike, blksize }
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let data = self
            .filelike
            .bind(py)
            .call_method1(pyo3::intern!(py, "read"), (self.blksize,))?;
        Ok(if data.is_truthy()? { Some(data) } else { None })
    }

    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let f = self.filelike.bind(py);
        if f.hasattr(pyo3::intern!(py, "close"))? {
            f.call_method0(pyo3::intern!(py, "close"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use pyo3::types::PyDict;

    use super::super::testing::with_py;
    use super::*;

    fn check(code: &std::ffi::CStr) {
        with_py(|py| {
            let globals = PyDict::new(py);
            globals
                .set_item("FileWrapper", py.get_type::<FileWrapper>())
                .unwrap();
            if let Err(e) = py.run(code, Some(&globals), None) {
                panic!("{}", super::super::report::format_exception(py, &e));
            }
        });
    }

    #[test]
    fn iterates_reads_of_blksize_until_empty() {
        check(
            c"
import io
w = FileWrapper(io.BytesIO(b'abcdefg'), 3)
assert iter(w) is w
assert list(w) == [b'abc', b'def', b'g']
assert list(w) == []
assert w.blksize == 3
assert list(FileWrapper(io.BytesIO(b'x' * 9000))) == [b'x' * 8192, b'x' * 808]
",
        );
    }

    #[test]
    fn close_is_forwarded_when_the_file_has_one() {
        check(
            c"
import io
f = io.BytesIO(b'abc')
w = FileWrapper(f)
assert w.filelike is f
w.close()
assert f.closed

class Reader:
    def __init__(self):
        self.left = [b'a', b'']
    def read(self, n):
        return self.left.pop(0)
w = FileWrapper(Reader(), blksize=1)
assert list(w) == [b'a']
w.close()
",
        );
    }

    #[test]
    fn read_errors_propagate() {
        check(
            c"
class Broken:
    def read(self, n):
        raise OSError('disk gone')
try:
    next(iter(FileWrapper(Broken())))
except OSError as e:
    assert str(e) == 'disk gone'
else:
    raise AssertionError('no error')
try:
    FileWrapper(None, -1)
except OverflowError:
    pass
else:
    raise AssertionError('negative blksize accepted')
",
        );
    }
}
