"""Streaming with backpressure, clients that stall or leave, and --threads.

Each streaming test runs with the app on the loop thread (`sync`) and with
app threads (`--threads 4`), on both io engines.
"""
import socket
import threading
import time

import pytest

from support import RawConn, request_bytes, wait_until

MODES = {"sync": (), "threads": ("--threads", "4")}


@pytest.fixture(params=sorted(MODES))
def mode(request):
    return request.param


@pytest.fixture
def server(serve, mode, close_log):
    return serve("streaming:app", *MODES[mode], env={"TEST_CLOSE_LOG": str(close_log)})


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)


def only_worker(server):
    workers = server.wait_workers(1)
    return next(iter(workers))


def read_head(sock):
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        assert data, "connection closed before the head"
        buf += data
    head, _, rest = buf.partition(b"\r\n\r\n")
    return head, rest


def test_slow_reader_of_a_1gib_stream_keeps_worker_rss_flat(server):
    pid = only_worker(server)
    assert server.request(target="/say/warm").body == b"warm"
    before = rss_kib(pid)
    peak = before
    total = 0
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        s.sendall(request_bytes(target="/big?mb=1024", headers=[("Connection", "close")]))
        head, rest = read_head(s)
        assert b" 200 " in head.split(b"\r\n")[0]
        total += len(rest)
        next_pause = 64 << 20
        buf = bytearray(1 << 20)
        while True:
            n = s.recv_into(buf)
            if not n:
                break
            total += n
            if total >= next_pause:
                # A slow reader: stop for a moment; the server must wait, not buffer.
                time.sleep(0.2)
                peak = max(peak, rss_kib(pid))
                next_pause += 128 << 20
    # 1 GiB of body plus chunk framing.
    assert total > (1 << 30)
    assert peak - before < 32 * 1024, "worker RSS grew by %d KiB" % (peak - before)


def test_client_leaving_mid_stream_runs_close_promptly(server, close_log):
    with RawConn(("127.0.0.1", server.port)) as conn:
        conn.send(request_bytes(target="/endless?tag=left"))
        conn.sock.recv(65536)
    wait_until(lambda: "left" in close_log.read_text().split(), timeout=3.0,
               what="close() of the abandoned body")
    # The worker carries on.
    assert server.request(target="/say/after").body == b"after"


