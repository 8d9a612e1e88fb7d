"""WebSocket for ASGI apps, on both io engines: a FastAPI app
(tests/apps/ws_app.py) driven with the `websockets` client, and raw sockets
for malformed handshakes and frames."""
import base64
import json
import os
import signal
import socket
import ssl
import struct
import time
import zlib

import pytest
import requests
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from conftest import EXAMPLES
from support import IO_TIMEOUT, request_bytes, wait_until
from test_tls import client_context, write_pair

pytestmark = pytest.mark.timeout(60)

APP = "ws_app:app"
KEY = base64.b64encode(b"0123456789abcdef").decode()


@pytest.fixture
def wsapp(serve):
    return serve(APP)


def ws_url(server, path):
    return "ws://127.0.0.1:%d%s" % (server.port, path)


def open_ws(server, path, **kw):
    kw.setdefault("open_timeout", IO_TIMEOUT)
    kw.setdefault("close_timeout", IO_TIMEOUT)
    return connect(ws_url(server, path), **kw)


def codes(server):
    return requests.get(server.url + "/codes", timeout=IO_TIMEOUT).json()


# ------------------------------------------------------------ raw helpers
def upgrade_headers(key=KEY, version="13", connection="Upgrade", extra=()):
    headers = [("Host", "x"), ("Upgrade", "websocket")]
    if connection is not None:
        headers.append(("Connection", connection))
    if key is not None:
        headers.append(("Sec-WebSocket-Key", key))
    if version is not None:
        headers.append(("Sec-WebSocket-Version", version))
    return headers + list(extra)


def raw_upgrade(server, path="/echo", extra=()):
    conn = server.connect()
    conn.send(request_bytes("GET", path, headers=upgrade_headers(extra=extra)))
    resp = conn.read_response()
    assert resp.status == 101, resp
    return conn, resp


def frame(payload, opcode=0x1, fin=True, rsv1=False, masked=True):
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    n = len(payload)
    mask_bit = 0x80 if masked else 0
    if n < 126:
        head = struct.pack("!BB", first, mask_bit | n)
    elif n < 65536:
        head = struct.pack("!BBH", first, mask_bit | 126, n)
    else:
        head = struct.pack("!BBQ", first, mask_bit | 127, n)
    if not masked:
        return head + payload
    mask = b"\x01\x02\x03\x04"
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def read_frame(conn):
    """(fin, rsv1, opcode, payload) of the next server frame."""
    b0, b1 = conn._read_exactly(2)
    assert not b1 & 0x80, "server frames are not masked"
    n = b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", conn._read_exactly(2))
    elif n == 127:
        (n,) = struct.unpack("!Q", conn._read_exactly(8))
    return bool(b0 & 0x80), bool(b0 & 0x40), b0 & 0x0F, conn._read_exactly(n)


def read_close(conn):
    """The status code of the server's close frame (skipping pings)."""
    while True:
        _, _, opcode, payload = read_frame(conn)
        if opcode == 0x8:
            return struct.unpack("!H", payload[:2])[0]
        assert opcode == 0x9, "expected a close frame, got opcode %d" % opcode


# ------------------------------------------------------------ the app
def test_echo_text_and_bytes(wsapp):
    with open_ws(wsapp, "/echo") as ws:
        ws.send("héllo")
        assert ws.recv() == "héllo"
        ws.send(b"\x00\x01\xff")
        assert ws.recv() == b"\x00\x01\xff"
        big = os.urandom(300_000)
        ws.send(big)
        assert ws.recv() == big
    # A plain HTTP request on the same worker still works.
    assert requests.get(wsapp.url + "/hello", timeout=IO_TIMEOUT).json() == {"hello": "world"}


def test_json_chat_room_broadcasts_between_two_clients(wsapp):
    with open_ws(wsapp, "/chat?name=ann") as ann, open_ws(wsapp, "/chat?name=bob") as bob:
        # bob is in the room once his own message comes back to him.
        bob.send(json.dumps({"text": "hi"}))
        assert json.loads(bob.recv()) == {"from": "bob", "text": "hi"}
        assert json.loads(ann.recv()) == {"from": "bob", "text": "hi"}
        ann.send(json.dumps({"text": "hello bob"}))
        assert json.loads(bob.recv()) == {"from": "ann", "text": "hello bob"}
        assert json.loads(ann.recv()) == {"from": "ann", "text": "hello bob"}


