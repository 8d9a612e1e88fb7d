"""Request framing and the statuses the server answers malformed or
unsupported requests with (raw sockets, gunicorn 27's limits)."""
import pytest

from support import request_bytes


@pytest.fixture
def server(serve):
    return serve("basic:app")


def test_content_length_body_reaches_the_app(server):
    body = bytes(range(256)) * 40
    resp = server.request("POST", "/echo", headers=[("Content-Length", str(len(body)))],
                          body=body)
    assert resp.status == 200
    assert resp.body == body


def test_chunked_body_is_decoded_for_the_app(server):
    chunked = b"5\r\nhello\r\n1;ext=1\r\n \r\n6\r\nworld!\r\n0\r\n\r\n"
    resp = server.request("POST", "/echo", headers=[("Transfer-Encoding", "chunked")],
                          body=chunked)
    assert resp.status == 200
    assert resp.body == b"hello world!"


def test_chunked_body_with_trailers_is_decoded(server):
    chunked = b"3\r\nabc\r\n0\r\nX-Checksum: 1\r\n\r\n"
    resp = server.request("POST", "/echo", headers=[("Transfer-Encoding", "chunked")],
                          body=chunked)
    assert resp.body == b"abc"


def test_expect_100_continue_gets_interim_100_then_the_response(server):
    with server.connect() as conn:
        conn.send(request_bytes("POST", "/echo", headers=[("Content-Length", "4"),
                                                          ("Expect", "100-continue")]))
        interim = conn.read_response()
        assert interim.status == 100
        conn.send(b"ping")
        final = conn.read_response()
        assert final.status == 200
        assert final.body == b"ping"


def test_expect_other_than_100_continue_is_417(server):
    resp = server.request("POST", "/echo", headers=[("Content-Length", "0"),
                                                     ("Expect", "something-else")])
    assert resp.status == 417


def test_request_line_over_the_limit_is_414(server):
    resp = server.request(target="/" + "a" * 5000)
    assert resp.status == 414


def test_request_line_at_the_limit_is_accepted(server):
    # gunicorn's limit_request_line: 4094 bytes before the CRLF is still fine.
    target = "/say/" + "a" * (4094 - len("GET /say/ HTTP/1.1"))
    assert len("GET %s HTTP/1.1" % target) == 4094
    assert server.request(target=target).status == 200


def test_too_many_header_fields_is_431(server):
    headers = [("X-H%d" % i, "v") for i in range(101)]
    assert server.request(headers=headers).status == 431


def test_header_field_over_the_size_limit_is_431(server):
    assert server.request(headers=[("X-Big", "v" * 9000)]).status == 431


def test_limit_flags_change_the_limits(serve):
    server = serve("basic:app", "--limit-request-line", "100", "--limit-request-fields", "3")
    assert server.request(target="/say/" + "a" * 120).status == 414
    assert server.request(headers=[("X-%d" % i, "v") for i in range(4)]).status == 431
    assert server.request(target="/say/ok", headers=[("X-1", "v")]).status == 200


def test_unknown_transfer_coding_is_501(server):
    resp = server.request("POST", "/echo", headers=[("Transfer-Encoding", "bogus, chunked")],
                          body=b"0\r\n\r\n")
    assert resp.status == 501


def test_malformed_request_line_is_400(server):
    with server.connect() as conn:
        conn.send(b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n")
        assert conn.read_response().status == 400


def test_bad_chunk_size_is_400(server):
    resp = server.request("POST", "/echo", headers=[("Transfer-Encoding", "chunked")],
                          body=b"zz\r\nhello\r\n0\r\n\r\n")
    assert resp.status == 400


def test_content_length_with_transfer_encoding_is_400(server):
    resp = server.request("POST", "/echo", headers=[("Content-Length", "5"),
                                                     ("Transfer-Encoding", "chunked")],
                          body=b"0\r\n\r\n")
    assert resp.status == 400


def test_error_response_closes_the_connection(server):
    with server.connect() as conn:
        conn.send(b"GET / HTTP/1.1\r\nHost: x\r\nBad Header: v\r\n\r\n"
                  + request_bytes(target="/say/smuggled"))
        resp = conn.read_response()
        assert resp.status == 400
        assert conn.closed_by_server()


def test_server_keeps_serving_after_bad_requests(server):
    for raw in (b"\x00\x01garbage\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n", b"GET\r\n\r\n"):
        with server.connect() as conn:
            conn.send(raw)
            conn.read_until_closed()
    assert server.request(target="/say/fine").body == b"fine"


def test_body_over_limit_request_body_is_413_before_the_app_runs(serve):
    server = serve("basic:app", "--limit-request-body", "10")
    with server.connect() as conn:
        conn.send(request_bytes("POST", "/echo", headers=[("Content-Length", "11")]))
        assert conn.read_response().status == 413
    with server.connect() as conn:
        conn.send(request_bytes("POST", "/echo", headers=[("Content-Length", "10")], body=b"0123456789"))
        resp = conn.read_response()
        assert (resp.status, resp.body) == (200, b"0123456789")
