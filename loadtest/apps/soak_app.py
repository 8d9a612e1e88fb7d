"""The soak test's WSGI app (loadtest/soak.py).

  /pid              the worker's pid
  /upload           reads the whole body; answers "<length> <sha256>"
  /stream?n=N       N pieces of 16 KiB, streamed (no Content-Length)
"""
import hashlib
import os
from urllib.parse import parse_qs

PIECE = b"s" * 16384


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/upload":
        digest = hashlib.sha256()
        size = 0
        stream = environ["wsgi.input"]
        while True:
            block = stream.read(65536)
            if not block:
                break
            size += len(block)
            digest.update(block)
        body = ("%d %s" % (size, digest.hexdigest())).encode()
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    if path == "/stream":
        n = int(parse_qs(environ.get("QUERY_STRING", "")).get("n", ["8"])[0])
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return (PIECE for _ in range(n))
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
