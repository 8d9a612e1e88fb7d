//! The request corpus (`tests/conformance/cases/*.json`), replayed through
//! `Conn` in process: fed whole, one byte at a time, and split in two at
//! every boundary, each followed by EOF as the socket runner half-closes.
//!
//! The corpus directory is `FERROCORN_CONFORMANCE_DIR`, else
//! `tests/conformance` in this repository.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine;
use serde_json::Value;

use super::body::testing::Unlinked;
use super::{
    percent_decode, AllowList, Config, Conn, Event, HeaderMapPolicy, HttpErrorKind, PeerTrust,
    ProxyProtocol,
};

/// The socket runner connects from here; trust lists are checked against it.
const PEER: &str = "127.0.0.1";
/// Cases at most this long are also split in two at every byte boundary;
/// longer ones at every boundary near their ends and at a stride between.
const FULL_SPLIT_MAX: usize = 4200;

fn corpus_dir() -> PathBuf {
    let dir = match std::env::var_os("FERROCORN_CONFORMANCE_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/conformance"),
    };
    let cases = if dir.join("cases").is_dir() {
        dir.join("cases")
    } else {
        dir.clone()
    };
    assert!(
        cases.is_dir(),
        "conformance corpus not found at {}: set FERROCORN_CONFORMANCE_DIR to the conformance directory (the one holding cases/)",
        dir.display()
    );
    cases
}

/// JSON strings are WSGI native strings: one latin-1 character per byte.
fn latin1(s: &str) -> Vec<u8> {
    super::latin1_bytes(s).unwrap_or_else(|| panic!("{s:?} is not latin-1"))
}

fn str_field<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("missing string {key:?} in {v}"))
}

/// The case's gunicorn settings as a `Config` and the trust of a 127.0.0.1 peer.
fn settings(case: &Value) -> (Config, PeerTrust) {
    let mut cfg = Config::default();
    let mut forwarded = AllowList::parse("127.0.0.1,::1").unwrap();
    let mut proxy_allow = AllowList::parse("127.0.0.1,::1").unwrap();
    let Some(map) = case["settings"].as_object() else {
        panic!("settings is not an object")
    };
    for (name, value) in map {
        let int = || {
            value
                .as_u64()
                .unwrap_or_else(|| panic!("{name} is not an integer")) as usize
        };
        let flag = || {
            value
                .as_bool()
                .unwrap_or_else(|| panic!("{name} is not a bool"))
        };
        match name.as_str() {
            "limit_request_line" => cfg.limit_request_line = int(),
            "limit_request_fields" => cfg.limit_request_fields = int(),
            "limit_request_field_size" => cfg.limit_request_field_size = int(),
            "strip_header_spaces" => cfg.strip_header_spaces = flag(),
            "permit_unconventional_http_method" => cfg.permit_unconventional_http_method = flag(),
            "permit_unconventional_http_version" => cfg.permit_unconventional_http_version = flag(),
            "casefold_http_method" => cfg.casefold_http_method = flag(),
            "permit_obsolete_folding" => cfg.permit_obsolete_folding = flag(),
            "header_map" => {
                cfg.header_map = match value.as_str() {
                    Some("drop") => HeaderMapPolicy::Drop,
                    Some("refuse") => HeaderMapPolicy::Refuse,
                    Some("dangerous") => HeaderMapPolicy::Dangerous,
                    other => panic!("header_map {other:?}"),
                }
            }
            "forwarded_allow_ips" => {
                forwarded = AllowList::parse(value.as_str().unwrap_or_default()).unwrap()
            }
            "proxy_allow_ips" => {
                proxy_allow = AllowList::parse(value.as_str().unwrap_or_default()).unwrap()
            }
            "proxy_protocol" => {
                cfg.proxy_protocol = match value {
                    Value::Bool(true) => ProxyProtocol::Auto,
                    Value::Bool(false) => ProxyProtocol::Off,
                    Value::String(s) => match s.as_str() {
                        "auto" | "true" => ProxyProtocol::Auto,
                        "v1" => ProxyProtocol::V1,
                        "v2" => ProxyProtocol::V2,
                        "off" | "false" => ProxyProtocol::Off,
                        other => panic!("proxy_protocol {other:?}"),
                    },
                    other => panic!("proxy_protocol {other}"),
                }
            }
            other => panic!("setting {other:?} is not mapped onto Config"),
        }
    }
    let peer = PEER.parse().unwrap();
    let trust = PeerTrust {
        forwarded: forwarded.contains(peer),
        proxy: proxy_allow.contains(peer),
    };
    (cfg, trust)
}

