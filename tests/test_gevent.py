"""-k gevent: requests run as greenlets on a gevent hub in the worker, while
the worker's Rust loop keeps all socket I/O."""
import http.server
import json
import selectors
import signal
import socket
import threading
import time

import pytest

from conftest import APPS, run_cli
from support import ConnectionClosed, RawConn, request_bytes, wait_until

pytestmark = [pytest.mark.timeout(90), pytest.mark.ferrocorn_only]

APP = "gevent_app:app"


def gevent_server(serve, *args, **kw):
    return serve(APP, "-k", "gevent", *args, **kw)


def get_json(server, target):
    resp = server.request(target=target)
    assert resp.status == 200, resp
    return json.loads(resp.body)


def fetch_all(port, targets, timeout=20.0):
    """Open one connection per target, then send every request at once and
    read every response with one selector; returns (seconds from the first
    send to the last response, [(status, body)] in order)."""
    socks = []
    for _ in targets:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        socks.append(s)
    sel = selectors.DefaultSelector()
    bufs = {}
    start = time.monotonic()
    for s, target in zip(socks, targets):
        s.sendall(request_bytes(target=target, headers=[("Connection", "close")]))
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        bufs[s] = b""
    open_left = len(socks)
    deadline = start + timeout
    while open_left:
        left = deadline - time.monotonic()
        assert left > 0, "responses still missing after %gs" % timeout
        for key, _ in sel.select(left):
            s = key.fileobj
            data = s.recv(65536)
            if data:
                bufs[s] += data
            else:
                sel.unregister(s)
                open_left -= 1
    took = time.monotonic() - start
    results = []
    for s in socks:
        s.close()
        head, _, body = bufs[s].partition(b"\r\n\r\n")
        results.append((int(head.split(b" ", 2)[1]), body))
    return took, results


def test_the_app_runs_in_greenlets_on_the_patched_main_thread(serve):
    server = gevent_server(serve)
    facts = get_json(server, "/facts")
    assert facts["patched_at_import"] is True
    assert facts["on_main_thread"] is True
    assert facts["greenlet"] == "Greenlet"
    # gunicorn's gevent worker says multithread; one worker: not multiprocess.
    assert facts["multithread"] is True and facts["multiprocess"] is False
    assert "runs as gthread" not in server.log() and "no gevent worker" not in server.log()


def test_two_hundred_sleeping_requests_overlap_on_one_worker(serve):
    server = gevent_server(serve, "--worker-connections", "1000", workers=1)
    took, results = fetch_all(server.port, ["/sleep?s=0.5"] * 200)
    assert results == [(200, b"slept")] * 200
    print("200 requests of gevent.sleep(0.5) on one worker: %.3f s" % took)
    # One after another they would take 100 s; together, a little over 0.5 s.
    assert took < 2.0, took


def test_worker_connections_bounds_the_greenlets_in_flight(serve):
    server = gevent_server(serve, "--worker-connections", "5", workers=1)
    took, results = fetch_all(server.port, ["/sleep?s=0.4"] * 5)
    assert results == [(200, b"slept")] * 5 and took < 2.0, took
    assert server.request(target="/").status == 200


class SlowHandler(http.server.BaseHTTPRequestHandler):
    """Sleeps half a second per request; counts how many run at once."""

    lock = threading.Lock()
    running = 0
    most = 0

    def do_GET(self):
        cls = type(self)
        with cls.lock:
            cls.running += 1
            cls.most = max(cls.most, cls.running)
        try:
            time.sleep(0.5)
            body = b"upstream " + self.path.encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        finally:
            with cls.lock:
                cls.running -= 1

    def log_message(self, *args):
        pass


class Upstream(http.server.ThreadingHTTPServer):
    # socketserver's default backlog (5) would drop some of the connections.
    request_queue_size = 128


@pytest.fixture
def upstream():
    SlowHandler.running = SlowHandler.most = 0
    httpd = Upstream(("127.0.0.1", 0), SlowHandler)
    httpd.daemon_threads = True
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield "http://127.0.0.1:%d" % httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()
    t.join(5)


def test_outbound_requests_calls_run_concurrently(serve, upstream):
    server = gevent_server(serve, workers=1)
    n = 10
    targets = ["/outbound?url=%s/call-%d" % (upstream, i) for i in range(n)]
    took, results = fetch_all(server.port, targets)
    assert results == [(200, b"upstream /call-%d" % i) for i in range(n)]
    # One after another: 5 s. The patched socket lets every call wait at once.
    assert SlowHandler.most == n, SlowHandler.most
    assert took < 2.5, took


