//! Arbitrary bytes, in two pieces split where the fuzzer says, fed to one
//! `http::Conn` built with fuzzer-chosen settings. After each piece (and
//! after an optional end of input) the connection is polled until it needs
//! more input or is done. Checked: no panic, a bounded number of polls per
//! piece (no busy loop), errors and `Closed` are sticky, and no more
//! requests come out than bytes went in.

#![no_main]

use std::sync::Arc;

use ferrocorn::http::{Config, Conn, Event, HeaderMapPolicy, PeerTrust, ProxyProtocol};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Settings {
    limit_request_line: u16,
    limit_request_fields: u16,
    limit_request_field_size: u16,
    /// `--limit-request-body` (0: no limit); bodies stay in memory.
    limit_request_body: u16,
    permit_obsolete_folding: bool,
    strip_header_spaces: bool,
    permit_unconventional_http_method: bool,
    permit_unconventional_http_version: bool,
    casefold_http_method: bool,
    header_map: u8,
    forwarder_headers: bool,
    secure_scheme_headers: bool,
    proxy_protocol: u8,
    trust_forwarded: bool,
    trust_proxy: bool,
}

#[derive(Arbitrary, Debug)]
struct Input {
    settings: Settings,
    /// Where the bytes are split (taken modulo their length + 1).
    split: u16,
    /// Signal the end of input after the second piece.
    eof: bool,
    data: Vec<u8>,
}

fn config(s: &Settings) -> Config {
    let defaults = Config::default();
    Config {
        limit_request_line: usize::from(s.limit_request_line),
        limit_request_fields: usize::from(s.limit_request_fields),
        limit_request_field_size: usize::from(s.limit_request_field_size),
        permit_obsolete_folding: s.permit_obsolete_folding,
        strip_header_spaces: s.strip_header_spaces,
        permit_unconventional_http_method: s.permit_unconventional_http_method,
        permit_unconventional_http_version: s.permit_unconventional_http_version,
        casefold_http_method: s.casefold_http_method,
        header_map: match s.header_map % 3 {
            0 => HeaderMapPolicy::Drop,
            1 => HeaderMapPolicy::Refuse,
            _ => HeaderMapPolicy::Dangerous,
        },
        forwarder_headers: if s.forwarder_headers {
            defaults.forwarder_headers
        } else {
            Vec::new()
        },
        secure_scheme_headers: if s.secure_scheme_headers {
            defaults.secure_scheme_headers
        } else {
            Vec::new()
        },
        proxy_protocol: match s.proxy_protocol % 4 {
            0 => ProxyProtocol::Off,
            1 => ProxyProtocol::V1,
            2 => ProxyProtocol::V2,
            _ => ProxyProtocol::Auto,
        },
        limit_request_body: u64::from(s.limit_request_body),
        temp_files: None,
        ..defaults
    }
}

/// What the connection ended a round of polling with.
#[derive(Debug, PartialEq)]
enum Outcome {
    NeedMore,
    Error(Option<u16>),
    Closed,
}

/// Poll until the connection needs more bytes or is done. Each request
/// takes at least one byte and `SendContinue` comes at most once per
/// request, so more than `2 * fed + 8` polls in one round means the
/// connection is spinning. Counts the requests in `requests`.
fn drain(conn: &mut Conn, fed: usize, requests: &mut usize) -> Outcome {
    let limit = 2 * fed + 8;
    for _ in 0..limit {
        match conn.poll() {
            Event::NeedMore => return Outcome::NeedMore,
            Event::SendContinue => {}
            Event::Request(_) => {
                *requests += 1;
                assert!(*requests <= fed, "{requests} requests from {fed} bytes");
            }
            Event::Error(e) => return Outcome::Error(e.status()),
            Event::Closed => return Outcome::Closed,
        }
    }
    panic!("no NeedMore, Error or Closed after {limit} polls");
}

fn check_sticky(conn: &mut Conn, outcome: &Outcome) {
    match outcome {
        Outcome::NeedMore => {}
        Outcome::Error(status) => match conn.poll() {
            Event::Error(e) => assert_eq!(e.status(), *status, "the error changed"),
            other => panic!("an error was followed by {other:?}"),
        },
        Outcome::Closed => {
            assert!(matches!(conn.poll(), Event::Closed), "Closed is not sticky")
        }
    }
}

fuzz_target!(|input: Input| {
    let cfg = Arc::new(config(&input.settings));
    let trust = PeerTrust {
        forwarded: input.settings.trust_forwarded,
        proxy: input.settings.trust_proxy,
    };
    let mut conn = Conn::new(cfg, trust);
    let split = usize::from(input.split) % (input.data.len() + 1);
    let (first, second) = input.data.split_at(split);

    let mut requests = 0;
    conn.feed(first);
    let outcome = drain(&mut conn, first.len(), &mut requests);
    check_sticky(&mut conn, &outcome);

    conn.feed(second);
    let outcome = drain(&mut conn, input.data.len(), &mut requests);
    check_sticky(&mut conn, &outcome);

    if input.eof {
        conn.feed_eof();
        let outcome = drain(&mut conn, input.data.len(), &mut requests);
        check_sticky(&mut conn, &outcome);
    }
});
