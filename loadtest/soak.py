"""A bounded soak run: mixed traffic against one ferrocorn for a set time,
with the process-management events production sees, and a verdict.

    .venv/bin/python loadtest/soak.py --minutes 30

It starts two servers, each `ferrocorn -w 2 --max-requests 100000
--max-requests-jitter 10000` on a free 127.0.0.1 port: the WSGI app
loadtest/apps/soak_app.py (sync workers) and the ASGI app
loadtest/apps/soak_asgi.py (the same HTTP endpoints, plus a WebSocket echo).
Against each it runs, all at once, one client thread of each HTTP kind:

* keep-alive: GET /pid on one persistent connection (a request that finds
  its kept-alive connection closed by a draining worker is sent again on a
  new one, once, as HTTP clients do; counted as a retry, not a failure);
* close: GET /pid with `Connection: close`, a new connection each time;
* pipelined: three GETs written at once on one connection, three answers read;
* upload: POST of 2 MiB (past --body-buffer-size, so it spills to a temp
  file), the answer checked against the body's length and SHA-256;
* stream: GET /stream?n=64 (1 MiB, chunked), the length checked;
* slow reader: the same stream read 16 KiB every 20 ms.

and, against the ASGI server, two WebSocket clients (the `websockets`
library): one sends 1 to 4 KiB text and bytes messages one after another on
a long-lived connection, the other 256 KiB bytes messages; each echo is
checked. A connection the server closes with 1012 (a worker handing over on
HUP or --max-requests) or 1001 (going away) is opened again and the message
it did not echo is sent again (counted as a retry, not a failure).

Both servers also speak cleartext HTTP/2 (`--http-protocols h2,h1
--http2-cleartext both`), and against each, two HTTP/2 clients (httpx with
prior knowledge, one connection each) GET /pid and POST 2 MiB uploads. An
HTTP/2 connection the server ends (GOAWAY on HUP or --max-requests) is
opened again and the request sent again (a retry, not a failure).

Meanwhile both masters get HUP every 30 s, and every 60 s, midway between
two HUPs, one worker picked at random (of either server, in turn) is killed
with SIGKILL. Every 30 s each worker's RSS and open descriptors are sampled.

The verdict: a request to a server that fails within KILL_WINDOW after a
SIGKILL of one of that server's workers counts against that kill (it may
have been in flight on the killed worker); any other failure fails the run.
A kill's time is taken before the signal is sent, and kills never fall on a
HUP, so a failure a HUP causes is never put down to a kill. Worker RSS and
descriptor counts must not grow from the first samples to the last (a
bound, not a trend test). The run stops by itself after --minutes, prints a
summary and writes it as JSON with --json. It only talks to 127.0.0.1.
"""
import argparse
import hashlib
import http.client
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
APPS = REPO / "loadtest" / "apps"
UPLOAD = os.urandom(2 * 1024 * 1024)
UPLOAD_ANSWER = ("%d %s" % (len(UPLOAD), hashlib.sha256(UPLOAD).hexdigest())).encode()
STREAM_LEN = 64 * 16384
IO_TIMEOUT = 30.0
# A failure this close after a SIGKILL may be a request the killed worker had.
KILL_WINDOW = 3.0
HUP_EVERY = 30.0
KILL_EVERY = 60.0
SAMPLE_EVERY = 30.0


class Run:
    def __init__(self, deadline):
        self.deadline = deadline
        self.lock = threading.Lock()
        self.ok = {}
        self.retries = {}
        self.failures = []  # (time, kind, detail)
        self.kills = []     # (time, server, pid)
        self.hups = 0
        self.samples = []   # (time, server, pid, rss_kib, fds)

    def done(self):
        return time.monotonic() >= self.deadline

    def success(self, kind):
        with self.lock:
            self.ok[kind] = self.ok.get(kind, 0) + 1

    def retry(self, kind):
        with self.lock:
            self.retries[kind] = self.retries.get(kind, 0) + 1

    def failure(self, kind, detail):
        with self.lock:
            self.failures.append((time.monotonic(), kind, detail))


def read_response(sock_file):
    """Read one response from a file over a socket: (status, body, closing)."""
    line = sock_file.readline()
    if not line:
        raise ConnectionError("closed before the status line")
    status = int(line.split()[1])
    length, chunked, closing = None, False, False
    while True:
        h = sock_file.readline()
        if h in (b"\r\n", b""):
            break
        name, _, value = h.decode("latin-1").partition(":")
        name = name.lower()
        if name == "content-length":
            length = int(value)
        elif name == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
        elif name == "connection" and "close" in value.lower():
            closing = True
    if chunked:
        body = b""
        while True:
            size = int(sock_file.readline().split(b";")[0], 16)
            if size == 0:
                sock_file.readline()
                break
            body += sock_file.read(size)
            sock_file.readline()
        return status, body, closing
    return status, sock_file.read(length or 0), closing


