//! Sending part of a file — both engines.
//!
//! `send_file` queues a file range in the connection's output queue, in
//! order with the buffers queued by `send` before and after it; `Sent` and
//! `SendFailed` work as for `send` (everything queued, file ranges
//! included, has been written / writing failed). The engine owns the
//! descriptor it is given and closes it when the range is written or the
//! connection goes, so the caller passes a duplicate (`dup_fd`) and the
//! app may close its own file at any time.
//!
//! A range is written in pieces of at most `PIECE` bytes per operation, so
//! one big file does not hold up the other connections.
//!
//! * epoll: `sendfile(2)` from the file straight into the non-blocking
//!   socket; EAGAIN waits for the writable edge like a short `sendmsg`. A
//!   connection writes at most one piece of file per turn of the loop and
//!   then goes to the back of the line (it stays in the dirty list).
//! * io_uring, a piece whose pages are all in the page cache (cachestat(2),
//!   Linux 6.5; one system call): `sendfile(2)` as on epoll, since reading
//!   it cannot wait for the disk. A page evicted between the check and the
//!   send is read from disk by the loop itself, as epoll always does.
//! * io_uring otherwise (it has no sendfile): a piece goes file → pipe with an
//!   `IORING_OP_SPLICE`, through a pipe the connection borrows from a
//!   per-worker pool (created on demand, 256 KiB when the pipe size limit
//!   allows; a piece is at most one pipeful), then pipe → socket with a
//!   splice(2) of the worker's own. The pages move by reference, never
//!   through user memory, and a page-cache miss blocks a kernel worker
//!   thread, not the loop. The kernel runs every `IORING_OP_SPLICE` on an
//!   io-wq thread (a thread wake-up each); the splice into the socket
//!   cannot block (the sockets are non-blocking: a full one answers
//!   EAGAIN, and a one-shot `POLL_ADD` for POLLOUT waits), so it needs no
//!   thread. A small file would pay the hand-off for little: a range of at
//!   most `READ_MAX` bytes is read into memory instead with one
//!   `IORING_OP_READ` (done at once from the page cache; on a miss the
//!   kernel finishes it later, still without blocking the loop) and sent
//!   as bytes. All these steps are the
//!   connection's one send in flight (`Kind::Send`), so `close` cancels
//!   them like any send, and the pipe, the read's memory and the file stay
//!   in the slot until the step's completion (the ownership rule). A pipe
//!   still holding bytes when its connection ends is closed, not pooled.
//!
//! A file that turns out shorter than the range (truncated meanwhile) ends
//! the transfer with `SendFailed` and EIO: the response cannot be finished.
//! SIGPIPE is ignored process-wide (sendfile and splice have no
//! MSG_NOSIGNAL), so a gone peer is EPIPE.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use io_uring::{opcode, types};

use crate::engine::epoll::EpollEngine;
use crate::engine::queue::SendQueue;
use crate::engine::token::Kind;
use crate::engine::uring::{Pipe, Stage, UringEngine};
use crate::sys::transport;

