//! The readiness engine on mio (epoll on Linux, kqueue elsewhere), for
//! where io_uring is unavailable.
//!
//! Every socket is registered once, edge-triggered, for both reading and
//! writing, and never re-registered: interest is not toggled per request
//! (an `epoll_ctl` per request is measurable). A connection remembers the
//! readiness it has not used up (`readable` while paused, `blocked` after a
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

use crate::engine::queue::{SendQueue, Spare};
use crate::engine::token::{self, Kind};
use crate::engine::{EngineConfig, Event};

/// Readiness events fetched per `epoll_wait`.
const EVENTS_CAPACITY: usize = 1024;
/// The one receive buffer every read goes through.
pub const READ_BUFFER_SIZE: usize = 64 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Shut {
    #[default]
    No,
    Requested,
    Done,
}

#[derive(Default)]
pub struct Conn {
    pub fd: RawFd,
    pub gen: u32,
    pub open: bool,
    /// The socket may have unread bytes (or an end of stream) we have not
    /// read yet: set by a readable edge, cleared when a read drains it.
    pub readable: bool,
    /// The last edge reported the peer's end of stream or an error: read
    /// until the read says so, even after a short read.
    pub read_closed: bool,
    pub paused: bool,
    pub eof: bool,
    pub out: SendQueue,
    /// A write came up short: wait for the writable edge.
    pub blocked: bool,
    pub shut: Shut,
    pub failed: bool,
    /// In the dirty list (output to write at the next wait).
    pub dirty: bool,
    /// A buffer lent with `recv_into`, and how many bytes it may take.
    pub target: Option<(Vec<u8>, usize)>,
}

impl Conn {
    pub fn is_open(&self, gen: u32) -> bool {
        self.open && self.gen == gen
    }
}

pub struct Listener {
    pub fd: RawFd,
    /// TCP_NODELAY is set on each accepted TCP socket, not inherited (see
    /// `transport::nodelay_inherited`).
    pub nodelay_each: bool,
    pub registered: bool,
    /// After a resource error (EMFILE...): try again no sooner than this.
    pub retry_at: Option<Instant>,
}

pub struct EpollEngine {
    pub poll: Poll,
    events: Events,
    pub conns: Vec<Conn>,
    pub free: Vec<u32>,
    pub listeners: Vec<Listener>,
    pub accept_paused: bool,
    /// Accepting stopped for good (`close_accept`).
    pub accept_closed: bool,
    /// Rest after accept errors (EMFILE...).
    pub accept_backoff: crate::engine::backoff::AcceptBackoff,
    /// Connections `close_accept` took from the listeners' queues, for the
    /// next `wait` to report: (listener, id, peer).
    pub late_accepts: Vec<(usize, u32, Option<std::net::SocketAddr>)>,
    pub watches: Vec<RawFd>,
    /// Connections with output to write at the next wait: (id, gen).
    pub dirty: Vec<(u32, u32)>,
    /// Connections to read at the next wait (resumed, or cut short by the
    /// per-wakeup read limit): (id, gen).
    pub ready: Vec<(u32, u32)>,
    pub rbuf: Box<[u8]>,
    /// The previous `wait` polled the kernel (see `wait`).
    polled_last: bool,
    /// Written output buffers, for the next responses.
    pub spare: Spare,
}

impl EpollEngine {
    pub fn new(listeners: &[RawFd], config: &EngineConfig) -> io::Result<EpollEngine> {
        let slots = config.max_connections.min(1 << 16);
        let mut engine = EpollEngine {
            poll: Poll::new()?,
            events: Events::with_capacity(EVENTS_CAPACITY),
            conns: Vec::with_capacity(slots),
            free: Vec::with_capacity(slots),
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
            spare: Spare::default(),
        };
        for l in 0..engine.listeners.len() {
            engine.register_listener(l)?;
        }
        Ok(engine)
    }

    pub fn register_listener(&mut self, l: usize) -> io::Result<()> {
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
    pub fn alloc_conn(&mut self, fd: RawFd) -> io::Result<u32> {
        let id = match self.free.pop() {
            Some(id) => id,
            None => {
                self.conns.push(Conn::default());
                (self.conns.len() - 1) as u32
            }
        };
        let c = &mut self.conns[id as usize];
        c.fd = fd;
        c.open = true;
        c.readable = false;
        c.read_closed = false;
        c.paused = false;
        c.eof = false;
        c.blocked = false;
        c.shut = Shut::No;
        c.failed = false;
        c.dirty = false;
        c.target = None;
        let tag = Token(token::encode(Kind::Conn, c.gen, id) as usize);
        if let Err(e) = self.poll.registry().register(
            &mut SourceFd(&fd),
            tag,
            Interest::READABLE | Interest::WRITABLE,
        ) {
            self.release_conn(id);
            return Err(e);
        }
        Ok(id)
    }

    /// Close the fd (which also removes it from epoll) and free the slot.
    pub fn release_conn(&mut self, id: u32) {
        let c = &mut self.conns[id as usize];
        // SAFETY: the slot owns its descriptor and forgets it right here.
        unsafe { crate::sys::transport::close(c.fd) };
        c.fd = -1;
        c.open = false;
        c.gen = token::next_gen(c.gen);
        c.out.clear();
        c.target = None;
        self.free.push(id);
    }

    pub fn wait(
        &mut self,
        timeout: Option<Duration>,
        on_event: &mut dyn FnMut(Event<'_>),
    ) -> io::Result<()> {
        let mut delivered = self.deliver_late_accepts(on_event);
        delivered |= self.flush_dirty(on_event);
        delivered |= self.read_ready(on_event);
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
                    let Some(c) = self.conns.get_mut(index as usize) else {
                        continue;
                    };
                    if !c.is_open(gen) {
                        continue;
                    }
                    if event.is_readable() || event.is_read_closed() || event.is_error() {
                        c.readable = true;
                        c.read_closed |= event.is_read_closed() || event.is_error();
                        self.on_readable(index, on_event);
                    }
                    if event.is_writable() || event.is_write_closed() || event.is_error() {
                        self.on_writable(index, gen, on_event);
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
        for c in &mut self.conns {
            if c.open {
                // SAFETY: an open slot owns its descriptor; it is marked closed here.
                unsafe { crate::sys::transport::close(c.fd) };
                c.open = false;
            }
        }
    }
}
