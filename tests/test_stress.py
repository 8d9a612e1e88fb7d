"""Fresh workers hit by concurrent first requests.

A worker that has served nothing yet does its first-time work (interned
strings, caches, the first import of a framework's lazy modules) on every
thread at once when a burst of requests arrives together. Each case starts
the server, sends the burst without warming the worker up (no probe
request: the test only waits until the port accepts connections), checks
that every request is answered, and stops the server; then it does it all
again, `FERROCORN_STRESS_STARTS` times (default 4).

The cases cover the sync worker, app threads (`--threads`), greenlets
(`-k gevent`, its views' `time.sleep` patched) and ASGI, plain
WSGI and Flask apps, and the same again with hooks, the access log and
statsd on, so that their locks are in the burst too. A request that is not
answered within ANSWER_TIMEOUT is a hang: the server's --timeout is set far
beyond it, so a hung worker is not hidden by a restart.

Before a release, run it longer:

    FERROCORN_STRESS_STARTS=100 .venv/bin/python -m pytest tests/test_stress.py
"""
import os
import socket
import threading
import time

import pytest

from support import RawConn, request_bytes

STARTS = int(os.environ.get("FERROCORN_STRESS_STARTS", "4"))
# Far longer than any burst takes (the slowest, 8 sequential 50 ms views on
# the sync worker, takes well under a second), and far shorter than the
# server's --timeout below.
ANSWER_TIMEOUT = 20.0
SERVER_TIMEOUT = "120"
CONNECT_TIMEOUT = 15.0

HOOKS_CONF = """
import threading
_lock = threading.Lock()
seen = {"n": 0}

def pre_request(worker, req):
    with _lock:
        seen["n"] += 1

def post_request(worker, req, environ, resp):
    with _lock:
        seen["n"] += 1
"""

# name: (app, extra args, target, concurrent requests, observed)
CASES = {
    "sync-wsgi": ("basic:app", [], "/sleep?s=0.05", 8, False),
    "threads-wsgi": ("basic:app", ["--threads", "8"], "/sleep?s=0.3", 8, False),
    "threads-flask": ("stress_flask:app", ["--threads", "8"], "/sleep?s=0.3", 8, False),
    "asgi": ("asgi_app:app", [], "/hello", 100, False),
    "gevent-wsgi": ("basic:app", ["-k", "gevent"], "/sleep?s=0.3", 50, False),
    "gevent-flask": ("stress_flask:app", ["-k", "gevent"], "/sleep?s=0.3", 50, False),
    "sync-wsgi-observed": ("basic:app", [], "/sleep?s=0.05", 8, True),
    "threads-wsgi-observed": ("basic:app", ["--threads", "8"], "/sleep?s=0.3", 8, True),
    "threads-flask-observed": ("stress_flask:app", ["--threads", "8"], "/sleep?s=0.3", 8,
                               True),
    "asgi-observed": ("asgi_app:app", [], "/hello", 100, True),
    "gevent-wsgi-observed": ("basic:app", ["-k", "gevent"], "/sleep?s=0.3", 50, True),
    "gevent-flask-observed": ("stress_flask:app", ["-k", "gevent"], "/sleep?s=0.3", 50, True),
}


def wait_accepting(port, deadline):
    """Poll until the port takes connections (the listener is bound),
    without sending a request."""
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError("port %d never accepted a connection" % port)
            time.sleep(0.02)


def burst(port, target, count):
    """`count` requests sent at once, each on its own connection; returns
    {index: status or the error that ended it}."""
    results = {}
    ready = threading.Barrier(count)

    def one(i):
        try:
            with RawConn(("127.0.0.1", port), timeout=ANSWER_TIMEOUT) as conn:
                ready.wait(timeout=CONNECT_TIMEOUT)
                conn.send(request_bytes("GET", target,
                                        headers=[("X-Stress-Id", str(i))]))
                results[i] = conn.read_final_response()[1].status
        except Exception as e:  # noqa: BLE001 - every failure is reported
            results[i] = "%s: %s" % (type(e).__name__, e)

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(ANSWER_TIMEOUT + CONNECT_TIMEOUT + 5)
    return results


@pytest.fixture
def statsd_sink():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()


@pytest.mark.parametrize("case", list(CASES))
def test_fresh_workers_answer_a_concurrent_first_burst(serve, tmp_path, statsd_sink, case):
    app, args, target, count, observed = CASES[case]
    args = ["--timeout", SERVER_TIMEOUT] + list(args)
    if observed:
        conf = tmp_path / "hooks.conf.py"
        conf.write_text(HOOKS_CONF)
        args += ["-c", str(conf), "--access-logfile", str(tmp_path / "access.log"),
                 "--statsd-host", "127.0.0.1:%d" % statsd_sink]
    for start in range(STARTS):
        server = serve(app, *args, wait=False)
        wait_accepting(server.port, time.monotonic() + CONNECT_TIMEOUT)
        results = burst(server.port, target, count)
        failed = {i: r for i, r in results.items() if r != 200}
        missing = count - len(results)
        assert not failed and not missing, (
            "start %d of %d: %d of %d requests not answered 200 (%d never finished): %s\n%s"
            % (start + 1, STARTS, len(failed) + missing, count, missing,
               dict(list(failed.items())[:5]), server.log_tail()))
        server.stop()
