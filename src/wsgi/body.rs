//! The response body: what `write()` was given, then the app's iterable,
//! pulled one item at a time so the worker can pause between chunks.
//!
//! PEP 3333: the head is final only once the first non-empty chunk exists,
//! so `begin` pulls up to there before the head is handed out. The
//! iterable's `close()` is called exactly once, by `close` (or by `begin`
//! when the response fails before it starts).

use std::collections::VecDeque;
use std::sync::Arc;

use pyo3::exceptions::PyTypeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyIterator, PyList, PyTuple};

use super::file_wrapper::FileWrapper;
use super::report;
use super::start_response::{lock, Responder};
use super::{Body, Chunk, Piece, Reply};
use crate::py::GilMutex;

/// Where the next chunks come from.
pub(crate) enum Source {
    /// Nothing more to pull (exhausted, or a list already taken whole).
    Done,
    Iter(Py<PyIterator>),
}

/// Chunks ready to go out, in order. Most responses are one chunk, kept
/// inline, so queueing it costs no allocation.
#[derive(Default)]
pub(crate) struct Queued {
    first: Option<Piece>,
    rest: VecDeque<Piece>,
}

impl Queued {
    fn push_back(&mut self, piece: Piece) {
        if self.is_empty() {
            self.first = Some(piece);
        } else {
            self.rest.push_back(piece);
        }
    }

    fn pop_front(&mut self) -> Option<Piece> {
        self.first.take().or_else(|| self.rest.pop_front())
    }

    fn is_empty(&self) -> bool {
        self.first.is_none() && self.rest.is_empty()
    }

    fn iter(&self) -> impl Iterator<Item = &Piece> {
        self.first.iter().chain(self.rest.iter())
    }

    fn clear(&mut self) {
        self.first = None;
        self.rest.clear();
    }
}

/// Spare `start_response` callables, reused while the app keeps none.
#[derive(Default)]
pub(crate) struct Pool {
    spare: GilMutex<Option<Responder>>,
}

impl Pool {
    pub fn take(&self, py: Python<'_>) -> PyResult<Responder> {
        let spare = self.spare.lock(py).take();
        match spare {
            Some(r) => Ok(r),
            None => Responder::new(py),
        }
    }

    /// The spare callable's address, for the tests.
    #[cfg(test)]
    pub fn spare_ptr(&self, py: Python<'_>) -> Option<usize> {
        let spare = self.spare.lock(py);
        spare.as_ref().map(|r| r.callable.as_ptr() as usize)
    }

    /// Keep `r` for the next request if the app holds no reference to it.
    pub fn give(&self, py: Python<'_>, r: Responder) {
        if !r.reusable(py) {
            return;
        }
        r.reset(py);
        let mut spare = self.spare.lock(py);
        if spare.is_none() {
            *spare = Some(r);
        }
    }
}

fn not_bytes(item: &Bound<'_, PyAny>) -> PyErr {
    let repr = item
        .repr()
        .map(|r| r.to_string())
        .unwrap_or_else(|_| "<object>".into());
    PyTypeError::new_err(format!("{repr} is not a byte"))
}

