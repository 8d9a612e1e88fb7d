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

use crate::engine::epoll::{EpollEngine, Read};
use crate::engine::slab::Key;
use crate::engine::token::Kind;
use crate::engine::uring::{self, Eof, Loan, RecvOp, UringEngine};
use crate::engine::{ConnId, Event};
use crate::sys::transport;

/// The largest single receive into a lent buffer (the SQE length is 32 bits).
const MAX_DIRECT: usize = 1 << 30;

// ---------------------------------------------------------------- io_uring

/// Put bytes the multishot receive delivered after a loan into the lent
/// buffer, holding what does not fit.
pub(super) fn fill(c: &mut uring::Conn, data: &[u8]) {
    let Some(loan) = c.loan.as_mut() else {
        return;
    };
    let n = loan.room.min(data.len());
    // Within the capacity reserved for the loan: no reallocation.
    loan.buf.extend_from_slice(&data[..n]);
    loan.room -= n;
    c.held.extend_from_slice(&data[n..]);
}

impl UringEngine {
    pub(in crate::engine) fn recv_into(
        &mut self,
        id: u32,
        buf: Vec<u8>,
        max: usize,
    ) -> Result<(), Vec<u8>> {
        let stopping = self.is_stopping();
        let Some(c) = self.worker_conn(id) else {
            return Err(buf);
        };
        let room = max.min(buf.capacity() - buf.len()).min(MAX_DIRECT);
        if c.eof.seen()
            || c.paused
            || c.loan.is_some()
            || !c.held.is_empty()
            || room == 0
            || stopping
        {
            return Err(buf);
        }
        c.loan = Some(Loan {
            start: buf.len(),
            room,
            buf,
        });
        if c.recv.armed() {
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
        let c = &mut self.conns[id];
        let Some(loan) = c.loan.as_mut() else {
            return;
        };
        let spare = loan.buf.spare_capacity_mut();
        let len = loan.room.min(spare.len());
        let ptr = spare.as_mut_ptr().cast::<u8>();
        c.recv.lend();
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
        let c = &self.conns[id];
        let got = c.loan.as_ref().map_or(0, |l| l.buf.len() - l.start);
        if got > 0 || c.eof.seen() || !c.held.is_empty() {
            self.give_back(id, on_event);
        } else {
            self.submit_recv_into(id);
        }
    }

    pub(in crate::engine) fn on_recv_into(
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
        c.recv.returned();
        if !live {
            c.loan = None;
            self.op_done(id);
            return;
        }
        if res == -libc::EINTR || res == -libc::EAGAIN {
            self.op_done(id);
            self.submit_recv_into(id);
            return;
        }
        if res > 0 {
            if let Some(loan) = c.loan.as_mut() {
                let n = (res as usize).min(loan.room);
                // SAFETY: the kernel wrote `res` bytes (at most the length
                // submitted, `room`) into the spare capacity.
                unsafe { loan.buf.set_len(loan.buf.len() + n) };
                loan.room -= n;
            }
        } else if !c.eof.seen() {
            // End of stream, or the connection failed.
            c.eof = Eof::Held;
        }
        self.op_done(id);
        self.give_back(id, on_event);
    }

    /// `Filled`, then what the multishot receive held, then `Eof` if it came.
    fn give_back(&mut self, id: u32, on_event: &mut dyn FnMut(Event<'_>)) {
        let c = &mut self.conns[id];
        let Some(loan) = c.loan.take() else {
            return;
        };
        let conn = ConnId(id);
        on_event(Event::Filled {
            conn,
            buf: loan.buf,
        });
        if !c.held.is_empty() {
            on_event(Event::Data {
                conn,
                data: &c.held,
            });
            c.held.clear();
        }
        if c.eof.take_held() {
            on_event(Event::Eof { conn });
        }
        if !c.eof.seen() {
            let key = self.conns.key(id);
            self.rearm.push(key);
        }
    }

    /// Arm the receive (multishot or bounded) of connections whose loan
    /// came back and was not renewed, or whose bounded receive ended.
    pub(in crate::engine) fn rearm_waiting(&mut self) {
        if self.rearm.is_empty() {
            return;
        }
        let mut rearm = std::mem::take(&mut self.rearm);
        for &key in &rearm {
            let stopping = self.is_stopping();
            let Some(c) = self.open_conn(key) else {
                continue;
            };
            if c.loan.is_none() && c.recv == RecvOp::Idle && !c.paused && !c.eof.seen() && !stopping
            {
                self.arm_recv(key.index);
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
    pub(in crate::engine) fn recv_into(
        &mut self,
        id: u32,
        buf: Vec<u8>,
        max: usize,
    ) -> Result<(), Vec<u8>> {
        let Some(c) = self.worker_conn(id) else {
            return Err(buf);
        };
        let room = max.min(buf.capacity() - buf.len());
        if c.read.ended() || c.paused || c.target.is_some() || room == 0 {
            return Err(buf);
        }
        c.target = Some((buf, room));
        if c.read.ready() {
            let key = self.conns.key(id);
            self.ready.push(key);
        }
        Ok(())
    }

    /// One read into the lent buffer (`on_readable` with a loan out).
    pub(super) fn read_into(&mut self, key: Key, on_event: &mut dyn FnMut(Event<'_>)) -> bool {
        let c = &mut self.conns[key.index];
        let Some((mut buf, room)) = c.target.take() else {
            return false;
        };
        let spare = &mut buf.spare_capacity_mut()[..room];
        let read = transport::recv_uninit(c.fd, spare);
        let conn = ConnId(key.index);
        match read {
            Ok(n) if n > 0 => {
                // SAFETY: recv initialised the first `n` bytes of the spare
                // capacity.
                unsafe { buf.set_len(buf.len() + n) };
                if n < room && !c.read.to_end() {
                    c.read.drained();
                } else {
                    // Maybe more (the next request): read it the usual way.
                    self.ready.push(key);
                }
                on_event(Event::Filled { conn, buf });
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                c.read.drained();
                c.target = Some((buf, room));
                false
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {
                c.target = Some((buf, room));
                self.ready.push(key);
                false
            }
            // End of stream, or the connection failed.
            _ => {
                c.read = Read::Ended;
                on_event(Event::Filled { conn, buf });
                on_event(Event::Eof { conn });
                true
            }
        }
    }
}
