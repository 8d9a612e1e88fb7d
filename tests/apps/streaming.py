"""App for the streaming, backpressure and --threads tests.

Routes (by PATH_INFO):
  /say/<word>        <word> as the body
  /big?mb=N          N MiB from a generator in 64 KiB chunks, no Content-Length
  /endless?tag=T     a generator of up to 4 GiB whose close() appends T to
                     $TEST_CLOSE_LOG (for clients that leave mid-stream)
  /sleep?s=S         answers "slept" after S seconds
  /thread?s=S        the name of the thread that runs the app, after S seconds
  /multithread       wsgi.multithread as "True"/"False"
  /write-then-sleep  write() "first;", sleeps 1 s, then returns "second"
  /write-len         Content-Length 11, write() "hello ", returns ["world"]
  /write-raise       write() "partial", then raises
"""
import os
import threading
import time
from urllib.parse import parse_qs

CHUNK = b"x" * 65536


def _query(environ):
    return {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}


def _reply(start_response, body):
    body = body.encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]


class Endless:
    def __init__(self, tag, chunks):
        self.tag, self.chunks = tag, chunks

    def __iter__(self):
        for _ in range(self.chunks):
            yield CHUNK

    def close(self):
        path = os.environ.get("TEST_CLOSE_LOG")
        if path:
            with open(path, "a") as f:
                f.write(self.tag + "\n")


def app(environ, start_response):
    path = environ["PATH_INFO"]
    q = _query(environ)
    if path.startswith("/say/"):
        return _reply(start_response, path[len("/say/"):])
    if path == "/big":
        chunks = int(q.get("mb", "1")) * 16
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return (CHUNK for _ in range(chunks))
    if path == "/endless":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return Endless(q.get("tag", "endless"), 4 * 16 * 1024)
    if path == "/sleep":
        time.sleep(float(q.get("s", "0.5")))
        return _reply(start_response, "slept")
    if path == "/thread":
        time.sleep(float(q.get("s", "0")))
        return _reply(start_response, threading.current_thread().name)
    if path == "/multithread":
        return _reply(start_response, str(environ["wsgi.multithread"]))
    if path == "/write-then-sleep":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"first;")
        time.sleep(1.0)
        return [b"second"]
    if path == "/write-len":
        write = start_response("200 OK", [("Content-Length", "11")])
        write(b"hello ")
        return [b"world"]
    if path == "/write-raise":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"partial")
        raise RuntimeError("after write")
    return _reply(start_response, "not found: " + path)
