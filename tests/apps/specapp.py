"""App spec forms: `specapp` (finds `application`) and `specapp:named`."""


def _make(text):
    body = text.encode()

    def wsgi(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    return wsgi


application = _make("specapp.application")
named = _make("specapp.named")
not_callable = "I am a string"
