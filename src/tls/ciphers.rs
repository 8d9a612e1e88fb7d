//! The `ciphers` setting: cipher suite names, as OpenSSL and IANA spell them,
//! mapped to the suites of rustls' *ring* provider.
//!
//! Only plain names are accepted, not OpenSSL's keywords and operators
//! (`HIGH`, `!aNULL`, `ECDHE+AESGCM`): the suites on offer are few and all
//! strong, so a list of names says everything a keyword could.
//!
//! As with OpenSSL (and so gunicorn), the list governs TLS 1.2; TLS 1.3
//! suites are governed only if the list names at least one of them:
//! * names only TLS 1.2 suites → those for TLS 1.2, every TLS 1.3 suite kept;
//! * names only TLS 1.3 suites → those for TLS 1.3, TLS 1.2 turned off;
//! * names both → exactly the named suites.
//!
//! The list's order is the server's preference order.

use rustls::crypto::ring::cipher_suite as cs;
use rustls::{CipherSuite, ProtocolVersion, SupportedCipherSuite};

use super::TlsError;

/// One accepted suite: its IANA name, OpenSSL's name, and the rustls suite.
struct Named {
    iana: &'static str,
    openssl: &'static str,
    suite: SupportedCipherSuite,
}

/// Every suite the *ring* provider implements, strongest first within each version.
fn table() -> [Named; 9] {
    [
        // TLS 1.3: OpenSSL uses the IANA names.
        Named {
            iana: "TLS_AES_256_GCM_SHA384",
            openssl: "TLS_AES_256_GCM_SHA384",
            suite: cs::TLS13_AES_256_GCM_SHA384,
        },
        Named {
            iana: "TLS_AES_128_GCM_SHA256",
            openssl: "TLS_AES_128_GCM_SHA256",
            suite: cs::TLS13_AES_128_GCM_SHA256,
        },
        Named {
            iana: "TLS_CHACHA20_POLY1305_SHA256",
            openssl: "TLS_CHACHA20_POLY1305_SHA256",
            suite: cs::TLS13_CHACHA20_POLY1305_SHA256,
        },
        // TLS 1.2
        Named {
            iana: "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
            openssl: "ECDHE-ECDSA-AES256-GCM-SHA384",
            suite: cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        },
        Named {
            iana: "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            openssl: "ECDHE-ECDSA-AES128-GCM-SHA256",
            suite: cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        },
        Named {
            iana: "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
            openssl: "ECDHE-ECDSA-CHACHA20-POLY1305",
            suite: cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        },
        Named {
            iana: "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
            openssl: "ECDHE-RSA-AES256-GCM-SHA384",
            suite: cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        },
        Named {
            iana: "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
            openssl: "ECDHE-RSA-AES128-GCM-SHA256",
            suite: cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        },
        Named {
            iana: "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
            openssl: "ECDHE-RSA-CHACHA20-POLY1305",
            suite: cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        },
    ]
}

/// The suite a name stands for: IANA or OpenSSL spelling, any letter case;
/// rustls' `TLS13_` spelling of the TLS 1.3 names is accepted too.
fn lookup(name: &str) -> Option<SupportedCipherSuite> {
    let upper = name.to_ascii_uppercase();
    let upper = match upper.strip_prefix("TLS13_") {
        Some(rest) => format!("TLS_{rest}"),
        None => upper,
    };
    table()
        .into_iter()
        .find(|n| n.iana == upper || n.openssl == upper)
        .map(|n| n.suite)
}

fn is_tls13(suite: &SupportedCipherSuite) -> bool {
    suite.version().version == ProtocolVersion::TLSv1_3
}

/// The suites to offer, in preference order, for a `ciphers` value.
/// Names are separated by `:` (OpenSSL's separator), `,` or spaces.
pub fn parse(list: &str) -> Result<Vec<SupportedCipherSuite>, TlsError> {
    let mut named: Vec<SupportedCipherSuite> = Vec::new();
    for name in list
        .split(|c: char| c == ':' || c == ',' || c.is_ascii_whitespace())
        .filter(|n| !n.is_empty())
    {
        let Some(suite) = lookup(name) else {
            return Err(unknown(name));
        };
        if !named.iter().any(|s| s.suite() == suite.suite()) {
            named.push(suite);
        }
    }
    if named.is_empty() {
        return Err(TlsError::Settings(format!(
            "ciphers: {list:?} names no cipher suite; accepted names: {}",
            accepted_names()
        )));
    }
    let mut suites: Vec<SupportedCipherSuite> = Vec::with_capacity(named.len() + 3);
    if !named.iter().any(is_tls13) {
        suites.extend(table().into_iter().map(|n| n.suite).filter(is_tls13));
    }
    suites.extend(named);
    Ok(suites)
}

