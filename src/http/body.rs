//! A request body as it is received: in memory up to `body_buffer_size`,
//! then in an anonymous temporary file, so a large upload costs little memory.
//!
//! The file comes from the `TempFiles` factory in `Config` (the caller decides
//! where and how files are made); this module only writes to it and hands the
//! finished file over inside the `Request`.

use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::sync::Arc;

use super::error::{HttpError, HttpErrorKind};
use super::Config;

/// Reserve at most this much memory for a body ahead of its bytes arriving.
const MAX_PREALLOC: usize = 1 << 20;

/// A streamed body's buffer larger than this is let go once emptied.
const STREAM_KEEP: usize = 256 * 1024;

/// Bytes gathered before each write to a body file: 8 io_uring receive
/// buffers, 2 epoll reads; fewer, larger writes.
const FILE_WRITE_BUFFER: usize = 128 * 1024;

/// Makes the files that hold bodies larger than `Config::body_buffer_size`.
pub trait TempFiles: Send + Sync + fmt::Debug {
    /// A new empty file, open for reading and writing, with no name left on
    /// disk (it vanishes when its last descriptor closes). Errors should say
    /// where the file was to be made.
    fn create(&self) -> io::Result<File>;
}

/// A complete, de-chunked request body.
#[derive(Debug)]
pub enum RequestBody {
    /// At most `body_buffer_size` bytes (an empty body allocates nothing).
    Memory(Vec<u8>),
    /// A larger body: `len` bytes from offset 0 of an unlinked temporary
    /// file. Shared so whoever reads it (e.g. `wsgi.input`) may outlive the
    /// `Request`; the file closes when the last holder drops it.
    File { file: Arc<File>, len: u64 },
    /// The body follows the request in pieces, as it arrives
    /// (`Config::stream_bodies`, taken with `Conn::take_body`); nothing of
    /// it is here, and `len` is 0.
    Streamed,
}

impl Default for RequestBody {
    fn default() -> Self {
        RequestBody::Memory(Vec::new())
    }
}

impl From<Vec<u8>> for RequestBody {
    fn from(bytes: Vec<u8>) -> Self {
        RequestBody::Memory(bytes)
    }
}

impl RequestBody {
    pub fn len(&self) -> u64 {
        match self {
            RequestBody::Memory(v) => v.len() as u64,
            RequestBody::File { len, .. } => *len,
            RequestBody::Streamed => 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes, when the body is held in memory.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            RequestBody::Memory(v) => Some(v),
            RequestBody::File { .. } | RequestBody::Streamed => None,
        }
    }

    /// Every byte, read back from the file if need be (tests and small tools;
    /// a server reads a file body in pieces).
    pub fn to_vec(&self) -> io::Result<Vec<u8>> {
        match self {
            RequestBody::Memory(v) => Ok(v.clone()),
            RequestBody::Streamed => Ok(Vec::new()),
            RequestBody::File { file, len } => {
                use std::os::unix::fs::FileExt;
                let len = usize::try_from(*len)
                    .map_err(|_| io::Error::new(io::ErrorKind::OutOfMemory, "body too large"))?;
                let mut out = vec![0; len];
                file.read_exact_at(&mut out, 0)?;
                Ok(out)
            }
        }
    }
}

/// A body being received: appends decoded bytes, enforces
/// `limit_request_body`, and moves to a file once `body_buffer_size` is
/// passed.
#[derive(Debug)]
pub struct BodyWriter {
    sink: Sink,
    len: u64,
}

#[derive(Debug)]
enum Sink {
    Memory(Vec<u8>),
    File(BufWriter<File>),
    /// Decoded bytes; those from `taken` on are not taken yet (`take_piece`).
    Stream {
        buf: Vec<u8>,
        taken: usize,
    },
    /// Bytes nobody wants (a body the app did not read): counted only.
    Discard,
}

impl BodyWriter {
    /// A writer for a body of `expected` bytes (`None`: chunked, unknown).
    /// A length known to exceed the buffer goes straight to a file.
    pub fn new(expected: Option<u64>, cfg: &Config) -> Result<BodyWriter, HttpError> {
        let sink = match expected {
            Some(n) if spills(cfg, n) => Sink::File(open(cfg)?),
            Some(n) => Sink::Memory(Vec::with_capacity(n.min(MAX_PREALLOC as u64) as usize)),
            None => Sink::Memory(Vec::new()),
        };
        Ok(BodyWriter { sink, len: 0 })
    }

    /// A writer whose bytes are taken out in pieces as they are decoded.
    pub fn stream() -> BodyWriter {
        BodyWriter {
            sink: Sink::Stream {
                buf: Vec::new(),
                taken: 0,
            },
            len: 0,
        }
    }