impl Body {
    /// Turn the app's return value into a response: the head it set with
    /// `start_response`, and the body positioned at its first chunk.
    /// `context` names the request in the log if it fails.
    pub(crate) fn begin(
        py: Python<'_>,
        result: Bound<'_, PyAny>,
        responder: Responder,
        pool: Arc<Pool>,
        context: &dyn Fn() -> String,
    ) -> Reply {
        let sequence =
            result.is_exact_instance_of::<PyList>() || result.is_exact_instance_of::<PyTuple>();
        let mut body = Body {
            // Exact lists and tuples have no close() to call.
            iterable: (!sequence).then(|| result.clone().unbind()),
            source: Source::Done,
            queued: Queued::default(),
            known_len: None,
            responder: Some(responder),
            pool,
            failed: false,
            file_untouched: false,
            head_streamed: false,
        };
        let started = if sequence {
            body.take_sequence(&result)
        } else if result.is_instance_of::<FileWrapper>() {
            // No app code runs while a file is read, so the head is final
            // now; reading (or sendfile) is left to the worker.
            body.file_untouched = true;
            body.iterate(&result)
        } else {
            body.iterate(&result).and_then(|()| body.fill(py))
        };
        drop(result);
        if let Err(e) = started {
            report::exception(py, &context(), &e);
            drop(e);
            body.close(py);
            return Reply::Failed;
        }
        body.take_written(py);
        let head = match body.responder.as_ref() {
            Some(r) => {
                let mut st = lock(py, &r.state);
                st.committed = true;
                body.head_streamed = st.head_sent;
                st.head.take()
            }
            None => None,
        };
        match head {
            Some(head) => Reply::Response { head, body },
            None => {
                report::error(&format!(
                    "{}\nThe application did not call start_response()",
                    context()
                ));
                body.close(py);
                Reply::Failed
            }
        }
    }

