//! The WSGI environ of a request, as gunicorn 27 builds it.
//!
//! The keys every request shares (wsgi.*, SERVER_SOFTWARE, SCRIPT_NAME from
//! the process environment) live in a template dict built once per worker;
//! each request copies it (a memcpy of the key table in CPython) and sets
//! its own entries. The template also holds a placeholder for every entry a
//! request always sets, so the copy is already the right size; where the
//! placeholder is the usual value (`GET`, `HTTP/1.1`, `http`) a request
//! sets the entry only when it differs. Requests that keep coming from one
//! context (listener, peer address, scheme: a proxy, a load balancer, one
//! busy client) copy a version of the template that has that context's
//! entries set too.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString, PyTuple};

use super::errors::ErrorStream;
use super::file_wrapper::FileWrapper;
use super::input::Input;
use super::{ConnInfo, WorkerInfo};
use crate::http::latin1_bytes;
use crate::http::{decimal, Request, RequestBody, Version};
use crate::py::latin1_str as latin1;
use crate::py::GilMutex;

/// Why no environ could be built.
pub(crate) enum EnvironError {
    /// The request path does not start with SCRIPT_NAME (gunicorn's
    /// ConfigurationProblem): answer 500.
    ScriptName(String),
    Python(PyErr),
}

impl From<PyErr> for EnvironError {
    fn from(e: PyErr) -> Self {
        EnvironError::Python(e)
    }
}

pub(crate) struct Template {
    base: Py<PyDict>,
    /// SCRIPT_NAME from the process environment as latin-1 bytes, to match
    /// against the raw path; `None` when it has characters above U+00FF
    /// (no path can start with it).
    script_name: Option<Vec<u8>>,
    /// App threads build environs too: these caches hold Python strings
    /// and are filled while Python runs, so they are GIL-aware locks.
    conn_cache: GilMutex<ConnCache>,
    values: GilMutex<ValueCache>,
    contexts: GilMutex<ContextCache>,
}

/// Where a request came from, as far as the environ tells.
#[derive(Clone, PartialEq, Eq)]
struct Context {
    server_name: Arc<str>,
    server_port: Arc<str>,
    peer_ip: Option<IpAddr>,
    https: bool,
}

impl Context {
    fn of(conn: &ConnInfo, https: bool) -> Context {
        Context {
            server_name: conn.server_name.clone(),
            server_port: conn.server_port.clone(),
            peer_ip: conn.peer.map(|p| p.ip()),
            https,
        }
    }

    fn is(&self, conn: &ConnInfo, https: bool) -> bool {
        self.https == https
            && self.peer_ip == conn.peer.map(|p| p.ip())
            && self.server_port == conn.server_port
            && self.server_name == conn.server_name
    }
}

/// Copies of the template with a context's entries (SERVER_NAME,
/// SERVER_PORT, REMOTE_ADDR, wsgi.url_scheme) already set, for the last few
/// contexts that repeated. One is made on the second miss in a row for the
/// same context, so a stream of one-off clients costs no extra copies.
#[derive(Default)]
struct ContextCache {
    entries: Vec<(Context, Py<PyDict>)>,
    next: usize,
    last_miss: Option<Context>,
}

/// Contexts kept per worker.
const CONTEXT_SLOTS: usize = 4;

impl ContextCache {
    fn find(&self, py: Python<'_>, conn: &ConnInfo, https: bool) -> Option<Py<PyDict>> {
        self.entries
            .iter()
            .find(|(c, _)| c.is(conn, https))
            .map(|(_, d)| d.clone_ref(py))
    }

    /// A miss: whether it repeats the previous miss (worth a copy).
    fn missed(&mut self, conn: &ConnInfo, https: bool) -> bool {
        if self.last_miss.as_ref().is_some_and(|c| c.is(conn, https)) {
            self.last_miss = None;
            return true;
        }
        self.last_miss = Some(Context::of(conn, https));
        false
    }

    fn insert(&mut self, context: Context, dict: Py<PyDict>) {
        if self.entries.len() < CONTEXT_SLOTS {
            self.entries.push((context, dict));
        } else {
            self.entries[self.next] = (context, dict);
            self.next = (self.next + 1) % CONTEXT_SLOTS;
        }
    }
}

