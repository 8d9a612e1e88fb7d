"""A FastAPI app with WebSocket endpoints, for tests/test_websocket.py.

  /echo            echoes text as text and bytes as bytes; the text
                   "close-me" makes the app close with 4001 "bye"
  /chat            a JSON chat room: every message is broadcast to everyone
                   in the room, with the sender's name
  /proto           accepts with the first offered subprotocol it knows
                   ("chat.v2", then "chat.v1"), and sends the scope's
                   subprotocols and the chosen one as JSON
  /scope           sends back parts of the scope as JSON
  /deny            refuses with a 401 text response (websocket.http.response)
  /refuse          closes before accepting (a 403)
  /recorder        waits for the disconnect and records its code; GET
                   /codes answers the recorded codes
  /journal         echoes like /echo and records every event it receives;
                   GET /journal answers them, in order
  /idle            accepts and waits for the disconnect (no echo)
  /sleeper         accepts and never receives
  /flood?n=N       sends N binary messages of 64 KiB, counting them; GET
                   /progress answers the count
  /hello           a plain HTTP endpoint
"""
import asyncio

from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from fastapi.responses import PlainTextResponse

app = FastAPI()
room = {}
codes = []
journal = []
sent = {"n": 0}


@app.get("/hello")
def hello():
    return {"hello": "world"}


@app.get("/codes")
def get_codes():
    return codes


@app.websocket("/echo")
async def echo(ws: WebSocket):
    await ws.accept()
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            codes.append(message["code"])
            return
        if message.get("text") is not None:
            if message["text"] == "close-me":
                await ws.close(code=4001, reason="bye")
                return
            await ws.send_text(message["text"])
        else:
            await ws.send_bytes(message["bytes"])


@app.websocket("/chat")
async def chat(ws: WebSocket, name: str):
    await ws.accept()
    room[name] = ws
    try:
        while True:
            data = await ws.receive_json()
            for other in list(room.values()):
                await other.send_json({"from": name, "text": data["text"]})
    except WebSocketDisconnect:
        pass
    finally:
        room.pop(name, None)


@app.websocket("/proto")
async def proto(ws: WebSocket):
    offered = ws.scope["subprotocols"]
    chosen = next((p for p in ("chat.v2", "chat.v1") if p in offered), None)
    await ws.accept(subprotocol=chosen)
    await ws.send_json({"offered": offered, "chosen": chosen})
    await ws.close()


@app.websocket("/scope")
async def scope(ws: WebSocket):
    await ws.accept()
    s = ws.scope
    await ws.send_json({
        "type": s["type"],
        "asgi": s["asgi"],
        "http_version": s["http_version"],
        "scheme": s["scheme"],
        "path": s["path"],
        "raw_path": s["raw_path"].decode(),
        "query_string": s["query_string"].decode(),
        "root_path": s["root_path"],
        "headers": [[n.decode(), v.decode()] for n, v in s["headers"]],
        "client": list(s["client"]),
        "server": list(s["server"]),
        "subprotocols": s["subprotocols"],
        "extensions": s["extensions"],
        "has_method": "method" in s,
    })
    await ws.close()


@app.websocket("/deny")
async def deny(ws: WebSocket):
    await ws.send_denial_response(PlainTextResponse("not you", status_code=401))


@app.websocket("/refuse")
async def refuse(ws: WebSocket):
    await ws.close(code=1008)


@app.get("/journal")
def get_journal():
    return journal


@app.websocket("/journal")
async def echo_journal(ws: WebSocket):
    await ws.accept()
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            journal.append(["disconnect", message["code"]])
            return
        data = message.get("text")
        if data is None:
            data = message["bytes"].decode("latin-1")
        journal.append(["receive", data])
        await ws.send_text(data)


@app.websocket("/recorder")
async def recorder(ws: WebSocket):
    await ws.accept()
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            codes.append(message["code"])
            return


@app.websocket("/idle")
async def idle(ws: WebSocket):
    await ws.accept()
    while (await ws.receive())["type"] != "websocket.disconnect":
        pass


@app.get("/progress")
def progress():
    return sent["n"]


@app.websocket("/flood")
async def flood(ws: WebSocket, n: int):
    await ws.accept()
    piece = b"x" * 65536
    for _ in range(n):
        await ws.send_bytes(piece)
        sent["n"] += 1
    await ws.close()


@app.websocket("/sleeper")
async def sleeper(ws: WebSocket):
    await ws.accept()
    await asyncio.sleep(3600)
