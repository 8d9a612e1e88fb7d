//! gunicorn 27's control-socket protocol (what `gunicornc` speaks), sans-IO:
//! framing (`frame`), requests and their commands (`request`), and the
//! replies with the JSON shapes `gunicornc` prints (`reply`). The master's
//! side of the socket lives in `arbiter/control.rs`; `client` is the
//! `ferrocorn ctl` command, the one part here that touches a socket.
//!
//! Imports nothing else of the crate: the arbiter and the entry point use it.

#![forbid(unsafe_code)]

pub mod client;
pub mod frame;
pub mod reply;
pub mod request;

pub use frame::{Decoder, FrameError, MAX_MESSAGE};
pub use request::{Command, Mode, Rejected, Request, Target};
