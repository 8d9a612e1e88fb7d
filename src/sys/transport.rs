//! Connected-socket calls the io engines make directly: accept, peer address, options,
//! receive, vectored send (and a blocking send for the sync worker's `write()`),
//! shutdown and close on raw descriptors.
//!
//! Every function takes a raw fd the caller owns; none of them takes
//! ownership except `close`.

use std::io::{self, IoSlice};
use std::mem;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::RawFd;

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn cvt_size(ret: libc::ssize_t) -> io::Result<usize> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as usize)
    }
}

/// Convert a kernel socket address to std's; `None` for unix and other families.
pub fn to_socket_addr(
    storage: &libc::sockaddr_storage,
    len: libc::socklen_t,
) -> Option<SocketAddr> {
    match storage.ss_family as libc::c_int {
        libc::AF_INET if len as usize >= mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in, the length
            // says it is complete, and sockaddr_storage is aligned for every family.
            let sin =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 if len as usize >= mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6 = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Accept one connection, non-blocking and close-on-exec, with its peer address.
pub fn accept(listener: RawFd) -> io::Result<(RawFd, Option<SocketAddr>)> {
    // SAFETY: sockaddr_storage is plain data; zero is a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `storage` and `len` are valid for writes and `len` holds the
    // storage size, so the kernel writes at most that many bytes.
    let fd = cvt(unsafe {
        libc::accept4(
            listener,
            (&mut storage as *mut libc::sockaddr_storage).cast(),
            &mut len,
            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        )
    })?;
    Ok((fd, to_socket_addr(&storage, len)))
}

/// The peer of a connected socket (`None` for unix sockets or on error).
pub fn peer_addr(fd: RawFd) -> Option<SocketAddr> {
    // SAFETY: as in `accept`.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `storage`/`len` are valid for writes of `len` bytes.
    let ret = unsafe {
        libc::getpeername(
            fd,
            (&mut storage as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    };
    if ret < 0 {
        return None;
    }
    to_socket_addr(&storage, len)
}

/// Is `fd` a unix-domain socket? (No TCP options, no peer address.)
pub fn is_unix(fd: RawFd) -> io::Result<bool> {
    // SAFETY: as in `accept`.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: `storage`/`len` are valid for writes of `len` bytes.
    cvt(unsafe {
        libc::getsockname(
            fd,
            (&mut storage as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    })?;
    Ok(storage.ss_family as libc::c_int == libc::AF_UNIX)
}

/// Turn off Nagle's algorithm: responses go out as soon as they are written.
pub fn set_nodelay(fd: RawFd) -> io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: the option value points to a live c_int of the size given.
    cvt(unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&one as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// Move up to `len` bytes from a pipe into a non-blocking socket
/// (splice(2)); never blocks: a full socket is `WouldBlock`.
pub fn splice_to_socket(pipe: RawFd, sock: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: a system call on two descriptors the caller holds open, with
    // no offsets (both ends are streams) and no memory of ours.
    cvt_size(unsafe {
        libc::splice(
            pipe,
            std::ptr::null_mut(),
            sock,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    })
}

/// cachestat(2) (Linux 6.5), the same number on every architecture we build for.
const SYS_CACHESTAT: libc::c_long = 451;

#[repr(C)]
struct CachestatRange {
    off: u64,
    len: u64,
}

#[repr(C)]
#[derive(Default)]
struct Cachestat {
    nr_cache: u64,
    nr_dirty: u64,
    nr_writeback: u64,
    nr_evicted: u64,
    nr_recently_evicted: u64,
}

/// Whether every page of `len` bytes of `file` from `offset` is in the
/// page cache, so that reading them cannot wait for the disk
/// (cachestat(2)). `Err` with ENOSYS on kernels before 6.5; other errors
/// for files without a page cache.
pub fn all_cached(file: RawFd, offset: u64, len: u64) -> io::Result<bool> {
    static PAGE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    // SAFETY: sysconf reads a constant of the running system.
    let page = *PAGE.get_or_init(|| unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64);
    if len == 0 {
        return Ok(true);
    }
    let range = CachestatRange { off: offset, len };
    let mut stat = Cachestat::default();
    // SAFETY: both structs are live, laid out as the kernel's
    // `cachestat_range` and `cachestat`, and the kernel writes only `stat`.
    cvt_size(unsafe {
        libc::syscall(
            SYS_CACHESTAT,
            file,
            &range as *const CachestatRange,
            &mut stat as *mut Cachestat,
            0u32,
        )
    } as libc::ssize_t)?;
    let first = offset / page;
    let end = offset.saturating_add(len).div_ceil(page);
    Ok(stat.nr_cache >= end - first)
}

/// Set TCP_NODELAY on a listening socket: Linux copies a listener's options
/// into every socket it accepts, which then needs no `setsockopt` of its
/// own (one system call less per connection). False when that failed for
/// a TCP listener (a Unix one needs nothing).
pub fn nodelay_inherited(listener: RawFd) -> bool {
    set_nodelay(listener).is_ok() || is_unix(listener).unwrap_or(false)
}

/// One `recv` into memory not yet initialised (a `Vec`'s spare capacity);
/// `Ok(n)`: its first `n` bytes are now initialised. `Ok(0)` is end of stream.
pub fn recv_uninit(fd: RawFd, buf: &mut [mem::MaybeUninit<u8>]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes; the kernel
    // only writes to it.
    cvt_size(unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) })
}

/// One `recv`; `Ok(0)` is end of stream.
pub fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes.
    cvt_size(unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) })
}

/// One vectored send with MSG_NOSIGNAL (a gone peer is EPIPE, not SIGPIPE).
pub fn send_vectored(fd: RawFd, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    // SAFETY: msghdr is plain data; zero is valid (no name, no control).
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    // IoSlice is guaranteed ABI-compatible with iovec on unix.
    msg.msg_iov = bufs.as_ptr() as *mut libc::iovec;
    msg.msg_iovlen = bufs.len() as _;
    // SAFETY: `msg` points at `bufs.len()` live iovecs that outlive the call;
    // the kernel only reads them.
    cvt_size(unsafe { libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL) })
}

/// Write all of `buf` to the non-blocking socket `fd`, waiting for room
/// up to `timeout` at a time: the sync worker's `write()` callable, which
/// blocks the worker like gunicorn's sync worker does. Never raises
/// SIGPIPE; a peer that left is an error.
pub fn send_all_blocking(
    fd: RawFd,
    mut buf: &[u8],
    timeout: std::time::Duration,
) -> io::Result<()> {
    while !buf.is_empty() {
        match send_vectored(fd, &[IoSlice::new(buf)]) {
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let mut pfd = libc::pollfd {
                    fd,
                    events: libc::POLLOUT,
                    revents: 0,
                };
                let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
                // SAFETY: one valid pollfd, for the duration of the call.
                match cvt(unsafe { libc::poll(&mut pfd, 1, ms) }) {
                    Ok(0) => {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "the client did not read in time",
                        ))
                    }
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Send a FIN: no more writes; reads keep working.
pub fn shutdown_write(fd: RawFd) -> io::Result<()> {
    // SAFETY: shutdown only acts on the descriptor number.
    cvt(unsafe { libc::shutdown(fd, libc::SHUT_WR) }).map(drop)
}

/// Close a descriptor the caller owns and will not use again.
///
/// # Safety
///
/// `fd` is open and owned by the caller, nothing else closes it, and no
/// one uses the number after this call (a later descriptor may reuse it).
pub unsafe fn close(fd: RawFd) {
    // SAFETY: the caller gives `fd` up here (see above); errors from close
    // (EINTR included) leave the descriptor closed on Linux, so none is retried.
    unsafe {
        libc::close(fd);
    }
}

/// One `write` (for probes and self-pipes).
pub fn write(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` is valid for reads of `buf.len()` bytes.
    cvt_size(unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) })
}

/// The running kernel's release string, e.g. "6.1.0-18-amd64".
pub fn kernel_release() -> String {
    // SAFETY: utsname is plain data; uname fills it on success.
    let mut uts: libc::utsname = unsafe { mem::zeroed() };
    // SAFETY: `uts` is valid for writes.
    if unsafe { libc::uname(&mut uts) } < 0 {
        return String::from("unknown");
    }
    let bytes: Vec<u8> = uts
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}
