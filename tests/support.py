"""Helpers for the integration tests: a raw HTTP/1.x client over a socket,
and process inspection through /proc.

The raw client sends exactly the bytes a test gives it and parses responses
itself, so tests can check framing (chunked, close-delimited), interim
responses and what happens on the wire after a response.
"""
import os
import socket
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
