"""HTTP/2: h2 over TLS (ALPN), cleartext h2c (prior knowledge and Upgrade),
WSGI and ASGI, streams served concurrently with --threads and ASGI, the
graceful stop, and the hardening limits driven with raw frames through a
real worker. Clients: the `h2` package (raw frames), httpx, curl."""
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import time

import h2.config
import h2.connection
import h2.events
import h2.settings
import pytest
import trustme

from conftest import APPS as APP_DIR, run_cli
from support import IO_TIMEOUT

pytestmark = pytest.mark.ferrocorn_only

H2C = ["--http-protocols", "h2,h1", "--http2-cleartext", "prior-knowledge"]
APPS = {"wsgi": "h2_app:app", "asgi": "h2_app:asgi"}

# Frame types and flags (RFC 9113 6).
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, CONTINUATION = 0, 1, 3, 4, 6, 7, 9
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1
ENHANCE_YOUR_CALM, FRAME_SIZE_ERROR, CANCEL = 0xb, 0x6, 0x8


def frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + struct.pack(">BBI", kind, flags, stream) + payload


class Client:
    """A raw HTTP/2 client over one socket, with the `h2` package's state
    machine for what is valid and raw bytes for what is not."""

    def __init__(self, port, tls_ctx=None, timeout=IO_TIMEOUT):
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if tls_ctx is not None:
            sock = tls_ctx.wrap_socket(sock, server_hostname="localhost")
            assert sock.selected_alpn_protocol() == "h2"
        self.sock = sock
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.h2.initiate_connection()
        self.flush()
        self.responses = {}
        self.ended = []
        self.goaway = None
        self.pings = []
        self.closed = False
        # Streams whose data is taken without giving the window back.
        self.hold = set()
        self.resets = []
        # (event, stream) in arrival order: "103", "head", "trailers".
        self.heads = []
        self.server_pings = []

    def flush(self):
        data = self.h2.data_to_send()
        if data:
            self.sock.sendall(data)

    def raw(self, data):
        self.sock.sendall(data)

    def request(self, path, method="GET", body=b""):
        sid = self.h2.get_next_available_stream_id()
        headers = [(":method", method), (":scheme", "http"), (":authority", "localhost"),
                   (":path", path)]
        self.h2.send_headers(sid, headers, end_stream=not body)
        if body:
            self.h2.send_data(sid, body, end_stream=True)
        self.flush()
        return sid

    def pump(self):
        """Read once; feed the h2 state machine; return False at EOF."""
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, ssl.SSLError):
            data = b""
        if not data:
            self.closed = True
            return False
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError:
            events = []
        for ev in events:
            if isinstance(ev, h2.events.InformationalResponseReceived):
                r = self.responses.setdefault(ev.stream_id, {"body": b""})
                r.setdefault("informational", []).append(
                    dict((k.decode(), v.decode()) for k, v in ev.headers))
                self.heads.append(("1xx", ev.stream_id))
            elif isinstance(ev, h2.events.TrailersReceived):
                r = self.responses.setdefault(ev.stream_id, {"body": b""})
                r["trailers"] = dict((k.decode(), v.decode()) for k, v in ev.headers)
                self.heads.append(("trailers", ev.stream_id))
            elif isinstance(ev, h2.events.PingReceived):
                self.server_pings.append(ev.ping_data)
            elif isinstance(ev, h2.events.ResponseReceived):
                self.heads.append(("head", ev.stream_id))
                r = self.responses.setdefault(ev.stream_id, {"body": b""})
                r["headers"] = dict((k.decode(), v.decode()) for k, v in ev.headers)
            elif isinstance(ev, h2.events.DataReceived):
                self.responses.setdefault(ev.stream_id, {"body": b""})["body"] += ev.data
                if ev.stream_id not in self.hold:
                    self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                self.ended.append(ev.stream_id)
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self.goaway = ev
            elif isinstance(ev, h2.events.StreamReset):
                self.resets.append(ev.stream_id)
            elif isinstance(ev, h2.events.PingAckReceived):
                self.pings.append(ev.ping_data)
        self.flush()
        return True

    def until(self, cond, timeout=IO_TIMEOUT):
        deadline = time.monotonic() + timeout
        while not cond():
            assert time.monotonic() < deadline, "timed out"
            if not self.pump():
                break
        return cond()

    def get(self, path):
        sid = self.request(path)
        self.until(lambda: sid in self.ended)
        return self.responses[sid]

    def close(self):
        self.sock.close()


