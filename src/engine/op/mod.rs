//! The engine operations, one file per operation, each with its io_uring
//! path and its epoll path side by side so the two can be reviewed
//! together (parity bugs show up as differences within one screen).

pub mod accept;
pub mod close;
pub mod recv;
pub mod recv_into;
pub mod send;
pub mod send_file;
pub mod watch;
