//! WebSocket connections of ASGI apps, the loop thread's side: the upgrade
//! check, the frames (`ws::Connection`: pings are answered here, with no
//! Python), messages handed to the asyncio side through the request's
//! `Flow`, and what the app posts back (accept, messages, close) encoded
//! into the connection's output.

use std::time::{Duration, Instant};

use super::{reuse_output, Phase, Worker, OUTPUT_HIGH_WATER};
use crate::engine::ConnId;
use crate::handoff::{Flow, Inbound, Message};
use crate::http;
use crate::ws;

/// How long the peer has to answer our close frame before TCP is closed
/// anyway (websockets' and uvicorn's `close_timeout` is 10 s; shorter
/// here because a worker stopping has `--graceful-timeout` in all).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connection whose peer broke the protocol stays up for the
/// app to take the messages that came before the error and answer them:
/// the close goes out when the app's `receive()` takes the disconnect, or
/// after this (checked by the sweep, so up to 250 ms later). Short: the
/// peer is owed a prompt failure (RFC 6455 §7.1.7), an app that answers at
/// all answers in far less, and it is what Autobahn's strict cases wait
/// for the server to fail the connection (1 s).
const FAIL_GRACE: Duration = Duration::from_secs(1);
/// A stopping worker closes its WebSockets this long before its graceful
/// timeout ends, so the close handshake fits in it.
pub(super) const STOP_CLOSE_MARGIN: Duration = Duration::from_secs(1);
/// The close code the app sees when TCP ended without a close frame.
const ABNORMAL_CLOSURE: u16 = 1006;
/// Sent when the worker hands over to a successor (HUP, `--max-requests`,
/// `--reload`: the arbiter marks it replaced before its TERM): "service restart".
const SERVICE_RESTART: u16 = 1012;

/// The WebSocket settings a worker needs.
pub(super) struct WsSettings {
    pub cfg: ws::Config,
    pub ping_interval: Option<Duration>,
    pub ping_timeout: Option<Duration>,
}

impl WsSettings {
    pub fn from_config(cfg: &crate::config::Config) -> WsSettings {
        let max = match cfg.websocket_max_message_size {
            0 => usize::MAX,
            n => usize::try_from(n).unwrap_or(usize::MAX),
        };
        let nonzero = |d: Duration| (!d.is_zero()).then_some(d);
        WsSettings {
            cfg: ws::Config {
                max_message_size: max,
                permessage_deflate: cfg.ws_per_message_deflate,
                ..ws::Config::default()
            },
            ping_interval: nonzero(cfg.ws_ping_interval),
            ping_timeout: nonzero(cfg.ws_ping_timeout),
        }
    }
}

/// Where a WebSocket is, on the loop's side. Not boxed per variant: the
/// whole `WsConn` is boxed, and nearly all its life is spent `Open`.
#[allow(clippy::large_enum_variant)]
pub(super) enum WsPhase {
    /// The app has the `websocket.connect`; bytes the client sent early
    /// wait here (reading is paused meanwhile).
    Handshake {
        upgrade: ws::Upgrade,
        early: Vec<u8>,
    },
    /// Accepted: frames go both ways.
    Open(ws::Connection),
}

pub(super) struct WsConn {
    pub phase: WsPhase,
    /// The app was told the connection ended (`Inbound::Closed`).
    reported: bool,
    /// When our last ping went out and no pong came back yet.
    ping_sent: Option<Instant>,
    /// When we last pinged (or the connection opened).
    last_ping: Instant,
    /// When we sent our close frame.
    close_sent: Option<Instant>,
    /// When the peer broke the protocol, while the app still has messages
    /// from before the error (and then its disconnect) to take: reading
    /// has stopped and the close waits (`FAIL_GRACE`).
    failing: Option<Instant>,
}

impl WsConn {
    pub fn new(upgrade: ws::Upgrade, early: Vec<u8>) -> WsConn {
        WsConn {
            phase: WsPhase::Handshake { upgrade, early },
            reported: false,
            ping_sent: None,
            last_ping: Instant::now(),
            close_sent: None,
            failing: None,
        }
    }

    /// Bytes from the peer (already decrypted on TLS).
    pub fn feed(&mut self, data: &[u8]) {
        match &mut self.phase {
            WsPhase::Handshake { early, .. } => early.extend_from_slice(data),
            WsPhase::Open(c) => c.receive_data(data),
        }
    }

    /// Tell the app the connection ended, once.
    fn report(&mut self, flow: &Flow, code: u16, reason: String) {
        if !self.reported {
            self.reported = true;
            flow.push_inbound(Inbound::Closed { code, reason });
        }
    }