# A kept-alive connection the server closed just as the client reused it
# (a worker draining on HUP or --max-requests closes idle connections):
# HTTP clients retry such a request on a new connection (RFC 9112 9.3.1),
# and so does the soak, once.
STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


def client(run, kind, once, port):
    """Call `once(conn)` until the run ends. It returns whether the
    connection may be used again; a failure drops the connection."""
    conn = None
    while not run.done():
        fresh = conn is None
        if fresh:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=IO_TIMEOUT)
        try:
            keep = once(conn)
            run.success(kind)
            if not keep:
                conn.close()
                conn = None
        except Exception as e:  # noqa: BLE001 - every failure is counted
            conn.close()
            conn = None
            if not fresh and isinstance(e, STALE):
                run.retry(kind)
                continue
            run.failure(kind, "%s: %s" % (type(e).__name__, e))
            time.sleep(0.05)


def expect(resp, body=None, length=None):
    data = resp.read()
    if resp.status != 200:
        raise AssertionError("status %d" % resp.status)
    if body is not None and data != body:
        raise AssertionError("body %r" % data[:80])
    if length is not None and len(data) != length:
        raise AssertionError("%d bytes, wanted %d" % (len(data), length))
    return True


def keep_alive(conn):
    conn.request("GET", "/pid")
    resp = conn.getresponse()
    expect(resp)
    return not resp.will_close


def close_each(conn):
    conn.request("GET", "/pid", headers={"Connection": "close"})
    expect(conn.getresponse())
    return False


def upload(conn):
    conn.request("POST", "/upload", body=UPLOAD,
                 headers={"Content-Type": "application/octet-stream"})
    resp = conn.getresponse()
    expect(resp, body=UPLOAD_ANSWER)
    return not resp.will_close


def stream(conn):
    conn.request("GET", "/stream?n=64")
    resp = conn.getresponse()
    expect(resp, length=STREAM_LEN)
    return not resp.will_close


def slow_reader(conn):
    conn.request("GET", "/stream?n=64")
    resp = conn.getresponse()
    got = 0
    while True:
        piece = resp.read(16384)
        if not piece:
            break
        got += len(piece)
        time.sleep(0.02)
    if resp.status != 200 or got != STREAM_LEN:
        raise AssertionError("status %d, %d bytes" % (resp.status, got))
    return not resp.will_close


def pipelined(run, kind, port):
    """Three requests written at once. A response with `Connection: close`
    (a draining worker) leaves the rest unanswered: they are sent again on
    a new connection, as RFC 9112 9.3.2 asks of a pipelining client."""
    while not run.done():
        left = 3
        try:
            while left:
                with socket.create_connection(("127.0.0.1", port),
                                              timeout=IO_TIMEOUT) as s:
                    s.sendall(b"GET /pid HTTP/1.1\r\nHost: soak\r\n\r\n" * left)
                    f = s.makefile("rb")
                    for _ in range(left):
                        status, _body, closing = read_response(f)
                        if status != 200:
                            raise AssertionError("status %d" % status)
                        left -= 1
                        if closing:
                            break
                if left:
                    run.retry(kind)
            run.success(kind)
        except Exception as e:  # noqa: BLE001
            run.failure(kind, "%s: %s" % (type(e).__name__, e))
            time.sleep(0.05)


# Close codes of a server that hands a WebSocket over (1012: a worker
# replaced on HUP or --max-requests) or goes away (1001): the client opens a
# new connection and sends again what was not echoed.
WS_HANDOVER = (1001, 1012)


