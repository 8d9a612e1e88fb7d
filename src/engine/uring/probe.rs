//! Can this process use io_uring? Sets up a small ring, checks the opcodes
//! and features the engine relies on, and runs one multishot receive with a
//! provided-buffer ring on a socket pair (the 6.0 feature nothing else
//! reveals). Every failure says why, for the start-up log.

use std::os::fd::AsRawFd;
use std::time::Duration;

use io_uring::{cqueue, opcode, types, IoUring, Probe};

use super::bufring::BufRing;
use crate::engine::Unavailable;
use crate::sys::transport;
use crate::sys::uring::{enter, RingRef};

/// Opcodes the engine issues, with their names for the message.
const NEEDED: &[(u8, &str)] = &[
    (opcode::AcceptMulti::CODE, "ACCEPT"),
    (opcode::RecvMulti::CODE, "RECV"),
    (opcode::Send::CODE, "SEND"),
    (opcode::SendMsg::CODE, "SENDMSG"),
    (opcode::Shutdown::CODE, "SHUTDOWN"),
    (opcode::Close::CODE, "CLOSE"),
    (opcode::AsyncCancel::CODE, "ASYNC_CANCEL"),
    (opcode::PollAdd::CODE, "POLL_ADD"),
    (opcode::Splice::CODE, "SPLICE"),
    (opcode::Nop::CODE, "NOP"),
];

fn unavailable(why: String) -> Unavailable {
    Unavailable(format!("io_uring unavailable: {why}"))
}

/// Describe an `io_uring_setup` failure.
pub(in crate::engine) fn setup_error(err: &std::io::Error) -> Unavailable {
    unavailable(match err.raw_os_error() {
        Some(libc::EPERM) => "EPERM (blocked by seccomp or kernel.io_uring_disabled)".to_string(),
        Some(libc::ENOSYS) => {
            "ENOSYS (kernel built without io_uring, or blocked by seccomp)".to_string()
        }
        Some(libc::ENOMEM) => "ENOMEM (locked-memory limit too low: raise `ulimit -l`)".to_string(),
        Some(libc::EMFILE) | Some(libc::ENFILE) => format!("{err} (out of file descriptors)"),
        _ => format!("setup failed: {err}"),
    })
}

pub(in crate::engine) fn probe() -> Result<(), Unavailable> {
    let release = transport::kernel_release();
    let ring = IoUring::new(8).map_err(|e| setup_error(&e))?;
    if !ring.params().is_feature_ext_arg() || !ring.params().is_feature_nodrop() {
        return Err(unavailable(format!(
            "kernel {release} too old (needs >= 6.0)"
        )));
    }
    let mut ops = Probe::new();
    ring.submitter()
        .register_probe(&mut ops)
        .map_err(|e| unavailable(format!("opcode probe failed on kernel {release}: {e}")))?;
    for &(code, name) in NEEDED {
        if !ops.is_supported(code) {
            return Err(unavailable(format!(
                "opcode {name} not supported by kernel {release}"
            )));
        }
    }
    multishot_recv_works(ring, &release)
}

/// Receive one byte through a multishot receive with a buffer ring and
/// check the kernel kept the receive armed.
fn multishot_recv_works(mut ring: IoUring, release: &str) -> Result<(), Unavailable> {
    let bufs = BufRing::new(&ring, 0, 2, 64, false).map_err(|e| {
        if e.raw_os_error() == Some(libc::EINVAL) {
            unavailable(format!(
                "kernel {release} has no provided-buffer rings (needs >= 6.0)"
            ))
        } else {
            unavailable(format!("cannot register a buffer ring: {e}"))
        }
    })?;
    let (a, b) = std::os::unix::net::UnixStream::pair()
        .and_then(|(a, b)| {
            a.set_nonblocking(true)?;
            b.set_nonblocking(true)?;
            Ok((a, b))
        })
        .map_err(|e| unavailable(format!("socketpair: {e}")))?;
    let result = (|| {
        let sqe = opcode::RecvMulti::new(types::Fd(a.as_raw_fd()), bufs.bgid())
            .build()
            .user_data(1);
        // SAFETY: the receive writes only into `bufs`, which outlives the
        // ring (the ring is dropped first, below).
        unsafe { ring.submission().push(&sqe) }
            .map_err(|_| unavailable("probe ring full".to_string()))?;
        transport::write(b.as_raw_fd(), b"x")
            .map_err(|e| unavailable(format!("socketpair write: {e}")))?;
        let fd = RingRef::Fd(ring.as_raw_fd());
        enter(fd, 1, 1, Some(Duration::from_secs(1)))
            .map_err(|e| unavailable(format!("enter failed: {e}")))?;
        let Some(cqe) = ring.completion().next() else {
            return Err(unavailable(
                "no completion from the probe receive".to_string(),
            ));
        };
        match cqe.result() {
            1 if cqueue::more(cqe.flags()) => Ok(()),
            1 => Err(unavailable(format!(
                "kernel {release} does not keep multishot receives armed (needs >= 6.0)"
            ))),
            r if r == -libc::EINVAL => Err(unavailable(format!(
                "kernel {release} too old for multishot recv (needs >= 6.0)"
            ))),
            r => Err(unavailable(format!(
                "multishot recv probe failed: {}",
                std::io::Error::from_raw_os_error(-r)
            ))),
        }
    })();
    drop((a, b));
    // Both socket ends are closed, so nothing more can land in `bufs`.
    drop(ring);
    drop(bufs);
    result
}