    /// The app accepted: write the 101 to `out` and start framing.
    pub fn accept(
        &mut self,
        cfg: &ws::Config,
        subprotocol: Option<&str>,
        headers: &[(Vec<u8>, Vec<u8>)],
        out: &mut Vec<u8>,
    ) -> Result<(), ws::ResponseError> {
        let WsPhase::Handshake { upgrade, early } = &mut self.phase else {
            return Ok(());
        };
        let extra: Vec<(&[u8], &[u8])> = headers
            .iter()
            .map(|(n, v)| (n.as_slice(), v.as_slice()))
            .collect();
        upgrade.response(subprotocol, &extra, out)?;
        let mut conn = ws::Connection::new(cfg, upgrade.deflate.take());
        conn.receive_data(early);
        self.phase = WsPhase::Open(conn);
        self.last_ping = Instant::now();
        Ok(())
    }

    /// A message from the app. After a close it has nowhere to go and is
    /// dropped: the app learns why from its `websocket.disconnect`.
    pub fn send(&mut self, message: &Message, out: &mut Vec<u8>) {
        if let WsPhase::Open(conn) = &mut self.phase {
            let _ = match message {
                Message::Text(t) => conn.send_text(t, out),
                Message::Binary(b) => conn.send_binary(b, out),
            };
        }
    }

    /// Start the close handshake (no-op unless open). A connection the
    /// peer broke is failed instead: its close carries the error's code,
    /// whatever the app (which has not heard of it yet) says.
    pub fn close(&mut self, code: u16, reason: &str, out: &mut Vec<u8>) {
        if self.failing.is_some() {
            return self.fail(out);
        }
        if let WsPhase::Open(c) = &mut self.phase {
            if c.close(code, reason, out).is_ok() {
                self.close_sent = Some(Instant::now());
            }
        }
    }

    /// The app's `receive()` gave it the disconnect, and what it sent
    /// before is in `out`: a connection the peer broke is failed now.
    pub fn disconnect_taken(&mut self, out: &mut Vec<u8>) {
        if self.failing.is_some() {
            self.fail(out);
        }
    }

    /// Fail the connection the peer broke: its close frame goes after what
    /// `out` holds (the app's answers to the messages before the error).
    fn fail(&mut self, out: &mut Vec<u8>) {
        if let WsPhase::Open(c) = &mut self.phase {
            c.fail();
            c.drain_outgoing(out);
        }
        self.failing = None;
    }
}

/// Whether a request has an `Upgrade` field: one pass over the header
/// names that compares only those of its length. Only ASGI requests ask.
pub(super) fn asks_upgrade(head: &http::Head) -> bool {
    head.headers
        .iter()
        .any(|h| h.name.len() == 7 && head.slice(&h.name).eq_ignore_ascii_case(b"upgrade"))
}

