"""A WSGI app for the upload tests: it consumes wsgi.input in the way each
route names and reports what it saw, with the worker's memory and files.

Routes (by PATH_INFO):
  /hash?piece=N         sha256 and length of the body, read with read(N)
                        (default 1 MiB); the worker's memory and body files
  /lines?mode=M         sha256 and line count of the body read by lines:
                        iter, readline, readline7 (readline(7) steps),
                        readlines, readlines-hint (readlines(4096) steps)
  /mem                  the worker's memory (kB): VmRSS and VmHWM
  /fds                  the worker's open file descriptors
The body-file count is the number of open descriptors on deleted files in
$TEST_BODY_DIR (anonymous temporary files show as such).
"""
import hashlib
import json
import os
from urllib.parse import parse_qs


def _query(environ):
    return {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}


def _memory():
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    return out


def _fds():
    return sorted(os.listdir("/proc/self/fd"), key=int)


def _body_files():
    where = os.environ.get("TEST_BODY_DIR", "")
    count = 0
    for fd in _fds():
        try:
            target = os.readlink("/proc/self/fd/" + fd)
        except OSError:
            continue
        if where and target.startswith(where) and target.endswith("(deleted)"):
            count += 1
    return count


def _read_lines(inp, mode):
    if mode == "iter":
        return list(inp)
    if mode == "readlines":
        return inp.readlines()
    lines = []
    while True:
        if mode == "readline":
            piece = [inp.readline()]
        elif mode == "readline7":
            piece = [inp.readline(7)]
        elif mode == "readlines-hint":
            piece = inp.readlines(4096)
        else:
            raise ValueError("unknown mode %r" % mode)
        if not piece or piece == [b""]:
            return lines
        lines.extend(piece)


def app(environ, start_response):
    path = environ["PATH_INFO"]
    q = _query(environ)
    inp = environ["wsgi.input"]
    if path == "/hash":
        piece = int(q.get("piece", 1 << 20))
        h = hashlib.sha256()
        n = 0
        while True:
            data = inp.read(piece)
            if not data:
                break
            n += len(data)
            h.update(data)
        out = {"sha256": h.hexdigest(), "length": n, "after_end": inp.read(),
               "body_files": _body_files(), "terminated": environ["wsgi.input_terminated"]}
        out["after_end"] = out["after_end"].decode()
        out.update(_memory())
    elif path == "/lines":
        lines = _read_lines(inp, q.get("mode", "iter"))
        out = {"sha256": hashlib.sha256(b"".join(lines)).hexdigest(), "count": len(lines),
               "longest": max((len(line) for line in lines), default=0),
               "unterminated": sum(1 for line in lines[:-1] if not line.endswith(b"\n")),
               "body_files": _body_files()}
    elif path == "/mem":
        out = _memory()
    elif path == "/fds":
        out = {"fds": len(_fds()), "body_files": _body_files()}
    else:
        start_response("404 Not Found", [("Content-Length", "0")])
        return [b""]
    body = json.dumps(out).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
