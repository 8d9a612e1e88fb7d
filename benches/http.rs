//! Parse and encode costs of the sans-IO HTTP layer.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ferrocorn::http::{
    Config, Conn, DateCache, Event, PeerTrust, RequestInfo, ResponseWriter, Version,
};

/// What a browser sends for a page.
const BROWSER_GET: &[u8] = b"GET /forums/1/topics/2375?page=1 HTTP/1.1\r\n\
Host: www.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Cookie: session=4f0b6a2c9d; theme=dark; _ga=GA1.2.123456789.987654321\r\n\
Connection: keep-alive\r\n\
\r\n";

const SMALL_POST: &[u8] = b"POST /api/items HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\nContent-Length: 27\r\n\r\n{\"name\":\"widget\",\"qty\":12}\n";

const CHUNKED_POST: &[u8] = b"POST /upload HTTP/1.1\r\nHost: api\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123456789abcdef\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n";

fn parse_one(cfg: &Arc<Config>, bytes: &[u8]) -> usize {
    let mut conn = Conn::new(cfg.clone(), PeerTrust::default());
    conn.feed(bytes);
    match conn.poll() {
        Event::Request(r) => r.head.headers.len() + r.body.len(),
        other => panic!("benchmark request did not parse: {other:?}"),
    }
}

fn parse(c: &mut Criterion) {
    let cfg = Arc::new(Config::default());
    let mut group = c.benchmark_group("parse");
    for (name, bytes) in [
        ("browser_get", BROWSER_GET),
        ("small_post", SMALL_POST),
        ("chunked_post", CHUNKED_POST),
    ] {
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function(name, |b| b.iter(|| parse_one(&cfg, black_box(bytes))));
    }
    // httparse alone on the same bytes, with none of gunicorn's rules: the
    // floor the parser is measured against.
    group.throughput(Throughput::Bytes(BROWSER_GET.len() as u64));
    group.bench_function("httparse_floor_browser_get", |b| {
        b.iter(|| {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut req = httparse::Request::new(&mut headers);
            match req.parse(black_box(BROWSER_GET)) {
                Ok(httparse::Status::Complete(n)) => n + req.headers.len(),
                other => panic!("httparse: {other:?}"),
            }
        })
    });
    // 64 pipelined requests on one connection.
    let pipelined: Vec<u8> = BROWSER_GET.repeat(64);
    group.throughput(Throughput::Bytes(pipelined.len() as u64));
    group.bench_function("pipelined_64", |b| {
        b.iter(|| {
            let mut conn = Conn::new(cfg.clone(), PeerTrust::default());
            conn.feed(black_box(&pipelined));
            let mut n = 0;
            while let Event::Request(_) = conn.poll() {
                n += 1;
            }
            n
        })
    });
    group.finish();
}

fn encode(c: &mut Criterion) {
    let headers = vec![
        (
            b"Content-Type".to_vec(),
            b"text/html; charset=utf-8".to_vec(),
        ),
        (b"Cache-Control".to_vec(), b"no-store".to_vec()),
    ];
    let body = vec![b'x'; 1024];
    let mut date = DateCache::new();
    let mut out = Vec::with_capacity(4096);
    let req = RequestInfo {
        version: Version::Http11,
        is_head: false,
        keep_alive: true,
    };
    c.bench_function("encode/200_with_length", |b| {
        b.iter(|| {
            out.clear();
            let mut w = ResponseWriter::start(
                &mut out,
                &mut date,
                req,
                b"200 OK",
                &headers,
                Some(body.len() as u64),
                false,
            );
            w.body(&mut out, &body);
            w.finish(&mut out);
            out.len()
        })
    });
}

criterion_group!(benches, parse, encode);
criterion_main!(benches);
