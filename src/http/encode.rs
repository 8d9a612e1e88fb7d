//! Response side: status line and headers, body framing, error pages.

use super::{DateCache, Version};

/// How the body of a response is delimited on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseFraming {
    /// `Content-Length: n`; bytes past n are dropped.
    Length(u64),
    /// `Transfer-Encoding: chunked` (HTTP/1.1, no length given).
    Chunked,
    /// No length on HTTP/1.0: the body ends when the connection closes.
    CloseDelimited,
    /// HEAD, 1xx, 204, 304: body bytes are dropped.
    NoBody,
}

/// What the server knows about the request a response answers.
#[derive(Clone, Copy, Debug)]
pub struct RequestInfo {
    pub version: Version,
    pub is_head: bool,
    /// The request allows keep-alive (`Request::keep_alive`).
    pub keep_alive: bool,
}

/// Encodes one response into an output buffer.
pub struct ResponseWriter {
    framing: ResponseFraming,
    keep_alive: bool,
}

impl ResponseWriter {
    /// Write the status line and headers. `status` is the WSGI status
    /// (`"200 OK"`), `headers` the app's (name, value) pairs, already
    /// validated with `validate_response_header`. Hop-by-hop and
    /// server-owned headers (Connection, Keep-Alive, Transfer-Encoding,
    /// Server, Date, ...) are dropped; `Server`, `Date` and `Connection` are
    /// the server's. `body_len` is the body size when the server knows it
    /// (a list body) and the app gave no Content-Length. `force_close`
    /// makes this the last response on the connection.
    pub fn start(
        out: &mut Vec<u8>,
        date: &mut DateCache,
        req: RequestInfo,
        status: &[u8],
        headers: &[(Vec<u8>, Vec<u8>)],
        body_len: Option<u64>,
        force_close: bool,
    ) -> ResponseWriter {
        let _ = (out, date, req, status, headers, body_len, force_close);
        todo!()
    }

    /// Frame a body chunk into `out` (empty chunks write nothing).
    pub fn body(&mut self, out: &mut Vec<u8>, chunk: &[u8]) {
        let _ = (out, chunk);
        todo!()
    }

    /// End the body (`0\r\n\r\n` when chunked). Returns whether the
    /// connection may carry another request: false when the framing needs a
    /// close or a Content-Length body came up short.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> bool {
        let _ = out;
        todo!()
    }

    pub fn framing(&self) -> ResponseFraming {
        self.framing
    }

    pub fn keep_alive(&self) -> bool {
        self.keep_alive
    }
}

/// A status string must be three digits, optionally followed by a space and a reason.
pub fn validate_status(status: &[u8]) -> bool {
    let _ = status;
    todo!()
}

/// RFC 9110 token name; value of SP, HTAB, VCHAR and obs-text only.
pub fn validate_response_header(name: &[u8], value: &[u8]) -> bool {
    let _ = (name, value);
    todo!()
}

/// A complete error response (gunicorn's page: `Connection: close`,
/// `Content-Type: text/html`, Content-Length) for `status` with `message`.
pub fn error_response(out: &mut Vec<u8>, status: u16, message: &str) {
    let _ = (out, status, message);
    todo!()
}
