//! Receiving straight into a buffer the worker lends — both engines.
//!
//! For a large request body of known length the worker lends the body's
//! memory: the next bytes go into its spare capacity (at most `max`)
//! instead of through the engine's buffers and a copy, and `Filled` hands
//! it back. Bytes always reach the worker in the order they arrived.
//!
//! * io_uring: the multishot receive is cancelled first. Bytes it still
//!   delivers go into the buffer (those past `max` are held and follow
//!   `Filled` as `Data`); if it delivered none, one plain receive into the
//!   buffer follows. After `Filled` the connection's receive is re-armed at
//!   the next `wait`, unless the worker lent a buffer again meanwhile.
//! * epoll: the next read of a readable edge goes into the buffer.
//!
//! Both: an end of stream or an error returns the buffer in `Filled`
//! (nothing added), then `Eof`. A connection closed meanwhile drops the
//! buffer once the kernel is done with it.

use io_uring::opcode;

use crate::engine::epoll::EpollEngine;
use crate::engine::token::Kind;
use crate::engine::uring::{self, ConnState, UringEngine};
use crate::engine::{ConnId, Event};
use crate::sys::transport;

/// The largest single receive into a lent buffer (the SQE length is 32 bits).
const MAX_DIRECT: usize = 1 << 30;

// ---------------------------------------------------------------- io_uring

/// Put bytes the multishot receive delivered after a loan into the lent
/// buffer, holding what does not fit.
pub(super) fn fill(c: &mut uring::Conn, data: &[u8]) {
    let Some(buf) = c.target.as_mut() else {
        return;
    };
    let n = c.target_room.min(data.len());
    // Within the capacity reserved for the loan: no reallocation.
    buf.extend_from_slice(&data[..n]);
    c.target_room -= n;
    c.held.extend_from_slice(&data[n..]);
}

impl UringEngine {
    pub fn recv_into(&mut self, id: u32, buf: Vec<u8>, max: usize) -> Result<(), Vec<u8>> {
        let stopping = self.is_stopping();
        let Some(c) = self.conns.get_mut(id as usize) else {
            return Err(buf);
        };
        let room = max.min(buf.capacity() - buf.len()).min(MAX_DIRECT);
        if c.state != ConnState::Open
            || c.eof
            || c.paused
            || c.target.is_some()
            || !c.held.is_empty()
            || c.held_eof
            || room == 0
            || stopping
        {
            return Err(buf);
        }
        c.target_start = buf.len();
        c.target_room = room;
        c.target = Some(buf);
        if c.recv_armed {
            // Its last completion receives into the buffer or hands it back.
            self.cancel_recv(id);
        } else {
            self.submit_recv_into(id);
        }
        Ok(())
    }

    fn submit_recv_into(&mut self, id: u32) {
        let tag = self.conn_tag(Kind::RecvInto, id);
        let fd = self.fd_of(id);
        let c = &mut self.conns[id as usize];
        let Some(buf) = c.target.as_mut() else {
            return;
        };
        let spare = buf.spare_capacity_mut();
        let len = c.target_room.min(spare.len());
        let ptr = spare.as_mut_ptr().cast::<u8>();
        c.direct = true;
        c.ops += 1;
        // The buffer stays in the slot, untouched, until the completion;
        // the slot is not reused while an operation is outstanding.
        let sqe = opcode::Recv::new(fd, ptr, len as u32)
            .build()
            .user_data(tag);
        self.push(&sqe);
    }

