"""The WSGI environ (PEP 3333, with gunicorn's rules for the details)."""
import json

import pytest

from conftest import SERVER_NAME
from support import request_bytes


@pytest.fixture
def server(serve):
    return serve("basic:app")


def environ_of(server, conn=None, **kwargs):
    kwargs.setdefault("target", "/environ")
    if conn is None:
        resp = server.request(**kwargs)
    else:
        conn.send(request_bytes(**kwargs))
        resp = conn.read_response()
    assert resp.status == 200, resp
    return json.loads(resp.body)


def test_environ_has_the_pep3333_keys(server):
    env = environ_of(server)
    assert env["REQUEST_METHOD"] == "GET"
    assert env["SCRIPT_NAME"] == ""
    assert env["PATH_INFO"] == "/environ"
    assert env["QUERY_STRING"] == ""
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["wsgi.version"] == [1, 0]
    assert env["wsgi.url_scheme"] == "http"
    assert env["wsgi.multiprocess"] is False
    assert env["wsgi.run_once"] is False
    assert isinstance(env["wsgi.multithread"], bool)
    assert env["_errors_has_write"] is True
    assert env["_has_file_wrapper"] is True
    assert env["SERVER_SOFTWARE"].startswith(SERVER_NAME)


def test_multiprocess_is_true_with_several_workers(serve):
    server = serve("basic:app", workers=2)
    assert environ_of(server)["wsgi.multiprocess"] is True


def test_path_info_is_percent_decoded_as_latin1_and_query_left_raw(server):
    env = environ_of(server, target="/environ/caf%C3%A9/a%20b?x=1%202&y=%C3%A9")
    assert env["PATH_INFO"] == "/environ/caf\u00c3\u00a9/a b"
    assert env["QUERY_STRING"] == "x=1%202&y=%C3%A9"
    assert env["RAW_URI"] == "/environ/caf%C3%A9/a%20b?x=1%202&y=%C3%A9"


def test_fragment_is_not_part_of_path_or_query(server):
    env = environ_of(server, target="/environ?q=1#frag")
    assert env["PATH_INFO"] == "/environ"
    assert env["QUERY_STRING"] == "q=1"


def test_remote_addr_and_port_are_the_client_socket(server):
    with server.connect() as conn:
        env = environ_of(server, conn)
        assert env["REMOTE_ADDR"] == "127.0.0.1"
        assert env["REMOTE_PORT"] == str(conn.local_port)


def test_server_name_and_port_are_the_listener_address_not_host(server):
    env = environ_of(server, headers=[("Host", "example.com:1234")])
    assert env["SERVER_NAME"] == "127.0.0.1"
    assert env["SERVER_PORT"] == str(server.port)
    assert env["HTTP_HOST"] == "example.com:1234"


def test_headers_become_http_keys_and_repeats_are_joined_with_commas(server):
    env = environ_of(server, headers=[("Cookie", "a=1"), ("X-Custom-Thing", "v1"),
                                      ("Cookie", "b=2"), ("Accept", "text/html")])
    assert env["HTTP_COOKIE"] == "a=1,b=2"
    assert env["HTTP_X_CUSTOM_THING"] == "v1"
    assert env["HTTP_ACCEPT"] == "text/html"


def test_header_names_with_underscores_are_dropped(server):
    env = environ_of(server, headers=[("X_Sneaky", "1"), ("X-Fine", "2")])
    assert "HTTP_X_SNEAKY" not in env
    assert env["HTTP_X_FINE"] == "2"


def test_content_type_and_length_have_no_http_prefix(server):
    env = environ_of(server, method="POST", body=b"abc",
                     headers=[("Content-Type", "text/plain"), ("Content-Length", "3")])
    assert env["CONTENT_TYPE"] == "text/plain"
    assert env["CONTENT_LENGTH"] == "3"
    assert "HTTP_CONTENT_TYPE" not in env
    assert "HTTP_CONTENT_LENGTH" not in env
    assert env["_input_read"] == "abc"


def test_chunked_request_has_no_content_length(server):
    env = environ_of(server, method="POST", headers=[("Transfer-Encoding", "chunked")],
                     body=b"3\r\nabc\r\n0\r\n\r\n")
    assert env.get("CONTENT_LENGTH", "") == ""
    assert env["_input_read"] == "abc"


def test_header_values_keep_latin1_bytes(server):
    raw = b"GET /environ HTTP/1.1\r\nHost: x\r\nX-Name: caf\xc3\xa9\r\n\r\n"
    with server.connect() as conn:
        conn.send(raw)
        env = json.loads(conn.read_response().body)
    assert env["HTTP_X_NAME"] == "caf\u00c3\u00a9"


def test_http10_request_reports_http10(server):
    env = environ_of(server, version="HTTP/1.0")
    assert env["SERVER_PROTOCOL"] == "HTTP/1.0"
