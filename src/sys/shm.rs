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
    /// The io engine the worker runs (`ENGINE_*`).
    pub engine: AtomicU32,
    /// Requests whose app call started and whose response has not ended.
    pub in_flight: AtomicI32,
    /// Monotonic milliseconds of the last request shed by admission control (0: never).
    pub shed_ms: AtomicU64,
    /// Requests shed by admission control (503).
    pub shed: AtomicU64,
    /// Ended responses by status class: 1xx, 2xx, 3xx, 4xx, 5xx (others count as 5xx).
    pub classes: [AtomicU64; 5],
    /// Ended responses by duration: one counter per bucket of `DURATION_BOUNDS_MS`
    /// (not cumulative), the last one past every bound.
    pub durations: [AtomicU64; DURATION_BUCKETS],
    /// Sum of the durations counted in `durations`, in microseconds.
    pub duration_us: AtomicU64,
    /// The io engine's fault counters, as `EngineFaults` says (the worker
    /// stores its engine's totals after each loop turn).
    pub accept_rests: AtomicU64,
    pub cq_overflows: AtomicU64,
    pub recv_no_buffers: AtomicU64,
}

pub const ENGINE_UNKNOWN: u32 = 0;
pub const ENGINE_URING: u32 = 1;
pub const ENGINE_EPOLL: u32 = 2;

/// Upper bounds of the request-duration buckets, in milliseconds (then +Inf).
pub const DURATION_BOUNDS_MS: [u64; 11] = [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000];
pub const DURATION_BUCKETS: usize = DURATION_BOUNDS_MS.len() + 1;

/// The response counters of one worker, or of many added up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub shed: u64,
    pub classes: [u64; 5],
    pub durations: [u64; DURATION_BUCKETS],
    pub duration_us: u64,
    pub faults: EngineFaults,
}

/// What the io engine met and survived, counted since the worker started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineFaults {
    /// Accepting paused after a resource error (EMFILE, ENFILE, ENOMEM...).
    pub accept_rests: u64,
    /// io_uring: completions found the completion queue full and waited in
    /// the kernel's overflow list (none is lost: the engine needs
    /// IORING_FEAT_NODROP).
    pub cq_overflows: u64,
    /// io_uring: multishot receives ended because the provided-buffer ring
    /// ran dry (ENOBUFS), and were re-armed.
    pub recv_no_buffers: u64,
}

impl Counters {
    /// Ended responses (each is in exactly one duration bucket).
    pub fn responses(&self) -> u64 {
        self.durations.iter().sum()
    }

    pub fn add(&mut self, other: &Counters) {
        self.shed += other.shed;
        for (a, b) in self.classes.iter_mut().zip(other.classes) {
            *a += b;
        }
        for (a, b) in self.durations.iter_mut().zip(other.durations) {
            *a += b;
        }
        self.duration_us += other.duration_us;
        self.faults.accept_rests += other.faults.accept_rests;
        self.faults.cq_overflows += other.faults.cq_overflows;
        self.faults.recv_no_buffers += other.faults.recv_no_buffers;
    }
}

/// The duration bucket of a response that took `us` microseconds.
pub fn duration_bucket(us: u64) -> usize {
    DURATION_BOUNDS_MS
        .iter()
        .position(|&ms| us <= ms * 1000)
        .unwrap_or(DURATION_BOUNDS_MS.len())
}

pub const BOOTING: u32 = 0;
pub const READY: u32 = 1;
/// Set by a worker that reached `--max-requests`: start its replacement, then retire it.
pub const REPLACE: u32 = 2;
/// Set with `REPLACE` when the reason is `--max-worker-rss` (counted by the arbiter).
pub const RSS_LIMIT: u32 = 4;

impl Status {
    pub fn is_ready(&self) -> bool {
        self.state.load(Ordering::Acquire) & READY != 0
    }

    pub fn wants_replacement(&self) -> bool {
        self.state.load(Ordering::Acquire) & REPLACE != 0
    }

    /// The replacement was asked for because of `--max-worker-rss`.
    pub fn over_rss_limit(&self) -> bool {
        self.state.load(Ordering::Acquire) & RSS_LIMIT != 0
    }

    /// Record the request line of the call that starts now.
    pub fn begin_call(&self, now_ms: u64, method: &[u8], path: &[u8]) {
        // Whole slices, then whole words: this runs for every request.
        let mut buf = [0u8; REQUEST_WORDS * 8];
        let mut at = 0;
        for part in [method, b" ", path] {
            let n = part.len().min(buf.len() - at);
            buf[at..at + n].copy_from_slice(&part[..n]);
            at += n;
        }
        for (slot, word) in self.request.iter().zip(buf.chunks_exact(8)) {
            let word: [u8; 8] = word.try_into().expect("chunks of 8");
            slot.store(u64::from_le_bytes(word), Ordering::Relaxed);
        }
        self.call_ms.store(now_ms, Ordering::Release);
    }

    pub fn end_call(&self) {
        self.call_ms.store(0, Ordering::Release);
    }

    /// Count one ended response: a few relaxed adds, no lock.
    pub fn record_response(&self, status: u16, us: u64) {
        let class = match status {
            100..=499 => (status / 100 - 1) as usize,
            _ => 4,
        };
        self.classes[class].fetch_add(1, Ordering::Relaxed);
        self.duration_us.fetch_add(us, Ordering::Relaxed);
        self.durations[duration_bucket(us)].fetch_add(1, Ordering::Relaxed);
    }

