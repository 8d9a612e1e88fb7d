//! The receive side of a connection: each frame the client sends, acted
//! on (streams opened and closed, request heads and bodies, settings,
//! flow-control credit), and the budgets that cut off floods.

use super::conn::{Connection, Event, PartialBlock, State, Stopping, SHUTDOWN_PING};
use super::error::{H2Error, Reason};
use super::frame::{self, flag, kind, setting, Frame, FrameHead};
use super::request::{Refusal, RequestBuilder, Trailers};
use super::stream::{ClosedBy, Recv, Send, Stream};

impl Connection {
    pub(super) fn on_frame(&mut self, head: &FrameHead, payload: &[u8]) -> Result<(), H2Error> {
        if self.state == State::FirstSettings {
            if head.kind != kind::SETTINGS || head.flags & flag::ACK != 0 {
                return Err(H2Error::conn(
                    Reason::PROTOCOL_ERROR,
                    "first frame is not SETTINGS",
                ));
            }
            self.state = State::Open;
        }
        if let Some(p) = &self.partial {
            if head.kind != kind::CONTINUATION || head.stream != p.stream {
                return Err(H2Error::conn(
                    Reason::PROTOCOL_ERROR,
                    "header block interrupted",
                ));
            }
        }
        match frame::parse(head, payload)? {
            Frame::Data {
                stream,
                data,
                end_stream,
                flow_len,
            } => self.on_data(stream, data, end_stream, flow_len),
            Frame::Headers {
                stream,
                block,
                end_stream,
                end_headers,
                self_dependent,
            } => {
                if block.is_empty() && !end_headers {
                    self.spend_empty()?;
                }
                self.partial = Some(PartialBlock {
                    stream,
                    end_stream,
                    self_dependent,
                    bytes: Vec::new(),
                });
                self.add_fragment(block, end_headers)
            }
            Frame::Continuation {
                stream: _,
                block,
                end_headers,
            } => {
                if self.partial.is_none() {
                    return Err(H2Error::conn(
                        Reason::PROTOCOL_ERROR,
                        "CONTINUATION without HEADERS",
                    ));
                }
                if block.is_empty() && !end_headers {
                    self.spend_empty()?;
                }
                self.add_fragment(block, end_headers)
            }
            Frame::Priority { .. } => self.spend_empty(),
            Frame::RstStream { stream, reason } => self.on_reset(stream, reason),
            Frame::Settings(settings) => {
                self.spend_answered()?;
                for (id, value) in settings.iter() {
                    self.apply_setting(id, value)?;
                }
                frame::write_settings_ack(&mut self.out);
                Ok(())
            }
            Frame::SettingsAck => {
                self.on_settings_ack();
                Ok(())
            }
            Frame::Ping { ack: false, data } => {
                self.spend_answered()?;
                frame::write_ping(&mut self.out, true, data);
                Ok(())
            }
            Frame::Ping { ack: true, data } => {
                if data == SHUTDOWN_PING && self.stopping == Stopping::Announced {
                    self.shutdown_now();
                }
                Ok(())
            }
            Frame::GoAway {
                last_stream,
                reason,
            } => {
                self.events.push_back(Event::GoAway {
                    last_stream,
                    reason,
                });
                Ok(())
            }
            Frame::WindowUpdate { stream, increment } => self.on_window_update(stream, increment),
            Frame::Unknown => Ok(()),
        }
    }

    pub(super) fn spend_empty(&mut self) -> Result<(), H2Error> {
        if self.floods.empty.spend(self.now) {
            Ok(())
        } else {
            Err(H2Error::conn(
                Reason::ENHANCE_YOUR_CALM,
                "too many empty frames",
            ))
        }
    }

    pub(super) fn spend_answered(&mut self) -> Result<(), H2Error> {
        if self.floods.answered.spend(self.now) {
            Ok(())
        } else {
            Err(H2Error::conn(
                Reason::ENHANCE_YOUR_CALM,
                "too many SETTINGS or PING frames",
            ))
        }
    }

