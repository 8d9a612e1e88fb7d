"""Request smuggling through a real proxy: every case of the conformance
corpus (tests/conformance/cases/) is sent as raw bytes to nginx and to
haproxy, each with a kept-alive connection pool to ferrocorn, and no case
may make ferrocorn see a request the proxy did not forward.

The app (tests/apps/seen.py) records each request it is called for; each
proxy logs each request it passed upstream. After each case a sentinel
request goes through the same proxy (and so, likely, the same upstream
connection): bytes a case left behind on that connection would turn it
into something else. Per case, what the app saw must be among what the
proxy forwarded, and the sentinel must come through as itself.

The binaries: $FERROCORN_TEST_NGINX / $FERROCORN_TEST_HAPROXY, else on PATH
or in /usr/sbin (scripts/test installs the Debian packages).
"""
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from conftest import REPO, free_port
from support import IO_TIMEOUT, wait_until

pytestmark = [pytest.mark.ferrocorn_only, pytest.mark.timeout(180)]

CASES = sorted((REPO / "tests" / "conformance" / "cases").glob("*.json"))
START_TIMEOUT = 15.0
# A case's connection: read until the proxy closes it, at most this long.
CASE_TIMEOUT = 5.0


def binary(name, env):
    custom = os.environ.get(env)
    if custom:
        return custom
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
    if not found:
        pytest.fail("%s not found: scripts/test installs it (Debian package `%s`), or set %s"
                    % (name, name, env))
    return found


NGINX_CONF = """
daemon off;
master_process on;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
{user}
events {{ worker_connections 256; }}
http {{
    log_format forwarded '$upstream_addr $request_method $request_uri';
    access_log {prefix}/forwarded.log forwarded;
    client_body_temp_path {prefix}/client_body_temp;
    proxy_temp_path {prefix}/proxy_temp;
    fastcgi_temp_path {prefix}/fastcgi_temp;
    uwsgi_temp_path {prefix}/uwsgi_temp;
    scgi_temp_path {prefix}/scgi_temp;
    # One request per client connection (so a case ends when nginx
    # closes), a kept-alive pool towards ferrocorn.
    keepalive_timeout 0;
    client_header_timeout 2s;
    client_body_timeout 2s;
    upstream app {{
        server 127.0.0.1:{upstream};
        keepalive 4;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
        }}
    }}
}}
"""

HAPROXY_CONF = """
global
    # Long enough for the longest request line of the corpus.
    log stdout len 16384 format raw local0
    pidfile {prefix}/haproxy.pid
    tune.http.logurilen 8192
defaults
    mode http
    log global
    log-format "%b/%s %HM %HU"
    timeout connect 2s
    timeout client 2s
    timeout server 10s
    timeout http-request 2s
    # One request per client connection (so a case ends when haproxy
    # closes), a kept-alive pool towards ferrocorn.
    timeout http-keep-alive 1ms
    http-reuse always
frontend fe
    bind 127.0.0.1:{port}
    default_backend app
backend app
    server s1 127.0.0.1:{upstream}
"""


