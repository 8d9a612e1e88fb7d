//! systemd's readiness protocol: `sd_notify` messages to `$NOTIFY_SOCKET`.

use std::io;
use std::os::unix::net::UnixDatagram;

/// Send `state` (e.g. `READY=1`) when the service manager asked for it;
/// `Ok` without `NOTIFY_SOCKET` (nothing to tell). The error names the socket.
pub fn sd_notify(state: &str) -> io::Result<()> {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(());
    };
    let path = path.to_string_lossy().into_owned();
    let with_path = |e: io::Error| io::Error::new(e.kind(), format!("{path}: {e}"));
    let sock = UnixDatagram::unbound().map_err(with_path)?;
    let sent = if let Some(name) = path.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
            .and_then(|addr| sock.send_to_addr(state.as_bytes(), &addr))
    } else {
        sock.send_to(state.as_bytes(), &path)
    };
    sent.map(drop).map_err(with_path)
}
