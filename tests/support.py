"""Helpers for the integration tests: a raw HTTP/1.x client over a socket,
a bounded load generator (`Load`), and process inspection through /proc.

The raw client sends exactly the bytes a test gives it and parses responses
itself, so tests can check framing (chunked, close-delimited), interim
responses and what happens on the wire after a response.
"""
import http.client
import os
import signal
import socket
import threading
import time

# Every network wait in the tests is bounded by this (seconds).
IO_TIMEOUT = 10.0


class Response:
    def __init__(self, version, status, reason, headers, body, chunks=None):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers  # [(name, value)] as received, names as sent
        self.body = body
        self.chunks = chunks  # chunk sizes when the body was chunked, else None

    def header(self, name, default=None):
        values = self.header_values(name)
        return values[0] if values else default

    def header_values(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k.lower() == name]

    def has_header(self, name):
        return bool(self.header_values(name))

    def __repr__(self):
        return "<Response %s %d %r, %d body bytes>" % (
            self.version, self.status, self.headers, len(self.body))


class ConnectionClosed(Exception):
    """The server closed the connection before a complete response."""


class RawConn:
    """One client connection: send bytes, read responses."""

    def __init__(self, address, family=socket.AF_INET, timeout=IO_TIMEOUT):
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(address)
        self.buf = b""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.sock.close()

    @property
    def local_port(self):
        return self.sock.getsockname()[1]

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionClosed("server closed the connection; unparsed: %r" % self.buf[:200])
        self.buf += data

    def _read_until(self, marker):
        while marker not in self.buf:
            self._fill()
        i = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def _read_exactly(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_response(self, method="GET"):
        """Read one response, interim (1xx) ones included."""
        head = self._read_until(b"\r\n\r\n").decode("latin-1")
        lines = head[:-4].split("\r\n")
        parts = lines[0].split(" ", 2)
        version, status = parts[0], int(parts[1])
        reason = parts[2] if len(parts) > 2 else ""
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.append((name, value.strip()))
        resp = Response(version, status, reason, headers, b"")
        te = resp.header("Transfer-Encoding", "").lower()
        if method == "HEAD" or status < 200 or status in (204, 304):
            return resp
        if te.endswith("chunked"):
            resp.chunks = []
            body = []
            while True:
                size_line = self._read_until(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    while self._read_until(b"\r\n") != b"\r\n":  # trailers
                        pass
                    break
                resp.chunks.append(size)
                body.append(self._read_exactly(size))
                if self._read_exactly(2) != b"\r\n":
                    raise AssertionError("chunk not followed by CRLF")
            resp.body = b"".join(body)
        elif resp.has_header("Content-Length"):
            resp.body = self._read_exactly(int(resp.header("Content-Length")))
        else:
            resp.body = self.read_until_closed()
        return resp

    def read_final_response(self, method="GET"):
        """Read responses until a final (non-1xx) one; return (interim, final)."""
        interim = []
        while True:
            resp = self.read_response(method)
            if resp.status >= 200:
                return interim, resp
            interim.append(resp)

    def read_until_closed(self):
        """Everything the server sends until it closes (bounded by the timeout)."""
        chunks = [self.buf]
        self.buf = b""
        while True:
            try:
                data = self.sock.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            chunks.append(data)
        return b"".join(chunks)

    def closed_by_server(self, timeout=5.0):
        """True if the server closes the connection within `timeout` with no
        more bytes sent; False if it stays open. Fails if bytes arrive."""
        if self.buf:
            raise AssertionError("unexpected bytes after the response: %r" % self.buf[:200])
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return False
        except ConnectionResetError:
            return True
        finally:
            self.sock.settimeout(IO_TIMEOUT)
        if data:
            raise AssertionError("unexpected bytes after the response: %r" % data[:200])
        return True


def request_bytes(method="GET", target="/", version="HTTP/1.1", headers=(), body=b""):
    lines = ["%s %s %s" % (method, target, version)]
    names = {name.lower() for name, _ in headers}
    if "host" not in names and version == "HTTP/1.1":
        lines.append("Host: localhost")
    lines += ["%s: %s" % (name, value) for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def wait_until(predicate, timeout, interval=0.05, what="condition"):
    """Poll `predicate` until it returns a true value; fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %gs waiting for %s" % (timeout, what))
        time.sleep(interval)


# ---------------------------------------------------------------- /proc

def proc_stat(pid):
    """(state, ppid, starttime) of a process, or None if it does not exist."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            data = f.read().decode("latin-1")
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name is in parentheses and may contain spaces.
    rest = data[data.rindex(")") + 2:].split()
    return rest[0], int(rest[1]), int(rest[19])


def children(pid):
    """Live (non-zombie) child processes of `pid`: {child_pid: starttime}."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        st = proc_stat(int(entry))
        if st and st[1] == pid and st[0] != "Z":
            out[int(entry)] = st[2]
    return out


def alive(pid, starttime):
    """The process with this pid and start time still runs (not a zombie)."""
    st = proc_stat(pid)
    return bool(st) and st[2] == starttime and st[0] != "Z"


def cpus_allowed(pid):
    """The CPUs a process may run on, from Cpus_allowed_list in /proc/<pid>/status."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("Cpus_allowed_list:"):
                return parse_cpu_list(line.split(":", 1)[1].strip())
    raise AssertionError("no Cpus_allowed_list for pid %d" % pid)


def parse_cpu_list(text):
    cpus = []
    for part in text.split(","):
        if "-" in part:
            lo, hi = part.split("-")
            cpus.extend(range(int(lo), int(hi) + 1))
        elif part:
            cpus.append(int(part))
    return cpus


# ---------------------------------------------------------------- load

class Failure:
    """One failed request of a `Load` run."""

    def __init__(self, kind, detail, last_pid, when):
        self.kind = kind          # "error" (reset, closed, timeout) or "status"
        self.detail = detail
        self.last_pid = last_pid  # the worker that answered this client last, if any
        self.when = when          # seconds since the load started

    def __repr__(self):
        return "<Failure %s at %.2fs after pid %s: %s>" % (
            self.kind, self.when, self.last_pid, self.detail)


class Load:
    """A small, bounded load generator.

    `clients` threads each keep one HTTP/1.1 keep-alive connection (http.client)
    to host:port and send GET `path` in a loop, `pause` seconds apart, until
    `stop()`, `max_requests` requests in all, or `max_seconds`. A connection
    the server closed politely (`Connection: close`) is reopened for the next
    request (with `keep_alive=False`, every request is on a new connection);
    a reset, an early close, a timeout or a non-200 answer is a
    failure, and the client reconnects and goes on.

    With `path="/pid"` each answer names the worker that gave it: `pids`
    counts answers per worker, and each failure records the worker that
    answered that client last.
    """

    def __init__(self, host, port, path="/pid", clients=4, max_requests=100000,
                 max_seconds=60.0, pause=0.002, timeout=IO_TIMEOUT, keep_alive=True):
        self.host, self.port, self.path = host, port, path
        # Without keep-alive every request opens a new connection (and says
        # `Connection: close`), which exercises accepting.
        self.headers = {} if keep_alive else {"Connection": "close"}
        self.clients, self.max_requests = clients, max_requests
        self.max_seconds, self.pause, self.timeout = max_seconds, pause, timeout
        self.ok = 0
        self.failures = []
        self.pids = {}
        # The worker that answered each client last (None before its first answer).
        self.last_pids = [None] * clients
        self._sent = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = []
        self._t0 = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def start(self):
        self._t0 = time.monotonic()
        for i in range(self.clients):
            t = threading.Thread(target=self._client, args=(i,), name="load-%d" % i,
                                 daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(self.timeout + 2)
        if any(t.is_alive() for t in self._threads):
            raise AssertionError("load clients did not stop")
        return self

    @property
    def done(self):
        return self._stop.is_set() or not any(t.is_alive() for t in self._threads)

    def wait_done(self, timeout=None):
        """Wait until every client ran out of requests or time."""
        for t in self._threads:
            t.join(timeout if timeout is not None else self.max_seconds + self.timeout + 2)
        return self

    def total(self):
        with self._lock:
            return self.ok + len(self.failures)

    def wait_for(self, n, timeout=IO_TIMEOUT):
        """Wait until `n` more requests were answered (or failed) from now."""
        target = self.total() + n
        wait_until(lambda: self.total() >= target, timeout, what="%d more requests" % n)

    def _take(self):
        with self._lock:
            if self._sent >= self.max_requests:
                return False
            self._sent += 1
            return True

    def all_answered(self):
        """Every client got at least one answer."""
        with self._lock:
            return all(p is not None for p in self.last_pids)

    def _client(self, index):
        deadline = self._t0 + self.max_seconds
        conn = None
        last_pid = None
        while not self._stop.is_set() and time.monotonic() < deadline and self._take():
            if conn is None:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                conn.request("GET", self.path, headers=self.headers)
                resp = conn.getresponse()
                body = resp.read()
                status = resp.status
                failure = None if status == 200 else ("status", "%d %r" % (status, body[:100]))
            except (OSError, http.client.HTTPException) as e:
                failure = ("error", "%s: %s" % (type(e).__name__, e))
                conn.close()
                conn = None
            with self._lock:
                if failure:
                    self.failures.append(Failure(failure[0], failure[1], last_pid,
                                                 time.monotonic() - self._t0))
                else:
                    self.ok += 1
                    if self.path.startswith("/pid"):
                        last_pid = int(body)
                        self.last_pids[index] = last_pid
                        self.pids[last_pid] = self.pids.get(last_pid, 0) + 1
            if self.pause:
                time.sleep(self.pause)
        if conn is not None:
            conn.close()

    def summary(self):
        return "%d ok, %d failed: %s" % (self.ok, len(self.failures), self.failures[:10])


# ---------------------------------------------------------------- processes

def cmdline(pid):
    """The process title as `ps` shows it (the first NUL-terminated string of cmdline)."""
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        return f.read().split(b"\0")[0].decode("utf-8", "replace")


def gone(pid, starttime=None):
    """The process no longer runs (it is absent or a zombie)."""
    st = proc_stat(pid)
    return st is None or st[0] == "Z" or (starttime is not None and st[2] != starttime)


def read_pidfile(path):
    """The pid in a pidfile, or None while it is absent or being written."""
    try:
        text = open(path).read().strip()
    except FileNotFoundError:
        return None
    return int(text) if text.isdigit() else None


def kill_tree(pid, sig=signal.SIGKILL):
    """Send `sig` to a process and its children (cleanup of servers that
    are not our children: daemons, upgraded masters)."""
    for p in [pid] + list(children(pid)):
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass
