"""Stack dumps: SIGUSR2 to a worker writes every thread's stack (Rust frames,
then Python's) to the error log and the worker goes on serving; a worker
stuck where Python cannot run its SIGABRT handler still leaves its stacks in
the log before the master's SIGKILL."""
import os
import re
import signal

import pytest

from servers import PROC_APP
from support import ConnectionClosed, alive, wait_until

pytestmark = pytest.mark.timeout(60)

END = "==== end of stack dump ===="


def logged(server, text, timeout, what):
    return wait_until(lambda: (lambda t: t if text in t else None)(server.log()),
                      timeout, what=what)


def test_usr2_to_a_worker_dumps_every_thread_and_the_worker_keeps_serving(serve):
    server = serve(PROC_APP, "--threads", "2")
    (pid,) = server.wait_workers(1)
    os.kill(pid, signal.SIGUSR2)
    log = logged(server, END, 15, "the end of the stack dump")
    dump = log[log.index("==== stack dump of process %d" % pid):]
    # The worker's own threads, by name, with resolved Rust frames.
    threads = re.findall(r"^-- thread (\d+) \(([^)]*)\)$", dump, re.M)
    assert len(threads) >= 3, dump
    assert "ferrocorn::" in dump, dump
    # Python's frames follow, from faulthandler.
    assert "==== Python frames ====" in dump, dump
    assert re.search(r"Thread 0x[0-9a-f]+", dump), dump
    # Nothing stopped: the same worker answers.
    assert server.workers().keys() == {pid}
    resp = server.request(target="/pid")
    assert resp.status == 200 and resp.body == str(pid).encode()


def test_worker_stuck_holding_the_gil_leaves_its_stacks_before_it_is_killed(serve):
    server = serve(PROC_APP, "--timeout", "2")
    workers = server.wait_workers(1)
    (pid,) = workers
    conn = server.connect(timeout=30)
    try:
        conn.send(b"GET /stuck-in-c HTTP/1.1\r\nHost: x\r\n\r\n")
        with pytest.raises((ConnectionClosed, ConnectionResetError)):
            conn.read_response()
    finally:
        conn.close()
    wait_until(lambda: (lambda w: w if len(w) == 1 and pid not in w else None)(
        server.workers()), 20, what="a replacement worker")
    assert not alive(pid, workers[pid])
    log = logged(server, END, 15, "the stack dump")
    assert re.search(r"WORKER TIMEOUT \(pid:%d\)" % pid, log), log
    assert "Worker (pid:%d) did not exit after SIGABRT; asking for its stacks" % pid in log
    dump = log[log.index("==== stack dump of process %d" % pid):]
    # The Rust side shows where the main thread waits; Python's side names
    # the app's function.
    assert "pthread_mutex" in dump, dump
    assert re.search(r'File "[^"]*procapp\.py", line \d+ in blocked_holding_the_gil', dump), dump
    assert server.request(target="/pid").status == 200
