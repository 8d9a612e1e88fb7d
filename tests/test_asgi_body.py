"""Request bodies streamed to ASGI apps as they arrive (tests/apps/asgi_body.py),
on both io engines: pieces of at most 64 KiB before the body ends,
backpressure, Expect: 100-continue at the app's first receive(), unread
bodies, clients that leave mid-body, and a 1 GiB upload hashed by Starlette's
request.stream() in bounded worker memory."""
import hashlib
import json
import select
import socket
import threading
import time

import pytest
import requests

from support import IO_TIMEOUT, RawConn, request_bytes, wait_until

PIECE = 64 * 1024
HEAD = [("Host", "x")]


@pytest.fixture
def asgi(serve):
    # No flag: the coroutine function is recognised as an ASGI app.
    return serve("asgi_body:app")


def seen(server, name):
    return requests.get(server.url + "/seen", params={"id": name}, timeout=IO_TIMEOUT).json()


def post_head(target, length=None, extra=()):
    headers = list(HEAD) + list(extra)
    if length is None:
        headers.append(("Transfer-Encoding", "chunked"))
    else:
        headers.append(("Content-Length", str(length)))
    return request_bytes("POST", target, headers=headers)


def worker_pid(server):
    pids = list(server.workers())
    assert len(pids) == 1, pids
    return pids[0]


