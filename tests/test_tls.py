"""HTTPS with --certfile/--keyfile: certificates made at test time (trustme),
Python's ssl module as the client, on both io engines."""
import json
import os
import signal
import socket
import ssl
import time

import pytest
import trustme

from conftest import run_cli


@pytest.fixture
def ca():
    return trustme.CA()


def write_pair(ca, tmp_path, name="server", hostname="localhost"):
    cert = ca.issue_cert(hostname, "127.0.0.1")
    certfile, keyfile = tmp_path / (name + "-cert.pem"), tmp_path / (name + "-key.pem")
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    for extra in cert.cert_chain_pems[1:]:
        with open(certfile, "ab") as f:
            f.write(extra.bytes())
    cert.private_key_pem.write_to_path(str(keyfile))
    return certfile, keyfile


def client_context(ca, client_cert=None):
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    if client_cert is not None:
        client_cert.configure_cert(ctx)
    return ctx


def tls_request(port, ctx, raw, timeout=5.0):
    """Send raw request bytes over TLS; return everything until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        with ctx.wrap_socket(sock, server_hostname="localhost") as tls:
            tls.sendall(raw)
            chunks = []
            while True:
                try:
                    data = tls.recv(65536)
                except (ssl.SSLEOFError, ConnectionResetError):
                    break
                if not data:
                    break
                chunks.append(data)
            return b"".join(chunks), tls.version()


def wait_tls(server, ctx, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert server.proc.poll() is None, server.log_tail()
        try:
            out, _ = tls_request(server.port, ctx, b"GET / HTTP/1.0\r\n\r\n", timeout=2)
            if out.startswith(b"HTTP/1.0 200"):
                return
        except (OSError, ssl.SSLError):
            pass
        time.sleep(0.1)
    pytest.fail("the TLS server did not answer\n" + server.log_tail())


def test_https_request_keep_alive_and_url_scheme(serve, ca, tmp_path):
    certfile, keyfile = write_pair(ca, tmp_path)
    server = serve("basic:app", "--certfile", str(certfile), "--keyfile", str(keyfile), wait=False)
    ctx = client_context(ca)
    wait_tls(server, ctx)
    raw = (b"GET /say/one HTTP/1.1\r\nHost: x\r\n\r\n"
           b"GET /environ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    out, version = tls_request(server.port, ctx, raw)
    assert version in ("TLSv1.2", "TLSv1.3")
    assert out.count(b"HTTP/1.1 200") == 2, out[:500]
    first, second = out.split(b"HTTP/1.1 200", 2)[1:]
    assert first.endswith(b"one")
    environ = json.loads(second.split(b"\r\n\r\n", 1)[1])
    assert environ["wsgi.url_scheme"] == "https"


def test_https_streams_a_large_generated_body(serve, ca, tmp_path):
    certfile, keyfile = write_pair(ca, tmp_path)
    server = serve("basic:app", "--certfile", str(certfile), "--keyfile", str(keyfile), wait=False)
    ctx = client_context(ca)
    wait_tls(server, ctx)
    out, _ = tls_request(server.port, ctx, b"GET /stream?n=2000 HTTP/1.0\r\n\r\n", timeout=20)
    head, body = out.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.0 200"), head
    assert body == b"".join(b"chunk-%d;" % i for i in range(2000))


def test_plain_http_to_a_tls_port_gets_no_http_answer(serve, ca, tmp_path):
    certfile, keyfile = write_pair(ca, tmp_path)
    server = serve("basic:app", "--certfile", str(certfile), "--keyfile", str(keyfile), wait=False)
    wait_tls(server, client_context(ca))
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        try:
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        except ConnectionResetError:
            pass
    assert not data.startswith(b"HTTP/"), data
    # The worker is still fine.
    out, _ = tls_request(server.port, client_context(ca), b"GET /say/ok HTTP/1.0\r\n\r\n")
    assert out.endswith(b"ok")


def test_client_certificate_required(serve, ca, tmp_path):
    certfile, keyfile = write_pair(ca, tmp_path)
    cafile = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    server = serve("basic:app", "--certfile", str(certfile), "--keyfile", str(keyfile),
                   "--ca-certs", str(cafile), "--cert-reqs", "2", wait=False)
    client = ca.issue_cert("client@example.com")
    wait_tls(server, client_context(ca, client))
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
        out, _ = tls_request(server.port, client_context(ca), b"GET / HTTP/1.0\r\n\r\n")
        # TLS 1.3 reports the refusal only when reading
        if not out:
            raise ssl.SSLError("closed without an answer")


def test_hup_reloads_the_certificate(serve, ca, tmp_path):
    certfile, keyfile = write_pair(ca, tmp_path)
    server = serve("basic:app", "--certfile", str(certfile), "--keyfile", str(keyfile), wait=False)
    wait_tls(server, client_context(ca))
    other = trustme.CA()
    new_cert, new_key = write_pair(other, tmp_path, name="new")
    os.replace(new_cert, certfile)
    os.replace(new_key, keyfile)
    server.send_signal(signal.SIGHUP)
    wait_tls(server, client_context(other))  # only the new CA's certificate passes


def test_bad_certificate_files_stop_the_start_with_a_clear_error(ca, tmp_path):
    certfile, keyfile = write_pair(ca, tmp_path)
    missing = tmp_path / "nope.pem"
    result = run_cli(["-b", "127.0.0.1:0", "--certfile", str(missing), "--keyfile", str(keyfile), "app:app"])
    assert result.returncode == 1
    assert str(missing) in result.stderr, result.stderr
    other_key = write_pair(trustme.CA(), tmp_path, name="other")[1]
    result = run_cli(["-b", "127.0.0.1:0", "--certfile", str(certfile), "--keyfile", str(other_key), "app:app"])
    assert result.returncode == 1
    assert "does not match" in result.stderr, result.stderr
