"""`wsgi.early_hints(headers)` (gunicorn 25): a `103 Early Hints` before the
final response for HTTP/1.1 clients, nothing for HTTP/1.0, callable more
than once, refused with a clear error for bad headers; in the sync worker
(written straight to the socket) and with app threads (through the loop)."""
import pytest

from conftest import EXTRA_ARGS
from support import RawConn

APP = "basic:app"
MODES = {"sync": (), "threads": ("--threads", "4")}


@pytest.fixture(params=sorted(MODES))
def server(request, serve):
    if request.param == "threads" and EXTRA_ARGS:
        pytest.skip("the whole run has app threads already: %s" % " ".join(EXTRA_ARGS))
    return serve(APP, *MODES[request.param])


def exchange(server, target, version="HTTP/1.1"):
    with RawConn((server.host, server.port)) as c:
        c.send(b"GET %s %s\r\nHost: x\r\n\r\n" % (target.encode(), version.encode()))
        return c.read_final_response()


def test_early_hints_arrive_as_103_before_the_response(server):
    interim, final = exchange(server, "/hints?n=1")
    assert [r.status for r in interim] == [103]
    assert interim[0].reason == "Early Hints"
    assert interim[0].headers == [("Link", "</s0.css>; rel=preload; as=style")]
    assert final.status == 200 and final.body == b"hinted"


def test_each_call_of_early_hints_sends_one_103(server):
    interim, final = exchange(server, "/hints?n=3")
    assert [r.status for r in interim] == [103, 103, 103]
    assert [r.header("Link") for r in interim] == [
        "</s%d.css>; rel=preload; as=style" % i for i in range(3)]
    assert final.body == b"hinted"


def test_early_hints_keep_the_connection_usable(server):
    with RawConn((server.host, server.port)) as c:
        for _ in range(2):
            c.send(b"GET /hints?n=1 HTTP/1.1\r\nHost: x\r\n\r\n")
            interim, final = c.read_final_response()
            assert [r.status for r in interim] == [103]
            assert final.status == 200 and final.body == b"hinted"


def test_early_hints_do_nothing_for_http_1_0(server):
    with RawConn((server.host, server.port)) as c:
        c.send(b"GET /hints?n=2 HTTP/1.0\r\n\r\n")
        data = c.read_until_closed()
    assert data.split(b"\r\n", 1)[0].split(b" ")[1] == b"200", data
    assert b" 103 " not in data
    assert data.endswith(b"hinted")


def test_early_hints_after_the_head_went_out_are_ignored(server):
    interim, final = exchange(server, "/hints-after-write")
    assert interim == []
    assert final.status == 200 and final.body == b"written;returned"


# The messages are ferrocorn's (the same as start_response's for bad headers).
@pytest.mark.ferrocorn_only
@pytest.mark.parametrize("kind,error", [
    ("name", "ValueError: Invalid response header name 'Bad Name'"),
    ("value", "ValueError: Invalid response header value for 'Link'"),
    ("pair", "TypeError: early hint ('Link',) is not a (name, value) tuple"),
    ("str", "TypeError: wsgi.early_hints() takes a list of (name, value) tuples"),
])
def test_bad_early_hints_raise_a_clear_error_and_send_nothing(server, kind, error):
    interim, final = exchange(server, "/hints-bad?kind=" + kind)
    assert interim == []
    assert final.status == 200
    assert final.body.decode() == error