    /// Decoded bytes not taken yet, at most `max` of them (in order), in
    /// memory of their own size: the piece may wait in a queue, and must
    /// not hold a large receive's memory there.
    pub fn take_piece(&mut self, max: usize) -> Option<Vec<u8>> {
        let Sink::Stream { buf, taken } = &mut self.sink else {
            return None;
        };
        let rest = &buf[*taken..];
        if rest.is_empty() {
            return None;
        }
        let n = rest.len().min(max);
        let piece = rest[..n].to_vec();
        *taken += n;
        if *taken == buf.len() {
            *taken = 0;
            if buf.capacity() > STREAM_KEEP {
                // A large receive went through: do not keep its memory.
                *buf = Vec::new();
            } else {
                buf.clear();
            }
        }
        Some(piece)
    }

    /// Stop keeping bytes: the rest is decoded, counted and dropped.
    pub fn discard(&mut self) {
        self.sink = Sink::Discard;
    }

    /// Body bytes written so far (kept or not).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// No body byte written yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The decoder announced a chunk of `n` bytes: reserve memory for it
    /// unless it will not stay in memory.
    pub fn reserve(&mut self, n: u64, cfg: &Config) {
        if let Sink::Memory(v) = &mut self.sink {
            if !spills(cfg, self.len.saturating_add(n)) {
                v.reserve(n.min(MAX_PREALLOC as u64) as usize);
            }
        }
    }

    /// The memory holding the body so far, taken out to be filled in place
    /// (`None` for a body in a file). `put_memory` gives it back.
    pub fn take_memory(&mut self) -> Option<Vec<u8>> {
        match &mut self.sink {
            Sink::Memory(v) => Some(std::mem::take(v)),
            Sink::File(_) | Sink::Stream { .. } | Sink::Discard => None,
        }
    }

    /// Give back the memory `take_memory` took, with body bytes appended.
    /// The caller keeps within the body's announced length, which was
    /// checked against `limit_request_body` and the memory threshold.
    pub fn put_memory(&mut self, bytes: Vec<u8>) {
        self.len = bytes.len() as u64;
        self.sink = Sink::Memory(bytes);
    }

    /// Append decoded body bytes.
    pub fn write(&mut self, bytes: &[u8], cfg: &Config) -> Result<(), HttpError> {
        if bytes.is_empty() {
            return Ok(());
        }
        let len = self.len + bytes.len() as u64;
        match &mut self.sink {
            Sink::Discard => {
                self.len = len;
                return Ok(());
            }
            Sink::Stream { buf, taken } => {
                check_limit(cfg, len)?;
                if *taken > 0 && *taken >= buf.len() / 2 {
                    // Taken bytes go before the buffer would grow (each
                    // byte moves at most once on average).
                    buf.drain(..*taken);
                    *taken = 0;
                }
                buf.extend_from_slice(bytes);
                self.len = len;
                return Ok(());
            }
            Sink::Memory(_) | Sink::File(_) => check_limit(cfg, len)?,
        }
        if let Sink::Memory(v) = &mut self.sink {
            if !spills(cfg, len) {
                v.extend_from_slice(bytes);
                self.len = len;
                return Ok(());
            }
            let mut file = open(cfg)?;
            file.write_all(v).map_err(write_failed)?;
            self.sink = Sink::File(file);
        }
        if let Sink::File(f) = &mut self.sink {
            f.write_all(bytes).map_err(write_failed)?;
        }
        self.len = len;
        Ok(())
    }

    /// The whole body has been written.
    pub fn finish(self) -> Result<RequestBody, HttpError> {
        match self.sink {
            Sink::Memory(v) => Ok(RequestBody::Memory(v)),
            Sink::Stream { mut buf, taken } => {
                buf.drain(..taken);
                Ok(RequestBody::Memory(buf))
            }
            Sink::Discard => Ok(RequestBody::Memory(Vec::new())),
            Sink::File(f) => {
                let file = f.into_inner().map_err(|e| write_failed(e.into_error()))?;
                Ok(RequestBody::File {
                    file: Arc::new(file),
                    len: self.len,
                })
            }
        }
    }
}

/// `limit_request_body` holds for a body that has reached `len` bytes.
fn check_limit(cfg: &Config, len: u64) -> Result<(), HttpError> {
    let limit = cfg.limit_request_body;
    if limit > 0 && len > limit {
        return Err(too_large(limit));
    }
    Ok(())
}

/// Whether a body of `len` bytes is kept in a file.
fn spills(cfg: &Config, len: u64) -> bool {
    cfg.temp_files.is_some() && len > cfg.body_buffer_size
}

fn open(cfg: &Config) -> Result<BufWriter<File>, HttpError> {
    let Some(factory) = &cfg.temp_files else {
        return Err(storage_error("no temporary file directory".into()));
    };
    let file = factory.create().map_err(|e| {
        storage_error(format!(
            "cannot create a temporary file for a request body over {} bytes: {e}",
            cfg.body_buffer_size
        ))
    })?;
    Ok(BufWriter::with_capacity(FILE_WRITE_BUFFER, file))
}

