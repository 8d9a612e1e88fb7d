//! Listening sockets: TCP (optionally one SO_REUSEPORT socket per worker) and unix.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd, RawFd};

use socket2::{Domain, Socket, Type};

/// What a worker needs to know about one of its listening sockets. `fd`
/// is the worker's own descriptor for the socket (a duplicate of the
/// arbiter's): the worker closes it by dropping it when it stops accepting.
#[derive(Debug)]
pub struct SlotListener {
    pub fd: OwnedFd,
    pub local: Option<SocketAddr>,
    pub unix_path: Option<String>,
}

fn tcp_socket(addr: SocketAddr, reuse_port: bool) -> io::Result<Socket> {
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking().cloexec(),
        None,
    )?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    Ok(socket)
}

/// Bind `count` listening sockets on `addr`: with `reuse_port`, `count`
/// SO_REUSEPORT sockets sharing the port (the kernel spreads connections
/// over them); otherwise one socket. A port already in use by anyone is an
/// error, also for SO_REUSEPORT, which would otherwise silently share it.
pub fn bind_tcp(
    addr: SocketAddr,
    backlog: i32,
    reuse_port: bool,
    count: usize,
) -> io::Result<Vec<OwnedFd>> {
    let mut addr = addr;
    let probe = tcp_socket(addr, false)?;
    probe.bind(&addr.into())?;
    if addr.port() == 0 {
        if let Some(local) = probe.local_addr()?.as_socket() {
            addr = local;
        }
    }
    if !reuse_port {
        probe.listen(backlog)?;
        return Ok(vec![probe.into()]);
    }
    drop(probe);
    let mut out = Vec::with_capacity(count);
    for _ in 0..count.max(1) {
        let s = tcp_socket(addr, true)?;
        s.bind(&addr.into())?;
        s.listen(backlog)?;
        out.push(s.into());
    }
    Ok(out)
}

/// One more SO_REUSEPORT socket on the address another listener has.
pub fn bind_tcp_another(addr: SocketAddr, backlog: i32) -> io::Result<OwnedFd> {
    let s = tcp_socket(addr, true)?;
    s.bind(&addr.into())?;
    s.listen(backlog)?;
    Ok(s.into())
}

/// Bind a unix socket at `path`, replacing a stale socket file left there.
pub fn bind_unix(path: &str, backlog: i32) -> io::Result<OwnedFd> {
    use std::os::unix::fs::FileTypeExt;
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.file_type().is_socket() {
            std::fs::remove_file(path)?;
        } else {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{path} exists and is not a socket"),
            ));
        }
    }
    let s = Socket::new(Domain::UNIX, Type::STREAM.nonblocking().cloexec(), None)?;
    s.bind(&socket2::SockAddr::unix(path)?)?;
    s.listen(backlog)?;
    Ok(s.into())
}

/// The address a TCP socket is bound to.
pub fn local_addr(fd: &OwnedFd) -> Option<SocketAddr> {
    let s = socket2::SockRef::from(fd);
    s.local_addr().ok()?.as_socket()
}

/// Take ownership of an inherited descriptor (`fd://N`, systemd, an
/// upgrading arbiter) that must be a stream socket; listen on it if it is
/// not listening yet, and make it non-blocking and close-on-exec.
///
/// # Safety
///
/// `fd` must have been handed to this process to own (fd://N, LISTEN_FDS,
/// FERROCORN_FDS), and nothing else in the process may use or close it
/// afterwards: the returned `OwnedFd` closes it. A closed `fd` is an
/// error, not undefined behaviour (it is checked first).
pub unsafe fn adopt_listener(fd: RawFd, backlog: i32) -> io::Result<OwnedFd> {
    use std::os::fd::FromRawFd;
    // Check the descriptor is open before taking ownership of it.
    nix::fcntl::fcntl(unsafe_borrow(fd), nix::fcntl::FcntlArg::F_GETFD)?;
    // SAFETY: the descriptor is open (checked above) and, as the caller
    // promises, this process's to own: nothing else uses or closes it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    let s = socket2::SockRef::from(&owned);
    if s.r#type()? != Type::STREAM {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a stream socket",
        ));
    }
    if !s.is_listener()? {
        s.listen(backlog)?;
    }
    s.set_nonblocking(true)?;
    s.set_cloexec(true)?;
    Ok(owned)
}

fn unsafe_borrow(fd: RawFd) -> std::os::fd::BorrowedFd<'static> {
    // SAFETY: used only for one fcntl(F_GETFD) probe, which reports EBADF
    // for a closed descriptor instead of touching anything.
    unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }
}

/// The path a unix listening socket is bound to.
pub fn unix_path(fd: &OwnedFd) -> Option<String> {
    let s = socket2::SockRef::from(fd);
    let addr = s.local_addr().ok()?;
    addr.as_pathname().map(|p| p.to_string_lossy().into_owned())
}

/// Let `fd` survive exec (for the listeners handed to a new arbiter).
pub fn set_inheritable(fd: BorrowedFd<'_>) -> io::Result<()> {
    socket2::SockRef::from(&fd).set_cloexec(false)
}

/// The effective user id of the process at the other end of a connected
/// unix socket (SO_PEERCRED: taken when it connected, so it cannot be
/// faked by passing the socket on).
pub fn peer_uid(fd: &impl AsFd) -> io::Result<u32> {
    let cred = nix::sys::socket::getsockopt(fd, nix::sys::socket::sockopt::PeerCredentials)?;
    Ok(cred.uid())
}