def test_subprotocol_is_chosen_from_the_offered_ones(wsapp):
    with open_ws(wsapp, "/proto", subprotocols=["chat.v1", "chat.v2"]) as ws:
        assert ws.subprotocol == "chat.v2"
        assert json.loads(ws.recv()) == {"offered": ["chat.v1", "chat.v2"], "chosen": "chat.v2"}
    with open_ws(wsapp, "/proto") as ws:
        assert ws.subprotocol is None
        assert json.loads(ws.recv())["chosen"] is None


def test_scope_follows_the_asgi_websocket_spec(wsapp):
    conn, resp = raw_upgrade(wsapp, "/scope?a=1", extra=[
        ("Sec-WebSocket-Protocol", "one, two"), ("Sec-WebSocket-Protocol", "three")])
    with conn:
        assert not resp.has_header("Sec-WebSocket-Protocol")
        _, _, opcode, payload = read_frame(conn)
        assert opcode == 0x1
        s = json.loads(payload)
        assert s["type"] == "websocket"
        assert s["asgi"] == {"version": "3.0", "spec_version": "2.4"}
        assert s["http_version"] == "1.1"
        assert s["scheme"] == "ws"
        assert (s["path"], s["raw_path"], s["query_string"]) == ("/scope", "/scope", "a=1")
        assert s["root_path"] == ""
        assert ["upgrade", "websocket"] in s["headers"]
        assert s["client"][0] == "127.0.0.1"
        assert s["server"] == ["127.0.0.1", wsapp.port]
        assert s["subprotocols"] == ["one", "two", "three"]
        assert s["extensions"] == {"websocket.http.response": {}}
        assert s["has_method"] is False
        assert read_close(conn) == 1000


def test_denial_response_is_sent_as_plain_http(wsapp):
    with pytest.raises(InvalidStatus) as e:
        open_ws(wsapp, "/deny")
    assert e.value.response.status_code == 401
    assert e.value.response.body == b"not you"


def test_close_before_accept_is_a_403(wsapp):
    with pytest.raises(InvalidStatus) as e:
        open_ws(wsapp, "/refuse")
    assert e.value.response.status_code == 403


def test_app_close_code_and_reason_reach_the_client(wsapp):
    with open_ws(wsapp, "/echo") as ws:
        ws.send("close-me")
        with pytest.raises(ConnectionClosed) as e:
            ws.recv()
    assert (e.value.rcvd.code, e.value.rcvd.reason) == (4001, "bye")


def test_client_close_code_and_abrupt_disconnect_reach_the_app(wsapp):
    with open_ws(wsapp, "/recorder") as ws:
        ws.close(code=4002, reason="done")
    wait_until(lambda: 4002 in codes(wsapp), IO_TIMEOUT, what="4002 recorded")
    conn, _ = raw_upgrade(wsapp, "/recorder")
    conn.close()  # TCP closed without a close frame
    wait_until(lambda: 1006 in codes(wsapp), IO_TIMEOUT, what="1006 recorded")


def test_message_over_the_limit_closes_with_1009(serve):
    server = serve(APP, "--websocket-max-message-size", "1024")
    with open_ws(server, "/echo", max_size=None) as ws:
        ws.send("x" * 1024)
        assert ws.recv() == "x" * 1024
        ws.send("x" * 1025)
        with pytest.raises(ConnectionClosed) as e:
            ws.recv()
    assert e.value.rcvd.code == 1009


