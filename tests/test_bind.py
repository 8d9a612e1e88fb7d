"""Listening addresses: unix sockets, IPv6 loopback, several binds at once."""
import json
import os
import shutil
import socket

import pytest

from conftest import free_port, short_tempdir
from support import RawConn, request_bytes


@pytest.fixture
def sockdir():
    path = short_tempdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_unix_socket_serves_requests_and_is_removed_at_exit(sockdir, serve):
    path = os.path.join(sockdir, "app.sock")
    server = serve("basic:app", bind="unix:" + path)
    assert os.path.exists(path)
    with RawConn(path, family=socket.AF_UNIX) as conn:
        conn.send(request_bytes(target="/say/unix"))
        resp = conn.read_response()
        assert resp.status == 200
        assert resp.body == b"unix"
        # Keep-alive works there too.
        conn.send(request_bytes(target="/environ", headers=[("Host", "example.org")]))
        env = json.loads(conn.read_response().body)
    # No peer address on a unix socket (gunicorn: empty), and no port.
    assert env.get("REMOTE_ADDR", "") == ""
    assert "REMOTE_PORT" not in env
    assert server.stop() == 0
    assert not os.path.exists(path)


def test_unix_socket_replaces_a_stale_socket_file(sockdir, serve):
    path = os.path.join(sockdir, "stale.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()  # leaves the file behind, nobody listening
    server = serve("basic:app", bind="unix:" + path)
    with RawConn(path, family=socket.AF_UNIX) as conn:
        conn.send(request_bytes(target="/say/fresh"))
        assert conn.read_response().body == b"fresh"
    server.stop()


def ipv6_loopback_available():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not ipv6_loopback_available(), reason="no IPv6 loopback here")
def test_ipv6_loopback_bind_serves_requests(serve):
    with socket.socket(socket.AF_INET6) as s:
        s.bind(("::1", 0))
        port = s.getsockname()[1]
    server = serve("basic:app", bind="[::1]:%d" % port, port=port)
    env = json.loads(server.request(target="/environ").body)
    assert env["REMOTE_ADDR"] == "::1"
    assert env["SERVER_PORT"] == str(port)


def test_several_binds_all_serve(sockdir, serve):
    port1, port2 = free_port(), free_port()
    path = os.path.join(sockdir, "also.sock")
    serve("basic:app", "-b", "127.0.0.1:%d" % port2, "-b", "unix:" + path,
          bind="127.0.0.1:%d" % port1, port=port1)
    for port in (port1, port2):
        with RawConn(("127.0.0.1", port)) as conn:
            conn.send(request_bytes(target="/say/%d" % port))
            assert conn.read_response().body == str(port).encode()
    with RawConn(path, family=socket.AF_UNIX) as conn:
        conn.send(request_bytes(target="/say/unix"))
        assert conn.read_response().body == b"unix"
