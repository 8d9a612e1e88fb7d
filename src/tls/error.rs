//! The one error type of the TLS layer: load-time problems name the setting
//! and the file; connection-time problems carry what the peer did wrong.

use std::fmt;
use std::path::PathBuf;

/// What went wrong, said in one line by `Display`.
#[derive(Debug)]
pub enum TlsError {
    /// A file named by a setting could not be read or does not hold what the
    /// setting needs. The operator's fault; reported before any worker starts.
    File {
        /// The setting's name as on the command line (`certfile`, `keyfile`, `ca_certs`).
        setting: &'static str,
        path: PathBuf,
        problem: String,
    },
    /// The settings, taken together, do not make a usable configuration
    /// (an unknown cipher name, `cert_reqs` without `ca_certs`, ...).
    Settings(String),
    /// The peer broke the protocol or failed the handshake (bad record,
    /// unacceptable client certificate, no shared cipher suite). The
    /// connection is finished: send what `TlsConn::take_output` gives (the
    /// alert), then close.
    Peer(rustls::Error),
    /// The connection cannot carry more application data (we already sent
    /// `close_notify`, or the connection failed earlier).
    Closed,
}

impl TlsError {
    pub(crate) fn file(
        setting: &'static str,
        path: &std::path::Path,
        problem: impl Into<String>,
    ) -> Self {
        TlsError::File {
            setting,
            path: path.to_path_buf(),
            problem: problem.into(),
        }
    }

    /// True when the peer caused the error (log at info/debug, not error).
    pub fn is_peer_fault(&self) -> bool {
        matches!(self, TlsError::Peer(_))
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsError::File {
                setting,
                path,
                problem,
            } => write!(f, "{setting} {}: {problem}", path.display()),
            TlsError::Settings(msg) => f.write_str(msg),
            TlsError::Peer(e) => write!(f, "TLS error from peer: {e}"),
            TlsError::Closed => f.write_str("TLS connection is closed for sending"),
        }
    }
}

impl std::error::Error for TlsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TlsError::Peer(e) => Some(e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_error_names_setting_path_and_problem_on_one_line() {
        let e = TlsError::file(
            "keyfile",
            std::path::Path::new("/etc/k.pem"),
            "no private key found",
        );
        let s = e.to_string();
        assert_eq!(s, "keyfile /etc/k.pem: no private key found");
        assert!(!s.contains('\n'));
        assert!(!e.is_peer_fault());
    }

    #[test]
    fn peer_error_is_peer_fault() {
        let e = TlsError::Peer(rustls::Error::DecryptError);
        assert!(e.is_peer_fault());
        assert!(e.to_string().starts_with("TLS error from peer: "));
    }
}