def test_permessage_deflate_is_negotiated_and_used(wsapp):
    with open_ws(wsapp, "/echo") as ws:
        assert "permessage-deflate" in ws.response.headers["Sec-WebSocket-Extensions"]
        ws.send("a" * 100_000)
        assert ws.recv() == "a" * 100_000
    offer = [("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits")]
    conn, resp = raw_upgrade(wsapp, "/echo", extra=offer)
    with conn:
        assert resp.header("Sec-WebSocket-Extensions").startswith("permessage-deflate")
        conn.send(frame(b"a" * 10_000))
        fin, rsv1, opcode, payload = read_frame(conn)
        assert (fin, rsv1, opcode) == (True, True, 0x1)
        assert len(payload) < 1000
        d = zlib.decompressobj(-15)
        assert d.decompress(payload + b"\x00\x00\xff\xff") == b"a" * 10_000


def test_no_deflate_when_turned_off(serve):
    server = serve(APP, "--no-ws-per-message-deflate")
    with open_ws(server, "/echo") as ws:
        assert "Sec-WebSocket-Extensions" not in ws.response.headers
        ws.send("plain")
        assert ws.recv() == "plain"


def test_send_waits_for_a_client_that_does_not_read(wsapp):
    n = 1000  # 64 MiB in all: far more than the socket buffers hold
    conn, _ = raw_upgrade(wsapp, "/flood?n=%d" % n)
    with conn:
        progress = lambda: requests.get(wsapp.url + "/progress", timeout=IO_TIMEOUT).json()
        wait_until(lambda: progress() > 0, IO_TIMEOUT, what="the app sending")
        # While the client reads nothing, the app stays far from done.
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            assert progress() < n // 4
            time.sleep(0.2)
        got = 0
        while True:
            _, _, opcode, payload = read_frame(conn)
            if opcode == 0x8:
                break
            assert (opcode, len(payload)) == (0x2, 65536)
            got += 1
    assert got == n
    assert progress() == n


def test_worker_stops_reading_while_the_app_does_not_receive(serve):
    # A worker that does not read does not see the client leave either: its
    # WebSocket lasts until the stop closes it, so the stop is kept short.
    wsapp = serve(APP, "--graceful-timeout", "2")
    limit = 2000  # 128 MiB of messages: the worker must not take them all
    conn, _ = raw_upgrade(wsapp, "/sleeper")
    message = frame(b"y" * 65536, opcode=0x2)
    sent = 0
    with conn:
        conn.sock.settimeout(2.0)
        try:
            while sent < limit:
                conn.sock.sendall(message)
                sent += 1
        except socket.timeout:
            pass
    assert sent < limit // 4, "%d messages of 64 KiB taken by a worker whose app reads none" % sent
    assert requests.get(wsapp.url + "/hello", timeout=IO_TIMEOUT).status_code == 200


def test_wss_over_tls(serve, tmp_path):
    import trustme
    ca = trustme.CA()
    certfile, keyfile = write_pair(ca, tmp_path)
    server = serve(APP, "--certfile", str(certfile), "--keyfile", str(keyfile), wait=False)
    ctx = client_context(ca)
    url = "wss://localhost:%d" % server.port

    def try_connect(path):
        try:
            return connect(url + path, ssl=ctx, open_timeout=2, close_timeout=IO_TIMEOUT)
        except (OSError, ssl.SSLError):
            assert server.proc.poll() is None, server.log_tail()
            return None

    ws = wait_until(lambda: try_connect("/echo"), 20, interval=0.1, what="the TLS server")
    with ws:
        ws.send("secure")
        assert ws.recv() == "secure"
        big = os.urandom(200_000)
        ws.send(big)
        assert ws.recv() == big
    with try_connect("/scope") as ws:
        assert json.loads(ws.recv())["scheme"] == "wss"


# ------------------------------------------------------------ malformed input
@pytest.mark.parametrize("kw,status", [
    ({"key": None}, 400),
    ({"key": base64.b64encode(b"short").decode()}, 400),
    ({"version": "12"}, 426),
    ({"version": None}, 426),
    ({"connection": "keep-alive"}, 400),
])
def test_malformed_handshake_is_refused_before_the_app(wsapp, kw, status):
    with wsapp.connect() as conn:
        conn.send(request_bytes("GET", "/recorder", headers=upgrade_headers(**kw)))
        resp = conn.read_response()
        assert resp.status == status
        if status == 426:
            assert resp.header("Sec-WebSocket-Version") == "13"
        assert conn.closed_by_server()
    assert codes(wsapp) == []