    /// A list or tuple: every item must be bytes; all are queued at once
    /// and the total length is known.
    fn take_sequence(&mut self, seq: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = seq.py();
        self.take_written(py);
        let mut total: u64 = self.queued.iter().map(|c| c.len(py) as u64).sum();
        let mut take = |item: Bound<'_, PyAny>| -> PyResult<()> {
            let bytes = item
                .cast_into::<PyBytes>()
                .map_err(|e| not_bytes(&e.into_inner()))?;
            let len = bytes.as_bytes().len();
            total += len as u64;
            if len > 0 {
                self.queued.push_back(Piece::Shared(bytes.unbind()));
            }
            Ok(())
        };
        if let Ok(list) = seq.cast::<PyList>() {
            for item in list.iter() {
                take(item)?;
            }
        } else if let Ok(tuple) = seq.cast::<PyTuple>() {
            for item in tuple.iter() {
                take(item)?;
            }
        }
        self.known_len = Some(total);
        Ok(())
    }

    fn iterate(&mut self, iterable: &Bound<'_, PyAny>) -> PyResult<()> {
        self.source = Source::Iter(iterable.try_iter()?.unbind());
        Ok(())
    }

    /// Pull until a non-empty chunk is queued or the iterable is exhausted.
    fn fill(&mut self, py: Python<'_>) -> PyResult<()> {
        self.take_written(py);
        while self.queued.is_empty() && self.pull(py)? {}
        Ok(())
    }

    /// Move `write()` data into the queue: it goes out before whatever the
    /// iterable yields next.
    fn take_written(&mut self, py: Python<'_>) {
        if let Some(r) = &self.responder {
            let mut st = lock(py, &r.state);
            for data in st.written.drain(..) {
                self.queued.push_back(Piece::Owned(data));
            }
        }
    }

    /// Pull one item. Returns false once the iterable is exhausted.
    fn pull(&mut self, py: Python<'_>) -> PyResult<bool> {
        let Source::Iter(iter) = &self.source else {
            return Ok(false);
        };
        self.file_untouched = false;
        let next = iter.bind(py).clone().next();
        self.take_written(py);
        match next {
            None => {
                self.source = Source::Done;
                Ok(false)
            }
            Some(Err(e)) => Err(e),
            Some(Ok(item)) => {
                let bytes = item
                    .cast_into::<PyBytes>()
                    .map_err(|e| not_bytes(&e.into_inner()))?;
                if !bytes.as_bytes().is_empty() {
                    self.queued.push_back(Piece::Shared(bytes.unbind()));
                }
                Ok(true)
            }
        }
    }

    /// The head already went out through the `WriteSink` given to
    /// `WsgiApp::call_with` (the app called `write()`): do not send it again.
    pub fn head_streamed(&self) -> bool {
        self.head_streamed
    }

    /// The total body size when it is known without iterating further
    /// (a list or tuple of bytes), for a Content-Length the app left out.
    pub fn known_len(&self) -> Option<u64> {
        self.known_len
    }

    /// The next chunk, pulling from the app's iterable as needed. Empty
    /// items are skipped. After `Chunk::Failed` it keeps answering `Failed`.
    pub fn next_chunk(&mut self, py: Python<'_>) -> Chunk {
        match self.next_piece(py) {
            Chunk::Data(piece) => Chunk::Data(piece.into_vec(py)),
            Chunk::End => Chunk::End,
            Chunk::Failed => Chunk::Failed,
        }
    }

    /// `next_chunk` without copying the app's bytes out of Python.
    pub fn next_piece(&mut self, py: Python<'_>) -> Chunk<Piece> {
        if self.failed {
            return Chunk::Failed;
        }
        loop {
            if let Some(chunk) = self.queued.pop_front() {
                return Chunk::Data(chunk);
            }
            match self.pull(py) {
                Ok(true) => continue,
                Ok(false) => return Chunk::End,
                Err(e) => {
                    report::exception(py, "Error handling request", &e);
                    self.failed = true;
                    return Chunk::Failed;
                }
            }
        }
    }

    /// Call the iterable's `close()` (exceptions are logged). Called exactly
    /// once per body: after the last chunk, or when the client went away.
    pub fn close(mut self, py: Python<'_>) {
        self.source = Source::Done;
        self.queued.clear();
        if let Some(iterable) = self.iterable.take() {
            let iterable = iterable.into_bound(py);
            if let Ok(close) = iterable.getattr(intern!(py, "close")) {
                if let Err(e) = close.call0() {
                    report::exception(py, "Error closing the response iterable", &e);
                }
            }
        }
        if let Some(r) = self.responder.take() {
            self.pool.give(py, r);
        }
    }

    /// The file behind a `wsgi.file_wrapper` response, while nothing has
    /// been read from it and no `write()` data waits before it: the worker
    /// may then send it with sendfile instead of pulling chunks (and must
    /// still call `close`).
    pub fn file<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        if !self.file_untouched || !self.queued.is_empty() {
            return None;
        }
        let iterable = self.iterable.as_ref()?.bind(py);
        let wrapper = iterable.cast::<FileWrapper>().ok()?;
        Some(wrapper.get().filelike(py).clone())
    }

    /// Where the kernel can send the file of `file()` from: its descriptor
    /// and, when it has `tell()`, its position. `None` when there is no such
    /// file, or it has no usable `fileno()` (BytesIO, a wrapper whose
    /// `fileno` raises) or `tell()`: then the body is read as usual.
    ///
    /// The descriptor is the app's and stays valid only while the file is
    /// open: duplicate it before any app code can run again.
    pub fn file_source(&self, py: Python<'_>) -> Option<FileSource> {
        let file = self.file(py)?;
        let fd = file
            .call_method0(intern!(py, "fileno"))
            .ok()?
            .extract::<i32>()
            .ok()
            .filter(|&fd| fd >= 0)?;
        // `tell()` counts what a buffered reader already read ahead, which
        // the descriptor's own offset does not.
        let position = if file.hasattr(intern!(py, "tell")).unwrap_or(false) {
            let pos = file.call_method0(intern!(py, "tell")).ok()?;
            Some(pos.extract::<u64>().ok()?)
        } else {
            None
        };
        Some(FileSource { fd, position })
    }
}

