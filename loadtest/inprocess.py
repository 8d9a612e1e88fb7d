"""The in-process ceiling: call a WSGI app in a loop, no server, no socket.

    python inprocess.py MODULE:NAME [--seconds S] [--repeat N] [--path /] [--environ FILE]

Builds a PEP 3333 environ (a fresh dict per call, as a server does), calls
the app with a start_response that keeps the status and headers, pulls the
whole body and calls close() when the iterable has one. With --environ the
environ has exactly the keys and string values a server passed for the load
generator's request (the harness captures them from ferrocorn), so the app
sees the same shape it sees under load; without it, a minimal environ.

Prints one JSON line. calls_per_s and cpu_us_per_call are over the whole
run (all slices together: total calls / total wall time, process CPU time /
total calls), the same statistic as a server's req/s and CPU per request
over its measured run; the slices are there to show the spread. The harness
runs it pinned to the server's core.
"""

import argparse
import importlib
import io
import json
import os
import sys
import time


def load_environ(path, captured):
    """The environ a server passed, from the JSON the harness captured.

    Strings and booleans are kept as they were; objects become their
    in-process equivalents (a fresh wsgi.input per call is set in run()).
    """
    with open(captured) as f:
        keys = json.load(f)
    env = {}
    for k, v in keys.items():
        if isinstance(v, (str, bool, int)) and not (isinstance(v, str) and v.startswith("<object ")):
            env[k] = v
        elif k == "wsgi.version":
            env[k] = (1, 0)
        elif k == "wsgi.errors":
            env[k] = sys.stderr
        elif k == "wsgi.file_wrapper":
            env[k] = FileWrapper
        elif k == "wsgi.input":
            continue
        else:
            env[k] = object()
    env["PATH_INFO"] = path
    return env


class FileWrapper:
    """wsgi.file_wrapper as PEP 3333 describes it (the hello apps never use it)."""

    def __init__(self, filelike, blksize=8192):
        self.filelike, self.blksize = filelike, blksize

    def __iter__(self):
        return iter(lambda: self.filelike.read(self.blksize), b"")


def make_environ(path):
    return {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "40000",
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_USER_AGENT": "wrk",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }


def run(app, template, seconds, repeat):
    head = []

    def start_response(status, headers, exc_info=None):
        head[:] = [status, headers]
        return head.append

    def one():
        environ = dict(template)
        environ["wsgi.input"] = io.BytesIO(b"")
        result = app(environ, start_response)
        try:
            size = 0
            for chunk in result:
                size += len(chunk)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        return size

    # Check once, and warm up (imports, first-call caches).
    size = one()
    if not head or not head[0].startswith("200"):
        raise SystemExit(f"app answered {head[:1]!r}, expected 200")
    for _ in range(1000):
        one()

    # Several slices, back to back; the figures are over all of them.
    slices = []
    for _ in range(repeat):
        calls = 0
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        deadline = t0 + seconds / repeat
        while True:
            for _ in range(200):
                one()
            calls += 200
            now = time.perf_counter()
            if now >= deadline:
                break
        elapsed = now - t0
        # CLOCK_PROCESS_CPUTIME_ID: the scheduler's exact runtime, in ns.
        cpu = time.process_time() - cpu0
        slices.append({
            "calls": calls,
            "seconds": round(elapsed, 4),
            "cpu_seconds": round(cpu, 4),
            "calls_per_s": round(calls / elapsed, 1),
            "cpu_us_per_call": round(cpu / calls * 1e6, 3),
        })
    calls = sum(s["calls"] for s in slices)
    wall = sum(s["seconds"] for s in slices)
    cpu = sum(s["cpu_seconds"] for s in slices)
    return {
        "calls": calls,
        "seconds": round(wall, 3),
        "calls_per_s": round(calls / wall, 1),
        "us_per_call": round(wall / calls * 1e6, 3),
        "cpu_us_per_call": round(cpu / calls * 1e6, 3),
        "cpu_util": round(cpu / wall, 3),
        "body_bytes": size,
        "environ_keys": len(template),
        "slices": slices,
    }


def run_calls(app, template, calls):
    """One checked call, then exactly `calls` more: for counting instructions per call."""
    def start_response(status, headers, exc_info=None):
        if not status.startswith("200"):
            raise SystemExit(f"app answered {status!r}, expected 200")
        return lambda data: None

    for _ in range(calls + 1):
        environ = dict(template)
        environ["wsgi.input"] = io.BytesIO(b"")
        result = app(environ, start_response)
        try:
            for _chunk in result:
                pass
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("app", help="MODULE:NAME, imported from the current directory")
    parser.add_argument("--seconds", type=float, default=3.0, help="total time of all slices")
    parser.add_argument("--repeat", type=int, default=5, help="slices; the best one is reported")
    parser.add_argument("--path", default="/")
    parser.add_argument("--environ", help="JSON of the environ a server passed (from the harness)")
    parser.add_argument("--calls", type=int,
                        help="make exactly this many calls after one check call and print nothing "
                             "(for instruction counting under callgrind)")
    args = parser.parse_args()
    sys.path.insert(0, os.getcwd())
    module, _, name = args.app.partition(":")
    app = getattr(importlib.import_module(module), name or "application")
    template = load_environ(args.path, args.environ) if args.environ else make_environ(args.path)
    if args.calls is not None:
        run_calls(app, template, args.calls)
        return
    result = run(app, template, args.seconds, max(1, args.repeat))
    result["app"] = args.app
    print(json.dumps(result))


if __name__ == "__main__":
    main()
