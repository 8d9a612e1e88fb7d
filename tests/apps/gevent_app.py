"""A WSGI app for the gevent worker's tests (-k gevent).

It imports gevent at the top, like apps written for gevent do, and notes
whether the standard library was already patched when it was imported.
"""
import json
import os
import socket
import threading
import time
from urllib.parse import parse_qs

import gevent
import requests

PATCHED_AT_IMPORT = socket.socket.__module__.startswith("gevent") and \
    time.sleep.__module__.startswith("gevent")

# Requests of /sleep running now, and body chunks /stream has produced.
STATE = {"sleeping": 0, "produced": 0}


def _query(environ):
    return {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}


def _text(start_response, body, status="200 OK", headers=()):
    body = body if isinstance(body, bytes) else body.encode()
    start_response(status, [("Content-Type", "text/plain"),
                            ("Content-Length", str(len(body)))] + list(headers))
    return [body]


def sleeping_view(environ, start_response):
    STATE["sleeping"] += 1
    try:
        gevent.sleep(float(_query(environ).get("s", "0.5")))
    finally:
        STATE["sleeping"] -= 1
    return _text(start_response, "slept")


def spinning_view(environ, start_response):
    # CPU-bound: the hub gets no turn until this returns.
    end = time.monotonic() + float(_query(environ).get("s", "30"))
    n = 0
    while time.monotonic() < end:
        n += 1
    return _text(start_response, "spun %d" % n)


def outbound_view(environ, start_response):
    r = requests.get(_query(environ)["url"], timeout=30)
    return _text(start_response, r.content)


def stream_view(environ, start_response):
    q = _query(environ)
    chunks, size = int(q.get("chunks", "64")), int(q.get("size", "65536"))
    STATE["produced"] = 0
    if q.get("write"):
        write = start_response("200 OK", [("Content-Type", "application/octet-stream")])
        for i in range(chunks):
            write(bytes([i % 256]) * size)
            STATE["produced"] += 1
        return []

    def body():
        for i in range(chunks):
            yield bytes([i % 256]) * size
            STATE["produced"] += 1
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return body()


def hints_view(environ, start_response):
    q = _query(environ)
    environ["wsgi.early_hints"]([("Link", "</%s.css>; rel=preload" % q["name"])])
    gevent.sleep(float(q.get("s", "0.2")))
    return _text(start_response, q["name"])


def facts_view(environ, start_response):
    return _text(start_response, json.dumps({
        "patched_at_import": PATCHED_AT_IMPORT,
        "multithread": environ["wsgi.multithread"],
        "multiprocess": environ["wsgi.multiprocess"],
        "pid": os.getpid(),
        # The main thread's id is the process id (Linux).
        "on_main_thread": threading.get_native_id() == os.getpid(),
        "greenlet": type(gevent.getcurrent()).__name__,
    }), headers=[("Content-Type", "application/json")])


def state_view(environ, start_response):
    return _text(start_response, json.dumps(STATE))


ROUTES = {
    "/sleep": sleeping_view,
    "/spin": spinning_view,
    "/outbound": outbound_view,
    "/stream": stream_view,
    "/hints": hints_view,
    "/facts": facts_view,
    "/state": state_view,
}


def app(environ, start_response):
    view = ROUTES.get(environ["PATH_INFO"])
    if view is None:
        return _text(start_response, "ok")
    return view(environ, start_response)