def test_a_hub_blocked_by_cpu_bound_code_is_aborted_with_the_greenlets_stacks(serve):
    # Room for a slow boot on a busy machine: a worker still importing when
    # the timeout passes is replaced too, before the test's hub is blocked.
    server = gevent_server(serve, "--timeout", "5", workers=1)
    (worker,) = server.wait_workers(1)
    parked = threading.Thread(target=lambda: _quietly(server, "/sleep?s=60"), daemon=True)
    parked.start()
    wait_until(lambda: get_json(server, "/state")["sleeping"] == 1, 10,
               what="a greenlet asleep in the app")
    spinner = threading.Thread(target=lambda: _quietly(server, "/spin?s=60"), daemon=True)
    spinner.start()
    marker = "The greenlets' stacks follow"

    def dumped():
        # The dump is written over time: wait for all of it, and for the
        # master's account of the abort, which may come a moment later.
        log = server.log()
        if marker not in log or "Worker aborted after the timeout" not in log:
            return None
        stacks = log[log.index(marker):]
        # The parked greenlet and the one blocking the hub, by their views.
        return log if "sleeping_view" in stacks and "spinning_view" in stacks else None

    log = wait_until(dumped, 30, what="the greenlets' stacks and the abort in the log")
    assert "WORKER TIMEOUT" in log
    # A new worker serves.
    wait_until(lambda: (lambda w: w if w and worker not in w else None)(server.workers()), 20,
               what="a replacement worker")
    assert server.request(target="/sleep?s=0").status == 200
    parked.join(10)
    spinner.join(10)


def _quietly(server, target):
    try:
        server.request(target=target)
    except (OSError, ConnectionClosed):
        pass


@pytest.mark.parametrize("how", ["iterable", "write"])
def test_a_slow_reader_makes_its_greenlet_wait_while_others_are_served(serve, how):
    server = gevent_server(serve, workers=1)
    chunks, size = 256, 65536
    target = "/stream?chunks=%d&size=%d%s" % (chunks, size, "&write=1" if how == "write" else "")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    sock.settimeout(20)
    sock.connect(("127.0.0.1", server.port))
    try:
        sock.sendall(request_bytes(target=target))
        # The greenlet produces until the client stops taking, then waits,
        # and the hub serves other requests meanwhile.
        seen = []

        def settled():
            seen.append(get_json(server, "/state")["produced"])
            return len(seen) >= 4 and seen[-1] == seen[-4] and seen[-1] > 0
        wait_until(settled, 20, interval=0.1, what="the producer waiting for the client")
        assert seen[-1] < chunks, seen
        # Reading everything lets it finish, byte for byte.
        conn = RawConn.__new__(RawConn)
        conn.sock, conn.buf = sock, b""
        resp = conn.read_response()
        assert resp.status == 200
        expected = b"".join(bytes([i % 256]) * size for i in range(chunks))
        assert len(resp.body) == len(expected) and resp.body == expected
    finally:
        sock.close()
    assert get_json(server, "/state")["produced"] == chunks


def test_each_greenlet_sends_its_own_early_hints(serve):
    server = gevent_server(serve, workers=1)
    conns = [server.connect() for _ in range(3)]
    try:
        for i, c in enumerate(conns):
            c.send(request_bytes(target="/hints?name=n%d&s=%.1f" % (i, 0.6 - 0.2 * i)))
        for i, c in enumerate(conns):
            interim, final = c.read_final_response()
            assert [r.status for r in interim] == [103]
            assert interim[0].header("Link") == "</n%d.css>; rel=preload" % i
            assert final.status == 200 and final.body == b"n%d" % i
    finally:
        for c in conns:
            c.close()


def test_term_lets_in_flight_greenlets_finish(serve):
    server = gevent_server(serve, "--graceful-timeout", "20", workers=1)
    results = {}
    clients = threading.Thread(target=lambda: results.update(
        r=fetch_all(server.port, ["/sleep?s=1.5"] * 5)))
    clients.start()
    wait_until(lambda: get_json(server, "/state")["sleeping"] == 5, 10,
               what="five greenlets asleep in the app")
    server.send_signal(signal.SIGTERM)
    clients.join(20)
    assert results["r"][1] == [(200, b"slept")] * 5
    assert server.wait_exit() == 0, server.log_tail()


