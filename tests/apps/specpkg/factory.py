"""App spec form `specpkg.factory:create_app()` and with literal arguments."""


def create_app(greeting="factory", excited=False, times=1):
    text = ("%s%s" % (greeting, "!" if excited else "")) * times
    body = text.encode()

    def wsgi(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain"),
                                  ("Content-Length", str(len(body)))])
        return [body]
    return wsgi