/// The file of a `wsgi.file_wrapper` response (see `Body::file_source`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileSource {
    /// The app's descriptor (borrowed: duplicate it).
    pub fd: std::os::fd::RawFd,
    /// The file object's `tell()`; `None` when it has none (then the
    /// descriptor's offset is the position).
    pub position: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::super::testing::{app, get, with_py};
    use super::super::{Chunk, Reply};
    use super::*;

    #[test]
    fn queued_pieces_come_out_in_order_and_one_needs_no_allocation() {
        let text = |p: Option<Piece>| match p {
            Some(Piece::Owned(v)) => String::from_utf8(v).unwrap(),
            _ => panic!("not an owned piece"),
        };
        let mut q = Queued::default();
        let (a, n) = crate::alloc_count::allocations(|| Piece::Owned(b"a".to_vec()));
        let ((), queueing) = crate::alloc_count::allocations(|| q.push_back(a));
        assert_eq!((n, queueing), (1, 0));
        q.push_back(Piece::Owned(b"b".to_vec()));
        assert_eq!(text(q.pop_front()), "a");
        // The first slot is free while "b" waits in the rest: "c" goes after it.
        q.push_back(Piece::Owned(b"c".to_vec()));
        assert_eq!(q.iter().count(), 2);
        assert_eq!(text(q.pop_front()), "b");
        q.push_back(Piece::Owned(b"d".to_vec()));
        assert_eq!(text(q.pop_front()), "c");
        assert_eq!(text(q.pop_front()), "d");
        assert!(q.is_empty() && q.pop_front().is_none());
    }

    const APPS: &str = r#"
import io, os, tempfile

class NoFileno(io.BytesIO):
    pass

class BrokenFileno:
    def __init__(self, f):
        self.f = f
    def fileno(self):
        raise OSError("no descriptor here")
    def read(self, n):
        return self.f.read(n)

class NoTell:
    def __init__(self, f):
        self.f = f
    def fileno(self):
        return self.f.fileno()
    def read(self, n):
        return self.f.read(n)

def real_file(skip):
    f = tempfile.TemporaryFile()
    f.write(b"0123456789" * 1000)
    f.seek(0)
    f.read(skip)
    return f

def app(environ, start_response):
    start_response("200 OK", [])
    kind = environ["PATH_INFO"]
    if kind == "/real":
        return environ["wsgi.file_wrapper"](real_file(10), 64)
    if kind == "/bytesio":
        return environ["wsgi.file_wrapper"](NoFileno(b"abc"))
    if kind == "/broken":
        return environ["wsgi.file_wrapper"](BrokenFileno(real_file(0)))
    if kind == "/notell":
        f = real_file(0)
        os.lseek(f.fileno(), 7, os.SEEK_SET)
        return environ["wsgi.file_wrapper"](NoTell(f))
    return [b"not a file"]
"#;

    fn body_of(py: Python<'_>, app: &super::super::WsgiApp, path: &str) -> Body {
        match app.call(py, &get(path), &super::super::testing::conn()) {
            Reply::Response { body, .. } => body,
            Reply::Failed => panic!("{path} failed"),
        }
    }

    #[test]
    fn real_file_gives_its_descriptor_and_python_position() {
        with_py(|py| {
            let (app, _m) = app(py, APPS, "app");
            let mut body = body_of(py, &app, "/real");
            let src = body.file_source(py).expect("a real file has a source");
            assert!(src.fd > 2);
            // The buffered reader read ahead; tell() is where the app is.
            assert_eq!(src.position, Some(10));
            // Once a chunk was pulled, the file is no longer untouched.
            assert!(
                matches!(body.next_chunk(py), Chunk::Data(d) if d == b"0123456789".repeat(7)[..64])
            );
            assert_eq!(body.file_source(py), None);
            body.close(py);
        });
    }

    #[test]
    fn file_likes_without_a_usable_fileno_have_no_source() {
        with_py(|py| {
            let (app, _m) = app(py, APPS, "app");
            for path in ["/bytesio", "/broken", "/list"] {
                let body = body_of(py, &app, path);
                assert_eq!(body.file_source(py), None, "{path}");
                assert!(PyErr::take(py).is_none(), "{path} left an exception set");
                body.close(py);
            }
        });
    }

    #[test]
    fn file_without_tell_leaves_the_position_to_the_descriptor() {
        with_py(|py| {
            let (app, _m) = app(py, APPS, "app");
            let body = body_of(py, &app, "/notell");
            let src = body.file_source(py).expect("a descriptor");
            assert_eq!(src.position, None);
            body.close(py);
        });
    }
}
