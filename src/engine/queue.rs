//! A connection's output queue: owned buffers and file ranges, written
//! front to back, the front one possibly in part.
//!
//! Both engines use it. Entries are only appended at the back and only
//! dropped from the front, so while io_uring has a send in flight that
//! points into the front buffers, appending more output never moves the
//! bytes the kernel is reading (a `Vec`'s heap block stays put when the
//! `Vec` itself moves inside the deque).
//!
//! Byte buffers are either owned (`Vec<u8>`) or shared: memory someone
//! else owns and keeps unchanged and in place for as long as the entry
//! lives (an app's immutable `bytes` object), sent without a copy.
//!
//! A file range (`send_file`) keeps its descriptor open until its last
//! byte is written or the queue is cleared: the engine owns it, so the app
//! closing its own file early cannot break the transfer. Byte buffers are
//! written with vectored sends up to the next file range; a file range is
//! written by the engine's file path (sendfile, splice) on its own.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// Most buffers handed to one send call (well under the kernel's IOV_MAX).
pub const MAX_IOV: usize = 64;

/// The unwritten part of a file queued with `send_file`.
pub struct FileRange {
    pub fd: OwnedFd,
    /// Where the next unwritten byte is in the file.
    pub offset: u64,
    /// Bytes still to write.
    pub left: u64,
}

/// Bytes to send: owned, or shared (the holder keeps them unchanged and
/// at the same address until it is dropped).
pub enum Bytes {
    Owned(Vec<u8>),
    Shared(Box<dyn AsRef<[u8]> + Send>),
}

impl Bytes {
    fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Owned(v) => v,
            Bytes::Shared(s) => (**s).as_ref(),
        }
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(v: Vec<u8>) -> Bytes {
        Bytes::Owned(v)
    }
}

enum Entry {
    Bytes(Bytes),
    File(FileRange),
}

/// Owned buffers whose bytes are all written, kept (emptied) for the
/// next responses, so answering a request on a kept-alive connection
/// costs no allocation (`Engine::buffer`). Bounded in count and size:
/// at most `SPARE_MAX` buffers of at most `SPARE_CAPACITY_MAX` bytes.
pub struct Spare {
    bufs: Vec<Vec<u8>>,
}

pub const SPARE_MAX: usize = 32;
pub const SPARE_CAPACITY_MAX: usize = 16 * 1024;

impl Default for Spare {
    fn default() -> Spare {
        Spare {
            bufs: Vec::with_capacity(SPARE_MAX),
        }
    }
}

impl Spare {
    pub fn keep(&mut self, mut buf: Vec<u8>) {
        let cap = buf.capacity();
        if cap > 0 && cap <= SPARE_CAPACITY_MAX && self.bufs.len() < SPARE_MAX {
            buf.clear();
            self.bufs.push(buf);
        }
    }

    /// A kept buffer, or a new empty one.
    pub fn take(&mut self) -> Vec<u8> {
        self.bufs.pop().unwrap_or_default()
    }
}

#[derive(Default)]
pub struct SendQueue {
    entries: VecDeque<Entry>,
    /// Bytes of the front entry already written (when it is `Bytes`).
    head: usize,
}

impl SendQueue {
    /// Append `data` (an empty buffer is not queued).
    pub fn push(&mut self, data: impl Into<Bytes>) {
        let data = data.into();
        if !data.as_slice().is_empty() {
            self.entries.push_back(Entry::Bytes(data));
        }
    }

    /// Put `data` before everything queued: the bytes of the front file
    /// range, read into memory (io_uring's small files). Only while no
    /// send is in flight, which may point into the front entries.
    pub fn push_front(&mut self, data: Bytes) {
        if !data.as_slice().is_empty() {
            debug_assert_eq!(self.head, 0, "the front buffer is partly written");
            self.entries.push_front(Entry::Bytes(data));
        }
    }

    /// Append `len` bytes of `fd` from `offset` (nothing for `len == 0`;
    /// the descriptor is then closed at once).
    pub fn push_file(&mut self, fd: OwnedFd, offset: u64, len: u64) {
        if len > 0 {
            self.entries.push_back(Entry::File(FileRange {
                fd,
                offset,
                left: len,
            }));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Drop everything queued (the connection is gone); file descriptors
    /// are closed.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.head = 0;
    }

    /// The front entry is a file range: (descriptor, offset, bytes left).
    pub fn front_file(&self) -> Option<(RawFd, u64, u64)> {
        match self.entries.front() {
            Some(Entry::File(f)) => Some((f.fd.as_raw_fd(), f.offset, f.left)),
            _ => None,
        }
    }

    /// The front entry is a byte buffer.
    pub fn front_is_bytes(&self) -> bool {
        matches!(self.entries.front(), Some(Entry::Bytes(_)))
    }

    /// The unwritten bytes before the first file range, as up to
    /// `out.len()` slices; returns how many.
    pub fn slices<'a>(&'a self, out: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (i, entry) in self.entries.iter().enumerate() {
            let Entry::Bytes(buf) = entry else { break };
            if n == out.len() {
                break;
            }
            let start = if i == 0 { self.head } else { 0 };
            out[n] = IoSlice::new(&buf.as_slice()[start..]);
            n += 1;
        }
        n
    }

    /// The unwritten bytes before the first file range as raw iovecs (for
    /// io_uring, which keeps them until the send completes), replacing the
    /// contents of `out`.
    pub fn iovecs(&self, out: &mut Vec<libc::iovec>) {
        out.clear();
        for (i, entry) in self.entries.iter().take(MAX_IOV).enumerate() {
            let Entry::Bytes(buf) = entry else { break };
            let start = if i == 0 { self.head } else { 0 };
            let rest = &buf.as_slice()[start..];
            out.push(libc::iovec {
                iov_base: rest.as_ptr() as *mut libc::c_void,
                iov_len: rest.len(),
            });
        }
    }

