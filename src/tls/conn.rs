//! `TlsConn`: one server-side TLS connection, sans-IO. Ciphertext from the
//! socket goes in and plaintext comes out; plaintext from the server goes in
//! and ciphertext to write comes out. No socket is ever touched here.

use std::io::{Read, Write};

use rustls::ServerConnection;

use super::{ciphers, TlsConfig, TlsError};

/// Most TLS output held inside rustls at once: rustls' own default, named so
/// it is a decision. `send` drains after every batch of records, so this
/// bounds a burst, not a response.
const BUFFER_LIMIT: usize = 64 * 1024;

pub struct TlsConn {
    conn: ServerConnection,
    /// Plaintext sent while handshaking, encrypted once the handshake is over
    /// (`take_output`). Kept here rather than in rustls, which would send
    /// it early in TLS 1.3 (0.5-RTT), before a client certificate is checked.
    deferred: Vec<u8>,
    peer_closed: bool,
    /// We sent `close_notify`: nothing more may be sent.
    closed_for_send: bool,
}

impl TlsConn {
    pub fn new(config: &TlsConfig) -> Result<TlsConn, TlsError> {
        let mut conn = ServerConnection::new(config.server_config().clone())
            .map_err(|e| TlsError::Settings(format!("TLS connection setup: {e}")))?;
        conn.set_buffer_limit(Some(BUFFER_LIMIT));
        Ok(TlsConn {
            conn,
            deferred: Vec::new(),
            peer_closed: false,
            closed_for_send: false,
        })
    }

    /// Ciphertext received from the peer; appends any decrypted plaintext to
    /// `plain`. Call `take_output` afterwards, whatever the result: the
    /// handshake's replies, session tickets and, after an error, the alert
    /// to send before closing are there. After an error the connection is
    /// finished. Bytes after the peer's `close_notify` are ignored.
    pub fn receive(&mut self, ciphertext: &[u8], plain: &mut Vec<u8>) -> Result<(), TlsError> {
        let mut rest = ciphertext;
        while !rest.is_empty() && !self.peer_closed {
            // rustls refuses more input only when a message is too big to
            // buffer; reading nothing lets processing name the error.
            let read = self.conn.read_tls(&mut rest).unwrap_or_default();
            let state = self.conn.process_new_packets().map_err(TlsError::Peer)?;
            let n = state.plaintext_bytes_to_read();
            if n > 0 {
                let start = plain.len();
                plain.resize(start + n, 0);
                if self.conn.reader().read_exact(&mut plain[start..]).is_err() {
                    // rustls said `n` bytes were ready; not finding them is a
                    // broken promise, not the peer's doing, but the connection
                    // cannot go on either way.
                    plain.truncate(start);
                    return Err(TlsError::Peer(rustls::Error::General(
                        "decrypted data could not be read".into(),
                    )));
                }
            }
            if state.peer_has_closed() {
                self.peer_closed = true;
            } else if read == 0 {
                return Err(TlsError::Peer(rustls::Error::General(
                    "TLS record too large to buffer".into(),
                )));
            }
        }
        Ok(())
    }

    /// Encrypts application bytes, appending the records to `out`. Before the
    /// handshake is over nothing is encrypted: the bytes are kept and come
    /// out of `take_output` once it is.
    pub fn send(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), TlsError> {
        if self.closed_for_send {
            return Err(TlsError::Closed);
        }
        if self.conn.is_handshaking() || !self.deferred.is_empty() {
            self.deferred.extend_from_slice(plaintext);
            self.take_output(out);
            return Ok(());
        }
        self.encrypt(plaintext, out)
    }

    /// Appends every pending TLS record (handshake replies, session tickets,
    /// alerts, and data sent before the handshake was over) to `out`. Call
    /// after every `receive`, whether it succeeded or not.
    pub fn take_output(&mut self, out: &mut Vec<u8>) {
        self.drain_tls(out);
        if !self.deferred.is_empty() && !self.conn.is_handshaking() {
            let deferred = std::mem::take(&mut self.deferred);
            // A refusal means the connection failed: the bytes have nowhere
            // to go, and the failure was already reported by `receive`.
            let _ = self.encrypt(&deferred, out);
        }
    }