/// What a connection made of the bytes, in comparable form.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    requests: Vec<Seen>,
    /// `Ok`: closed cleanly; `Err`: the error's status and kind.
    end: Result<(), (Option<u16>, HttpErrorKind)>,
}

#[derive(PartialEq, Eq)]
struct Seen {
    method: Vec<u8>,
    uri: Vec<u8>,
    path: Vec<u8>,
    path_info: Vec<u8>,
    query: Vec<u8>,
    version: (u8, u8),
    server_protocol: &'static str,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    body: Vec<u8>,
    proxied: bool,
}

impl std::fmt::Debug for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        f.debug_struct("Seen")
            .field("method", &text(&self.method))
            .field("uri", &text(&self.uri))
            .field("path", &text(&self.path))
            .field("path_info", &text(&self.path_info))
            .field("query", &text(&self.query))
            .field("version", &self.version)
            .field(
                "headers",
                &self
                    .headers
                    .iter()
                    .map(|(n, v)| (text(n), text(v)))
                    .collect::<Vec<_>>(),
            )
            .field("body", &text(&self.body))
            .field("proxied", &self.proxied)
            .finish()
    }
}

/// Poll until the connection wants more bytes or has ended.
fn drain(conn: &mut Conn, out: &mut Outcome) -> bool {
    loop {
        match conn.poll() {
            Event::NeedMore => return false,
            Event::SendContinue => {}
            Event::Request(r) => {
                let head = &r.head;
                out.requests.push(Seen {
                    method: head.method().to_vec(),
                    uri: head.target().to_vec(),
                    path: head.path().to_vec(),
                    path_info: percent_decode(head.path()),
                    query: head.query().to_vec(),
                    version: head.version.major_minor(),
                    server_protocol: head.version.as_str(),
                    headers: head
                        .header_pairs()
                        .map(|(n, v)| (n.to_ascii_uppercase(), v.to_vec()))
                        .collect(),
                    body: r.body.to_vec().expect("body file readable"),
                    proxied: r.proxy.is_some(),
                });
            }
            Event::Error(e) => {
                out.end = Err((e.status(), e.kind));
                return true;
            }
            Event::Closed => return true,
        }
    }
}

/// Feed `pieces` in order, then EOF.
fn run(cfg: &Arc<Config>, trust: &PeerTrust, pieces: &[&[u8]]) -> Outcome {
    let mut conn = Conn::new(cfg.clone(), trust.clone());
    let mut out = Outcome {
        requests: Vec::new(),
        end: Ok(()),
    };
    for piece in pieces {
        conn.feed(piece);
        if drain(&mut conn, &mut out) {
            return out;
        }
    }
    conn.feed_eof();
    assert!(
        drain(&mut conn, &mut out),
        "connection did not end after EOF"
    );
    // Sticky: the end repeats.
    match (&out.end, conn.poll()) {
        (Ok(()), Event::Closed) => {}
        (Err((_, kind)), Event::Error(e)) if e.kind == *kind => {}
        (end, again) => panic!("end not sticky: {end:?} then {again:?}"),
    }
    out
}

/// Whether the bytes start with a PROXY header the case's settings accept.
fn starts_with_proxy_header(cfg: &Config, bytes: &[u8]) -> bool {
    cfg.proxy_protocol != ProxyProtocol::Off
        && (bytes.starts_with(b"PROXY ") || bytes.starts_with(b"\r\n\r\n\0\r\nQUIT\n"))
}

fn check_expectation(case: &Value, got: &Outcome, proxied: bool) -> Result<(), String> {
    let expect = &case["expect"];
    match str_field(expect, "kind") {
        "valid" => {
            if let Err(end) = &got.end {
                return Err(format!(
                    "expected requests, got error {end:?} after {} request(s)",
                    got.requests.len()
                ));
            }
            let want = expect["requests"]
                .as_array()
                .ok_or("requests is not a list")?;
            if want.len() != got.requests.len() {
                return Err(format!(
                    "expected {} request(s), got {}",
                    want.len(),
                    got.requests.len()
                ));
            }
            for (i, (w, g)) in want.iter().zip(&got.requests).enumerate() {
                check_request(w, g).map_err(|e| format!("request {i}: {e}"))?;
                if g.proxied != proxied {
                    return Err(format!(
                        "request {i}: PROXY info present: {}, expected {proxied}",
                        g.proxied
                    ));
                }
            }
            Ok(())
        }
        "invalid" => {
            let status = expect["status"].as_u64().map(|s| s as u16);
            match &got.end {
                Err((got_status, _)) if *got_status == status && got.requests.is_empty() => Ok(()),
                other => Err(format!(
                    "expected status {status:?} ({}), got {other:?} after {} request(s)",
                    expect["reason"],
                    got.requests.len()
                )),
            }
        }
        other => Err(format!("unknown kind {other}")),
    }
}

