//! `start_response(status, headers, exc_info=None)` and the `write(data)`
//! callable it returns (PEP 3333), with gunicorn 27's status and header
//! checks.
//!
//! One `Responder` (the two callables and their shared state) is reused by
//! the requests of a worker as long as the app keeps no reference to it; the
//! state is reset between requests on every path.

#[cfg(test)]
use std::sync::Mutex;
use std::sync::{Arc, MutexGuard};

use pyo3::exceptions::{PyAssertionError, PyBrokenPipeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

use super::{HeaderList, ResponseHead, Status, WriteSink};
use crate::http::{validate_header_name, validate_header_value, validate_status};
use crate::py::GilMutex;

/// What the app told `start_response` and `write` during one request.
#[derive(Default)]
pub(crate) struct State {
    /// `start_response` succeeded once (a second call needs `exc_info`).
    pub started: bool,
    /// The head to send; taken by the bridge when the response starts.
    pub head: Option<ResponseHead>,
    /// The head counts as sent: `write()` was called or the body produced
    /// its first non-empty chunk. `start_response(.., exc_info)` re-raises.
    pub committed: bool,
    /// Data given to `write()`, sent before the iterable's data.
    pub written: Vec<Vec<u8>>,
    /// Where `write()` data goes at once instead of into `written`.
    pub sink: Option<Arc<dyn WriteSink>>,
    /// The head went out through `sink` (on the first `write()`).
    pub head_sent: bool,
    /// Header tuples this callable validated before (kept across requests).
    pub header_cache: HeaderCache,
}

/// Validated headers by the identity of the app's `(name, value)` tuple.
/// An app's literal tuples (`("Content-Type", "text/plain")`) are the same
/// constant objects on every call, and a tuple of two `str` cannot change,
/// so its checked bytes can be reused. Only tuples something else also
/// holds are kept (a constant is held by its code object), so tuples built
/// per response do not churn the cache; holding a reference keeps the
/// address from being reused by another object. The list last built only
/// of kept tuples is kept too: an app that answers with the same literal
/// list every time gets the same shared `HeaderList`.
#[derive(Default)]
pub(crate) struct HeaderCache {
    entries: Vec<(Py<PyAny>, Header)>,
    next: usize,
    /// The kept tuples' addresses, in list order, and the list built of them.
    last: Option<(Vec<usize>, HeaderList)>,
    /// The last status string something else also holds, checked.
    status: Option<(Py<PyAny>, Status)>,
}

/// A checked (name, value) pair, latin-1 bytes.
type Header = (Vec<u8>, Vec<u8>);

/// Tuples kept per `start_response`.
const HEADER_CACHE_SIZE: usize = 8;

impl HeaderCache {
    /// The checked header of the kept tuple that is `item`.
    fn find(&self, item: &Bound<'_, PyAny>) -> Option<&Header> {
        self.entries
            .iter()
            .find(|(t, _)| t.as_ptr() == item.as_ptr())
            .map(|(_, h)| h)
    }

    fn get(&self, item: &Bound<'_, PyAny>) -> Option<(Vec<u8>, Vec<u8>)> {
        self.find(item).cloned()
    }

    /// `get_refcnt` is deprecated for being approximate on free-threaded
    /// builds; here it only decides what is worth caching.
    #[allow(deprecated)]
    fn offer(&mut self, item: &Bound<'_, PyAny>, header: &(Vec<u8>, Vec<u8>)) {
        // Ours (the Bound) + the list's = 2: a tuple built for this call.
        if !item.is_exact_instance_of::<PyTuple>() || item.get_refcnt() < 3 {
            return;
        }
        let entry = (item.clone().unbind(), header.clone());
        if self.entries.len() < HEADER_CACHE_SIZE {
            self.entries.push(entry);
        } else {
            self.entries[self.next] = entry;
            self.next = (self.next + 1) % HEADER_CACHE_SIZE;
            // The list may name the tuple let go of.
            self.last = None;
        }
    }

    /// The checked bytes of `status`, the last one kept by identity like
    /// the tuples (an exact `str` cannot change either).
    fn status(&mut self, status: &Bound<'_, PyAny>) -> PyResult<Status> {
        if let Some((s, bytes)) = &self.status {
            if s.as_ptr() == status.as_ptr() {
                return Ok(bytes.clone());
            }
        }
        let bytes = Status::from(parse_status(status)?);
        if status.is_exact_instance_of::<PyString>() {
            self.status = Some((status.clone().unbind(), bytes.clone()));
        }
        Ok(bytes)
    }

    fn holds(&self, item: &Bound<'_, PyAny>) -> bool {
        self.find(item).is_some()
    }

    /// The shared list for `list` if it is the last one built, item for item.
    fn same_list(&self, list: &Bound<'_, PyList>) -> Option<HeaderList> {
        let (addrs, headers) = self.last.as_ref()?;
        if addrs.len() != list.len() {
            return None;
        }
        // Every address in `addrs` belongs to a tuple `entries` holds, so
        // an equal address is that same tuple.
        let same = addrs.iter().enumerate().all(|(i, &a)| {
            list.get_item(i)
                .is_ok_and(|item| item.as_ptr() as usize == a)
        });
        same.then(|| headers.clone())
    }

    /// Remember `headers`, built from `list`, when every tuple of it is kept.
    fn remember(&mut self, list: &Bound<'_, PyList>, headers: &HeaderList) {
        let mut addrs = Vec::with_capacity(list.len());
        for item in list.iter() {
            if !self.holds(&item) {
                return;
            }
            addrs.push(item.as_ptr() as usize);
        }
        self.last = Some((addrs, headers.clone()));
    }
}

impl State {
    fn reset(&mut self) {
        self.started = false;
        self.head = None;
        self.committed = false;
        self.written.clear();
        self.sink = None;
        self.head_sent = false;
    }
}

pub(crate) type Shared = Arc<GilMutex<State>>;

/// Lock the state (it holds Python objects: a GIL-aware lock). Nothing
/// panics while holding it, but a poisoned lock is still usable: the state
/// is reset between requests anyway.
pub(crate) fn lock<'a>(py: Python<'_>, state: &'a Shared) -> MutexGuard<'a, State> {
    state.lock(py)
}

/// Holds the state behind `start_response`. The app gets the bound method
/// `start_response` (a builtin method, so calls use vectorcall and build no
/// argument tuple).
#[pyclass(frozen, module = "ferrocorn", name = "StartResponse")]
pub(crate) struct StartResponse {
    state: Shared,
    /// The bound `Writer.write` handed back by every call.
    write: Py<PyAny>,
}

/// Holds the state behind the `write(data)` callable.
#[pyclass(frozen, module = "ferrocorn", name = "Writer")]
pub(crate) struct Writer {
    state: Shared,
}

#[pymethods]
impl StartResponse {
    #[pyo3(signature = (status, headers, exc_info = None))]
    fn start_response(
        &self,
        py: Python<'_>,
        status: &Bound<'_, PyAny>,
        headers: &Bound<'_, PyAny>,
        exc_info: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Py<PyAny>> {
        let exc_info = match exc_info {
            Some(e) if e.is_truthy()? => Some(e),
            _ => None,
        };
        let (started, committed) = {
            let st = lock(py, &self.state);
            (st.started, st.committed)
        };
        match exc_info {
            Some(exc_info) if started && committed => return Err(reraise(exc_info)),
            Some(_) => {}
            None if started => {
                return Err(PyAssertionError::new_err("Response headers already set!"))
            }
            None => {}
        }
        // The lock is not held while Python objects are looked at (a
        // `__repr__` in an error message runs app code).
        let mut cache = std::mem::take(&mut lock(py, &self.state).header_cache);
        let status = cache.status(status);
        let headers = parse_headers(headers, &mut cache);
        let mut st = lock(py, &self.state);
        st.header_cache = cache;
        let (status, headers) = (status?, headers?);
        st.started = true;
        st.head = Some(ResponseHead { status, headers });
        Ok(self.write.clone_ref(py))
    }
}

#[pymethods]
impl Writer {
    fn write(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let data = data
            .cast::<PyBytes>()
            .map_err(|_| PyTypeError::new_err(format!("{} is not a byte", repr(data))))?;
        let mut st = lock(py, &self.state);
        if !st.started {
            return Err(PyAssertionError::new_err(
                "write() called before start_response()",
            ));
        }
        st.committed = true;
        let bytes = data.as_bytes();
        if let Some(sink) = st.sink.clone() {
            let head = match (st.head_sent, &st.head) {
                (false, Some(h)) => Some(ResponseHead {
                    status: h.status.clone(),
                    headers: h.headers.clone(),
                }),
                _ => None,
            };
            st.head_sent = true;
            drop(st);
            if let Some(h) = head {
                sink.head(&h);
            }
            if !bytes.is_empty() && !sink.data(py, bytes.to_vec()) {
                return Err(PyBrokenPipeError::new_err("the client disconnected"));
            }
            return Ok(());
        }
        if !bytes.is_empty() {
            st.written.push(bytes.to_vec());
        }
        Ok(())
    }
}

/// The `start_response` and `write` callables of one request, and their
/// state.
pub(crate) struct Responder {
    /// The bound `start_response` method given to the app.
    pub callable: Py<PyAny>,
    holder: Py<StartResponse>,
    write: Py<PyAny>,
    writer: Py<Writer>,
    pub state: Shared,
}

impl Responder {
    pub fn new(py: Python<'_>) -> PyResult<Responder> {
        let state = Shared::default();
        let writer = Py::new(
            py,
            Writer {
                state: state.clone(),
            },
        )?;
        let write = writer.bind(py).getattr("write")?.unbind();
        let holder = Py::new(
            py,
            StartResponse {
                state: state.clone(),
                write: write.clone_ref(py),
            },
        )?;
        let callable = holder.bind(py).getattr("start_response")?.unbind();
        Ok(Responder {
            callable,
            holder,
            write,
            writer,
            state,
        })
    }

    /// The app kept no reference to the callables (or to the objects
    /// behind them, via `__self__`), so the next request can get the same
    /// ones without seeing this request's calls. The references counted
    /// are ours plus the bound methods' own.
    /// (`get_refcnt` is deprecated for being approximate on free-threaded
    /// builds.)
    #[allow(deprecated)]
    pub fn reusable(&self, py: Python<'_>) -> bool {
        self.callable.get_refcnt(py) == 1
            && self.holder.get_refcnt(py) == 2
            && self.write.get_refcnt(py) == 2
            && self.writer.get_refcnt(py) == 2
    }

    pub fn reset(&self, py: Python<'_>) {
        lock(py, &self.state).reset();
    }
}

/// Re-raise the exception of an `exc_info` tuple, with its traceback.
fn reraise(exc_info: &Bound<'_, PyAny>) -> PyErr {
    let raise = || -> PyResult<PyErr> {
        let mut value = exc_info.get_item(1)?;
        if value.is_none() {
            value = exc_info.get_item(0)?.call0()?;
        }
        let tb = exc_info.get_item(2)?;
        let value = value.call_method1("with_traceback", (tb,))?;
        Ok(PyErr::from_value(value))
    };
    raise().unwrap_or_else(|e| e)
}

fn repr(obj: &Bound<'_, PyAny>) -> String {
    match obj.repr() {
        Ok(r) => r.to_string(),
        Err(_) => "<object>".to_string(),
    }
}

/// A str of code points up to U+00FF, as latin-1 bytes.
pub(crate) fn latin1(s: &Bound<'_, PyString>) -> Option<Vec<u8>> {
    crate::http::latin1_bytes(&s.to_cow().ok()?)
}

fn parse_status(status: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    let s = status
        .cast::<PyString>()
        .map_err(|_| PyTypeError::new_err(format!("{} is not a string", repr(status))))?;
    match latin1(s) {
        Some(bytes) if validate_status(&bytes) => Ok(bytes),
        _ => Err(PyValueError::new_err(format!(
            "Invalid response status {}",
            repr(status)
        ))),
    }
}

fn parse_headers(headers: &Bound<'_, PyAny>, cache: &mut HeaderCache) -> PyResult<HeaderList> {
    if headers.is_instance_of::<PyString>() || headers.is_instance_of::<PyBytes>() {
        return Err(PyTypeError::new_err(
            "headers must be a list of (name, value) tuples",
        ));
    }
    let mut out = Vec::new();
    if let Ok(list) = headers.cast::<PyList>() {
        if let Some(same) = cache.same_list(list) {
            return Ok(same);
        }
        out.reserve(list.len());
        for item in list.iter() {
            match cache.get(&item) {
                Some(h) => out.push(h),
                None => {
                    let h = parse_header(&item)?;
                    cache.offer(&item, &h);
                    out.push(h);
                }
            }
        }
        let out = HeaderList::from(out);
        cache.remember(list, &out);
        return Ok(out);
    }
    for item in headers.try_iter()? {
        out.push(parse_header(&item?)?);
    }
    Ok(out.into())
}

fn parse_header(item: &Bound<'_, PyAny>) -> PyResult<(Vec<u8>, Vec<u8>)> {
    let (name, value) = if let Ok(t) = item.cast::<PyTuple>() {
        if t.len() != 2 {
            return Err(not_a_pair(item));
        }
        (t.get_item(0)?, t.get_item(1)?)
    } else if let Ok(l) = item.cast::<PyList>() {
        if l.len() != 2 {
            return Err(not_a_pair(item));
        }
        (l.get_item(0)?, l.get_item(1)?)
    } else {
        return Err(not_a_pair(item));
    };
    let name_str = name
        .cast::<PyString>()
        .map_err(|_| PyTypeError::new_err(format!("{} is not a string", repr(&name))))?;
    let name_bytes = match latin1(name_str) {
        Some(b) if validate_header_name(&b) => b,
        _ => {
            return Err(PyValueError::new_err(format!(
                "Invalid response header name {}",
                repr(&name)
            )))
        }
    };
    let value_str = value
        .cast::<PyString>()
        .map_err(|_| PyTypeError::new_err(format!("{} is not a string", repr(&value))))?;
    // The value is left out of the message: it may hold what an attacker
    // tried to inject, or a secret.
    let value_bytes = match latin1(value_str) {
        Some(b) if validate_header_value(&b) => b,
        _ => {
            return Err(PyValueError::new_err(format!(
                "Invalid response header value for {}",
                repr(&name)
            )))
        }
    };
    let value_bytes = trim_sp_htab(value_bytes);
    // gunicorn reads it with int(): anything but a number fails the response.
    if name_bytes.eq_ignore_ascii_case(b"content-length")
        && (value_bytes.is_empty() || !value_bytes.iter().all(u8::is_ascii_digit))
    {
        return Err(PyValueError::new_err(format!(
            "Invalid response header value for {}: not a number",
            repr(&name)
        )));
    }
    Ok((name_bytes, value_bytes))
}

fn not_a_pair(item: &Bound<'_, PyAny>) -> PyErr {
    PyTypeError::new_err(format!(
        "response header {} is not a (name, value) tuple",
        repr(item)
    ))
}

pub(crate) fn trim_sp_htab(mut v: Vec<u8>) -> Vec<u8> {
    let end = v
        .iter()
        .rposition(|&c| c != b' ' && c != b'\t')
        .map_or(0, |i| i + 1);
    v.truncate(end);
    let start = v
        .iter()
        .position(|&c| c != b' ' && c != b'\t')
        .unwrap_or(v.len());
    v.drain(..start);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_only_spaces_and_tabs() {
        assert_eq!(trim_sp_htab(b" \tab c\t ".to_vec()), b"ab c");
        assert_eq!(trim_sp_htab(b"   ".to_vec()), b"");
        assert_eq!(trim_sp_htab(b"x".to_vec()), b"x");
    }

    #[test]
    fn header_cache_keeps_shared_tuples_and_skips_per_call_ones() {
        crate::wsgi::testing::with_py(|py| {
            let mut cache = HeaderCache::default();
            let header = (b"A".to_vec(), b"b".to_vec());
            let fresh = PyTuple::new(py, ["A", "b"]).unwrap().into_any();
            cache.offer(&fresh, &header);
            assert!(
                cache.get(&fresh).is_none(),
                "a tuple only we hold is not kept"
            );
            let shared = PyTuple::new(py, ["A", "b"]).unwrap().into_any();
            let _held_elsewhere = (shared.clone(), shared.clone());
            cache.offer(&shared, &header);
            assert_eq!(cache.get(&shared), Some(header.clone()));
            // An equal tuple that is another object is not a hit.
            assert!(cache.get(&fresh).is_none());
            // The cache stays bounded.
            let many: Vec<_> = (0..20)
                .map(|i| PyTuple::new(py, ["A", &i.to_string()]).unwrap().into_any())
                .collect();
            let _refs: Vec<_> = many.iter().map(|t| (t.clone(), t.clone())).collect();
            for t in &many {
                cache.offer(t, &header);
            }
            assert_eq!(cache.entries.len(), HEADER_CACHE_SIZE);
        });
    }

    #[test]
    fn status_cache_answers_for_the_string_asked_about() {
        crate::wsgi::testing::with_py(|py| {
            let mut cache = HeaderCache::default();
            let ok = PyString::new(py, "200 OK").into_any();
            let first = cache.status(&ok).unwrap();
            assert_eq!(&*first, b"200 OK");
            let again = cache.status(&ok).unwrap();
            assert!(Arc::ptr_eq(&first, &again), "the same bytes, not a copy");
            let bad = PyString::new(py, "OK").into_any();
            assert!(cache.status(&bad).is_err());
            assert!(cache.status(&bad).is_err(), "a bad status is never kept");
            let other = PyString::new(py, "404 Not Found").into_any();
            assert_eq!(&*cache.status(&other).unwrap(), b"404 Not Found");
            assert_eq!(&*cache.status(&ok).unwrap(), b"200 OK");
        });
    }

    #[test]
    fn a_repeated_list_of_kept_tuples_shares_its_headers_and_a_changed_one_does_not() {
        crate::wsgi::testing::with_py(|py| {
            let mut cache = HeaderCache::default();
            let tuple = |n: &str, v: &str| PyTuple::new(py, [n, v]).unwrap().into_any();
            let (a, b, c) = (tuple("A", "1"), tuple("B", "2"), tuple("C", "3"));
            // Held elsewhere too, as a code object holds its constants.
            let _held = [a.clone(), b.clone(), c.clone()];
            fn list<'py>(py: Python<'py>, items: &[&Bound<'py, PyAny>]) -> Bound<'py, PyAny> {
                PyList::new(py, items).unwrap().into_any()
            }
            let text = |h: &HeaderList| {
                h.iter()
                    .map(|(n, v)| {
                        format!(
                            "{}={}",
                            String::from_utf8_lossy(n),
                            String::from_utf8_lossy(v)
                        )
                    })
                    .collect::<Vec<_>>()
            };
            let first = parse_headers(&list(py, &[&a, &b]), &mut cache).unwrap();
            let again = parse_headers(&list(py, &[&a, &b]), &mut cache).unwrap();
            assert!(Arc::ptr_eq(&first, &again), "the same list is shared");
            assert_eq!(text(&again), ["A=1", "B=2"]);
            let swapped = parse_headers(&list(py, &[&b, &a]), &mut cache).unwrap();
            assert_eq!(text(&swapped), ["B=2", "A=1"]);
            let longer = parse_headers(&list(py, &[&b, &a, &c]), &mut cache).unwrap();
            assert_eq!(text(&longer), ["B=2", "A=1", "C=3"]);
            let shorter = parse_headers(&list(py, &[&b]), &mut cache).unwrap();
            assert_eq!(text(&shorter), ["B=2"]);
            // A tuple built for the call is never part of a shared list.
            let fresh = parse_headers(&list(py, &[&b, &tuple("D", "4")]), &mut cache).unwrap();
            assert_eq!(text(&fresh), ["B=2", "D=4"]);
            let fresh2 = parse_headers(&list(py, &[&b, &tuple("D", "5")]), &mut cache).unwrap();
            assert_eq!(text(&fresh2), ["B=2", "D=5"]);
            // Pushing the kept tuples out of the cache forgets the list.
            let many: Vec<_> = (0..HEADER_CACHE_SIZE)
                .map(|i| tuple("E", &i.to_string()))
                .collect();
            let _refs: Vec<_> = many.iter().map(Bound::clone).collect();
            parse_headers(&list(py, &[&a, &b]), &mut cache).unwrap();
            parse_headers(&PyList::new(py, &many).unwrap().into_any(), &mut cache).unwrap();
            let after = parse_headers(&list(py, &[&a, &b]), &mut cache).unwrap();
            assert_eq!(text(&after), ["A=1", "B=2"]);
        });
    }

    #[test]
    fn constant_header_tuples_validate_the_same_on_every_call() {
        use crate::wsgi::testing::{app, get, run, with_py};
        const APP: &str = r#"
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-N", environ["QUERY_STRING"])])
    return [b"x"]
"#;
        with_py(|py| {
            let (wsgi, _m) = app(py, APP, "app");
            for q in ["1", "2", "3"] {
                let out = run(py, &wsgi, &get(&format!("/?{q}")));
                let crate::wsgi::testing::Outcome::Sent { headers, .. } = out else {
                    panic!("expected a response");
                };
                assert_eq!(
                    headers,
                    vec![
                        ("Content-Type".to_string(), "text/plain".to_string()),
                        ("X-N".to_string(), q.to_string())
                    ]
                );
            }
        });
    }

    /// Records what reaches it; refuses data once `gone` is set.
    #[derive(Default)]
    struct Recorder {
        heads: Mutex<Vec<Vec<u8>>>,
        data: Mutex<Vec<Vec<u8>>>,
        gone: std::sync::atomic::AtomicBool,
    }

    impl WriteSink for Recorder {
        fn head(&self, head: &ResponseHead) {
            self.heads.lock().unwrap().push(head.status.to_vec());
        }
        fn data(&self, _py: Python<'_>, data: Vec<u8>) -> bool {
            self.data.lock().unwrap().push(data);
            !self.gone.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    const WRITER_APP: &str = r#"
def app(environ, start_response):
    write = start_response("200 OK", [("Content-Type", "text/plain")])
    write(b"one;")
    write(b"two;")
    return [b"three"]

def stubborn(environ, start_response):
    write = start_response("200 OK", [])
    try:
        write(b"x")
    except BrokenPipeError:
        return [b"saw-broken-pipe"]
    return [b"no-error"]
"#;

    #[test]
    fn write_goes_to_the_sink_at_once_and_the_head_only_once() {
        use crate::wsgi::testing::{app, conn, get, with_py};
        use crate::wsgi::{Chunk, Reply};
        with_py(|py| {
            let (wsgi, _m) = app(py, WRITER_APP, "app");
            let sink = Arc::new(Recorder::default());
            let (reply, _) = wsgi.call_with(
                py,
                &get("/"),
                &conn(),
                false,
                Some(sink.clone() as Arc<dyn WriteSink>),
            );
            let Reply::Response { mut body, .. } = reply else {
                panic!("expected a response");
            };
            assert!(body.head_streamed());
            assert_eq!(*sink.heads.lock().unwrap(), vec![b"200 OK".to_vec()]);
            assert_eq!(
                *sink.data.lock().unwrap(),
                vec![b"one;".to_vec(), b"two;".to_vec()]
            );
            // The iterable's data still comes through the body.
            match body.next_chunk(py) {
                Chunk::Data(d) => assert_eq!(d, b"three"),
                _ => panic!("expected the iterable's chunk"),
            }
            body.close(py);
        });
    }

    #[test]
    fn write_raises_broken_pipe_once_the_client_is_gone() {
        use crate::wsgi::testing::{app, conn, get, run, with_py};
        with_py(|py| {
            let (wsgi, _m) = app(py, WRITER_APP, "stubborn");
            let sink = Arc::new(Recorder::default());
            sink.gone.store(true, std::sync::atomic::Ordering::SeqCst);
            let (reply, _) = wsgi.call_with(
                py,
                &get("/"),
                &conn(),
                false,
                Some(sink.clone() as Arc<dyn WriteSink>),
            );
            let crate::wsgi::Reply::Response { mut body, .. } = reply else {
                panic!("expected a response");
            };
            match body.next_chunk(py) {
                crate::wsgi::Chunk::Data(d) => assert_eq!(d, b"saw-broken-pipe"),
                _ => panic!("expected the iterable's chunk"),
            }
            body.close(py);
            // Without a sink, write() data waits for the body as before.
            let (plain, _m) = app(py, WRITER_APP, "app");
            assert_eq!(run(py, &plain, &get("/")).body(), b"one;two;three");
        });
    }
}
