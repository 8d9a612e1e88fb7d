//! A `wsgi.file_wrapper` body around a regular file goes out with the
//! engine's `send_file` (sendfile on epoll, splice on io_uring): the file's
//! bytes never pass through Python or our buffers.
//!
//! What is sent follows gunicorn: from the file object's position
//! (`tell()`, else the descriptor's offset) to the end of the file, or only
//! Content-Length bytes when the app set one. Without a Content-Length,
//! HTTP/1.1 frames the file as one chunk whose size line is the exact
//! remaining size (known from fstat); HTTP/1.0 sends it and closes. The
//! engine gets its own duplicate of the descriptor, so the wrapper's
//! `close()`, which runs as soon as the range is queued (as after the last
//! chunk on the read path), cannot cut the transfer short.
//!
//! The body is read chunk by chunk as before when `--no-sendfile` is given,
//! on TLS connections, when the file-like object has no usable `fileno()`
//! or `tell()` (BytesIO, a wrapper whose `fileno` raises), or when the
//! descriptor is not a regular file (a pipe, a socket). A response without
//! a body (HEAD, 204, 304) ends without reading the file at all.

use std::fs::File;
use std::io::{Seek, Write};
use std::os::fd::OwnedFd;

use pyo3::prelude::*;

use super::{Stream, Worker};
use crate::engine::{self, ConnId};
use crate::http::ResponseFraming;

/// The part of a file to send.
struct FileRange {
    fd: OwnedFd,
    offset: u64,
    len: u64,
}

/// The range `framing` calls for, from the app's descriptor `fd` at
/// `position`; `None` when the file cannot be sent this way.
fn file_range(fd: i32, position: Option<u64>, framing: ResponseFraming) -> Option<FileRange> {
    let mut file = File::from(engine::dup_fd(fd).ok()?);
    let meta = file.metadata().ok()?;
    if !meta.is_file() {
        return None;
    }
    let offset = match position {
        Some(p) => p,
        // The duplicate shares the app's offset; asking does not move it.
        None => file.stream_position().ok()?,
    };
    let rest = meta.len().saturating_sub(offset);
    let len = match framing {
        ResponseFraming::Length(n) => n.min(rest),
        _ => rest,
    };
    Some(FileRange {
        fd: file.into(),
        offset,
        len,
    })
}

impl Worker<'_> {
    /// Send the body of `stream` straight from its file and end the
    /// response (returns `None`), or hand the stream back to be pulled
    /// chunk by chunk.
    pub(super) fn send_file_body(
        &mut self,
        py: Python<'_>,
        id: ConnId,
        mut stream: Stream,
    ) -> Option<Stream> {
        let framing = stream.writer.framing();
        let Some(c) = self.state.get(id) else {
            return Some(stream);
        };
        let range = if framing == ResponseFraming::NoBody {
            if stream.body.file(py).is_none() {
                return Some(stream);
            }
            None
        } else {
            if !self.cfg.sendfile || c.tls.is_some() {
                return Some(stream);
            }
            let Some(src) = stream.body.file_source(py) else {
                return Some(stream);
            };
            let Some(range) = file_range(src.fd, src.position, framing) else {
                return Some(stream);
            };
            Some(range)
        };
        let chunked = framing == ResponseFraming::Chunked;
        let mut sent = 0;
        if let Some(r) = range.filter(|r| r.len > 0) {
            if chunked {
                let _ = write!(c.out, "{:x}\r\n", r.len);
            }
            // The head (and chunk size) first, then the file. No TLS here,
            // so the output goes to the engine as it is.
            let head = std::mem::take(&mut c.out);
            c.queued += head.len();
            self.engine.send(id, head);
            self.engine.send_file(id, r.fd, r.offset, r.len);
            c.queued = c.queued.saturating_add(r.len as usize);
            if chunked {
                c.out.extend_from_slice(b"\r\n");
            }
            sent = r.len;
        }
        let keep = match framing {
            // The writer did not see the bytes: a whole body keeps the
            // connection, a short file (like a short read) closes it.
            ResponseFraming::Length(n) => stream.writer.keep_alive() && sent == n,
            _ => stream.writer.finish(&mut c.out),
        };
        if let Some(d) = &mut stream.done {
            d.sent += sent;
        }
        // The same ending as after the last chunk of a body that is read.
        stream.end(py, c, keep, self.status, self.cfg, self.age);
        self.flush(id);
        None
    }
}