@pytest.mark.parametrize("bad,code", [
    (frame(b"hi", masked=False), 1002),
    (frame(b"\xff\xfe"), 1007),
    (frame(b"x", opcode=0x3), 1002),
])
def test_malformed_frame_closes_with_its_code(wsapp, bad, code):
    conn, _ = raw_upgrade(wsapp, "/recorder")
    with conn:
        conn.send(bad)
        assert read_close(conn) == code
    wait_until(lambda: code in codes(wsapp), IO_TIMEOUT, what="%d recorded" % code)


def rsv(bits, raw):
    """`raw` (one frame) with RSV `bits` (1-7) set."""
    return bytes([raw[0] | bits << 4]) + raw[1:]


def server_frames(conn):
    """(opcode, payload) of every server frame up to its close, then check
    that the server closes TCP."""
    frames = []
    while not frames or frames[-1][0] != 0x8:
        _, _, opcode, payload = read_frame(conn)
        frames.append((opcode, payload))
    assert conn.closed_by_server(), "TCP stays open after the close"
    return frames


def close_of(code):
    return lambda frames: frames[-1][0] == 0x8 and frames[-1][1][:2] == struct.pack("!H", code)


@pytest.mark.parametrize("bad,code", [
    (rsv(2, frame(b"x")), 1002),
    (rsv(3, frame(b"x")), 1002),
    (frame(b"", opcode=0x5), 1002),
    (frame(b"", opcode=0xB), 1002),
    (frame(b"stray", opcode=0x0), 1002),
    (frame(b"\xc0\xaf"), 1007),
], ids=["rsv2", "rsv3", "opcode5", "opcode11", "stray-continuation", "bad-utf8"])
def test_messages_before_a_protocol_error_are_answered_before_the_close(wsapp, bad, code):
    # One write: a message, the bad frame, a ping, a message. The echo of
    # the first goes out, then the close; nothing after the bad frame is
    # read (no pong, no second echo).
    conn, _ = raw_upgrade(wsapp, "/journal")
    with conn:
        conn.send(frame(b"Hello") + bad + frame(b"p", opcode=0x9) + frame(b"after"))
        frames = server_frames(conn)
    assert frames[0] == (0x1, b"Hello")
    assert len(frames) == 2, frames
    assert close_of(code)(frames), frames
    journal = lambda: requests.get(wsapp.url + "/journal", timeout=IO_TIMEOUT).json()
    wait_until(lambda: len(journal()) == 2, IO_TIMEOUT, what="the disconnect")
    assert journal() == [["receive", "Hello"], ["disconnect", code]]


def test_fragmented_message_then_a_stray_continuation(wsapp):
    conn, _ = raw_upgrade(wsapp, "/echo")
    with conn:
        conn.send(frame(b"frag1", fin=False) + frame(b"frag2", opcode=0x0)
                  + frame(b"frag3", opcode=0x0, fin=False) + frame(b"frag4"))
        frames = server_frames(conn)
    assert frames[0] == (0x1, b"frag1frag2")
    assert len(frames) == 2 and close_of(1002)(frames), frames
    wait_until(lambda: 1002 in codes(wsapp), IO_TIMEOUT, what="1002 recorded")


def test_error_alone_closes_and_later_frames_are_not_read(wsapp):
    conn, _ = raw_upgrade(wsapp, "/echo")
    with conn:
        conn.send(rsv(4, frame(b"x")) + frame(b"p", opcode=0x9) + frame(b"after") * 1000)
        frames = server_frames(conn)
    assert len(frames) == 1 and close_of(1002)(frames), frames
    wait_until(lambda: 1002 in codes(wsapp), IO_TIMEOUT, what="1002 recorded")


