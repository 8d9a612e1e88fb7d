//! Every thread's stack, written on demand: the worker's answer to a hang
//! that Python cannot report (a deadlock, a C call that never returns).
//!
//! `install` starts a thread of its own that waits for the dump signal
//! (SIGUSR2 to a worker). On it, the thread asks every other thread of the
//! process in turn, with a signal sent to that thread alone, to record its
//! return addresses; it then resolves them to function, file and line, and
//! writes the lot straight to the given descriptor. It takes no lock that
//! the rest of the process takes (not the log's, not the interpreter's), so
//! it works however the other threads are stuck. Python's frames are added
//! by a second signal that Python's `faulthandler` was registered for: its
//! handler reads every Python thread's frames without the interpreter lock.
//!
//! The recording runs in a signal handler: the unwinder it calls
//! (`_Unwind_Backtrace`) is not on POSIX's async-signal-safe list, but it
//! takes no lock of its own on glibc 2.35 and later (`_dl_find_object`);
//! older loaders lock while the interrupted thread may hold the lock in
//! `dlopen`. A thread that does not answer within ANSWER_WAIT is reported
//! as such, and once one has not finished recording the remaining threads
//! are skipped rather than risk two writers.

use std::fmt::Write as _;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};

/// The signal that asks a worker for a dump (docs/signals.md).
pub const DUMP_SIGNAL: Signal = Signal::SIGUSR2;

/// Frames recorded per thread.
const MAX_FRAMES: usize = 96;
/// How long a thread gets to run its recording handler.
const ANSWER_WAIT: Duration = Duration::from_millis(250);

/// The one recording in progress (threads are asked one at a time).
struct Capture {
    /// The thread asked to record now; 0 between requests.
    target: AtomicI32,
    /// A handler is recording.
    busy: AtomicBool,
    /// The thread whose recording is complete.
    done: AtomicI32,
    len: AtomicUsize,
    ips: [AtomicUsize; MAX_FRAMES],
}

static CAPTURE: Capture = Capture {
    target: AtomicI32::new(0),
    busy: AtomicBool::new(false),
    done: AtomicI32::new(0),
    len: AtomicUsize::new(0),
    ips: [const { AtomicUsize::new(0) }; MAX_FRAMES],
};

/// Where the dump signal's handler pokes the dump thread.
static WAKE_WRITE: AtomicI32 = AtomicI32::new(-1);
/// The signal Python's faulthandler answers with every Python thread's
/// frames, once registered; 0 before.
static PYTHON_SIGNAL: AtomicI32 = AtomicI32::new(0);

/// The per-thread recording signal: a real-time signal no library here uses.
fn capture_signal() -> libc::c_int {
    libc::SIGRTMIN() + 4
}

/// The signal to register Python's `faulthandler` for (`register_python`).
pub fn python_signal() -> libc::c_int {
    libc::SIGRTMIN() + 5
}

extern "C" fn on_capture(_sig: libc::c_int) {
    // SAFETY: gettid(2) and __errno_location are async-signal-safe.
    let (me, errno) = unsafe { (libc::gettid(), *libc::__errno_location()) };
    if CAPTURE.target.load(Ordering::Acquire) == me
        && CAPTURE
            .busy
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    {
        let mut n = 0;
        // SAFETY: no other thread traces at the same time (`busy`), and the
        // closure only stores into atomics; see the module comment for the
        // unwinder's own locking.
        unsafe {
            backtrace::trace_unsynchronized(|frame| {
                CAPTURE.ips[n].store(frame.ip() as usize, Ordering::Relaxed);
                n += 1;
                n < MAX_FRAMES
            });
        }
        CAPTURE.len.store(n, Ordering::Release);
        CAPTURE.done.store(me, Ordering::Release);
        CAPTURE.busy.store(false, Ordering::Release);
    }
    // SAFETY: restores the interrupted code's errno.
    unsafe { *libc::__errno_location() = errno };
}

extern "C" fn on_dump(_sig: libc::c_int) {
    let fd = WAKE_WRITE.load(Ordering::Relaxed);
    if fd >= 0 {
        // SAFETY: write(2) and __errno_location are async-signal-safe; a
        // full pipe drops the byte, and one pending wake-up is enough.
        unsafe {
            let errno = *libc::__errno_location();
            libc::write(fd, [0u8].as_ptr().cast(), 1);
            *libc::__errno_location() = errno;
        }
    }
}

/// Where a dump goes: a descriptor of the caller's (the error log as it is
/// at the time of the dump), or None for stderr.
pub type Destination = fn() -> Option<OwnedFd>;

/// The descriptor every dump is written to: at each dump it is made a copy
/// of the destination's, so Python's faulthandler, which keeps the number
/// it was registered with, writes where the rest of the dump goes.
static OUT: AtomicI32 = AtomicI32::new(-1);

