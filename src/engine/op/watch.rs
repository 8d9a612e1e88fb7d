//! Watching a pipe or eventfd the worker drains itself — both engines.
//!
//! * io_uring: a multishot POLLIN poll, re-armed if the kernel ends it.
//! * epoll: an edge-triggered readable registration.
//!
//! Both report `Readable { fd }` for each wakeup; the worker reads the fd
//! until it is empty, so the next write raises a new wakeup.

use std::io;
use std::os::fd::RawFd;

use io_uring::{cqueue, opcode, types};
use mio::unix::SourceFd;
use mio::{Interest, Token};

use crate::engine::epoll::EpollEngine;
use crate::engine::token::{self, Kind};
use crate::engine::uring::{UringEngine, Watch};
use crate::engine::Event;

// ---------------------------------------------------------------- io_uring

impl UringEngine {
    pub(in crate::engine) fn watch(&mut self, fd: RawFd) -> io::Result<()> {
        self.watches.push(Watch { fd, armed: false });
        self.arm_watch(self.watches.len() - 1);
        Ok(())
    }

    fn arm_watch(&mut self, w: usize) {
        if self.is_stopping() {
            return;
        }
        let watch = &mut self.watches[w];
        watch.armed = true;
        let sqe = opcode::PollAdd::new(types::Fd(watch.fd), libc::POLLIN as u32)
            .multi(true)
            .build()
            .user_data(token::encode(Kind::Watch, 0, w as u32));
        self.push(&sqe);
    }

    pub(in crate::engine) fn on_watch(
        &mut self,
        w: usize,
        res: i32,
        flags: u32,
        on_event: &mut dyn FnMut(Event<'_>),
    ) {
        let Some(watch) = self.watches.get_mut(w) else {
            return;
        };
        let fd = watch.fd;
        if !cqueue::more(flags) {
            watch.armed = false;
        }
        if res >= 0 {
            on_event(Event::Readable { fd });
            if !cqueue::more(flags) {
                self.arm_watch(w);
            }
        } else if res != -libc::ECANCELED {
            error!(
                "watching fd {fd} failed: {}",
                io::Error::from_raw_os_error(-res)
            );
        }
    }
}

// ------------------------------------------------------------------ epoll

impl EpollEngine {
    pub(in crate::engine) fn watch(&mut self, fd: RawFd) -> io::Result<()> {
        let tag = Token(token::encode(Kind::Watch, 0, self.watches.len() as u32) as usize);
        self.poll
            .registry()
            .register(&mut SourceFd(&fd), tag, Interest::READABLE)?;
        self.watches.push(fd);
        Ok(())
    }
}
