//! The sans-IO HTTP layer alone: request parsing (`Conn::feed` + `poll`)
//! and response encoding (`ResponseWriter::start` + `body` + `finish`).
//!
//! `cargo bench --bench http`
//!
//! Instruction counts, which a busy machine does not disturb: with
//! `HTTP_BENCH_COUNT=n` set the binary runs the wrk request parse and the
//! hello response encode `n` times each and exits, for
//! `valgrind --tool=callgrind --toggle-collect='*count_*'`; divide the
//! inclusive counts of `count_parse` and `count_encode` by `n`.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, BatchSize, Criterion, Throughput};

use ferrocorn::http::{
    Config, Conn, DateCache, Event, PeerTrust, RequestInfo, ResponseWriter, Version,
};

/// What `wrk` sends to `http://127.0.0.1:8000/`.
const WRK_GET: &[u8] = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n\r\n";

/// What a current desktop browser sends for a stylesheet.
const BROWSER_GET: &[u8] = b"GET /static/css/site.css?v=3 HTTP/1.1\r\n\
Host: www.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: text/css,*/*;q=0.1\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Connection: keep-alive\r\n\
Referer: https://www.example.com/shop/cart\r\n\
Cookie: sessionid=8c1f2a9e4b7d43f0a6e5; csrftoken=Qm9vdHN0cmFwQ1NSRlRva2Vu; theme=dark\r\n\
Sec-Fetch-Dest: style\r\n\
Sec-Fetch-Mode: no-cors\r\n\
Sec-Fetch-Site: same-origin\r\n\
Priority: u=2\r\n\
\r\n";

/// A small JSON POST from an API client.
const SMALL_POST: &[u8] = b"POST /api/v1/items?notify=1 HTTP/1.1\r\n\
Host: api.example.com\r\n\
User-Agent: python-requests/2.32.3\r\n\
Accept: application/json\r\n\
Content-Type: application/json\r\n\
Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJl\r\n\
Content-Length: 45\r\n\
\r\n\
{\"name\": \"widget\", \"quantity\": 3, \"tag\": \"x\"}";

/// One request through a connection that already exists (keep-alive, the
/// steady state): feed the bytes, get the request, see nothing more.
fn parse_one(conn: &mut Conn, bytes: &[u8]) -> usize {
    conn.feed(bytes);
    let n = match conn.poll() {
        Event::Request(req) => req.head.headers.len() + req.body.len() as usize,
        other => panic!("expected a request, got {other:?}"),
    };
    match conn.poll() {
        Event::NeedMore => n,
        other => panic!("expected NeedMore after one request, got {other:?}"),
    }
}

