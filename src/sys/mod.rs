//! Thin wrappers over the operating system: the only place besides
//! `engine/` where `unsafe` is allowed; every block says why it is sound.

pub mod time;
pub mod transport;
pub mod uring;
