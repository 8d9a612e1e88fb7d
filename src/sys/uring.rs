//! The two io_uring system calls the `io-uring` crate does not let a
//! long-lived ring use directly: registering the ring fd (the crate keeps
//! the registered index inside a short-lived `Submitter`) and entering the
//! ring through that index with a wait timeout.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

// Kernel ABI constants (include/uapi/linux/io_uring.h).
const IORING_ENTER_GETEVENTS: u32 = 1 << 0;
const IORING_ENTER_EXT_ARG: u32 = 1 << 3;
const IORING_ENTER_REGISTERED_RING: u32 = 1 << 4;
const IORING_REGISTER_RING_FDS: u32 = 20;

/// `struct io_uring_rsrc_update`.
#[repr(C)]
struct RsrcUpdate {
    offset: u32,
    resv: u32,
    data: u64,
}

/// `struct __kernel_timespec`.
#[repr(C)]
struct KernelTimespec {
    tv_sec: i64,
    tv_nsec: i64,
}

/// `struct io_uring_getevents_arg`.
#[repr(C)]
struct GeteventsArg {
    sigmask: u64,
    sigmask_sz: u32,
    min_wait_usec: u32,
    ts: u64,
}

/// How `enter` names the ring: its fd, or its registered index (saves the
/// kernel a file-table lookup on every call).
#[derive(Clone, Copy, Debug)]
pub enum RingRef {
    Fd(RawFd),
    Registered(u32),
}

/// Register `ring_fd` with its own ring; returns the index to enter with.
pub fn register_ring_fd(ring_fd: RawFd) -> io::Result<u32> {
    let mut up = RsrcUpdate {
        offset: u32::MAX,
        resv: 0,
        data: ring_fd as u64,
    };
    // SAFETY: `up` is a valid io_uring_rsrc_update the kernel reads and
    // writes (it stores the chosen index in `offset`); nr_args is 1.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_io_uring_register,
            ring_fd,
            IORING_REGISTER_RING_FDS,
            &mut up as *mut RsrcUpdate,
            1u32,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(up.offset)
}

/// Submit `to_submit` queued entries and wait until at least `min_complete`
/// completions are ready or `timeout` passes (`None`: no limit). A timeout
/// with nothing submitted is `Err(ETIME)`.
pub fn enter(
    ring: RingRef,
    to_submit: u32,
    min_complete: u32,
    timeout: Option<Duration>,
) -> io::Result<u32> {
    let ts = timeout.map(|d| KernelTimespec {
        tv_sec: d.as_secs() as i64,
        tv_nsec: d.subsec_nanos() as i64,
    });
    let arg = GeteventsArg {
        sigmask: 0,
        sigmask_sz: 0,
        min_wait_usec: 0,
        ts: ts.as_ref().map_or(0, |t| t as *const KernelTimespec as u64),
    };
    let mut flags = IORING_ENTER_EXT_ARG;
    if min_complete > 0 || timeout.is_some() {
        flags |= IORING_ENTER_GETEVENTS;
    }
    let fd = match ring {
        RingRef::Fd(fd) => fd as u32,
        RingRef::Registered(index) => {
            flags |= IORING_ENTER_REGISTERED_RING;
            index
        }
    };
    // SAFETY: `arg` (and the timespec it points to) live until the call
    // returns; the size passed is the size of the struct. Entries in the
    // submission queue reference memory the engine keeps alive until their
    // completions (the engine's ownership rule).
    let ret = unsafe {
        libc::syscall(
            libc::SYS_io_uring_enter,
            fd,
            to_submit,
            min_complete,
            flags,
            &arg as *const GeteventsArg,
            std::mem::size_of::<GeteventsArg>(),
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ret as u32)
}
