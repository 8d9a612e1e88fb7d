//! The provided-buffer ring multishot receives take their buffers from.
//!
//! One ring of `count` buffers of `size` bytes per worker. The kernel picks
//! a buffer for each receive completion and names it in the completion's
//! flags; the engine hands the bytes to the worker and gives the buffer
//! back (`consume`) before it processes the next completion, so the ring is
//! full again at the end of every batch.
//!
//! Where the kernel has incrementally consumed rings (`IOU_PBUF_RING_INC`,
//! Linux 6.12), a receive takes only the bytes it needs from the buffer at
//! the head: small requests share one buffer, so the buffers can be large
//! enough for a big upload to arrive in few completions. The kernel then
//! keeps a buffer until it is used up (a completion without `BUF_MORE`);
//! the bytes of each completion start where the previous completion for
//! that buffer ended, which `offsets` tracks.

use std::alloc::{self, Layout};
use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::{self, BufRingEntry};
use io_uring::IoUring;

/// Page alignment the kernel requires for the ring memory.
const PAGE: usize = 4096;

pub(in crate::engine) struct BufRing {
    entries: *mut BufRingEntry,
    entries_layout: Layout,
    base: *mut u8,
    base_layout: Layout,
    count: u16,
    size: usize,
    /// Our copy of the tail: the next entry we fill.
    tail: u16,
    bgid: u16,
    /// Incremental consumption: per buffer, the bytes completions already
    /// took from it (empty for a classic ring).
    offsets: Vec<u32>,
}

impl BufRing {
    /// Allocate `count` (a power of two) buffers of `size` bytes and
    /// register them with `ring` as buffer group `bgid`, consumed
    /// incrementally if `incremental` (EINVAL where the kernel cannot).
    pub(in crate::engine) fn new(
        ring: &IoUring,
        bgid: u16,
        count: u16,
        size: usize,
        incremental: bool,
    ) -> io::Result<BufRing> {
        assert!(count.is_power_of_two() && size > 0 && size <= u32::MAX as usize);
        let entries_layout =
            Layout::from_size_align(count as usize * std::mem::size_of::<BufRingEntry>(), PAGE)
                .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let base_layout = Layout::from_size_align(count as usize * size, PAGE)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: both layouts have a non-zero size (count and size are > 0).
        let entries = unsafe { alloc::alloc_zeroed(entries_layout) }.cast::<BufRingEntry>();
        if entries.is_null() {
            alloc::handle_alloc_error(entries_layout);
        }
        // SAFETY: as above.
        let base = unsafe { alloc::alloc_zeroed(base_layout) };
        if base.is_null() {
            alloc::handle_alloc_error(base_layout);
        }
        let mut bufs = BufRing {
            entries,
            entries_layout,
            base,
            base_layout,
            count,
            size,
            tail: 0,
            bgid,
            offsets: if incremental {
                vec![0; count as usize]
            } else {
                Vec::new()
            },
        };
        let flags = if incremental {
            types::IOU_PBUF_RING_INC as u16
        } else {
            0
        };
        // SAFETY: `entries` is page-aligned memory for `count` entries that
        // lives until `self` is dropped, and the engine drops this ring only
        // after unregistering it (or after the io_uring itself is gone).
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(entries as u64, count, bgid, flags)
        }?;
        for bid in 0..count {
            bufs.put(bid);
        }
        bufs.publish();
        Ok(bufs)
    }

    pub(in crate::engine) fn bgid(&self) -> u16 {
        self.bgid
    }

    #[cfg(test)]
    pub(in crate::engine) fn is_incremental(&self) -> bool {
        !self.offsets.is_empty()
    }

    /// The `len` bytes a completion put in buffer `bid`.
    pub(in crate::engine) fn data(&self, bid: u16, len: usize) -> &[u8] {
        let bid = (bid & (self.count - 1)) as usize;
        let start = self.offsets.get(bid).map_or(0, |&o| o as usize);
        let len = len.min(self.size - start.min(self.size));
        // SAFETY: `bid < count` and `start + len <= size`, so the range lies
        // inside the buffer's part of the allocation; the kernel finished
        // writing it before posting the completion, and it does not write
        // it again until `consume` gives the buffer back.
        unsafe { std::slice::from_raw_parts(self.base.add(bid * self.size + start), len) }
    }

    /// The completion's `len` bytes of buffer `bid` were handed over; give
    /// the buffer back to the kernel unless it keeps filling it (`more`:
    /// the completion's `BUF_MORE` flag, only ever set for incremental rings).
    pub(in crate::engine) fn consume(&mut self, bid: u16, len: usize, more: bool) {
        let bid = bid & (self.count - 1);
        if let Some(offset) = self.offsets.get_mut(bid as usize) {
            if more {
                *offset += len as u32;
                return;
            }
            *offset = 0;
        }
        self.put(bid);
        self.publish();
    }

    fn put(&mut self, bid: u16) {
        let index = (self.tail & (self.count - 1)) as usize;
        // SAFETY: `index < count`; the entry at the tail is not owned by the
        // kernel (it only reads entries below the published tail).
        let entry = unsafe { &mut *self.entries.add(index) };
        // SAFETY: `bid < count`, inside the buffer allocation.
        entry.set_addr(unsafe { self.base.add(bid as usize * self.size) } as u64);
        entry.set_len(self.size as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&self) {
        // SAFETY: the tail field lives inside the first entry of the ring
        // memory we own; the kernel reads it with acquire ordering, and u16
        // is the field's type, so viewing it as AtomicU16 is sound.
        let tail = unsafe { &*(BufRingEntry::tail(self.entries) as *const AtomicU16) };
        tail.store(self.tail, Ordering::Release);
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with these layouts; the owner guarantees
        // the kernel no longer uses them (see the engine's ownership rule).
        unsafe {
            alloc::dealloc(self.entries.cast(), self.entries_layout);
            alloc::dealloc(self.base, self.base_layout);
        }
    }
}
