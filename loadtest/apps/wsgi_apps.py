"""Plain WSGI apps for the load test: one callable per scenario.

Every server under test loads the same module, so the app's own cost is the
same for all of them and the differences are the servers'.
"""

HELLO = b"Hello, World!"
BIG = b"x" * 65536


def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "13")])
    return [HELLO]


def big(environ, start_response):
    """A 64 KiB response body in one chunk."""
    start_response("200 OK", [("Content-Type", "application/octet-stream"), ("Content-Length", "65536")])
    return [BIG]


def upload(environ, start_response):
    """Read the whole request body; answer with how many bytes arrived."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    data = environ["wsgi.input"].read(length) if length > 0 else b""
    body = str(len(data)).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


def environ_dump(environ, start_response):
    """The environ as JSON: strings and booleans as they are, other objects by type.

    The harness captures what a server passes for the load generator's
    request, so the in-process ceiling calls the app with the same shape.
    """
    import json

    shape = {k: v if isinstance(v, (str, bool)) else f"<object {type(v).__name__}>"
             for k, v in environ.items()}
    body = json.dumps(shape).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
