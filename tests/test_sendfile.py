"""wsgi.file_wrapper over a real file goes out with sendfile (epoll) or
splice (io_uring); --no-sendfile, file-likes without a usable fileno() and
HEAD take the other ways. Every test runs on both engines.

Proof that the kernel path was taken, without strace: the fixture app's
file counts the server's read() calls (none on the kernel path, one per
block on the read path), and the worker's /proc/<pid>/io shows bytes read
into user memory: on the read path `rchar` grows by the file size while
`wchar` stays put; on the kernel path `rchar` does not grow (io_uring's
splice runs in kernel threads) or grows with `wchar` (sendfile counts
both).
"""
import hashlib
import json
import os
import socket
import ssl
import time

import pytest
import trustme

from support import IO_TIMEOUT
from test_tls import client_context, write_pair

SIZE = 20 << 20

APP = r'''
import io, json, os
from urllib.parse import parse_qs

DATA = os.environ["TEST_SENDFILE_DATA"]
stats = {"reads": 0, "closed": 0}


class CountingFile(io.FileIO):
    """A real file (it has a fileno) that counts what the server reads."""

    def read(self, n=-1):
        stats["reads"] += 1
        return super().read(n)

    def close(self):
        if not self.closed:
            stats["closed"] += 1
        super().close()


class BrokenFileno(CountingFile):
    def fileno(self):
        raise OSError("no descriptor for you")


class CountingBytesIO(io.BytesIO):
    def read(self, n=-1):
        stats["reads"] += 1
        return super().read(n)

    def close(self):
        if not self.closed:
            stats["closed"] += 1
        super().close()


def app(environ, start_response):
    path = environ["PATH_INFO"]
    q = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    if path == "/stats":
        body = json.dumps(dict(stats, pid=os.getpid())).encode()
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    if path == "/small":
        start_response("200 OK", [("Content-Length", "5")])
        return [b"small"]
    if path != "/file":
        start_response("404 Not Found", [("Content-Length", "0")])
        return []
    kind = q.get("kind", "file")
    if kind == "file":
        f = CountingFile(DATA, "rb")
        f.seek(int(q.get("skip", "0")))
    elif kind == "buffered":
        # A buffered reader reads ahead: tell() is where the app is, the
        # descriptor's offset is further on.
        f = open(DATA, "rb")
        f.read(int(q["skip"]))
        assert os.lseek(f.fileno(), 0, os.SEEK_CUR) != f.tell()
    elif kind == "broken":
        f = BrokenFileno(DATA, "rb")
    else:
        with open(DATA, "rb") as src:
            f = CountingBytesIO(src.read())
    headers = [("Content-Type", "application/octet-stream")]
    if "length" in q:
        headers.append(("Content-Length", q["length"]))
    start_response("200 OK", headers)
    return environ["wsgi.file_wrapper"](f, 65536)
'''


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("sendfile") / "data.bin"
    path.write_bytes(os.urandom(SIZE))
    return path


@pytest.fixture(scope="module")
def data(data_file):
    return data_file.read_bytes()


@pytest.fixture
def start(serve, data_file, tmp_path):
    (tmp_path / "sendfile_app.py").write_text(APP)

    def start(*args, wait=True):
        # A Client keeps one connection across several requests: a busy
        # machine must not see it closed by the 2 s default keep-alive.
        return serve("sendfile_app:app", "--keep-alive", "30", *args, chdir=tmp_path, wait=wait,
                     env={"TEST_SENDFILE_DATA": str(data_file)})
    return start


