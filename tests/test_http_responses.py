"""What the server puts around the app's response: Date and Server, no body
where HTTP forbids one, hop-by-hop headers dropped."""
import email.utils

import pytest

from conftest import SERVER_NAME
from support import request_bytes


@pytest.fixture
def server(serve):
    return serve("basic:app")


def test_date_and_server_headers_are_present_once(server):
    resp = server.request()
    assert len(resp.header_values("Date")) == 1
    assert email.utils.parsedate_to_datetime(resp.header("Date")) is not None
    assert resp.header("Date").endswith(" GMT")
    assert len(resp.header_values("Server")) == 1
    assert resp.header("Server").startswith(SERVER_NAME)


def test_response_to_http10_uses_http10_status_line(server):
    resp = server.request(version="HTTP/1.0")
    assert resp.version == "HTTP/1.0"


def test_head_response_has_headers_but_no_body(server):
    with server.connect() as conn:
        conn.send(request_bytes("HEAD", "/") + request_bytes("GET", "/say/next"))
        head = conn.read_response(method="HEAD")
        assert head.status == 200
        assert head.header("Content-Length") == "5"
        # Were body bytes sent after the HEAD response, they would be read
        # here instead of the next status line.
        assert conn.read_response().body == b"next"


@pytest.mark.parametrize("code", [204, 304])
def test_no_body_statuses_send_no_body_even_if_the_app_returns_one(server, code):
    with server.connect() as conn:
        conn.send(request_bytes(target="/status/%d?body=1" % code)
                  + request_bytes(target="/say/next"))
        resp = conn.read_response()
        assert resp.status == code
        assert not resp.has_header("Transfer-Encoding")
        assert conn.read_response().body == b"next"


def test_204_response_has_no_content_length(server):
    resp = server.request(target="/status/204")
    assert resp.status == 204
    assert not resp.has_header("Content-Length")


def test_hop_by_hop_and_server_owned_headers_from_the_app_are_dropped(server):
    resp = server.request(target="/hop")
    assert resp.status == 200
    assert resp.body == b"hop"
    assert resp.header("X-Kept") == "yes"
    for name in ("Keep-Alive", "Proxy-Authenticate", "TE", "Trailers", "Upgrade"):
        assert not resp.has_header(name), "%s was not dropped" % name
    assert resp.header_values("Server") != ["app-server"]
    assert len(resp.header_values("Server")) == 1
    assert resp.header_values("Date") != ["not-a-date"]
    assert len(resp.header_values("Date")) == 1


def test_unknown_path_gets_the_apps_404(server):
    resp = server.request(target="/nowhere")
    assert resp.status == 404
    assert resp.body == b"not found: /nowhere"