/// Answer DUMP_SIGNAL with every thread's stack, written to `destination`.
/// Call once per process, before the threads whose stacks matter are
/// started (they inherit the unblocked signals). Returns the descriptor to
/// register Python's faulthandler with (see `register_python`).
pub fn install(destination: Destination) -> io::Result<RawFd> {
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    let out = nix::fcntl::fcntl(std::io::stderr(), nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(3))?;
    OUT.store(out, Ordering::SeqCst);
    WAKE_WRITE.store(write.as_raw_fd(), Ordering::SeqCst);
    set_handler(capture_signal(), on_capture)?;
    set_handler(DUMP_SIGNAL as libc::c_int, on_dump)?;
    let mut set = SigSet::empty();
    set.add(DUMP_SIGNAL);
    nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_UNBLOCK, Some(&set), None)?;
    // nix's SigSet has no real-time signals: libc's for the capture signal.
    // SAFETY: `raw` is a local sigset_t, initialised by sigemptyset before use.
    let unblocked = unsafe {
        let mut raw: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut raw);
        libc::sigaddset(&mut raw, capture_signal());
        libc::pthread_sigmask(libc::SIG_UNBLOCK, &raw, std::ptr::null_mut())
    };
    if unblocked != 0 {
        return Err(io::Error::from_raw_os_error(unblocked));
    }
    std::thread::Builder::new()
        .name("stack-dump".into())
        .spawn(move || serve(read, write, destination))?;
    Ok(out)
}

/// Run `handler` for signal `signo` (real-time signals included, which
/// nix's `Signal` cannot name).
fn set_handler(signo: libc::c_int, handler: extern "C" fn(libc::c_int)) -> io::Result<()> {
    // SAFETY: `action` is a zeroed sigaction (no flags, empty mask) with a
    // handler that only touches atomics and async-signal-safe calls.
    let rc = unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler as usize;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(signo, &action, std::ptr::null_mut())
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Python's `faulthandler` is registered for `python_signal()`, writing
/// to the descriptor `install` returned: dumps include Python's frames from
/// now on.
pub fn register_python() {
    PYTHON_SIGNAL.store(python_signal(), Ordering::SeqCst);
}

fn serve(wake: OwnedFd, _write: OwnedFd, destination: Destination) {
    let mut byte = [0u8; 64];
    loop {
        match nix::unistd::read(&wake, &mut byte) {
            Ok(0) => return,
            Ok(_) => {
                let out = OUT.load(Ordering::SeqCst);
                let dest = destination();
                let target = dest
                    .as_ref()
                    .map_or(libc::STDERR_FILENO, |fd| fd.as_raw_fd());
                // SAFETY: `out` is ours (made in `install`, never closed);
                // dup2(2) makes it a copy of `target`, which is open until
                // `destination()`'s descriptor is dropped below.
                unsafe { libc::dup2(target, out) };
                drop(dest);
                dump(out);
            }
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return,
        }
    }
}

/// Write every thread's stack to `out`.
pub fn dump(out: RawFd) {
    // SAFETY: getpid(2) and gettid(2) cannot fail.
    let (pid, me) = unsafe { (libc::getpid(), libc::gettid()) };
    let mut tids: Vec<i32> = std::fs::read_dir("/proc/self/task")
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    tids.sort_unstable();
    let mut text = format!(
        "==== stack dump of process {pid}: {} threads, most recent call first ====\n",
        tids.len()
    );
    let mut skip_rest = false;
    for &tid in &tids {
        let name = std::fs::read_to_string(format!("/proc/self/task/{tid}/comm"))
            .map(|s| s.trim_end().to_string())
            .unwrap_or_default();
        let _ = writeln!(text, "-- thread {tid} ({name})");
        if tid == me {
            text.push_str("   (this thread writes the dump)\n");
            continue;
        }
        if skip_rest {
            text.push_str("   (skipped: an earlier thread is still recording)\n");
            continue;
        }
        match record(pid, tid) {
            Recorded::Frames(ips) => describe(&ips, &mut text),
            Recorded::NoAnswer => {
                text.push_str("   (did not answer: blocked where no signal is taken)\n")
            }
            Recorded::Stuck => {
                text.push_str("   (started recording but did not finish)\n");
                skip_rest = true;
            }
        }
    }
    write_all(out, text.as_bytes());
    let python = PYTHON_SIGNAL.load(Ordering::SeqCst);
    if python != 0 {
        write_all(out, b"==== Python frames ====\n");
        // SAFETY: raise(3) runs faulthandler's handler on this thread; it
        // writes to its own descriptor and reads the interpreter's thread
        // list without its lock, as it is designed to.
        unsafe { libc::raise(python) };
    }
    write_all(out, b"==== end of stack dump ====\n");
}

enum Recorded {
    Frames(Vec<usize>),
    NoAnswer,
    Stuck,
}

fn record(pid: i32, tid: i32) -> Recorded {
    CAPTURE.done.store(0, Ordering::Release);
    CAPTURE.target.store(tid, Ordering::Release);
    // SAFETY: tgkill(2) with this process's id only signals one of its own
    // threads; a thread that has exited makes it fail with ESRCH.
    let sent = unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, capture_signal()) };
    if sent != 0 {
        CAPTURE.target.store(0, Ordering::Release);
        return Recorded::NoAnswer;
    }
    let answered = wait_for(|| CAPTURE.done.load(Ordering::Acquire) == tid);
    CAPTURE.target.store(0, Ordering::Release);
    if !answered {
        return if wait_for(|| !CAPTURE.busy.load(Ordering::Acquire)) {
            Recorded::NoAnswer
        } else {
            Recorded::Stuck
        };
    }
    let n = CAPTURE.len.load(Ordering::Acquire);
    Recorded::Frames(
        CAPTURE.ips[..n]
            .iter()
            .map(|ip| ip.load(Ordering::Relaxed))
            .collect(),
    )
}

