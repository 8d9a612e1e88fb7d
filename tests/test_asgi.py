"""ASGI apps end to end: the FastAPI example (examples/fastapi) and a plain
ASGI app (tests/apps/asgi_app.py), on both io engines."""
import threading
import time

import pytest
import requests

from conftest import EXAMPLES
from support import IO_TIMEOUT, request_bytes, wait_until

FASTAPI = EXAMPLES / "fastapi"


@pytest.fixture
def api(serve, tmp_path):
    # No flag: the FastAPI instance is recognised as an ASGI app.
    log = tmp_path / "lifespan.log"
    server = serve("app:app", chdir=FASTAPI, env={"LIFESPAN_LOG": str(log)})
    server.lifespan_log = log
    return server


def test_fastapi_json_endpoints_with_path_and_query_parameters(api):
    root = requests.get(api.url + "/", timeout=10)
    assert root.status_code == 200
    assert root.headers["content-type"] == "application/json"
    assert root.json()["hello"] == "world"
    assert int(root.headers["content-length"]) == len(root.content)

    one = requests.get(api.url + "/items/2", timeout=10)
    assert one.json() == {"id": 2, "name": "teapot", "price": 18.0}
    missing = requests.get(api.url + "/items/99", timeout=10)
    assert missing.status_code == 404
    assert missing.json() == {"detail": "no such item"}
    invalid = requests.get(api.url + "/items/abc", timeout=10)
    assert invalid.status_code == 422

    found = requests.get(api.url + "/items", params={"q": "KET", "limit": 5}, timeout=10)
    assert [i["name"] for i in found.json()["items"]] == ["kettle"]
    limited = requests.get(api.url + "/items?limit=1", timeout=10)
    assert len(limited.json()["items"]) == 1


def test_fastapi_json_body_post_creates_an_item(api):
    with requests.Session() as http:
        made = http.post(api.url + "/items", json={"name": "mug", "price": 7.25}, timeout=10)
        assert made.status_code == 201
        item = made.json()
        assert item["name"] == "mug" and item["price"] == 7.25
        assert http.get(api.url + "/items/%d" % item["id"], timeout=10).json() == item
        bad = http.post(api.url + "/items", json={"name": "no price"}, timeout=10)
        assert bad.status_code == 422


def test_fastapi_streaming_response_arrives_chunked_piece_by_piece(api):
    with api.connect() as conn:
        conn.send(request_bytes("GET", "/stream?n=4&delay=0.05", headers=[("Host", "x")]))
        resp = conn.read_response()
    assert resp.status == 200
    assert resp.header("transfer-encoding") == "chunked"
    assert resp.body == b"line 0\nline 1\nline 2\nline 3\n"
    # Sent as produced: one chunk per line.
    assert len(resp.chunks) >= 4


def test_fastapi_lifespan_runs_startup_before_serving_and_shutdown_on_stop(api):
    assert requests.get(api.url + "/state", timeout=10).json() == {"started_by": "lifespan"}
    lines = api.lifespan_log.read_text().split()
    assert lines[0] == "startup"
    assert api.stop() == 0
    events = [line.split()[0] for line in api.lifespan_log.read_text().splitlines()]
    assert events == ["startup", "shutdown"]


def test_a_failed_startup_stops_the_server_with_the_message(serve):
    server = serve("app:app", chdir=FASTAPI, env={"FAIL_STARTUP": "1"}, wait=False)
    code = server.wait_exit(timeout=20)
    assert code not in (None, 0), server.log_tail()
    log = server.log()
    assert "Application startup failed" in log
    assert "cannot reach the item database" in log


