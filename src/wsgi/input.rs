//! `wsgi.input`: the request body, already received in full, behind PEP
//! 3333's `read`, `readline`, `readlines` and iteration.
//!
//! A body held in memory is served from one `bytes` object (reading it all at
//! once returns that object itself). A body in a temporary file is read in
//! pieces of at most `FILE_CHUNK` bytes for lines, and exactly as much as
//! asked for `read(n)`: a 200 MiB upload is never in memory unless the app
//! reads it whole.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

/// Read-ahead for lines from a body file.
const FILE_CHUNK: usize = 64 * 1024;

#[pyclass(module = "ferrocorn", name = "Input")]
pub(crate) struct Input {
    source: Source,
}

enum Source {
    Memory { body: Py<PyBytes>, pos: usize },
    File(FileReader),
}

impl Input {
    pub fn new(body: Py<PyBytes>) -> Input {
        Input {
            source: Source::Memory { body, pos: 0 },
        }
    }

    /// A body of `len` bytes at the start of `file`.
    pub fn from_file(file: Arc<File>, len: u64) -> Input {
        Input {
            source: Source::File(FileReader::new(file, len)),
        }
    }

    /// The next `len` bytes at most (all of them for `None`).
    fn read_bytes<'py>(
        &mut self,
        py: Python<'py>,
        len: Option<usize>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        match &mut self.source {
            Source::Memory { body, pos } => Ok(take(py, body, pos, len)),
            Source::File(f) => {
                let n = len.map_or(f.remaining(), |l| l.min(f.remaining()));
                PyBytes::new_with(py, n, |buf| f.read_exact(buf).map_err(PyErr::from))
            }
        }
    }

    /// The next line (through its `\n`), at most `limit` bytes; empty at the end.
    fn read_line<'py>(
        &mut self,
        py: Python<'py>,
        limit: Option<usize>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        match &mut self.source {
            Source::Memory { body, pos } => {
                let all = body.bind(py).as_bytes();
                let rest = all.get(*pos..).unwrap_or_default();
                let n = line_len(rest, limit);
                Ok(take(py, body, pos, Some(n)))
            }
            Source::File(f) => {
                let line = f.read_line(limit)?;
                Ok(PyBytes::new(py, &line))
            }
        }
    }
}

/// From a `bytes` body: the next `len` bytes at most (all for `None`).
/// Reading the whole body at once returns the body object itself.
fn take<'py>(
    py: Python<'py>,
    body: &Py<PyBytes>,
    pos: &mut usize,
    len: Option<usize>,
) -> Bound<'py, PyBytes> {
    let body = body.bind(py);
    let all = body.as_bytes();
    let rest = all.get(*pos..).unwrap_or_default();
    let n = len.map_or(rest.len(), |l| l.min(rest.len()));
    if *pos == 0 && n == all.len() {
        *pos = n;
        return body.clone();
    }
    let out = PyBytes::new(py, &rest[..n]);
    *pos += n;
    out
}

/// Length of the line at the start of `bytes` (through its `\n`), at most `limit`.
fn line_len(bytes: &[u8], limit: Option<usize>) -> usize {
    let window = &bytes[..limit.map_or(bytes.len(), |l| l.min(bytes.len()))];
    window
        .iter()
        .position(|&c| c == b'\n')
        .map_or(window.len(), |i| i + 1)
}

/// Sequential reads of a body file, at offsets of its own (no shared file position).
struct FileReader {
    file: Arc<File>,
    len: u64,
    /// File offset of the first byte not yet in `ahead`.
    next: u64,
    /// Bytes read ahead for lines; `ahead[start..]` are still unread.
    ahead: Vec<u8>,
    start: usize,
}

impl FileReader {
    fn new(file: Arc<File>, len: u64) -> FileReader {
        FileReader {
            file,
            len,
            next: 0,
            ahead: Vec::new(),
            start: 0,
        }
    }

    fn buffered(&self) -> &[u8] {
        &self.ahead[self.start..]
    }

    /// Bytes not yet read (saturating: a body that would not fit in memory
    /// is bounded by what one allocation could hold anyway).
    fn remaining(&self) -> usize {
        let in_file = usize::try_from(self.len - self.next).unwrap_or(usize::MAX);
        in_file.saturating_add(self.buffered().len())
    }

    /// Fill `out` completely (the caller asks for at most `remaining()`).
    fn read_exact(&mut self, out: &mut [u8]) -> io::Result<()> {
        let have = self.buffered().len().min(out.len());
        out[..have].copy_from_slice(&self.buffered()[..have]);
        self.start += have;
        let rest = &mut out[have..];
        if !rest.is_empty() {
            self.file.read_exact_at(rest, self.next)?;
            self.next += rest.len() as u64;
        }
        Ok(())
    }

    /// Make sure some unread bytes are in `ahead` (none only at the end).
    fn fill(&mut self) -> io::Result<()> {
        if self.start < self.ahead.len() || self.next >= self.len {
            return Ok(());
        }
        let n = usize::try_from(self.len - self.next).map_or(FILE_CHUNK, |r| r.min(FILE_CHUNK));
        self.ahead.resize(n, 0);
        self.start = 0;
        self.file.read_exact_at(&mut self.ahead, self.next)?;
        self.next += n as u64;
        Ok(())
    }

