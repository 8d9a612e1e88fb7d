//! Sans-IO WebSocket (RFC 6455) with permessage-deflate (RFC 7692): the
//! opening handshake as a function over `http::Head`, and a connection that
//! takes bytes and gives messages, takes messages and gives bytes.
//!
//! Owns: deciding whether a request is an upgrade and what to answer
//! (`handshake`), the extension negotiation (`extension`), frame headers and
//! masking (`frame`), the compression codec (`deflate`) and the state of one
//! connection after the 101 (`conn`). It imports only `http` (the request
//! head and its header-value rules): no sockets, no Python, no libc.
//!
//! The server's side only: client frames must be masked, ours are not.
//! Rules a reader of `Connection` should know:
//! * Pings are answered by the module: the pong is queued and goes out with
//!   the next `drain_outgoing` (or before the next frame the caller encodes).
//! * A close from the peer is answered at once with the same status code,
//!   and the connection is then `Closed`; after our own close it is
//!   `CloseSent` until the peer's close arrives. The caller writes the queued
//!   bytes and closes TCP once the state is `Closed`.
//! * A protocol violation is returned as a sticky `Error` and nothing after
//!   the bad frame is read. The events before it stand: the caller hands
//!   them on, sends its answers, then calls `fail`, which queues a close
//!   frame with the status code (1002, 1007, 1009) and moves to `Closed`.
//! * A message larger than `Config::max_message_size` (counted after
//!   decompression) fails with 1009; no more than the limit is ever buffered.

#![forbid(unsafe_code)]

mod conn;
mod deflate;
mod extension;
mod frame;
mod handshake;

pub use conn::{Connection, Event, SendError, State};
pub use extension::{negotiate, DeflateParams};
pub use frame::Opcode;
pub use handshake::{accept_key, check, Handshake, Reject, ResponseError, Upgrade};

/// 16 MiB: gunicorn's `websocket_max_message_size` default (and uvicorn's `--ws-max-size`).
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 16 * 1024 * 1024;

/// The only protocol version (RFC 6455 §4.1, `Sec-WebSocket-Version`).
pub const VERSION: &str = "13";

/// Close status codes this layer sends (RFC 6455 §7.4.1).
pub mod close_code {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// Reported, never sent: the close frame had no status code.
    pub const NO_STATUS: u16 = 1005;
    pub const INVALID_PAYLOAD: u16 = 1007;
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    pub const INTERNAL_ERROR: u16 = 1011;
}

/// Settings of the WebSocket layer.
#[derive(Clone, Debug)]
pub struct Config {
    /// Max bytes of one message, after decompression. Over it: close 1009.
    pub max_message_size: usize,
    /// Accept a client's permessage-deflate offer.
    pub permessage_deflate: bool,
    /// zlib level (0-9) of outgoing compressed messages.
    pub compression_level: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            permessage_deflate: true,
            // 6: zlib's default, which Python's websockets uses too.
            compression_level: 6,
        }
    }
}

/// Why the peer's bytes were refused, and the close code to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// Framing rules broken: 1002.
    Protocol,
    /// Text that is not UTF-8, or compressed data that does not inflate: 1007.
    InvalidPayload,
    /// A message over `max_message_size`: 1009.
    TooBig,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProtocolError {
    pub kind: ErrorKind,
    pub detail: &'static str,
}

impl ProtocolError {
    pub(crate) fn new(kind: ErrorKind, detail: &'static str) -> ProtocolError {
        ProtocolError { kind, detail }
    }

    pub fn close_code(&self) -> u16 {
        match self.kind {
            ErrorKind::Protocol => close_code::PROTOCOL_ERROR,
            ErrorKind::InvalidPayload => close_code::INVALID_PAYLOAD,
            ErrorKind::TooBig => close_code::MESSAGE_TOO_BIG,
        }
    }
}

impl std::fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.detail, self.close_code())
    }
}

impl std::error::Error for ProtocolError {}

/// A status code a close frame may carry on the wire (RFC 6455 §7.4.1-2):
/// 1000-1003, 1007-1014 and the registered/private 3000-4999. 1004 is
/// reserved, 1005/1006/1015 are for reporting only, 1016-2999 unassigned.
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_codes_follow_rfc_6455_section_7_4() {
        for code in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999,
        ] {
            assert!(is_valid_close_code(code), "{code}");
        }
        for code in [
            0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            assert!(!is_valid_close_code(code), "{code}");
        }
    }

    #[test]
    fn errors_carry_their_close_code() {
        assert_eq!(
            ProtocolError::new(ErrorKind::Protocol, "x").close_code(),
            1002
        );
        assert_eq!(
            ProtocolError::new(ErrorKind::InvalidPayload, "x").close_code(),
            1007
        );
        assert_eq!(
            ProtocolError::new(ErrorKind::TooBig, "x").close_code(),
            1009
        );
    }
}
