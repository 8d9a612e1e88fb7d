"""The process-management tests' WSGI app.

Routes (by PATH_INFO):
  /pid             the worker's process id (the load generator counts them)
  /sleep?s=S       answers with the worker's pid after S seconds
  /stuck           sleeps far past any --timeout, inside stuck_in_the_handler()
                   (the timeout report must name that function)
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


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/pid" or path == "/__probe__":
        return _reply(start_response, str(os.getpid()))
    if path == "/sleep":
        q = parse_qs(environ.get("QUERY_STRING", ""))
        time.sleep(float(q.get("s", ["0.5"])[-1]))
        return _reply(start_response, str(os.getpid()))
    if path == "/stuck":
        return _reply(start_response, stuck_in_the_handler())
    return _reply(start_response, "not found: " + path, status="404 Not Found")


application = app
