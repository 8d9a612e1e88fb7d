//! Monitoring served by the master: Prometheus text metrics (`/metrics`)
//! and health checks (`/healthz`, `/readyz`) on `--metrics-bind`.
//!
//! Workers count their responses in the shared status table
//! (`sys::shm::Status`: a few relaxed atomic adds per response); the master
//! adds up the live workers' counters and the totals it folded in from
//! workers it reaped, so counters never go backwards. The master answers
//! scrapes itself from a non-blocking socket in its poll loop (`server`);
//! no worker is involved, so a scrape works while every worker is busy or
//! gone.

#![forbid(unsafe_code)]

mod prometheus;
mod server;

pub use prometheus::render;
pub use server::{Answer, Route, Server};

use std::net::{SocketAddr, ToSocketAddrs};

use crate::sys::shm::{self, Counters};

/// A live worker, as `ferrocorn_worker_info` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkerView {
    pub pid: i32,
    pub slot: usize,
    /// `shm::ENGINE_*`.
    pub engine: u32,
    pub in_flight: i64,
}

impl WorkerView {
    pub fn engine_name(&self) -> &'static str {
        match self.engine {
            shm::ENGINE_URING => "io_uring",
            shm::ENGINE_EPOLL => "epoll",
            _ => "booting",
        }
    }
}

/// Everything one scrape shows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Live workers' counters plus the reaped workers' totals.
    pub counters: Counters,
    pub workers: Vec<WorkerView>,
    /// Workers that died without being asked to (crashes, kills, timeouts).
    pub restarts: u64,
    /// Workers aborted by the master after `--timeout`.
    pub timeouts: u64,
    /// Workers killed by a signal the master did not send (kill -9, the
    /// OOM killer, a crash); a subset of `restarts`.
    pub signal_deaths: u64,
    /// Workers replaced because they passed `--max-worker-rss`.
    pub rss_recycles: u64,
}

/// `--metrics-bind HOST:PORT` (`[IPV6]:PORT` for IPv6; a host name is resolved).
pub fn parse_bind(spec: &str) -> Result<SocketAddr, String> {
    let spec = spec.trim();
    let spec = spec
        .strip_prefix("tcp://")
        .or_else(|| spec.strip_prefix("http://"))
        .unwrap_or(spec);
    if let Ok(addr) = spec.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let Some((host, port)) = spec.rsplit_once(':') else {
        return Err("expected HOST:PORT".into());
    };
    if host.is_empty() || host.contains(':') {
        return Err("expected HOST:PORT ([IPV6]:PORT for IPv6)".into());
    }
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{port:?} is not a port number"))?;
    let mut addrs = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host:?}: {e}"))?;
    addrs
        .next()
        .ok_or_else(|| format!("{host:?} has no address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_addresses_parse() {
        assert_eq!(
            parse_bind("127.0.0.1:9100"),
            Ok("127.0.0.1:9100".parse().unwrap())
        );
        assert_eq!(parse_bind("[::1]:9100"), Ok("[::1]:9100".parse().unwrap()));
        assert_eq!(
            parse_bind("tcp://0.0.0.0:1"),
            Ok("0.0.0.0:1".parse().unwrap())
        );
        assert!(parse_bind("localhost:9100").is_ok());
        assert!(parse_bind("9100").is_err());
        assert!(parse_bind("127.0.0.1:http").is_err());
        assert!(parse_bind(":9100").is_err());
        assert!(parse_bind("::1:9100").is_err());
    }
}