fn check_request(want: &Value, got: &Seen) -> Result<(), String> {
    let environ = &want["environ"];
    let pairs = |v: &Value| -> Vec<(Vec<u8>, Vec<u8>)> {
        v.as_array()
            .map(|list| {
                list.iter()
                    .map(|pair| {
                        (
                            latin1(pair[0].as_str().unwrap_or_default()),
                            latin1(pair[1].as_str().unwrap_or_default()),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let version = (
        want["version"][0].as_u64().unwrap_or(0) as u8,
        want["version"][1].as_u64().unwrap_or(0) as u8,
    );
    let body = base64::engine::general_purpose::STANDARD
        .decode(str_field(want, "body_b64"))
        .map_err(|e| e.to_string())?;
    let checks: [(&str, bool); 10] = [
        ("method", got.method == latin1(str_field(want, "method"))),
        ("uri", got.uri == latin1(str_field(want, "uri"))),
        ("path", got.path == latin1(str_field(want, "path"))),
        (
            "PATH_INFO",
            got.path_info == latin1(str_field(environ, "PATH_INFO")),
        ),
        ("query", got.query == latin1(str_field(want, "query"))),
        ("version", got.version == version),
        (
            "SERVER_PROTOCOL",
            got.server_protocol == str_field(environ, "SERVER_PROTOCOL"),
        ),
        ("headers", got.headers == pairs(&want["headers"])),
        ("body", got.body == body),
        (
            "REQUEST_METHOD",
            got.method == latin1(str_field(environ, "REQUEST_METHOD")),
        ),
    ];
    match checks.iter().find(|(_, ok)| !ok) {
        None => Ok(()),
        Some((what, _)) => Err(format!("{what} differs: got {got:?}")),
    }
}

/// Two-part split points for a case of `len` bytes.
fn split_points(len: usize) -> Vec<usize> {
    if len <= FULL_SPLIT_MAX {
        return (0..=len).collect();
    }
    (0..=len)
        .filter(|&k| k < 600 || k + 600 > len || k % 61 == 0)
        .collect()
}

#[test]
fn every_corpus_case_parses_as_gunicorn_does_however_it_is_split() {
    let dir = corpus_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no cases in {}", dir.display());

    let mut failures = Vec::new();
    let mut passed = 0;
    let mut skipped = 0;
    for file in &files {
        let text = std::fs::read_to_string(file)
            .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
        let case: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("parsing {}: {e}", file.display()));
        let name = str_field(&case, "name").to_string();
        if case.get("skip_reason").is_some_and(|r| !r.is_null()) {
            skipped += 1;
            continue;
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(str_field(&case, "request_b64"))
            .unwrap_or_else(|e| panic!("{name}: request_b64: {e}"));
        let (cfg, trust) = settings(&case);
        let cfg = Arc::new(cfg);

        let whole = run(&cfg, &trust, &[&bytes]);
        if let Err(e) = check_expectation(&case, &whole, starts_with_proxy_header(&cfg, &bytes)) {
            failures.push(format!("{name}: {e}"));
            continue;
        }
        let bytewise: Vec<&[u8]> = bytes.chunks(1).collect();
        if run(&cfg, &trust, &bytewise) != whole {
            failures.push(format!(
                "{name}: fed one byte at a time, the outcome differs"
            ));
            continue;
        }
        if let Some(k) = split_points(bytes.len()).into_iter().find(|&k| {
            let (a, b) = bytes.split_at(k);
            run(&cfg, &trust, &[a, b]) != whole
        }) {
            failures.push(format!("{name}: split at byte {k}, the outcome differs"));
            continue;
        }
        // Every body in a temporary file: the same requests, the same end.
        let spilling = Arc::new(Config {
            body_buffer_size: 0,
            temp_files: Some(Arc::new(Unlinked)),
            ..(*cfg).clone()
        });
        if run(&spilling, &trust, &[&bytes]) != whole || run(&spilling, &trust, &bytewise) != whole
        {
            failures.push(format!(
                "{name}: with the body in a temporary file, the outcome differs"
            ));
            continue;
        }
        passed += 1;
    }
    assert!(
        failures.is_empty(),
        "{} of {} corpus cases failed ({passed} passed, {skipped} skipped):\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
    eprintln!("conformance: {passed} passed, {skipped} skipped");
    assert!(passed > 0);
}

/// xorshift64*: a small deterministic generator, so failures replay.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Bytes that sit on the parser's decision points.
const INTERESTING: &[u8] = b"\r\n \t:;=\"\\,0129afAF_-/?#*%\x00\x7f\x80\xff";

fn mutate(rng: &mut Rng, input: &mut Vec<u8>) {
    for _ in 0..=rng.below(4) {
        let at = rng.below(input.len() + 1);
        let byte = if rng.below(2) == 0 {
            INTERESTING[rng.below(INTERESTING.len())]
        } else {
            rng.next() as u8
        };
        match rng.below(5) {
            0 if at < input.len() => input[at] = byte,
            1 if at < input.len() => {
                input.remove(at);
            }
            2 => {
                let len = rng.below(16).min(input.len() - at);
                let copy = input[at..at + len].to_vec();
                input.splice(at..at, copy);
            }
            3 => input.truncate(at),
            _ => input.insert(at, byte),
        }
    }
}

fn random_config(rng: &mut Rng) -> Config {
    let mut cfg = Config::default();
    let mut flag = || rng.below(4) == 0;
    cfg.permit_obsolete_folding = flag();
    cfg.strip_header_spaces = flag();
    cfg.permit_unconventional_http_method = flag();
    cfg.permit_unconventional_http_version = flag();
    cfg.casefold_http_method = flag();
    cfg.header_map = [
        HeaderMapPolicy::Drop,
        HeaderMapPolicy::Refuse,
        HeaderMapPolicy::Dangerous,
    ][rng.below(3)];
    cfg.proxy_protocol = [
        ProxyProtocol::Off,
        ProxyProtocol::V1,
        ProxyProtocol::V2,
        ProxyProtocol::Auto,
    ][rng.below(4)];
    if rng.below(3) == 0 {
        cfg.limit_request_line = rng.below(200);
        cfg.limit_request_fields = rng.below(10);
        cfg.limit_request_field_size = rng.below(200);
    }
    cfg
}

#[test]
fn mutated_corpus_inputs_split_anywhere_never_panic_and_always_end() {
    let dir = corpus_dir();
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .filter_map(|p| {
            let case: Value = serde_json::from_str(&std::fs::read_to_string(p).ok()?).ok()?;
            base64::engine::general_purpose::STANDARD
                .decode(case["request_b64"].as_str()?)
                .ok()
        })
        .filter(|bytes| bytes.len() <= 4096)
        .collect();
    seeds.sort();
    assert!(!seeds.is_empty(), "no cases in {}", dir.display());

    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for round in 0..3000 {
        let mut input = seeds[rng.below(seeds.len())].clone();
        mutate(&mut rng, &mut input);
        let cfg = Arc::new(random_config(&mut rng));
        let trust = PeerTrust {
            forwarded: rng.below(2) == 0,
            proxy: rng.below(2) == 0,
        };
        let mut conn = Conn::new(cfg, trust);
        let mut rest = &input[..];
        let mut ended = false;
        while !rest.is_empty() && !ended {
            let (piece, tail) = rest.split_at(1 + rng.below(rest.len()));
            rest = tail;
            conn.feed(piece);
            ended = poll_until_settled(&mut conn, round);
        }
        conn.feed_eof();
        assert!(
            ended || poll_until_settled(&mut conn, round),
            "round {round}: still waiting after EOF"
        );
    }
}

/// Poll until the connection asks for bytes (false) or ends (true); a
/// request can only come out as often as bytes allow.
fn poll_until_settled(conn: &mut Conn, round: usize) -> bool {
    for _ in 0..10_000 {
        match conn.poll() {
            Event::NeedMore => return false,
            Event::SendContinue | Event::Request(_) => {}
            Event::Error(_) | Event::Closed => return true,
        }
    }
    panic!("round {round}: poll never settled");
}