    /// Appends a `close_notify` alert (and anything still pending) to `out`;
    /// send it before closing the socket for a clean TLS shutdown.
    pub fn close_notify(&mut self, out: &mut Vec<u8>) {
        self.take_output(out);
        self.conn.send_close_notify();
        self.closed_for_send = true;
        self.drain_tls(out);
    }

    /// Whether `take_output` has something to give.
    pub fn wants_write(&self) -> bool {
        self.conn.wants_write() || (!self.deferred.is_empty() && !self.conn.is_handshaking())
    }

    /// The peer sent `close_notify`: no more data will come.
    pub fn peer_closed(&self) -> bool {
        self.peer_closed
    }

    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// The negotiated application protocol (`http/1.1`), if the client used ALPN.
    pub fn alpn(&self) -> Option<&[u8]> {
        self.conn.alpn_protocol()
    }

    /// The client's certificate (DER), when it sent one that was verified.
    pub fn peer_certificate_der(&self) -> Option<&[u8]> {
        self.conn
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|c| c.as_ref())
    }

    /// IANA name of the negotiated cipher suite, for logs.
    pub fn cipher_suite(&self) -> Option<&'static str> {
        self.conn
            .negotiated_cipher_suite()
            .and_then(|s| ciphers::iana_name(s.suite()))
    }

    /// `"TLSv1.3"` or `"TLSv1.2"` once negotiated, for logs.
    pub fn protocol_version(&self) -> Option<&'static str> {
        match self.conn.protocol_version()? {
            rustls::ProtocolVersion::TLSv1_3 => Some("TLSv1.3"),
            rustls::ProtocolVersion::TLSv1_2 => Some("TLSv1.2"),
            _ => None,
        }
    }

    fn encrypt(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), TlsError> {
        let mut rest = plaintext;
        while !rest.is_empty() {
            let n = self
                .conn
                .writer()
                .write(rest)
                .map_err(|_| TlsError::Closed)?;
            self.drain_tls(out);
            if n == 0 {
                // Nothing taken with the output just drained: rustls will
                // not send (the connection failed or is closing).
                return Err(TlsError::Closed);
            }
            rest = &rest[n..];
        }
        Ok(())
    }

    fn drain_tls(&mut self, out: &mut Vec<u8>) {
        while self.conn.wants_write() {
            // Writing into a Vec cannot fail.
            if self.conn.write_tls(out).is_err() {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{client_config, write_server_files, Ca, Failure, Pair, TempDir};
    use super::super::{CertReqs, TlsSettings};
    use super::*;

    const REQUEST: &[u8] = b"GET /hello?x=1 HTTP/1.1\r\nHost: localhost\r\n\r\n";
    const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";

    struct Server {
        _dir: TempDir,
        ca: Ca,
        config: TlsConfig,
    }

    fn server(cert_reqs: CertReqs, ciphers: Option<&str>) -> Server {
        let dir = TempDir::new();
        let ca = Ca::new("Test CA");
        let (certfile, keyfile) = write_server_files(&dir, &ca.server());
        let ca_certs = dir.write("ca.pem", &ca.cert_pem);
        let config = TlsConfig::load(&TlsSettings {
            certfile: Some(certfile),
            keyfile: Some(keyfile),
            ca_certs: Some(ca_certs),
            cert_reqs,
            ciphers: ciphers.map(String::from),
            alpn: Vec::new(),
        })
        .expect("load server config");
        Server {
            _dir: dir,
            ca,
            config,
        }
    }

    #[test]
    fn handshake_then_request_and_response_at_every_small_split() {
        let s = server(CertReqs::None, None);
        for chunk in [1, 2, 3, 5, 7, 13, 64, 4095, 4097, 16389, usize::MAX] {
            let mut p = Pair::new(&s.config, client_config(&s.ca, None, None), chunk);
            assert!(p.server.is_handshaking());
            p.handshake()
                .unwrap_or_else(|e| panic!("chunk {chunk}: {e:?}"));
            assert!(!p.server.is_handshaking());
            assert_eq!(p.server.alpn(), Some(&b"http/1.1"[..]));
            assert_eq!(p.server.protocol_version(), Some("TLSv1.3"));
            assert_eq!(p.server.peer_certificate_der(), None);

            p.client_sends(REQUEST).expect("request");
            assert_eq!(p.server_plain, REQUEST, "chunk {chunk}");
            p.server_sends(RESPONSE).expect("response");
            assert_eq!(p.client_plain, RESPONSE, "chunk {chunk}");
        }
    }

    #[test]
    fn connection_to_another_worker_resumes_with_a_ticket() {
        use rustls::HandshakeKind;
        let s = server(CertReqs::None, None);
        let client = client_config(&s.ca, None, None);
        let mut first = Pair::new(&s.config, client.clone(), 300);
        first.handshake().expect("first handshake");
        first.client_sends(REQUEST).expect("request");
        assert_eq!(first.client.handshake_kind(), Some(HandshakeKind::Full));
        let copy = s.config.as_in_another_worker();
        let mut second = Pair::new(&copy, client, 300);
        second.handshake().expect("second handshake");
        assert_eq!(second.client.handshake_kind(), Some(HandshakeKind::Resumed));
        second.client_sends(REQUEST).expect("request");
        assert_eq!(second.server_plain, REQUEST);
    }

    #[test]
    fn wants_write_tells_when_output_is_pending() {
        let s = server(CertReqs::None, None);
        let mut p = Pair::new(&s.config, client_config(&s.ca, None, None), 300);
        assert!(!p.server.wants_write());
        let mut hello = Vec::new();
        while p.client.wants_write() {
            p.client.write_tls(&mut hello).expect("client hello");
        }
        let mut plain = Vec::new();
        p.server
            .receive(&hello, &mut plain)
            .expect("client hello in");
        assert!(p.server.wants_write());
        let mut out = Vec::new();
        p.server.take_output(&mut out);
        assert!(!out.is_empty());
        assert!(!p.server.wants_write());
    }

    #[test]
    fn large_bodies_cross_many_records_both_ways() {
        let s = server(CertReqs::None, None);
        let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let mut p = Pair::new(&s.config, client_config(&s.ca, None, None), 1000);
        p.handshake().expect("handshake");
        p.client_sends(&body).expect("upload");
        assert_eq!(p.server_plain, body);
        // One `send` much larger than the buffer limit still goes out whole.
        p.server_sends(&body).expect("download");
        assert_eq!(p.client_plain, body);
    }

    #[test]
    fn pipelined_requests_in_one_read_all_come_out() {
        let s = server(CertReqs::None, None);
        let mut p = Pair::new(&s.config, client_config(&s.ca, None, None), usize::MAX);
        p.handshake().expect("handshake");
        for _ in 0..3 {
            p.client.writer().write_all(REQUEST).expect("write");
        }
        p.client_to_server().expect("deliver");
        assert_eq!(p.server_plain, REQUEST.repeat(3));
    }

    #[test]
    fn data_sent_before_handshake_ends_is_flushed_after_it() {
        let s = server(CertReqs::None, None);
        let mut p = Pair::new(&s.config, client_config(&s.ca, None, None), 100);
        let mut early = Vec::new();
        // Far more than rustls buffers at once.
        let big = vec![b'x'; 3 * BUFFER_LIMIT];
        p.server
            .send(&big, &mut early)
            .expect("send before handshake");
        assert!(early.is_empty(), "nothing can be encrypted yet");
        // Not even once the server's keys exist (TLS 1.3 would allow it).
        p.client_to_server().expect("client hello");
        let mut flight = Vec::new();
        p.server
            .send(b"!", &mut flight)
            .expect("send while handshaking");
        assert!(!flight.is_empty(), "the handshake's own output comes out");
        p.deliver_to_client(&flight).expect("server flight");
        assert!(!p.client.is_handshaking(), "the client has all it needs");
        assert!(
            p.client_plain.is_empty(),
            "no data before the client finished"
        );
        p.handshake().expect("handshake");
        let mut expected = big.clone();
        expected.push(b'!');
        assert_eq!(p.client_plain, expected);
        // Order is kept across the deferred part.
        p.server_sends(b"tail").expect("send after");
        assert_eq!(&p.client_plain[expected.len()..], b"tail");
    }

    #[test]
    fn close_notify_reaches_the_client_and_the_peers_is_seen() {
        let s = server(CertReqs::None, None);
        let mut p = Pair::new(&s.config, client_config(&s.ca, None, None), 7);
        p.handshake().expect("handshake");
        let mut wire = Vec::new();
        p.server.close_notify(&mut wire);
        p.deliver_to_client(&wire).expect("alert");
        let state = p.client.process_new_packets().expect("client state");
        assert!(state.peer_has_closed());
        assert!(matches!(
            p.server.send(b"late", &mut wire),
            Err(TlsError::Closed)
        ));

        assert!(!p.server.peer_closed());
        p.client.writer().write_all(b"last").expect("write");
        p.client.send_close_notify();
        p.client_to_server().expect("close");
        assert!(p.server.peer_closed());
        assert_eq!(p.server_plain, b"last");
        // Anything after close_notify is ignored, not an error.
        let mut plain = Vec::new();
        p.server
            .receive(b"\x17\x03\x03junk", &mut plain)
            .expect("ignored");
        assert!(plain.is_empty());
    }

    #[test]
    fn garbage_from_the_peer_is_an_error_with_an_alert_not_a_panic() {
        let s = server(CertReqs::None, None);
        let inputs: [&[u8]; 5] = [
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            b"\x16\x03\x01\x00\x05hello",
            b"\x16\x03\x01\xff\xff",
            &[0u8; 64],
            &[0xffu8; 20_000],
        ];
        for input in inputs {
            let mut conn = TlsConn::new(&s.config).expect("conn");
            let mut plain = Vec::new();
            let e = conn
                .receive(input, &mut plain)
                .expect_err("garbage accepted");
            assert!(e.is_peer_fault(), "{e}");
            assert!(!e.to_string().contains('\n'));
            assert!(plain.is_empty());
            let mut out = Vec::new();
            conn.take_output(&mut out);
            // The same error again, never a panic, if the worker calls once more.
            assert!(conn.receive(b"more", &mut plain).is_err());
        }
    }

    #[test]
    fn corrupted_client_hellos_never_panic() {
        let s = server(CertReqs::Optional, None);
        let mut hello = Vec::new();
        let mut client = rustls::ClientConnection::new(
            client_config(&s.ca, None, None),
            "localhost".try_into().expect("name"),
        )
        .expect("client");
        while client.wants_write() {
            client.write_tls(&mut hello).expect("hello");
        }
        let mut refused = 0;
        for at in (0..hello.len()).step_by(3) {
            let mut bad = hello.clone();
            bad[at] ^= 0x5a;
            let mut conn = TlsConn::new(&s.config).expect("conn");
            let mut plain = Vec::new();
            // Either refused or (a flip in a field nobody checks) answered.
            if conn.receive(&bad, &mut plain).is_err() {
                refused += 1;
            }
            let mut out = Vec::new();
            conn.take_output(&mut out);
            assert!(plain.is_empty());
        }
        assert!(refused > 0);
    }

    #[test]
    fn oversized_handshake_message_is_refused_not_buffered() {
        let s = server(CertReqs::None, None);
        let mut conn = TlsConn::new(&s.config).expect("conn");
        let mut plain = Vec::new();
        // A ClientHello claiming 16 MiB, sent as full-size records.
        let mut payload = vec![0x01, 0xff, 0xff, 0xff];
        payload.resize(16384, 0x41);
        let mut record = vec![0x16, 0x03, 0x01, 0x40, 0x00];
        record.extend_from_slice(&payload);
        let mut result = Ok(());
        for _ in 0..8 {
            result = conn.receive(&record, &mut plain);
            if result.is_err() {
                break;
            }
        }
        assert!(matches!(result, Err(TlsError::Peer(_))));
    }

    #[test]
    fn garbage_after_handshake_is_an_error() {
        let s = server(CertReqs::None, None);
        let mut p = Pair::new(&s.config, client_config(&s.ca, None, None), 50);
        p.handshake().expect("handshake");
        let mut plain = Vec::new();
        // An application-data record that does not decrypt.
        let mut record = b"\x17\x03\x03\x00\x20".to_vec();
        record.extend_from_slice(&[0x42; 32]);
        let e = p
            .server
            .receive(&record, &mut plain)
            .expect_err("bad record accepted");
        assert!(matches!(e, TlsError::Peer(_)), "{e}");
        let mut alert = Vec::new();
        p.server.take_output(&mut alert);
        assert!(!alert.is_empty(), "an alert is sent before closing");
    }

    #[test]
    fn client_without_alpn_still_connects_and_alpn_is_none() {
        let s = server(CertReqs::None, None);
        let mut cfg = (*client_config(&s.ca, None, None)).clone();
        cfg.alpn_protocols.clear();
        let mut p = Pair::new(&s.config, std::sync::Arc::new(cfg), 300);
        p.handshake().expect("handshake");
        assert_eq!(p.server.alpn(), None);
    }

    #[test]
    fn client_offering_only_h2_is_refused() {
        let s = server(CertReqs::None, None);
        let mut cfg = (*client_config(&s.ca, None, None)).clone();
        cfg.alpn_protocols = vec![b"h2".to_vec()];
        let mut p = Pair::new(&s.config, std::sync::Arc::new(cfg), 300);
        assert!(matches!(p.handshake(), Err(Failure::Server(_))));
    }

    #[test]
    fn server_order_picks_h2_or_http11_as_offered() {
        let dir = TempDir::new();
        let ca = Ca::new("Test CA");
        let (certfile, keyfile) = write_server_files(&dir, &ca.server());
        let config = TlsConfig::load(&TlsSettings {
            certfile: Some(certfile),
            keyfile: Some(keyfile),
            alpn: vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            ..TlsSettings::default()
        })
        .expect("load");
        for (offered, chosen) in [
            (vec![b"http/1.1".to_vec(), b"h2".to_vec()], &b"h2"[..]),
            (vec![b"http/1.1".to_vec()], &b"http/1.1"[..]),
        ] {
            let mut cfg = (*client_config(&ca, None, None)).clone();
            cfg.alpn_protocols = offered;
            let mut p = Pair::new(&config, std::sync::Arc::new(cfg), 300);
            p.handshake().expect("handshake");
            assert_eq!(p.server.alpn(), Some(chosen));
        }
    }

    #[test]
    fn required_client_cert_missing_fails_the_handshake() {
        let s = server(CertReqs::Required, None);
        let mut p = Pair::new(&s.config, client_config(&s.ca, None, None), 300);
        match p.handshake() {
            Err(Failure::Server(e)) => assert!(e.is_peer_fault(), "{e}"),
            other => panic!("expected a server-side failure, got {other:?}"),
        }
    }

    #[test]
    fn required_client_cert_from_the_ca_is_accepted_and_visible() {
        let s = server(CertReqs::Required, None);
        let client = s.ca.client("alice");
        let mut p = Pair::new(&s.config, client_config(&s.ca, Some(&client), None), 300);
        p.handshake().expect("handshake");
        assert_eq!(
            p.server.peer_certificate_der(),
            Some(client.cert_der.as_ref())
        );
        p.client_sends(REQUEST).expect("request");
        assert_eq!(p.server_plain, REQUEST);
    }

    #[test]
    fn client_cert_from_another_ca_is_refused() {
        for reqs in [CertReqs::Required, CertReqs::Optional] {
            let s = server(reqs, None);
            let stranger = Ca::new("Other CA").client("mallory");
            let mut p = Pair::new(&s.config, client_config(&s.ca, Some(&stranger), None), 300);
            assert!(matches!(p.handshake(), Err(Failure::Server(_))), "{reqs:?}");
        }
    }

    #[test]
    fn optional_client_cert_may_be_absent_or_present() {
        let s = server(CertReqs::Optional, None);
        let mut p = Pair::new(&s.config, client_config(&s.ca, None, None), 300);
        p.handshake().expect("without a certificate");
        assert_eq!(p.server.peer_certificate_der(), None);

        let client = s.ca.client("bob");
        let mut p = Pair::new(&s.config, client_config(&s.ca, Some(&client), None), 300);
        p.handshake().expect("with a certificate");
        assert_eq!(
            p.server.peer_certificate_der(),
            Some(client.cert_der.as_ref())
        );
    }

    #[test]
    fn no_client_cert_is_asked_for_with_cert_reqs_0() {
        let s = server(CertReqs::None, None);
        let client = s.ca.client("carol");
        let mut p = Pair::new(&s.config, client_config(&s.ca, Some(&client), None), 300);
        p.handshake().expect("handshake");
        assert_eq!(p.server.peer_certificate_der(), None);
    }

    #[test]
    fn cipher_list_picks_the_negotiated_suite() {
        use rustls::crypto::ring::cipher_suite as cs;
        // TLS 1.3 named: only that suite is allowed for TLS 1.3.
        let s = server(CertReqs::None, Some("TLS_CHACHA20_POLY1305_SHA256"));
        let mut p = Pair::new(&s.config, client_config(&s.ca, None, None), 300);
        p.handshake().expect("handshake");
        assert_eq!(
            p.server.cipher_suite(),
            Some("TLS_CHACHA20_POLY1305_SHA256")
        );

        // A client offering only a suite outside the list cannot connect.
        let only_aes = Some(vec![cs::TLS13_AES_128_GCM_SHA256]);
        let mut p = Pair::new(&s.config, client_config(&s.ca, None, only_aes), 300);
        assert!(matches!(p.handshake(), Err(Failure::Server(_))));

        // TLS 1.2 names: a TLS 1.2 client gets the named suite, the server's order first.
        let s = server(
            CertReqs::None,
            Some("ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-GCM-SHA256"),
        );
        let tls12 = Some(vec![
            cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        ]);
        let mut p = Pair::new(&s.config, client_config(&s.ca, None, tls12), 300);
        p.handshake().expect("handshake");
        assert_eq!(p.server.protocol_version(), Some("TLSv1.2"));
        assert_eq!(
            p.server.cipher_suite(),
            Some("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256")
        );
        p.client_sends(REQUEST).expect("request");
        p.server_sends(RESPONSE).expect("response");
        assert_eq!(p.client_plain, RESPONSE);

        // A TLS 1.2 client offering only an unlisted suite is refused.
        let unlisted = Some(vec![cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]);
        let mut p = Pair::new(&s.config, client_config(&s.ca, None, unlisted), 300);
        assert!(matches!(p.handshake(), Err(Failure::Server(_))));
    }

    #[test]
    fn tls13_only_cipher_list_turns_tls12_off() {
        use rustls::crypto::ring::cipher_suite as cs;
        let s = server(CertReqs::None, Some("TLS_AES_128_GCM_SHA256"));
        let tls12 = Some(vec![cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]);
        let mut p = Pair::new(&s.config, client_config(&s.ca, None, tls12), 300);
        assert!(matches!(p.handshake(), Err(Failure::Server(_))));
    }

    #[test]
    fn existing_connection_keeps_its_config_after_reload() {
        let dir = TempDir::new();
        let ca = Ca::new("Test CA");
        let first = ca.server();
        let (certfile, keyfile) = write_server_files(&dir, &first);
        let settings = TlsSettings {
            certfile: Some(certfile),
            keyfile: Some(keyfile),
            ..TlsSettings::default()
        };
        let old = TlsConfig::load(&settings).expect("first load");
        let mut before = Pair::new(&old, client_config(&ca, None, None), 300);
        before.handshake().expect("handshake before reload");

        // The files change (certificate renewed) and the worker reloads.
        let second = ca.server();
        write_server_files(&dir, &second);
        let new = TlsConfig::load(&settings).expect("reload");

        let mut after = Pair::new(&new, client_config(&ca, None, None), 300);
        after.handshake().expect("handshake after reload");
        let served = |p: &Pair| {
            p.client
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| c.as_ref().to_vec())
        };
        assert_eq!(served(&after), Some(second.cert_der.to_vec()));
        assert_eq!(served(&before), Some(first.cert_der.to_vec()));
        // The old connection still works.
        before.client_sends(REQUEST).expect("old conn request");
        before.server_sends(RESPONSE).expect("old conn response");
        assert_eq!(before.client_plain, RESPONSE);
    }
}