impl Worker<'_> {
    /// Move a WebSocket connection forward: hand what arrived to the app,
    /// write what the module queued (pongs, close answers), and read only
    /// while the app keeps up.
    pub(super) fn step_ws(&mut self, id: ConnId) {
        let Some(c) = self.state.get(id) else { return };
        let (Some(ws), Some(f)) = (c.ws.as_deref_mut(), c.inflight.as_ref()) else {
            c.phase = Phase::CloseAfterSend;
            return self.flush(id);
        };
        let flow = f.flow.clone();
        let pause = match &mut ws.phase {
            WsPhase::Handshake { .. } => {
                if c.eof {
                    flow.hang_up();
                }
                !c.eof
            }
            WsPhase::Open(conn) => {
                let mut full = flow.inbound_full();
                while !full {
                    match conn.poll() {
                        ws::Event::NeedMore | ws::Event::Closed => break,
                        ws::Event::Text(t) => {
                            full = flow.push_inbound(Inbound::Message(Message::Text(t)))
                        }
                        ws::Event::Binary(b) => {
                            full = flow.push_inbound(Inbound::Message(Message::Binary(b)))
                        }
                        ws::Event::Pong(_) => ws.ping_sent = None,
                        ws::Event::Close { code, reason } => {
                            if !ws.reported {
                                ws.reported = true;
                                flow.push_inbound(Inbound::Closed { code, reason });
                            }
                        }
                        ws::Event::Error(e) => {
                            crate::debug!("WebSocket error from {:?}: {e}", c.peer);
                            // The app hears of it after the messages before
                            // it. The close goes out when its receive() has
                            // taken the disconnect (`disconnect_taken`), so
                            // its answers to them go first; at once if it
                            // has closed itself (or was told already).
                            if ws.reported || ws.close_sent.is_some() {
                                conn.fail();
                            } else {
                                ws.reported = true;
                                flow.push_inbound(Inbound::Closed {
                                    code: e.close_code(),
                                    reason: String::new(),
                                });
                                ws.failing = Some(Instant::now());
                            }
                            break;
                        }
                    }
                }
                if ws.failing.is_some() && c.eof {
                    // Gone (or half-closed) meanwhile: as for any EOF, no
                    // waiting for the app's answers.
                    conn.fail();
                    ws.failing = None;
                }
                conn.drain_outgoing(&mut c.out);
                if conn.state() == ws::State::Closed {
                    // Both closes are out (or the peer broke the protocol):
                    // write what is queued, then close TCP.
                    c.phase = Phase::CloseAfterSend;
                } else if c.eof {
                    ws.report(&flow, ABNORMAL_CLOSURE, String::new());
                    c.phase = Phase::CloseAfterSend;
                }
                // After a protocol error nothing more is read.
                let failing = ws.failing.is_some();
                full || failing || c.pending_output() >= OUTPUT_HIGH_WATER
            }
        };
        if pause && !c.recv_paused {
            c.recv_paused = true;
            self.engine.pause_recv(id);
        } else if !pause && c.recv_paused {
            c.recv_paused = false;
            self.engine.resume_recv(id);
        }
        self.flush(id);
        let Some(c) = self.state.get(id) else { return };
        if c.phase == Phase::CloseAfterSend && c.pending_output() == 0 {
            self.state.mark_ready(id);
        }
    }

    /// Every open WebSocket gets a close frame: 1001 when the worker stops,
    /// 1012 when it is replaced.
    pub(super) fn close_websockets(&mut self) {
        let replaced = self.status.is_some_and(|s| s.wants_replacement());
        let code = if replaced {
            SERVICE_RESTART
        } else {
            ws::close_code::GOING_AWAY
        };
        for i in 0..self.state.conns.len() {
            let id = ConnId(i as u32);
            let Some(c) = self.state.get(id) else {
                continue;
            };
            let Some(ws) = c.ws.as_deref_mut() else {
                continue;
            };
            if ws.close_sent.is_none() {
                ws.close(code, "", &mut c.out);
                self.flush(id);
                // One being failed is closed now: step it to the end.
                self.state.mark_ready(id);
            }
        }
    }

    /// The WebSocket timers (run with the sweep): pings, a peer that does
    /// not answer them (closed with 1011, as websockets does for uvicorn),
    /// and a close handshake the peer does not finish.
    pub(super) fn sweep_websockets(&mut self, now: Instant) -> Vec<ConnId> {
        let mut dead = Vec::new();
        let (interval, timeout) = (self.ws.ping_interval, self.ws.ping_timeout);
        for i in 0..self.state.conns.len() {
            let id = ConnId(i as u32);
            let Some(c) = self.state.get(id) else {
                continue;
            };
            let Some(ws) = c.ws.as_deref_mut() else {
                continue;
            };
            if !matches!(ws.phase, WsPhase::Open(_)) || c.phase != Phase::Open {
                continue;
            }
            if ws
                .close_sent
                .is_some_and(|t| now.saturating_duration_since(t) >= CLOSE_TIMEOUT)
            {
                dead.push(id);
                continue;
            }
            if ws
                .failing
                .is_some_and(|t| now.saturating_duration_since(t) >= FAIL_GRACE)
            {
                crate::debug!(
                    "WebSocket {:?}: the app did not take its disconnect in time",
                    c.peer
                );
                reuse_output(&mut c.out, &mut self.engine);
                ws.fail(&mut c.out);
                c.phase = Phase::CloseAfterSend;
                self.flush(id);
                self.state.mark_ready(id);
                continue;
            }
            let late = ws
                .ping_sent
                .zip(timeout)
                .is_some_and(|(sent, limit)| now.saturating_duration_since(sent) >= limit);
            if late {
                crate::debug!("WebSocket {:?}: no pong in time", c.peer);
                ws.close(
                    ws::close_code::INTERNAL_ERROR,
                    "keepalive ping timeout",
                    &mut c.out,
                );
                if let Some(f) = &c.inflight {
                    ws.report(&f.flow, ABNORMAL_CLOSURE, String::new());
                }
                c.phase = Phase::CloseAfterSend;
                self.flush(id);
                self.state.mark_ready(id);
                continue;
            }
            let due =
                interval.is_some_and(|every| now.saturating_duration_since(ws.last_ping) >= every);
            if due && ws.ping_sent.is_none() && ws.close_sent.is_none() && ws.failing.is_none() {
                if let WsPhase::Open(conn) = &mut ws.phase {
                    reuse_output(&mut c.out, &mut self.engine);
                    if conn.send_ping(b"", &mut c.out).is_ok() {
                        ws.ping_sent = Some(now);
                        ws.last_ping = now;
                    }
                }
                self.flush(id);
            }
        }
        dead
    }
}
