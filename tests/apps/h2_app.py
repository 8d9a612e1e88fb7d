"""Apps for tests/test_http2.py, WSGI (`app`) and ASGI (`asgi`).

  /version         the protocol the server reported (SERVER_PROTOCOL, http_version)
  /scheme          wsgi.url_scheme / the scope's scheme
  /user            the X_USER header ("-" when absent)
  /echo            the request body
  /big?n=N         N bytes
  /meet?n=N        waits (at most 5 s) until N requests are inside at once:
                   200 "met" when they were, 504 when not
  /sleep?s=S       answers after S seconds
  /hints           (WSGI) sends a 103 through wsgi.early_hints, then answers
  /trailers        (ASGI) a body, then trailers grpc-status and x-checksum when
                   the server offers the trailers extension ("no-ext" if not)
  /bad-trailers    (ASGI) announces trailers, then sends a Content-Length one
"""
import asyncio
import threading
import time
from urllib.parse import parse_qs

_lock = threading.Lock()
_cond = threading.Condition(_lock)
_inside = [0]


def _q(query):
    return {k: v[-1] for k, v in parse_qs(query).items()}


def app(environ, start_response):
    path = environ["PATH_INFO"]
    q = _q(environ.get("QUERY_STRING", ""))
    status, body = "200 OK", b""
    if path == "/version":
        body = environ["SERVER_PROTOCOL"].encode()
    elif path == "/scheme":
        body = environ["wsgi.url_scheme"].encode()
    elif path == "/user":
        body = environ.get("HTTP_X_USER", "-").encode()
    elif path == "/echo":
        body = environ["wsgi.input"].read()
    elif path == "/big":
        body = b"b" * int(q.get("n", "100000"))
    elif path == "/meet":
        n = int(q.get("n", "2"))
        with _cond:
            _inside[0] += 1
            _cond.notify_all()
            met = _cond.wait_for(lambda: _inside[0] >= n, timeout=5)
        body = b"met" if met else b"alone"
        status = "200 OK" if met else "504 Gateway Timeout"
    elif path == "/sleep":
        time.sleep(float(q.get("s", "0.5")))
        body = b"slept"
    elif path == "/hints":
        environ["wsgi.early_hints"]([("Link", "</style.css>; rel=preload; as=style")])
        body = b"hinted"
    else:
        body = path.encode()
    start_response(status, [("Content-Type", "text/plain"),
                            ("Content-Length", str(len(body)))])
    return [body]


_ameet = {"inside": 0, "event": None}


async def asgi(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    path = scope["path"]
    q = _q(scope["query_string"].decode())
    if path in ("/trailers", "/bad-trailers"):
        if "http.response.trailers" not in scope.get("extensions", {}):
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"no-ext"})
            return
        await send({"type": "http.response.start", "status": 200, "trailers": True,
                    "headers": [(b"content-type", b"text/plain"), (b"trailer", b"grpc-status")]})
        await send({"type": "http.response.body", "body": b"da", "more_body": True})
        await send({"type": "http.response.body", "body": b"ta"})
        if path == "/bad-trailers":
            await send({"type": "http.response.trailers", "headers": [(b"content-length", b"4")]})
            return
        await send({"type": "http.response.trailers", "headers": [(b"grpc-status", b"0")],
                    "more_trailers": True})
        await send({"type": "http.response.trailers", "headers": [(b"x-checksum", b"abc")]})
        return
    status, out = 200, path.encode()
    if path == "/version":
        out = scope["http_version"].encode()
    elif path == "/scheme":
        out = scope["scheme"].encode()
    elif path == "/user":
        out = dict(scope["headers"]).get(b"x_user", b"-")
    elif path == "/echo":
        out = body
    elif path == "/big":
        out = b"b" * int(q.get("n", "100000"))
    elif path == "/meet":
        n = int(q.get("n", "2"))
        if _ameet["event"] is None:
            _ameet["event"] = asyncio.Event()
        _ameet["inside"] += 1
        if _ameet["inside"] >= n:
            _ameet["event"].set()
        try:
            await asyncio.wait_for(_ameet["event"].wait(), 5)
            out = b"met"
        except asyncio.TimeoutError:
            status, out = 504, b"alone"
    elif path == "/sleep":
        await asyncio.sleep(float(q.get("s", "0.5")))
        out = b"slept"
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain"),
                            (b"content-length", str(len(out)).encode())]})
    await send({"type": "http.response.body", "body": out})