    /// Mark `n` buffered bytes from the front as written; finished owned
    /// buffers go to `spare`, shared ones are let go of. Stops at a file
    /// range (use `consume_file` for those).
    pub fn consume(&mut self, mut n: usize, spare: &mut Spare) {
        while n > 0 {
            let Some(Entry::Bytes(front)) = self.entries.front() else {
                break;
            };
            let left = front.as_slice().len() - self.head;
            if n < left {
                self.head += n;
                return;
            }
            n -= left;
            if let Some(Entry::Bytes(Bytes::Owned(buf))) = self.entries.pop_front() {
                spare.keep(buf);
            }
            self.head = 0;
        }
    }

    /// Mark `n` bytes of the front file range as written (at most what it
    /// has left), dropping it, and closing its descriptor, once done.
    pub fn consume_file(&mut self, n: u64) {
        let Some(Entry::File(f)) = self.entries.front_mut() else {
            return;
        };
        let n = n.min(f.left);
        f.offset += n;
        f.left -= n;
        if f.left == 0 {
            self.entries.pop_front();
            self.head = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spare_keeps_a_bounded_number_of_bounded_buffers() {
        let mut spare = Spare::default();
        spare.keep(Vec::new());
        spare.keep(Vec::with_capacity(SPARE_CAPACITY_MAX + 1));
        assert_eq!(
            spare.take().capacity(),
            0,
            "empty and oversized ones are freed"
        );
        for _ in 0..SPARE_MAX + 1 {
            spare.keep(b"x".to_vec());
        }
        let kept: Vec<Vec<u8>> = (0..SPARE_MAX + 1).map(|_| spare.take()).collect();
        assert!(kept[..SPARE_MAX]
            .iter()
            .all(|b| b.is_empty() && b.capacity() == 1));
        assert_eq!(kept[SPARE_MAX].capacity(), 0);
    }

    #[test]
    fn consume_keeps_owned_buffers_and_lets_go_of_shared_ones() {
        let mut q = SendQueue::default();
        let mut spare = Spare::default();
        q.push(b"abc".to_vec());
        q.push(Bytes::Shared(Box::new(b"de".to_vec())));
        q.push(b"fgh".to_vec());
        q.consume(4, &mut spare);
        assert_eq!(
            unwritten(&q),
            b"efgh",
            "a partly written buffer stays queued"
        );
        q.consume(4, &mut spare);
        assert!(q.is_empty());
        let kept = [spare.take(), spare.take(), spare.take()];
        assert_eq!(kept.map(|b| b.capacity()), [3, 3, 0]);
    }

    fn unwritten(q: &SendQueue) -> Vec<u8> {
        let mut slices = [IoSlice::new(&[]); MAX_IOV];
        let n = q.slices(&mut slices);
        slices[..n].iter().flat_map(|s| s.iter().copied()).collect()
    }

    fn some_fd() -> OwnedFd {
        std::fs::File::open("/dev/null").expect("open").into()
    }

    #[test]
    fn consume_walks_across_buffers_and_keeps_partial_front() {
        let mut q = SendQueue::default();
        q.push(b"hello ".to_vec());
        q.push(Vec::new());
        q.push(b"world".to_vec());
        assert_eq!(unwritten(&q), b"hello world");
        q.consume(3, &mut Spare::default());
        assert_eq!(unwritten(&q), b"lo world");
        q.consume(5, &mut Spare::default());
        assert_eq!(unwritten(&q), b"rld");
        let mut iov = Vec::new();
        q.iovecs(&mut iov);
        assert_eq!(iov.len(), 1);
        assert_eq!(iov[0].iov_len, 3);
        q.consume(3, &mut Spare::default());
        assert!(q.is_empty());
    }

    #[test]
    fn slices_stop_at_the_output_length() {
        let mut q = SendQueue::default();
        for _ in 0..MAX_IOV + 3 {
            q.push(vec![b'x'; 2]);
        }
        let mut slices = [IoSlice::new(&[]); 4];
        assert_eq!(q.slices(&mut slices), 4);
        let mut iov = Vec::new();
        q.iovecs(&mut iov);
        assert_eq!(iov.len(), MAX_IOV);
    }

    #[test]
    fn bytes_stop_at_a_file_range_which_then_comes_to_the_front() {
        let mut q = SendQueue::default();
        q.push(b"head".to_vec());
        q.push_file(some_fd(), 10, 5);
        q.push(b"tail".to_vec());
        assert_eq!(unwritten(&q), b"head");
        let mut iov = Vec::new();
        q.iovecs(&mut iov);
        assert_eq!(iov.len(), 1);
        assert!(q.front_is_bytes());
        assert_eq!(q.front_file(), None);
        // Consuming more than the bytes before the file stops at the file.
        q.consume(100, &mut Spare::default());
        let (_, offset, left) = q.front_file().expect("file at the front");
        assert_eq!((offset, left), (10, 5));
        assert_eq!(unwritten(&q), b"");
        q.consume_file(2);
        assert_eq!(q.front_file().map(|f| (f.1, f.2)), Some((12, 3)));
        q.consume_file(3);
        assert_eq!(q.front_file(), None);
        assert_eq!(unwritten(&q), b"tail");
    }

    #[test]
    fn empty_file_range_is_not_queued() {
        let mut q = SendQueue::default();
        q.push_file(some_fd(), 0, 0);
        assert!(q.is_empty());
    }
}