/// Poll `cond` for up to ANSWER_WAIT.
fn wait_for(cond: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + ANSWER_WAIT;
    while !cond() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    true
}

/// One line per frame (more where a call was inlined), without the
/// recording handler's own frames.
fn describe(ips: &[usize], text: &mut String) {
    let mut lines = Vec::new();
    for &ip in ips {
        let mut names = Vec::new();
        backtrace::resolve(ip as *mut std::ffi::c_void, |sym| {
            let name = sym
                .name()
                .map(|n| format!("{n:#}"))
                .unwrap_or_else(|| "??".into());
            let place = match (sym.filename(), sym.lineno()) {
                (Some(f), Some(l)) => format!(" at {}:{l}", short_path(f)),
                _ => String::new(),
            };
            names.push(format!("{name}{place}"));
        });
        if names.is_empty() {
            names.push("??".into());
        }
        lines.push((ip, names));
    }
    // The recording handler's own frames, and the signal trampoline after
    // them, are not the thread's.
    let start = lines
        .iter()
        .take(8)
        .position(|(_, names)| {
            names
                .iter()
                .any(|n| n.starts_with("on_capture") || n.contains("::on_capture"))
        })
        .map_or(0, |i| i + 2);
    for (ip, names) in &lines[start..] {
        for name in names {
            let _ = writeln!(text, "   {ip:#016x} {name}");
        }
    }
}

/// Source paths as a reader wants them: this crate's from its root,
/// dependencies' from their crate directory, the standard library's from
/// `library/`.
fn short_path(path: &std::path::Path) -> String {
    let text = path.to_string_lossy();
    if let Ok(own) = path.strip_prefix(env!("CARGO_MANIFEST_DIR")) {
        return own.to_string_lossy().into_owned();
    }
    if let Some(i) = text.find("/registry/src/") {
        let rest = &text[i + "/registry/src/".len()..];
        if let Some(j) = rest.find('/') {
            return rest[j + 1..].to_string();
        }
    }
    if let Some(i) = text.find("/library/") {
        if text.starts_with("/rustc/") {
            return text[i + 1..].to_string();
        }
    }
    text.into_owned()
}

fn write_all(fd: RawFd, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        // SAFETY: `bytes` is valid for its length; `fd` is the caller's.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        bytes = &bytes[n as usize..];
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::sync::mpsc;

    use super::*;

    #[inline(never)]
    fn parked_in_a_named_function(ready: mpsc::Sender<()>, stop: mpsc::Receiver<()>) {
        ready.send(()).unwrap();
        let _ = stop.recv();
    }

    #[test]
    fn a_dump_names_each_thread_and_the_function_it_waits_in() {
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel();
        let parked = std::thread::Builder::new()
            .name("parked".into())
            .spawn(move || parked_in_a_named_function(ready_tx, stop_rx))
            .unwrap();
        ready_rx.recv().unwrap();
        set_handler(capture_signal(), on_capture).unwrap();
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).unwrap();
        let reader = std::thread::spawn(move || {
            let mut text = String::new();
            std::fs::File::from(read).read_to_string(&mut text).unwrap();
            text
        });
        dump(write.as_raw_fd());
        drop(write);
        let text = reader.join().unwrap();
        stop_tx.send(()).unwrap();
        parked.join().unwrap();
        assert!(text.starts_with("==== stack dump of process"), "{text}");
        assert!(text.contains("(parked)"), "{text}");
        assert!(text.contains("parked_in_a_named_function"), "{text}");
        assert!(text.contains(" at src/sys/stackdump.rs:"), "{text}");
        assert!(!text.contains("on_capture"), "{text}");
        assert!(text.contains("(this thread writes the dump)"), "{text}");
        assert!(text.ends_with("==== end of stack dump ====\n"), "{text}");
    }
}
