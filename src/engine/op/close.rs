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
use crate::engine::uring::{Life, RecvOp, UringEngine};
use crate::sys::transport;

// ---------------------------------------------------------------- io_uring

impl UringEngine {
    pub(in crate::engine) fn raw_fd(&self, id: u32) -> Option<std::os::fd::RawFd> {
        self.conns
            .at(id)
            .filter(|c| c.is_open() && c.fd >= 0)
            .map(|c| c.fd)
    }

    pub(in crate::engine) fn close(&mut self, id: u32) {
        let Some(c) = self.worker_conn(id) else {
            return;
        };
        if !c.send.busy() && c.out.front_is_bytes() && !c.writing.failed() {
            // One attempt at what is queued; the cancel below stops it if the
            // socket cannot take it right away.
            self.submit_send(id);
        }
        let c = &mut self.conns[id];
        c.life = Life::CloseWaits;
        c.dirty = false;
        let (recv, sending) = (c.recv, c.send.busy());
        if recv.armed() {
            self.cancel(self.conn_tag(Kind::Conn, id));
        }
        if recv == RecvOp::Into {
            self.cancel(self.conn_tag(Kind::RecvInto, id));
        }
        if sending {
            self.cancel(self.conn_tag(Kind::Send, id));
        }
        // An operation still in flight (a receive being cancelled, a send)
        // names the descriptor by number: closing it now would
        // let accept hand the number to a new connection, and that
        // operation could then act on the new one. So the Close waits
        // for the last of them (`op_done`).
        if self.conns[id].ops == 0 {
            self.submit_close(id);
        }
    }

    pub(in crate::engine) fn submit_close(&mut self, id: u32) {
        let tag = self.conn_tag(Kind::Close, id);
        let fd = self.fd_of(id);
        let c = &mut self.conns[id];
        c.life = Life::Closing;
        c.ops += 1;
        self.push(&opcode::Close::new(fd).build().user_data(tag));
    }
}

// ------------------------------------------------------------------ epoll

impl EpollEngine {
    pub(in crate::engine) fn raw_fd(&self, id: u32) -> Option<std::os::fd::RawFd> {
        self.conns.at(id).filter(|c| c.fd >= 0).map(|c| c.fd)
    }

    pub(in crate::engine) fn close(&mut self, id: u32) {
        let Some(c) = self.worker_conn(id) else {
            return;
        };
        if !c.blocked && !c.writing.failed() && c.out.front_is_bytes() {
            let mut slices = [IoSlice::new(&[]); MAX_IOV];
            let n = c.out.slices(&mut slices);
            let _ = transport::send_vectored(c.fd, &slices[..n]);
        }
        self.release_conn(id);
    }
}
