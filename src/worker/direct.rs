//! The sync worker's `write()` callable: the app runs on the loop thread,
//! so data it passes to `write()` is written to the socket at once, with
//! a blocking send (the interpreter lock released while it waits), the way
//! gunicorn's sync worker sends it. Used only while the engine has nothing
//! queued for the connection and it is not TLS; otherwise `write()` data
//! waits for the app to return, as before.
//!
//! The head goes out on the first `write()`; after the app returns, the
//! worker goes on with the same `ResponseWriter` (its framing state) for
//! the rest of the body through the engine.

use std::os::fd::RawFd;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use pyo3::prelude::*;

use crate::http::{DateCache, RequestInfo, ResponseWriter};
use crate::wsgi::{ResponseHead, WriteSink};

/// One per worker, prepared for each request that may use it.
pub(super) struct DirectSink {
    /// How long one send may wait for the client to read.
    timeout: Duration,
    inner: Mutex<Direct>,
}

struct Direct {
    fd: RawFd,
    req: RequestInfo,
    force_close: bool,
    writer: Option<ResponseWriter>,
    /// Body bytes given to `write()`.
    sent: u64,
    /// A send failed: the client is gone (or too slow).
    failed: bool,
    buf: Vec<u8>,
    /// The Date/Server fields, formatted once a second.
    date: DateCache,
}

impl DirectSink {
    pub fn new(timeout: Duration) -> DirectSink {
        DirectSink {
            timeout,
            inner: Mutex::new(Direct {
                fd: -1,
                req: RequestInfo {
                    version: crate::http::Version::Http11,
                    is_head: false,
                    keep_alive: false,
                },
                force_close: false,
                writer: None,
                sent: 0,
                failed: false,
                buf: Vec::new(),
                date: DateCache::with_clock(crate::sys::time::coarse_unix_secs),
            }),
        }
    }

    /// Ready for a request on the socket `fd`.
    pub fn prepare(&self, fd: RawFd, req: RequestInfo, force_close: bool) {
        let mut d = self.lock();
        d.fd = fd;
        d.req = req;
        d.force_close = force_close;
        d.writer = None;
        d.sent = 0;
        d.failed = false;
    }

    fn lock(&self) -> MutexGuard<'_, Direct> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// After the app returned: the writer the head was encoded with (when
    /// `write()` sent it), whether a send failed, and the body bytes sent.
    pub fn finish(&self) -> (Option<ResponseWriter>, bool, u64) {
        let mut d = self.lock();
        d.fd = -1;
        (d.writer.take(), d.failed, d.sent)
    }

    /// Send `buf` (then keep its allocation); false once a send failed.
    fn send(&self, py: Option<Python<'_>>, fd: RawFd, buf: Vec<u8>) -> bool {
        let send = || crate::sys::transport::send_all_blocking(fd, &buf, self.timeout);
        let result = match py {
            Some(py) => py.detach(send),
            None => send(),
        };
        let mut d = self.lock();
        if let Err(e) = result {
            crate::debug!("write() could not send: {e}");
            d.failed = true;
        }
        let mut buf = buf;
        buf.clear();
        d.buf = buf;
        !d.failed
    }
}

impl WriteSink for DirectSink {
    fn head(&self, head: &ResponseHead) {
        let (fd, buf) = {
            let mut d = self.lock();
            let d = &mut *d;
            let mut buf = std::mem::take(&mut d.buf);
            d.writer = Some(ResponseWriter::start(
                &mut buf,
                &mut d.date,
                d.req,
                &head.status,
                &head.headers,
                None,
                d.force_close,
            ));
            (d.fd, buf)
        };
        // A head fits in an empty socket buffer: this does not wait.
        self.send(None, fd, buf);
    }

    fn data(&self, py: Python<'_>, data: Vec<u8>) -> bool {
        let (fd, buf) = {
            let mut d = self.lock();
            if d.failed || d.fd < 0 {
                return false;
            }
            d.sent += data.len() as u64;
            let mut buf = std::mem::take(&mut d.buf);
            if let Some(w) = &mut d.writer {
                w.body(&mut buf, &data);
            }
            (d.fd, buf)
        };
        self.send(Some(py), fd, buf)
    }

    fn early_hints(&self, py: Python<'_>, headers: Vec<(Vec<u8>, Vec<u8>)>) {
        let (fd, buf) = {
            let mut d = self.lock();
            // Not this request's socket (the app returned, or the request is
            // answered through the engine), the head went out, or HTTP/1.0.
            if d.failed
                || d.fd < 0
                || d.writer.is_some()
                || d.req.version != crate::http::Version::Http11
            {
                return;
            }
            let mut buf = std::mem::take(&mut d.buf);
            crate::http::early_hints(&mut buf, &headers);
            (d.fd, buf)
        };
        self.send(Some(py), fd, buf);
    }
}
