//! The sans-IO HTTP/2 layer alone: decoding a request header block (HPACK)
//! and one request/response exchange through a `h2::Connection`.
//!
//! `cargo bench --bench h2`

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, Criterion};

use ferrocorn::h2::frame::{self, flag, kind, PREFACE};
use ferrocorn::h2::hpack::{Decoder, Encoder, Indexing};
use ferrocorn::h2::{Connection, Event, Settings};

/// What a desktop browser sends for a stylesheet, as HTTP/2 fields.
const BROWSER: &[(&str, &str)] = &[
    (":method", "GET"),
    (":scheme", "https"),
    (":authority", "www.example.com"),
    (":path", "/static/css/site.css?v=3"),
    (
        "user-agent",
        "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
    ),
    ("accept", "text/css,*/*;q=0.1"),
    ("accept-language", "en-US,en;q=0.5"),
    ("accept-encoding", "gzip, deflate, br, zstd"),
    ("referer", "https://www.example.com/shop/cart"),
    (
        "cookie",
        "sessionid=8c1f2a9e4b7d43f0a6e5; csrftoken=Qm9vdHN0cmFwQ1NSRlRva2Vu",
    ),
    ("sec-fetch-dest", "style"),
    ("sec-fetch-mode", "no-cors"),
    ("sec-fetch-site", "same-origin"),
    ("priority", "u=2"),
];

/// What h2load sends.
const H2LOAD: &[(&str, &str)] = &[
    (":method", "GET"),
    (":scheme", "http"),
    (":authority", "127.0.0.1:8000"),
    (":path", "/"),
    ("user-agent", "h2load nghttp2/1.64.0"),
];

fn block(enc: &mut Encoder, fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (n, v) in fields {
        enc.encode(n.as_bytes(), v.as_bytes(), Indexing::Incremental, &mut out);
    }
    out
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("h2_decode");
    for (name, fields) in [("browser", BROWSER), ("h2load", H2LOAD)] {
        let mut enc = Encoder::new();
        // The first block of a connection: literals, Huffman-coded.
        let first = block(&mut enc, fields);
        // Every later one: indices into the dynamic table.
        let later = block(&mut enc, fields);
        group.bench_function(format!("{name}/first"), |b| {
            b.iter(|| {
                let mut d = Decoder::new(4096);
                let mut n = 0;
                d.decode(black_box(&first), 65536, |k, v| n += k.len() + v.len())
                    .unwrap();
                n
            })
        });
        let mut d = Decoder::new(4096);
        d.decode(&first, 65536, |_, _| {}).unwrap();
        group.bench_function(format!("{name}/indexed"), |b| {
            b.iter(|| {
                let mut n = 0;
                d.decode(black_box(&later), 65536, |k, v| n += k.len() + v.len())
                    .unwrap();
                n
            })
        });
    }
    group.finish();
}

/// One GET in, "hello" out, on a connection that already exists: what a
/// worker does per request under h2load.
fn exchange(c: &mut Criterion) {
    let mut group = c.benchmark_group("h2_exchange");
    for (name, fields) in [("browser", BROWSER), ("h2load", H2LOAD)] {
        let now = Instant::now();
        let mut conn = Connection::new(Settings::default(), now);
        let mut hello = PREFACE.to_vec();
        frame::write_settings(&mut hello, &[]);
        conn.feed(&hello, now);
        let mut enc = Encoder::new();
        let mut id = 1u32;
        let request = |conn: &mut Connection, block: &[u8], id: u32| -> usize {
            let mut bytes = Vec::with_capacity(9 + block.len());
            frame::write_head(
                &mut bytes,
                block.len(),
                kind::HEADERS,
                flag::END_HEADERS | flag::END_STREAM,
                id,
            );
            bytes.extend_from_slice(block);
            // The credit for the previous response's body, as a client
            // gives it back.
            frame::write_window_update(&mut bytes, 0, 13);
            conn.feed(&bytes, now);
            let Some(Event::Request { stream, head, .. }) = conn.poll() else {
                panic!("no request");
            };
            let fields = [
                (&b"Content-Type"[..], &b"text/plain"[..]),
                (b"Content-Length", b"13"),
                (b"Server", b"ferrocorn"),
            ];
            conn.send_response(stream, 200, fields, false).unwrap();
            conn.send_data(stream, b"Hello, World!", true).unwrap();
            let n = conn.output().len() + head.headers.len();
            conn.consume_output(conn.output().len());
            n
        };
        let first = block(&mut enc, fields);
        request(&mut conn, &first, id);
        let later = block(&mut enc, fields);
        group.bench_function(name, |b| {
            b.iter(|| {
                id += 2;
                request(&mut conn, black_box(&later), id)
            })
        });
    }
    group.finish();
}

criterion_group!(benches, decode, exchange);

fn main() {
    benches();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
}