class Proxy:
    """nginx or haproxy in the foreground, everything under `prefix`;
    `forwarded()` lists the (method, uri) it passed upstream, in order."""

    def __init__(self, kind, prefix, upstream):
        self.kind, self.prefix = kind, prefix
        self.port = free_port()
        prefix.mkdir(parents=True, exist_ok=True)
        self.out_path = prefix / "stdout.log"
        values = dict(prefix=prefix, port=self.port, upstream=upstream,
                      user="user root root;" if os.geteuid() == 0 else "")
        if kind == "nginx":
            conf = prefix / "nginx.conf"
            conf.write_text(NGINX_CONF.format(**values))
            self.argv = [binary("nginx", "FERROCORN_TEST_NGINX"), "-p", str(prefix),
                         "-c", str(conf), "-e", str(prefix / "error.log")]
            self.log_path = prefix / "forwarded.log"
        else:
            conf = prefix / "haproxy.cfg"
            conf.write_text(HAPROXY_CONF.format(**values))
            self.argv = [binary("haproxy", "FERROCORN_TEST_HAPROXY"), "-db", "-f", str(conf)]
            self.log_path = self.out_path
        self.proc = None

    def start(self):
        self.out = open(self.out_path, "wb")
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self.out,
                                     stderr=subprocess.STDOUT, start_new_session=True)

        def listening():
            if self.proc.poll() is not None:
                pytest.fail("%s exited with status %s\n%s" % (self.kind, self.proc.returncode,
                                                              self.log_tail()))
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1.0).close()
                return True
            except OSError:
                return False
        wait_until(listening, START_TIMEOUT, what="%s to listen" % self.kind)
        return self

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(IO_TIMEOUT)
        self.out.close()

    def forwarded(self):
        """(method, uri) of each request passed to the upstream so far."""
        out = []
        if not self.log_path.exists():
            return out
        for line in self.log_path.read_text("utf-8", "replace").splitlines():
            parts = line.split(" ")
            if len(parts) != 3:
                continue
            where, method, uri = parts
            if self.kind == "nginx" and where.startswith("127.0.0.1:"):
                out.append((method, uri))
            elif self.kind == "haproxy" and where == "app/s1":
                out.append((method, uri))
        return out

    def log_tail(self, lines=30):
        parts = []
        for path in sorted(self.prefix.glob("*.log")):
            text = path.read_text("utf-8", "replace").splitlines()[-lines:]
            parts.append("---- %s ----\n%s" % (path.name, "\n".join(text)))
        return "\n".join(parts)


def seen(path):
    if not path.exists():
        return []
    return [tuple(line.split(" ", 1)) for line in path.read_text("utf-8").splitlines()]


def send_case(port, data):
    """Send a case's bytes on a new connection; what came back before the
    proxy closed it (or CASE_TIMEOUT passed)."""
    got = b""
    with socket.create_connection(("127.0.0.1", port), timeout=CASE_TIMEOUT) as s:
        try:
            s.sendall(data)
        except OSError:
            return got
        deadline = time.monotonic() + CASE_TIMEOUT
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except OSError:
                break
            if not chunk:
                break
            got += chunk
    return got


def sentinel(port, i):
    target = "/sentinel/%d" % i
    with socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT) as s:
        s.sendall(b"GET %s HTTP/1.1\r\nHost: example.com\r\n\r\n" % target.encode())
        got = b""
        while b"body bytes\n" not in got:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
    return target, got


def short(requests):
    return ["%s %.80s" % r for r in requests]


@pytest.mark.parametrize("proxy_kind", ["nginx", "haproxy"])
def test_no_corpus_case_smuggles_a_request_past_the_proxy(serve, tmp_path, proxy_kind):
    seen_log = tmp_path / "seen.log"
    server = serve("seen:app", "--keep-alive", "30", env={"TEST_SEEN_LOG": str(seen_log)})
    proxy = Proxy(proxy_kind, tmp_path / proxy_kind, server.port)
    try:
        proxy.start()
        # The server's start-up probe is not the proxy's.
        base_seen = len(seen(seen_log))
        smuggled = {}
        forwarded_total = 0
        for i, path in enumerate(CASES):
            case = json.loads(path.read_text())
            data = base64.b64decode(case["request_b64"])
            before_fwd, before_seen = len(proxy.forwarded()), len(seen(seen_log))
            send_case(proxy.port, data)
            target, answer = sentinel(proxy.port, i)
            # The sentinel's own line tells us the case's lines are in.
            assert (b"GET %s\n" % target.encode()) in answer, (case["name"], answer[:300])
            wait_until(lambda: ("GET", target) in proxy.forwarded()[before_fwd:], 5,
                       what="the proxy's log line of %s" % target)
            fwd = proxy.forwarded()[before_fwd:]
            app = seen(seen_log)[before_seen:]
            assert app[-1] == ("GET", target), (case["name"], app)
            extra = Counter(app) - Counter(fwd)
            if extra:
                smuggled[case["name"]] = {"unforwarded": short(extra), "forwarded": short(fwd),
                                          "seen": short(app)}
            forwarded_total += len(fwd) - 1
        print("%s: %d cases, %d requests forwarded besides the sentinels, %d seen by the app"
              % (proxy_kind, len(CASES), forwarded_total,
                 len(seen(seen_log)) - base_seen - len(CASES)))
        assert not smuggled, json.dumps(smuggled, indent=1)
    finally:
        print(proxy.log_tail())
        proxy.stop()
