"""A small FastAPI app served by ferrocorn as ASGI (detected automatically):

    ferrocorn --chdir examples/fastapi app:app

JSON endpoints with path and query parameters, a JSON body, a streaming
response, an endpoint that awaits, a WebSocket echo (/ws/echo), and lifespan
startup/shutdown. The items
live in memory, per worker process.

Environment (used by the tests):
  LIFESPAN_LOG   a file that gets a "startup <pid>" and "shutdown <pid>" line
  FAIL_STARTUP   when set, startup raises (the server stops with the message)
"""
import asyncio
import os
from contextlib import asynccontextmanager
from typing import Optional

from fastapi import FastAPI, HTTPException, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse
from pydantic import BaseModel


def _note(event):
    path = os.environ.get("LIFESPAN_LOG")
    if path:
        with open(path, "a") as f:
            f.write("%s %d\n" % (event, os.getpid()))


@asynccontextmanager
async def lifespan(app):
    if os.environ.get("FAIL_STARTUP"):
        raise RuntimeError("cannot reach the item database")
    app.state.items = {
        1: {"id": 1, "name": "kettle", "price": 24.5},
        2: {"id": 2, "name": "teapot", "price": 18.0},
    }
    _note("startup")
    yield {"started_by": "lifespan"}
    _note("shutdown")


app = FastAPI(title="ferrocorn FastAPI example", lifespan=lifespan)


class NewItem(BaseModel):
    name: str
    price: float


@app.get("/")
async def index():
    return {"hello": "world", "pid": os.getpid()}


@app.get("/items")
async def list_items(request: Request, limit: int = 10, q: Optional[str] = None):
    items = list(request.app.state.items.values())
    if q:
        items = [i for i in items if q.lower() in i["name"]]
    return {"items": items[:limit]}


@app.get("/items/{item_id}")
async def get_item(request: Request, item_id: int):
    item = request.app.state.items.get(item_id)
    if item is None:
        raise HTTPException(status_code=404, detail="no such item")
    return item


@app.post("/items", status_code=201)
async def add_item(request: Request, new: NewItem):
    items = request.app.state.items
    item = {"id": max(items, default=0) + 1, **new.model_dump()}
    items[item["id"]] = item
    return item


@app.get("/stream")
async def stream(n: int = 5, delay: float = 0.0):
    async def lines():
        for i in range(n):
            if delay:
                await asyncio.sleep(delay)
            yield b"line %d\n" % i

    return StreamingResponse(lines(), media_type="text/plain")


@app.get("/sleep")
async def sleep(seconds: float = 0.2):
    await asyncio.sleep(seconds)
    return {"slept": seconds}


@app.get("/state")
async def state(request: Request):
    # Lifespan state reaches every request's scope.
    return {"started_by": request.state.started_by}


@app.websocket("/ws/echo")
async def ws_echo(websocket: WebSocket):
    # Text comes back upper-cased, bytes as they are; lifespan state is here too.
    await websocket.accept()
    await websocket.send_json({"started_by": websocket.state.started_by})
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                await websocket.send_text(message["text"].upper())
            else:
                await websocket.send_bytes(message["bytes"])
    except WebSocketDisconnect:
        pass