    /// Count one request shed by admission control at `now_ms`.
    pub fn record_shed(&self, now_ms: u64) {
        self.shed.fetch_add(1, Ordering::Relaxed);
        self.shed_ms.store(now_ms, Ordering::Relaxed);
    }

    /// Publish the engine's fault counters (totals since the worker started).
    pub fn store_faults(&self, f: &EngineFaults) {
        self.accept_rests.store(f.accept_rests, Ordering::Relaxed);
        self.cq_overflows.store(f.cq_overflows, Ordering::Relaxed);
        self.recv_no_buffers
            .store(f.recv_no_buffers, Ordering::Relaxed);
    }

    /// The response counters as they are now.
    pub fn counters(&self) -> Counters {
        let mut c = Counters {
            shed: self.shed.load(Ordering::Relaxed),
            duration_us: self.duration_us.load(Ordering::Relaxed),
            faults: EngineFaults {
                accept_rests: self.accept_rests.load(Ordering::Relaxed),
                cq_overflows: self.cq_overflows.load(Ordering::Relaxed),
                recv_no_buffers: self.recv_no_buffers.load(Ordering::Relaxed),
            },
            ..Counters::default()
        };
        for (a, b) in c.classes.iter_mut().zip(&self.classes) {
            *a = b.load(Ordering::Relaxed);
        }
        for (a, b) in c.durations.iter_mut().zip(&self.durations) {
            *a = b.load(Ordering::Relaxed);
        }
        c
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
        self.engine.store(ENGINE_UNKNOWN, Ordering::Relaxed);
        self.in_flight.store(0, Ordering::Relaxed);
        self.shed_ms.store(0, Ordering::Relaxed);
        self.shed.store(0, Ordering::Relaxed);
        for c in self.classes.iter().chain(&self.durations) {
            c.store(0, Ordering::Relaxed);
        }
        self.duration_us.store(0, Ordering::Relaxed);
        self.store_faults(&EngineFaults::default());
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

/// `monotonic_ms` as of the kernel's last tick (a few milliseconds behind at
/// most), read without touching a hardware timer: for the stamps a worker
/// writes on every request and loop turn, which are compared in seconds.
pub fn coarse_monotonic_ms() -> u64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC_COARSE) {
        Ok(ts) => ts.tv_sec() as u64 * 1000 + ts.tv_nsec() as u64 / 1_000_000,
        Err(_) => monotonic_ms(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_coarse_clock_is_the_monotonic_clock_a_tick_behind() {
        let before = monotonic_ms();
        let coarse = coarse_monotonic_ms();
        let after = monotonic_ms();
        // A tick is at most 10 ms (HZ=100).
        assert!(
            before.saturating_sub(10) <= coarse && coarse <= after,
            "{before} {coarse} {after}"
        );
    }

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
        // A shorter line leaves nothing of the longer one behind.
        s.begin_call(7, b"GET", b"/");
        assert_eq!(s.request_line(), "GET /");
        s.end_call();
        assert_eq!(s.call_ms.load(Ordering::Relaxed), 0);
        assert!(t.get(2).is_none());
    }

    #[test]
    fn responses_land_in_one_class_and_one_duration_bucket() {
        let t = StatusTable::new(1).unwrap();
        let s = t.get(0).unwrap();
        s.record_response(200, 4_000);
        s.record_response(404, 5_000);
        s.record_response(503, 5_001);
        s.record_response(999, 20_000_000);
        s.record_response(101, 0);
        let c = s.counters();
        assert_eq!(c.classes, [1, 1, 0, 1, 2]);
        assert_eq!(c.durations[0], 3);
        assert_eq!(c.durations[1], 1);
        assert_eq!(c.durations[DURATION_BUCKETS - 1], 1);
        assert_eq!(c.responses(), 5);
        assert_eq!(c.duration_us, 20_014_001);
        s.store_faults(&EngineFaults {
            accept_rests: 5,
            cq_overflows: 0,
            recv_no_buffers: 1,
        });
        assert_eq!(s.counters().faults.accept_rests, 5);
        s.reset(7, 0);
        assert_eq!(s.counters(), Counters::default());
    }

    #[test]
    fn counters_add_up() {
        let mut a = Counters {
            shed: 1,
            classes: [0, 2, 0, 0, 0],
            duration_us: 10,
            faults: EngineFaults {
                accept_rests: 1,
                cq_overflows: 2,
                recv_no_buffers: 3,
            },
            ..Counters::default()
        };
        a.durations[0] = 2;
        let b = a;
        a.add(&b);
        assert_eq!(a.faults.accept_rests, 2);
        assert_eq!(a.faults.cq_overflows, 4);
        assert_eq!(a.faults.recv_no_buffers, 6);
        assert_eq!(a.shed, 2);
        assert_eq!(a.classes[1], 4);
        assert_eq!(a.responses(), 4);
        assert_eq!(a.duration_us, 20);
    }

    #[test]
    fn entries_are_shared_with_a_forked_child() {
        let t = StatusTable::new(1).unwrap();
        // SAFETY: the test process forks a child that only touches the
        // shared mapping and exits with _exit.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                t.get(0).unwrap().requests.store(42, Ordering::Release);
                crate::sys::process::exit_now(0);
            }
            nix::unistd::ForkResult::Parent { child } => {
                nix::sys::wait::waitpid(child, None).unwrap();
                assert_eq!(t.get(0).unwrap().requests.load(Ordering::Acquire), 42);
            }
        }
        assert_eq!(t.free_entry(), Some(0));
    }
}
