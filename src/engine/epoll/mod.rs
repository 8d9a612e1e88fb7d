//! The readiness engine on mio (epoll on Linux, kqueue elsewhere), for
//! where io_uring is unavailable.
//!
//! Every socket is registered once, edge-triggered, for both reading and
//! writing, and never re-registered: interest is not toggled per request
//! (an `epoll_ctl` per request is measurable). A connection remembers the
//! readiness it has not used up (`Read::Ready` while paused, `blocked` after a
//! short write) and acts on it when allowed.
//!
//! The per-operation code lives next to its io_uring counterpart in
//! `engine/op/`; this file holds the poller, the connection slots and the
//! wait loop. Imports only `sys` and `log`.

use std::io;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

mod conn;

pub(in crate::engine) use self::conn::{Conn, Read};
use crate::engine::queue::Spare;
use crate::engine::slab::{Key, Slab};
use crate::engine::token::{self, Kind};
use crate::engine::{EngineConfig, Event};

/// Readiness events fetched per `epoll_wait`.
const EVENTS_CAPACITY: usize = 1024;
/// The one receive buffer every read goes through.
pub(in crate::engine) const READ_BUFFER_SIZE: usize = 64 * 1024;

pub(in crate::engine) struct Listener {
    pub(in crate::engine) fd: RawFd,
    /// TCP_NODELAY is set on each accepted TCP socket, not inherited (see
    /// `transport::nodelay_inherited`).
    pub(in crate::engine) nodelay_each: bool,
    pub(in crate::engine) registered: bool,
    /// After a resource error (EMFILE...): try again no sooner than this.
    pub(in crate::engine) retry_at: Option<Instant>,
}

pub(in crate::engine) struct EpollEngine {
    pub(in crate::engine) poll: Poll,
    events: Events,
    /// The connection slots; a slot is freed as its descriptor is closed.
    pub(in crate::engine) conns: Slab<Conn>,
    pub(in crate::engine) listeners: Vec<Listener>,
    pub(in crate::engine) accept_paused: bool,
    /// Accepting stopped for good (`close_accept`).
    pub(in crate::engine) accept_closed: bool,
    /// Rest after accept errors (EMFILE...).
    pub(in crate::engine) accept_backoff: crate::engine::backoff::AcceptBackoff,
    /// Connections `close_accept` took from the listeners' queues, for the
    /// next `wait` to report: (listener, id, peer).
    pub(in crate::engine) late_accepts: Vec<(usize, u32, Option<std::net::SocketAddr>)>,
    pub(in crate::engine) watches: Vec<RawFd>,
    /// Connections with output to write at the next wait: (id, gen).
    pub(in crate::engine) dirty: Vec<Key>,
    /// Connections to read at the next wait (resumed, or cut short by the
    /// per-wakeup read limit).
    pub(in crate::engine) ready: Vec<Key>,
    pub(in crate::engine) rbuf: Box<[u8]>,
    /// The previous `wait` polled the kernel (see `wait`).
    polled_last: bool,
    /// What `deliver` found this turn, for the `wait` that follows it.
    early: Option<bool>,
    /// Written output buffers, for the next responses.
    pub(in crate::engine) spare: Spare,
}

impl EpollEngine {
    pub(in crate::engine) fn new(
        listeners: &[RawFd],
        config: &EngineConfig,
    ) -> io::Result<EpollEngine> {
        let slots = config.max_connections.min(1 << 16);
        let mut engine = EpollEngine {
            poll: Poll::new()?,
            events: Events::with_capacity(EVENTS_CAPACITY),
            conns: Slab::with_capacity(slots),
            listeners: listeners
                .iter()
                .map(|&fd| Listener {
                    fd,
                    nodelay_each: !crate::sys::transport::nodelay_inherited(fd),
                    registered: false,
                    retry_at: None,
                })
                .collect(),
            accept_paused: false,
            accept_closed: false,
            accept_backoff: Default::default(),
            late_accepts: Vec::new(),
            watches: Vec::new(),
            dirty: Vec::with_capacity(64),
            ready: Vec::with_capacity(64),
            rbuf: vec![0; READ_BUFFER_SIZE].into_boxed_slice(),
            polled_last: false,
            early: None,
            spare: Spare::default(),
        };
        for l in 0..engine.listeners.len() {
            engine.register_listener(l)?;
        }
        Ok(engine)
    }

    pub(in crate::engine) fn register_listener(&mut self, l: usize) -> io::Result<()> {
        let listener = &mut self.listeners[l];
        if !listener.registered {
            let tag = Token(token::encode(Kind::Accept, 0, l as u32) as usize);
            self.poll
                .registry()
                .register(&mut SourceFd(&listener.fd), tag, Interest::READABLE)?;
            listener.registered = true;
        }
        Ok(())
    }