def http2_client(run, kind, port, upload_too):
    """Requests over one HTTP/2 connection at a time (httpx, prior knowledge)."""
    import httpx

    base = "http://127.0.0.1:%d" % port
    client = None
    n = 0
    while not run.done():
        fresh = client is None
        if fresh:
            client = httpx.Client(http1=False, http2=True, timeout=IO_TIMEOUT)
        n += 1
        try:
            if upload_too and n % 4 == 0:
                r = client.post(base + "/upload", content=UPLOAD,
                                headers={"Content-Type": "application/octet-stream"})
                if r.status_code != 200 or r.content != UPLOAD_ANSWER:
                    raise AssertionError("upload: status %d, %r" % (r.status_code, r.content[:80]))
            else:
                r = client.get(base + "/pid")
                if r.status_code != 200 or not r.content.isdigit():
                    raise AssertionError("status %d, %r" % (r.status_code, r.content[:80]))
                if r.http_version != "HTTP/2":
                    raise AssertionError("answered over %s" % r.http_version)
            run.success(kind)
        except Exception as e:  # noqa: BLE001
            client.close()
            client = None
            # A connection the server ended with GOAWAY: sent again on a new
            # one. Python's h2 (under httpx) refuses any frame after a GOAWAY,
            # even the rest of a response in flight, and says so as a local
            # protocol error; that request is sent again too. A draining
            # worker (HUP, --max-requests) sends its GOAWAY on a connection it
            # accepts as it stops, so this happens on a fresh connection too:
            # a frame received in the closed state is that case.
            after_goaway = (isinstance(e, httpx.LocalProtocolError)
                            and "Invalid input ConnectionInputs.RECV_" in str(e)
                            and "state ConnectionState.CLOSED" in str(e))
            if after_goaway or (not fresh and isinstance(e, (
                    httpx.RemoteProtocolError, httpx.LocalProtocolError,
                    httpx.ReadError, httpx.WriteError))):
                run.retry(kind)
                continue
            run.failure(kind, "%s: %s" % (type(e).__name__, e))
            time.sleep(0.05)
    if client is not None:
        client.close()