    pub(super) fn apply_setting(&mut self, id: u16, value: u32) -> Result<(), H2Error> {
        match id {
            setting::HEADER_TABLE_SIZE => self.encoder.set_max_table_size(value as usize),
            setting::INITIAL_WINDOW_SIZE => {
                let delta = i64::from(value) - i64::from(self.peer.initial_window);
                self.peer.initial_window = value;
                for (&id, s) in self.streams.iter_mut() {
                    s.send_window += delta;
                    if s.send_window > i64::from(frame::MAX_WINDOW) {
                        return Err(H2Error::conn(
                            Reason::FLOW_CONTROL_ERROR,
                            "INITIAL_WINDOW_SIZE overflows a stream window",
                        ));
                    }
                    if delta > 0 && s.pending() > 0 && !self.ready.contains(&id) {
                        self.ready.push_back(id);
                    }
                }
            }
            setting::MAX_FRAME_SIZE => self.peer.max_frame = value,
            _ => {}
        }
        Ok(())
    }

    pub(super) fn on_settings_ack(&mut self) {
        if self.settings_acked {
            return;
        }
        self.settings_acked = true;
        // Streams opened before the ACK were given the default window.
        let ours = i64::from(self.settings.initial_window_size);
        let assumed = i64::from(self.settings.initial_window_size.max(frame::DEFAULT_WINDOW));
        if ours != assumed {
            for s in self.streams.values_mut() {
                s.recv_window += ours - assumed;
            }
        }
    }

    pub(super) fn add_fragment(
        &mut self,
        fragment: &[u8],
        end_headers: bool,
    ) -> Result<(), H2Error> {
        let limit = self.header_block_limit();
        let p = self.partial.as_mut().expect("a block in progress");
        // Counted raw, before decoding: a CONTINUATION flood is cut off
        // whatever its fields would decode to.
        if p.bytes.len() + fragment.len() > limit {
            return Err(H2Error::conn(
                Reason::ENHANCE_YOUR_CALM,
                "header block too large",
            ));
        }
        if !end_headers {
            p.bytes.extend_from_slice(fragment);
            return Ok(());
        }
        let mut p = self.partial.take().expect("a block in progress");
        let block = if p.bytes.is_empty() {
            fragment
        } else {
            p.bytes.extend_from_slice(fragment);
            &p.bytes
        };
        let result = self.on_header_block(p.stream, block, p.end_stream);
        if result.is_ok() && p.self_dependent {
            return Err(H2Error::stream(
                p.stream,
                Reason::PROTOCOL_ERROR,
                "stream depends on itself",
            ));
        }
        result
    }

    pub(super) fn decode_error(_: super::hpack::HpackError) -> H2Error {
        H2Error::conn(Reason::COMPRESSION_ERROR, "invalid header block")
    }

