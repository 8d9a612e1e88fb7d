//! Recording engine events: runs without the interpreter lock, so it only
//! moves bytes into each connection's parser and sets flags.

use std::net::SocketAddr;
use std::time::Instant;

use super::conn::Connection;
use super::{Phase, State};
use crate::engine::{ConnId, Event};
use crate::http::{ConnInfo, PeerTrust};

impl State {
    /// Record one engine event. Runs without the interpreter lock: it only
    /// moves bytes and flags; all answering happens in `Worker::process`.
    pub(super) fn on_event(&mut self, ev: Event<'_>, now: Instant) {
        match ev {
            Event::Accepted {
                listener,
                conn,
                peer,
            } => {
                let trust = self.trust_for(peer);
                let i = conn.index();
                if self.conns.len() <= i {
                    self.conns.resize_with(i + 1, || None);
                }
                let mut info = self
                    .listeners
                    .get(listener)
                    .cloned()
                    .unwrap_or_else(|| ConnInfo {
                        peer: None,
                        server_name: "".into(),
                        server_port: "".into(),
                        tls: false,
                    });
                info.peer = peer;
                // Built in its slot: a connection is large, and each move copies it.
                let http = self.parsers.conn(self.http.clone(), trust);
                let c = self.conns[i].insert(Connection::new(http, info, now));
                if let Some(cfg) = &self.tls {
                    match crate::tls::TlsConn::new(cfg) {
                        Ok(t) => c.tls = Some(Box::new(t)),
                        Err(e) => {
                            crate::error!("Cannot start TLS for a connection: {e}");
                            c.broken = true;
                        }
                    }
                }
                let broken = c.broken;
                self.open += 1;
                if broken {
                    self.mark_ready(conn);
                }
            }
            Event::Data { conn, data } => {
                let plain = &mut self.plain;
                if let Some(Some(c)) = self.conns.get_mut(conn.index()) {
                    c.last_active = now;
                    if c.request_started.is_none() {
                        c.request_started = Some(now);
                    }
                    if matches!(c.phase, Phase::Lingering { .. }) {
                        // Draining before close: the bytes are not wanted.
                    } else if let Some(tls) = &mut c.tls {
                        plain.clear();
                        match tls.receive(data, plain) {
                            Ok(()) => {
                                c.feed(plain, now);
                                if c.tls.as_ref().is_some_and(|t| t.peer_closed()) {
                                    c.eof = true;
                                    c.http.feed_eof();
                                }
                            }
                            Err(e) => {
                                // The alert (if any) goes out with the next
                                // flush; then the connection closes.
                                if e.is_peer_fault() {
                                    crate::debug!("TLS error from ip={}: {e}", c.peer_ip());
                                } else {
                                    crate::warn!("TLS error from ip={}: {e}", c.peer_ip());
                                }
                                c.phase = Phase::CloseAfterSend;
                            }
                        }
                    } else {
                        c.feed(data, now);
                    }
                    self.mark_ready(conn);
                }
            }
            Event::Filled { conn, buf } => {
                if let Some(c) = self.get(conn) {
                    c.last_active = now;
                    c.http.return_body(buf);
                    self.mark_ready(conn);
                }
            }
            Event::Eof { conn } => {
                if let Some(c) = self.get(conn) {
                    // A WebSocket's app hears of it after the frames before
                    // it, and an app reading a body after the body (upload).
                    let later = c.ws.is_some() || c.http.streaming_body();
                    if let Some(f) = c.inflight.as_ref().filter(|_| !later) {
                        f.flow.hang_up();
                    }
                    c.eof = true;
                    c.http.feed_eof();
                    self.mark_ready(conn);
                }
            }
            Event::Sent { conn } => {
                if let Some(c) = self.get(conn) {
                    c.queued = 0;
                    if let Some(f) = &mut c.inflight {
                        f.handed_written();
                    }
                    c.last_active = now;
                    self.mark_ready(conn);
                }
            }
            Event::SendFailed { conn, .. } => {
                if let Some(c) = self.get(conn) {
                    c.broken = true;
                    self.mark_ready(conn);
                }
            }
            Event::Readable { fd } => {
                if fd == self.signal_fd {
                    self.signalled = true;
                } else if Some(fd) == self.reload_fd {
                    self.reload_notified = true;
                } else if Some(fd) == self.mail_fd {
                    self.mail = true;
                }
            }
        }
    }

    pub(super) fn trust_for(&self, peer: Option<SocketAddr>) -> PeerTrust {
        match peer {
            // Unix-socket peers are local: trusted like gunicorn trusts them.
            None => PeerTrust {
                forwarded: true,
                proxy: true,
            },
            Some(addr) => PeerTrust {
                forwarded: self.trust_forwarded.contains(addr.ip()),
                proxy: self.trust_proxy.contains(addr.ip()),
            },
        }
    }

    pub(super) fn get(&mut self, id: ConnId) -> Option<&mut Connection> {
        self.conns.get_mut(id.index()).and_then(Option::as_mut)
    }

    pub(super) fn mark_ready(&mut self, id: ConnId) {
        if let Some(Some(c)) = self.conns.get_mut(id.index()) {
            if !c.ready {
                c.ready = true;
                self.ready.push(id);
            }
        }
    }
}
