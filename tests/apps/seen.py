"""A WSGI app that records every request it is called for: one line
"METHOD RAW_URI" appended to $TEST_SEEN_LOG, then a 200 whose body is that
line. The proxy desync tests compare these lines with what the proxy in
front says it forwarded."""
import os


def app(environ, start_response):
    line = "%s %s" % (environ["REQUEST_METHOD"], environ.get("RAW_URI", environ["PATH_INFO"]))
    body = environ["wsgi.input"].read()
    with open(os.environ["TEST_SEEN_LOG"], "a") as f:
        f.write(line + "\n")
    out = ("%s\n%d body bytes\n" % (line, len(body))).encode("utf-8", "replace")
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(out)))])
    return [out]
