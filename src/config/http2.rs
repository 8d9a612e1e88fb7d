//! The HTTP/2 settings (gunicorn 27's `http_protocols`, `http2_*`) checked
//! together: which protocols are offered, whether cleartext h2c is on and
//! how, and the limits a connection announces.

use super::{bad, Resolved};
use super::{id, Id};

/// How cleartext HTTP/2 (h2c) may start (`--http2-cleartext`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cleartext {
    Off,
    /// The connection opens with the HTTP/2 preface (RFC 9113 3.3).
    PriorKnowledge,
    /// An HTTP/1.1 request with `Upgrade: h2c` (RFC 7540 3.2).
    Upgrade,
    Both,
}

impl Cleartext {
    pub fn prior_knowledge(self) -> bool {
        matches!(self, Cleartext::PriorKnowledge | Cleartext::Both)
    }

    pub fn upgrade(self) -> bool {
        matches!(self, Cleartext::Upgrade | Cleartext::Both)
    }
}

/// The resolved HTTP/2 settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Http2 {
    /// `h1` and/or `h2`, in the order given (the ALPN preference).
    pub protocols: Vec<&'static str>,
    /// h2c on a cleartext listener; `Off` whenever h2 is not offered or
    /// TLS is on (TLS negotiates h2 by ALPN instead), as in gunicorn.
    pub cleartext: Cleartext,
    pub max_concurrent_streams: u32,
    pub initial_window_size: u32,
    pub max_frame_size: u32,
    /// 0: no limit (the core still caps a header block's raw bytes).
    pub max_header_list_size: u32,
}

impl Http2 {
    /// HTTP/2 may be spoken at all.
    pub fn enabled(&self) -> bool {
        self.protocols.contains(&"h2")
    }

    /// The ALPN names to offer over TLS, in preference order.
    pub fn alpn(&self) -> Vec<Vec<u8>> {
        let mut names = Vec::new();
        for p in &self.protocols {
            match *p {
                "h2" => names.push(b"h2".to_vec()),
                _ => {
                    names.push(b"http/1.1".to_vec());
                    // Not refused: a client that offers only HTTP/1.0.
                    names.push(b"http/1.0".to_vec());
                }
            }
        }
        names
    }
}

/// `http_protocols`: a comma-separated list of `h1` and `h2`, no repeats;
/// empty means `h1` (gunicorn's `validate_http_protocols`).
pub fn protocols(value: &str) -> Result<Vec<&'static str>, String> {
    let mut out = Vec::new();
    for p in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let known = match p.to_ascii_lowercase().as_str() {
            "h1" => "h1",
            "h2" => "h2",
            _ => return Err(format!("unknown protocol '{p}'; valid protocols: h1, h2")),
        };
        if out.contains(&known) {
            return Err(format!("'{known}' is listed twice"));
        }
        out.push(known);
    }
    if out.is_empty() {
        out.push("h1");
    }
    Ok(out)
}

/// The h2c mode a `http2_cleartext` choice names. gunicorn 27 also takes a
/// boolean in a config file: `True` is `prior-knowledge`, `False` is `off`.
fn cleartext_mode(choice: &str) -> Cleartext {
    match choice {
        "prior-knowledge" | "true" => Cleartext::PriorKnowledge,
        "upgrade" => Cleartext::Upgrade,
        "both" => Cleartext::Both,
        _ => Cleartext::Off,
    }
}

/// Read and check the HTTP/2 settings; `tls`: the listeners serve TLS.
pub(super) fn resolve(
    r: &Resolved,
    tls: bool,
    warnings: &mut Vec<String>,
) -> Result<Http2, String> {
    let given = r
        .get(id!(http_protocols))
        .as_str()
        .unwrap_or("h1")
        .to_string();
    let protocols = protocols(&given).map_err(|e| bad(r, id!(http_protocols), &given, e))?;
    let h2 = protocols.contains(&"h2");
    let asked = cleartext_mode(r.get(id!(http2_cleartext)).as_str().unwrap_or("off"));
    if h2 && !tls && asked == Cleartext::Off {
        warnings.push(
            "http_protocols includes h2 but there is no TLS and http2_cleartext is off, so \
             HTTP/2 will never be negotiated"
                .into(),
        );
    }
    if asked != Cleartext::Off && !h2 {
        warnings.push(format!(
            "http2_cleartext = {:?} has no effect: h2 is not in http_protocols ({given:?})",
            r.get(id!(http2_cleartext)).as_str().unwrap_or_default()
        ));
    }
    let cleartext = if h2 && !tls { asked } else { Cleartext::Off };
    let int = |id: Id| r.get(id).as_int();
    Ok(Http2 {
        protocols,
        cleartext,
        // The table's ranges hold these within u32 (RFC 9113 6.5.2, 6.9.1).
        max_concurrent_streams: int(id!(http2_max_concurrent_streams)) as u32,
        initial_window_size: int(id!(http2_initial_window_size)) as u32,
        max_frame_size: int(id!(http2_max_frame_size)) as u32,
        max_header_list_size: int(id!(http2_max_header_list_size)) as u32,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_keep_their_order_and_default_to_h1() {
        assert_eq!(protocols("h2,h1").unwrap(), vec!["h2", "h1"]);
        assert_eq!(protocols(" H1 , h2 ").unwrap(), vec!["h1", "h2"]);
        assert_eq!(protocols("").unwrap(), vec!["h1"]);
        assert_eq!(protocols(" , ").unwrap(), vec!["h1"]);
    }

    #[test]
    fn unknown_and_repeated_protocols_are_errors() {
        let e = protocols("h2,h3").unwrap_err();
        assert!(e.contains("'h3'") && e.contains("h1, h2"), "{e}");
        assert!(protocols("http/1.1").is_err());
        assert!(protocols("h2,h2").unwrap_err().contains("twice"));
    }

    #[test]
    fn a_boolean_cleartext_is_prior_knowledge_or_off() {
        assert_eq!(cleartext_mode("true"), Cleartext::PriorKnowledge);
        assert_eq!(cleartext_mode("false"), Cleartext::Off);
        assert_eq!(cleartext_mode("prior-knowledge"), Cleartext::PriorKnowledge);
        assert_eq!(cleartext_mode("upgrade"), Cleartext::Upgrade);
        assert_eq!(cleartext_mode("both"), Cleartext::Both);
        assert_eq!(cleartext_mode("off"), Cleartext::Off);
    }

    #[test]
    fn alpn_follows_the_protocol_order() {
        let mut s = Http2 {
            protocols: vec!["h2", "h1"],
            cleartext: Cleartext::Off,
            max_concurrent_streams: 100,
            initial_window_size: 65_535,
            max_frame_size: 16_384,
            max_header_list_size: 65_536,
        };
        assert_eq!(
            s.alpn(),
            vec![b"h2".to_vec(), b"http/1.1".to_vec(), b"http/1.0".to_vec()]
        );
        s.protocols = vec!["h1", "h2"];
        assert_eq!(s.alpn()[0], b"http/1.1".to_vec());
        assert_eq!(s.alpn()[2], b"h2".to_vec());
    }
}
