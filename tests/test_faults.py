"""Faults the server must survive: workers killed or stopped under load, the
master killed, file descriptors or disk running out, and bursts of
connections larger than the io engine's queues. docs/faults.md says what the
server does in each case.

Every test runs on both io engines, bounds its load in count and time, and
waits by polling for the state it needs.
"""
import json
import os
import random
import re
import resource
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import free_port
from servers import launch  # noqa: F401  (the fixture)
from support import (IO_TIMEOUT, Load, RawConn, alive, cpus_allowed, gone, proc_stat,
                     request_bytes, wait_until)
from test_metrics_endpoint import scrape

pytestmark = [pytest.mark.ferrocorn_only, pytest.mark.timeout(90)]

MiB = 1 << 20


def metrics(serve, app, *args, workers=1, env=None):
    """A server with --metrics-bind; `server.metric(name)` reads one sample."""
    mport = free_port()
    server = serve(app, "--metrics-bind", "127.0.0.1:%d" % mport, *args, workers=workers,
                   env=env)
    server.metric = lambda name: scrape(mport).get((name, ""))
    return server


def replacement(server, victim, count):
    """The worker set once `victim` is gone and `count` workers run again."""
    return wait_until(
        lambda: (lambda w: w if len(w) == count and victim not in w else None)(server.workers()),
        15, what="a replacement for worker %d" % victim)


def cpu_ticks(pid):
    """utime + stime of a process, in clock ticks (/proc/PID/stat fields 14, 15)."""
    with open("/proc/%d/stat" % pid) as f:
        data = f.read()
    rest = data[data.rindex(")") + 2:].split()
    return int(rest[11]) + int(rest[12])


# ------------------------------------------------------------ 1. kill -9 of workers

KILLS = 3
CLIENTS = 4


def test_killing_workers_under_load_fails_only_their_in_flight_requests(serve):
    server = metrics(serve, "basic:app", "--keep-alive", "30", workers=2)
    workers = server.wait_workers(2)
    cpu_of_slot = {pid: cpus_allowed(pid) for pid in workers}
    rng = random.Random(7)
    killed = []
    load = Load(server.host, server.port, clients=CLIENTS, max_requests=20000,
                max_seconds=40, pause=0.001)
    with load:
        wait_until(load.all_answered, 10, what="every client answered once")
        for _ in range(KILLS):
            # Every client has talked to a worker since the last kill, so a
            # failure below can be put down to the worker it last talked to.
            with load._lock:
                load.last_pids = [None] * CLIENTS
            wait_until(load.all_answered, 10, what="every client answered again")
            victim = rng.choice(sorted(workers))
            cpus = cpus_allowed(victim)
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)
            after = replacement(server, victim, 2)
            (new,) = set(after) - set(workers)
            # The slot's replacement is pinned to the slot's CPU.
            assert cpus_allowed(new) == cpus and len(cpus) == 1
            cpu_of_slot[new] = cpus
            workers = after
            load.wait_for(200)
    print("kills:", killed, load.summary())
    # Only requests in flight on a killed worker failed: at most one per
    # client per kill (a client has one request in flight), and each after
    # an answer from a worker that was then killed.
    assert load.ok > 300
    assert len(load.failures) <= CLIENTS * KILLS, load.summary()
    assert all(f.last_pid in killed for f in load.failures), load.summary()
    assert server.metric("ferrocorn_worker_signal_deaths_total") == KILLS
    assert server.metric("ferrocorn_worker_restarts_total") == KILLS
    log = server.log()
    for pid in killed:
        assert "Worker (pid:%d) was sent SIGKILL!" % pid in log


# ------------------------------------------------------------ 2. kill -9 of the master

