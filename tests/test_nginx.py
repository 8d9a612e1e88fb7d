"""ferrocorn behind a real nginx, as docs/deployment.md sets it up.

nginx (a foreground master with its own prefix directory in tmp_path, on a
free 127.0.0.1 port) terminates TLS with a certificate made at test time,
serves /static/ from examples/school/static itself, and passes every other
request to ferrocorn on a unix socket, with Host, X-Forwarded-For and
X-Forwarded-Proto set. ferrocorn runs the school app with 4 workers; it
trusts unix-socket peers for the forwarded headers, as gunicorn does.

The site configuration is tests/nginx/site.conf, the very file the
deployment guide shows (a test below checks that). Both servers are stopped
after each test, whatever happened.

One test replays, without nginx, the way nginx uses an upstream connection
(HTTP/1.0, closed as soon as the response is complete), since that is what
a rare 502 under traffic comes from when the server mishandles it.

The nginx binary: $FERROCORN_TEST_NGINX, else `nginx` on PATH or in
/usr/sbin (scripts/test installs Debian's package when it is missing).
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import requests
import trustme

from conftest import APPS, EXAMPLES, REPO, free_port, short_tempdir
from support import IO_TIMEOUT, wait_until

NGINX_DIR = REPO / "tests" / "nginx"
SCHOOL = EXAMPLES / "school"
STATIC = SCHOOL / "static"
WORKERS = 4

START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0

# The HUP-under-traffic test: how long the traffic runs, how often the
# server is told to reload, and how many client threads send requests.
LOAD_SECONDS = 5.0
HUP_EVERY = 0.5
LOAD_THREADS = 4

# The values docs/deployment.md shows for the placeholders of site.conf.
DOC_VALUES = {
    "@SOCKET@": "/run/ferrocorn/school.sock",
    "@LISTEN@": "443",
    "@CERT@": "/etc/ssl/school/fullchain.pem",
    "@KEY@": "/etc/ssl/school/privkey.pem",
    "@STATIC@": "/srv/school/static",
}


def nginx_binary():
    custom = os.environ.get("FERROCORN_TEST_NGINX")
    if custom:
        return custom
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if not found:
        pytest.fail("nginx not found: scripts/test installs it (Debian package `nginx`), "
                    "or set FERROCORN_TEST_NGINX")
    return found


def render(template, values):
    text = template.read_text()
    for key, value in values.items():
        text = text.replace(key, value)
    left = re.findall(r"@[A-Z_]+@", text)
    assert not left, "placeholders left in %s: %s" % (template, left)
    return text


class Nginx:
    """One nginx master in the foreground, with everything in `prefix`."""

    def __init__(self, prefix, port, socket_path, certfile, keyfile):
        self.prefix = prefix
        self.port = port
        prefix.mkdir(parents=True, exist_ok=True)
        site = render(NGINX_DIR / "site.conf", {
            "@SOCKET@": str(socket_path),
            "@LISTEN@": "127.0.0.1:%d" % port,
            "@CERT@": str(certfile),
            "@KEY@": str(keyfile),
            "@STATIC@": str(STATIC),
        })
        (prefix / "site.conf").write_text(site)
        # As root, nginx would run its workers as `nobody`, who may not
        # enter tmp_path (0700) or reach the socket; keep them as root then.
        user = "user root root;" if os.geteuid() == 0 else ""
        main = render(NGINX_DIR / "nginx.conf", {"@PREFIX@": str(prefix), "@USER@": user})
        self.conf = prefix / "nginx.conf"
        self.conf.write_text(main)
        self.error_log = prefix / "error.log"
        self.proc = None

    def start(self):
        self.out = open(self.prefix / "stdout.log", "wb")
        self.proc = subprocess.Popen(
            [nginx_binary(), "-p", str(self.prefix), "-c", str(self.conf),
             "-e", str(self.error_log)],
            stdin=subprocess.DEVNULL, stdout=self.out, stderr=subprocess.STDOUT,
            start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail("nginx exited with status %s\n%s" % (self.proc.returncode,
                                                                  self.log_tail()))
            if (self.prefix / "nginx.pid").exists() and self._port_open():
                return self
            time.sleep(0.05)
        pytest.fail("nginx did not listen within %gs\n%s" % (START_TIMEOUT, self.log_tail()))

    def _port_open(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0):
                return True
        except OSError:
            return False

    def stop(self):
        """Fast shutdown (TERM), a bounded wait, then KILL of the group."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(IO_TIMEOUT)
            pytest.fail("nginx did not stop within %gs of TERM; killed" % STOP_TIMEOUT)
        finally:
            self.out.close()

    def log_tail(self, lines=30):
        parts = []
        for path in (self.prefix / "stdout.log", self.error_log):
            if path.exists():
                text = path.read_text("utf-8", "replace").splitlines()[-lines:]
                parts.append("---- %s ----\n%s" % (path.name, "\n".join(text)))
        return "\n".join(parts)


