//! Processes: fork with interpreter hooks, parent-death signal, exit, reaping.

use std::io;

use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// Functions run around `fork()`, such as the interpreter's
/// `PyOS_BeforeFork` / `PyOS_AfterFork_Parent` / `PyOS_AfterFork_Child`.
pub struct ForkHooks {
    pub before: unsafe extern "C" fn(),
    pub after_parent: unsafe extern "C" fn(),
    pub after_child: unsafe extern "C" fn(),
}

pub enum Forked {
    Parent(Pid),
    Child,
}

/// This process's resident memory (RSS) in bytes, from `/proc/self/statm`:
/// one small read, no walk of the memory map.
#[cfg(target_os = "linux")]
pub fn resident_bytes() -> io::Result<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: u64 = statm
        .split_ascii_whitespace()
        .nth(1)
        .and_then(|f| f.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unexpected /proc/self/statm"))?;
    // SAFETY: sysconf reads a constant of the system; no memory is passed.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Ok(pages * if page > 0 { page as u64 } else { 4096 })
}

#[cfg(not(target_os = "linux"))]
pub fn resident_bytes() -> io::Result<u64> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "reading a process's resident memory needs Linux's /proc",
    ))
}

/// How many threads this process runs (`/proc/self/task`); `None` where
/// that cannot be read.
pub fn thread_count() -> Option<usize> {
    std::fs::read_dir("/proc/self/task")
        .ok()
        .map(|d| d.filter(|e| e.is_ok()).count())
}

/// Fork the process, running `hooks` the way `os.fork()` does.
///
/// # Safety
///
/// The process has a single thread (no other thread can hold a lock the
/// child would wait on forever), the caller holds the interpreter lock when
/// `hooks` are Python's, and one of the two processes leaves with
/// `exit_now` or `exec` without unwinding the frames both share (so no
/// destructor runs for state the other one still owns).
pub unsafe fn fork(hooks: &ForkHooks) -> io::Result<Forked> {
    // SAFETY: the caller's promises above are what these hooks and fork()
    // require.
    unsafe {
        (hooks.before)();
        match nix::unistd::fork() {
            Ok(nix::unistd::ForkResult::Parent { child }) => {
                (hooks.after_parent)();
                Ok(Forked::Parent(child))
            }
            Ok(nix::unistd::ForkResult::Child) => {
                (hooks.after_child)();
                Ok(Forked::Child)
            }
            Err(e) => {
                (hooks.after_parent)();
                Err(io::Error::from(e))
            }
        }
    }
}

/// Ask the kernel to send `sig` to this process when its parent dies.
pub fn set_parent_death_signal(sig: Signal) -> io::Result<()> {
    nix::sys::prctl::set_pdeathsig(sig).map_err(io::Error::from)
}

/// Whether this process's parent is still `parent` (a child whose parent
/// died was re-parented to init or a subreaper).
pub fn parent_is(parent: Pid) -> bool {
    nix::unistd::getppid() == parent
}

/// Leave the process at once with `code`, running no exit handlers (a
/// forked worker must not run the parent's atexit work).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit is async-signal-safe and takes no pointers.
    unsafe { libc::_exit(code) }
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildExit {
    Code(i32),
    Signal(Signal),
}

/// Reap one exited child without blocking.
pub fn reap_any() -> Option<(Pid, ChildExit)> {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => return Some((pid, ChildExit::Code(code))),
            Ok(WaitStatus::Signaled(pid, sig, _)) => return Some((pid, ChildExit::Signal(sig))),
            Ok(WaitStatus::StillAlive) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

pub fn send_signal(pid: Pid, sig: Signal) {
    let _ = nix::sys::signal::kill(pid, sig);
}

/// Point stdin, stdout and stderr at /dev/null (a daemon has no terminal).
pub fn redirect_stdio_to_null() -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    for target in 0..3 {
        // SAFETY: dup2 onto the standard descriptors, which stay open; `null`
        // is a live descriptor for the duration of the call.
        if unsafe { libc::dup2(null.as_raw_fd(), target) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
