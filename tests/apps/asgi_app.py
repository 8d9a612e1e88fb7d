"""A plain ASGI app (no framework) for tests/test_asgi.py.

  /wait-disconnect   reads the body, then waits for http.disconnect and
                     appends "disconnect <path>" to $ASGI_EVENT_LOG
  /echo              answers the request body, read in as many events as it takes
  /produce?n=N       streams N pieces of 64 KiB, writing "produced <i>" to
                     $ASGI_EVENT_LOG after each, and "stopped <exception>"
                     when a send fails
  /raise             raises before responding
  anything else      a short text/plain answer naming the path
"""
import os


def _note(text):
    path = os.environ.get("ASGI_EVENT_LOG")
    if path:
        with open(path, "a") as f:
            f.write(text + "\n")


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    assert scope["type"] == "http"
    body = b""
    events = 0
    while True:
        message = await receive()
        events += 1
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    path = scope["path"]
    if path == "/wait-disconnect":
        _note("waiting " + path)
        message = await receive()
        _note("%s %s" % (message["type"].split(".")[-1], path))
        return
    if path == "/produce":
        n = int(scope["query_string"].decode().partition("=")[2] or "1")
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream")]})
        piece = b"z" * 65536
        try:
            for i in range(n):
                await send({"type": "http.response.body", "body": piece, "more_body": True})
                _note("produced %d" % (i + 1))
        except OSError as e:
            _note("stopped %s" % type(e).__name__)
            raise
        await send({"type": "http.response.body", "body": b""})
        return
    if path == "/raise":
        raise RuntimeError("the app broke")
    if path == "/echo":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream"),
                                (b"x-events", str(events).encode())]})
        await send({"type": "http.response.body", "body": body})
        return
    out = ("%s %s" % (scope["method"], path)).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": out})
