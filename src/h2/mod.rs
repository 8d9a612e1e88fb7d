//! Sans-IO HTTP/2 (RFC 9113) with HPACK (RFC 7541): bytes in, events out.
//!
//! Owns the frame layer, header compression, stream states, flow control
//! both ways and the limits that keep a hostile client cheap (rapid reset,
//! CONTINUATION and control-frame floods, HPACK bombs). A complete request
//! header block becomes `http::Head`, the type the HTTP/1.1 layer produces,
//! so the bridges serve both protocols the same way. Imports only `http`:
//! no sockets, no Python, no clock (the caller passes the time in).
//!
//! How a connection is driven:
//!
//! * `Connection::new(settings, now)` once the client is known to speak
//!   HTTP/2 (ALPN `h2`, or `h2c::detect_preface` on a cleartext
//!   connection); `Connection::from_upgrade` after an `Upgrade: h2c`
//!   request. Our SETTINGS are in `output()` from the start.
//! * `feed(bytes, now)` with whatever arrives, then `poll()` until `None`:
//!   `Request` (a stream's head), `Data` (its body; call `release` with the
//!   byte count once it is taken, which is what lets the client send
//!   more), `Trailers`, `Reset` (drop that stream's work), `Writable`,
//!   `GoAway`, `Closed`.
//! * Answer with `send_informational` (a 103) if any, `send_response`,
//!   then `send_data` (it returns the bytes left queued: when not 0, stop
//!   producing for that stream until `Writable`), `send_trailers`, or
//!   `reset`.
//! * Write `output()` and `consume_output(n)` what went out; after
//!   `is_done()`, close once the output is written.
//! * Graceful stop: `shutdown()`, then `shutdown_now()` if the client has
//!   not answered its PING within a round trip or so.
//! * Now and then, `check_liveness(now, silence, bound)`: a connection with
//!   streams open and a silent client gets a PING, and is `Dead` when it
//!   goes unanswered.

#![forbid(unsafe_code)]

pub mod error;
pub mod frame;
pub mod hpack;

pub use error::{H2Error, Reason};

mod conn;
mod flood;
pub mod h2c;
mod liveness;
mod recv;
mod request;
mod send;
mod stream;
#[cfg(test)]
pub(crate) mod testing;

pub use conn::{Connection, Event, Settings, HEADER_TABLE_SIZE, UNLIMITED_HEADER_BLOCK};
pub use liveness::{Probe, LIVENESS_PING};
pub use request::{Refusal, Trailers};
pub use send::SendError;
