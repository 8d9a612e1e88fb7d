//! `TlsConn`: one server-side TLS connection, sans-IO. Ciphertext from the
//! socket goes in and plaintext comes out; plaintext from the server goes in
//! and ciphertext to write comes out. No socket is ever touched here.

use std::io::{Read, Write};

use rustls::ServerConnection;

use super::{ciphers, TlsConfig, TlsError};

/// Most TLS output (and plaintext written before the handshake ends) held
/// inside rustls at once: rustls' own default, named so it is a decision.
/// `send` drains after every record batch, so this bounds a burst, not a response.
const BUFFER_LIMIT: usize = 64 * 1024;

pub struct TlsConn {
    conn: ServerConnection,
    /// Plaintext sent while handshaking that rustls' buffer could not take;
    /// handed to rustls once the handshake is over (`take_output`).
    deferred: Vec<u8>,
    peer_closed: bool,
}

impl TlsConn {
    pub fn new(config: &TlsConfig) -> Result<TlsConn, TlsError> {
        let mut conn =
            ServerConnection::new(config.server_config().clone()).map_err(TlsError::Peer)?;
        conn.set_buffer_limit(Some(BUFFER_LIMIT));
        Ok(TlsConn {
            conn,
            deferred: Vec::new(),
            peer_closed: false,
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
            let read = match self.conn.read_tls(&mut rest) {
                Ok(n) => n,
                // rustls refuses more input only when a message is too big
                // to buffer; processing the buffered part names the error.
                Err(_) => 0,
            };
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
    /// handshake is over nothing can be encrypted: the bytes are kept and
    /// come out of `take_output` once it is.
    pub fn send(&mut self, plaintext: &[u8], out: &mut Vec<u8>) -> Result<(), TlsError> {
        if !self.deferred.is_empty() {
            self.deferred.extend_from_slice(plaintext);
            self.take_output(out);
            return Ok(());
        }
        let mut rest = plaintext;
        while !rest.is_empty() {
            let n = self
                .conn
                .writer()
                .write(rest)
                .map_err(|_| TlsError::Closed)?;
            self.drain_tls(out);
            if n == 0 {
                if self.conn.is_handshaking() {
                    self.deferred.extend_from_slice(rest);
                    break;
                }
                return Err(TlsError::Closed);
            }
            rest = &rest[n..];
        }
        Ok(())
    }

    /// Appends every pending TLS record (handshake, tickets, alerts, and data
    /// sent before the handshake was over) to `out`. Call after `receive`,
    /// after `new`-then-`receive` errors, and whenever the engine can write.
    pub fn take_output(&mut self, out: &mut Vec<u8>) {
        self.drain_tls(out);
        if !self.deferred.is_empty() && !self.conn.is_handshaking() {
            let deferred = std::mem::take(&mut self.deferred);
            // Cannot defer again: the handshake is over. A refusal (the
            // connection failed) drops the bytes, which is all there is to do.
            let _ = self.send(&deferred, out);
        }
    }

    /// Appends a `close_notify` alert (and anything still pending) to `out`;
    /// send it before closing the socket for a clean TLS shutdown.
    pub fn close_notify(&mut self, out: &mut Vec<u8>) {
        self.take_output(out);
        self.conn.send_close_notify();
        self.drain_tls(out);
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

    fn drain_tls(&mut self, out: &mut Vec<u8>) {
        while self.conn.wants_write() {
            // Writing into a Vec cannot fail.
            if self.conn.write_tls(out).is_err() {
                break;
            }
        }
    }
}