/// Header value strings seen recently, direct-mapped by a hash of their
/// bytes: clients send the same Host, User-Agent and Accept values request
/// after request, so the `str` objects are built once and shared.
#[derive(Default)]
struct ValueCache {
    slots: Vec<Option<(Vec<u8>, Py<PyString>)>>,
}

const VALUE_SLOTS: usize = 64;
/// Longer values (cookies, tokens) are rarely repeated verbatim across clients.
const VALUE_MAX_LEN: usize = 256;

impl ValueCache {
    fn get<'py>(&mut self, py: Python<'py>, value: &[u8]) -> Bound<'py, PyString> {
        if value.len() > VALUE_MAX_LEN {
            return latin1(py, value);
        }
        if self.slots.is_empty() {
            self.slots.resize_with(VALUE_SLOTS, || None);
        }
        // FNV-1a over the bytes.
        let hash = value.iter().fold(0x811c_9dc5u32, |h, &b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        });
        let slot = &mut self.slots[hash as usize % VALUE_SLOTS];
        match slot {
            Some((bytes, s)) if bytes.as_slice() == value => s.bind(py).clone(),
            _ => {
                let s = latin1(py, value);
                *slot = Some((value.to_vec(), s.clone().unbind()));
                s
            }
        }
    }
}

/// Strings for the environ's connection entries, reused across requests:
/// the last listener seen (consecutive requests mostly share it), the last
/// peer address (local clients and a proxy share one), and the peer ports
/// of recent connections (a keep-alive connection sends many requests,
/// interleaved with other connections').
#[derive(Default)]
struct ConnCache {
    server: Option<ServerStrings>,
    peer_ip: Option<(IpAddr, Py<PyString>)>,
    /// Direct-mapped by port number.
    ports: Vec<Option<(u16, Py<PyString>)>>,
}

/// A listener's SERVER_NAME and SERVER_PORT, and their Python strings.
struct ServerStrings {
    name: Arc<str>,
    port: Arc<str>,
    py_name: Py<PyString>,
    py_port: Py<PyString>,
}

/// Slots of the peer-port cache.
const PORT_SLOTS: usize = 256;

impl ConnCache {
    fn server<'py>(
        &mut self,
        py: Python<'py>,
        conn: &ConnInfo,
    ) -> (Bound<'py, PyString>, Bound<'py, PyString>) {
        match &self.server {
            Some(s) if s.name == conn.server_name && s.port == conn.server_port => {
                (s.py_name.bind(py).clone(), s.py_port.bind(py).clone())
            }
            _ => {
                let name = PyString::new(py, &conn.server_name);
                let port = PyString::new(py, &conn.server_port);
                self.server = Some(ServerStrings {
                    name: conn.server_name.clone(),
                    port: conn.server_port.clone(),
                    py_name: name.clone().unbind(),
                    py_port: port.clone().unbind(),
                });
                (name, port)
            }
        }
    }

    fn peer<'py>(
        &mut self,
        py: Python<'py>,
        peer: SocketAddr,
    ) -> (Bound<'py, PyString>, Bound<'py, PyString>) {
        let ip = match &self.peer_ip {
            Some((a, s)) if *a == peer.ip() => s.bind(py).clone(),
            _ => {
                let s = PyString::new(py, &ip_text(peer.ip()));
                self.peer_ip = Some((peer.ip(), s.clone().unbind()));
                s
            }
        };
        if self.ports.is_empty() {
            self.ports.resize_with(PORT_SLOTS, || None);
        }
        let slot = &mut self.ports[usize::from(peer.port()) % PORT_SLOTS];
        let port = match slot {
            Some((p, s)) if *p == peer.port() => s.bind(py).clone(),
            _ => {
                let mut buf = [0u8; 20];
                let s = PyString::new(py, decimal(u64::from(peer.port()), &mut buf));
                *slot = Some((peer.port(), s.clone().unbind()));
                s
            }
        };
        (ip, port)
    }
}

/// An address as Python prints it (no brackets), without `fmt` for IPv4.
fn ip_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let mut s = String::with_capacity(15);
            for (i, octet) in v4.octets().iter().enumerate() {
                if i > 0 {
                    s.push('.');
                }
                let mut buf = [0u8; 20];
                s.push_str(decimal(u64::from(*octet), &mut buf));
            }
            s
        }
        IpAddr::V6(v6) => v6.to_string(),
    }
}

/// Entries the template's table holds for a moment, so that it grows.
const ROOM_ENTRIES: usize = 22;

