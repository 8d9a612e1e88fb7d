//! PROXY protocol v1 (text) and v2 (binary) preamble.

use std::net::SocketAddr;

/// Addresses from a PROXY header (`None` for LOCAL / UNKNOWN).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyInfo {
    /// `TCP4`, `TCP6`, `LOCAL` or `UNSPEC`, for the PROXY_PROTOCOL environ key.
    pub protocol: &'static str,
    pub source: Option<SocketAddr>,
    pub dest: Option<SocketAddr>,
}