fn unknown(name: &str) -> TlsError {
    // Suite names always hold `-` or `_`; keywords (`HIGH`, `aNULL`) never do.
    let keyword = name.starts_with(['!', '-', '+', '@'])
        || name.contains('+')
        || name.bytes().all(|b| b.is_ascii_alphanumeric());
    let hint = if keyword {
        " (OpenSSL keywords and operators such as HIGH, !aNULL or ECDHE+AESGCM are not supported; list suite names)"
    } else {
        ""
    };
    TlsError::Settings(format!(
        "ciphers: unknown cipher suite {name:?}{hint}; accepted names: {}",
        accepted_names()
    ))
}

/// The OpenSSL spellings, `:`-separated, for error messages (IANA names are accepted too).
pub fn accepted_names() -> String {
    table()
        .iter()
        .map(|n| n.openssl)
        .collect::<Vec<_>>()
        .join(":")
}

/// The IANA name of a negotiated suite, for logs and the environ.
pub fn iana_name(suite: CipherSuite) -> Option<&'static str> {
    table()
        .into_iter()
        .find(|n| n.suite.suite() == suite)
        .map(|n| n.iana)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(list: &str) -> Vec<CipherSuite> {
        parse(list)
            .map(|v| v.iter().map(|s| s.suite()).collect())
            .unwrap_or_default()
    }

    #[test]
    fn openssl_and_iana_names_map_to_the_same_suite() {
        assert_eq!(
            ids("ECDHE-RSA-AES128-GCM-SHA256:TLS_AES_128_GCM_SHA256"),
            ids("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256:tls13_aes_128_gcm_sha256")
        );
        assert_eq!(
            ids("TLS_AES_128_GCM_SHA256:ECDHE-RSA-AES128-GCM-SHA256"),
            vec![
                CipherSuite::TLS13_AES_128_GCM_SHA256,
                CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
            ]
        );
    }

    #[test]
    fn every_table_name_is_accepted_in_both_spellings() {
        for n in table() {
            assert_eq!(lookup(n.iana).map(|s| s.suite()), Some(n.suite.suite()));
            assert_eq!(lookup(n.openssl).map(|s| s.suite()), Some(n.suite.suite()));
            assert_eq!(iana_name(n.suite.suite()), Some(n.iana));
        }
    }

    #[test]
    fn tls12_only_list_keeps_all_tls13_suites_first() {
        assert_eq!(
            ids("ECDHE-ECDSA-CHACHA20-POLY1305 , ECDHE-RSA-AES256-GCM-SHA384"),
            vec![
                CipherSuite::TLS13_AES_256_GCM_SHA384,
                CipherSuite::TLS13_AES_128_GCM_SHA256,
                CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
                CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
                CipherSuite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            ]
        );
    }

    #[test]
    fn tls13_only_list_is_exactly_those_suites_in_order() {
        assert_eq!(
            ids("TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"),
            vec![
                CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
                CipherSuite::TLS13_AES_256_GCM_SHA384
            ]
        );
    }

    #[test]
    fn unknown_name_is_rejected_naming_it_and_the_accepted_names() {
        let e = parse("ECDHE-RSA-AES128-GCM-SHA256:DES-CBC3-SHA")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.starts_with("ciphers: unknown cipher suite \"DES-CBC3-SHA\";"),
            "{e}"
        );
        assert!(e.contains("ECDHE-RSA-AES128-GCM-SHA256"), "{e}");
    }

    #[test]
    fn openssl_keywords_are_rejected_with_a_hint() {
        for list in ["HIGH:!aNULL", "ECDHE+AESGCM", "DEFAULT"] {
            let e = parse(list).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains("keywords and operators"), "{list}: {e}");
        }
    }

    #[test]
    fn empty_list_is_rejected() {
        assert!(parse(" : ").is_err());
        assert!(parse("").is_err());
    }
}
