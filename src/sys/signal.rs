//! Signals become bytes on a self-pipe: handlers only enqueue, loops drain.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};

use nix::fcntl::OFlag;
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};

/// The signals the arbiter handles; a worker puts them back to default
/// before it installs its own.
pub const ARBITER_SIGNALS: &[Signal] = &[
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGTTIN,
    Signal::SIGTTOU,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
    Signal::SIGCHLD,
];

static PIPE_WRITE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(sig: libc::c_int) {
    let fd = PIPE_WRITE.load(Ordering::Relaxed);
    if fd >= 0 {
        let byte = sig as u8;
        let saved = io::Error::last_os_error().raw_os_error().unwrap_or(0);
        // SAFETY: write(2) is async-signal-safe; `byte` lives for the call.
        // A full pipe drops the byte, which is fine: the reader drains
        // whatever is there and one wake-up is enough to notice.
        unsafe {
            libc::write(fd, (&byte as *const u8).cast(), 1);
            *libc::__errno_location() = saved;
        }
    }
}

/// The read end of the self-pipe; each byte is a signal number.
pub struct SignalPipe {
    read: OwnedFd,
    _write: OwnedFd,
}

impl SignalPipe {
    /// Route `signals` to a new self-pipe (replacing any earlier one).
    pub fn install(signals: &[Signal]) -> io::Result<SignalPipe> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)?;
        PIPE_WRITE.store(write.as_raw_fd(), Ordering::SeqCst);
        let action = SigAction::new(
            SigHandler::Handler(on_signal),
            SaFlags::SA_RESTART,
            SigSet::empty(),
        );
        for &sig in signals {
            // SAFETY: the handler only calls async-signal-safe functions.
            unsafe { sigaction(sig, &action) }?;
        }
        Ok(SignalPipe {
            read,
            _write: write,
        })
    }

    pub fn fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }

    /// Every signal received since the last call, in order.
    pub fn drain(&self) -> Vec<Signal> {
        let mut out = Vec::new();
        let mut buf = [0u8; 64];
        loop {
            match nix::unistd::read(&self.read, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend(
                    buf[..n]
                        .iter()
                        .filter_map(|&b| Signal::try_from(b as i32).ok()),
                ),
            }
        }
        out
    }

    /// Wait up to `timeout_ms` for a signal byte (the arbiter's only sleep).
    pub fn wait(&self, timeout_ms: u16) {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        let mut fds = [PollFd::new(self.read.as_fd(), PollFlags::POLLIN)];
        let _ = poll(&mut fds, PollTimeout::from(timeout_ms));
    }

    /// Like `wait`, also waking when one of `others` is ready for what it asks.
    pub fn wait_with(&self, others: &[Interest], timeout_ms: u16) {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::{AsFd, BorrowedFd};
        let mut fds = Vec::with_capacity(others.len() + 1);
        fds.push(PollFd::new(self.read.as_fd(), PollFlags::POLLIN));
        for o in others {
            // SAFETY: each descriptor is one the caller keeps open for the
            // duration of this call; poll only reads its readiness.
            let fd = unsafe { BorrowedFd::borrow_raw(o.fd) };
            let flags = if o.write {
                PollFlags::POLLOUT
            } else {
                PollFlags::POLLIN
            };
            fds.push(PollFd::new(fd, flags));
        }
        let _ = poll(&mut fds, PollTimeout::from(timeout_ms));
    }
}

/// A descriptor for `SignalPipe::wait_with` to watch: readable, or writable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interest {
    pub fd: RawFd,
    pub write: bool,
}

impl Interest {
    pub fn read(fd: RawFd) -> Interest {
        Interest { fd, write: false }
    }

    pub fn write(fd: RawFd) -> Interest {
        Interest { fd, write: true }
    }
}

/// Write one byte to a pipe to wake whoever polls its other end (a full
/// pipe already means a wake-up is pending).
pub fn poke(fd: RawFd) {
    let byte = 1u8;
    // SAFETY: writing one byte from a live stack variable to a descriptor
    // the caller owns; errors (EAGAIN on a full pipe) are harmless.
    unsafe {
        libc::write(fd, (&byte as *const u8).cast(), 1);
    }
}

/// Put `signals` back to their default action (in a new worker).
pub fn reset_default(signals: &[Signal]) {
    let action = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for &sig in signals {
        // SAFETY: installing the default disposition runs no code of ours.
        let _ = unsafe { sigaction(sig, &action) };
    }
}

/// Ignore `sig` (SIGPIPE: a write to a closed socket is an error code, not a death).
pub fn ignore(sig: Signal) {
    let action = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
    // SAFETY: installing SIG_IGN runs no code of ours.
    let _ = unsafe { sigaction(sig, &action) };
}
