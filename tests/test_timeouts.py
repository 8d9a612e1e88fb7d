"""`--timeout` (a stuck or silent worker is aborted with a traceback and
replaced), `--max-requests` and `--max-worker-rss` (a worker is recycled
without failing a request)."""
import os
import re
import signal

import pytest

from conftest import free_port
from servers import PROC_APP
from support import ConnectionClosed, Load, alive, wait_until

pytestmark = pytest.mark.timeout(60)


def replaced(server, old_pid, count=1):
    w = server.workers()
    return w if len(w) == count and old_pid not in w else None


def test_request_running_past_the_timeout_is_logged_with_its_traceback(serve):
    server = serve(PROC_APP, "--timeout", "2")
    workers = server.wait_workers(1)
    (pid,) = workers
    conn = server.connect(timeout=15)
    try:
        conn.send(b"GET /stuck?id=7 HTTP/1.1\r\nHost: x\r\n\r\n")
        # The worker is aborted: the connection ends without an answer.
        with pytest.raises((ConnectionClosed, ConnectionResetError)):
            conn.read_response()
    finally:
        conn.close()
    wait_until(lambda: replaced(server, pid), 15, what="a replacement worker")
    assert not alive(pid, workers[pid])
    log = wait_until(lambda: (lambda t: t if "stuck_in_the_handler" in t else None)(server.log()),
                     5, what="the traceback in the log")
    m = re.search(r"WORKER TIMEOUT \(pid:%d\): GET /stuck\S* has been running for ([\d.]+) s"
                  % pid, log)
    assert m, log
    # Past the limit, printed to a tenth of a second: 2001 ms reads "2.0".
    assert 2.0 <= float(m.group(1)) < 6.0
    # Python's own traceback of the stuck call, naming the function and the app.
    tb = log[m.end():]
    assert re.search(r'File "[^"]*procapp\.py", line \d+ in stuck_in_the_handler', tb), tb
    assert re.search(r'File "[^"]*procapp\.py", line \d+ in app', tb), tb
    # The replacement serves.
    assert server.request(target="/pid").status == 200


@pytest.mark.parametrize("engine", ["epoll"])
def test_silent_worker_is_killed_and_replaced(serve):
    server = serve(PROC_APP, "--timeout", "2")
    (pid,) = server.wait_workers(1)
    os.kill(pid, signal.SIGSTOP)
    try:
        wait_until(lambda: replaced(server, pid), 15, what="the stopped worker's replacement")
    finally:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
    assert re.search(r"WORKER TIMEOUT \(pid:%d\): silent for" % pid, server.log())
    assert server.request(target="/pid").status == 200


def test_no_timeout_for_a_slow_request_within_the_limit(serve):
    server = serve(PROC_APP, "--timeout", "2")
    (pid,) = server.wait_workers(1)
    resp = server.request(target="/sleep?s=1.2")
    assert resp.status == 200 and int(resp.body) == pid
    resp = server.request(target="/sleep?s=1.2")
    assert int(resp.body) == pid
    assert "WORKER TIMEOUT" not in server.log()


def test_max_requests_with_jitter_recycles_workers_without_failing_a_request(serve):
    server = serve(PROC_APP, "--max-requests", "50", "--max-requests-jitter", "10", workers=2)
    first = server.wait_workers(2)
    load = Load(server.host, server.port, clients=4, max_requests=500, max_seconds=40)
    load.start().wait_done()
    load.stop()
    assert load.failures == [], load.summary()
    assert load.ok == 500
    # A worker past its limit serves on until its replacement is ready, so
    # it may answer a few more than 60; still, workers were recycled.
    print("answers per worker:", load.pids)
    assert len(load.pids) >= 4, load.pids
    assert "asked to be replaced" in server.log()
    workers = server.wait_workers(2)
    assert not set(workers) & set(first)


@pytest.mark.ferrocorn_only
def test_max_worker_rss_recycles_a_growing_worker_without_failing_a_request(serve):
    mport = free_port()
    server = serve(PROC_APP, "--max-worker-rss", "96", "--metrics-bind", "127.0.0.1:%d" % mport,
                   workers=2)
    first = server.wait_workers(2)
    # Each answer keeps one more MiB in its worker: about 100 requests take a
    # worker past 96 MiB, so 400 recycle some workers, and a worker that
    # asked serves on until its successor is ready.
    load = Load(server.host, server.port, path="/pid?grow_mb=1", clients=4, max_requests=400,
                max_seconds=40)
    load.start().wait_done()
    load.stop()
    assert load.failures == [], load.summary()
    assert load.ok == 400
    # The load may end before a successor is ready: the worker that asked
    # serves on meanwhile, so no request waits for it.
    print("answers per worker:", load.pids)
    log = server.log()
    m = re.search(r"Autorestarting worker \(pid:(\d+)\): resident memory ([\d.]+) MiB is over "
                  r"--max-worker-rss 96 MiB", log)
    assert m, log
    assert int(m.group(1)) in load.pids
    # Past the limit by at least a page; shown to 0.1 MiB, so 96.0 is possible.
    assert float(m.group(2)) >= 96
    assert "asked to be replaced (--max-worker-rss)" in log
    # The worker that passed the limit is retired once its successor is
    # ready. (Which slots the clients' connections land on is up to the
    # kernel, so the other first worker may not have grown as far.)
    recycled = int(m.group(1))
    assert recycled in first
    wait_until(lambda: recycled not in server.workers(), 30, what="the recycled worker to leave")
    assert len(set(server.wait_workers(2)) - set(first)) >= 1
    import urllib.request
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % mport, timeout=5) as r:
        text = r.read().decode()
    m = re.search(r"^ferrocorn_worker_rss_recycles_total (\d+)$", text, re.M)
    assert m and int(m.group(1)) >= 1, text