    pub(super) fn on_header_block(
        &mut self,
        id: u32,
        block: &[u8],
        end_stream: bool,
    ) -> Result<(), H2Error> {
        let limit = self.list_size_limit();
        if let Some(s) = self.streams.get(&id) {
            // Trailers.
            let open = s.recv == Recv::Open;
            let mut trailers = Trailers::default();
            let decoded = self
                .decoder
                .decode(block, limit, |n, v| trailers.field(n, v))
                .map_err(Self::decode_error)?;
            if !open {
                return Err(H2Error::stream(
                    id,
                    Reason::STREAM_CLOSED,
                    "HEADERS after END_STREAM",
                ));
            }
            if !end_stream {
                return Err(H2Error::stream(
                    id,
                    Reason::PROTOCOL_ERROR,
                    "trailers without END_STREAM",
                ));
            }
            if decoded.over_limit {
                return Err(H2Error::stream(
                    id,
                    Reason::PROTOCOL_ERROR,
                    "trailers too large",
                ));
            }
            let trailers = trailers
                .finish()
                .map_err(|_| H2Error::stream(id, Reason::PROTOCOL_ERROR, "malformed trailers"))?;
            self.check_length_at_end(id)?;
            self.events.push_back(Event::Trailers {
                stream: id,
                trailers,
            });
            self.close_recv(id);
            return Ok(());
        }
        if id % 2 == 0 {
            return Err(H2Error::conn(
                Reason::PROTOCOL_ERROR,
                "even stream id from a client",
            ));
        }
        if id <= self.last_stream {
            // Decoded first: the block changes the HPACK table either way.
            self.decoder
                .decode(block, limit, |_, _| {})
                .map_err(Self::decode_error)?;
            return match self.closed_by(id) {
                // Trailers in flight when we reset the stream.
                Some(ClosedBy::Us) => Ok(()),
                Some(ClosedBy::Peer) => Err(H2Error::conn(
                    Reason::STREAM_CLOSED,
                    "HEADERS on a closed stream",
                )),
                None => Err(H2Error::conn(
                    Reason::PROTOCOL_ERROR,
                    "stream id not above the last",
                )),
            };
        }
        self.last_stream = id;
        let mut builder = RequestBuilder::default();
        let decoded = self
            .decoder
            .decode(block, limit, |n, v| builder.field(n, v))
            .map_err(Self::decode_error)?;
        if let Stopping::Final(last) = self.stopping {
            if id > last {
                // After the final GOAWAY: decoded only to keep HPACK in step.
                self.close_stream(id, ClosedBy::Us);
                return Ok(());
            }
        }
        if self.streams.len() >= self.settings.max_concurrent_streams as usize {
            frame::write_rst_stream(&mut self.out, id, Reason::REFUSED_STREAM);
            self.close_stream(id, ClosedBy::Us);
            if !self.floods.local_resets.spend(self.now) {
                return Err(H2Error::conn(
                    Reason::ENHANCE_YOUR_CALM,
                    "too many streams refused",
                ));
            }
            return Ok(());
        }
        let window = self.stream_recv_window();
        let send_window = i64::from(self.peer.initial_window);
        self.streams
            .insert(id, Stream::new(window, send_window, end_stream));
        if decoded.over_limit {
            self.answer_error(id, 431);
            return Ok(());
        }
        match builder.finish() {
            Ok(built) => {
                let s = self.streams.get_mut(&id).expect("just inserted");
                s.content_length = built.content_length;
                if end_stream && built.content_length.is_some_and(|n| n != 0) {
                    // Never delivered: reset without a Reset event.
                    self.streams.remove(&id);
                    return Err(H2Error::stream(
                        id,
                        Reason::PROTOCOL_ERROR,
                        "content-length without DATA",
                    ));
                }
                self.events.push_back(Event::Request {
                    stream: id,
                    head: built.head,
                    end_stream,
                });
                Ok(())
            }
            Err(Refusal::Connect) => {
                self.answer_error(id, 501);
                Ok(())
            }
            Err(Refusal::Malformed(why)) => {
                self.streams.remove(&id);
                Err(H2Error::stream(id, Reason::PROTOCOL_ERROR, why))
            }
        }
    }

    /// Answer a request the application never sees with a bare status.
    pub(super) fn answer_error(&mut self, id: u32, status: u16) {
        let fields = [(&b"content-length"[..], &b"0"[..])];
        let _ = self.send_response(id, status, fields, true);
    }

    pub(super) fn check_length_at_end(&mut self, id: u32) -> Result<(), H2Error> {
        let s = &self.streams[&id];
        if s.content_length.is_some_and(|n| n != s.received) {
            return Err(H2Error::stream(
                id,
                Reason::PROTOCOL_ERROR,
                "body shorter than content-length",
            ));
        }
        Ok(())
    }

