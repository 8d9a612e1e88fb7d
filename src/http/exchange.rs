//! What every app bridge (WSGI, ASGI) and the hand-off to app threads share
//! about a request's connection and a response's head. Plain data: the
//! bridges fill and read them, this layer only names them.

use std::net::SocketAddr;
use std::sync::Arc;

use super::Head;

/// Per-listener and per-connection facts an app sees (the environ or the scope).
#[derive(Clone, Debug)]
pub struct ConnInfo {
    /// TCP peer; `None` for a unix socket (REMOTE_ADDR is then empty, no REMOTE_PORT).
    pub peer: Option<SocketAddr>,
    /// SERVER_NAME and SERVER_PORT: the listener's address (gunicorn's rule),
    /// or for a unix socket the `Host` header (port 80) or the socket path.
    /// Shared with the listener's template: a new connection copies no text.
    pub server_name: Arc<str>,
    pub server_port: Arc<str>,
    /// The listener speaks TLS (wsgi.url_scheme `https`).
    pub tls: bool,
}

impl ConnInfo {
    /// The request came over HTTPS: this listener speaks TLS, or a trusted
    /// proxy said so (`X-Forwarded-Proto` and the like, `secure_scheme_headers`).
    #[inline]
    pub fn https(&self, head: &Head) -> bool {
        self.tls || head.https_forwarded
    }
}

/// Validated response header (name, value) pairs, latin-1 encoded; shared,
/// so the list an app gives on every response is checked and built once.
pub type HeaderList = Arc<[(Vec<u8>, Vec<u8>)]>;

/// A checked status line (`200 OK`), shared like `HeaderList`: an app that
/// answers with the same status string gets the same bytes each time.
pub type Status = Arc<[u8]>;
