//! Sending and shutting down the write side — both engines.
//!
//! `send` only queues the buffer and marks the connection dirty; the next
//! `wait` writes every dirty connection's whole queue at once, so several
//! pipelined responses queued between two waits leave in one vectored call.
//!
//! * io_uring: one send in flight per connection (`Send` for one buffer,
//!   `SendMsg` over up to `MAX_IOV` iovecs otherwise). Its buffers stay in
//!   the queue, and the iovecs and `msghdr` in the slot, until it completes;
//!   a partial send is resubmitted from where it stopped.
//! * epoll: `sendmsg` until the queue is empty or a write comes up short
//!   (the socket buffer is full); the writable edge resumes it.
//!
//! Both: `Sent` once the queue has drained; `SendFailed` with the errno on
//! EPIPE, ECONNRESET and the like, after which the queue is dropped.
//! MSG_NOSIGNAL keeps a gone peer from raising SIGPIPE. `shutdown_write`
//! sends the FIN once the queue has drained. A file range queued with
//! `send_file` is written in its place in the queue by the code in
//! `send_file.rs`; the send in flight then is one of its steps.

use std::io::IoSlice;

use io_uring::opcode;

use crate::engine::epoll::EpollEngine;
use crate::engine::op::send_file::{self, FileWrite, Next};
use crate::engine::queue::{Bytes, MAX_IOV};
use crate::engine::slab::Key;
use crate::engine::token::Kind;
use crate::engine::uring::{Stage, UringEngine};
use crate::engine::{ConnId, Event};
use crate::sys::transport;

// ---------------------------------------------------------------- io_uring

impl UringEngine {
    pub(in crate::engine) fn send(&mut self, id: u32, data: Bytes) {
        let Some(c) = self.worker_conn(id) else {
            return;
        };
        if !c.writing.takes_output() {
            return;
        }
        c.out.push(data);
        if !c.dirty {
            c.dirty = true;
            let key = self.conns.key(id);
            self.dirty.push(key);
        }
    }