    /// The next line, through its `\n`, at most `limit` bytes.
    fn read_line(&mut self, limit: Option<usize>) -> io::Result<Vec<u8>> {
        let mut line = Vec::new();
        loop {
            let room = limit.map_or(usize::MAX, |l| l - line.len());
            if room == 0 {
                break;
            }
            self.fill()?;
            let buffered = self.buffered();
            if buffered.is_empty() {
                break;
            }
            let n = line_len(buffered, Some(room));
            line.extend_from_slice(&buffered[..n]);
            self.start += n;
            if line.last() == Some(&b'\n') {
                break;
            }
        }
        Ok(line)
    }
}

/// A size argument: `None` or a negative number means "no limit".
fn limit(size: Option<isize>) -> Option<usize> {
    size.and_then(|s| usize::try_from(s).ok())
}

#[pymethods]
impl Input {
    #[pyo3(signature = (size = None))]
    fn read<'py>(&mut self, py: Python<'py>, size: Option<isize>) -> PyResult<Bound<'py, PyBytes>> {
        self.read_bytes(py, limit(size))
    }

    #[pyo3(signature = (size = None))]
    fn readline<'py>(
        &mut self,
        py: Python<'py>,
        size: Option<isize>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        self.read_line(py, limit(size))
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
            let line = self.read_line(py, None)?;
            let n = line.as_bytes().len();
            if n == 0 {
                break;
            }
            lines.append(line)?;
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

    fn __next__<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let line = self.read_line(py, None)?;
        Ok((!line.as_bytes().is_empty()).then_some(line))
    }
}

#[cfg(test)]
mod tests {
    use pyo3::types::PyDict;

    use super::super::testing::with_py;
    use super::*;

    /// An unlinked file holding `body`, as the http layer leaves a large body.
    pub(crate) fn body_file(body: &[u8]) -> Arc<File> {
        use std::io::Write;
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "ferrocorn-input-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        file.write_all(body).unwrap();
        Arc::new(file)
    }

    /// Run `code` with `inp` bound to a fresh input over `body`, once for a
    /// body in memory and once for the same body in a file.
    fn check(body: &[u8], code: &std::ffi::CStr) {
        with_py(|py| {
            let memory = Input::new(PyBytes::new(py, body).unbind());
            let file = Input::from_file(body_file(body), body.len() as u64);
            for (backing, input) in [("memory", memory), ("file", file)] {
                let globals = PyDict::new(py);
                globals
                    .set_item("inp", Py::new(py, input).unwrap())
                    .unwrap();
                if let Err(e) = py.run(code, Some(&globals), None) {
                    panic!(
                        "{backing}: {}",
                        super::super::report::format_exception(py, &e)
                    );
                }
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

    #[test]
    fn lines_longer_than_the_read_ahead_come_back_whole() {
        let mut body = vec![b'a'; FILE_CHUNK + 10];
        body.push(b'\n');
        body.extend_from_slice(&[b'b'; FILE_CHUNK - 1]);
        body.push(b'\n');
        body.extend_from_slice(b"tail");
        let code = std::ffi::CString::new(format!(
            "
lines = list(inp)
assert [len(l) for l in lines] == [{}, {}, 4], [len(l) for l in lines]
assert lines[0] == b'a' * {} + b'\\n'
assert lines[1].startswith(b'b') and lines[1].endswith(b'\\n')
assert inp.read() == b''
",
            FILE_CHUNK + 11,
            FILE_CHUNK,
            FILE_CHUNK + 10
        ))
        .unwrap();
        check(&body, &code);
        let code = std::ffi::CString::new(format!(
            "
assert inp.readline({n}) == b'a' * {n}
assert inp.read(3) == b'aaa'
assert inp.readline() == b'a' * 6 + b'\\n'
rest = inp.read()
assert len(rest) == {rest}
assert rest.endswith(b'\\ntail')
",
            n = FILE_CHUNK + 1,
            rest = FILE_CHUNK + 4
        ))
        .unwrap();
        check(&body, &code);
    }

    #[test]
    fn reads_of_a_file_body_are_bounded_by_what_was_asked() {
        let body: Vec<u8> = (0..3 * FILE_CHUNK).map(|i| b'a' + (i % 26) as u8).collect();
        let mut r = FileReader::new(body_file(&body), body.len() as u64);
        let mut first = vec![0; 10];
        r.read_exact(&mut first).unwrap();
        assert_eq!(first, body[..10]);
        // A line read buffers at most one chunk ahead.
        let line = r.read_line(Some(5)).unwrap();
        assert_eq!(line, body[10..15]);
        assert!(r.ahead.len() <= FILE_CHUNK);
        assert_eq!(r.remaining(), body.len() - 15);
        let mut rest = vec![0; r.remaining()];
        r.read_exact(&mut rest).unwrap();
        assert_eq!(rest, body[15..]);
        assert_eq!(r.remaining(), 0);
        assert_eq!(r.read_line(None).unwrap(), b"");
    }

    #[test]
    fn a_body_file_shorter_than_announced_raises_os_error() {
        with_py(|py| {
            let input = Input::from_file(body_file(b"abc"), 10);
            let globals = PyDict::new(py);
            globals
                .set_item("inp", Py::new(py, input).unwrap())
                .unwrap();
            py.run(
                c"
try:
    inp.read()
except OSError:
    pass
else:
    raise AssertionError('no error')
",
                Some(&globals),
                None,
            )
            .unwrap();
        });
    }
}
