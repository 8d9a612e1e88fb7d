"""Large bytes objects in a response body (16 KiB and up) go out from the
app's own object instead of being copied into the connection's output.
Whatever the framing, the bytes on the wire must be those of the copying
path: chunked, Content-Length (also one that ends inside an object),
close-delimited HTTP/1.0, HEAD, and small objects mixed with large ones,
with pipelined requests after them. Both engines."""
import hashlib

import pytest

from support import request_bytes

APP = r'''
import hashlib

def block(i, size):
    return bytes((i * 7 + j) % 251 for j in range(251)) * (size // 251) + b"z" * (size % 251)

BLOCKS = [block(i, size) for i, size in enumerate([16384, 100000, 5, 65536, 300000, 17])]

def app(environ, start_response):
    path = environ["PATH_INFO"]
    query = environ.get("QUERY_STRING", "")
    if path == "/digest":
        body = hashlib.sha256(b"".join(BLOCKS)).hexdigest().encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]
    headers = [("Content-Type", "application/octet-stream")]
    if query == "length":
        headers.append(("Content-Length", str(sum(map(len, BLOCKS)))))
    elif query == "short":
        # Ends inside the second (100,000-byte) object.
        headers.append(("Content-Length", "50000"))
    start_response("200 OK", headers)
    if path == "/list":
        return list(BLOCKS)
    return iter(BLOCKS)
'''


@pytest.fixture
def server(serve, tmp_path):
    (tmp_path / "large_app.py").write_text(APP)
    return serve("large_app:app", chdir=tmp_path)


def expected(conn):
    conn.send(request_bytes(target="/digest"))
    return conn.read_response().body.decode()


def digest(body):
    return hashlib.sha256(body).hexdigest()


@pytest.mark.parametrize("path", ["/list", "/gen"])
def test_large_objects_arrive_whole_and_in_order_with_every_framing(server, path):
    with server.connect() as conn:
        want = expected(conn)
        # Chunked for the generator, a known length for the list; the
        # pipelined request after it must get its own answer.
        conn.send(request_bytes(target=path) + request_bytes(target="/digest"))
        resp = conn.read_response()
        assert digest(resp.body) == want
        assert conn.read_response().body.decode() == want
        conn.send(request_bytes(target=path + "?length"))
        resp = conn.read_response()
        assert resp.header("Content-Length") == str(len(resp.body))
        assert digest(resp.body) == want


@pytest.mark.parametrize("path", ["/list", "/gen"])
def test_a_content_length_ending_inside_a_large_object_cuts_it_there(server, path):
    with server.connect() as conn:
        want = expected(conn)
        conn.send(request_bytes(target=path + "?length"))
        full = conn.read_response().body
        assert digest(full) == want
        conn.send(request_bytes(target=path + "?short"))
        resp = conn.read_response()
        assert resp.body == full[:50000]


def test_http10_close_delimited_and_head_responses(server):
    with server.connect() as conn:
        want = expected(conn)
    with server.connect() as conn:
        conn.send(request_bytes(target="/gen", version="HTTP/1.0"))
        resp = conn.read_response()
        assert not resp.has_header("Content-Length")
        assert digest(resp.body) == want
    with server.connect() as conn:
        conn.send(request_bytes(method="HEAD", target="/gen?length") + request_bytes(target="/digest"))
        head = conn.read_response(method="HEAD")
        assert head.status == 200 and head.body == b""
        assert conn.read_response().body.decode() == want
