"""Connection management: keep-alive, HTTP/1.0, pipelining, Connection:
close, and clients that go away half-way."""
import time

import pytest

from support import request_bytes


@pytest.fixture
def server(serve):
    return serve("basic:app")


def test_http11_connection_is_kept_alive_between_requests(server):
    with server.connect() as conn:
        for word in ("one", "two", "three"):
            conn.send(request_bytes(target="/say/" + word))
            resp = conn.read_response()
            assert resp.status == 200
            assert resp.body == word.encode()
            assert resp.header("Connection", "keep-alive").lower() == "keep-alive"
        assert not conn.closed_by_server(timeout=0.5)


def test_http10_without_keep_alive_is_closed_after_the_response(server):
    with server.connect() as conn:
        conn.send(request_bytes(version="HTTP/1.0", target="/say/bye"))
        resp = conn.read_response()
        assert resp.version == "HTTP/1.0"
        assert resp.status == 200
        assert resp.body == b"bye"
        assert resp.header("Connection", "").lower() == "close"
        assert conn.closed_by_server()


def test_http10_with_keep_alive_header_keeps_the_connection(server):
    with server.connect() as conn:
        for word in ("a", "b"):
            conn.send(request_bytes(version="HTTP/1.0", target="/say/" + word,
                                    headers=[("Connection", "keep-alive")]))
            resp = conn.read_response()
            assert resp.status == 200
            assert resp.body == word.encode()
            assert resp.header("Connection", "").lower() == "keep-alive"
        assert not conn.closed_by_server(timeout=0.5)


def test_pipelined_requests_are_answered_in_order(server):
    words = ["first", "second", "third", "fourth"]
    with server.connect() as conn:
        conn.send(b"".join(request_bytes(target="/say/" + w) for w in words))
        got = [conn.read_response().body for _ in words]
    assert got == [w.encode() for w in words]


def test_pipelined_requests_with_bodies_are_answered_in_order(server):
    bodies = [b"alpha", b"beta" * 100, b""]
    with server.connect() as conn:
        conn.send(b"".join(
            request_bytes("POST", "/echo", headers=[("Content-Length", str(len(b)))], body=b)
            for b in bodies))
        got = [conn.read_response().body for _ in bodies]
    assert got == bodies


def test_connection_close_request_header_is_honoured(server):
    with server.connect() as conn:
        conn.send(request_bytes(target="/say/last", headers=[("Connection", "close")]))
        resp = conn.read_response()
        assert resp.body == b"last"
        assert resp.header("Connection", "").lower() == "close"
        assert conn.closed_by_server()


def test_requests_after_connection_close_in_a_pipeline_are_not_answered(server):
    with server.connect() as conn:
        conn.send(request_bytes(target="/say/one", headers=[("Connection", "close")])
                  + request_bytes(target="/say/two"))
        assert conn.read_response().body == b"one"
        assert conn.closed_by_server()


def test_client_gone_mid_head_does_not_disturb_other_clients(server):
    half = server.connect()
    half.send(b"GET /say/never HTTP/1.1\r\nHost: localhost\r\nX-Partial: ")
    try:
        # While the half-sent request is open, others are served.
        assert server.request(target="/say/other").body == b"other"
    finally:
        half.close()
    time.sleep(0.2)
    assert server.request(target="/say/after").body == b"after"


def test_client_gone_mid_body_does_not_disturb_other_clients(server):
    half = server.connect()
    half.send(request_bytes("POST", "/echo", headers=[("Content-Length", "100000")],
                            body=b"x" * 1000))
    try:
        assert server.request(target="/say/other").body == b"other"
    finally:
        half.close()
    time.sleep(0.2)
    resp = server.request("POST", "/echo", headers=[("Content-Length", "5")], body=b"12345")
    assert resp.body == b"12345"


def test_idle_keep_alive_connection_is_closed_after_the_keep_alive_timeout(serve):
    server = serve("basic:app", "--keep-alive", "1")
    with server.connect() as conn:
        conn.send(request_bytes(target="/say/idle"))
        assert conn.read_response().body == b"idle"
        t0 = time.monotonic()
        assert conn.closed_by_server(timeout=6.0)
        assert time.monotonic() - t0 >= 0.5


def test_many_sequential_connections_are_served(server):
    for i in range(50):
        assert server.request(target="/say/%d" % i).body == str(i).encode()
