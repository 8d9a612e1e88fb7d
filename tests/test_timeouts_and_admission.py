"""Slow clients get 408 after --header-timeout / --body-timeout; admission
control (--max-queue-wait-ms, --max-queued-requests) answers 503 with
Retry-After instead of letting requests queue behind a busy app."""
import socket
import threading
import time

import pytest

from support import request_bytes


def read_all(conn, timeout):
    conn.settimeout(timeout)
    data = b""
    try:
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
    except (socket.timeout, ConnectionResetError):
        pass
    return data


def test_incomplete_head_gets_408_after_header_timeout(serve):
    server = serve("basic:app", "--header-timeout", "1")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        t0 = time.monotonic()
        data = read_all(s, 8)
        took = time.monotonic() - t0
    assert data.startswith(b"HTTP/1.1 408"), data
    assert 0.5 <= took < 5, took


def test_a_slowloris_trickling_bytes_is_still_cut_off(serve):
    server = serve("basic:app", "--header-timeout", "1")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"GET / HTTP/1.1\r\n")
        t0 = time.monotonic()
        answered = b""
        for _ in range(20):  # one header byte every 0.25 s, never finishing
            try:
                s.sendall(b"X")
            except (BrokenPipeError, ConnectionResetError):
                break
            s.settimeout(0.25)
            try:
                answered += s.recv(4096)
            except socket.timeout:
                continue
            if answered:
                break
        took = time.monotonic() - t0
    assert answered.startswith(b"HTTP/1.1 408"), answered
    assert took < 4, took


def test_stalled_body_gets_408_after_body_timeout(serve):
    server = serve("basic:app", "--body-timeout", "1")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(request_bytes("POST", "/echo", headers=[("Content-Length", "10")]) + b"abc")
        data = read_all(s, 8)
    assert data.startswith(b"HTTP/1.1 408"), data


def concurrent_requests(port, targets):
    """Send one request per target on its own connection, all at once; return the statuses and headers."""
    results = [None] * len(targets)

    def one(i, target):
        with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
            s.sendall(("GET %s HTTP/1.0\r\n\r\n" % target).encode())
            data = read_all(s, 20)
            head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
            results[i] = (int(head.split(" ", 2)[1]) if head else None, head)

    threads = [threading.Thread(target=one, args=(i, t)) for i, t in enumerate(targets)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


@pytest.mark.few_app_slots
def test_requests_that_waited_too_long_get_503_with_retry_after(serve):
    server = serve("basic:app", "--max-queue-wait-ms", "300")
    t0 = time.monotonic()
    results = concurrent_requests(server.port, ["/sleep?s=0.2"] * 12)
    took = time.monotonic() - t0
    statuses = [r[0] for r in results]
    assert set(statuses) <= {200, 503}, results
    assert statuses.count(200) >= 1 and statuses.count(503) >= 1, statuses
    assert all("Retry-After: 1" in head for status, head in results if status == 503)
    # Without shedding 12 x 0.2 s would take 2.4 s.
    assert took < 2.2, took


def test_without_admission_control_every_request_waits_its_turn(serve):
    server = serve("basic:app")
    results = concurrent_requests(server.port, ["/sleep?s=0.05"] * 8)
    assert [r[0] for r in results] == [200] * 8, results


@pytest.mark.sync_worker
def test_queue_bound_sheds_requests_beyond_it(serve):
    server = serve("basic:app", "--max-queued-requests", "2")
    results = {}

    def busy():
        results["busy"] = concurrent_requests(server.port, ["/sleep?s=0.6"])

    blocker = threading.Thread(target=busy)
    blocker.start()
    time.sleep(0.2)  # the worker is now inside the app; the next requests queue up
    queued = concurrent_requests(server.port, ["/say/q"] * 6)
    blocker.join(10)
    statuses = sorted(r[0] for r in queued)
    assert results["busy"][0][0] == 200
    assert statuses.count(503) >= 3 and statuses.count(200) >= 2, queued