def websocket_client(run, kind, port, sizes):
    """Echo messages of the given sizes, alternately text and bytes, on one
    long-lived WebSocket; every answer must equal what was sent."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    url = "ws://127.0.0.1:%d/echo" % port
    rng = random.Random(kind)
    ws = None
    while not run.done():
        size = rng.choice(sizes)
        message = (os.urandom(size // 2).hex() if rng.random() < 0.5 else os.urandom(size))
        try:
            if ws is None:
                ws = connect(url, open_timeout=IO_TIMEOUT, close_timeout=5,
                             max_size=2 * max(sizes))
            ws.send(message)
            got = ws.recv(timeout=IO_TIMEOUT)
            if got != message:
                raise AssertionError("echo differs (%d bytes sent)" % size)
            run.success(kind)
        except ConnectionClosed as e:
            ws = None
            code = e.rcvd.code if e.rcvd is not None else None
            if code in WS_HANDOVER:
                run.retry(kind)
                continue
            run.failure(kind, "closed: %s" % e)
            time.sleep(0.05)
        except Exception as e:  # noqa: BLE001
            if ws is not None:
                ws.close()
            ws = None
            run.failure(kind, "%s: %s" % (type(e).__name__, e))
            time.sleep(0.05)
    if ws is not None:
        ws.close()


def workers(master):
    try:
        text = Path("/proc/%d/task/%d/children" % (master, master)).read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def sample(pid):
    try:
        status = Path("/proc/%d/status" % pid).read_text()
        rss = int(next(l for l in status.splitlines() if l.startswith("VmRSS:")).split()[1])
        fds = len(os.listdir("/proc/%d/fd" % pid))
        return rss, fds
    except (OSError, StopIteration, ValueError):
        return None


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_answering(port, proc, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("the server exited with %s before answering" % proc.returncode)
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/pid")
            if c.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit("the server did not answer within %gs" % timeout)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--server", default=str(REPO / ".venv" / "bin" / "ferrocorn"))
    ap.add_argument("--io-engine", default="auto")
    ap.add_argument("--json", help="write the summary here")
    ap.add_argument("--log", default=None, help="the server's log (default: a temp file)")
    args = ap.parse_args()

    log_path = args.log or os.path.join(tempfile.gettempdir(), "ferrocorn-soak-%d.log" % os.getpid())
    log = open(log_path, "wb")
    servers = {}
    for name, app, extra in [("wsgi", "soak_app:app", []), ("asgi", "soak_asgi:app", ["-k", "asgi"])]:
        port = free_port()
        cmd = [args.server, "-b", "127.0.0.1:%d" % port, "-w", "2", "--io-engine", args.io_engine,
               "--max-requests", "100000", "--max-requests-jitter", "10000", "--timeout", "30",
               "--http-protocols", "h2,h1", "--http2-cleartext", "both",
               "--chdir", str(APPS), *extra, app]
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        servers[name] = (proc, port)
    try:
        for proc, port in servers.values():
            wait_answering(port, proc)
        start = time.monotonic()
        run = Run(start + args.minutes * 60)
        threads = []
        for name, (_proc, port) in servers.items():
            for kind, once in [("keep-alive", keep_alive), ("close", close_each),
                               ("upload", upload), ("stream", stream),
                               ("slow-reader", slow_reader)]:
                threads.append(threading.Thread(target=client, daemon=True,
                                                args=(run, "%s %s" % (name, kind), once, port)))
            threads.append(threading.Thread(target=pipelined, daemon=True,
                                            args=(run, "%s pipelined" % name, port)))
            threads.append(threading.Thread(target=http2_client, daemon=True,
                                            args=(run, "%s h2" % name, port, False)))
            threads.append(threading.Thread(target=http2_client, daemon=True,
                                            args=(run, "%s h2 upload" % name, port, True)))
        asgi_port = servers["asgi"][1]
        threads.append(threading.Thread(target=websocket_client, daemon=True,
                                        args=(run, "asgi websocket", asgi_port, [1024, 2048, 4096])))
        threads.append(threading.Thread(target=websocket_client, daemon=True,
                                        args=(run, "asgi websocket-large", asgi_port, [256 * 1024])))
        for t in threads:
            t.start()
        next_hup = start + HUP_EVERY
        # Midway between two HUPs: a failure at a HUP is never put down to a kill.
        next_kill = start + KILL_EVERY - HUP_EVERY / 2
        next_sample = start
        kill_turn = 0
        while not run.done():
            now = time.monotonic()
            if now >= next_sample:
                for name, (proc, _port) in servers.items():
                    for pid in workers(proc.pid):
                        s = sample(pid)
                        if s:
                            run.samples.append((now - start, name, pid, s[0], s[1]))
                next_sample += SAMPLE_EVERY
            if now >= next_hup:
                for proc, _port in servers.values():
                    proc.send_signal(signal.SIGHUP)
                run.hups += 1
                next_hup += HUP_EVERY
            if now >= next_kill:
                name = list(servers)[kill_turn % len(servers)]
                proc = servers[name][0]
                kill_turn += 1
                pids = workers(proc.pid)
                if pids:
                    victim = random.choice(pids)
                    # Taken before the signal: a client thread may see the
                    # worker's connections end before this thread runs again.
                    at = time.monotonic()
                    try:
                        os.kill(victim, signal.SIGKILL)
                        run.kills.append((at, name, victim))
                    except ProcessLookupError:
                        pass
                next_kill += KILL_EVERY
            for name, (proc, _port) in servers.items():
                if proc.poll() is not None:
                    raise SystemExit("the %s server exited with %s mid-run" % (name, proc.returncode))
            time.sleep(0.2)
        for t in threads:
            t.join(IO_TIMEOUT + 5)
    finally:
        for proc, _port in servers.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc, _port in servers.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        log.close()

    def kills_before(f):
        """Kills of the failed request's server at most KILL_WINDOW before it."""
        server = f[1].split()[0]
        return [k for k, name, _ in run.kills if name == server and k <= f[0] <= k + KILL_WINDOW]

    explained, unexplained = [], []
    for f in run.failures:
        (explained if kills_before(f) else unexplained).append(f)
    per_kill = {}
    for f in explained:
        k = max(kills_before(f))
        per_kill[k] = per_kill.get(k, 0) + 1

    def spread(values):
        return (min(values), statistics.median(values), max(values)) if values else None

    quarter = args.minutes * 60 / 4
    memory = {}
    rss_ok = fds_ok = True
    for name in servers:
        first = [x for x in run.samples if x[1] == name and x[0] <= quarter]
        last = [x for x in run.samples if x[1] == name and x[0] >= 3 * quarter]
        memory[name] = {
            "worker_rss_kib_first_quarter": spread([x[3] for x in first]),
            "worker_rss_kib_last_quarter": spread([x[3] for x in last]),
            "worker_fds_first_quarter": spread([x[4] for x in first]),
            "worker_fds_last_quarter": spread([x[4] for x in last]),
        }
        if first and last:
            rss_ok = rss_ok and max(x[3] for x in last) <= 1.25 * max(x[3] for x in first)
            fds_ok = fds_ok and max(x[4] for x in last) <= max(x[4] for x in first) + 8
    summary = {
        "minutes": args.minutes,
        "io_engine": args.io_engine,
        "requests_ok": run.ok,
        "requests_ok_total": sum(run.ok.values()),
        "retried_after_a_close": run.retries,
        "hups": run.hups,
        "kills": len(run.kills),
        "failed_near_a_kill": len(explained),
        "failures_near_a_kill_first": [(round(t - (run.deadline - args.minutes * 60), 1), k, d)
                                       for t, k, d in explained[:10]],
        "failed_per_kill_max": max(per_kill.values(), default=0),
        "failed_otherwise": len(unexplained),
        "failures_otherwise_first": [(round(t - (run.deadline - args.minutes * 60), 1), k, d)
                                     for t, k, d in unexplained[:10]],
        "workers": memory,
        "rss_flat": rss_ok,
        "fds_flat": fds_ok,
        "server_log": log_path,
    }
    summary["verdict"] = "pass" if (not unexplained and rss_ok and fds_ok) else "fail"
    print(json.dumps(summary, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
    return 0 if summary["verdict"] == "pass" else 1


if __name__ == "__main__":
    sys.exit(main())