    /// The multishot receive ended while a buffer is lent: hand it back if
    /// bytes (or the end) came that way, else receive into it.
    pub(super) fn after_multishot(&mut self, id: u32, on_event: &mut dyn FnMut(Event<'_>)) {
        let c = &self.conns[id as usize];
        let got = c.target.as_ref().map_or(0, |b| b.len() - c.target_start);
        if got > 0 || c.eof || !c.held.is_empty() {
            self.give_back(id, on_event);
        } else {
            self.submit_recv_into(id);
        }
    }

    pub fn on_recv_into(
        &mut self,
        id: u32,
        gen: u32,
        res: i32,
        on_event: &mut dyn FnMut(Event<'_>),
    ) {
        let Some(c) = self.conns.get_mut(id as usize) else {
            return;
        };
        c.direct = false;
        if !c.is_open(gen) {
            c.target = None;
            self.op_done(id);
            return;
        }
        if res == -libc::EINTR || res == -libc::EAGAIN {
            self.op_done(id);
            self.submit_recv_into(id);
            return;
        }
        if res > 0 {
            if let Some(buf) = c.target.as_mut() {
                let n = (res as usize).min(c.target_room);
                // SAFETY: the kernel wrote `res` bytes (at most the length
                // submitted, `target_room`) into the spare capacity.
                unsafe { buf.set_len(buf.len() + n) };
                c.target_room -= n;
            }
        } else if !c.eof {
            // End of stream, or the connection failed.
            c.eof = true;
            c.held_eof = true;
        }
        self.op_done(id);
        self.give_back(id, on_event);
    }

    /// `Filled`, then what the multishot receive held, then `Eof` if it came.
    fn give_back(&mut self, id: u32, on_event: &mut dyn FnMut(Event<'_>)) {
        let c = &mut self.conns[id as usize];
        let Some(buf) = c.target.take() else {
            return;
        };
        let conn = ConnId(id);
        on_event(Event::Filled { conn, buf });
        if !c.held.is_empty() {
            on_event(Event::Data {
                conn,
                data: &c.held,
            });
            c.held.clear();
        }
        if std::mem::take(&mut c.held_eof) {
            on_event(Event::Eof { conn });
        }
        if !c.eof {
            let gen = c.gen;
            self.rearm.push((id, gen));
        }
    }

    /// Arm the receive (multishot or bounded) of connections whose loan
    /// came back and was not renewed, or whose bounded receive ended.
    pub fn rearm_waiting(&mut self) {
        if self.rearm.is_empty() {
            return;
        }
        let mut rearm = std::mem::take(&mut self.rearm);
        for &(id, gen) in &rearm {
            let c = &self.conns[id as usize];
            if c.is_open(gen)
                && c.target.is_none()
                && !c.direct
                && !c.recv_armed
                && !c.paused
                && !c.eof
                && !self.is_stopping()
            {
                self.arm_recv(id);
            }
        }
        rearm.clear();
        if self.rearm.is_empty() {
            self.rearm = rearm;
        }
    }
}

// ------------------------------------------------------------------ epoll

impl EpollEngine {
    pub fn recv_into(&mut self, id: u32, buf: Vec<u8>, max: usize) -> Result<(), Vec<u8>> {
        let Some(c) = self.conns.get_mut(id as usize) else {
            return Err(buf);
        };
        let room = max.min(buf.capacity() - buf.len());
        if !c.open || c.eof || c.paused || c.target.is_some() || room == 0 {
            return Err(buf);
        }
        c.target = Some((buf, room));
        if c.readable {
            self.ready.push((id, c.gen));
        }
        Ok(())
    }

    /// One read into the lent buffer (`on_readable` with a loan out).
    pub(super) fn read_into(&mut self, id: u32, on_event: &mut dyn FnMut(Event<'_>)) -> bool {
        let c = &mut self.conns[id as usize];
        let Some((mut buf, room)) = c.target.take() else {
            return false;
        };
        let spare = &mut buf.spare_capacity_mut()[..room];
        let read = transport::recv_uninit(c.fd, spare);
        let conn = ConnId(id);
        match read {
            Ok(n) if n > 0 => {
                // SAFETY: recv initialised the first `n` bytes of the spare
                // capacity.
                unsafe { buf.set_len(buf.len() + n) };
                if n < room && !c.read_closed {
                    c.readable = false;
                } else {
                    // Maybe more (the next request): read it the usual way.
                    self.ready.push((id, c.gen));
                }
                on_event(Event::Filled { conn, buf });
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                c.readable = false;
                c.target = Some((buf, room));
                false
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {
                c.target = Some((buf, room));
                self.ready.push((id, c.gen));
                false
            }
            // End of stream, or the connection failed.
            _ => {
                c.readable = false;
                c.eof = true;
                on_event(Event::Filled { conn, buf });
                on_event(Event::Eof { conn });
                true
            }
        }
    }
}
