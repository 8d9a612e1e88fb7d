"""The process-management tests' WSGI app.

Routes (by PATH_INFO):
  /pid             the worker's process id (the load generator counts them)
  /sleep?s=S       answers with the worker's pid after S seconds
  /stuck           sleeps far past any --timeout, inside stuck_in_the_handler()
                   (the timeout report must name that function)
  /stuck-in-c      blocks in a C call that holds the GIL and is not
                   interrupted by signals, inside blocked_holding_the_gil():
                   Python cannot run its SIGABRT handler
  /pid?grow_mb=N   also keeps N more MiB alive in the worker (--max-worker-rss)
anything else      404
"""
import os
import time
from urllib.parse import parse_qs


def _reply(start_response, body, status="200 OK"):
    body = body.encode("utf-8")
    start_response(status, [("Content-Type", "text/plain"),
                            ("Content-Length", str(len(body)))])
    return [body]


def stuck_in_the_handler():
    # Bounded, so a server that never enforces its timeout still ends the test.
    time.sleep(60)
    return "woke up"


def blocked_holding_the_gil():
    import ctypes

    class Timespec(ctypes.Structure):
        _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]

    # PyDLL keeps the GIL across the call. A relock of a default mutex
    # waits in the kernel and is restarted after any signal handler; the
    # timed lock keeps it bounded, so a server that never kills the worker
    # still ends the test.
    libc = ctypes.PyDLL(None)
    mutex = ctypes.create_string_buffer(64)
    libc.pthread_mutex_lock(mutex)
    deadline = Timespec(int(time.time()) + 60, 0)
    libc.pthread_mutex_timedlock(mutex, ctypes.byref(deadline))
    return "woke up"


# What /pid?grow_mb=N keeps, for the life of the worker.
_kept = []


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/pid" or path == "/__probe__":
        grow = parse_qs(environ.get("QUERY_STRING", "")).get("grow_mb")
        if grow:
            # Filled with ones, so every page is touched and counts as resident.
            _kept.append(b"\x01" * (int(grow[-1]) << 20))
        return _reply(start_response, str(os.getpid()))
    if path == "/sleep":
        q = parse_qs(environ.get("QUERY_STRING", ""))
        time.sleep(float(q.get("s", ["0.5"])[-1]))
        return _reply(start_response, str(os.getpid()))
    if path == "/stuck":
        return _reply(start_response, stuck_in_the_handler())
    if path == "/stuck-in-c":
        return _reply(start_response, blocked_holding_the_gil())
    return _reply(start_response, "not found: " + path, status="404 Not Found")


application = app