def status_kib(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError("no %s for pid %d" % (field, pid))


def nothing_to_read(conn, within):
    """No byte arrives on `conn` for `within` seconds."""
    if conn.buf:
        return False
    readable, _, _ = select.select([conn.sock], [], [], within)
    return not readable


def test_pieces_of_at_most_64k_reach_the_app_while_the_client_holds_back_the_rest(asgi):
    total = 5 * PIECE + 123
    data = bytes(range(256)) * (total // 256) + b"x" * (total % 256)
    with asgi.connect() as conn:
        conn.send(post_head("/read?id=early", total))
        conn.send(data[:3 * PIECE])
        # The app has its first pieces while 2 pieces and more are still to come.
        wait_until(lambda: sum((seen(asgi, "early") or {}).get("pieces", [])) >= 2 * PIECE,
                   IO_TIMEOUT, what="the app to see the first pieces")
        mid = seen(asgi, "early")
        assert not mid["done"] and sum(mid["pieces"]) <= 3 * PIECE
        conn.send(data[3 * PIECE:])
        resp = conn.read_response()
    assert resp.status == 200, resp
    got = json.loads(resp.body)
    assert got["total"] == total
    assert got["sha256"] == hashlib.sha256(data).hexdigest()
    assert max(got["pieces"]) <= PIECE
    assert len(got["pieces"]) >= 6


def test_chunked_and_zero_length_bodies(asgi):
    data = b"".join(bytes([i]) * n for i, n in enumerate([1, 70000, 3, 200000, 65536, 9]))
    chunked = b"".join(b"%x;ext=1\r\n%s\r\n" % (n, data[o:o + n]) for o, n in
                       [(0, 1), (1, 70000), (70001, 3), (70004, 200000), (270004, 65536),
                        (335540, 9)])
    with asgi.connect() as conn:
        conn.send(post_head("/read?id=chunked") + chunked[:100000])
        wait_until(lambda: (seen(asgi, "chunked") or {}).get("pieces"), IO_TIMEOUT,
                   what="the first chunked pieces")
        conn.send(chunked[100000:] + b"0\r\nX-Trailer: 1\r\n\r\n")
        resp = conn.read_response()
        assert resp.status == 200
        got = json.loads(resp.body)
        assert got["total"] == len(data) and max(got["pieces"]) <= PIECE
        assert got["sha256"] == hashlib.sha256(data).hexdigest()
        # Empty bodies, each way, on the same connection: one event, no more_body.
        for name, head in (("cl0", post_head("/read?id=cl0", 0)),
                           ("ch0", post_head("/read?id=ch0") + b"0\r\n\r\n")):
            conn.send(head)
            resp = conn.read_response()
            assert resp.status == 200
            assert json.loads(resp.body) == {"pieces": [0], "total": 0,
                                             "sha256": hashlib.sha256(b"").hexdigest()}


def test_a_slow_app_holds_the_client_back_and_worker_memory_stays_bounded(asgi):
    total = 256 * 1024 * 1024
    block = b"b" * (1 << 20)
    pid = worker_pid(asgi)
    # Warm up first (the engine's receive buffers, the allocator's pages):
    # what is measured is what holding a body back costs.
    warm = requests.post(asgi.url + "/read?id=warm", data=(block for _ in range(32)),
                         timeout=60)
    assert warm.json()["total"] == 32 * len(block)
    rss_before = status_kib(pid, "VmRSS")
    sent = [0]
    failed = []

    def upload(sock):
        try:
            for _ in range(total // len(block)):
                sock.sendall(block)
                sent[0] += len(block)
        except OSError as e:
            failed.append(e)

    def release():
        requests.get(asgi.url + "/release", params={"id": "slow"}, timeout=IO_TIMEOUT)

    with asgi.connect(timeout=120) as conn:
        conn.send(post_head("/hold?id=slow", total))
        sender = threading.Thread(target=upload, args=(conn.sock,), daemon=True)
        sender.start()
        try:
            held_back(asgi, pid, rss_before, sent)
        finally:
            release()
        sender.join(120)
        assert not sender.is_alive() and not failed, failed
        resp = conn.read_response()
    assert resp.status == 200
    got = json.loads(resp.body)
    assert got["total"] == total and max(got["pieces"]) <= PIECE


def held_back(asgi, pid, rss_before, sent):
    """The app has not called receive(): the client's sends stall with a few
    MiB in the kernel's buffers, far short of the body, and the worker holds
    little of it."""
    last = [-1, time.monotonic()]

    def stalled():
        if sent[0] != last[0]:
            last[:] = [sent[0], time.monotonic()]
            return False
        return time.monotonic() - last[1] >= 1.0

    wait_until(stalled, 60, interval=0.1, what="the client's sends to stall")
    assert sent[0] < 32 * 1024 * 1024, sent[0]
    assert seen(asgi, "slow")["pieces"] == []
    grown = status_kib(pid, "VmRSS") - rss_before
    print("held back: client sent %d KiB; worker VmRSS grew by %d KiB"
          % (sent[0] >> 10, grown))
    assert grown < 16 * 1024, "worker RSS grew by %d KiB while holding back" % grown


def test_100_continue_is_sent_at_the_first_receive_not_at_the_head(asgi):
    with asgi.connect() as conn:
        conn.send(post_head("/hold?id=cont", 5, [("Expect", "100-continue")]))
        wait_until(lambda: "started" in ((seen(asgi, "cont") or {}).get("events") or []),
                   IO_TIMEOUT, what="the app to start")
        # The app runs and has not called receive(): no 100 yet.
        assert nothing_to_read(conn, 0.3)
        requests.get(asgi.url + "/release", params={"id": "cont"}, timeout=IO_TIMEOUT)
        interim = conn.read_response()
        assert interim.status == 100
        conn.send(b"hello")
        resp = conn.read_response()
        assert resp.status == 200
        assert json.loads(resp.body)["total"] == 5
        # Kept alive.
        conn.send(request_bytes("GET", "/noread", headers=HEAD))
        assert conn.read_response().status == 200


def test_an_app_that_answers_without_receive_never_sends_100_and_closes(asgi):
    with asgi.connect() as conn:
        conn.send(post_head("/noread", 5, [("Expect", "100-continue")]))
        resp = conn.read_response()
        # The final answer, with no 100 before it; the client may or may
        # not send its body now, so the connection cannot be reused.
        assert resp.status == 200
        assert resp.header("connection", "").lower() == "close"
        assert conn.closed_by_server()


@pytest.mark.parametrize("chunked", [False, True])
def test_an_unread_body_is_drained_and_the_next_request_answered(asgi, chunked):
    body = b"z" * 40000
    framed = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if chunked else body
    with asgi.connect() as conn:
        conn.send(post_head("/noread", None if chunked else len(body)) + framed[:1000])
        resp = conn.read_response()
        assert resp.status == 200
        assert resp.header("connection", "").lower() != "close"
        # The rest of the body, then the next request, on the same connection.
        conn.send(framed[1000:] + post_head("/read?id=after-" + str(chunked), 3) + b"abc")
        resp = conn.read_response()
        assert resp.status == 200
        assert json.loads(resp.body)["total"] == 3


def test_an_unread_body_too_long_to_drain_closes_the_connection(asgi):
    with asgi.connect() as conn:
        conn.send(post_head("/noread", 10 * 1024 * 1024) + b"x" * 1000)
        resp = conn.read_response()
        assert resp.status == 200
        assert conn.closed_by_server()


def test_a_client_leaving_mid_body_gives_the_app_http_disconnect(asgi):
    conn = asgi.connect()
    conn.send(post_head("/until-disconnect?id=gone", 1 << 20) + b"x" * 100000)
    wait_until(lambda: (seen(asgi, "gone") or {}).get("pieces"), IO_TIMEOUT,
               what="the app to read")
    conn.close()
    wait_until(lambda: seen(asgi, "gone")["done"], IO_TIMEOUT, what="the app's task to end")
    assert seen(asgi, "gone")["events"][-1] == "http.disconnect"


def access_lines(path):
    """The access log's lines, as "STATUS PATH"."""
    return path.read_text().splitlines() if path.exists() else []


ACCESS = ("--access-logformat", "%(s)s %(U)s")


def test_a_half_close_mid_body_gives_the_app_http_disconnect_and_no_response(asgi):
    # The body can never be complete (RFC 9112 section 8: an incomplete
    # message): the app hears http.disconnect, the client gets no response.
    with asgi.connect() as conn:
        conn.send(post_head("/until-disconnect?id=half", 1 << 20) + b"x" * 100000)
        wait_until(lambda: (seen(asgi, "half") or {}).get("pieces"), IO_TIMEOUT,
                   what="the app to read")
        conn.sock.shutdown(socket.SHUT_WR)
        wait_until(lambda: seen(asgi, "half")["done"], IO_TIMEOUT, what="the app's task to end")
        assert seen(asgi, "half")["events"][-1] == "http.disconnect"
        assert conn.read_until_closed() == b""


@pytest.mark.parametrize("hold", [False, True], ids=["reading", "held-back"])
def test_a_complete_body_then_a_half_close_still_gets_its_response(serve, hold):
    # The client may shut down its sending side once its request is sent and
    # still read the answer (RFC 9112 section 9.6), also when the app is still
    # reading the body, or has not started to, as the half-close arrives.
    server = serve("asgi_body:app", "--asgi-disconnect-grace-period", "1")
    name = "halfdone-%s" % hold
    total = 6 * PIECE + 7
    data = bytes(range(256)) * (total // 256) + b"y" * (total % 256)
    with server.connect() as conn:
        path = ("/hold?id=%s" if hold else "/read?id=%s&delay=2") % name
        conn.send(post_head(path, total) + data[:PIECE])
        wait_until(lambda: "started" in ((seen(server, name) or {}).get("events") or []),
                   IO_TIMEOUT, what="the app to start")
        conn.send(data[PIECE:])
        conn.sock.shutdown(socket.SHUT_WR)
        if hold:
            time.sleep(0.5)  # the half-close is seen before the app reads anything
            requests.get(server.url + "/release", params={"id": name}, timeout=IO_TIMEOUT)
        resp = conn.read_response()
        assert resp.status == 200, resp
        got = json.loads(resp.body)
        assert got["total"] == total
        assert got["sha256"] == hashlib.sha256(data).hexdigest()
        assert conn.read_until_closed() == b""


@pytest.mark.ferrocorn_only
def test_a_client_silent_mid_body_gets_408_and_the_app_http_disconnect(serve, tmp_path):
    acclog = tmp_path / "access.log"
    server = serve("asgi_body:app", "--body-timeout", "1", "--access-logfile", str(acclog),
                   *ACCESS)
    with server.connect() as conn:
        conn.send(post_head("/until-disconnect?id=silent", 1 << 20) + b"x" * 1000)
        resp = conn.read_response()
        assert resp.status == 408
        assert conn.closed_by_server()
    wait_until(lambda: seen(server, "silent")["done"], IO_TIMEOUT, what="the app's task to end")
    assert seen(server, "silent")["events"][-1] == "http.disconnect"
    # The access log says what the client got, not the 500 of an app that returned silently.
    wait_until(lambda: "408 /until-disconnect" in access_lines(acclog), IO_TIMEOUT,
               what="the 408 in the access log")
    assert not [line for line in access_lines(acclog) if line.startswith("500 ")]


@pytest.mark.ferrocorn_only
def test_a_chunked_body_over_the_limit_is_413_and_the_app_sees_http_disconnect(serve, tmp_path):
    acclog = tmp_path / "access.log"
    server = serve("asgi_body:app", "--limit-request-body", "100000",
                   "--access-logfile", str(acclog), *ACCESS)
    with server.connect() as conn:
        conn.send(post_head("/until-disconnect?id=big") + b"%x\r\n%s\r\n" % (60000, b"a" * 60000))
        wait_until(lambda: (seen(server, "big") or {}).get("pieces"), IO_TIMEOUT,
                   what="the app to read")
        conn.send(b"%x\r\n%s\r\n" % (60000, b"a" * 60000))
        resp = conn.read_response()
        assert resp.status == 413
    wait_until(lambda: seen(server, "big")["done"], IO_TIMEOUT, what="the app's task to end")
    assert seen(server, "big")["events"][-1] == "http.disconnect"
    wait_until(lambda: "413 /until-disconnect" in access_lines(acclog), IO_TIMEOUT,
               what="the 413 in the access log")
    assert not [line for line in access_lines(acclog) if line.startswith("500 ")]


@pytest.mark.ferrocorn_only
def test_a_streamed_request_shed_with_503_has_its_body_drained(serve, tmp_path):
    server = serve("asgi_body:app", "--max-queued-requests", "1")
    mark = tmp_path / "blocking"
    with server.connect() as blocker, server.connect() as queued, server.connect() as conn:
        blocker.send(request_bytes("GET", "/block?s=2&mark=%s" % mark, headers=HEAD))
        wait_until(mark.exists, IO_TIMEOUT, what="the event loop to block")
        # One request waits for the blocked loop: the next one is shed.
        queued.send(request_bytes("GET", "/noread", headers=HEAD))
        conn.send(post_head("/read?id=shed", 10000) + b"s" * 1000)
        assert conn.read_response().status == 503
        conn.send(b"s" * 9000)
        assert blocker.read_response().status == 200
        assert queued.read_response().status == 200
        # The rest of the shed body was dropped: the connection goes on.
        conn.send(post_head("/read?id=next", 2) + b"ok")
        resp = conn.read_response()
        assert resp.status == 200 and json.loads(resp.body)["total"] == 2
    assert seen(server, "shed") is None


def test_starlette_request_stream_gets_the_body_from_a_generator(asgi):
    blocks = [bytes([i]) * 100003 for i in range(20)]
    resp = requests.post(asgi.url + "/starlette/hash", data=iter(blocks), timeout=60)
    assert resp.status_code == 200
    assert resp.json() == {"total": sum(map(len, blocks)),
                           "sha256": hashlib.sha256(b"".join(blocks)).hexdigest()}


@pytest.mark.timeout(600)
def test_a_1gib_upload_hashed_through_request_stream_in_bounded_memory(asgi):
    block = hashlib.sha256(b"seed").digest() * (1 << 15)  # 1 MiB
    count = 1024
    expected = hashlib.sha256()
    for _ in range(count):
        expected.update(block)
    pid = worker_pid(asgi)
    before = status_kib(pid, "VmRSS")
    peak = [before]
    done = threading.Event()

    def watch():
        while not done.is_set():
            peak[0] = max(peak[0], status_kib(pid, "VmRSS"))
            done.wait(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    started = time.monotonic()
    try:
        resp = requests.post(asgi.url + "/starlette/hash", data=(block for _ in range(count)),
                             timeout=300)
    finally:
        done.set()
        watcher.join(5)
    took = time.monotonic() - started
    assert resp.status_code == 200
    assert resp.json() == {"total": count * len(block), "sha256": expected.hexdigest()}
    hwm = status_kib(pid, "VmHWM")
    grown = max(peak[0], hwm) - before
    print("1 GiB upload: %.1f s, worker VmRSS %d KiB before, peak sampled %d KiB, VmHWM %d KiB"
          % (took, before, peak[0], hwm))
    assert grown < 32 * 1024, "worker RSS grew by %d KiB" % grown
