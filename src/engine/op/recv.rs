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
//!   Pausing leaves the edge recorded in `readable`; resuming reads it.
//!
//! Both: a read of 0 bytes or a receive error is `Eof`; nothing is read
//! after it.

use io_uring::{cqueue, opcode, squeue};

use crate::engine::epoll::EpollEngine;
use crate::engine::token::Kind;
use crate::engine::uring::{ConnState, Pending, UringEngine};
use crate::engine::{ConnId, Event};
use crate::sys::transport;

/// Reads per connection per wakeup before others get their turn (epoll).
const READS_PER_WAKEUP: usize = 4;

/// The most one receive of a connection in bounded mode takes (io_uring):
/// a request head and a little of its body.
const BOUNDED_RECV: u32 = 16 * 1024;

// ---------------------------------------------------------------- io_uring

impl UringEngine {
    pub fn arm_recv(&mut self, id: u32) {
        let tag = self.conn_tag(Kind::Conn, id);
        let fd = self.fd_of(id);
        let bgid = self.bufs.bgid();
        let c = &mut self.conns[id as usize];
        c.recv_armed = true;
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

    pub fn recv_bounded(&mut self, id: u32) {
        let Some(c) = self.conns.get_mut(id as usize) else {
            return;
        };
        if c.state != ConnState::Open || c.bounded {
            return;
        }
        c.bounded = true;
        // A multishot receive would take the next body with its head: end
        // it; its last completion arms the bounded receive.
        if c.recv_armed && !c.paused {
            self.cancel_recv(id);
        }
    }

    /// End the connection's receive (multishot or bounded) unless a cancel
    /// is already on its way; its last completion decides what follows.
    pub(super) fn cancel_recv(&mut self, id: u32) {
        let c = &mut self.conns[id as usize];
        if c.recv_cancelling {
            return;
        }
        c.recv_cancelling = true;
        let tag = self.conn_tag(Kind::Conn, id);
        self.cancel(tag);
    }

    pub fn on_recv(
        &mut self,
        id: u32,
        gen: u32,
        res: i32,
        flags: u32,
        on_event: &mut dyn FnMut(Event<'_>),
    ) {
        let more = cqueue::more(flags);
        let Some(c) = self.conns.get_mut(id as usize) else {
            return;
        };
        let live = c.is_open(gen);
        let mut cancel = false;
        if res > 0 {
            if let Some(bid) = cqueue::buffer_select(flags) {
                let data = self.bufs.data(bid, res as usize);
                if live && c.target.is_some() {
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
                    cancel = more && !c.recv_cancelling;
                }
                self.bufs
                    .consume(bid, res as usize, cqueue::buffer_more(flags));
            }
        } else if res == 0 || (res != -libc::ENOBUFS && res != -libc::ECANCELED) {
            // End of stream, or the connection failed (reset...).
            if live && !c.eof {
                c.eof = true;
                if c.paused || c.target.is_some() {
                    c.held_eof = true;
                } else {
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
            let c = &mut self.conns[id as usize];
            c.recv_armed = false;
            c.recv_cancelling = false;
            let lent = c.is_open(gen) && c.target.is_some();
            let rearm = c.state == ConnState::Open && !c.paused && !c.eof && !lent && !stopping;
            let bounded = c.bounded;
            self.op_done(id);
            if rearm && bounded {
                // Armed at the next wait, after the worker had the bytes and
                // a chance to lend a body's memory for what follows them.
                self.rearm.push((id, gen));
            } else if rearm {
                self.arm_recv(id);
            } else if lent {
                self.after_multishot(id, on_event);
            }
        }
    }

    pub fn pause_recv(&mut self, id: u32) {
        let Some(c) = self.conns.get_mut(id as usize) else {
            return;
        };
        if c.state != ConnState::Open || c.paused {
            return;
        }
        // The receive is cancelled only if bytes arrive meanwhile (on_recv).
        c.paused = true;
    }

    pub fn resume_recv(&mut self, id: u32) {
        let Some(c) = self.conns.get_mut(id as usize) else {
            return;
        };
        if c.state != ConnState::Open || !c.paused {
            return;
        }
        c.paused = false;
        if c.target.is_some() {
            // What is held follows the loan when it comes back.
            return;
        }
        if !c.held.is_empty() || c.held_eof {
            self.pending.push(Pending::Held(id, c.gen));
        }
        // Still armed: never cancelled, or the cancel is on its way and its
        // last completion re-arms (the connection is no longer paused then).
        if !c.recv_armed && !c.direct && !c.eof {
            self.arm_recv(id);
        }
    }

    /// Hand over what arrived while paused.
    pub fn deliver_held(&mut self, id: u32, gen: u32, on_event: &mut dyn FnMut(Event<'_>)) -> bool {
        let Some(c) = self.conns.get_mut(id as usize) else {
            return false;
        };
        if !c.is_open(gen) || c.paused || c.target.is_some() {
            return false;
        }
        let held = std::mem::take(&mut c.held);
        let mut delivered = false;
        if !held.is_empty() {
            on_event(Event::Data {
                conn: ConnId(id),
                data: &held,
            });
            delivered = true;
        }
        if std::mem::take(&mut c.held_eof) {
            on_event(Event::Eof { conn: ConnId(id) });
            delivered = true;
        }
        delivered
    }
}

// ------------------------------------------------------------------ epoll

impl EpollEngine {
    /// Read what the socket has (up to the per-wakeup limit).
    pub fn on_readable(&mut self, id: u32, on_event: &mut dyn FnMut(Event<'_>)) -> bool {
        let Some(c) = self.conns.get_mut(id as usize) else {
            return false;
        };
        if !c.open || c.paused || c.eof || !c.readable {
            return false;
        }
        if c.target.is_some() {
            return self.read_into(id, on_event);
        }
        let mut delivered = false;
        for _ in 0..READS_PER_WAKEUP {
            match transport::recv(c.fd, &mut self.rbuf) {
                Ok(0) => {
                    c.readable = false;
                    c.eof = true;
                    on_event(Event::Eof { conn: ConnId(id) });
                    return true;
                }
                Ok(n) => {
                    on_event(Event::Data {
                        conn: ConnId(id),
                        data: &self.rbuf[..n],
                    });
                    delivered = true;
                    if n < self.rbuf.len() && !c.read_closed {
                        c.readable = false;
                        return true;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    c.readable = false;
                    return delivered;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => {
                    c.readable = false;
                    c.eof = true;
                    on_event(Event::Eof { conn: ConnId(id) });
                    return true;
                }
            }
        }
        // Still readable: continue at the next wait, after the others.
        self.ready.push((id, c.gen));
        delivered
    }

    /// Read the connections queued for reading.
    pub fn read_ready(&mut self, on_event: &mut dyn FnMut(Event<'_>)) -> bool {
        if self.ready.is_empty() {
            return false;
        }
        let ready = std::mem::take(&mut self.ready);
        let mut delivered = false;
        for &(id, gen) in &ready {
            if self.conns[id as usize].is_open(gen) {
                delivered |= self.on_readable(id, on_event);
            }
        }
        // Reuse the list's memory unless reading queued connections again.
        if self.ready.is_empty() {
            self.ready = ready;
            self.ready.clear();
        }
        delivered
    }

    pub fn pause_recv(&mut self, id: u32) {
        if let Some(c) = self.conns.get_mut(id as usize) {
            c.paused = true;
        }
    }

    /// Nothing to change: a read never takes more than the worker lends
    /// for, or the engine's own buffer.
    pub fn recv_bounded(&mut self, _id: u32) {}

    pub fn resume_recv(&mut self, id: u32) {
        let Some(c) = self.conns.get_mut(id as usize) else {
            return;
        };
        if c.open && c.paused {
            c.paused = false;
            if c.readable && !c.eof {
                self.ready.push((id, c.gen));
            }
        }
    }
}
