//! permessage-deflate negotiation (RFC 7692 §5, §7.1): read the client's
//! `Sec-WebSocket-Extensions` offers, accept the first one this server can
//! honour, and write the response's parameters.
//!
//! An offer with an unknown parameter, a repeated one or a bad value is
//! declined (the next offer is tried), as §5.1 asks. Other extensions are
//! ignored.

/// The agreed parameters of permessage-deflate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeflateParams {
    /// We reset our compressor after each message.
    pub server_no_context_takeover: bool,
    /// The client resets its compressor after each message, so we reset our decompressor.
    pub client_no_context_takeover: bool,
    /// Our LZ77 window (8-15). zlib cannot deflate with 8; such messages go out uncompressed.
    pub server_max_window_bits: u8,
    /// The window the client promised to stay within, `None` for 15 unsaid.
    pub client_max_window_bits: Option<u8>,
}

/// 15: the LZ77 window when nothing smaller is agreed (RFC 7692 §7.1.2).
pub const MAX_WINDOW_BITS: u8 = 15;
const MIN_WINDOW_BITS: u8 = 8;

impl DeflateParams {
    /// The `Sec-WebSocket-Extensions` value of the 101 response.
    pub fn response_value(&self) -> String {
        let mut v = String::from("permessage-deflate");
        if self.server_no_context_takeover {
            v.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            v.push_str("; client_no_context_takeover");
        }
        if self.server_max_window_bits < MAX_WINDOW_BITS {
            v.push_str(&format!(
                "; server_max_window_bits={}",
                self.server_max_window_bits
            ));
        }
        if let Some(bits) = self.client_max_window_bits {
            v.push_str(&format!("; client_max_window_bits={bits}"));
        }
        v
    }
}

/// The first acceptable permessage-deflate offer among every
/// `Sec-WebSocket-Extensions` field value, in order.
pub fn negotiate<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Option<DeflateParams> {
    values
        .into_iter()
        .flat_map(split_list)
        .find_map(accept_offer)
}

/// Split a header value on commas outside quoted strings.
fn split_list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(value);
    std::iter::from_fn(move || {
        let v = rest?;
        let mut quoted = false;
        let mut escaped = false;
        for (i, &b) in v.iter().enumerate() {
            if escaped {
                escaped = false;
            } else if quoted && b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                quoted = !quoted;
            } else if b == b',' && !quoted {
                rest = Some(&v[i + 1..]);
                return Some(&v[..i]);
            }
        }
        rest = None;
        Some(v)
    })
    .map(|s| s.trim_ascii())
    .filter(|s| !s.is_empty())
}

fn accept_offer(offer: &[u8]) -> Option<DeflateParams> {
    let mut parts = offer.split(|&b| b == b';').map(<[u8]>::trim_ascii);
    if !parts.next()?.eq_ignore_ascii_case(b"permessage-deflate") {
        return None;
    }
    let mut server_nct = false;
    let mut client_nct = false;
    let mut server_bits = None;
    let mut client_bits: Option<Option<u8>> = None;
    for param in parts {
        let (name, value) = match param.iter().position(|&b| b == b'=') {
            Some(i) => (
                param[..i].trim_ascii(),
                Some(unquote(param[i + 1..].trim_ascii())?),
            ),
            None => (param, None),
        };
        let name = std::str::from_utf8(name).ok()?.to_ascii_lowercase();
        match (name.as_str(), value) {
            ("server_no_context_takeover", None) if !server_nct => server_nct = true,
            ("client_no_context_takeover", None) if !client_nct => client_nct = true,
            ("server_max_window_bits", Some(v)) if server_bits.is_none() => {
                server_bits = Some(window_bits(v)?)
            }
            ("client_max_window_bits", v) if client_bits.is_none() => {
                client_bits = Some(match v {
                    Some(v) => Some(window_bits(v)?),
                    None => None,
                })
            }
            _ => return None,
        }
    }
    Some(DeflateParams {
        server_no_context_takeover: server_nct,
        client_no_context_takeover: client_nct,
        server_max_window_bits: server_bits.unwrap_or(MAX_WINDOW_BITS),
        // Echo a value the client gave: it binds the client, so our
        // decompressor may use that window. Without a value, say nothing.
        client_max_window_bits: client_bits.flatten(),
    })
}

