//! The response body: what `write()` was given, then the app's iterable,
//! pulled one item at a time so the worker can pause between chunks.
//!
//! PEP 3333: the head is final only once the first non-empty chunk exists,
//! so `begin` pulls up to there before the head is handed out. The
//! iterable's `close()` is called exactly once, by `close` (or by `begin`
//! when the response fails before it starts).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use pyo3::exceptions::PyTypeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyIterator, PyList, PyTuple};

use super::file_wrapper::FileWrapper;
use super::report;
use super::start_response::{lock, Responder};
use super::{Body, Chunk, Reply};

/// Where the next chunks come from.
pub(crate) enum Source {
    /// Nothing more to pull (exhausted, or a list already taken whole).
    Done,
    Iter(Py<PyIterator>),
}

/// Spare `start_response` callables, reused while the app keeps none.
#[derive(Default)]
pub(crate) struct Pool {
    spare: Mutex<Option<Responder>>,
}

impl Pool {
    pub fn take(&self, py: Python<'_>) -> PyResult<Responder> {
        let spare = self.spare.lock().unwrap_or_else(|p| p.into_inner()).take();
        match spare {
            Some(r) => Ok(r),
            None => Responder::new(py),
        }
    }

    /// The spare callable's address, for the tests.
    #[cfg(test)]
    pub fn spare_ptr(&self) -> Option<usize> {
        let spare = self.spare.lock().unwrap_or_else(|p| p.into_inner());
        spare.as_ref().map(|r| r.callable.as_ptr() as usize)
    }

    /// Keep `r` for the next request if the app holds no reference to it.
    pub fn give(&self, py: Python<'_>, r: Responder) {
        if !r.reusable(py) {
            return;
        }
        r.reset();
        let mut spare = self.spare.lock().unwrap_or_else(|p| p.into_inner());
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
            queued: VecDeque::new(),
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
            // now; reading is left to the worker (and later to sendfile).
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
        body.take_written();
        let head = match body.responder.as_ref() {
            Some(r) => {
                let mut st = lock(&r.state);
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
        self.take_written();
        let mut total: u64 = self.queued.iter().map(|c| c.len() as u64).sum();
        let mut take = |item: Bound<'_, PyAny>| -> PyResult<()> {
            let bytes = item.cast::<PyBytes>().map_err(|_| not_bytes(&item))?;
            let data = bytes.as_bytes();
            total += data.len() as u64;
            if !data.is_empty() {
                self.queued.push_back(data.to_vec());
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
        self.take_written();
        while self.queued.is_empty() && self.pull(py)? {}
        Ok(())
    }

    /// Move `write()` data into the queue: it goes out before whatever the
    /// iterable yields next.
    fn take_written(&mut self) {
        if let Some(r) = &self.responder {
            let mut st = lock(&r.state);
            self.queued.extend(st.written.drain(..));
        }
    }

    /// Pull one item. Returns false once the iterable is exhausted.
    fn pull(&mut self, py: Python<'_>) -> PyResult<bool> {
        let Source::Iter(iter) = &self.source else {
            return Ok(false);
        };
        self.file_untouched = false;
        let next = iter.bind(py).clone().next();
        self.take_written();
        match next {
            None => {
                self.source = Source::Done;
                Ok(false)
            }
            Some(Err(e)) => Err(e),
            Some(Ok(item)) => {
                let bytes = item.cast::<PyBytes>().map_err(|_| not_bytes(&item))?;
                let data = bytes.as_bytes();
                if !data.is_empty() {
                    self.queued.push_back(data.to_vec());
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
}