/// Grow the template's table so that its copies have room for a request's
/// own keys. A dict's copy keeps its table, and Python rebuilds a table
/// that gets full (every key rehashed into a new one, the old one freed):
/// with the template's 19 keys in 32 slots, which hold 21, every request
/// with a header field besides Host paid that. Filling to 22 entries makes
/// Python double the table to 64 slots (CPython 3.10 to 3.13 alike); the
/// fillers are deleted again, and each copy still takes the fast path
/// (few deleted entries) with room for 20 more keys.
fn make_room(base: &Bound<'_, PyDict>) -> PyResult<()> {
    let fillers: Vec<String> = (base.len()..ROOM_ENTRIES)
        .map(|i| format!("ferrocorn.room.{i}"))
        .collect();
    for key in &fillers {
        base.set_item(key, base.py().None())?;
    }
    for key in &fillers {
        base.del_item(key)?;
    }
    Ok(())
}

impl Template {
    /// SCRIPT_NAME comes from the process environment (default empty).
    pub fn new(py: Python<'_>, worker: &WorkerInfo) -> PyResult<Template> {
        let script_name = py
            .import("os")?
            .getattr("environ")?
            .call_method1("get", ("SCRIPT_NAME", ""))?
            .cast_into::<PyString>()?;
        Template::with_script_name(py, worker, script_name)
    }

    pub fn with_script_name(
        py: Python<'_>,
        worker: &WorkerInfo,
        script_name: Bound<'_, PyString>,
    ) -> PyResult<Template> {
        let script_name_bytes = latin1_bytes(&script_name.to_cow()?);
        let empty_input = Py::new(py, Input::new(PyBytes::new(py, b"").unbind()))?;

        let base = PyDict::new(py);
        base.set_item("wsgi.version", PyTuple::new(py, [1, 0])?)?;
        base.set_item("wsgi.errors", Py::new(py, ErrorStream)?)?;
        base.set_item("wsgi.multithread", worker.multithread)?;
        base.set_item("wsgi.multiprocess", worker.multiprocess)?;
        base.set_item("wsgi.run_once", false)?;
        base.set_item("wsgi.file_wrapper", py.get_type::<FileWrapper>())?;
        base.set_item("wsgi.early_hints", Py::new(py, super::hints::EarlyHints)?)?;
        base.set_item("wsgi.input_terminated", true)?;
        base.set_item("SERVER_SOFTWARE", format!("ferrocorn/{}", crate::VERSION))?;
        base.set_item(intern!(py, "SCRIPT_NAME"), &script_name)?;
        // Placeholders: the usual value where a request sets the entry only
        // when it differs, else overwritten by every request.
        // One `wsgi.input` shared by every request without a body.
        base.set_item(intern!(py, "wsgi.input"), empty_input)?;
        base.set_item(intern!(py, "wsgi.url_scheme"), intern!(py, "http"))?;
        base.set_item(intern!(py, "REQUEST_METHOD"), intern!(py, "GET"))?;
        base.set_item(intern!(py, "SERVER_PROTOCOL"), intern!(py, "HTTP/1.1"))?;
        for key in [
            intern!(py, "RAW_URI"),
            intern!(py, "PATH_INFO"),
            intern!(py, "QUERY_STRING"),
            intern!(py, "SERVER_NAME"),
            intern!(py, "SERVER_PORT"),
            intern!(py, "REMOTE_ADDR"),
        ] {
            base.set_item(key, intern!(py, ""))?;
        }
        make_room(&base)?;
        Ok(Template {
            base: base.unbind(),
            script_name: script_name_bytes,
            conn_cache: GilMutex::default(),
            values: GilMutex::default(),
            contexts: GilMutex::default(),
        })
    }