/// A quoted-string's content (RFC 7692 §7.1.2.1 allows it for the values).
fn unquote(v: &[u8]) -> Option<&[u8]> {
    match v {
        [b'"', inner @ .., b'"'] => Some(inner),
        [b'"', ..] => None,
        _ => Some(v),
    }
}

/// 8 to 15, decimal without leading zeros.
fn window_bits(v: &[u8]) -> Option<u8> {
    match v {
        [d @ b'8'..=b'9'] => Some(d - b'0'),
        [b'1', d @ b'0'..=b'5'] => Some(10 + d - b'0'),
        _ => None,
    }
    .filter(|b| (MIN_WINDOW_BITS..=MAX_WINDOW_BITS).contains(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn neg(values: &[&str]) -> Option<DeflateParams> {
        negotiate(values.iter().map(|v| v.as_bytes()))
    }

    const PLAIN: DeflateParams = DeflateParams {
        server_no_context_takeover: false,
        client_no_context_takeover: false,
        server_max_window_bits: 15,
        client_max_window_bits: None,
    };

    #[test]
    fn a_plain_offer_is_accepted_as_is() {
        assert_eq!(neg(&["permessage-deflate"]), Some(PLAIN));
        assert_eq!(neg(&["Permessage-Deflate"]), Some(PLAIN));
        assert_eq!(PLAIN.response_value(), "permessage-deflate");
    }

    #[test]
    fn browser_offer_with_valueless_client_max_window_bits() {
        let p = neg(&["permessage-deflate; client_max_window_bits"]).unwrap();
        assert_eq!(p, PLAIN);
        assert_eq!(p.response_value(), "permessage-deflate");
    }

    #[test]
    fn every_parameter_is_honoured_and_answered() {
        let p = neg(&[
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=10; client_max_window_bits=\"12\"",
        ])
        .unwrap();
        assert_eq!(
            p,
            DeflateParams {
                server_no_context_takeover: true,
                client_no_context_takeover: true,
                server_max_window_bits: 10,
                client_max_window_bits: Some(12),
            }
        );
        assert_eq!(
            p.response_value(),
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=10; client_max_window_bits=12"
        );
    }

    #[test]
    fn bad_offers_are_declined_and_the_next_one_taken() {
        for bad in [
            "permessage-deflate; foo",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; server_max_window_bits=1a",
            "permessage-deflate; server_no_context_takeover=1",
        ] {
            assert_eq!(neg(&[bad]), None, "{bad}");
            let both = format!("{bad}, permessage-deflate; client_no_context_takeover");
            let p = neg(&[&both]).unwrap();
            assert!(p.client_no_context_takeover, "{both}");
        }
    }

    #[test]
    fn an_unclosed_quote_spoils_the_rest_of_the_field() {
        assert_eq!(
            neg(&["permessage-deflate; client_max_window_bits=\"9"]),
            None
        );
        assert_eq!(
            neg(&["permessage-deflate; client_max_window_bits=\"9, permessage-deflate"]),
            None
        );
        assert!(neg(&[
            "permessage-deflate; client_max_window_bits=\"9",
            "permessage-deflate"
        ])
        .is_some());
    }

    #[test]
    fn offers_come_from_every_field_and_other_extensions_are_skipped() {
        let p = neg(&[
            "x-webkit-deflate-frame, foo; a=\"1,2\"",
            "permessage-deflate; server_max_window_bits=8",
        ])
        .unwrap();
        assert_eq!(p.server_max_window_bits, 8);
        assert_eq!(
            p.response_value(),
            "permessage-deflate; server_max_window_bits=8"
        );
        assert_eq!(neg(&["x-webkit-deflate-frame"]), None);
        assert_eq!(neg(&[]), None);
        assert_eq!(neg(&[" , ,"]), None);
    }

    #[test]
    fn window_bits_are_8_to_15() {
        for b in 8..=15u8 {
            assert_eq!(window_bits(b.to_string().as_bytes()), Some(b));
        }
        for v in ["", "0", "7", "16", "08", "+9", "9 "] {
            assert_eq!(window_bits(v.as_bytes()), None, "{v:?}");
        }
    }
}