def raw_goaway(port, payload, timeout=IO_TIMEOUT):
    """Send the preface, SETTINGS and `payload`; return the GOAWAY error code
    the server sent (None if the connection ended without one)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(SETTINGS, 0, 0))
        try:
            s.sendall(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass
        buf = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            at = 0
            while len(buf) - at >= 9:
                length = int.from_bytes(buf[at:at + 3], "big")
                kind = buf[at + 3]
                if len(buf) - at - 9 < length:
                    break
                if kind == GOAWAY:
                    return struct.unpack(">I", buf[at + 13:at + 17])[0]
                at += 9 + length
            try:
                data = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                return None
            if not data:
                return None
            buf += data
    return None


@pytest.fixture(params=["wsgi", "asgi"])
def kind(request):
    return request.param


# ---------------------------------------------------------------- serving

def test_h2c_prior_knowledge_reports_http2_to_the_app(serve, kind):
    server = serve(APPS[kind], *H2C)
    c = Client(server.port)
    r = c.get("/version")
    assert r["headers"][":status"] == "200"
    assert r["body"] == (b"HTTP/2.0" if kind == "wsgi" else b"2")
    head = c.request("/big?n=5000", method="HEAD")
    c.until(lambda: head in c.ended)
    assert c.responses[head]["headers"]["content-length"] == "5000"
    assert c.responses[head]["body"] == b""
    body = b"x" * 200_000  # more than one window: the credit comes back
    sid = c.h2.get_next_available_stream_id()
    c.h2.send_headers(sid, [(":method", "POST"), (":scheme", "http"),
                            (":authority", "localhost"), (":path", "/echo")])
    sent = 0
    while sent < len(body):
        room = min(c.h2.local_flow_control_window(sid), 16384, len(body) - sent)
        if room == 0:
            c.pump()
            continue
        c.h2.send_data(sid, body[sent:sent + room])
        sent += room
        c.flush()
    c.h2.end_stream(sid)
    c.flush()
    c.until(lambda: sid in c.ended)
    assert c.responses[sid]["body"] == body
    c.close()


def test_large_response_streams_under_flow_control(serve, kind):
    server = serve(APPS[kind], *H2C)
    c = Client(server.port)
    r = c.get("/big?n=1000000")
    assert len(r["body"]) == 1_000_000
    c.close()


@pytest.mark.skipif(shutil.which("curl") is None, reason="no curl")
def test_curl_prior_knowledge_and_upgrade(serve):
    if "HTTP2" not in subprocess.run(["curl", "-V"], capture_output=True, text=True).stdout:
        pytest.skip("curl without HTTP/2")
    server = serve(APPS["wsgi"], "--http-protocols", "h2,h1", "--http2-cleartext", "both")
    url = "http://127.0.0.1:%d/version" % server.port
    for flag in ("--http2-prior-knowledge", "--http2"):
        out = subprocess.run(["curl", "-sS", "--max-time", "10", flag, "-w", " %{http_version}",
                              url], capture_output=True, text=True, timeout=20)
        assert out.stdout == "HTTP/2.0 2", (flag, out)
    # Plain HTTP/1.1 still works on the same port.
    out = subprocess.run(["curl", "-sS", "--max-time", "10", "--http1.1", url],
                         capture_output=True, text=True, timeout=20)
    assert out.stdout == "HTTP/1.1"


UPGRADE = (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
           b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
           b"HTTP2-Settings: AAMAAABkAARAAAAA\r\n\r\nhello")


@pytest.mark.parametrize("trusted", [True, False])
def test_upgrade_makes_the_request_stream_1(serve, kind, trusted):
    allow = "127.0.0.1" if trusted else "10.9.9.9"
    server = serve(APPS[kind], "--http-protocols", "h2,h1", "--http2-cleartext", "upgrade",
                   "--forwarded-allow-ips", allow)
    with socket.create_connection(("127.0.0.1", server.port), timeout=IO_TIMEOUT) as s:
        s.sendall(UPGRADE)
        head = b""
        while b"\r\n\r\n" not in head:
            data = s.recv(65536)
            assert data, head
            head += data
        if not trusted:
            # Served as HTTP/1.1, the upgrade ignored.
            assert head.startswith(b"HTTP/1.1 200"), head
            return
        assert head.startswith(b"HTTP/1.1 101"), head
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(SETTINGS, 0, 0))
        rest = head.split(b"\r\n\r\n", 1)[1]
        frames = read_frames(s, lambda fs: any(f[0] == DATA and f[1] & END_STREAM for f in fs),
                             initial=rest)
    assert b"".join(f[3] for f in frames if f[0] == DATA and f[2] == 1) == b"hello"


@pytest.mark.skipif(shutil.which("h2load") is None, reason="no h2load (nghttp2-client)")
def test_h2load_requests_all_succeed(serve, kind):
    server = serve(APPS[kind], *H2C, *(["--threads", "4"] if kind == "wsgi" else []))
    out = subprocess.run(["h2load", "-n", "400", "-c", "4", "-m", "10", "-T", "10", "-N", "10",
                          "http://127.0.0.1:%d/version" % server.port],
                         capture_output=True, text=True, timeout=60)
    assert "400 succeeded, 0 failed, 0 errored" in out.stdout, out.stdout + out.stderr
    assert "status codes: 400 2xx" in out.stdout, out.stdout


@pytest.mark.parametrize("trusted", [True, False])
def test_secure_scheme_headers_apply_to_trusted_peers(serve, kind, trusted):
    allow = "127.0.0.1" if trusted else "10.9.9.9"
    args = ["--http-protocols", "h2,h1", "--http2-cleartext", "both", "--forwarded-allow-ips",
            allow]
    server = serve(APPS[kind], *args)
    if not trusted:
        # No h2c for this peer: the forwarded header is ignored over HTTP/1.1 too.
        with socket.create_connection(("127.0.0.1", server.port), timeout=IO_TIMEOUT) as s:
            s.sendall(b"GET /scheme HTTP/1.1\r\nHost: x\r\nX-Forwarded-Proto: https\r\n"
                      b"Connection: close\r\n\r\n")
            data = b""
            while True:
                more = s.recv(65536)
                if not more:
                    break
                data += more
        assert data.endswith(b"\r\n\r\nhttp"), data
        return
    c = Client(server.port)
    sid = c.h2.get_next_available_stream_id()
    c.h2.send_headers(sid, [(":method", "GET"), (":scheme", "http"), (":authority", "x"),
                            (":path", "/scheme"), ("x-forwarded-proto", "https")],
                      end_stream=True)
    c.flush()
    c.until(lambda: sid in c.ended)
    assert c.responses[sid]["body"] == b"https"
    bad = c.h2.get_next_available_stream_id()
    c.h2.send_headers(bad, [(":method", "GET"), (":scheme", "http"), (":authority", "x"),
                            (":path", "/scheme"), ("x-forwarded-proto", "https"),
                            ("x-forwarded-ssl", "off")], end_stream=True)
    c.flush()
    c.until(lambda: bad in c.ended)
    assert c.responses[bad]["headers"][":status"] == "400"
    # An underscore in a name is dropped (header_map), as over HTTP/1.1.
    user = c.h2.get_next_available_stream_id()
    c.h2.send_headers(user, [(":method", "GET"), (":scheme", "http"), (":authority", "x"),
                             (":path", "/user"), ("x_user", "admin")], end_stream=True)
    c.flush()
    c.until(lambda: user in c.ended)
    assert c.responses[user]["body"] == b"-"
    c.close()


def test_h2c_from_an_untrusted_peer_is_http1(serve):
    server = serve(APPS["wsgi"], *H2C, "--forwarded-allow-ips", "10.9.9.9")
    with socket.create_connection(("127.0.0.1", server.port), timeout=IO_TIMEOUT) as s:
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(SETTINGS, 0, 0))
        data = s.recv(65536)
    assert data.startswith(b"HTTP/1.1 4"), data[:80]


def test_prior_knowledge_only_refuses_http1_from_a_trusted_peer(serve):
    server = serve(APPS["wsgi"], *H2C)
    with socket.create_connection(("127.0.0.1", server.port), timeout=IO_TIMEOUT) as s:
        s.sendall(b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n")
        data = s.recv(65536)
    assert data.startswith(b"HTTP/1.1 400"), data[:80]


@pytest.fixture
def tls_files(tmp_path):
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    cafile = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    return certfile, keyfile, cafile, ca


def test_tls_alpn_serves_h2_and_http11_on_one_listener(serve, tls_files, kind):
    certfile, keyfile, cafile, ca = tls_files
    server = serve(APPS[kind], "--certfile", str(certfile), "--keyfile", str(keyfile),
                   "--http-protocols", "h2,h1", wait=False)
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline, server.log_tail()
            time.sleep(0.1)
    import httpx
    with httpx.Client(http2=True, verify=ctx, timeout=IO_TIMEOUT) as client:
        r = client.get("https://localhost:%d/version" % server.port)
        assert r.http_version == "HTTP/2"
        assert r.text == ("HTTP/2.0" if kind == "wsgi" else "2")
    with httpx.Client(http2=False, verify=ctx, timeout=IO_TIMEOUT) as client:
        r = client.get("https://localhost:%d/version" % server.port)
        assert r.http_version == "HTTP/1.1"
        assert r.text == ("HTTP/1.1" if kind == "wsgi" else "1.1")
    ctx.set_alpn_protocols(["h2"])
    c = Client(server.port, tls_ctx=ctx)
    assert c.get("/big?n=300000")["body"] == b"b" * 300_000
    c.close()
    if shutil.which("curl"):
        out = subprocess.run(["curl", "-sS", "--max-time", "10", "--http2", "--cacert",
                              str(cafile), "-w", " %{http_version}",
                              "https://localhost:%d/version" % server.port],
                             capture_output=True, text=True, timeout=20)
        assert out.stdout.endswith(" 2"), out


@pytest.mark.parametrize("mode", ["threads", "asgi"])
def test_streams_of_one_connection_run_concurrently(serve, mode):
    if mode == "threads":
        server = serve(APPS["wsgi"], *H2C, "--threads", "4")
    else:
        server = serve(APPS["asgi"], *H2C)
    c = Client(server.port)
    sids = [c.request("/meet?n=4") for _ in range(4)]
    c.until(lambda: all(s in c.ended for s in sids), timeout=15)
    for s in sids:
        assert c.responses[s]["body"] == b"met", c.responses
    c.close()


@pytest.mark.parametrize("mode", ["threads", "asgi"])
def test_a_stream_stalled_on_its_window_does_not_block_the_others(serve, mode):
    if mode == "threads":
        server = serve(APPS["wsgi"], *H2C, "--threads", "4")
    else:
        server = serve(APPS["asgi"], *H2C)
    c = Client(server.port)
    # The connection window is wide open; only the stream's own stays shut.
    c.h2.increment_flow_control_window(16 * 1024 * 1024)
    c.flush()
    big = c.request("/big?n=1000000")
    c.hold.add(big)
    c.until(lambda: len(c.responses.get(big, {}).get("body", b"")) >= 65535)
    assert big not in c.ended
    small = c.request("/version")
    c.until(lambda: small in c.ended)
    assert c.responses[small]["headers"][":status"] == "200"
    # Given its window back, the stalled stream finishes.
    c.hold.discard(big)
    c.h2.increment_flow_control_window(2_000_000, stream_id=big)
    c.flush()
    c.until(lambda: big in c.ended)
    assert len(c.responses[big]["body"]) == 1_000_000
    c.close()


def test_a_response_stalled_past_body_timeout_is_reset(serve, kind):
    server = serve(APPS[kind], *H2C, "--body-timeout", "1")
    c = Client(server.port)
    c.h2.increment_flow_control_window(16 * 1024 * 1024)
    c.flush()
    big = c.request("/big?n=1000000")
    c.hold.add(big)
    c.until(lambda: big in c.resets, timeout=15)
    assert big not in c.ended
    # The connection, and the worker, go on serving.
    assert c.get("/version")["headers"][":status"] == "200"
    c.close()


@pytest.mark.sync_worker
def test_sync_worker_serves_streams_in_order_and_answers_ping(serve):
    server = serve(APPS["wsgi"], *H2C)
    c = Client(server.port)
    c.h2.increment_flow_control_window(16 * 1024 * 1024)
    c.flush()
    first = c.request("/big?n=1000000")
    c.hold.add(first)
    second = c.request("/version")
    c.until(lambda: len(c.responses.get(first, {}).get("body", b"")) >= 65535)
    # The first body is stalled on its window: PING is still answered, and
    # the second stream waits its turn.
    c.h2.ping(b"pingpong")
    c.flush()
    c.until(lambda: c.pings)
    assert c.pings == [b"pingpong"]
    assert second not in c.ended
    c.hold.discard(first)
    c.h2.increment_flow_control_window(2_000_000, stream_id=first)
    c.flush()
    c.until(lambda: second in c.ended)
    assert c.ended.index(first) < c.ended.index(second)
    assert len(c.responses[first]["body"]) == 1_000_000
    assert c.responses[second]["body"] == b"HTTP/2.0"
    c.close()


def read_frames(sock, until, timeout=IO_TIMEOUT, initial=b""):
    """Read frames [(type, flags, stream, payload)] until `until(frames)`
    or EOF; PINGs are answered (raw: the `h2` package stops reading at the
    first GOAWAY, and a graceful stop sends two)."""
    frames, buf = [], b""
    deadline = time.monotonic() + timeout
    data = initial
    while True:
        buf += data
        while len(buf) >= 9 and len(buf) >= 9 + int.from_bytes(buf[:3], "big"):
            length = int.from_bytes(buf[:3], "big")
            kind, flags = buf[3], buf[4]
            stream = struct.unpack(">I", buf[5:9])[0] & 0x7FFFFFFF
            payload = buf[9:9 + length]
            buf = buf[9 + length:]
            frames.append((kind, flags, stream, payload))
            if kind == PING and not flags & ACK:
                sock.sendall(frame(PING, ACK, 0, payload))
        if until(frames):
            return frames
        assert time.monotonic() < deadline, frames
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            return frames


def test_term_sends_goaway_and_finishes_the_stream_in_flight(serve, kind, tmp_path):
    import hpack
    server = serve(APPS[kind], *H2C, "--graceful-timeout", "10")
    with socket.create_connection(("127.0.0.1", server.port), timeout=IO_TIMEOUT) as s:
        block = hpack.Encoder().encode([(":method", "GET"), (":scheme", "http"),
                                        (":authority", "x"), (":path", "/sleep?s=1")])
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(SETTINGS, 0, 0)
                  + frame(HEADERS, END_HEADERS | END_STREAM, 1, block))
        time.sleep(0.3)  # most likely in the app by then; either way it must be served
        server.send_signal(signal.SIGTERM)
        frames = read_frames(s, lambda fs: False, timeout=15)
    goaways = [struct.unpack(">II", f[3][:8]) for f in frames if f[0] == GOAWAY]
    # Two phases: the largest id first, then the last stream served, no error.
    assert goaways[0] == (0x7FFFFFFF, 0) and goaways[-1] == (1, 0), goaways
    data = b"".join(f[3] for f in frames if f[0] == DATA and f[2] == 1)
    assert data == b"slept"
    assert any(f[0] == DATA and f[2] == 1 and f[1] & END_STREAM for f in frames)
    assert server.wait_exit() == 0


# ----------------------------------------------------------- bad settings

@pytest.mark.parametrize("args, words", [
    (["--http-protocols", "h2,h3"], "h3"),
    (["--http-protocols", "h1,h1"], "twice"),
    (["--http2-max-frame-size", "1000"], "http2-max-frame-size"),
    (["--http2-max-concurrent-streams", "0"], "http2-max-concurrent-streams"),
    (["--http2-initial-window-size", "2147483648"], "http2-initial-window-size"),
    (["--http2-cleartext", "sometimes"], "http2-cleartext"),
])
def test_bad_http2_settings_stop_the_start(args, words):
    out = run_cli(["--check-config", "--chdir", str(APP_DIR), *args, "h2_app:app"])
    assert out.returncode != 0
    assert words in out.stdout + out.stderr, out


# -------------------------------------------------------------- hardening

def get_frames(sid):
    import hpack
    block = hpack.Encoder().encode([(":method", "GET"), (":scheme", "http"),
                                    (":authority", "x"), (":path", "/version")])
    return frame(HEADERS, END_HEADERS | END_STREAM, sid, block)


def test_rapid_reset_gets_goaway_enhance_your_calm(serve):
    server = serve(APPS["wsgi"], *H2C)
    payload = b"".join(get_frames(sid) + frame(RST_STREAM, 0, sid, struct.pack(">I", CANCEL))
                       for sid in range(1, 2 * 400, 2))
    assert raw_goaway(server.port, payload) == ENHANCE_YOUR_CALM
    assert server.proc.poll() is None


def test_continuation_flood_is_cut_at_the_header_list_limit(serve):
    server = serve(APPS["wsgi"], *H2C, "--http2-max-header-list-size", "16384")
    import hpack
    start = hpack.Encoder().encode([(":method", "GET"), (":scheme", "http"), (":path", "/")])
    payload = frame(HEADERS, 0, 1, start) + frame(CONTINUATION, 0, 1, b"\x40" * 4096) * 64
    assert raw_goaway(server.port, payload) == ENHANCE_YOUR_CALM


def test_hpack_bomb_is_answered_431(serve):
    server = serve(APPS["wsgi"], *H2C)
    import hpack
    enc = hpack.Encoder()
    block = enc.encode([(":method", "GET"), (":scheme", "http"), (":path", "/")])
    block += enc.encode([("x", "a" * 4000)])
    block += b"\xbe" * 2000  # the 4000-byte field named again, a byte each: 8 MB decoded
    with socket.create_connection(("127.0.0.1", server.port), timeout=IO_TIMEOUT) as s:
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(SETTINGS, 0, 0)
                  + frame(HEADERS, END_HEADERS | END_STREAM, 1, block))
        frames = read_frames(s, lambda fs: any(f[0] == HEADERS for f in fs))
    head = [f for f in frames if f[0] == HEADERS and f[2] == 1]
    assert head, frames
    assert dict(hpack.Decoder().decode(head[0][3]))[":status"] == "431"
    assert not any(f[0] == GOAWAY for f in frames)


@pytest.mark.parametrize("flood", ["ping", "settings", "empty-data"])
def test_control_frame_floods_get_enhance_your_calm(serve, flood):
    server = serve(APPS["wsgi"], *H2C)
    if flood == "ping":
        payload = frame(PING, 0, 0, b"12345678") * 300
    elif flood == "settings":
        payload = frame(SETTINGS, 0, 0) * 300
    else:
        import hpack
        head = hpack.Encoder().encode([(":method", "POST"), (":scheme", "http"),
                                       (":path", "/echo")])
        payload = frame(HEADERS, END_HEADERS, 1, head) + frame(DATA, 0, 1) * 2000
    assert raw_goaway(server.port, payload) == ENHANCE_YOUR_CALM


def test_oversized_frame_is_a_frame_size_error(serve):
    server = serve(APPS["wsgi"], *H2C)
    assert raw_goaway(server.port, frame(PING, 0, 0, b"x" * 20000)) == FRAME_SIZE_ERROR
    # The worker is still serving.
    c = Client(server.port)
    assert c.get("/version")["body"] == b"HTTP/2.0"
    c.close()


# ------------------------------------------------- trailers, hints, timers

def test_asgi_trailers_go_out_as_a_final_headers_frame(serve):
    server = serve(APPS["asgi"], *H2C)
    c = Client(server.port)
    r = c.get("/trailers")
    assert r["headers"][":status"] == "200"
    assert r["body"] == b"data"
    assert r["trailers"] == {"grpc-status": "0", "x-checksum": "abc"}
    sid = max(c.responses)
    assert c.heads[-2:] == [("head", sid), ("trailers", sid)]
    # The stream ended with the trailers, and the connection goes on.
    assert c.get("/version")["body"] == b"2"
    c.close()


def test_a_forbidden_trailer_resets_the_stream(serve):
    server = serve(APPS["asgi"], *H2C)
    c = Client(server.port)
    sid = c.request("/bad-trailers")
    c.until(lambda: sid in c.resets)
    assert "trailers" not in c.responses.get(sid, {})
    assert c.get("/version")["headers"][":status"] == "200"
    c.close()
    assert "not allowed in trailers" in server.log()


def http11_get(port, path, extra=b""):
    with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as s:
        s.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + extra
                  + b"\r\n")
        data = b""
        while True:
            more = s.recv(65536)
            if not more:
                return data
            data += more


@pytest.mark.parametrize("te", [True, False])
def test_asgi_trailers_over_http11_need_te_trailers(serve, te):
    server = serve(APPS["asgi"])
    data = http11_get(server.port, b"/trailers", b"TE: trailers\r\n" if te else b"")
    head, body = data.split(b"\r\n\r\n", 1)
    assert b"Transfer-Encoding: chunked" in head, head
    if te:
        assert body == b"2\r\nda\r\n2\r\nta\r\n0\r\ngrpc-status: 0\r\nx-checksum: abc\r\n\r\n"
    else:
        assert body == b"2\r\nda\r\n2\r\nta\r\n0\r\n\r\n"


@pytest.mark.parametrize("mode", [pytest.param("sync", marks=pytest.mark.sync_worker), "threads"])
def test_early_hints_arrive_as_103_before_the_response(serve, mode):
    server = serve(APPS["wsgi"], *H2C, *(["--threads", "4"] if mode == "threads" else []))
    c = Client(server.port)
    r = c.get("/hints")
    sid = max(c.responses)
    assert r["informational"] == [{":status": "103",
                                   "link": "</style.css>; rel=preload; as=style"}]
    assert [e for e in c.heads if e[1] == sid] == [("1xx", sid), ("head", sid)]
    assert r["headers"][":status"] == "200"
    assert r["body"] == b"hinted"
    c.close()


def open_upload(c, path="/echo"):
    """A POST whose body has begun and not ended."""
    sid = c.h2.get_next_available_stream_id()
    c.h2.send_headers(sid, [(":method", "POST"), (":scheme", "http"),
                            (":authority", "localhost"), (":path", path)])
    c.h2.send_data(sid, b"start")
    c.flush()
    return sid


def test_a_request_body_that_stops_is_reset_after_body_timeout(serve, kind):
    server = serve(APPS[kind], *H2C, "--body-timeout", "1")
    c = Client(server.port)
    stalled = open_upload(c)
    # Another stream is served meanwhile.
    assert c.get("/version")["headers"][":status"] == "200"
    c.until(lambda: stalled in c.resets, timeout=15)
    assert stalled not in c.responses or "headers" not in c.responses[stalled]
    # The connection and the worker go on.
    assert c.get("/echo")["headers"][":status"] == "200"
    c.close()


def test_a_silent_client_with_a_stream_open_gets_a_ping(serve, kind):
    server = serve(APPS[kind], *H2C, "--keep-alive", "2")
    c = Client(server.port)
    sid = open_upload(c)
    # While the client keeps talking, no PING (at most 3 s, bounded).
    deadline = time.monotonic() + 3
    c.sock.settimeout(0.2)
    while time.monotonic() < deadline:
        c.h2.send_data(sid, b".")
        c.flush()
        try:
            c.pump()
        except socket.timeout:
            pass
    assert c.server_pings == []
    c.sock.settimeout(IO_TIMEOUT)
    # Silent, with the stream open: a PING comes (the h2 package answers it).
    c.until(lambda: c.server_pings, timeout=15)
    assert c.server_pings[0] == b"ferro-rt"
    c.h2.end_stream(sid)
    c.flush()
    c.until(lambda: sid in c.ended)
    assert c.responses[sid]["body"].startswith(b"start.")
    c.close()


def test_an_unanswered_ping_closes_the_connection(serve, kind):
    import hpack
    server = serve(APPS[kind], *H2C, "--keep-alive", "1", "--timeout", "3")
    block = hpack.Encoder().encode([(":method", "POST"), (":scheme", "http"),
                                    (":authority", "x"), (":path", "/echo")])
    with socket.create_connection(("127.0.0.1", server.port), timeout=IO_TIMEOUT) as s:
        s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(SETTINGS, 0, 0)
                  + frame(HEADERS, END_HEADERS, 1, block))
        frames, buf = [], b""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                data = s.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data:
                break
            buf += data
            while len(buf) >= 9 and len(buf) >= 9 + int.from_bytes(buf[:3], "big"):
                length = int.from_bytes(buf[:3], "big")
                frames.append((buf[3], buf[4], buf[9:9 + length]))
                buf = buf[9 + length:]
        else:
            pytest.fail("the connection stayed open: %r" % frames)
    # The PING went unanswered (never ACKed here), then the server closed.
    assert (PING, 0, b"ferro-rt") in frames, frames
    assert server.proc.poll() is None


@pytest.mark.parametrize("value", [True, False])
def test_http2_cleartext_boolean_in_a_config_file(serve, tmp_path, value):
    conf = tmp_path / "h2.conf.py"
    conf.write_text('http_protocols = "h2,h1"\nhttp2_cleartext = %r\n' % value)
    server = serve(APPS["wsgi"], "-c", str(conf))
    if value:
        # True is prior-knowledge: the preface starts HTTP/2.
        c = Client(server.port)
        assert c.get("/version")["body"] == b"HTTP/2.0"
        c.close()
    else:
        # False is off: HTTP/1.1 is served, and the preface is not HTTP/2.
        assert http11_get(server.port, b"/version").endswith(b"\r\n\r\nHTTP/1.1")
        with socket.create_connection(("127.0.0.1", server.port), timeout=IO_TIMEOUT) as s:
            s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame(SETTINGS, 0, 0))
            assert s.recv(65536).startswith(b"HTTP/1.1 4")