@pytest.fixture
def tls(tmp_path):
    """A CA and a certificate for 127.0.0.1 and localhost, as files."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    certfile, keyfile, cafile = (tmp_path / "cert.pem", tmp_path / "key.pem",
                                 tmp_path / "ca.pem")
    cert.private_key_pem.write_to_path(str(keyfile))
    with open(certfile, "wb") as f:
        for pem in cert.cert_chain_pems:
            f.write(pem.bytes())
    ca.cert_pem.write_to_path(str(cafile))
    return certfile, keyfile, cafile


@pytest.fixture
def sock_dir():
    """A short directory for the unix socket, removed after the server stopped."""
    path = short_tempdir()
    yield Path(path)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def behind_nginx(sock_dir, serve, tmp_path, tls, request):
    """behind_nginx(app="app:app", *args, chdir=examples/school) -> (server, nginx, url, cafile)

    Starts ferrocorn with `app` and extra CLI `args` (WORKERS workers on a
    unix socket) and an
    nginx in front of it; both are stopped after the test: nginx first, by
    the finalizer here, then ferrocorn, by the `serve` fixture.
    """
    certfile, keyfile, cafile = tls
    started = []

    def stop_all():
        for nginx in started:
            print("==== nginx\n%s" % nginx.log_tail())  # shown when the test fails
            nginx.stop()
    request.addfinalizer(stop_all)

    def start(app="app:app", *args, chdir=SCHOOL):
        socket_path = sock_dir / ("app-%d.sock" % len(started))
        # The school app keeps its students in this test's own SQLite file.
        env = {"SCHOOL_DB": str(tmp_path / "school.sqlite3")}
        server = serve(app, *args, workers=WORKERS, bind="unix:%s" % socket_path, chdir=chdir,
                       env=env)
        nginx = Nginx(tmp_path / ("nginx-%d" % len(started)), free_port(), socket_path,
                      certfile, keyfile)
        started.append(nginx)
        nginx.start()
        return server, nginx, "https://127.0.0.1:%d" % nginx.port, str(cafile)

    return start


def get(url, cafile, **kwargs):
    kwargs.setdefault("timeout", IO_TIMEOUT)
    return requests.get(url, verify=cafile, **kwargs)


# ---------------------------------------------------------------- static files

def test_static_files_come_from_nginx_and_never_reach_the_app(behind_nginx):
    server, nginx, url, ca = behind_nginx()
    css = (STATIC / "school.css").read_bytes()
    resp = get(url + "/static/school.css", ca)
    assert resp.status_code == 200
    assert resp.content == css
    assert resp.headers["Server"].startswith("nginx")
    assert resp.headers["Content-Type"] == "text/css"
    # A missing static file is nginx's own 404, not the app's: the request
    # was not passed on.
    missing = get(url + "/static/missing.css", ca)
    assert missing.status_code == 404
    assert b"<center>nginx" in missing.content
    # With the app gone, static files are still served and dynamic pages
    # are 502: nginx alone serves /static/.
    server.stop()
    again = get(url + "/static/school.css", ca)
    assert again.status_code == 200 and again.content == css
    assert get(url + "/", ca).status_code == 502


def test_the_page_links_the_stylesheet_nginx_serves(behind_nginx):
    server, nginx, url, ca = behind_nginx()
    page = get(url + "/", ca)
    assert page.status_code == 200
    links = re.findall(r'<link rel="stylesheet" href="([^"]+)"', page.text)
    assert links == ["/static/school.css"]
    assert get(url + links[0], ca).content == (STATIC / "school.css").read_bytes()


# ---------------------------------------------------------------- dynamic pages

def test_student_list_comes_from_the_app(behind_nginx):
    server, nginx, url, ca = behind_nginx()
    resp = get(url + "/", ca)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("text/html")
    assert "Ada Lovelace" in resp.text and "Programming in Python" in resp.text
    # nginx answers, with its own Server header, for the proxied page too.
    assert resp.headers["Server"].startswith("nginx")


def test_posting_the_form_redirects_back_to_the_list(behind_nginx):
    server, nginx, url, ca = behind_nginx()
    with requests.Session() as http:
        resp = http.post(url + "/students", data={"name": "Grace Hopper", "course": "CS120"},
                         allow_redirects=False, verify=ca, timeout=IO_TIMEOUT)
        assert resp.status_code == 303
        assert resp.headers["Location"] in ("/", url + "/")
        # Every worker reads the same database, so the list shows her.
        assert re.search(r'class="student">Grace Hopper<', http.get(url + "/", verify=ca,
                                                                     timeout=IO_TIMEOUT).text)
        # The refused form: the page again, with the message, as 422.
        refused = http.post(url + "/students", data={"name": " ", "course": "CS120"},
                            verify=ca, timeout=IO_TIMEOUT)
        assert refused.status_code == 422
        assert "needs a name" in refused.text


def test_json_endpoint_through_nginx(behind_nginx):
    server, nginx, url, ca = behind_nginx()
    resp = get(url + "/api/students", ca)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "application/json"
    data = resp.json()
    assert [s["name"] for s in data["students"]][:2] == ["Ada Lovelace", "Alan Turing"]
    assert get(url + "/api/students/1", ca).json()["name"] == "Ada Lovelace"
    assert get(url + "/api/students/999", ca).status_code == 404


# ---------------------------------------------------------------- forwarded headers

def test_app_sees_https_and_the_forwarded_headers_nginx_sets(behind_nginx):
    server, nginx, url, ca = behind_nginx("basic:app", chdir=APPS)
    env = get(url + "/environ?x=1", ca).json()
    assert env["wsgi.url_scheme"] == "https"
    assert env["HTTP_X_FORWARDED_PROTO"] == "https"
    assert env["HTTP_X_FORWARDED_FOR"] == "127.0.0.1"
    assert env["HTTP_HOST"] == "127.0.0.1:%d" % nginx.port
    assert env["PATH_INFO"] == "/environ" and env["QUERY_STRING"] == "x=1"
    # A client's own X-Forwarded-For is kept, with nginx's peer appended.
    env = get(url + "/environ", ca, headers={"X-Forwarded-For": "203.0.113.7"}).json()
    assert env["HTTP_X_FORWARDED_FOR"] == "203.0.113.7, 127.0.0.1"
    # Straight to the socket, without the header, the scheme is http.
    direct = json.loads(server.request(target="/environ").body)
    assert direct["wsgi.url_scheme"] == "http"
    assert "HTTP_X_FORWARDED_PROTO" not in direct


# ---------------------------------------------------------------- reload under traffic

# Ten HUPs in five seconds start forty Flask workers on two cores; the
# last set may take a while to be ready on a busy machine.
@pytest.mark.timeout(180)
def test_hup_under_traffic_through_nginx_gives_no_502(behind_nginx):
    server, nginx, url, ca = behind_nginx()
    first = set(server.wait_workers(WORKERS))
    statuses = Counter()
    failures = []
    lock = threading.Lock()
    stop = threading.Event()
    # (method, path, expected status); the POST is never retried by nginx.
    mix = [("GET", "/", 200), ("GET", "/api/students", 200), ("GET", "/api/students/2", 200),
           ("GET", "/static/school.css", 200), ("POST", "/students", 303)]
    form = {"name": "Katherine Johnson", "course": "MATH101"}

    def client(n):
        with requests.Session() as http:
            i = n
            while not stop.is_set():
                method, path, expected = mix[i % len(mix)]
                i += 1
                try:
                    resp = http.request(method, url + path, verify=ca, timeout=IO_TIMEOUT,
                                        data=form if method == "POST" else None,
                                        allow_redirects=False)
                    with lock:
                        statuses[resp.status_code] += 1
                        if resp.status_code != expected:
                            failures.append("%s %s: %d %s" % (method, path, resp.status_code,
                                                              resp.text[:200]))
                except requests.RequestException as e:
                    with lock:
                        failures.append("%s %s: %r" % (method, path, e))

    threads = [threading.Thread(target=client, args=(n,), daemon=True)
               for n in range(LOAD_THREADS)]
    for t in threads:
        t.start()
    hups = 0
    try:
        deadline = time.monotonic() + LOAD_SECONDS
        while time.monotonic() < deadline:
            time.sleep(HUP_EVERY)
            server.send_signal(signal.SIGHUP)
            hups += 1

        def answered():
            with lock:
                return sum(statuses.values()) >= 50

        # A busy machine answers slower: the traffic goes on (bounded) until
        # enough went through to mean something.
        wait_until(answered, 120, what="50 answers through nginx")
    finally:
        stop.set()
        for t in threads:
            t.join(IO_TIMEOUT + 5)
    assert not any(t.is_alive() for t in threads), "a client thread is stuck"
    print("HUPs: %d; responses: %s" % (hups, dict(statuses)))
    assert statuses[502] == 0, "502s through nginx during HUPs: %s\n%s" % (
        dict(statuses), nginx.log_tail())
    assert not failures, "%d failed requests (%s), first ones:\n%s\n%s" % (
        len(failures), dict(statuses), "\n".join(failures[:10]), nginx.log_tail())
    # Enough traffic went through to mean something, and the reloads took
    # effect: a full set of workers, none of them from before.
    assert sum(statuses.values()) >= 50, dict(statuses)
    wait_until(lambda: (lambda w: len(w) == WORKERS and not set(w) & first)(server.workers()),
               90, what="%d new workers after the HUPs" % WORKERS)
    assert get(url + "/api/students/1", ca).json()["name"] == "Ada Lovelace"


# ---------------------------------------------------------------- how nginx talks to the app

# nginx speaks HTTP/1.0 with `Connection: close` to the upstream (no
# `keepalive` in the upstream block), reads the response up to its
# Content-Length and closes its side at once, without waiting for the
# server's FIN. This replays that, without nginx, from a few threads for a
# few seconds: every connection must get its whole answer.
UPSTREAM_SECONDS = 3.0
UPSTREAM_REQUEST = (b"GET /say/upstream HTTP/1.0\r\nHost: 127.0.0.1\r\n"
                    b"X-Forwarded-For: 127.0.0.1\r\nX-Forwarded-Proto: https\r\n"
                    b"Connection: close\r\n\r\n")


def proxy_style_exchange(path):
    """One request the way nginx sends it upstream; returns the response
    bytes, read up to the end of its Content-Length body and no further."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(IO_TIMEOUT)
        sock.connect(str(path))
        sock.sendall(UPSTREAM_REQUEST)
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return data
            data += chunk
            head, sep, body = data.partition(b"\r\n\r\n")
            m = re.search(rb"(?im)^content-length: *(\d+)", head)
            if sep and m and len(body) >= int(m.group(1)):
                return data  # closed at once, as nginx does


