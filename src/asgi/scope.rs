//! The `http` scope of one request, or the `websocket` scope of an
//! upgrade, per the ASGI HTTP and WebSocket specs (2.4).

use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyTuple};

use crate::http::{self, ConnInfo, Request};
use crate::py::latin1_str as latin1;

/// `asgi` is `{"version": "3.0", "spec_version": "2.4"}`: 2.4 because a
/// `send` after the client left raises `OSError`, so apps need not listen
/// for `http.disconnect` while they stream.
pub(crate) fn build<'py>(
    py: Python<'py>,
    req: &Request,
    conn: &ConnInfo,
    root_path: &str,
    websocket: Option<&[String]>,
) -> PyResult<Bound<'py, PyDict>> {
    let head = &req.head;
    let scope = PyDict::new(py);
    let kind = if websocket.is_some() {
        intern!(py, "websocket")
    } else {
        intern!(py, "http")
    };
    scope.set_item(intern!(py, "type"), kind)?;
    let asgi = PyDict::new(py);
    asgi.set_item(intern!(py, "version"), intern!(py, "3.0"))?;
    asgi.set_item(intern!(py, "spec_version"), intern!(py, "2.4"))?;
    scope.set_item(intern!(py, "asgi"), asgi)?;
    let version = match head.version.as_str() {
        // The ASGI spec's name for HTTP/2 (gunicorn 27, hypercorn: "2").
        "HTTP/2.0" => "2",
        v => v.strip_prefix("HTTP/").unwrap_or(v),
    };
    scope.set_item(intern!(py, "http_version"), version)?;
    let https = conn.https(head);
    let scheme = match (websocket, https) {
        (Some(protocols), secure) => {
            scope.set_item(intern!(py, "subprotocols"), protocols)?;
            let extensions = PyDict::new(py);
            // Denial responses (`websocket.http.response.*`) are supported.
            extensions.set_item(intern!(py, "websocket.http.response"), PyDict::new(py))?;
            scope.set_item(intern!(py, "extensions"), extensions)?;
            if secure {
                intern!(py, "wss")
            } else {
                intern!(py, "ws")
            }
        }
        (None, secure) => {
            scope.set_item(intern!(py, "method"), latin1(py, head.method()))?;
            // Response trailers (`http.response.trailers`): always offered;
            // an HTTP/1.1 client that did not send `TE: trailers` gets the
            // body without them.
            let extensions = PyDict::new(py);
            extensions.set_item(intern!(py, "http.response.trailers"), PyDict::new(py))?;
            scope.set_item(intern!(py, "extensions"), extensions)?;
            if secure {
                intern!(py, "https")
            } else {
                intern!(py, "http")
            }
        }
    };
    scope.set_item(intern!(py, "scheme"), scheme)?;
    // The path the app sees includes root_path (as uvicorn and Starlette
    // expect: routing strips it again).
    let decoded = http::percent_decode(head.path());
    let mut path = String::with_capacity(root_path.len() + decoded.len());
    path.push_str(root_path);
    path.push_str(&String::from_utf8_lossy(&decoded));
    scope.set_item(intern!(py, "path"), path)?;
    let mut raw_path = Vec::with_capacity(root_path.len() + head.path().len());
    raw_path.extend_from_slice(root_path.as_bytes());
    raw_path.extend_from_slice(head.path());
    scope.set_item(intern!(py, "raw_path"), PyBytes::new(py, &raw_path))?;
    scope.set_item(intern!(py, "query_string"), PyBytes::new(py, head.query()))?;
    scope.set_item(intern!(py, "root_path"), root_path)?;
    let headers = PyList::empty(py);
    let mut lower = Vec::new();
    for (name, value) in head.header_pairs() {
        lower.clear();
        lower.extend(name.iter().map(u8::to_ascii_lowercase));
        headers.append(PyTuple::new(
            py,
            [PyBytes::new(py, &lower), PyBytes::new(py, value)],
        )?)?;
    }
    scope.set_item(intern!(py, "headers"), headers)?;
    let client = req.proxy.as_ref().and_then(|p| p.source).or(conn.peer);
    match client {
        Some(addr) => {
            scope.set_item(intern!(py, "client"), (addr.ip().to_string(), addr.port()))?
        }
        None => scope.set_item(intern!(py, "client"), py.None())?,
    }
    match req.proxy.as_ref().and_then(|p| p.dest) {
        Some(addr) => {
            scope.set_item(intern!(py, "server"), (addr.ip().to_string(), addr.port()))?
        }
        None => match conn.server_port.parse::<u16>() {
            Ok(port) => scope.set_item(intern!(py, "server"), (&*conn.server_name, port))?,
            // A unix socket: its path, and no port.
            Err(_) => scope.set_item(intern!(py, "server"), (&*conn.server_name, py.None()))?,
        },
    }
    Ok(scope)
}
