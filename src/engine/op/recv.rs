//! Receiving, and pausing it — both engines.
//!
//! * io_uring: one multishot receive per connection, taking buffers from the
//!   worker's buffer ring; each buffer goes back to the ring right after the
//!   callback saw its bytes (or, in an incrementally consumed ring, once the
//!   kernel has used all of it). The receive is re-armed when it ends without
//!   F_MORE for any reason but end of stream, an error or a pause (ENOBUFS
//!   when the ring ran dry is the usual one). Pausing only marks the
//!   connection: the receive stays armed, and is cancelled when bytes land
//!   while paused (they and any more before the cancel are held and
//!   delivered on resume). A client that waits for its response, the usual
//!   case behind a large response, costs no cancel and no re-arm.
//!   A connection the worker marks as sending large bodies (`recv_bounded`)
//!   is received with single receives of at most `BOUNDED_RECV` bytes
//!   instead, each armed at the next wait: the multishot receive would take
//!   a whole body into the buffer ring together with its head, before the
//!   worker could lend the body's memory for it.
//! * epoll: on a readable edge, read into the one reusable buffer. A read
//!   shorter than the buffer means the socket's queue is empty — bytes that
//!   arrive later raise a new edge — so no extra read waits for EAGAIN,
//!   unless the edge also said the peer closed (then read to the end).
//!   Pausing leaves the edge recorded (`Read::Ready`); resuming reads it.
//!
//! Both: a read of 0 bytes or a receive error is `Eof`; nothing is read
//! after it.

use io_uring::{cqueue, opcode, squeue};

use crate::engine::epoll::{EpollEngine, Read};
use crate::engine::slab::Key;
use crate::engine::token::Kind;
use crate::engine::uring::{Conn, Eof, Pending, RecvOp, UringEngine};
use crate::engine::{ConnId, Event};
use crate::sys::transport;

/// Reads per connection per wakeup before others get their turn (epoll).
const READS_PER_WAKEUP: usize = 4;

/// The most one receive of a connection in bounded mode takes (io_uring):
/// a request head and a little of its body.
const BOUNDED_RECV: u32 = 16 * 1024;

// ---------------------------------------------------------------- io_uring

impl UringEngine {
    pub(in crate::engine) fn arm_recv(&mut self, id: u32) {
        let tag = self.conn_tag(Kind::Conn, id);
        let fd = self.fd_of(id);
        let bgid = self.bufs.bgid();
        let c = &mut self.conns[id];
        c.recv.arm();
        c.ops += 1;
        let sqe = if c.bounded {
            opcode::Recv::new(fd, std::ptr::null_mut(), BOUNDED_RECV)
                .buf_group(bgid)
                .build()
                .flags(squeue::Flags::BUFFER_SELECT)
        } else {
            opcode::RecvMulti::new(fd, bgid).build()
        };
        self.push(&sqe.user_data(tag));
    }

    pub(in crate::engine) fn recv_bounded(&mut self, id: u32) {
        let Some(c) = self.worker_conn(id) else {
            return;
        };
        if c.bounded {
            return;
        }
        c.bounded = true;
        // A multishot receive would take the next body with its head: end
        // it; its last completion arms the bounded receive.
        if c.recv.armed() && !c.paused {
            self.cancel_recv(id);
        }
    }

    /// End the connection's receive (multishot or bounded) unless a cancel
    /// is already on its way; its last completion decides what follows.
    pub(super) fn cancel_recv(&mut self, id: u32) {
        if self.conns[id].recv.cancel() {
            let tag = self.conn_tag(Kind::Conn, id);
            self.cancel(tag);
        }
    }

