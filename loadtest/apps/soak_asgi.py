"""The soak test's ASGI app (loadtest/soak.py).

  GET /pid          the worker's pid
  POST /upload      reads the whole body; answers "<length> <sha256>"
  GET /stream?n=N   N pieces of 16 KiB, streamed (no Content-Length)
  WebSocket /echo   every message sent back as it came (text or bytes)
"""
import hashlib
import os
from urllib.parse import parse_qs

PIECE = b"s" * 16384


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "websocket":
        await echo(receive, send)
        return
    path = scope["path"]
    if path == "/upload":
        digest = hashlib.sha256()
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            block = message.get("body", b"")
            size += len(block)
            digest.update(block)
            more = message.get("more_body", False)
        await answer(send, ("%d %s" % (size, digest.hexdigest())).encode())
        return
    if path == "/stream":
        n = int(parse_qs(scope["query_string"].decode()).get("n", ["8"])[0])
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream")]})
        for _ in range(n):
            await send({"type": "http.response.body", "body": PIECE, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    await answer(send, str(os.getpid()).encode())


async def answer(send, body):
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def echo(receive, send):
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message["bytes"]})