def test_quit_stops_at_once_with_greenlets_in_flight(serve):
    server = gevent_server(serve, "--graceful-timeout", "30", workers=1)
    parked = threading.Thread(target=lambda: _quietly(server, "/sleep?s=60"), daemon=True)
    parked.start()
    wait_until(lambda: get_json(server, "/state")["sleeping"] == 1, 10,
               what="a greenlet asleep in the app")
    started = time.monotonic()
    server.send_signal(signal.SIGQUIT)
    assert server.wait_exit(10) is not None, server.log_tail()
    assert time.monotonic() - started < 10
    parked.join(10)


HOOKS_CONF = """
import json, os

def _rec(name, **facts):
    facts["hook"] = name
    facts["os_pid"] = os.getpid()
    with open(%(record)r, "a") as f:
        f.write(json.dumps(facts) + "\\n")

def post_worker_init(worker):
    _rec("post_worker_init")

def pre_request(worker, req):
    import gevent
    _rec("pre_request", path=req.path, greenlet=type(gevent.getcurrent()).__name__)

def post_request(worker, req, environ, resp):
    _rec("post_request", path=req.path, code=resp.status_code,
         multithread=environ["wsgi.multithread"])

def worker_exit(server, worker):
    _rec("worker_exit")
"""


def test_hooks_and_the_access_log_run_for_greenlets(serve, tmp_path):
    record = tmp_path / "hooks.jsonl"
    conf = tmp_path / "hooks.conf.py"
    conf.write_text(HOOKS_CONF % {"record": str(record)})
    access = tmp_path / "access.log"
    server = gevent_server(serve, "-c", str(conf), "--access-logfile", str(access), workers=1)

    def recs():
        if not record.exists():
            return []
        return [json.loads(l) for l in record.read_text().splitlines() if l.strip()]
    took, results = fetch_all(server.port, ["/sleep?s=0.3&n=%d" % i for i in range(4)])
    assert [r[0] for r in results] == [200] * 4
    mine = lambda hook: [r for r in recs() if r["hook"] == hook and r.get("path") == "/sleep"]
    wait_until(lambda: len(mine("post_request")) == 4, 10, what="four post_request calls")
    assert len(mine("pre_request")) == 4
    assert all(r["greenlet"] == "Greenlet" for r in mine("pre_request"))
    assert all(r["code"] == 200 and r["multithread"] is True for r in mine("post_request"))
    wait_until(lambda: access.exists() and access.read_text().count("GET /sleep?s=0.3") == 4,
               10, what="four access log lines")
    assert any(r["hook"] == "post_worker_init" for r in recs())
    server.stop()
    assert any(r["hook"] == "worker_exit" for r in recs())


def test_max_requests_replaces_the_worker(serve):
    server = gevent_server(serve, "--max-requests", "3", workers=1)
    (first,) = server.wait_workers(1)
    pids = set()
    deadline = time.monotonic() + 20
    while len(pids) < 2 and time.monotonic() < deadline:
        pids.add(get_json(server, "/facts")["pid"])
    assert first in pids and len(pids) == 2, pids


def test_hup_replaces_the_gevent_worker(serve):
    server = gevent_server(serve, workers=1)
    (old,) = server.wait_workers(1)
    server.send_signal(signal.SIGHUP)
    wait_until(lambda: (lambda w: w if len(w) == 1 and old not in w else None)(server.workers()),
               20, what="a new worker after HUP")
    assert get_json(server, "/facts")["patched_at_import"] is True


def test_missing_gevent_is_a_clear_start_up_error(engine, tmp_path):
    fake = tmp_path / "shadow" / "gevent"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('raise ImportError("gevent is not installed here")\n')
    env = {"PYTHONPATH": str(tmp_path / "shadow")}
    result = run_cli(["-k", "gevent", "-b", "127.0.0.1:0", "--io-engine", engine,
                      "--chdir", str(APPS), "basic:app"], env=env)
    assert result.returncode != 0
    assert "-k gevent needs the gevent package (pip install gevent)" in result.stderr
    assert "gevent is not installed here" in result.stderr
    check = run_cli(["-k", "gevent", "--check-config", "--chdir", str(APPS), "basic:app"],
                    env=env)
    assert check.returncode == 1
    assert "-k gevent needs the gevent package" in check.stderr


def test_an_asgi_app_under_gevent_is_refused(engine):
    result = run_cli(["-k", "gevent", "-b", "127.0.0.1:0", "--io-engine", engine,
                      "--chdir", str(APPS), "asgi_app:app"])
    assert result.returncode != 0
    assert "runs WSGI apps" in result.stderr and "-k asgi" in result.stderr