class Client:
    """One connection; reads big bodies into a bytearray (no quadratic
    copying) and records the framing it saw."""

    def __init__(self, server):
        self.sock = socket.create_connection(("127.0.0.1", server.port), timeout=IO_TIMEOUT)
        self.buf = bytearray()

    def close(self):
        self.sock.close()

    def _fill(self):
        data = self.sock.recv(1 << 20)
        if not data:
            raise ConnectionError("closed by the server")
        self.buf += data

    def _take(self, n):
        while len(self.buf) < n:
            self._fill()
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        i = self.buf.index(b"\r\n") + 2
        return self._take(i)

    def get(self, target, method="GET", version="HTTP/1.1"):
        """Returns (status, headers dict with lower-case names, body, chunk sizes)."""
        self.sock.sendall(("%s %s %s\r\nHost: t\r\n\r\n" % (method, target, version)).encode())
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        end = self.buf.index(b"\r\n\r\n") + 4
        head = self._take(end).decode("latin-1").split("\r\n")
        status = int(head[0].split()[1])
        headers = {}
        for line in head[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        if method == "HEAD":
            return status, headers, b"", None
        if headers.get("transfer-encoding") == "chunked":
            chunks, parts = [], []
            while True:
                size = int(self._line().strip(), 16)
                if size == 0:
                    assert self._line() == b"\r\n"
                    break
                chunks.append(size)
                parts.append(self._take(size))
                assert self._take(2) == b"\r\n"
            return status, headers, b"".join(parts), chunks
        if "content-length" in headers:
            return status, headers, self._take(int(headers["content-length"])), None
        while True:
            try:
                self._fill()
            except ConnectionError:
                break
        body, self.buf = bytes(self.buf), bytearray()
        return status, headers, body, None

    def stats(self):
        status, _, body, _ = self.get("/stats")
        assert status == 200
        return json.loads(body)

    def read_rest(self):
        """Everything until the server closes."""
        while True:
            try:
                self._fill()
            except (ConnectionError, OSError):
                break
        return bytes(self.buf)


def proc_io(pid):
    with open("/proc/%d/io" % pid) as f:
        return {k: int(v) for k, v in (line.split(": ") for line in f if line.strip())}


def read_into_user_memory(before, after):
    """Bytes the worker read with read-like calls and did not write with
    write-like ones: about the file size on the read path, about 0 when the
    kernel moved the file."""
    return (after["rchar"] - before["rchar"]) - (after["wchar"] - before["wchar"])


def fetch(client, target, **kw):
    pid = client.stats()["pid"]
    before = proc_io(pid)
    status, headers, body, chunks = client.get(target, **kw)
    after = proc_io(pid)
    return status, headers, body, chunks, read_into_user_memory(before, after)


def sha(b):
    return hashlib.sha256(b).hexdigest()


@pytest.mark.ferrocorn_only
@pytest.mark.parametrize("with_length", [False, True])
def test_file_goes_out_byte_identical_through_the_kernel(start, data, with_length):
    server = start()
    c = Client(server)
    try:
        target = "/file?length=%d" % SIZE if with_length else "/file"
        status, headers, body, chunks, copied = fetch(c, target)
        assert status == 200
        assert len(body) == SIZE and sha(body) == sha(data)
        if with_length:
            assert headers["content-length"] == str(SIZE)
            assert chunks is None
        else:
            # One chunk, sized exactly from the file.
            assert headers["transfer-encoding"] == "chunked"
            assert chunks == [SIZE]
        stats = c.stats()
        assert stats["reads"] == 0, "the server read the file: sendfile was not used"
        assert stats["closed"] == 1, "the wrapper's close() ran"
        assert copied < SIZE // 10, "%d bytes went through user memory" % copied
        # The connection is kept and serves the next request.
        assert c.get("/small")[2] == b"small"
    finally:
        c.close()


@pytest.mark.ferrocorn_only
def test_no_sendfile_reads_the_file_and_sends_the_same_bytes(start, data):
    server = start("--no-sendfile")
    c = Client(server)
    try:
        for target in ("/file", "/file?length=%d" % SIZE):
            status, _, body, _, copied = fetch(c, target)
            assert status == 200 and sha(body) == sha(data)
            assert copied >= SIZE, "only %d bytes read: was sendfile used anyway?" % copied
        stats = c.stats()
        assert stats["reads"] >= 2 * SIZE // 65536
        assert stats["closed"] == 2
        assert c.get("/small")[2] == b"small"
    finally:
        c.close()


# gunicorn takes the descriptor's offset, which a buffered reader has
# moved past the app's position.
@pytest.mark.parametrize("kind", ["file", pytest.param("buffered", marks=pytest.mark.ferrocorn_only)])
def test_sending_starts_at_the_files_position(start, data, kind):
    server = start()
    skip = 1234567
    c = Client(server)
    try:
        status, headers, body, chunks = c.get("/file?kind=%s&skip=%d" % (kind, skip))
        assert status == 200 and sha(body) == sha(data[skip:])
        assert chunks == [SIZE - skip]
        # Content-Length smaller than the rest of the file: only that much.
        status, headers, body, _ = c.get("/file?kind=%s&skip=%d&length=1000" % (kind, skip))
        assert body == data[skip:skip + 1000]
        assert c.get("/small")[2] == b"small"
        if kind == "file":
            assert c.stats()["reads"] == 0
    finally:
        c.close()


def test_head_sends_no_body_and_reads_nothing(start):
    server = start()
    c = Client(server)
    try:
        status, headers, body, _ = c.get("/file?length=%d" % SIZE, method="HEAD")
        assert status == 200 and headers["content-length"] == str(SIZE)
        # Were any body byte sent, it would be parsed as the next response.
        assert c.get("/small")[2] == b"small"
        stats = c.stats()
        assert stats["reads"] == 0 and stats["closed"] == 1
    finally:
        c.close()


@pytest.mark.parametrize("kind", ["bytesio", "broken"])
def test_file_likes_without_a_usable_fileno_are_read(start, data, kind):
    server = start()
    c = Client(server)
    try:
        for target in ("/file?kind=%s" % kind, "/file?kind=%s&length=%d" % (kind, SIZE)):
            status, _, body, _ = c.get(target)
            assert status == 200 and sha(body) == sha(data)
        stats = c.stats()
        assert stats["reads"] >= 2 * SIZE // 65536
        assert stats["closed"] == 2
    finally:
        c.close()


def test_http10_without_length_sends_the_file_and_closes(start, data):
    server = start()
    c = Client(server)
    try:
        status, headers, body, chunks = c.get("/file", version="HTTP/1.0")
        assert status == 200 and chunks is None
        assert sha(body) == sha(data)
    finally:
        c.close()


def test_length_beyond_the_end_of_the_file_sends_the_file_and_closes(start, data):
    server = start()
    c = Client(server)
    try:
        c.sock.sendall(b"GET /file?length=%d HTTP/1.1\r\nHost: t\r\n\r\n" % (SIZE + 10))
        raw = c.read_rest()
        head, _, body = raw.partition(b"\r\n\r\n")
        assert b"Content-Length: %d" % (SIZE + 10) in head
        assert sha(body) == sha(data), "the whole file, then the end of the connection"
    finally:
        c.close()


def test_client_leaving_mid_file_does_not_disturb_the_worker(start, data):
    server = start()
    c = Client(server)
    c.sock.sendall(b"GET /file HTTP/1.1\r\nHost: t\r\n\r\n")
    got = 0
    while got < (1 << 20):
        got += len(c.sock.recv(1 << 16))
    c.close()
    c = Client(server)
    try:
        stats = c.stats()
        assert stats["closed"] == 1
        status, _, body, _ = c.get("/file?length=%d" % SIZE)
        assert status == 200 and sha(body) == sha(data)
    finally:
        c.close()


def test_tls_connections_read_the_file(start, data, tmp_path):
    ca = trustme.CA()
    certfile, keyfile = write_pair(ca, tmp_path)
    server = start("--certfile", str(certfile), "--keyfile", str(keyfile), wait=False)
    ctx = client_context(ca)
    deadline = time.monotonic() + 20
    while True:
        try:
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=IO_TIMEOUT)
            tls = ctx.wrap_socket(sock, server_hostname="localhost")
            break
        except (OSError, ssl.SSLError):
            assert time.monotonic() < deadline, server.log_tail()
            time.sleep(0.1)
    c = Client.__new__(Client)
    c.sock, c.buf = tls, bytearray()
    try:
        status, headers, body, _ = c.get("/file?length=%d" % SIZE)
        assert status == 200 and sha(body) == sha(data)
        stats = c.stats()
        assert stats["reads"] >= SIZE // 65536, "TLS cannot use sendfile: the file must be read"
        assert stats["closed"] == 1
    finally:
        c.close()