fn parse(c: &mut Criterion) {
    let config = Arc::new(Config::default());
    let mut group = c.benchmark_group("parse");
    for (name, bytes) in [
        ("wrk_get", WRK_GET),
        ("browser_get", BROWSER_GET),
        ("small_post", SMALL_POST),
    ] {
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        let mut conn = Conn::new(config.clone(), PeerTrust::default());
        group.bench_function(format!("{name}/keep_alive"), |b| {
            b.iter(|| parse_one(&mut conn, black_box(bytes)))
        });
        group.bench_function(format!("{name}/new_conn"), |b| {
            b.iter(|| {
                let mut conn = Conn::new(config.clone(), PeerTrust::default());
                parse_one(&mut conn, black_box(bytes))
            })
        });
        // The worst split a slow client can make: one byte per read.
        group.bench_function(format!("{name}/byte_by_byte"), |b| {
            b.iter_batched_ref(
                || Conn::new(config.clone(), PeerTrust::default()),
                |conn| {
                    for byte in black_box(bytes).chunks(1) {
                        conn.feed(byte);
                        if let Event::Request(req) = conn.poll() {
                            return req.head.headers.len();
                        }
                    }
                    panic!("no request after every byte was fed");
                },
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn owned(headers: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
    headers
        .iter()
        .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect()
}

/// start + body chunks + finish into a reused output buffer, as a worker does.
fn encode_one(
    out: &mut Vec<u8>,
    date: &mut DateCache,
    headers: &[(Vec<u8>, Vec<u8>)],
    chunks: &[&[u8]],
    body_len: Option<u64>,
) -> usize {
    out.clear();
    let req = RequestInfo {
        version: Version::Http11,
        is_head: false,
        keep_alive: true,
    };
    let mut w = ResponseWriter::start(out, date, req, b"200 OK", headers, body_len, false);
    for chunk in chunks {
        w.body(out, chunk);
    }
    let keep = w.finish(out);
    assert!(keep, "a complete response keeps the connection");
    out.len()
}

fn encode(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode");
    let mut out = Vec::with_capacity(128 * 1024);
    let mut date = DateCache::new();

    let hello = hello_headers();
    group.bench_function("hello", |b| {
        b.iter(|| encode_one(&mut out, &mut date, &hello, &[b"Hello, World!"], None))
    });

    // A typical framework response: more headers, length known from the list body.
    let flask = framework_headers();
    let page = vec![b'p'; 2048];
    group.bench_function("framework_2k_list_body", |b| {
        b.iter(|| {
            encode_one(
                &mut out,
                &mut date,
                &flask,
                &[&page],
                Some(page.len() as u64),
            )
        })
    });

    // A generator without Content-Length: chunked transfer coding.
    let chunked = owned(&[("Content-Type", "text/plain")]);
    let parts: [&[u8]; 3] = [b"first part, ", b"second part, ", b"third part"];
    group.bench_function("chunked_3_parts", |b| {
        b.iter(|| encode_one(&mut out, &mut date, &chunked, &parts, None))
    });

    let big = vec![b'x'; 65536];
    let big_headers = owned(&[
        ("Content-Type", "application/octet-stream"),
        ("Content-Length", "65536"),
    ]);
    group.throughput(Throughput::Bytes(big.len() as u64));
    group.bench_function("64k_body", |b| {
        b.iter(|| encode_one(&mut out, &mut date, &big_headers, &[&big], None))
    });
    group.finish();
}

/// What a typical framework response carries.
fn framework_headers() -> Vec<(Vec<u8>, Vec<u8>)> {
    owned(&[
        ("Content-Type", "text/html; charset=utf-8"),
        ("Vary", "Cookie"),
        (
            "Set-Cookie",
            "session=eyJfZnJlc2giOmZhbHNlfQ; HttpOnly; Path=/; SameSite=Lax",
        ),
        ("Cache-Control", "no-store"),
        ("X-Frame-Options", "SAMEORIGIN"),
    ])
}

/// The hello-world app's response: what a WSGI worker encodes per request.
fn hello_headers() -> Vec<(Vec<u8>, Vec<u8>)> {
    owned(&[("Content-Type", "text/plain"), ("Content-Length", "13")])
}

#[inline(never)]
fn count_parse(conn: &mut Conn, n: usize) -> usize {
    (0..n).map(|_| parse_one(conn, black_box(WRK_GET))).sum()
}

#[inline(never)]
fn count_encode(out: &mut Vec<u8>, date: &mut DateCache, n: usize) -> usize {
    let hello = hello_headers();
    (0..n)
        .map(|_| encode_one(out, date, black_box(&hello), &[b"Hello, World!"], None))
        .sum()
}

#[inline(never)]
fn count_parse_browser(conn: &mut Conn, n: usize) -> usize {
    (0..n)
        .map(|_| parse_one(conn, black_box(BROWSER_GET)))
        .sum()
}

#[inline(never)]
fn count_encode_framework(out: &mut Vec<u8>, date: &mut DateCache, n: usize) -> usize {
    let headers = framework_headers();
    let page = vec![b'p'; 2048];
    (0..n)
        .map(|_| encode_one(out, date, &headers, &[&page], Some(page.len() as u64)))
        .sum()
}

/// The `HTTP_BENCH_COUNT` mode (see the top of the file); the browser
/// request and the framework response are counted too.
fn count(n: usize) {
    let mut conn = Conn::new(Arc::new(Config::default()), PeerTrust::default());
    // One request first, so buffers have grown to their steady size.
    parse_one(&mut conn, WRK_GET);
    let parsed = count_parse(&mut conn, n) + count_parse_browser(&mut conn, n);
    let mut out = Vec::with_capacity(128 * 1024);
    let mut date = DateCache::new();
    let encoded =
        count_encode(&mut out, &mut date, n) + count_encode_framework(&mut out, &mut date, n);
    println!("{n} requests each: {parsed} headers parsed, {encoded} bytes encoded");
}

criterion_group!(benches, parse, encode);

fn main() {
    if let Some(n) = std::env::var("HTTP_BENCH_COUNT")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        return count(n);
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