    /// Start a send on every dirty connection that has none in flight, or
    /// report `Sent` for one whose queue is already empty.
    pub(in crate::engine) fn start_sends(&mut self, on_event: &mut dyn FnMut(Event<'_>)) -> bool {
        if self.dirty.is_empty() {
            return false;
        }
        let dirty = std::mem::take(&mut self.dirty);
        let mut delivered = false;
        for &key in &dirty {
            let Some(c) = self.open_conn(key) else {
                continue;
            };
            c.dirty = false;
            if c.send.busy() {
                // The completion starts the next send with what was added.
            } else if c.has_output() {
                self.submit_send(key.index);
            } else if !c.writing.failed() {
                // Only empty buffers were queued: nothing to wait for.
                on_event(Event::Sent {
                    conn: ConnId(key.index),
                });
                delivered = true;
            }
        }
        self.dirty = dirty;
        self.dirty.clear();
        delivered
    }

    pub(in crate::engine) fn submit_send(&mut self, id: u32) {
        let c = &self.conns[id];
        if c.in_pipe > 0 || !c.out.front_is_bytes() {
            return self.submit_file_step(id);
        }
        let tag = self.conn_tag(Kind::Send, id);
        let fd = self.fd_of(id);
        let c = &mut self.conns[id];
        c.out.iovecs(&mut c.iovs);
        c.send.start(Stage::Bytes);
        c.ops += 1;
        let sqe = if c.iovs.len() == 1 {
            let iov = c.iovs[0];
            opcode::Send::new(fd, iov.iov_base as *const u8, iov.iov_len as u32)
                .flags(libc::MSG_NOSIGNAL)
                .build()
        } else {
            c.msg.msg_iov = c.iovs.as_mut_ptr();
            c.msg.msg_iovlen = c.iovs.len() as _;
            opcode::SendMsg::new(fd, &*c.msg)
                .flags(libc::MSG_NOSIGNAL as u32)
                .build()
        };
        self.push(&sqe.user_data(tag));
    }

    pub(in crate::engine) fn on_send(
        &mut self,
        id: u32,
        gen: u32,
        res: i32,
        on_event: &mut dyn FnMut(Event<'_>),
    ) {
        let live = self.open_conn(Key { index: id, gen }).is_some();
        let Some(c) = self.conns.at_mut(id) else {
            return;
        };
        let stage = c.send.finish();
        if !live {
            // Closing: the send was cancelled or finished; either way the
            // buffers are the kernel's no more.
            self.op_done(id);
            return;
        }
        let next = match stage {
            Stage::Bytes if res > 0 => {
                c.out.consume(res as usize, &mut self.spare);
                Next::Continue
            }
            Stage::Bytes if res == -libc::EINTR || res == -libc::EAGAIN => Next::Continue,
            // 0 bytes for a non-empty send means the peer cannot take more.
            Stage::Bytes if res == 0 => Next::Failed(libc::EPIPE),
            Stage::Bytes => Next::Failed(-res),
            _ => self.file_step_done(id, stage, res),
        };
        let c = &mut self.conns[id];
        match next {
            Next::Continue if c.has_output() => {
                self.op_done(id);
                self.submit_send(id);
                return;
            }
            Next::Continue => {
                on_event(Event::Sent { conn: ConnId(id) });
                if c.writing.drained() {
                    self.shut_now(id);
                }
            }
            Next::WaitWritable => {
                self.op_done(id);
                self.submit_wait_writable(id);
                return;
            }
            Next::Failed(errno) => {
                c.writing.fail();
                c.out.clear();
                // A pipe with bytes of the lost response in it is no use.
                c.pipe = None;
                c.in_pipe = 0;
                on_event(Event::SendFailed {
                    conn: ConnId(id),
                    errno,
                });
            }
        }
        self.op_done(id);
    }

    pub(in crate::engine) fn shutdown_write(&mut self, id: u32) {
        let Some(c) = self.worker_conn(id) else {
            return;
        };
        let drained = !c.send.busy() && !c.has_output();
        if c.writing.shut(drained) {
            self.shut_now(id);
        }
    }

    /// The FIN, at once, by system call: `IORING_OP_SHUTDOWN` has no
    /// non-blocking path and always runs on an io-wq thread (a thread
    /// wake-up per closing connection, a fifth of the CPU of a
    /// `Connection: close` load), while shutdown(2) of the write side only
    /// queues the FIN and never blocks. Called when the send queue has
    /// drained, so the FIN leaves in the same turn as the last bytes.
    fn shut_now(&mut self, id: u32) {
        let c = &self.conns[id];
        // An error means the connection is already gone; its receive or
        // the next send reports that.
        let _ = transport::shutdown_write(c.fd);
    }
}

// ------------------------------------------------------------------ epoll

impl EpollEngine {
    pub(in crate::engine) fn send(&mut self, id: u32, data: Bytes) {
        let Some(c) = self.worker_conn(id) else {
            return;
        };
        if !c.writing.takes_output() {
            return;
        }
        c.out.push(data);
        if !c.dirty {
            c.dirty = true;
            let key = self.conns.key(id);
            self.dirty.push(key);
        }
    }

    /// Write every dirty connection's queue.
    pub(in crate::engine) fn flush_dirty(&mut self, on_event: &mut dyn FnMut(Event<'_>)) -> bool {
        if self.dirty.is_empty() {
            return false;
        }
        let mut dirty = std::mem::take(&mut self.dirty);
        let mut delivered = false;
        for &key in &dirty {
            let Some(c) = self.conns.get_mut(key) else {
                continue;
            };
            c.dirty = false;
            if !c.blocked {
                delivered |= self.flush(key, on_event);
            }
        }
        // A flush that wrote its piece of a file put its connection back
        // in the list; otherwise reuse the allocation.
        dirty.clear();
        if self.dirty.is_empty() {
            self.dirty = dirty;
        }
        delivered
    }

    /// The writable edge after a short write.
    pub(in crate::engine) fn on_writable(
        &mut self,
        key: Key,
        on_event: &mut dyn FnMut(Event<'_>),
    ) -> bool {
        let Some(c) = self.conns.get_mut(key) else {
            return false;
        };
        if !c.blocked {
            return false;
        }
        c.blocked = false;
        self.flush(key, on_event)
    }

    /// Write the queue until it is empty or the socket is full.
    fn flush(&mut self, key: Key, on_event: &mut dyn FnMut(Event<'_>)) -> bool {
        let conn = ConnId(key.index);
        let c = &mut self.conns[key.index];
        if c.writing.failed() {
            return false;
        }
        while !c.out.is_empty() {
            if c.out.front_file().is_some() {
                match send_file::write_file(c.fd, &mut c.out, u64::from(send_file::PIECE)) {
                    FileWrite::Done => continue,
                    FileWrite::Blocked => {
                        c.blocked = true;
                        return false;
                    }
                    FileWrite::Yield => {
                        // Other connections first; this one goes on next turn.
                        c.dirty = true;
                        self.dirty.push(key);
                        return false;
                    }
                    FileWrite::Failed(errno) => {
                        c.writing.fail();
                        c.out.clear();
                        on_event(Event::SendFailed { conn, errno });
                        return true;
                    }
                }
            }
            let mut slices = [IoSlice::new(&[]); MAX_IOV];
            let n = c.out.slices(&mut slices);
            let offered: usize = slices[..n].iter().map(|s| s.len()).sum();
            match transport::send_vectored(c.fd, &slices[..n]) {
                Ok(written) => {
                    c.out.consume(written, &mut self.spare);
                    if written < offered {
                        c.blocked = true;
                        return false;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    c.blocked = true;
                    return false;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    c.writing.fail();
                    c.out.clear();
                    let errno = e.raw_os_error().unwrap_or(libc::EIO);
                    on_event(Event::SendFailed { conn, errno });
                    return true;
                }
            }
        }
        on_event(Event::Sent { conn });
        if c.writing.drained() {
            let _ = transport::shutdown_write(c.fd);
        }
        true
    }

    pub(in crate::engine) fn shutdown_write(&mut self, id: u32) {
        let Some(c) = self.worker_conn(id) else {
            return;
        };
        if c.writing.shut(!c.blocked && c.out.is_empty()) {
            let _ = transport::shutdown_write(c.fd);
        }
    }
}
