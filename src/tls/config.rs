//! `TlsConfig`: the server side of TLS built from the settings' files, shared
//! by every connection accepted while it is current. A reload (HUP) builds a
//! new one; connections already open keep the one they started with.

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{
    InconsistentKeys, ProtocolVersion, RootCertStore, ServerConfig, SupportedProtocolVersion,
};

use super::{ciphers, CertReqs, TlsError, TlsSettings};

/// The only application protocol offered over ALPN: this server speaks HTTP/1.1.
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// A loaded, checked server configuration. Cheap to clone (one `Arc`).
#[derive(Clone, Debug)]
pub struct TlsConfig(Arc<ServerConfig>);

impl TlsConfig {
    /// Reads and checks the files named by `settings`. Every error names the
    /// setting, the file and the problem, so it can be shown as is before any
    /// worker starts.
    pub fn load(settings: &TlsSettings) -> Result<TlsConfig, TlsError> {
        let Some(certfile) = settings.certfile.as_deref() else {
            return Err(TlsError::Settings(
                "certfile: not set; TLS needs a certificate (keyfile alone is not enough)".into(),
            ));
        };
        let certs = read_certs("certfile", certfile)?;
        let (key_setting, key_path) = match settings.keyfile.as_deref() {
            Some(path) => ("keyfile", path),
            // As Python's `load_cert_chain(certfile, None)`: the key is in the certificate file.
            None => ("certfile", certfile),
        };
        let key = read_key(key_setting, key_path)?;

        let mut provider = rustls::crypto::ring::default_provider();
        if let Some(list) = settings.ciphers.as_deref() {
            provider.cipher_suites = ciphers::parse(list)?;
        }
        let certified = certified_key(&provider, certs, key, certfile, key_setting, key_path)?;
        check_tls12_suites_suit_key(&provider, &certified)?;

        let provider = Arc::new(provider);
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions_for(&provider))
            .map_err(|e| TlsError::Settings(format!("ciphers: {e}")))?;
        let builder = match client_verifier(settings, &provider)? {
            Some(verifier) => builder.with_client_cert_verifier(verifier),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
        config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
        // Python's server context (and so gunicorn) prefers the server's order.
        config.ignore_client_order = true;
        Ok(TlsConfig(Arc::new(config)))
    }

    pub(crate) fn server_config(&self) -> &Arc<ServerConfig> {
        &self.0
    }
}

fn read_file(setting: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::file(setting, path, format!("cannot read: {e}")))
}

fn pem_problem(e: pem::Error) -> String {
    match e {
        pem::Error::NoItemsFound => "no PEM section of the needed kind found".into(),
        other => format!("malformed PEM: {other:?}"),
    }
}

fn read_certs(
    setting: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read_file(setting, path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::file(setting, path, pem_problem(e)))?;
    if certs.is_empty() {
        return Err(TlsError::file(
            setting,
            path,
            "no certificate found (expected PEM \"BEGIN CERTIFICATE\" sections)",
        ));
    }
    Ok(certs)
}

fn read_key(setting: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read_file(setting, path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
        let problem = match e {
            pem::Error::NoItemsFound if contains(&bytes, b"ENCRYPTED PRIVATE KEY") => {
                "the private key is encrypted; give an unencrypted key".to_string()
            }
            pem::Error::NoItemsFound => {
                "no private key found (expected PEM \"BEGIN PRIVATE KEY\", \"BEGIN RSA PRIVATE KEY\" or \"BEGIN EC PRIVATE KEY\")".to_string()
            }
            other => pem_problem(other),
        };
        TlsError::file(setting, path, problem)
    })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The certificate chain with its key, checked to belong together.
fn certified_key(
    provider: &CryptoProvider,
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    certfile: &Path,
    key_setting: &'static str,
    key_path: &Path,
) -> Result<CertifiedKey, TlsError> {
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsError::file(key_setting, key_path, format!("unusable private key: {e}")))?;
    let certified = CertifiedKey::new(certs, signing_key);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => Err(TlsError::file(
            key_setting,
            key_path,
            format!(
                "private key does not match the certificate in certfile {}",
                certfile.display()
            ),
        )),
        Err(e) => Err(TlsError::file(
            "certfile",
            certfile,
            format!("unusable certificate: {e}"),
        )),
    }
}

/// A TLS 1.2 suite names the kind of key that signs the handshake (ECDSA or
/// RSA); a list whose TLS 1.2 suites all need the other kind would fail every
/// TLS 1.2 handshake, so it is refused at load.
fn check_tls12_suites_suit_key(
    provider: &CryptoProvider,
    key: &CertifiedKey,
) -> Result<(), TlsError> {
    let algorithm = key.key.algorithm();
    let tls12: Vec<_> = provider
        .cipher_suites
        .iter()
        .filter(|s| s.version().version == ProtocolVersion::TLSv1_2)
        .collect();
    if tls12.is_empty()
        || tls12
            .iter()
            .any(|s| s.usable_for_signature_algorithm(algorithm))
    {
        return Ok(());
    }
    Err(TlsError::Settings(format!(
        "ciphers: none of the TLS 1.2 suites named can be used with the server's {algorithm:?} key; name suites for that key type (ECDHE-ECDSA-* for ECDSA keys, ECDHE-RSA-* for RSA keys)"
    )))
}

/// TLS 1.3 always; TLS 1.2 when some TLS 1.2 suite is on offer.
fn versions_for(provider: &CryptoProvider) -> Vec<&'static SupportedProtocolVersion> {
    [&rustls::version::TLS13, &rustls::version::TLS12]
        .into_iter()
        .filter(|v| {
            provider
                .cipher_suites
                .iter()
                .any(|s| s.version().version == v.version)
        })
        .collect()
}

fn client_verifier(
    settings: &TlsSettings,
    provider: &Arc<CryptoProvider>,
) -> Result<Option<Arc<dyn rustls::server::danger::ClientCertVerifier>>, TlsError> {
    let roots = match settings.ca_certs.as_deref() {
        // Read even when no client certificate is asked for: a broken file
        // is reported now, not when someone turns `cert_reqs` on.
        Some(path) => Some((path, read_roots(path)?)),
        None => None,
    };
    if settings.cert_reqs == CertReqs::None {
        return Ok(None);
    }
    let Some((path, roots)) = roots else {
        return Err(TlsError::Settings(format!(
            "cert_reqs {} needs ca_certs: client certificates are checked against that CA bundle",
            settings.cert_reqs.as_int()
        )));
    };
    let mut builder =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
    if settings.cert_reqs == CertReqs::Optional {
        builder = builder.allow_unauthenticated();
    }
    builder
        .build()
        .map(Some)
        .map_err(|e| TlsError::file("ca_certs", path, format!("{e}")))
}

fn read_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for (i, cert) in read_certs("ca_certs", path)?.into_iter().enumerate() {
        roots.add(cert).map_err(|e| {
            TlsError::file(
                "ca_certs",
                path,
                format!("certificate {} is not usable as a trust anchor: {e}", i + 1),
            )
        })?;
    }
    Ok(roots)
}