def test_every_connection_is_answered_when_the_proxy_closes_right_after_each_response(
        serve, sock_dir):
    path = sock_dir / "upstream.sock"
    server = serve("basic:app", workers=2, bind="unix:%s" % path, chdir=APPS)
    outcomes = Counter()
    lock = threading.Lock()
    deadline = time.monotonic() + UPSTREAM_SECONDS

    def client():
        while time.monotonic() < deadline:
            try:
                data = proxy_style_exchange(path)
                outcome = "ok" if data.endswith(b"\r\n\r\nupstream") else (
                    "no response" if not data else "bad: %r" % data[:60])
            except OSError as e:
                outcome = repr(e)
            with lock:
                outcomes[outcome] += 1

    threads = [threading.Thread(target=client, daemon=True) for _ in range(LOAD_THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(UPSTREAM_SECONDS + IO_TIMEOUT + 5)
    assert not any(t.is_alive() for t in threads), "a client thread is stuck"
    ok = outcomes.pop("ok", 0)
    assert ok >= 100, "only %d requests in %gs: %s" % (ok, UPSTREAM_SECONDS, dict(outcomes))
    assert not outcomes, "%d answered, and then: %s\n%s" % (ok, dict(outcomes),
                                                         server.log_tail())


# ---------------------------------------------------------------- the guide

def test_deployment_guide_shows_the_tested_site_config():
    guide = (REPO / "docs" / "deployment.md").read_text()
    assert render(NGINX_DIR / "site.conf", DOC_VALUES) in guide
