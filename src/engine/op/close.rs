//! Closing a connection — both engines.
//!
//! `close` is an abort: output still queued gets one best-effort write and
//! is otherwise dropped (a worker that wants its response delivered waits
//! for `Sent`, or uses `shutdown_write`). No event for the connection is
//! delivered after `close` returns.
//!
//! * io_uring: cancel the receive and any send in flight, then `Close`; the
//!   slot (and the id) is freed when the last of those operations completes
//!   (the ownership rule in `uring/mod.rs`).
//! * epoll: close the fd (closing removes it from epoll) and free the slot
//!   at once; queued readiness for the old id is recognised by its
//!   generation and dropped.

use std::io::IoSlice;

use io_uring::opcode;

use crate::engine::epoll::EpollEngine;
use crate::engine::queue::MAX_IOV;
use crate::engine::token::Kind;
use crate::engine::uring::{ConnState, UringEngine};
use crate::sys::transport;

// ---------------------------------------------------------------- io_uring

impl UringEngine {
    pub fn raw_fd(&self, id: u32) -> Option<std::os::fd::RawFd> {
        self.conns
            .get(id as usize)
            .filter(|c| c.state == ConnState::Open && c.fd >= 0)
            .map(|c| c.fd)
    }

    pub fn close(&mut self, id: u32) {
        let Some(c) = self.conns.get(id as usize) else {
            return;
        };
        if c.state != ConnState::Open {
            return;
        }
        let (recv_armed, failed) = (c.recv_armed, c.failed);
        if !c.sending && c.out.front_is_bytes() && !failed {
            // One attempt at what is queued; the cancel below stops it if the
            // socket cannot take it right away.
            self.submit_send(id);
        }
        let c = &mut self.conns[id as usize];
        c.state = ConnState::Closing;
        c.dirty = false;
        let sending = c.sending;
        if recv_armed {
            self.cancel(self.conn_tag(Kind::Conn, id));
        }
        if self.conns[id as usize].direct {
            self.cancel(self.conn_tag(Kind::RecvInto, id));
        }
        if sending {
            self.cancel(self.conn_tag(Kind::Send, id));
        }
        // An operation still in flight (a receive being cancelled, a send)
        // names the descriptor by number: closing it now would
        // let accept hand the number to a new connection, and that
        // operation could then act on the new one. So the Close waits.
        if self.conns[id as usize].ops == 0 {
            self.submit_close(id);
        } else {
            self.conns[id as usize].close_pending = true;
        }
    }

    pub fn submit_close(&mut self, id: u32) {
        let tag = self.conn_tag(Kind::Close, id);
        let fd = self.fd_of(id);
        let c = &mut self.conns[id as usize];
        c.close_pending = false;
        c.ops += 1;
        self.push(&opcode::Close::new(fd).build().user_data(tag));
    }
}

// ------------------------------------------------------------------ epoll

impl EpollEngine {
    pub fn raw_fd(&self, id: u32) -> Option<std::os::fd::RawFd> {
        self.conns
            .get(id as usize)
            .filter(|c| c.open && c.fd >= 0)
            .map(|c| c.fd)
    }

    pub fn close(&mut self, id: u32) {
        let Some(c) = self.conns.get_mut(id as usize) else {
            return;
        };
        if !c.open {
            return;
        }
        if !c.blocked && !c.failed && c.out.front_is_bytes() {
            let mut slices = [IoSlice::new(&[]); MAX_IOV];
            let n = c.out.slices(&mut slices);
            let _ = transport::send_vectored(c.fd, &slices[..n]);
        }
        self.release_conn(id);
    }
}