    /// The dict to copy for a request from this context: the template with
    /// the context's entries set (`true`), or the plain template (`false`).
    /// No lock is held while Python objects are made or copied (app threads
    /// build environs too).
    fn base_for<'py>(
        &self,
        py: Python<'py>,
        conn: &ConnInfo,
        https: bool,
    ) -> PyResult<(Bound<'py, PyDict>, bool)> {
        let lock = || self.contexts.lock(py);
        {
            // Looking up and noting a miss run no Python code.
            let mut contexts = lock();
            if let Some(dict) = contexts.find(py, conn, https) {
                return Ok((dict.into_bound(py), true));
            }
            if !contexts.missed(conn, https) {
                return Ok((self.base.bind(py).clone(), false));
            }
        }
        let dict = self.base.bind(py).copy()?;
        self.set_context(py, &dict, conn, https)?;
        lock().insert(Context::of(conn, https), dict.clone().unbind());
        Ok((dict, true))
    }

    /// Set the entries that depend only on where the request came from.
    fn set_context(
        &self,
        py: Python<'_>,
        env: &Bound<'_, PyDict>,
        conn: &ConnInfo,
        https: bool,
    ) -> PyResult<()> {
        if https {
            env.set_item(intern!(py, "wsgi.url_scheme"), intern!(py, "https"))?;
        }
        let mut cache = self.conn_cache.lock(py);
        let (name, port) = cache.server(py, conn);
        env.set_item(intern!(py, "SERVER_NAME"), name)?;
        env.set_item(intern!(py, "SERVER_PORT"), port)?;
        if let Some(peer) = conn.peer {
            let (addr, _) = cache.peer(py, peer);
            env.set_item(intern!(py, "REMOTE_ADDR"), addr)?;
        }
        Ok(())
    }

    pub fn build<'py>(
        &self,
        py: Python<'py>,
        req: &Request,
        conn: &ConnInfo,
    ) -> Result<Bound<'py, PyDict>, EnvironError> {
        let head = &req.head;
        let https = conn.https(head);
        let (base, in_context) = self.base_for(py, conn, https)?;
        let env = base.copy()?;
        if !in_context {
            self.set_context(py, &env, conn, https)?;
        }

        if head.method() != b"GET" {
            env.set_item(intern!(py, "REQUEST_METHOD"), method(py, head.method()))?;
        }
        let raw_uri = latin1(py, head.target());
        env.set_item(intern!(py, "RAW_URI"), &raw_uri)?;
        let query = head.query();
        if !query.is_empty() {
            env.set_item(intern!(py, "QUERY_STRING"), latin1(py, query))?;
        }
        match head.version {
            Version::Http11 => {}
            Version::Http10 => {
                env.set_item(intern!(py, "SERVER_PROTOCOL"), intern!(py, "HTTP/1.0"))?
            }
            Version::Other(major, minor) => env.set_item(
                intern!(py, "SERVER_PROTOCOL"),
                PyString::new(py, &format!("HTTP/{major}.{minor}")),
            )?,
        }

        let mut script_name_header = None;
        // Taken out, not held locked while Python objects are made (app
        // threads build environs too; one that finds it taken uses a fresh one).
        let mut values = std::mem::take(&mut *self.values.lock(py));
        for (i, (name, value)) in head.header_pairs().enumerate() {
            if name.eq_ignore_ascii_case(b"content-type") {
                env.set_item(intern!(py, "CONTENT_TYPE"), latin1(py, value))?;
                continue;
            }
            if name.eq_ignore_ascii_case(b"content-length") {
                env.set_item(intern!(py, "CONTENT_LENGTH"), latin1(py, value))?;
                continue;
            }
            if name.eq_ignore_ascii_case(b"script_name") {
                script_name_header = Some(value);
            }
            let key = header_key(py, name);
            let before = env.len();
            env.set_item(&key, values.get(py, value))?;
            if env.len() == before {
                // A repeated field: its values joined with ',' in order.
                let joined = join_repeats(req, i, name);
                env.set_item(&key, latin1(py, &joined))?;
            }
        }

        *self.values.lock(py) = values;
        let script_name = match script_name_header {
            Some(value) => {
                env.set_item(intern!(py, "SCRIPT_NAME"), latin1(py, value))?;
                Some(value)
            }
            None => self.script_name.as_deref(),
        };
        let path = head.path();
        let path_info = match script_name {
            Some(s) => path.strip_prefix(s),
            None => None,
        }
        .ok_or_else(|| {
            let text = |b: &[u8]| b.iter().map(|&c| char::from(c)).collect::<String>();
            EnvironError::ScriptName(format!(
                "Request path '{}' does not start with SCRIPT_NAME '{}'",
                text(path),
                script_name.map(text).unwrap_or_default()
            ))
        })?;
        // The common origin-form target without query or escapes is its
        // own PATH_INFO: share the string.
        let path_info = if path_info == head.target() && !path_info.contains(&b'%') {
            raw_uri
        } else {
            decoded_path(py, path_info)
        };
        env.set_item(intern!(py, "PATH_INFO"), path_info)?;

        if let Some(peer) = conn.peer {
            let (_, port) = self.conn_cache.lock(py).peer(py, peer);
            env.set_item(intern!(py, "REMOTE_PORT"), port)?;
        }
        if let Some(proxy) = &req.proxy {
            env.set_item(intern!(py, "PROXY_PROTOCOL"), proxy.protocol)?;
            if let Some(src) = proxy.source {
                env.set_item(intern!(py, "REMOTE_ADDR"), src.ip().to_string())?;
                env.set_item(intern!(py, "REMOTE_PORT"), src.port().to_string())?;
            }
            if let Some(dst) = proxy.dest {
                env.set_item(intern!(py, "PROXY_ADDR"), dst.ip().to_string())?;
                env.set_item(intern!(py, "PROXY_PORT"), dst.port().to_string())?;
            }
        }

        match &req.body {
            RequestBody::Memory(bytes) if !bytes.is_empty() => {
                let input = Input::new(PyBytes::new(py, bytes).unbind());
                env.set_item(intern!(py, "wsgi.input"), Py::new(py, input)?)?;
            }
            RequestBody::File { file, len } => {
                let input = Input::from_file(file.clone(), *len);
                env.set_item(intern!(py, "wsgi.input"), Py::new(py, input)?)?;
            }
            // The template's shared empty input stays (a WSGI app's
            // bodies always come whole).
            RequestBody::Memory(_) | RequestBody::Streamed => {}
        }
        Ok(env)
    }
}

