"""The integration tests' WSGI app: one route per behaviour under test.

Routes (by PATH_INFO):
  /                      "hello" with a Content-Length
  /say/<word>            <word> as the body (pipelining checks the order)
  /pid                   the worker's process id
  /cwd                   the worker's working directory
  /echo                  the request body, read in full from wsgi.input
  /input?mode=...        JSON list of what wsgi.input returned for read(),
                         read(4) steps, readline(), readline(3), iteration,
                         readlines()
  /environ[/...]         JSON of the environ's str/bool/int/tuple entries
  /stream?n=N            a generator of N chunks, no Content-Length
  /write                 uses the write() callable, then returns a list
  /status/<code>         that status; ?body=1 also returns a body
  /hop                   hop-by-hop and server-owned headers the server must drop
  /error                 raises before start_response
  /error-after-body      raises from the iterable after the first chunk
  /bad-status            an invalid status line
  /bad-header-value      a header value with CR LF in it
  /bad-header-name       a header name with a space in it
  /file?size=N           wsgi.file_wrapper over a file of N bytes
  /close?tag=T           an iterable whose close() appends T to $TEST_CLOSE_LOG
  /slow-close?tag=T      like /close but a long, slow body (for disconnects)
  /sleep?s=S             answers after S seconds
  /hints?n=N             N calls of wsgi.early_hints (a Link each), then "hinted"
  /hints-bad?kind=K      wsgi.early_hints with a bad argument (name, value,
                         pair, str); the body is the exception it raised
  /hints-after-write     write(), then wsgi.early_hints (too late: ignored)
anything else            404 with the path as body
"""
import json
import os
import tempfile
import time
from urllib.parse import parse_qs


def _query(environ):
    return {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}


def _reply(start_response, body, status="200 OK", ctype="text/plain", extra=()):
    if isinstance(body, str):
        body = body.encode("utf-8")
    start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(body)))]
                   + list(extra))
    return [body]


def _json(start_response, obj):
    return _reply(start_response, json.dumps(obj, sort_keys=True), ctype="application/json")


def _record_close(tag):
    path = os.environ.get("TEST_CLOSE_LOG")
    if path:
        with open(path, "a") as f:
            f.write(tag + "\n")


class ClosingBody:
    """A response iterable that records its close()."""

    def __init__(self, tag, chunks, delay=0.0):
        self.tag, self.chunks, self.delay = tag, chunks, delay

    def __iter__(self):
        for chunk in self.chunks:
            if self.delay:
                time.sleep(self.delay)
            yield chunk

    def close(self):
        _record_close(self.tag)


def _input(environ, mode):
    inp = environ["wsgi.input"]
    if mode == "read":
        out = [inp.read()]
    elif mode == "read4":
        out = []
        while True:
            piece = inp.read(4)
            if not piece:
                break
            out.append(piece)
    elif mode == "readline":
        out = []
        while True:
            line = inp.readline()
            if not line:
                break
            out.append(line)
    elif mode == "readline3":
        out = []
        while True:
            line = inp.readline(3)
            if not line:
                break
            out.append(line)
    elif mode == "iter":
        out = list(inp)
    elif mode == "readlines":
        out = inp.readlines()
    else:
        raise ValueError("unknown mode %r" % mode)
    return [piece.decode("latin-1") for piece in out]


def _environ_dump(environ):
    out = {}
    for key, value in environ.items():
        if isinstance(value, (str, bool, int)):
            out[key] = value
        elif isinstance(value, tuple):
            out[key] = list(value)
    out["_input_read"] = environ["wsgi.input"].read().decode("latin-1")
    out["_has_file_wrapper"] = callable(environ.get("wsgi.file_wrapper"))
    out["_errors_has_write"] = callable(getattr(environ.get("wsgi.errors"), "write", None))
    return out