    pub(in crate::engine) fn on_recv(
        &mut self,
        id: u32,
        gen: u32,
        res: i32,
        flags: u32,
        on_event: &mut dyn FnMut(Event<'_>),
    ) {
        let more = cqueue::more(flags);
        let key = Key { index: id, gen };
        let live = self.conns.get(key).is_some_and(Conn::is_open);
        let Some(c) = self.conns.at_mut(id) else {
            // Never: a slot is freed only after its last completion. The
            // buffer still goes back to the ring.
            if let (true, Some(bid)) = (res > 0, cqueue::buffer_select(flags)) {
                self.bufs
                    .consume(bid, res as usize, cqueue::buffer_more(flags));
            }
            return;
        };
        let mut cancel = false;
        if res > 0 {
            if let Some(bid) = cqueue::buffer_select(flags) {
                let data = self.bufs.data(bid, res as usize);
                if live && c.loan.is_some() {
                    // Bytes ahead of a loan (its cancel is on the way).
                    super::recv_into::fill(c, data);
                } else if live && !c.paused {
                    on_event(Event::Data {
                        conn: ConnId(id),
                        data,
                    });
                } else if live {
                    c.held.extend_from_slice(data);
                    // Paused and the client keeps sending: stop receiving.
                    cancel = more && c.recv == RecvOp::Armed;
                }
                self.bufs
                    .consume(bid, res as usize, cqueue::buffer_more(flags));
            }
        } else if res == 0 || (res != -libc::ENOBUFS && res != -libc::ECANCELED) {
            // End of stream, or the connection failed (reset...).
            if live && !c.eof.seen() {
                if c.paused || c.loan.is_some() {
                    c.eof = Eof::Held;
                } else {
                    c.eof = Eof::Delivered;
                    on_event(Event::Eof { conn: ConnId(id) });
                }
            }
        }
        if cancel {
            self.recv_cancels += 1;
            self.cancel_recv(id);
        }
        if res == -libc::ENOBUFS {
            self.recv_out_of_buffers += 1;
        }
        if !more {
            let stopping = self.is_stopping();
            let c = &mut self.conns[id];
            c.recv.ended();
            let lent = live && c.loan.is_some();
            let rearm = c.is_open() && !c.paused && !c.eof.seen() && !lent && !stopping;
            let bounded = c.bounded;
            self.op_done(id);
            if rearm && bounded {
                // Armed at the next wait, after the worker had the bytes and
                // a chance to lend a body's memory for what follows them.
                self.rearm.push(key);
            } else if rearm {
                self.arm_recv(id);
            } else if lent {
                self.after_multishot(id, on_event);
            }
        }
    }

    pub(in crate::engine) fn pause_recv(&mut self, id: u32) {
        // The receive is cancelled only if bytes arrive meanwhile (on_recv).
        if let Some(c) = self.worker_conn(id) {
            c.paused = true;
        }
    }

    pub(in crate::engine) fn resume_recv(&mut self, id: u32) {
        let Some(c) = self.worker_conn(id) else {
            return;
        };
        if !c.paused {
            return;
        }
        c.paused = false;
        if c.loan.is_some() {
            // What is held follows the loan when it comes back.
            return;
        }
        let held = !c.held.is_empty() || c.eof == Eof::Held;
        // Still armed: never cancelled, or the cancel is on its way and its
        // last completion re-arms (the connection is no longer paused then).
        let rearm = c.recv == RecvOp::Idle && !c.eof.seen();
        if held {
            let key = self.conns.key(id);
            self.pending.push(Pending::Held(key));
        }
        if rearm {
            self.arm_recv(id);
        }
    }

    /// Hand over what arrived while paused.
    pub(in crate::engine) fn deliver_held(
        &mut self,
        key: Key,
        on_event: &mut dyn FnMut(Event<'_>),
    ) -> bool {
        let Some(c) = self.open_conn(key) else {
            return false;
        };
        if c.paused || c.loan.is_some() {
            return false;
        }
        let conn = ConnId(key.index);
        let held = std::mem::take(&mut c.held);
        let mut delivered = false;
        if !held.is_empty() {
            on_event(Event::Data { conn, data: &held });
            delivered = true;
        }
        if c.eof.take_held() {
            on_event(Event::Eof { conn });
            delivered = true;
        }
        delivered
    }
}

// ------------------------------------------------------------------ epoll

impl EpollEngine {
    /// Read what the socket has (up to the per-wakeup limit).
    pub(in crate::engine) fn on_readable(
        &mut self,
        key: Key,
        on_event: &mut dyn FnMut(Event<'_>),
    ) -> bool {
        let Some(c) = self.conns.get_mut(key) else {
            return false;
        };
        if c.paused || !c.read.ready() {
            return false;
        }
        if c.target.is_some() {
            return self.read_into(key, on_event);
        }
        let conn = ConnId(key.index);
        let mut delivered = false;
        for _ in 0..READS_PER_WAKEUP {
            match transport::recv(c.fd, &mut self.rbuf) {
                Ok(0) => {
                    c.read = Read::Ended;
                    on_event(Event::Eof { conn });
                    return true;
                }
                Ok(n) => {
                    on_event(Event::Data {
                        conn,
                        data: &self.rbuf[..n],
                    });
                    delivered = true;
                    if n < self.rbuf.len() && !c.read.to_end() {
                        c.read.drained();
                        return true;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    c.read.drained();
                    return delivered;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => {
                    c.read = Read::Ended;
                    on_event(Event::Eof { conn });
                    return true;
                }
            }
        }
        // Still readable: continue at the next wait, after the others.
        self.ready.push(key);
        delivered
    }

    /// Read the connections queued for reading.
    pub(in crate::engine) fn read_ready(&mut self, on_event: &mut dyn FnMut(Event<'_>)) -> bool {
        if self.ready.is_empty() {
            return false;
        }
        let ready = std::mem::take(&mut self.ready);
        let mut delivered = false;
        for &key in &ready {
            delivered |= self.on_readable(key, on_event);
        }
        // Reuse the list's memory unless reading queued connections again.
        if self.ready.is_empty() {
            self.ready = ready;
            self.ready.clear();
        }
        delivered
    }

    pub(in crate::engine) fn pause_recv(&mut self, id: u32) {
        if let Some(c) = self.worker_conn(id) {
            c.paused = true;
        }
    }

    /// Nothing to change: a read never takes more than the worker lends
    /// for, or the engine's own buffer.
    pub(in crate::engine) fn recv_bounded(&mut self, _id: u32) {}

    pub(in crate::engine) fn resume_recv(&mut self, id: u32) {
        let Some(c) = self.worker_conn(id) else {
            return;
        };
        if c.paused {
            c.paused = false;
            if c.read.ready() {
                let key = self.conns.key(id);
                self.ready.push(key);
            }
        }
    }
}
