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

/// The application protocol preferred over ALPN: this server speaks HTTP/1.1.
pub const ALPN_HTTP11: &[u8] = b"http/1.1";
/// Also accepted, so a client that offers only HTTP/1.0 is not refused.
pub const ALPN_HTTP10: &[u8] = b"http/1.0";

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
        config.alpn_protocols = if settings.alpn.is_empty() {
            vec![ALPN_HTTP11.to_vec(), ALPN_HTTP10.to_vec()]
        } else {
            settings.alpn.clone()
        };
        // Python's server context (and so gunicorn) prefers the server's order.
        config.ignore_client_order = true;
        // Stateless resumption tickets, as OpenSSL issues by default. The key
        // is made here, so workers forked after the load share it and a
        // client can resume on any of them; each reload makes a new key.
        config.ticketer = rustls::crypto::ring::Ticketer::new().map_err(|e| {
            TlsError::Settings(format!("TLS session tickets: cannot make a key: {e}"))
        })?;
        Ok(TlsConfig(Arc::new(config)))
    }

    pub(crate) fn server_config(&self) -> &Arc<ServerConfig> {
        &self.0
    }

    /// What a forked worker holds: a copy of the config whose in-memory
    /// session cache is its own (here: none at all), the ticket key shared.
    #[cfg(test)]
    pub(crate) fn as_in_another_worker(&self) -> TlsConfig {
        let mut config = (*self.0).clone();
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        TlsConfig(Arc::new(config))
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

#[cfg(test)]
mod tests {
    use super::super::testkit::{write_server_files, Ca, TempDir};
    use super::*;

    fn load_err(settings: &TlsSettings) -> String {
        match TlsConfig::load(settings) {
            Ok(_) => panic!("loaded: {settings:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn files(dir: &TempDir) -> (Ca, TlsSettings) {
        let ca = Ca::new("Test CA");
        let (certfile, keyfile) = write_server_files(dir, &ca.server());
        let settings = TlsSettings {
            certfile: Some(certfile),
            keyfile: Some(keyfile),
            ..TlsSettings::default()
        };
        (ca, settings)
    }

    #[test]
    fn loads_cert_and_key_and_offers_http11_then_http10() {
        let dir = TempDir::new();
        let (_, settings) = files(&dir);
        let config = TlsConfig::load(&settings).expect("load");
        assert_eq!(
            config.server_config().alpn_protocols,
            vec![b"http/1.1".to_vec(), b"http/1.0".to_vec()]
        );
        assert!(config.server_config().ignore_client_order);
    }

    #[test]
    fn key_may_live_in_the_certfile() {
        let dir = TempDir::new();
        let ca = Ca::new("Test CA");
        let issued = ca.server();
        let both = dir.write(
            "both.pem",
            &format!("{}{}", issued.key_pem, issued.cert_pem),
        );
        let settings = TlsSettings {
            certfile: Some(both),
            ..TlsSettings::default()
        };
        assert!(TlsConfig::load(&settings).is_ok());
    }

    #[test]
    fn key_not_matching_the_certificate_names_both_files() {
        let dir = TempDir::new();
        let (ca, mut settings) = files(&dir);
        let other = dir.write("other-key.pem", &ca.server().key_pem);
        settings.keyfile = Some(other.clone());
        let e = load_err(&settings);
        let certfile = settings
            .certfile
            .as_deref()
            .map(Path::display)
            .map(|d| d.to_string());
        assert_eq!(
            e,
            format!(
                "keyfile {}: private key does not match the certificate in certfile {}",
                other.display(),
                certfile.unwrap_or_default()
            )
        );
    }

    #[test]
    fn unreadable_files_are_named() {
        let dir = TempDir::new();
        let (_, settings) = files(&dir);
        let missing = dir.path().join("missing.pem");

        let mut s = settings.clone();
        s.certfile = Some(missing.clone());
        let e = load_err(&s);
        assert!(
            e.starts_with(&format!("certfile {}: cannot read: ", missing.display())),
            "{e}"
        );

        let mut s = settings.clone();
        s.keyfile = Some(dir.path().to_path_buf());
        let e = load_err(&s);
        assert!(
            e.starts_with(&format!("keyfile {}: cannot read: ", dir.path().display())),
            "{e}"
        );

        let mut s = settings;
        s.ca_certs = Some(missing.clone());
        let e = load_err(&s);
        assert!(
            e.starts_with(&format!("ca_certs {}: cannot read: ", missing.display())),
            "{e}"
        );
    }

    #[test]
    fn files_without_the_needed_pem_sections_are_named() {
        let dir = TempDir::new();
        let (ca, settings) = files(&dir);
        let key_only = dir.write("key-only.pem", &ca.server().key_pem);
        let cert_only = dir.write("cert-only.pem", &ca.cert_pem);
        let junk = dir.write("junk.pem", "not a pem file\n");

        let mut s = settings.clone();
        s.certfile = Some(key_only);
        assert!(load_err(&s).contains("no certificate found"));

        let mut s = settings.clone();
        s.keyfile = Some(cert_only);
        let e = load_err(&s);
        assert!(
            e.starts_with("keyfile ") && e.contains("no private key found"),
            "{e}"
        );

        let mut s = settings;
        s.ca_certs = Some(junk.clone());
        assert_eq!(
            load_err(&s),
            format!(
                "ca_certs {}: no certificate found (expected PEM \"BEGIN CERTIFICATE\" sections)",
                junk.display()
            )
        );
    }

    #[test]
    fn encrypted_key_is_reported_as_such() {
        let dir = TempDir::new();
        let (_, mut settings) = files(&dir);
        let enc = dir.write(
            "enc.pem",
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIBvTBXBgkqhkiG9w0BBQ0wSjApBgkqhkiG9w0BBQwwHAQI\n-----END ENCRYPTED PRIVATE KEY-----\n",
        );
        settings.keyfile = Some(enc);
        assert!(load_err(&settings).contains("the private key is encrypted"));
    }

    #[test]
    fn corrupt_certificate_der_is_a_certfile_error() {
        let dir = TempDir::new();
        let (_, mut settings) = files(&dir);
        let bad = dir.write(
            "bad.pem",
            "-----BEGIN CERTIFICATE-----\nAAECAwQFBgcICQ==\n-----END CERTIFICATE-----\n",
        );
        settings.certfile = Some(bad.clone());
        let e = load_err(&settings);
        assert!(
            e.starts_with(&format!("certfile {}: unusable certificate", bad.display())),
            "{e}"
        );
    }

    #[test]
    fn client_cert_checks_need_ca_certs() {
        let dir = TempDir::new();
        let (_, mut settings) = files(&dir);
        settings.cert_reqs = CertReqs::Required;
        assert_eq!(
            load_err(&settings),
            "cert_reqs 2 needs ca_certs: client certificates are checked against that CA bundle"
        );
        settings.cert_reqs = CertReqs::Optional;
        assert!(load_err(&settings).starts_with("cert_reqs 1 needs ca_certs"));
    }

    #[test]
    fn keyfile_without_certfile_is_refused() {
        let dir = TempDir::new();
        let (_, mut settings) = files(&dir);
        settings.certfile = None;
        assert!(load_err(&settings).starts_with("certfile: not set"));
    }

    #[test]
    fn unknown_cipher_name_fails_the_load() {
        let dir = TempDir::new();
        let (_, mut settings) = files(&dir);
        settings.ciphers = Some("ECDHE-ECDSA-AES128-GCM-SHA256:RC4-SHA".into());
        assert!(load_err(&settings).starts_with("ciphers: unknown cipher suite \"RC4-SHA\""));
    }

    #[test]
    fn tls12_suites_for_the_wrong_key_type_are_refused() {
        let dir = TempDir::new();
        let (_, mut settings) = files(&dir);
        // The test key is ECDSA; these suites need RSA.
        settings.ciphers = Some("ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384".into());
        let e = load_err(&settings);
        assert!(
            e.starts_with("ciphers: none of the TLS 1.2 suites named"),
            "{e}"
        );
        settings.ciphers = Some("ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES128-GCM-SHA256".into());
        assert!(TlsConfig::load(&settings).is_ok());
    }

    #[test]
    fn tls12_is_offered_only_when_a_tls12_suite_is() {
        let dir = TempDir::new();
        let (_, mut settings) = files(&dir);
        let versions = |s: &TlsSettings| {
            let mut p = rustls::crypto::ring::default_provider();
            if let Some(list) = s.ciphers.as_deref() {
                p.cipher_suites = ciphers::parse(list).unwrap_or_default();
            }
            versions_for(&p)
                .iter()
                .map(|v| v.version)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            versions(&settings),
            [ProtocolVersion::TLSv1_3, ProtocolVersion::TLSv1_2]
        );
        settings.ciphers = Some("TLS_AES_128_GCM_SHA256".into());
        assert_eq!(versions(&settings), [ProtocolVersion::TLSv1_3]);
    }

    #[test]
    fn reload_reads_the_files_again() {
        let dir = TempDir::new();
        let (ca, settings) = files(&dir);
        let first = TlsConfig::load(&settings).expect("first load");
        // A renewed key whose certificate has not been written yet: the reload fails
        // and says why; the old config is untouched and still usable.
        let renewed = ca.server();
        dir.write("key.pem", &renewed.key_pem);
        assert!(load_err(&settings).contains("does not match"));
        assert!(super::super::TlsConn::new(&first).is_ok());
        dir.write("cert.pem", &renewed.cert_pem);
        let second = TlsConfig::load(&settings).expect("reload");
        assert!(!Arc::ptr_eq(first.server_config(), second.server_config()));
    }
}