def test_app_that_does_not_receive_still_gets_the_connection_failed(wsapp):
    # /sleeper never calls receive(): the close does not wait for it forever.
    conn, _ = raw_upgrade(wsapp, "/sleeper")
    with conn:
        conn.send(frame(b"Hello") + rsv(2, frame(b"x")) + frame(b"p", opcode=0x9))
        frames = server_frames(conn)
    assert len(frames) == 1 and close_of(1002)(frames), frames


def test_wsgi_app_answers_an_upgrade_as_plain_http(serve):
    server = serve("basic:app")
    with server.connect() as conn:
        conn.send(request_bytes("GET", "/", headers=upgrade_headers()))
        resp = conn.read_response()
    assert resp.status == 200
    assert resp.body == b"hello"


def test_peer_that_does_not_answer_pings_is_closed_with_1011(serve):
    server = serve(APP, "--ws-ping-interval", "1", "--ws-ping-timeout", "1")
    conn, _ = raw_upgrade(server, "/idle")
    with conn:
        _, _, opcode, _ = read_frame(conn)
        assert opcode == 0x9  # a ping, which we do not answer
        assert read_close(conn) == 1011


def test_pings_answered_keep_the_connection_open(serve):
    server = serve(APP, "--ws-ping-interval", "1", "--ws-ping-timeout", "1")
    conn, _ = raw_upgrade(server, "/echo")
    with conn:
        # Each pong is taken: the next frame is the next ping, not a close.
        for _ in range(3):
            _, _, opcode, payload = read_frame(conn)
            assert opcode == 0x9
            conn.send(frame(payload, opcode=0xA))
        conn.send(frame(b"still here"))
        _, _, opcode, payload = read_frame(conn)
        while opcode == 0x9:
            _, _, opcode, payload = read_frame(conn)
        assert (opcode, payload) == (0x1, b"still here")


# ------------------------------------------------------------ lifecycle
def test_term_closes_open_websockets_with_1001(serve):
    server = serve(APP, "--graceful-timeout", "3")
    ws = open_ws(server, "/echo")
    try:
        ws.send("up")
        assert ws.recv() == "up"
        server.send_signal(signal.SIGTERM)
        with pytest.raises(ConnectionClosed) as e:
            ws.recv(timeout=IO_TIMEOUT)
        assert e.value.rcvd.code == 1001
    finally:
        ws.close()
    assert server.wait_exit() is not None


def test_max_requests_handover_closes_websockets_with_1012(serve):
    server = serve(APP, "--max-requests", "2", "--graceful-timeout", "3")
    (old,) = server.wait_workers(1)
    ws = open_ws(server, "/echo")  # request 1
    try:
        ws.send("up")
        assert ws.recv() == "up"
        # Request 2 reaches --max-requests: a successor starts, then this
        # worker is retired.
        assert requests.get(server.url + "/hello", timeout=IO_TIMEOUT).status_code == 200
        with pytest.raises(ConnectionClosed) as e:
            ws.recv(timeout=IO_TIMEOUT)
        assert e.value.rcvd.code == 1012
    finally:
        ws.close()
    wait_until(lambda: old not in server.workers() and len(server.workers()) == 1,
               IO_TIMEOUT, what="the successor alone")


def test_many_idle_websockets_and_the_worker_stays_responsive(serve):
    server = serve(APP)
    conns = []
    try:
        for _ in range(500):
            conn = server.connect()
            conn.send(request_bytes("GET", "/idle", headers=upgrade_headers()))
            conns.append(conn)
        for conn in conns:
            assert conn.read_response().status == 101
        assert requests.get(server.url + "/hello", timeout=IO_TIMEOUT).status_code == 200
        with open_ws(server, "/echo") as ws:
            ws.send("busy?")
            assert ws.recv() == "busy?"
    finally:
        for conn in conns:
            conn.close()


def test_fastapi_example_websocket_gets_lifespan_state(serve):
    server = serve("app:app", chdir=EXAMPLES / "fastapi")
    with open_ws(server, "/ws/echo") as ws:
        assert "started_by" in json.loads(ws.recv())
        ws.send("shout")
        assert ws.recv() == "SHOUT"
        ws.send(b"\x01")
        assert ws.recv() == b"\x01"
