"""Importable only through --pythonpath (its directory is not the cwd)."""


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "7")])
    return [b"pathapp"]