def test_one_worker_answers_100_concurrent_sleeping_requests_at_once(api):
    # Warm up (imports, first-request work) before timing.
    assert requests.get(api.url + "/sleep?seconds=0", timeout=10).status_code == 200
    count = 100
    results = [None] * count
    barrier = threading.Barrier(count)

    def one(i):
        barrier.wait()
        try:
            with api.connect(timeout=20) as conn:
                conn.send(request_bytes("GET", "/sleep?seconds=0.2", headers=[("Host", "x")]))
                results[i] = conn.read_response().status
        except OSError as e:
            results[i] = repr(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    start = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    took = time.monotonic() - start
    print("100 concurrent requests awaiting asyncio.sleep(0.2): %.3f s" % took)
    assert results == [200] * count
    # One at a time would take 20 s.
    assert took < 2.0, took


def test_auto_detection_and_explicit_interface_serve_a_plain_asgi_app(serve):
    for args in ([], ["--interface", "asgi"], ["-k", "asgi"],
                 ["-k", "uvicorn.workers.UvicornWorker"]):
        server = serve("asgi_app:app", *args)
        resp = server.request("GET", "/hello?x=1", headers=[("Host", "x")])
        assert (resp.status, resp.body) == (200, b"GET /hello"), args
        assert server.stop() == 0


@pytest.mark.parametrize("loop", ["auto", "asyncio", "uvloop"])
def test_the_event_loop_is_uvloop_unless_asyncio_is_asked_for(serve, loop):
    server = serve("asgi_app:app", "--asgi-loop", loop)
    assert server.request("GET", "/x", headers=[("Host", "x")]).status == 200
    expected = "asyncio" if loop == "asyncio" else "uvloop"
    assert "ASGI app running on the %s event loop" % expected in server.log()


def test_uvicorn_worker_class_serves_fastapi(serve):
    server = serve("app:app", "-k", "uvicorn.workers.UvicornWorker", chdir=FASTAPI)
    assert requests.get(server.url + "/items/1", timeout=10).json()["name"] == "kettle"


def test_keep_alive_and_pipelined_requests_are_answered_in_order(serve):
    server = serve("asgi_app:app")
    with server.connect() as conn:
        conn.send(request_bytes("GET", "/one", headers=[("Host", "x")]))
        assert conn.read_response().body == b"GET /one"
        conn.send(request_bytes("GET", "/two", headers=[("Host", "x")]))
        assert conn.read_response().body == b"GET /two"
        pipelined = b"".join(
            request_bytes(m, p, headers=[("Host", "x")] + h, body=b)
            for m, p, h, b in [("GET", "/a", [], b""),
                               ("POST", "/echo", [("Content-Length", "5")], b"hello"),
                               ("GET", "/c", [], b"")])
        conn.send(pipelined)
        assert conn.read_response().body == b"GET /a"
        assert conn.read_response().body == b"hello"
        assert conn.read_response().body == b"GET /c"


def test_a_large_body_reaches_the_app_in_pieces(serve):
    server = serve("asgi_app:app")
    body = bytes(range(256)) * 1024  # 256 KiB
    resp = server.request("POST", "/echo", headers=[("Host", "x"),
                                                    ("Content-Length", str(len(body)))],
                          body=body)
    assert resp.status == 200
    assert resp.body == body
    assert int(resp.header("x-events")) >= 4


@pytest.mark.parametrize("buffer", ["1048576", "1"])
def test_a_body_kept_in_a_temporary_file_reaches_the_app_whole(serve, buffer):
    # Over --body-buffer-size the body waits in a temporary file; the app
    # still gets it in pieces, byte for byte.
    server = serve("asgi_app:app", "--body-buffer-size", buffer)
    body = bytes(range(251)) * 12000  # ~2.9 MiB
    resp = server.request("POST", "/echo", headers=[("Host", "x"),
                                                    ("Content-Length", str(len(body)))],
                          body=body)
    assert resp.status == 200
    assert resp.body == body
    assert int(resp.header("x-events")) >= len(body) // 65536


def test_the_app_sees_http_disconnect_when_the_client_leaves(serve, tmp_path):
    events = tmp_path / "events.log"
    events.write_text("")
    server = serve("asgi_app:app", env={"ASGI_EVENT_LOG": str(events)})
    conn = server.connect()
    conn.send(request_bytes("GET", "/wait-disconnect", headers=[("Host", "x")]))
    wait_until(lambda: "waiting" in events.read_text(), IO_TIMEOUT, what="the app waiting")
    conn.close()
    wait_until(lambda: "disconnect /wait-disconnect" in events.read_text(), IO_TIMEOUT,
               what="http.disconnect seen by the app")
    # The worker goes on serving.
    assert server.request("GET", "/after", headers=[("Host", "x")]).body == b"GET /after"


def test_a_websocket_upgrade_gets_a_clean_answer_and_the_worker_lives(api):
    resp = api.request("GET", "/", headers=[("Host", "x"), ("Connection", "Upgrade"),
                                            ("Upgrade", "websocket"),
                                            ("Sec-WebSocket-Version", "13"),
                                            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")])
    assert resp.status != 101
    assert requests.get(api.url + "/", timeout=10).status_code == 200


def _produced(events):
    lines = [l for l in events.read_text().splitlines() if l.startswith("produced ")]
    return int(lines[-1].split()[1]) if lines else 0


def test_a_slow_reader_holds_the_producer_back_and_gets_every_byte(serve, tmp_path):
    events = tmp_path / "events.log"
    events.write_text("")
    server = serve("asgi_app:app", env={"ASGI_EVENT_LOG": str(events)})
    pieces = 1024  # 64 MiB
    with server.connect(timeout=30) as conn:
        conn.send(request_bytes("GET", "/produce?n=%d" % pieces, headers=[("Host", "x")]))
        wait_until(lambda: _produced(events) > 0, IO_TIMEOUT, what="production starting")
        time.sleep(1.0)
        # Kernel socket buffers take some megabytes; the app is held back after that.
        held = _produced(events)
        assert held < pieces // 4, held
        resp = conn.read_response()
    assert len(resp.body) == pieces * 65536
    assert _produced(events) == pieces


def test_a_client_leaving_mid_stream_stops_the_producer(serve, tmp_path):
    events = tmp_path / "events.log"
    events.write_text("")
    server = serve("asgi_app:app", env={"ASGI_EVENT_LOG": str(events)})
    conn = server.connect()
    conn.send(request_bytes("GET", "/produce?n=100000", headers=[("Host", "x")]))
    wait_until(lambda: _produced(events) > 0, IO_TIMEOUT, what="production starting")
    conn.close()
    wait_until(lambda: "stopped ClientDisconnected" in events.read_text(), IO_TIMEOUT,
               what="the send after the disconnect raising OSError")
    assert _produced(events) < 100000
    assert server.request("GET", "/after", headers=[("Host", "x")]).status == 200


def test_an_app_exception_is_a_500_logged_with_its_traceback_and_responses_are_access_logged(
        serve):
    server = serve("asgi_app:app", "--access-logfile", "-")
    resp = server.request("GET", "/raise", headers=[("Host", "x")])
    assert resp.status == 500
    assert server.request("GET", "/fine?q=1", headers=[("Host", "x")]).status == 200
    wait_until(lambda: '"GET /fine?q=1 HTTP/1.1" 200' in server.log(), IO_TIMEOUT,
               what="the access log line")
    log = server.log()
    assert "Error handling request GET /raise" in log
    assert "RuntimeError: the app broke" in log
    assert '"GET /raise HTTP/1.1" 500' in log
