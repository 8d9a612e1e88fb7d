//! Test helpers: certificates made at test time, PEM files in a scratch
//! directory, and an in-memory pair of a rustls client and a `TlsConn`
//! whose bytes are shuttled in pieces of a chosen size.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ClientConfig, ClientConnection, RootCertStore, SupportedCipherSuite};

use super::{TlsConfig, TlsConn, TlsError};

/// A scratch directory removed when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ferrocorn-tls-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        TempDir(dir)
    }

    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, contents).expect("write scratch file");
        path
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A certificate with its key, as PEM and as DER.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_der: CertificateDer<'static>,
    pub key_der: PrivateKeyDer<'static>,
}

/// A certificate authority made at test time (ECDSA P-256).
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pub cert_pem: String,
    pub cert_der: CertificateDer<'static>,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).expect("CA cert");
        Ca {
            cert_pem: cert.pem(),
            cert_der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A server certificate for `localhost`.
    pub fn server(&self) -> Issued {
        self.issue("localhost", ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate named `name`.
    pub fn client(&self, name: &str) -> Issued {
        self.issue(name, ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn issue(&self, name: &str, usage: ExtendedKeyUsagePurpose) -> Issued {
        let key = KeyPair::generate().expect("leaf key");
        let mut params = CertificateParams::new(vec![name.to_string()]).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![usage];
        let cert = params.signed_by(&key, &self.issuer).expect("leaf cert");
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().clone(),
            key_der: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        }
    }
}

/// A client trusting `server_ca`, offering ALPN `http/1.1`, with an optional
/// client certificate and optional cipher suite list.
pub fn client_config(
    server_ca: &Ca,
    client_cert: Option<&Issued>,
    suites: Option<Vec<SupportedCipherSuite>>,
) -> Arc<ClientConfig> {
    let mut provider = rustls::crypto::ring::default_provider();
    if let Some(suites) = suites {
        provider.cipher_suites = suites;
    }
    let mut roots = RootCertStore::empty();
    roots
        .add(server_ca.cert_der.clone())
        .expect("trust server CA");
    let builder = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .expect("client versions")
        .with_root_certificates(roots);
    let mut config = match client_cert {
        Some(c) => builder
            .with_client_auth_cert(vec![c.cert_der.clone()], c.key_der.clone_key())
            .expect("client cert"),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// A client and a server connection, bytes moved between them in pieces of
/// `chunk` bytes (each piece one `receive` / `read_tls` call).
pub struct Pair {
    pub client: ClientConnection,
    pub server: TlsConn,
    pub chunk: usize,
    /// Plaintext the server received.
    pub server_plain: Vec<u8>,
    /// Plaintext the client received.
    pub client_plain: Vec<u8>,
}

/// Which side failed, and how (the payloads are read through `Debug` in
/// assertion messages).
#[derive(Debug)]
#[allow(dead_code)]
pub enum Failure {
    Server(TlsError),
    Client(rustls::Error),
    Stuck,
}

impl Pair {
    pub fn new(server: &TlsConfig, client: Arc<ClientConfig>, chunk: usize) -> Pair {
        Pair {
            client: ClientConnection::new(client, "localhost".try_into().expect("name"))
                .expect("client conn"),
            server: TlsConn::new(server).expect("server conn"),
            chunk: chunk.max(1),
            server_plain: Vec::new(),
            client_plain: Vec::new(),
        }
    }

    /// Moves everything the client has to send into the server; returns
    /// the byte count. On a server error the server's alert still goes to
    /// the client, as the worker would send it before closing.
    pub fn client_to_server(&mut self) -> Result<usize, Failure> {
        let mut wire = Vec::new();
        while self.client.wants_write() {
            self.client.write_tls(&mut wire).expect("client write_tls");
        }
        for piece in wire.chunks(self.chunk) {
            if let Err(e) = self.server.receive(piece, &mut self.server_plain) {
                let _ = self.server_to_client();
                return Err(Failure::Server(e));
            }
        }
        Ok(wire.len())
    }

    /// Moves the server's pending output to the client; returns the byte count.
    pub fn server_to_client(&mut self) -> Result<usize, Failure> {
        let mut wire = Vec::new();
        self.server.take_output(&mut wire);
        self.deliver_to_client(&wire)?;
        Ok(wire.len())
    }

    /// Feeds `wire` (server output) to the client, reading its plaintext.
    pub fn deliver_to_client(&mut self, wire: &[u8]) -> Result<(), Failure> {
        for piece in wire.chunks(self.chunk) {
            let mut rest = piece;
            while !rest.is_empty() {
                self.client
                    .read_tls(&mut rest)
                    .map_err(|e| Failure::Client(rustls::Error::General(e.to_string())))?;
                self.client.process_new_packets().map_err(Failure::Client)?;
                let mut buf = [0u8; 4096];
                while let Ok(n @ 1..) = self.client.reader().read(&mut buf) {
                    self.client_plain.extend_from_slice(&buf[..n]);
                }
            }
        }
        Ok(())
    }

    /// Runs the handshake to its end on both sides.
    pub fn handshake(&mut self) -> Result<(), Failure> {
        for _ in 0..16 {
            let sent = self.client_to_server()?;
            let answered = self.server_to_client()?;
            if sent == 0
                && answered == 0
                && !self.client.is_handshaking()
                && !self.server.is_handshaking()
            {
                return Ok(());
            }
        }
        Err(Failure::Stuck)
    }

    /// The client writes `bytes`; they are moved to the server.
    pub fn client_sends(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        let mut rest = bytes;
        while !rest.is_empty() {
            // The client's buffer is bounded too: write what it takes, move it on.
            let n = self.client.writer().write(rest).expect("client write");
            self.client_to_server()?;
            rest = &rest[n..];
        }
        Ok(())
    }

    /// The server sends `bytes` through `TlsConn::send`; they are moved to the client.
    pub fn server_sends(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        let mut wire = Vec::new();
        self.server
            .send(bytes, &mut wire)
            .map_err(Failure::Server)?;
        self.deliver_to_client(&wire)
    }
}

/// Server files for `issued` in `dir`: (certfile, keyfile).
pub fn write_server_files(dir: &TempDir, issued: &Issued) -> (PathBuf, PathBuf) {
    (
        dir.write("cert.pem", &issued.cert_pem),
        dir.write("key.pem", &issued.key_pem),
    )
}