/// Most bytes of a file one operation moves (and one epoll turn writes).
pub const PIECE: u32 = 1 << 20;
/// A file range this small (the rest of it) is read into memory and sent
/// as bytes on io_uring: two io-wq hand-offs cost more than copying it
/// twice. Measured behind `wsgi.file_wrapper` (server CPU per request):
/// 4 KiB 33.6 -> 25.5 µs, 16 KiB 32.1 -> 28.2; at 32 KiB the two ways
/// cost the same and at 64 KiB the copies cost more.
const READ_MAX: u64 = 16 * 1024;
/// Empty pipes the io_uring engine keeps for the next file.
const SPARE_PIPES: usize = 16;
/// A new descriptor (close-on-exec) for the file `fd` refers to, owned by
/// the caller; the original stays the app's to close.
pub fn dup_fd(fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC touches no memory of ours; for any integer it
    // either fails (EBADF) or creates a new descriptor.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `new` was just created by fcntl and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// What to do after a step of the send in flight completed.
pub(in crate::engine) enum Next {
    /// Go on with what is queued (or report `Sent` when nothing is).
    Continue,
    /// The socket is full: wait until it is writable.
    WaitWritable,
    Failed(i32),
}

// ---------------------------------------------------------------- io_uring

impl UringEngine {
    pub(in crate::engine) fn send_file(&mut self, id: u32, file: OwnedFd, offset: u64, len: u64) {
        let Some(c) = self.worker_conn(id) else {
            return;
        };
        if !c.writing.takes_output() {
            return;
        }
        c.out.push_file(file, offset, len);
        if !c.dirty {
            c.dirty = true;
            let key = self.conns.key(id);
            self.dirty.push(key);
        }
    }

    /// Start the next step for the file at the front of the queue, or wait
    /// for room for the bytes of it still in the pipe. Called by
    /// `submit_send`.
    pub(in crate::engine) fn submit_file_step(&mut self, id: u32) {
        if self.conns[id].in_pipe > 0 {
            // The socket was full when the pipe was drained.
            return self.submit_wait_writable(id);
        }
        let tag = self.conn_tag(Kind::Send, id);
        let c = &mut self.conns[id];
        let Some((file, offset, left)) = c.out.front_file() else {
            return;
        };
        let cached = c.pipe.is_none() && left > READ_MAX && self.cachestat && {
            match transport::all_cached(file, offset, left.min(u64::from(PIECE))) {
                Ok(all) => all,
                Err(e) => {
                    // A kernel before 6.5 answers ENOSYS every time.
                    if e.raw_os_error() == Some(libc::ENOSYS) {
                        self.cachestat = false;
                    }
                    false
                }
            }
        };
        let (stage, sqe) = if cached {
            // In the page cache: sendfile(2) now, as epoll does. It cannot
            // wait for the disk, and saves the io-wq hand-off a splice costs.
            // A no-op carries the outcome to the completion path.
            let stage = match write_file(c.fd, &mut c.out, left.min(u64::from(PIECE))) {
                FileWrite::Done | FileWrite::Yield => Stage::Sent { full: false },
                FileWrite::Blocked => Stage::Sent { full: true },
                FileWrite::Failed(errno) => Stage::Failed(errno),
            };
            (stage, opcode::Nop::new().build())
        } else if left <= READ_MAX && c.pipe.is_none() {
            // `left` fits in 32 bits; the buffer is new, so the kernel gets
            // memory nothing else points into.
            c.file_buf = Vec::with_capacity(left as usize);
            let sqe = opcode::Read::new(types::Fd(file), c.file_buf.as_mut_ptr(), left as u32)
                .offset(offset)
                .build();
            (Stage::FileRead, sqe)
        } else {
            match c
                .pipe
                .take()
                .or_else(|| self.pipes.pop())
                .map_or_else(Pipe::new, Ok)
            {
                Ok(pipe) => {
                    let len = left.min(u64::from(pipe.capacity.min(PIECE))) as u32;
                    let sqe = opcode::Splice::new(
                        types::Fd(file),
                        offset as i64,
                        types::Fd(pipe.write.as_raw_fd()),
                        -1,
                        len,
                    )
                    .build();
                    c.pipe = Some(pipe);
                    (Stage::FileToPipe, sqe)
                }
                Err(e) => (
                    Stage::Failed(e.raw_os_error().unwrap_or(libc::EMFILE)),
                    opcode::Nop::new().build(),
                ),
            }
        };
        c.send.start(stage);
        c.ops += 1;
        self.push(&sqe.user_data(tag));
    }

    /// Wait for room in the socket, as the send in flight.
    pub(in crate::engine) fn submit_wait_writable(&mut self, id: u32) {
        let tag = self.conn_tag(Kind::Send, id);
        let sock = self.fd_of(id);
        let c = &mut self.conns[id];
        c.send.start(Stage::WaitWritable);
        c.ops += 1;
        let sqe = opcode::PollAdd::new(sock, libc::POLLOUT as u32).build();
        self.push(&sqe.user_data(tag));
    }

    /// A file step of open connection `id` completed with `res`.
    pub(in crate::engine) fn file_step_done(&mut self, id: u32, stage: Stage, res: i32) -> Next {
        let c = &mut self.conns[id];
        match stage {
            Stage::FileToPipe if res > 0 => {
                c.out.consume_file(res as u64);
                c.in_pipe += res as u32;
                self.drain_pipe(id)
            }
            // The file ended before the range did.
            Stage::FileToPipe if res == 0 => Next::Failed(libc::EIO),
            Stage::FileRead if res > 0 => {
                let mut buf = std::mem::take(&mut c.file_buf);
                // SAFETY: the kernel wrote `res` bytes (at most the length
                // asked, the buffer's capacity) at its start.
                unsafe { buf.set_len((res as usize).min(buf.capacity())) };
                c.out.consume_file(buf.len() as u64);
                c.out.push_front(buf.into());
                Next::Continue
            }
            Stage::FileRead if res == 0 => Next::Failed(libc::EIO),
            Stage::WaitWritable if res >= 0 => self.drain_pipe(id),
            Stage::Sent { full: false } => Next::Continue,
            Stage::Sent { full: true } => {
                self.file_waits += 1;
                Next::WaitWritable
            }
            Stage::Failed(errno) => Next::Failed(errno),
            _ if res == -libc::EINTR || res == -libc::EAGAIN => Next::Continue,
            _ => Next::Failed(-res),
        }
    }

    /// Move the pipe's bytes into the socket now, by system call: splicing
    /// from a pipe into a non-blocking socket never blocks, while the
    /// `IORING_OP_SPLICE` for it would run on an io-wq thread (a thread
    /// wake-up per piece). Only the file -> pipe step, which may wait for
    /// the disk, stays with io_uring.
    fn drain_pipe(&mut self, id: u32) -> Next {
        let c = &mut self.conns[id];
        let Some(pipe) = &c.pipe else {
            return Next::Continue;
        };
        while c.in_pipe > 0 {
            match transport::splice_to_socket(pipe.read.as_raw_fd(), c.fd, c.in_pipe as usize) {
                // The peer cannot take more (as for the splice op).
                Ok(0) => return Next::Failed(libc::EPIPE),
                Ok(n) => c.in_pipe -= (n as u32).min(c.in_pipe),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.file_waits += 1;
                    return Next::WaitWritable;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Next::Failed(e.raw_os_error().unwrap_or(libc::EIO)),
            }
        }
        self.pipe_emptied(id);
        Next::Continue
    }

    /// Once a file is through its pipe, the pipe goes back to the pool.
    fn pipe_emptied(&mut self, id: u32) {
        let c = &mut self.conns[id];
        if c.in_pipe == 0 && c.out.front_file().is_none() {
            if let Some(pipe) = c.pipe.take() {
                if self.pipes.len() < SPARE_PIPES {
                    self.pipes.push(pipe);
                }
            }
        }
    }

    /// The slot of `id` is being freed: keep its pipe if it is empty.
    pub(in crate::engine) fn release_pipe(&mut self, id: u32) {
        let c = &mut self.conns[id];
        let in_pipe = std::mem::take(&mut c.in_pipe);
        if let Some(pipe) = c.pipe.take() {
            if in_pipe == 0 && self.pipes.len() < SPARE_PIPES {
                self.pipes.push(pipe);
            }
        }
    }
}

// ------------------------------------------------------------------ epoll

/// One `sendfile(2)` of up to `count` bytes of `file` from `offset`.
fn sendfile(sock: RawFd, file: RawFd, offset: u64, count: usize) -> io::Result<usize> {
    // An offset past i64::MAX turns negative: the kernel answers EINVAL.
    let mut off = offset as libc::off_t;
    // SAFETY: a system call on two descriptors the engine holds open; `off`
    // is a live off_t the kernel may update, and no buffer of ours is used.
    let n = unsafe { libc::sendfile(sock, file, &mut off, count) };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// What writing the front file ranges of a queue by sendfile(2) came to.
pub(in crate::engine) enum FileWrite {
    /// The ranges are written; go on with the queue.
    Done,
    /// The socket is full: wait until it is writable.
    Blocked,
    /// The budget is written; more next turn.
    Yield,
    Failed(i32),
}

impl EpollEngine {
    pub(in crate::engine) fn send_file(&mut self, id: u32, file: OwnedFd, offset: u64, len: u64) {
        let Some(c) = self.worker_conn(id) else {
            return;
        };
        if !c.writing.takes_output() {
            return;
        }
        c.out.push_file(file, offset, len);
        if !c.dirty {
            c.dirty = true;
            let key = self.conns.key(id);
            self.dirty.push(key);
        }
    }
}

/// Write up to `budget` bytes of the file ranges at the front of `out`
/// into `sock` by sendfile(2): epoll's way with every file (one piece per
/// turn), io_uring's with a piece in the page cache (the budget is the
/// piece, so no range after it is touched).
pub(in crate::engine) fn write_file(
    sock: RawFd,
    out: &mut SendQueue,
    mut budget: u64,
) -> FileWrite {
    while let Some((file, offset, left)) = out.front_file() {
        if budget == 0 {
            return FileWrite::Yield;
        }
        let want = left.min(budget) as usize;
        match sendfile(sock, file, offset, want) {
            Ok(0) => return FileWrite::Failed(libc::EIO),
            // A short count is followed by another try, which says EAGAIN
            // when the socket is full (a short count alone does not: the
            // file may have ended, and no writable edge would come then).
            Ok(n) => {
                out.consume_file(n as u64);
                budget -= (n as u64).min(budget);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return FileWrite::Blocked,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return FileWrite::Failed(e.raw_os_error().unwrap_or(libc::EIO)),
        }
    }
    FileWrite::Done
}
