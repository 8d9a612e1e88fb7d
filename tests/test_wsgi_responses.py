"""How the app's response goes out: streaming, write(), close(), errors,
wsgi.file_wrapper."""
import pytest

from support import request_bytes, wait_until


@pytest.fixture
def server(serve, close_log):
    return serve("basic:app", env={"TEST_CLOSE_LOG": str(close_log)})


def closed_tags(close_log):
    return close_log.read_text().split()


def test_generator_response_is_chunked_on_http11(server):
    with server.connect() as conn:
        conn.send(request_bytes(target="/stream?n=4"))
        resp = conn.read_response()
        assert resp.header("Transfer-Encoding", "").lower() == "chunked"
        assert not resp.has_header("Content-Length")
        assert resp.body == b"chunk-0;chunk-1;chunk-2;chunk-3;"
        assert resp.chunks and sum(resp.chunks) == len(resp.body)
        # Chunked framing keeps the connection usable.
        conn.send(request_bytes(target="/say/again"))
        assert conn.read_response().body == b"again"


def test_generator_response_is_close_delimited_on_http10(server):
    with server.connect() as conn:
        conn.send(request_bytes(target="/stream?n=3", version="HTTP/1.0"))
        resp = conn.read_response()
        assert not resp.has_header("Transfer-Encoding")
        assert not resp.has_header("Content-Length")
        assert resp.header("Connection", "").lower() == "close"
        assert resp.body == b"chunk-0;chunk-1;chunk-2;"


def test_empty_generator_response_is_a_valid_empty_body(server):
    resp = server.request(target="/stream?n=0")
    assert resp.status == 200
    assert resp.body == b""


def test_write_callable_output_comes_before_the_returned_body(server):
    resp = server.request(target="/write")
    assert resp.status == 200
    assert resp.body == b"written-by-write;then-returned"


def test_close_is_called_after_the_response(server, close_log):
    resp = server.request(target="/close?tag=normal")
    assert resp.body == b"closing-body"
    wait_until(lambda: "normal" in closed_tags(close_log), 10, what="close() to be called")


def test_close_is_called_when_the_client_disconnects_mid_response(server, close_log):
    conn = server.connect()
    conn.send(request_bytes(target="/slow-close?tag=gone"))
    conn.sock.recv(1024)  # the response has started
    conn.close()
    wait_until(lambda: "gone" in closed_tags(close_log), 20,
               what="close() after the client went away")
    assert server.request(target="/say/still-up").body == b"still-up"


def test_app_exception_is_500_and_the_worker_keeps_serving(server):
    pid_before = server.request(target="/pid").body
    resp = server.request(target="/error")
    assert resp.status == 500
    assert b"deliberate failure" not in resp.body  # no traceback to the client
    assert server.request(target="/pid").body == pid_before
    assert "deliberate failure in the app" in server.log()


def test_exception_while_streaming_never_looks_like_a_complete_response(server):
    with server.connect() as conn:
        conn.send(request_bytes(target="/error-after-body"))
        raw = conn.read_until_closed()  # and the server closes the connection
    if raw.startswith(b"HTTP/1.1 200"):
        # The head went out: the body is cut short, with no last chunk.
        assert not raw.endswith(b"0\r\n\r\n"), raw
    else:
        # Nothing was sent yet: an error response instead.
        assert raw.startswith(b"HTTP/1.1 500"), raw[:200]
    assert server.request(target="/say/ok").body == b"ok"


@pytest.mark.parametrize("target", ["/bad-status", "/bad-header-value", "/bad-header-name"])
def test_invalid_status_or_headers_from_the_app_are_500(server, target):
    with server.connect() as conn:
        conn.send(request_bytes(target=target))
        raw = conn.read_until_closed()
    assert raw.startswith(b"HTTP/1.1 500"), raw[:200]
    assert b"evil=1" not in raw
    assert server.request(target="/say/ok").body == b"ok"


@pytest.mark.parametrize("with_length", [False, True])
def test_file_wrapper_sends_the_whole_file(server, with_length):
    size = 300000
    target = "/file?size=%d%s" % (size, "&length=1" if with_length else "")
    with server.connect() as conn:
        conn.send(request_bytes(target=target))
        resp = conn.read_response()
        assert resp.status == 200
        assert resp.body == bytes(i % 251 for i in range(size))
        conn.send(request_bytes(target="/say/after-file"))
        assert conn.read_response().body == b"after-file"