def test_workers_leave_with_a_killed_master_and_free_the_port(serve):
    server = serve("basic:app", workers=2)
    workers = server.wait_workers(2)
    # One connection kept alive: a worker does not wait for idle clients.
    with server.connect() as conn:
        conn.send(request_bytes(target="/pid"))
        assert conn.read_response().status == 200
        os.kill(server.pid, signal.SIGKILL)
        server.proc.wait(IO_TIMEOUT)
        wait_until(lambda: all(gone(pid, start) for pid, start in workers.items()), 10,
                   what="the workers of the killed master to exit")

    def port_free():
        # What a restarted server does: SO_REUSEADDR, no SO_REUSEPORT, so a
        # listener left open anywhere makes bind or listen fail.
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", server.port))
                s.listen(1)
            except OSError:
                return False
            return True
    wait_until(port_free, 10, what="port %d to be free" % server.port)


# ------------------------------------------------------------ 3. SIGSTOP

def test_stopped_worker_is_killed_after_the_timeout_and_its_queue_is_served(serve):
    server = serve("basic:app", "--timeout", "2")
    (pid,) = server.wait_workers(1)
    os.kill(pid, signal.SIGSTOP)
    conns = []
    try:
        wait_until(lambda: proc_stat(pid)[0] == "T", 15, what="the worker to stop")
        for _ in range(4):
            c = server.connect(timeout=20)
            c.send(request_bytes(target="/pid"))
            conns.append(c)
        new = replacement(server, pid, 1)
        for c in conns:
            resp = c.read_response()
            assert resp.status == 200
            assert int(resp.body) in new
    finally:
        for c in conns:
            c.close()
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
    log = server.log()
    assert re.search(r"WORKER TIMEOUT \(pid:%d\): silent for" % pid, log)
    # A stopped process cannot run its SIGABRT handler: SIGKILL ends it.
    assert "Worker (pid:%d) was aborted after the timeout (kill)" % pid in log


# ------------------------------------------------------------ 4. out of descriptors

# Descriptors the server may open: the worker boots with about 25 open, so
# a few dozen connections use up the rest. (Set from the start: io_uring
# takes the limit when an accept is queued, so lowering it later would
# reach the worker only at its next accept.)
NOFILE = 64


def test_out_of_descriptors_backs_off_keeps_serving_and_recovers(launch):
    port, mport = free_port(), free_port()
    server = launch("basic:app", "-b", "127.0.0.1:%d" % port, "--keep-alive", "30",
                    "--metrics-bind", "127.0.0.1:%d" % mport, port=port,
                    prefix=["prlimit", "--nofile=%d:%d" % (NOFILE, 4 * NOFILE), "--"])
    (pid,) = server.wait_workers(1)
    kept = server.connect()
    kept.send(request_bytes(target="/pid"))
    assert kept.read_response().status == 200
    clients = []
    try:
        for _ in range(2 * NOFILE):
            c = server.connect(timeout=20)
            c.send(request_bytes(target="/pid"))
            clients.append(c)
        wait_until(lambda: "accept failed: Too many open files" in server.log(), 10,
                   what="accept to fail with EMFILE")
        t0, ticks0 = time.monotonic(), cpu_ticks(pid)
        # Open connections are still served.
        for _ in range(3):
            kept.send(request_bytes(target="/pid"))
            assert kept.read_response().status == 200
        time.sleep(2.0)  # the window whose CPU time is measured
        ticks, window = cpu_ticks(pid) - ticks0, time.monotonic() - t0
        hz = os.sysconf("SC_CLK_TCK")
        print("CPU while out of descriptors: %d ticks in %.2fs" % (ticks, window))
        # A worker spinning on accept would use the whole window.
        assert ticks < 0.25 * hz * window, "%d ticks in %.2fs" % (ticks, window)
        lines = server.log().count("accept failed: Too many open files")
        assert lines <= 2 + window, "%d warnings in %.2fs" % (lines, window)
        assert scrape(mport).get(("ferrocorn_accept_rests_total", ""), 0) >= 1
        # Descriptors are there again: every waiting client is answered.
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (4 * NOFILE, 4 * NOFILE))
        for c in clients:
            resp = c.read_response()
            assert resp.status == 200 and int(resp.body) == pid
    finally:
        for c in clients:
            c.close()
        kept.close()