fn write_failed(e: io::Error) -> HttpError {
    storage_error(format!(
        "cannot write a request body to its temporary file: {e}"
    ))
}

fn storage_error(detail: String) -> HttpError {
    HttpError::new(HttpErrorKind::BodyNotStored, detail)
}

pub(super) fn too_large(limit: u64) -> HttpError {
    HttpError::new(
        HttpErrorKind::RequestBodyTooLarge,
        format!("request body larger than limit_request_body ({limit} bytes)"),
    )
}

#[cfg(test)]
pub(super) mod testing {
    //! Temporary-file factories for the tests of the http layer.

    use std::fs::{File, OpenOptions};
    use std::io;
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::TempFiles;

    /// Named files in the system temp dir, removed as soon as they are open.
    #[derive(Debug)]
    pub struct Unlinked;

    impl TempFiles for Unlinked {
        fn create(&self) -> io::Result<File> {
            static N: AtomicU64 = AtomicU64::new(0);
            let path = std::env::temp_dir().join(format!(
                "ferrocorn-http-test-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)?;
            std::fs::remove_file(&path)?;
            Ok(file)
        }
    }

    /// A directory that refuses every file.
    #[derive(Debug)]
    pub struct Refusing;

    impl TempFiles for Refusing {
        fn create(&self) -> io::Result<File> {
            Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "/nowhere: permission denied",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{Refusing, Unlinked};
    use super::*;

    fn cfg(buffer: u64, limit: u64) -> Config {
        Config {
            body_buffer_size: buffer,
            temp_files: Some(Arc::new(Unlinked)),
            limit_request_body: limit,
            ..Config::default()
        }
    }

    fn spilled(b: &RequestBody) -> bool {
        matches!(b, RequestBody::File { .. })
    }

    #[test]
    fn body_up_to_the_buffer_size_stays_in_memory() {
        let cfg = cfg(8, 0);
        let mut w = BodyWriter::new(None, &cfg).unwrap();
        w.write(b"abcd", &cfg).unwrap();
        w.write(b"efgh", &cfg).unwrap();
        let body = w.finish().unwrap();
        assert_eq!(body.as_bytes(), Some(&b"abcdefgh"[..]));
        let body = BodyWriter::new(Some(8), &cfg).unwrap().finish().unwrap();
        assert!(!spilled(&body));
    }

    #[test]
    fn body_growing_past_the_buffer_moves_to_a_file_with_every_byte() {
        let cfg = cfg(8, 0);
        let mut w = BodyWriter::new(None, &cfg).unwrap();
        w.write(b"abcdef", &cfg).unwrap();
        w.write(b"ghi", &cfg).unwrap();
        w.write(b"jk", &cfg).unwrap();
        let body = w.finish().unwrap();
        assert!(spilled(&body));
        assert_eq!(body.len(), 11);
        assert_eq!(body.as_bytes(), None);
        assert_eq!(body.to_vec().unwrap(), b"abcdefghijk");
    }

    #[test]
    fn known_length_over_the_buffer_goes_straight_to_a_file() {
        let cfg = cfg(8, 0);
        let mut w = BodyWriter::new(Some(9), &cfg).unwrap();
        assert!(matches!(w.sink, Sink::File(_)));
        w.write(b"123456789", &cfg).unwrap();
        assert_eq!(w.finish().unwrap().to_vec().unwrap(), b"123456789");
    }

    #[test]
    fn without_a_temp_file_factory_every_body_stays_in_memory() {
        let cfg = Config {
            body_buffer_size: 2,
            ..Config::default()
        };
        let mut w = BodyWriter::new(Some(5), &cfg).unwrap();
        w.write(b"hello", &cfg).unwrap();
        assert_eq!(w.finish().unwrap().as_bytes(), Some(&b"hello"[..]));
    }

    #[test]
    fn limit_is_checked_before_bytes_are_stored() {
        let cfg = cfg(2, 5);
        let mut w = BodyWriter::new(None, &cfg).unwrap();
        w.write(b"abc", &cfg).unwrap();
        let e = w.write(b"def", &cfg).unwrap_err();
        assert_eq!(e.kind, HttpErrorKind::RequestBodyTooLarge);
        assert_eq!(e.status(), Some(413));
        assert_eq!(w.len, 3);
    }

    #[test]
    fn a_file_that_cannot_be_made_is_a_500_naming_the_cause() {
        let cfg = Config {
            body_buffer_size: 2,
            temp_files: Some(Arc::new(Refusing)),
            ..Config::default()
        };
        let e = BodyWriter::new(Some(3), &cfg).unwrap_err();
        assert_eq!(e.status(), Some(500));
        assert!(e.detail.contains("/nowhere"), "{}", e.detail);
        let mut w = BodyWriter::new(None, &cfg).unwrap();
        w.write(b"ab", &cfg).unwrap();
        assert_eq!(w.write(b"c", &cfg).unwrap_err().status(), Some(500));
    }
}
