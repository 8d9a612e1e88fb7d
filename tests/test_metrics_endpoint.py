"""--metrics-bind: the master serves Prometheus metrics (/metrics) and health
checks (/healthz, /readyz) itself, from the workers' counters in shared
memory plus the totals of workers it reaped."""
import os
import re
import signal
import socket
import threading
import time

import pytest

from conftest import free_port
from support import ConnectionClosed, wait_until

pytestmark = pytest.mark.ferrocorn_only

SAMPLE = re.compile(r'^([a-z_]+)(\{[^}]*\})? (\S+)$')


def http_get(port, path, timeout=5.0):
    """(status, body) of GET path on 127.0.0.1:port, read until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % path.encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:])}
    assert headers.get("connection") == "close"
    assert int(headers["content-length"]) == len(body)
    return status, body.decode("utf-8")


def scrape(port):
    """The /metrics samples as {(name, labels): float}, checking the format."""
    status, text = http_get(port, "/metrics")
    assert status == 200
    samples, typed, helped = {}, {}, set()
    for line in text.splitlines():
        if line.startswith("# HELP "):
            helped.add(line.split()[2])
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            typed[name] = kind
        else:
            m = SAMPLE.match(line)
            assert m, "not a sample line: %r" % line
            name, labels, value = m.groups()
            family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in typed else name
            assert family in typed and family in helped, "no TYPE/HELP for %s" % name
            samples[(name, labels or "")] = float(value)
    return samples


def start(serve, *args, workers=1):
    mport = free_port()
    server = serve("basic:app", "--metrics-bind", "127.0.0.1:%d" % mport, *args,
                   workers=workers)
    server.mport = mport
    return server


def wait_ready(server, timeout=15.0):
    wait_until(lambda: http_get(server.mport, "/readyz")[0] == 200, timeout,
               what="/readyz 200")


def test_counters_and_histogram_follow_the_requests(serve):
    server = start(serve)
    wait_ready(server)
    before = scrape(server.mport)
    for _ in range(3):
        assert server.request(target="/").status == 200
    assert server.request(target="/nope").status == 404
    assert server.request(target="/stream?n=3").status == 200
    after = scrape(server.mport)

    assert after[("ferrocorn_requests_total", "")] == before[("ferrocorn_requests_total", "")] + 5
    assert after[("ferrocorn_responses_total", '{class="2xx"}')] \
        == before[("ferrocorn_responses_total", '{class="2xx"}')] + 4
    assert after[("ferrocorn_responses_total", '{class="4xx"}')] \
        == before[("ferrocorn_responses_total", '{class="4xx"}')] + 1
    buckets = sorted(((float(l[5:-2]) if "Inf" not in l else float("inf")), v)
                     for (n, l), v in after.items()
                     if n == "ferrocorn_request_duration_seconds_bucket")
    assert len(buckets) == 12 and buckets[-1][0] == float("inf")
    counts = [v for _, v in buckets]
    assert counts == sorted(counts), "buckets must be cumulative"
    total = after[("ferrocorn_requests_total", "")]
    assert counts[-1] == total
    assert after[("ferrocorn_request_duration_seconds_count", "")] == total
    assert after[("ferrocorn_request_duration_seconds_sum", "")] > 0
    assert after[("ferrocorn_requests_in_flight", "")] == 0
    assert after[("ferrocorn_workers", "")] == 1
    infos = [l for (n, l) in after if n == "ferrocorn_worker_info"]
    assert len(infos) == 1
    pid = next(iter(server.workers()))
    engine = {"uring": "io_uring", "epoll": "epoll"}.get(server_engine(server))
    assert 'pid="%d"' % pid in infos[0] and 'slot="0"' in infos[0]
    if engine:
        assert 'engine="%s"' % engine in infos[0]


def server_engine(server):
    args = server.args
    return args[args.index("--io-engine") + 1] if "--io-engine" in args else None


def test_counters_survive_a_killed_worker(serve):
    server = start(serve)
    wait_ready(server)
    for _ in range(4):
        assert server.request(target="/").status == 200
    before = scrape(server.mport)
    assert before[("ferrocorn_requests_total", "")] >= 4
    (old,) = server.workers()
    os.kill(old, signal.SIGKILL)
    wait_until(lambda: (lambda w: len(w) == 1 and old not in w)(server.workers()), 15,
               what="a replacement worker")
    wait_ready(server)
    after = scrape(server.mport)
    assert after[("ferrocorn_requests_total", "")] >= before[("ferrocorn_requests_total", "")]
    assert after[("ferrocorn_worker_restarts_total", "")] \
        == before[("ferrocorn_worker_restarts_total", "")] + 1
    assert server.request(target="/").status == 200
    again = scrape(server.mport)
    assert again[("ferrocorn_requests_total", "")] == after[("ferrocorn_requests_total", "")] + 1
    assert again[("ferrocorn_request_duration_seconds_count", "")] \
        == again[("ferrocorn_requests_total", "")]


def test_in_flight_counts_a_running_request(serve):
    server = start(serve)
    wait_ready(server)
    t = threading.Thread(target=lambda: server.request(target="/sleep?s=1.5"))
    t.start()
    try:
        wait_until(lambda: scrape(server.mport)[("ferrocorn_requests_in_flight", "")] == 1, 5,
                   what="one request in flight")
    finally:
        t.join()
    wait_until(lambda: scrape(server.mport)[("ferrocorn_requests_in_flight", "")] == 0, 5,
               what="no request in flight")


def test_readyz_follows_the_workers(serve):
    server = start(serve, workers=2)
    assert http_get(server.mport, "/healthz") == (200, "ok\n")
    wait_ready(server)
    server.send_signal(signal.SIGWINCH)
    wait_until(lambda: len(server.workers()) == 0, 15, what="workers gone after WINCH")
    # The processes are gone before the master has reaped them: wait for
    # the master's own count.
    wait_until(lambda: scrape(server.mport)[("ferrocorn_workers", "")] == 0, 15,
               what="the master to count no worker")
    status, body = http_get(server.mport, "/readyz")
    assert status == 503 and "not ready" in body, body
    assert http_get(server.mport, "/healthz")[0] == 200
    server.send_signal(signal.SIGHUP)
    wait_ready(server)
    assert server.request(target="/").status == 200


def test_readyz_says_no_during_a_graceful_stop(serve):
    server = start(serve, "--graceful-timeout", "5")
    wait_ready(server)
    t = threading.Thread(target=lambda: server.request(target="/sleep?s=2"))
    t.start()
    time.sleep(0.3)
    server.send_signal(signal.SIGTERM)
    try:
        status, body = wait_until(
            lambda: (lambda r: r if r[0] == 503 else None)(http_get(server.mport, "/readyz")),
            3, what="/readyz 503 while stopping")
        assert "stopping" in body
        assert http_get(server.mport, "/healthz")[0] == 200
    finally:
        t.join()
    assert server.wait_exit() == 0


def test_a_slow_client_on_the_metrics_bind_does_not_stall_the_master(serve):
    server = start(serve)
    wait_ready(server)
    slow = socket.create_connection(("127.0.0.1", server.mport), timeout=5)
    try:
        slow.sendall(b"GET /metrics HTTP/1.1\r\nHost:")
        t0 = time.monotonic()
        assert http_get(server.mport, "/healthz", timeout=2) == (200, "ok\n")
        assert time.monotonic() - t0 < 1.0
        assert server.request(target="/").status == 200
        # The half-sent request is dropped after its deadline, unanswered.
        slow.settimeout(5)
        assert slow.recv(100) == b""
    finally:
        slow.close()
    garbage = socket.create_connection(("127.0.0.1", server.mport), timeout=5)
    garbage.sendall(b"\x16\x03\x01\x00\xa5garbage\r\n\r\n")
    assert garbage.recv(100).startswith(b"HTTP/1.1 400")
    garbage.close()
    assert http_get(server.mport, "/nope")[0] == 404
    assert http_get(server.mport, "/readyz")[0] == 200


def test_a_taken_metrics_port_stops_the_start(serve):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = serve("basic:app", "--metrics-bind", "127.0.0.1:%d" % port, wait=False)
        assert server.wait_exit() not in (0, None)
        assert "--metrics-bind" in server.log()


def test_shed_requests_are_counted_and_readyz_says_no_meanwhile(serve):
    server = start(serve, "--max-queued-requests", "1")
    wait_ready(server)
    busy = threading.Thread(target=lambda: server.request(target="/sleep?s=0.8"))
    busy.start()
    time.sleep(0.2)  # the worker is inside the app; the next requests queue behind it
    conns = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(4)]
    try:
        for c in conns:
            c.sendall(b"GET /say/q HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answers = [c.recv(100) for c in conns]
    finally:
        for c in conns:
            c.close()
        busy.join()
    shed = sum(a.startswith(b"HTTP/1.1 503") for a in answers)
    assert shed >= 1, answers
    status, body = http_get(server.mport, "/readyz")
    assert status == 503 and "shedding" in body, body
    assert scrape(server.mport)[("ferrocorn_requests_shed_total", "")] == shed
    wait_ready(server, timeout=3)


def test_a_timed_out_worker_is_counted(serve):
    server = start(serve, "--timeout", "1")
    wait_ready(server)
    (old,) = server.workers()
    try:
        server.request(target="/sleep?s=6")
    except (OSError, ConnectionClosed):
        pass  # the worker is aborted mid-request
    wait_until(lambda: (lambda w: len(w) == 1 and old not in w)(server.workers()), 15,
               what="a replacement worker")
    samples = scrape(server.mport)
    assert samples[("ferrocorn_worker_timeouts_total", "")] == 1
    assert samples[("ferrocorn_worker_restarts_total", "")] == 1
    assert samples[("ferrocorn_requests_in_flight", "")] == 0
