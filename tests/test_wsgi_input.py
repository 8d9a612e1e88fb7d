"""wsgi.input: read(), read(n), readline(), readline(n), iteration and
readlines(), over Content-Length and chunked bodies, held in memory or (with
a tiny --body-buffer-size) in a temporary file."""
import json
import os

import pytest

BODY = b"first line\nsecond\n\nlast without newline"
LINES = [b"first line\n", b"second\n", b"\n", b"last without newline"]


def chunked(data, size=7):
    out = b"".join(b"%x\r\n%s\r\n" % (len(data[i:i + size]), data[i:i + size])
                   for i in range(0, len(data), size))
    return out + b"0\r\n\r\n"


@pytest.fixture(params=["memory", "file"])
def server(request, serve, tmp_path):
    if request.param == "memory":
        return serve("basic:app")
    if os.environ.get("FERROCORN_TEST_REFERENCE"):
        pytest.skip("--body-buffer-size is ferrocorn's")
    return serve("basic:app", "--body-buffer-size", "8", "--body-temp-dir", str(tmp_path))


@pytest.fixture(params=["content-length", "chunked"])
def post_body(request, server):
    def post(mode):
        if request.param == "chunked":
            headers, body = [("Transfer-Encoding", "chunked")], chunked(BODY)
        else:
            headers, body = [("Content-Length", str(len(BODY)))], BODY
        resp = server.request("POST", "/input?mode=" + mode, headers=headers, body=body)
        assert resp.status == 200, resp
        return [s.encode("latin-1") for s in json.loads(resp.body)]
    return post


def test_read_returns_the_whole_body(post_body):
    assert post_body("read") == [BODY]


def test_read_with_size_returns_at_most_size_bytes(post_body):
    pieces = post_body("read4")
    assert b"".join(pieces) == BODY
    assert all(len(p) == 4 for p in pieces[:-1])


def test_readline_returns_lines_with_their_newlines(post_body):
    assert post_body("readline") == LINES


def test_readline_with_size_honours_the_size(post_body):
    pieces = post_body("readline3")
    assert b"".join(pieces) == BODY
    assert all(len(p) <= 3 for p in pieces)
    assert b"\n" in pieces  # the empty line comes back on its own


def test_iterating_input_yields_lines(post_body):
    assert post_body("iter") == LINES


def test_readlines_returns_every_line(post_body):
    assert post_body("readlines") == LINES


def test_request_without_body_reads_empty(server):
    resp = server.request(target="/input?mode=read")
    assert json.loads(resp.body) == [""]