# ------------------------------------------------------------ 5. full disk

@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs, unmounted after the test."""
    d = tmp_path / "small-disk"
    d.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0777", "tmpfs", str(d)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here: %s" % (res.stderr.strip() or res.returncode))
    yield d
    subprocess.run(["umount", "-l", str(d)], capture_output=True)


def post_raw(server, target, body, timeout=30):
    """POST `body` with a Content-Length, sending from a thread (the server
    may answer before reading it all); returns the response."""
    with server.connect(timeout=timeout) as conn:
        conn.send(request_bytes("POST", target, headers=[("Content-Length", str(len(body)))]))

        def send():
            try:
                conn.sock.sendall(body)
            except OSError:
                pass
        t = threading.Thread(target=send, daemon=True)
        t.start()
        resp = conn.read_final_response()[1]
        t.join(timeout)
        return resp


def test_full_body_temp_dir_fails_only_that_request(serve, small_disk):
    server = serve("uploads:app", "--body-temp-dir", str(small_disk), "--body-buffer-size",
                   "65536", env={"TEST_BODY_DIR": str(small_disk)})
    (pid,) = server.wait_workers(1)
    body = bytes(range(256)) * (12 * 1024)  # 3 MiB, past the 2 MiB disk
    resp = post_raw(server, "/hash", body)
    assert resp.status == 500, resp
    assert b"could not be stored" in resp.body
    assert str(small_disk).encode() not in resp.body
    log = server.log()
    assert re.search(r"Cannot store the request body from ip=127\.0\.0\.1: .*"
                     r"No space left on device", log), log
    # The same worker serves on, and the file of the failed body is gone.
    small = post_raw(server, "/hash", body[:1000])
    assert small.status == 200 and json.loads(small.body)["length"] == 1000
    spilled = post_raw(server, "/hash", body[:MiB])
    assert spilled.status == 200 and json.loads(spilled.body)["length"] == MiB
    with server.connect() as conn:
        conn.send(request_bytes("GET", "/fds"))
        assert json.loads(conn.read_final_response()[1].body)["body_files"] == 0
    assert server.workers().keys() == {pid}
    st = os.statvfs(small_disk)
    assert (st.f_blocks - st.f_bfree) * st.f_frsize < 64 * 1024


# ------------------------------------------------------------ 6. bursts

BURST = 3000


def test_a_burst_of_connections_sending_at_once_is_all_answered(serve):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = BURST + 1000
    if hard != resource.RLIM_INFINITY and hard < want:
        pytest.skip("RLIMIT_NOFILE hard limit %d < %d" % (hard, want))
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    conns = []
    try:
        # The server inherits the raised limit.
        server = metrics(serve, "basic:app", "--worker-connections", str(BURST + 100),
                         "--backlog", "4096")
        for _ in range(BURST):
            conns.append(socket.create_connection((server.host, server.port), timeout=20))
        req = request_bytes(target="/pid", headers=[("Connection", "close")])
        # Every request goes out before any answer is read.
        for c in conns:
            c.sendall(req)
        answered = 0
        deadline = time.monotonic() + 60
        for c in conns:
            c.settimeout(max(1.0, deadline - time.monotonic()))
            data = b""
            while True:
                chunk = c.recv(65536)
                if not chunk:
                    break
                data += chunk
            assert data.startswith(b"HTTP/1.1 200 "), data[:100]
            answered += 1
        assert answered == BURST
        counts = {name: server.metric(name) for name in (
            "ferrocorn_uring_cq_overflows_total",
            "ferrocorn_uring_recv_buffer_exhaustions_total",
            "ferrocorn_accept_rests_total")}
        print("burst of %d: %s" % (BURST, counts))
        assert all(v is not None for v in counts.values())
        assert server.metric("ferrocorn_requests_total") >= BURST
    finally:
        for c in conns:
            c.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
