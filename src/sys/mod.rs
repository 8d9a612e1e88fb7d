//! Thin wrappers over the operating system: the only place besides
//! `engine/` where `unsafe` is allowed; every block says why it is sound.

pub mod affinity;
pub mod notify;
pub mod process;
pub mod proctitle;
pub mod shm;
pub mod signal;
pub mod socket;
pub mod stackdump;
pub mod time;
pub mod transport;
pub mod uring;