fn method<'py>(py: Python<'py>, m: &[u8]) -> Bound<'py, PyString> {
    match m {
        b"GET" => intern!(py, "GET").clone(),
        b"POST" => intern!(py, "POST").clone(),
        b"HEAD" => intern!(py, "HEAD").clone(),
        b"PUT" => intern!(py, "PUT").clone(),
        b"DELETE" => intern!(py, "DELETE").clone(),
        b"PATCH" => intern!(py, "PATCH").clone(),
        b"OPTIONS" => intern!(py, "OPTIONS").clone(),
        other => latin1(py, other),
    }
}

/// PATH_INFO: percent-decoded to a latin-1 str, like Python's
/// `unquote_to_bytes(path).decode('latin-1')`.
fn decoded_path<'py>(py: Python<'py>, path: &[u8]) -> Bound<'py, PyString> {
    if path == b"/" {
        return intern!(py, "/").clone();
    }
    if !path.contains(&b'%') {
        return latin1(py, path);
    }
    latin1(py, &crate::http::percent_decode(path))
}

/// Two header names give the same environ key.
fn same_key(a: &[u8], b: &[u8]) -> bool {
    let norm = |c: u8| {
        if c == b'-' {
            b'_'
        } else {
            c.to_ascii_uppercase()
        }
    };
    a.len() == b.len() && a.iter().zip(b).all(|(&x, &y)| norm(x) == norm(y))
}

/// The values of every field up to index `upto` whose key is `name`'s, joined with ','.
fn join_repeats(req: &Request, upto: usize, name: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut first = true;
    for (n, v) in req.head.header_pairs().take(upto + 1) {
        if same_key(n, name) {
            if !first {
                out.push(b',');
            }
            first = false;
            out.extend_from_slice(v);
        }
    }
    out
}

