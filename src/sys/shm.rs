//! Worker status shared between the arbiter and the workers: one anonymous
//! shared mapping, made before the first fork, with one slot of atomics per
//! worker. No temp files: a slow or full disk cannot stall the heartbeat.

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};

/// Bytes of the current request line kept for the timeout report.
const REQUEST_WORDS: usize = 16;

/// One worker's status. All fields are atomics: the arbiter reads while the
/// worker writes, with no lock.
#[repr(C)]
pub struct Status {
    /// The worker's pid while the entry is in use, 0 when free.
    pub pid: AtomicI32,
    /// `BOOTING`, `READY`, or `READY | REPLACE` (asks for a replacement).
    pub state: AtomicU32,
    /// Monotonic milliseconds of the worker loop's last turn.
    pub loop_ms: AtomicU64,
    /// Monotonic milliseconds when the running app call started; 0 when none runs.
    pub call_ms: AtomicU64,
    pub requests: AtomicU64,
    /// `METHOD PATH` of the running call, truncated, NUL-padded.
    request: [AtomicU64; REQUEST_WORDS],
}

pub const BOOTING: u32 = 0;
pub const READY: u32 = 1;
/// Set by a worker that reached `--max-requests`: start its replacement, then retire it.
pub const REPLACE: u32 = 2;

impl Status {
    pub fn is_ready(&self) -> bool {
        self.state.load(Ordering::Acquire) & READY != 0
    }

    pub fn wants_replacement(&self) -> bool {
        self.state.load(Ordering::Acquire) & REPLACE != 0
    }

    /// Record the request line of the call that starts now.
    pub fn begin_call(&self, now_ms: u64, method: &[u8], path: &[u8]) {
        let mut words = [0u64; REQUEST_WORDS];
        let bytes = method
            .iter()
            .chain(b" ")
            .chain(path.iter())
            .take(REQUEST_WORDS * 8);
        for (i, b) in bytes.enumerate() {
            words[i / 8] |= (*b as u64) << ((i % 8) * 8);
        }
        for (slot, w) in self.request.iter().zip(words) {
            slot.store(w, Ordering::Relaxed);
        }
        self.call_ms.store(now_ms, Ordering::Release);
    }

    pub fn end_call(&self) {
        self.call_ms.store(0, Ordering::Release);
    }

    /// The request line recorded by `begin_call` (possibly torn if read while
    /// it is rewritten: it only goes into a log line).
    pub fn request_line(&self) -> String {
        let mut bytes = Vec::with_capacity(REQUEST_WORDS * 8);
        for w in &self.request {
            bytes.extend_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
        }
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        String::from_utf8_lossy(&bytes[..end]).into_owned()
    }

    pub fn reset(&self, pid: i32, now_ms: u64) {
        self.state.store(BOOTING, Ordering::Relaxed);
        self.loop_ms.store(now_ms, Ordering::Relaxed);
        self.call_ms.store(0, Ordering::Relaxed);
        self.requests.store(0, Ordering::Relaxed);
        for w in &self.request {
            w.store(0, Ordering::Relaxed);
        }
        self.pid.store(pid, Ordering::Release);
    }
}

/// The shared mapping: `len` entries of `Status`.
pub struct StatusTable {
    base: NonNull<Status>,
    len: usize,
}

// SAFETY: the table only hands out `&Status`, whose fields are all atomics,
// so sharing it between threads is as safe as sharing the atomics.
unsafe impl Send for StatusTable {}
// SAFETY: as above.
unsafe impl Sync for StatusTable {}

impl StatusTable {
    pub fn new(len: usize) -> io::Result<StatusTable> {
        let size = std::mem::size_of::<Status>() * len.max(1);
        // SAFETY: an anonymous shared mapping with no fixed address; the
        // kernel zero-fills it, and all-zero bytes are a valid `Status`
        // (atomics of 0). It is never unmapped, so references stay valid for
        // the life of the process and of every forked worker.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(ptr.cast::<Status>())
            .ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(StatusTable {
            base,
            len: len.max(1),
        })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, i: usize) -> Option<&Status> {
        // SAFETY: `i < len` keeps the pointer inside the mapping, which lives
        // as long as the process (see `new`).
        (i < self.len).then(|| unsafe { &*self.base.as_ptr().add(i) })
    }

    /// A free entry (pid 0), if any.
    pub fn free_entry(&self) -> Option<usize> {
        (0..self.len).find(|&i| {
            self.get(i)
                .is_some_and(|s| s.pid.load(Ordering::Acquire) == 0)
        })
    }
}

/// Monotonic milliseconds, the same clock in every process of the machine.
pub fn monotonic_ms() -> u64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC) {
        Ok(ts) => ts.tv_sec() as u64 * 1000 + ts.tv_nsec() as u64 / 1_000_000,
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_line_round_trips_and_truncates() {
        let t = StatusTable::new(2).unwrap();
        let s = t.get(1).unwrap();
        s.begin_call(5, b"GET", b"/slow?x=1");
        assert_eq!(s.request_line(), "GET /slow?x=1");
        assert_eq!(s.call_ms.load(Ordering::Relaxed), 5);
        let long = vec![b'a'; 500];
        s.begin_call(6, b"POST", &long);
        assert_eq!(s.request_line().len(), REQUEST_WORDS * 8);
        s.end_call();
        assert_eq!(s.call_ms.load(Ordering::Relaxed), 0);
        assert!(t.get(2).is_none());
    }

    #[test]
    fn entries_are_shared_with_a_forked_child() {
        let t = StatusTable::new(1).unwrap();
        // SAFETY: the test process forks a child that only touches the
        // shared mapping and exits with _exit.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                t.get(0).unwrap().requests.store(42, Ordering::Release);
                unsafe { libc::_exit(0) };
            }
            nix::unistd::ForkResult::Parent { child } => {
                nix::sys::wait::waitpid(child, None).unwrap();
                assert_eq!(t.get(0).unwrap().requests.load(Ordering::Acquire), 42);
            }
        }
        assert_eq!(t.free_entry(), Some(0));
    }
}
