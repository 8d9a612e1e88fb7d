//! The TLS settings as the command line gives them (gunicorn's `certfile`,
//! `keyfile`, `ca_certs`, `cert_reqs`, `ciphers`), before any file is read.

use std::path::PathBuf;

use super::TlsError;

/// Whether clients must present a certificate: gunicorn's `--cert-reqs`,
/// whose values are Python's `ssl.CERT_NONE`, `CERT_OPTIONAL`, `CERT_REQUIRED`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CertReqs {
    /// 0: no client certificate is asked for.
    #[default]
    None,
    /// 1: a certificate is asked for; a client may send none, but one it
    /// sends must chain to `ca_certs`.
    Optional,
    /// 2: a client certificate chaining to `ca_certs` is required.
    Required,
}

impl CertReqs {
    /// From the setting's integer value; anything but 0, 1 or 2 is a settings error.
    pub fn from_int(value: i64) -> Result<CertReqs, TlsError> {
        match value {
            0 => Ok(CertReqs::None),
            1 => Ok(CertReqs::Optional),
            2 => Ok(CertReqs::Required),
            other => Err(TlsError::Settings(format!(
                "cert_reqs: {other} is not 0 (none), 1 (optional) or 2 (required)"
            ))),
        }
    }

    pub fn as_int(self) -> i64 {
        match self {
            CertReqs::None => 0,
            CertReqs::Optional => 1,
            CertReqs::Required => 2,
        }
    }
}

/// The TLS settings of a server. TLS is on when `certfile` or `keyfile` is set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM file with the server certificate, then any intermediates.
    pub certfile: Option<PathBuf>,
    /// PEM file with the private key (PKCS#8, PKCS#1 RSA or SEC1 EC). When
    /// unset the key is read from `certfile`, as Python's `load_cert_chain` does.
    pub keyfile: Option<PathBuf>,
    /// PEM bundle of CA certificates that client certificates must chain to.
    pub ca_certs: Option<PathBuf>,
    pub cert_reqs: CertReqs,
    /// Colon-separated cipher suite names (see `ciphers.rs` for the accepted names).
    pub ciphers: Option<String>,
    /// The ALPN protocol names offered, in preference order; empty means
    /// HTTP/1.1 then HTTP/1.0 (`--http-protocols` decides).
    pub alpn: Vec<Vec<u8>>,
}

impl TlsSettings {
    /// Gunicorn's `is_ssl`: setting either file turns TLS on.
    pub fn is_enabled(&self) -> bool {
        self.certfile.is_some() || self.keyfile.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cert_reqs_accepts_gunicorn_values_and_round_trips() {
        for v in 0..=2 {
            assert_eq!(CertReqs::from_int(v).map(CertReqs::as_int).ok(), Some(v));
        }
        assert_eq!(CertReqs::from_int(1).ok(), Some(CertReqs::Optional));
    }

    #[test]
    fn cert_reqs_out_of_range_is_a_settings_error_naming_the_setting() {
        let e = CertReqs::from_int(3).err().map(|e| e.to_string());
        assert_eq!(
            e.as_deref(),
            Some("cert_reqs: 3 is not 0 (none), 1 (optional) or 2 (required)")
        );
        assert!(CertReqs::from_int(-1).is_err());
    }

    #[test]
    fn either_file_enables_tls() {
        let mut s = TlsSettings::default();
        assert!(!s.is_enabled());
        s.keyfile = Some(PathBuf::from("k.pem"));
        assert!(s.is_enabled());
        s = TlsSettings {
            certfile: Some(PathBuf::from("c.pem")),
            ..TlsSettings::default()
        };
        assert!(s.is_enabled());
    }
}