/// `HTTP_` + the name upper-cased with `-` as `_`; common names interned.
fn header_key<'py>(py: Python<'py>, name: &[u8]) -> Bound<'py, PyString> {
    macro_rules! known {
        ($($lower:literal => $key:literal),* $(,)?) => {
            $( if name.eq_ignore_ascii_case($lower) { return intern!(py, $key).clone(); } )*
        };
    }
    known!(
        b"host" => "HTTP_HOST",
        b"user-agent" => "HTTP_USER_AGENT",
        b"accept" => "HTTP_ACCEPT",
        b"accept-encoding" => "HTTP_ACCEPT_ENCODING",
        b"accept-language" => "HTTP_ACCEPT_LANGUAGE",
        b"connection" => "HTTP_CONNECTION",
        b"cookie" => "HTTP_COOKIE",
        b"referer" => "HTTP_REFERER",
        b"cache-control" => "HTTP_CACHE_CONTROL",
        b"authorization" => "HTTP_AUTHORIZATION",
        b"origin" => "HTTP_ORIGIN",
        b"x-forwarded-for" => "HTTP_X_FORWARDED_FOR",
        b"x-forwarded-proto" => "HTTP_X_FORWARDED_PROTO",
        b"x-real-ip" => "HTTP_X_REAL_IP",
        b"x-request-id" => "HTTP_X_REQUEST_ID",
        b"if-none-match" => "HTTP_IF_NONE_MATCH",
        b"if-modified-since" => "HTTP_IF_MODIFIED_SINCE",
        b"upgrade-insecure-requests" => "HTTP_UPGRADE_INSECURE_REQUESTS",
        b"transfer-encoding" => "HTTP_TRANSFER_ENCODING",
        b"expect" => "HTTP_EXPECT",
    );
    let mut key = String::with_capacity(5 + name.len());
    key.push_str("HTTP_");
    key.extend(name.iter().map(|&c| match c {
        b'-' => '_',
        c => char::from(c.to_ascii_uppercase()),
    }));
    PyString::new(py, &key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_print_like_python() {
        assert_eq!(ip_text("10.0.255.1".parse().unwrap()), "10.0.255.1");
        assert_eq!(ip_text("0.0.0.0".parse().unwrap()), "0.0.0.0");
        assert_eq!(ip_text("::1".parse().unwrap()), "::1");
        assert_eq!(ip_text("::ffff:1.2.3.4".parse().unwrap()), "::ffff:1.2.3.4");
        let mut buf = [0u8; 20];
        assert_eq!(decimal(0, &mut buf), "0");
        assert_eq!(decimal(65535, &mut buf), "65535");
        assert_eq!(decimal(80, &mut buf), "80");
    }

    #[test]
    fn header_value_cache_returns_the_value_asked_for() {
        crate::wsgi::testing::with_py(|py| {
            let mut cache = ValueCache::default();
            let values: Vec<Vec<u8>> = (0..200)
                .map(|i| format!("value-{i}").into_bytes())
                .chain([b"caf\xe9".to_vec(), vec![b'x'; VALUE_MAX_LEN + 1]])
                .collect();
            // Twice over, so later lookups hit or replace earlier entries.
            for _ in 0..2 {
                for v in &values {
                    let s = cache.get(py, v);
                    assert_eq!(s.to_string(), latin1(py, v).to_string());
                }
            }
            let a = cache.get(py, b"localhost:8000");
            let b = cache.get(py, b"localhost:8000");
            assert!(a.is(&b), "a repeated value is the same object");
        });
    }

    #[test]
    fn peer_strings_stay_right_when_cache_slots_collide() {
        crate::wsgi::testing::with_py(|py| {
            let mut cache = ConnCache::default();
            let text =
                |(a, p): (Bound<'_, PyString>, Bound<'_, PyString>)| (a.to_string(), p.to_string());
            let a: SocketAddr = "127.0.0.1:40000".parse().unwrap();
            // Same slot (ports 256 apart), another address.
            let b: SocketAddr = "10.1.2.3:40256".parse().unwrap();
            for _ in 0..2 {
                assert_eq!(
                    text(cache.peer(py, a)),
                    ("127.0.0.1".into(), "40000".into())
                );
                assert_eq!(text(cache.peer(py, b)), ("10.1.2.3".into(), "40256".into()));
            }
        });
    }

    /// A template with an empty SCRIPT_NAME.
    fn plain_template(py: Python<'_>) -> Template {
        Template::with_script_name(py, &crate::wsgi::testing::worker(), PyString::new(py, ""))
            .unwrap()
    }

    #[test]
    fn environs_match_their_context_however_requests_from_contexts_interleave() {
        crate::wsgi::testing::with_py(|py| {
            let template = plain_template(py);
            let conn = |peer: &str, port: &str, tls: bool| ConnInfo {
                peer: (!peer.is_empty()).then(|| peer.parse().unwrap()),
                server_name: "127.0.0.1".into(),
                server_port: port.into(),
                tls,
            };
            // Six contexts against four slots, each seen once and in runs.
            let contexts = [
                conn("10.0.0.1:1000", "8000", false),
                conn("10.0.0.2:1001", "8000", false),
                conn("10.0.0.1:1002", "8000", true),
                conn("10.0.0.1:1003", "8443", false),
                conn("[::1]:1004", "8000", false),
                conn("", "8000", false),
            ];
            let order = [
                0, 0, 0, 1, 1, 0, 2, 2, 3, 3, 4, 4, 5, 5, 0, 1, 2, 3, 4, 5, 5, 1, 0,
            ];
            let requests = [
                crate::wsgi::testing::request("GET", "/", &[], b""),
                crate::wsgi::testing::request("POST", "/p?q", &[], b""),
            ];
            for (n, &i) in order.iter().enumerate() {
                let c = &contexts[i];
                let req = &requests[n % 2];
                let Ok(env) = template.build(py, req, c) else {
                    panic!("no environ for request {n}");
                };
                let get = |k: &str| env.get_item(k).unwrap().unwrap().to_string();
                let (addr, port) = match c.peer {
                    Some(p) => (p.ip().to_string(), Some(p.port().to_string())),
                    None => (String::new(), None),
                };
                assert_eq!(get("REMOTE_ADDR"), addr, "request {n}");
                assert_eq!(
                    env.get_item("REMOTE_PORT").unwrap().map(|p| p.to_string()),
                    port,
                    "request {n}"
                );
                assert_eq!(get("SERVER_PORT"), *c.server_port, "request {n}");
                assert_eq!(get("SERVER_NAME"), "127.0.0.1", "request {n}");
                let scheme = if c.tls { "https" } else { "http" };
                assert_eq!(get("wsgi.url_scheme"), scheme, "request {n}");
                let method = if n % 2 == 0 { "GET" } else { "POST" };
                assert_eq!(get("REQUEST_METHOD"), method, "request {n}");
                assert_eq!(get("SERVER_PROTOCOL"), "HTTP/1.1", "request {n}");
                // What an app does to its environ stays in it.
                env.set_item("REMOTE_ADDR", "changed").unwrap();
                env.set_item("wsgi.url_scheme", "changed").unwrap();
            }
            // The template itself never changes.
            let base = template.base.bind(py);
            assert_eq!(
                base.get_item("REMOTE_ADDR").unwrap().unwrap().to_string(),
                ""
            );
            assert_eq!(
                base.get_item("wsgi.url_scheme")
                    .unwrap()
                    .unwrap()
                    .to_string(),
                "http"
            );
        });
    }

    #[test]
    fn a_request_with_many_fields_fills_its_environ_without_a_new_table() {
        crate::wsgi::testing::with_py(|py| {
            let template = plain_template(py);
            let size = |d: &Bound<'_, PyDict>| -> usize {
                let sys = py.import("sys").unwrap();
                let n = sys.call_method1("getsizeof", (d,)).unwrap();
                n.extract().unwrap()
            };
            let base = template.base.bind(py);
            assert!(
                base.keys()
                    .iter()
                    .all(|k| !k.to_string().starts_with("ferrocorn.")),
                "no filler is left in the template"
            );
            // What nginx sends upstream plus a browser's usual fields: the
            // environ's own keys besides Host and REMOTE_PORT.
            let fields = [
                ("Host", "example.com"),
                ("X-Real-IP", "10.0.0.9"),
                ("X-Forwarded-For", "10.0.0.9"),
                ("X-Forwarded-Proto", "https"),
                ("Connection", "close"),
                ("User-Agent", "Mozilla/5.0"),
                ("Accept", "text/html"),
                ("Accept-Language", "en"),
                ("Accept-Encoding", "gzip, br"),
                ("Cookie", "session=abc"),
                ("Referer", "https://example.com/"),
            ];
            let req = crate::wsgi::testing::request("GET", "/a?b=c", &fields, b"");
            let env = template
                .build(py, &req, &crate::wsgi::testing::conn())
                .ok()
                .expect("environ");
            assert_eq!(
                env.get_item("HTTP_REFERER").unwrap().unwrap().to_string(),
                "https://example.com/"
            );
            assert_eq!(
                size(&env),
                size(&base.copy().unwrap()),
                "the copy's table held every key"
            );
        });
    }

    #[test]
    fn dashes_and_underscores_make_the_same_key() {
        assert!(same_key(b"X-Foo", b"x_foo"));
        assert!(!same_key(b"X-Foo", b"X-Fo"));
        assert!(!same_key(b"X-Foo", b"X-Fob"));
    }
}