def test_a_stalled_stream_does_not_hold_up_other_clients(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as stalled:
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        stalled.sendall(request_bytes(target="/big?mb=512"))
        read_head(stalled)
        time.sleep(0.3)  # let the server fill the socket buffers and wait
        t0 = time.monotonic()
        assert server.request(target="/say/other").body == b"other"
        assert time.monotonic() - t0 < 1.0


def test_wsgi_multithread_says_whether_app_threads_run(server, mode):
    assert server.request(target="/multithread").body == (
        b"True" if mode == "threads" else b"False")


# ---------------------------------------------------------------- threads

def test_threads_serve_blocking_requests_concurrently(serve):
    server = serve("streaming:app", "--threads", "8")
    results = []

    def one():
        results.append(server.request(target="/sleep?s=0.5").body)

    clients = [threading.Thread(target=one) for _ in range(8)]
    t0 = time.monotonic()
    for c in clients:
        c.start()
    for c in clients:
        c.join(10)
    elapsed = time.monotonic() - t0
    assert results == [b"slept"] * 8
    # One at a time would take 4 s.
    assert elapsed < 2.0, "8 x 0.5 s sleeps took %.2f s with 8 threads" % elapsed


def test_gthread_worker_class_runs_app_threads(serve):
    server = serve("streaming:app", "-k", "gthread")
    assert server.request(target="/multithread").body == b"True"


def test_pipelined_requests_keep_their_order_with_threads(serve):
    server = serve("streaming:app", "--threads", "4")
    with server.connect() as conn:
        conn.send(request_bytes(target="/sleep?s=0.3")
                  + request_bytes(target="/say/two")
                  + request_bytes(target="/say/three"))
        bodies = [conn.read_response().body for _ in range(3)]
        assert bodies == [b"slept", b"two", b"three"]
        # Keep-alive: the connection still works.
        conn.send(request_bytes(target="/say/four"))
        assert conn.read_response().body == b"four"


def test_concurrent_requests_run_in_different_app_threads(serve):
    server = serve("streaming:app", "--threads", "3")
    names = set()
    lock = threading.Lock()

    def one():
        with server.connect() as conn:
            # Three requests in the app at once need three threads.
            conn.send(request_bytes(target="/thread?s=0.4"))
            body = conn.read_response().body
            with lock:
                names.add(body)
            # Keep-alive: the same connection is served again.
            conn.send(request_bytes(target="/say/again"))
            assert conn.read_response().body == b"again"

    clients = [threading.Thread(target=one) for _ in range(3)]
    for c in clients:
        c.start()
    for c in clients:
        c.join(10)
    assert len(names) == 3, names


def test_write_callable_streams_before_the_app_returns(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        t0 = time.monotonic()
        s.sendall(request_bytes(target="/write-then-sleep"))
        head, rest = read_head(s)
        while b"first;" not in rest:
            rest += s.recv(65536)
        # The app is still sleeping: write() data did not wait for it.
        assert time.monotonic() - t0 < 0.8
        assert b"Transfer-Encoding: chunked" in head
        while not rest.endswith(b"0\r\n\r\n"):
            rest += s.recv(65536)
        assert b"second" in rest
        assert time.monotonic() - t0 >= 0.9


def _get_status(port, target, results, i):
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(("GET %s HTTP/1.0\r\n\r\n" % target).encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        results[i] = int(data.split(b" ", 2)[1]) if data else None


def _all_at_once(port, targets):
    results = [None] * len(targets)
    clients = [threading.Thread(target=_get_status, args=(port, t, results, i))
               for i, t in enumerate(targets)]
    for c in clients:
        c.start()
    for c in clients:
        c.join(30)
    return results


def test_threads_shed_requests_beyond_the_queue_bound(serve):
    server = serve("streaming:app", "--threads", "2", "--max-queued-requests", "2")
    busy = {}
    blocker = threading.Thread(
        target=lambda: busy.update(r=_all_at_once(server.port, ["/sleep?s=0.8"] * 2)))
    blocker.start()
    time.sleep(0.3)  # both app threads are now inside the app
    statuses = sorted(_all_at_once(server.port, ["/say/q"] * 6))
    blocker.join(10)
    assert busy["r"] == [200, 200]
    # Two wait for a thread; the rest are told to come back.
    assert statuses.count(200) >= 2 and statuses.count(503) >= 3, statuses


def test_term_with_threads_lets_in_flight_requests_finish(serve):
    import signal
    server = serve("streaming:app", "--threads", "4")
    results = {}
    clients = threading.Thread(
        target=lambda: results.update(r=_all_at_once(server.port, ["/sleep?s=0.6"] * 4)))
    clients.start()
    time.sleep(0.3)
    server.send_signal(signal.SIGTERM)
    clients.join(10)
    assert results["r"] == [200] * 4
    assert server.wait_exit() == 0, server.log_tail()


def test_write_with_content_length_keeps_the_connection(server):
    with server.connect() as conn:
        conn.send(request_bytes(target="/write-len"))
        resp = conn.read_response()
        assert resp.body == b"hello world"
        assert resp.header("Content-Length") == "11"
        conn.send(request_bytes(target="/say/next"))
        assert conn.read_response().body == b"next"


def test_write_on_http10_is_close_delimited(server):
    with server.connect() as conn:
        conn.send(request_bytes(target="/write-then-sleep", version="HTTP/1.0"))
        resp = conn.read_response()
        assert resp.body == b"first;second"


def test_an_error_after_write_ends_the_connection_without_a_second_head(server):
    with server.connect() as conn:
        conn.send(request_bytes(target="/write-raise"))
        data = conn.read_until_closed()
    assert data.count(b"HTTP/1.1 ") == 1
    assert b"200 OK" in data and b"partial" in data
    assert b"500" not in data.split(b"\r\n\r\n", 1)[1]
    wait_until(lambda: "after write" in server.log(), 5, what="the traceback")
