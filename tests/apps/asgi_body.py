"""ASGI apps that read request bodies as they arrive, for tests/test_asgi_body.py.

A plain ASGI app; every request names itself with `?id=NAME`, and what it
saw is kept in `SEEN[NAME]` for `/seen?id=NAME` to answer (one worker, one
event loop: the answer is live while the request is still running).

  /read?id=       reads the body, noting each piece's size; answers
                  {"pieces": [...], "total": N, "sha256": hex} (after
                  `delay` seconds when given)
  /hold?id=       waits until /release?id= before its first receive(), then
                  reads like /read
  /release?id=    lets /hold?id= go on
  /noread         answers at once without calling receive()
  /until-disconnect?id=  reads pieces until http.disconnect, then stops
  /seen?id=       what request NAME saw so far (pieces, events, done)
  /block?s=&mark= creates the file MARK, then blocks the event loop for S seconds
  /starlette/...  the Starlette app below
"""
import asyncio
import hashlib
import json
import time
from urllib.parse import unquote

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.routing import Route

SEEN = {}
RELEASE = {}


def _query(scope):
    out = {}
    for part in scope["query_string"].decode().split("&"):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k] = v
    return out


def _record(name):
    return SEEN.setdefault(name, {"pieces": [], "events": [], "done": False})


async def _answer(send, status, obj):
    body = json.dumps(obj).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _read(receive, rec):
    digest = hashlib.sha256()
    total = 0
    while True:
        message = await receive()
        rec["events"].append(message["type"])
        if message["type"] == "http.disconnect":
            return None
        body = message.get("body", b"")
        rec["pieces"].append(len(body))
        digest.update(body)
        total += len(body)
        if not message.get("more_body", False):
            return {"pieces": rec["pieces"], "total": total, "sha256": digest.hexdigest()}


async def raw(scope, receive, send):
    path = scope["path"]
    q = _query(scope)
    name = q.get("id", "")
    if path == "/seen":
        return await _answer(send, 200, SEEN.get(name))
    if path == "/release":
        RELEASE.setdefault(name, asyncio.Event()).set()
        return await _answer(send, 200, "released")
    if path == "/noread":
        return await _answer(send, 200, "not read")
    if path == "/block":
        open(unquote(q["mark"]), "w").close()
        time.sleep(float(q["s"]))
        return await _answer(send, 200, "blocked")
    rec = _record(name)
    rec["events"].append("started")
    try:
        if path == "/hold":
            await RELEASE.setdefault(name, asyncio.Event()).wait()
        if path in ("/read", "/hold"):
            result = await _read(receive, rec)
            if result is None:
                return
            await asyncio.sleep(float(q.get("delay", 0)))
            return await _answer(send, 200, result)
        if path == "/until-disconnect":
            while (await receive())["type"] != "http.disconnect":
                rec["pieces"].append(1)
            rec["events"].append("http.disconnect")
            return
        await _answer(send, 404, "no such path")
    finally:
        rec["done"] = True


async def hash_stream(request: Request):
    digest = hashlib.sha256()
    total = 0
    try:
        async for chunk in request.stream():
            digest.update(chunk)
            total += len(chunk)
    except ClientDisconnect:
        _record(request.query_params.get("id", ""))["events"].append("ClientDisconnect")
        raise
    return JSONResponse({"total": total, "sha256": digest.hexdigest()})


starlette_app = Starlette(routes=[Route("/starlette/hash", hash_stream, methods=["POST"])])


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["path"].startswith("/starlette/"):
        return await starlette_app(scope, receive, send)
    return await raw(scope, receive, send)