    pub(super) fn on_data(
        &mut self,
        id: u32,
        data: &[u8],
        end_stream: bool,
        flow_len: u32,
    ) -> Result<(), H2Error> {
        if id > self.last_stream {
            return Err(H2Error::conn(
                Reason::PROTOCOL_ERROR,
                "DATA on an idle stream",
            ));
        }
        let flow = i64::from(flow_len);
        if flow > self.recv_window {
            return Err(H2Error::conn(
                Reason::FLOW_CONTROL_ERROR,
                "DATA beyond the connection window",
            ));
        }
        self.recv_window -= flow;
        if data.is_empty() && !end_stream {
            self.spend_empty()?;
        }
        // Padding never reaches the consumer: its credit comes back now.
        let padding = flow_len - data.len() as u32;
        if !self.streams.contains_key(&id) {
            self.credit_connection(flow_len);
            if self.closed_by(id) == Some(ClosedBy::Peer) {
                return Err(H2Error::stream(
                    id,
                    Reason::STREAM_CLOSED,
                    "DATA on a closed stream",
                ));
            }
            // A stream we reset (or one long gone): the client may not
            // have seen our RST_STREAM yet (RFC 9113 5.1), so no error, but
            // the frame carried nothing for us.
            return self.spend_empty();
        }
        let s = self.streams.get_mut(&id).expect("present");
        if s.recv == Recv::Closed {
            self.credit_connection(flow_len);
            return Err(H2Error::stream(
                id,
                Reason::STREAM_CLOSED,
                "DATA after END_STREAM",
            ));
        }
        if flow > s.recv_window {
            self.credit_connection(flow_len);
            return Err(H2Error::stream(
                id,
                Reason::FLOW_CONTROL_ERROR,
                "DATA beyond the stream window",
            ));
        }
        s.recv_window -= flow;
        s.recv_unacked += padding;
        s.received += data.len() as u64;
        if s.content_length.is_some_and(|n| s.received > n) {
            self.credit_connection(flow_len);
            return Err(H2Error::stream(
                id,
                Reason::PROTOCOL_ERROR,
                "body longer than content-length",
            ));
        }
        if end_stream {
            if let Err(e) = self.check_length_at_end(id) {
                self.credit_connection(flow_len);
                return Err(e);
            }
        }
        self.credit_connection(padding);
        self.events.push_back(Event::Data {
            stream: id,
            data: data.to_vec(),
            end_stream,
        });
        if end_stream {
            self.close_recv(id);
        }
        Ok(())
    }

    pub(super) fn close_recv(&mut self, id: u32) {
        if let Some(s) = self.streams.get_mut(&id) {
            s.recv = Recv::Closed;
            if s.is_closed() {
                self.close_stream(id, ClosedBy::Peer);
            }
        }
    }

    pub(super) fn on_reset(&mut self, id: u32, reason: Reason) -> Result<(), H2Error> {
        if id > self.last_stream {
            return Err(H2Error::conn(
                Reason::PROTOCOL_ERROR,
                "RST_STREAM on an idle stream",
            ));
        }
        if !self.streams.contains_key(&id) {
            return Ok(());
        }
        let s = self.close_stream(id, ClosedBy::Peer).expect("present");
        self.events.push_back(Event::Reset { stream: id, reason });
        // Rapid reset: a stream reset before we could answer it cost us
        // the work of starting it for nothing.
        if s.send != Send::Closed && !self.floods.resets.spend(self.now) {
            return Err(H2Error::conn(
                Reason::ENHANCE_YOUR_CALM,
                "too many streams reset",
            ));
        }
        Ok(())
    }

    /// We reset a stream for a fault of the client's (a stream error).
    pub(super) fn reset_stream_for_error(&mut self, id: u32, reason: Reason) {
        frame::write_rst_stream(&mut self.out, id, reason);
        if self.close_stream(id, ClosedBy::Us).is_some() {
            self.events.push_back(Event::Reset { stream: id, reason });
        }
        if !self.floods.local_resets.spend(self.now) {
            self.fail(H2Error::conn(
                Reason::ENHANCE_YOUR_CALM,
                "too many stream errors",
            ));
        }
    }

    pub(super) fn on_window_update(&mut self, id: u32, increment: u32) -> Result<(), H2Error> {
        if id == 0 {
            self.send_window += i64::from(increment);
            if self.send_window > i64::from(frame::MAX_WINDOW) {
                return Err(H2Error::conn(
                    Reason::FLOW_CONTROL_ERROR,
                    "connection window above 2^31-1",
                ));
            }
            return Ok(());
        }
        if id > self.last_stream {
            return Err(H2Error::conn(
                Reason::PROTOCOL_ERROR,
                "WINDOW_UPDATE on an idle stream",
            ));
        }
        let Some(s) = self.streams.get_mut(&id) else {
            return Ok(());
        };
        s.send_window += i64::from(increment);
        if s.send_window > i64::from(frame::MAX_WINDOW) {
            return Err(H2Error::stream(
                id,
                Reason::FLOW_CONTROL_ERROR,
                "stream window above 2^31-1",
            ));
        }
        let has_work = s.pending() > 0 || (s.end_queued && s.send != Send::Closed);
        if has_work && !self.ready.contains(&id) {
            self.ready.push_back(id);
        }
        Ok(())
    }
}
