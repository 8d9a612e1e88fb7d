//! The engine operations, one file per operation, each with its io_uring
//! path and its epoll path side by side so the two can be reviewed
//! together (parity bugs show up as differences within one screen).

pub(in crate::engine) mod accept;
pub(in crate::engine) mod close;
pub(in crate::engine) mod recv;
pub(in crate::engine) mod recv_into;
pub(in crate::engine) mod send;
pub(in crate::engine) mod send_file;
pub(in crate::engine) mod watch;