def app(environ, start_response):
    path = environ["PATH_INFO"]
    q = _query(environ)

    if path == "/":
        return _reply(start_response, "hello")
    if path.startswith("/say/"):
        return _reply(start_response, path[len("/say/"):])
    if path == "/pid":
        return _reply(start_response, str(os.getpid()))
    if path == "/cwd":
        return _reply(start_response, os.getcwd())
    if path == "/echo":
        return _reply(start_response, environ["wsgi.input"].read(),
                      ctype=environ.get("CONTENT_TYPE") or "application/octet-stream")
    if path == "/input":
        return _json(start_response, _input(environ, q.get("mode", "read")))
    if path == "/environ" or path.startswith("/environ/"):
        return _json(start_response, _environ_dump(environ))
    if path == "/stream":
        n = int(q.get("n", "3"))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return (("chunk-%d;" % i).encode() for i in range(n))
    if path == "/hints":
        for i in range(int(q.get("n", "1"))):
            link = "</s%d.css>; rel=preload; as=style" % i
            # str and bytes pairs are both accepted, as in gunicorn.
            environ["wsgi.early_hints"]([("Link", link) if i % 2 == 0
                                         else (b"Link", link.encode())])
        return _reply(start_response, "hinted")
    if path == "/hints-bad":
        bad = {"name": [("Bad Name", "x")], "value": [("Link", "a\r\nX-Injected: 1")],
               "pair": [("Link",)], "str": "Link: </a.css>"}[q["kind"]]
        try:
            environ["wsgi.early_hints"](bad)
        except Exception as e:
            return _reply(start_response, "%s: %s" % (type(e).__name__, e))
        return _reply(start_response, "no error")
    if path == "/hints-after-write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written;")
        environ["wsgi.early_hints"]([("Link", "</late.css>; rel=preload")])
        return [b"returned"]
    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written-")
        write(b"")
        write(b"by-write;")
        return [b"then-returned"]
    if path.startswith("/status/"):
        code = int(path[len("/status/"):])
        reasons = {204: "No Content", 304: "Not Modified", 200: "OK"}
        start_response("%d %s" % (code, reasons.get(code, "Other")),
                       [("Content-Type", "text/plain"), ("ETag", '"v1"')])
        return [b"must-not-be-sent"] if q.get("body") else []
    if path == "/hop":
        return _reply(start_response, "hop", extra=[
            ("Keep-Alive", "timeout=99"),
            ("Proxy-Authenticate", "Basic"),
            ("TE", "trailers"),
            ("Trailers", "X-Nothing"),
            ("Upgrade", "h2c"),
            ("Server", "app-server"),
            ("Date", "not-a-date"),
            ("X-Kept", "yes"),
        ])
    if path == "/error":
        raise RuntimeError("deliberate failure in the app")
    if path == "/error-after-body":
        start_response("200 OK", [("Content-Type", "text/plain")])

        def body():
            yield b"first;"
            raise RuntimeError("deliberate failure while streaming")
        return body()
    if path == "/bad-status":
        start_response("20 OK", [("Content-Type", "text/plain")])
        return [b"bad status"]
    if path == "/bad-header-value":
        start_response("200 OK", [("X-Injected", "a\r\nSet-Cookie: evil=1")])
        return [b"bad header"]
    if path == "/bad-header-name":
        start_response("200 OK", [("Bad Name", "x")])
        return [b"bad header"]
    if path == "/file":
        size = int(q.get("size", "100000"))
        f = tempfile.TemporaryFile()
        f.write(bytes(i % 251 for i in range(size)))
        f.seek(0)
        headers = [("Content-Type", "application/octet-stream")]
        if q.get("length"):
            headers.append(("Content-Length", str(size)))
        start_response("200 OK", headers)
        return environ["wsgi.file_wrapper"](f, 8192)
    if path == "/close":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return ClosingBody(q.get("tag", "close"), [b"closing-", b"body"])
    if path == "/slow-close":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        # At most ~10 s in all, so a server that never notices the client
        # left still ends the response.
        return ClosingBody(q.get("tag", "slow"), [b"x" * 65536] * 500, delay=0.02)
    if path == "/sleep":
        time.sleep(float(q.get("s", "0.5")))
        return _reply(start_response, "slept")
    return _reply(start_response, "not found: " + path, status="404 Not Found")


application = app
