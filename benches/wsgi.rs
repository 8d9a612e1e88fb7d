//! The WSGI bridge with an embedded interpreter: build the environ, call
//! the app, pull the body, call close(), for requests parsed by the http
//! layer. Needs the `python` feature and libpython at run time:
//!
//! ```sh
//! LD_LIBRARY_PATH="$(python3 -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')" \
//!     cargo bench --features python --bench wsgi
//! ```

use std::ffi::CString;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use pyo3::prelude::*;
use pyo3::types::PyModule;

use ferrocorn::http::{Config, Conn, ConnInfo, Event, PeerTrust, Request};
use ferrocorn::wsgi::{Chunk, Reply, WorkerInfo, WsgiApp};

const MODULE: &str = "ferrocorn_bench_apps";

const APPS: &str = r#"
def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])
    return [b"Hello, World!"]


def reader(environ, start_response):
    # What a small framework looks at for every request.
    parts = [
        environ["REQUEST_METHOD"],
        environ["PATH_INFO"],
        environ["QUERY_STRING"],
        environ.get("HTTP_HOST", ""),
        environ.get("HTTP_COOKIE", ""),
        environ.get("HTTP_ACCEPT", ""),
        environ["wsgi.url_scheme"],
    ]
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    out = ("%d %d" % (len("".join(parts)), len(body))).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(out)))])
    return [out]


def generator(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    yield b"Hello, "
    yield b"World!"
"#;

const BROWSER_GET: &[u8] = b"GET /shop/cart?page=2&sort=price HTTP/1.1\r\n\
Host: www.example.com\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
Accept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Connection: keep-alive\r\n\
Cookie: sessionid=8c1f2a9e4b7d43f0a6e5; csrftoken=Qm9vdHN0cmFwQ1NSRlRva2Vu\r\n\
Upgrade-Insecure-Requests: 1\r\n\
\r\n";

const SMALL_POST: &[u8] = b"POST /api/v1/items HTTP/1.1\r\n\
Host: api.example.com\r\n\
Accept: application/json\r\n\
Content-Type: application/json\r\n\
Content-Length: 45\r\n\
\r\n\
{\"name\": \"widget\", \"quantity\": 3, \"tag\": \"x\"}";

fn parse(bytes: &[u8]) -> Request {
    let mut conn = Conn::new(Arc::new(Config::default()), PeerTrust::default());
    conn.feed(bytes);
    match conn.poll() {
        Event::Request(req) => req,
        other => panic!("benchmark request does not parse: {other:?}"),
    }
}

/// One request through the bridge, as the worker runs it; returns the body size.
fn serve(py: Python<'_>, app: &WsgiApp, req: &Request, conn: &ConnInfo) -> usize {
    match app.call(py, req, conn) {
        Reply::Failed => panic!("the benchmark app failed"),
        Reply::Response { head, mut body } => {
            let mut size = head.headers.len();
            loop {
                match body.next_chunk(py) {
                    Chunk::Data(d) => size += d.len(),
                    Chunk::End => break,
                    Chunk::Failed => panic!("the benchmark app's body failed"),
                }
            }
            body.close(py);
            size
        }
    }
}

fn load(py: Python<'_>, name: &str) -> WsgiApp {
    let worker = WorkerInfo {
        multiprocess: true,
        multithread: false,
    };
    match WsgiApp::load(py, &format!("{MODULE}:{name}"), worker) {
        Ok(app) => app,
        Err(e) => panic!("benchmark app {name} does not load: {}", e.0),
    }
}

fn wsgi(c: &mut Criterion) {
    Python::initialize();
    Python::attach(|py| {
        let code = CString::new(APPS).expect("no NUL in the apps");
        let file = CString::new(format!("{MODULE}.py")).expect("no NUL");
        let name = CString::new(MODULE).expect("no NUL");
        // from_code registers the module in sys.modules, where load finds it.
        let _module = PyModule::from_code(py, &code, &file, &name).expect("benchmark apps compile");

        let conn = ConnInfo {
            peer: Some("127.0.0.1:40000".parse().expect("address")),
            server_name: "127.0.0.1".into(),
            server_port: "8000".into(),
            tls: false,
        };
        let get = parse(BROWSER_GET);
        let post = parse(SMALL_POST);
        let mut group = c.benchmark_group("wsgi");
        for (bench, app, req) in [
            ("hello/browser_get", "hello", &get),
            ("reader/browser_get", "reader", &get),
            ("reader/small_post", "reader", &post),
            ("generator/browser_get", "generator", &get),
        ] {
            let app = load(py, app);
            assert!(serve(py, &app, req, &conn) > 0, "{bench}: empty answer");
            group.bench_function(bench, |b| b.iter(|| serve(py, &app, black_box(req), &conn)));
        }
        group.finish();
    });
}

criterion_group!(benches, wsgi);
criterion_main!(benches);
