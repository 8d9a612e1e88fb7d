//! systemd's readiness protocol: `sd_notify` messages to `$NOTIFY_SOCKET`.

use std::os::unix::net::UnixDatagram;

/// Send `state` (e.g. `READY=1`) when the service manager asked for it;
/// a no-op without `NOTIFY_SOCKET`.
pub fn sd_notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = UnixDatagram::unbound() else {
        return;
    };
    let path = path.to_string_lossy().into_owned();
    let sent = if let Some(name) = path.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
            .and_then(|addr| sock.send_to_addr(state.as_bytes(), &addr))
    } else {
        sock.send_to(state.as_bytes(), &path)
    };
    if let Err(e) = sent {
        crate::debug!("sd_notify {state:?} to {path}: {e}");
    }
}
