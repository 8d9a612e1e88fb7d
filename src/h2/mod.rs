//! Sans-IO HTTP/2 (RFC 9113) with HPACK (RFC 7541): bytes in, events out.
//!
//! Owns the frame layer, header compression, stream states, flow control
//! both ways and the limits that keep a hostile client cheap (rapid reset,
//! CONTINUATION and control-frame floods, HPACK bombs). A complete request
//! header block becomes `http::Head`, the type the HTTP/1.1 layer produces,
//! so the bridges serve both protocols the same way. Imports only `http`:
//! no sockets, no Python, no clock (the caller passes the time in).

#![forbid(unsafe_code)]

pub mod error;
pub mod frame;
pub mod hpack;

pub use error::{H2Error, Reason};

mod conn;
mod flood;
pub mod h2c;
mod recv;
mod request;
mod send;
mod stream;
#[cfg(test)]
mod testing;

pub use conn::{Connection, Event, Settings, HEADER_TABLE_SIZE, UNLIMITED_HEADER_BLOCK};
pub use request::{Refusal, Trailers};
pub use send::SendError;
