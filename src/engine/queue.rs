//! A connection's output queue: owned buffers written front to back, the
//! front one possibly in part.
//!
//! Both engines use it. Buffers are only appended at the back and only
//! dropped from the front by `consume`, so while io_uring has a send in
//! flight that points into the front buffers, appending more output never
//! moves the bytes the kernel is reading (a `Vec`'s heap block stays put
//! when the `Vec` itself moves inside the deque).

use std::collections::VecDeque;
use std::io::IoSlice;

/// Most buffers handed to one send call (well under the kernel's IOV_MAX).
pub const MAX_IOV: usize = 64;

#[derive(Default)]
pub struct SendQueue {
    bufs: VecDeque<Vec<u8>>,
    /// Bytes of `bufs[0]` already written.
    head: usize,
}

impl SendQueue {
    /// Append `data` (an empty buffer is not queued).
    pub fn push(&mut self, data: Vec<u8>) {
        if !data.is_empty() {
            self.bufs.push_back(data);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.bufs.is_empty()
    }

    /// Drop everything queued (the connection is gone).
    pub fn clear(&mut self) {
        self.bufs.clear();
        self.head = 0;
    }

    /// The unwritten bytes as up to `out.len()` slices; returns how many.
    pub fn slices<'a>(&'a self, out: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (i, buf) in self.bufs.iter().enumerate() {
            if n == out.len() {
                break;
            }
            let start = if i == 0 { self.head } else { 0 };
            out[n] = IoSlice::new(&buf[start..]);
            n += 1;
        }
        n
    }

    /// The unwritten bytes as raw iovecs (for io_uring, which keeps them
    /// until the send completes), replacing the contents of `out`.
    pub fn iovecs(&self, out: &mut Vec<libc::iovec>) {
        out.clear();
        for (i, buf) in self.bufs.iter().take(MAX_IOV).enumerate() {
            let start = if i == 0 { self.head } else { 0 };
            let rest = &buf[start..];
            out.push(libc::iovec {
                iov_base: rest.as_ptr() as *mut libc::c_void,
                iov_len: rest.len(),
            });
        }
    }

    /// Mark `n` bytes from the front as written, dropping finished buffers.
    pub fn consume(&mut self, mut n: usize) {
        while n > 0 {
            let Some(front) = self.bufs.front() else {
                break;
            };
            let left = front.len() - self.head;
            if n < left {
                self.head += n;
                return;
            }
            n -= left;
            self.bufs.pop_front();
            self.head = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unwritten(q: &SendQueue) -> Vec<u8> {
        let mut slices = [IoSlice::new(&[]); MAX_IOV];
        let n = q.slices(&mut slices);
        slices[..n].iter().flat_map(|s| s.iter().copied()).collect()
    }

    #[test]
    fn consume_walks_across_buffers_and_keeps_partial_front() {
        let mut q = SendQueue::default();
        q.push(b"hello ".to_vec());
        q.push(Vec::new());
        q.push(b"world".to_vec());
        assert_eq!(unwritten(&q), b"hello world");
        q.consume(3);
        assert_eq!(unwritten(&q), b"lo world");
        q.consume(5);
        assert_eq!(unwritten(&q), b"rld");
        let mut iov = Vec::new();
        q.iovecs(&mut iov);
        assert_eq!(iov.len(), 1);
        assert_eq!(iov[0].iov_len, 3);
        q.consume(3);
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
}