    /// Take a free slot for `fd` and register it (both directions, once).
    pub(in crate::engine) fn alloc_conn(&mut self, fd: RawFd) -> io::Result<u32> {
        let (key, c) = self.conns.insert(Conn::new);
        c.reset(fd);
        let tag = Token(token::encode(Kind::Conn, key.gen, key.index) as usize);
        if let Err(e) = self.poll.registry().register(
            &mut SourceFd(&fd),
            tag,
            Interest::READABLE | Interest::WRITABLE,
        ) {
            self.release_conn(key.index);
            return Err(e);
        }
        Ok(key.index)
    }

    /// Close the fd (which also removes it from epoll) and free the slot.
    pub(in crate::engine) fn release_conn(&mut self, id: u32) {
        let Some(c) = self.conns.remove(id) else {
            return;
        };
        // SAFETY: the slot owned its descriptor until `remove` freed it
        // just now; it forgets it right here.
        unsafe { crate::sys::transport::close(c.fd) };
        c.fd = -1;
        c.out.clear();
        c.target = None;
    }

    /// The connection in slot `id`, whichever generation: the worker
    /// names connections by slot only (`ConnId`), and uses an id only
    /// until it closes it.
    pub(in crate::engine) fn worker_conn(&mut self, id: u32) -> Option<&mut Conn> {
        self.conns.at_mut(id)
    }

    /// Late accepts, queued output and connections left with unread
    /// bytes: what a turn serves without asking the kernel for readiness.
    fn serve_known(&mut self, on_event: &mut dyn FnMut(Event<'_>)) -> bool {
        let mut delivered = self.deliver_late_accepts(on_event);
        delivered |= self.flush_dirty(on_event);
        delivered |= self.read_ready(on_event);
        delivered
    }

    /// The part of a turn that never sleeps (see `Engine::deliver`):
    /// `true` when it delivered events and this turn skips the poll.
    pub(in crate::engine) fn deliver(&mut self, on_event: &mut dyn FnMut(Event<'_>)) -> bool {
        let delivered = self.serve_known(on_event);
        if delivered && self.polled_last && !self.backed_off() {
            self.polled_last = false;
            self.early = None;
            return true;
        }
        self.early = Some(delivered);
        false
    }

    pub(in crate::engine) fn wait(
        &mut self,
        timeout: Option<Duration>,
        on_event: &mut dyn FnMut(Event<'_>),
    ) -> io::Result<()> {
        let mut delivered = match self.early.take() {
            Some(delivered) => delivered,
            None => self.serve_known(on_event),
        };
        let (timeout, retried) = self.retry_backed_off(timeout, on_event);
        delivered |= retried;
        // Having delivered events already (usually `Sent` for what the last
        // round queued), skip the zero-timeout poll, which would mostly find
        // nothing: the next wait polls. Every other wait at least polls, so
        // a worker that queues output on every `Sent` cannot starve reads.
        if delivered && self.polled_last {
            self.polled_last = false;
            return Ok(());
        }
        self.polled_last = true;
        let timeout = if delivered || !self.ready.is_empty() || !self.dirty.is_empty() {
            Some(Duration::ZERO)
        } else {
            timeout
        };
        let mut events = std::mem::replace(&mut self.events, Events::with_capacity(0));
        let polled = self.poll.poll(&mut events, timeout);
        if let Err(e) = polled {
            self.events = events;
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(())
            } else {
                Err(e)
            };
        }
        for event in events.iter() {
            let Some((kind, gen, index)) = token::decode(event.token().0 as u64) else {
                continue;
            };
            match kind {
                Kind::Accept => {
                    self.on_acceptable(index as usize, on_event);
                }
                Kind::Watch => {
                    if let Some(&fd) = self.watches.get(index as usize) {
                        on_event(Event::Readable { fd });
                    }
                }
                Kind::Conn => {
                    let key = Key { index, gen };
                    let Some(c) = self.conns.get_mut(key) else {
                        continue;
                    };
                    if event.is_readable() || event.is_read_closed() || event.is_error() {
                        c.read.edge(event.is_read_closed() || event.is_error());
                        self.on_readable(key, on_event);
                    }
                    if event.is_writable() || event.is_write_closed() || event.is_error() {
                        self.on_writable(key, on_event);
                    }
                }
                Kind::Send | Kind::Close | Kind::Cancel | Kind::RecvInto => {}
            }
        }
        self.events = events;
        Ok(())
    }
}

impl Drop for EpollEngine {
    fn drop(&mut self) {
        let open: Vec<u32> = self.conns.indices().collect();
        for id in open {
            self.release_conn(id);
        }
    }
}
