"""--statsd-host: gunicorn's metric names and line format, received on a
datagram socket the test binds (UDP, or a unix datagram socket)."""
import os
import re
import signal
import socket
import threading
import time

import pytest

from conftest import short_tempdir

TAGS = "env:test,svc:web"


class Collector:
    """Every metric line received, a datagram holding one or more lines.

    A thread reads the socket from the start, so datagrams never pile up
    unread: a unix datagram socket's queue is short (net.unix.max_dgram_qlen,
    often 10), and the master's gauges alone can fill it while a server
    starts, after which the sender's datagrams are dropped."""

    def __init__(self, sock):
        self.sock = sock
        self.sock.settimeout(0.2)
        self.lines = []
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        while True:
            try:
                data = self.sock.recv(65536)
            except (socket.timeout, BlockingIOError):
                continue
            except OSError:
                return  # closed
            with self.lock:
                self.lines.extend(data.decode("ascii").split("\n"))

    def wait_for(self, predicate, timeout=5.0, what="metric"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                found = [l for l in self.lines if predicate(l)]
                if found:
                    return found
            time.sleep(0.02)
        with self.lock:
            raise AssertionError("no %s in %r" % (what, self.lines[-30:]))


@pytest.fixture
def udp_collector():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    yield Collector(sock)
    sock.close()


def test_request_metrics_have_gunicorns_names_prefix_and_tags(serve, udp_collector):
    port = udp_collector.sock.getsockname()[1]
    server = serve("basic:app", "--statsd-host", "127.0.0.1:%d" % port,
                   "--statsd-prefix", "app", "--dogstatsd-tags", TAGS)
    assert server.request(target="/").status == 200
    assert server.request(target="/nope").status == 404
    c = udp_collector
    c.wait_for(lambda l: l == "app.gunicorn.request.status.404:1|c|@1.0|#" + TAGS,
               what="404 status counter")
    c.wait_for(lambda l: l == "app.gunicorn.request.status.200:1|c|@1.0|#" + TAGS,
               what="200 status counter")
    requests = c.wait_for(lambda l: l == "app.gunicorn.requests:1|c|@1.0|#" + TAGS,
                          what="requests counter")
    # The server's own probe request counts too (404 at /__probe__).
    assert len(requests) >= 2
    timer = re.compile(r"^app\.gunicorn\.request\.duration:\d+(\.\d+)?\|ms\|#" + TAGS + "$")
    assert len(c.wait_for(timer.match, what="duration timer")) == len(requests)
    c.wait_for(lambda l: l == "app.gunicorn.workers:1|g|#" + TAGS, what="workers gauge")
    with c.lock:
        lines = list(c.lines)
    for line in lines:
        assert line.startswith("app.gunicorn."), line
        assert line.endswith("|#" + TAGS), line


def test_no_prefix_and_no_tags_give_bare_names(serve, udp_collector):
    port = udp_collector.sock.getsockname()[1]
    server = serve("basic:app", "--statsd-host", "127.0.0.1:%d" % port)
    assert server.request(target="/").status == 200
    udp_collector.wait_for(lambda l: l == "gunicorn.requests:1|c|@1.0", what="requests counter")
    udp_collector.wait_for(lambda l: re.match(r"^gunicorn\.workers:1\|g$", l), what="gauge")


@pytest.mark.ferrocorn_only
def test_log_lines_are_counted_by_level(serve, udp_collector):
    port = udp_collector.sock.getsockname()[1]
    server = serve("basic:app", "--statsd-host", "127.0.0.1:%d" % port, "--log-level", "critical")
    assert server.request(target="/error").status == 500
    udp_collector.wait_for(lambda l: l == "gunicorn.log.exception:1|c|@1.0",
                           what="exception counter")
    with server.connect() as conn:
        conn.send(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n")
        assert conn.read_until_closed().startswith(b"HTTP/1.1 400")
    # Counted even though --log-level critical hides the line, as gunicorn does.
    udp_collector.wait_for(lambda l: l == "gunicorn.log.warning:1|c|@1.0",
                           what="warning counter")
    assert "gunicorn.log.error:1|c|@1.0" not in udp_collector.lines


@pytest.mark.ferrocorn_only
def test_a_worker_killed_by_a_signal_is_counted_by_the_master(serve, udp_collector):
    port = udp_collector.sock.getsockname()[1]
    server = serve("basic:app", "--statsd-host", "127.0.0.1:%d" % port)
    (pid,) = server.wait_workers(1)
    os.kill(pid, signal.SIGKILL)
    udp_collector.wait_for(lambda l: l == "ferrocorn.workers.signal_deaths:1|c|@1.0",
                           timeout=10, what="signal deaths counter")


@pytest.mark.ferrocorn_only
def test_unix_datagram_socket(serve):
    path = os.path.join(short_tempdir(), "statsd.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    try:
        c = Collector(sock)
        server = serve("basic:app", "--statsd-host", "unix://" + path)
        assert server.request(target="/").status == 200
        c.wait_for(lambda l: l == "gunicorn.request.status.200:1|c|@1.0", what="status counter")
    finally:
        sock.close()
        os.unlink(path)


def test_a_bad_statsd_address_is_a_usage_error(serve):
    server = serve("basic:app", "--statsd-host", "localhost:notaport", wait=False)
    assert server.wait_exit() not in (0, None)
    assert "statsd" in server.log()
