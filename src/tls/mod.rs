//! TLS for the server, on rustls with the *ring* provider, sans-IO.
//!
//! Owns: the TLS settings (`TlsSettings`, `CertReqs`), loading them into a
//! shared server configuration (`TlsConfig`, rebuilt on reload), and one
//! connection's TLS state (`TlsConn`), which turns received ciphertext into
//! plaintext and plaintext to send into ciphertext. It never touches a
//! socket: the worker moves the bytes. Imports nothing else of the crate.
//!
//! Per connection the worker does:
//! * accept: `TlsConn::new(&current_config)`;
//! * bytes received: `receive(bytes, &mut plain)`, feed `plain` to the HTTP
//!   layer, then `take_output(&mut out)` and write `out` if non-empty; on
//!   `Err`, still `take_output` (the alert), write it, log the error, close;
//! * response bytes: `send(bytes, &mut out)`, write `out`;
//! * closing: `close_notify(&mut out)`, write `out`, close.

#![forbid(unsafe_code)]

mod ciphers;
mod config;
mod conn;
mod error;
mod settings;

pub use ciphers::accepted_names as accepted_cipher_names;
pub use config::{TlsConfig, ALPN_HTTP11};
pub use conn::TlsConn;
pub use error::TlsError;
pub use settings::{CertReqs, TlsSettings};

#[cfg(test)]
mod testkit;
