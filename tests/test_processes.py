"""The process model: a master with N workers, CPU pinning, restarts,
and clean stops on TERM and INT."""
import os
import re
import signal
import time

import pytest

from support import alive, cpus_allowed, wait_until


def test_master_has_one_child_per_worker(serve):
    server = serve("basic:app", workers=3)
    workers = server.wait_workers(3)
    assert server.pid not in workers


def test_requests_are_served_by_the_workers(serve):
    server = serve("basic:app", workers=2)
    workers = server.wait_workers(2)
    pids = {int(server.request(target="/pid").body) for _ in range(10)}
    assert pids <= set(workers)


def pinned_cpu(pid):
    """The one CPU a worker is pinned to. A worker pins itself just after
    the fork, so this waits (bounded) for its affinity to narrow."""
    cpus = wait_until(lambda: (lambda c: c if len(c) == 1 else None)(cpus_allowed(pid)),
                      10, what="worker %d to be pinned to one CPU (it may run on %s)"
                      % (pid, cpus_allowed(pid)))
    return cpus[0]


@pytest.mark.ferrocorn_only
def test_each_worker_is_pinned_to_one_cpu_round_robin(serve):
    allowed = sorted(os.sched_getaffinity(0))
    count = len(allowed) + 1  # wraps around once
    server = serve("basic:app", workers=count)
    workers = server.wait_workers(count)
    pinned = [pinned_cpu(pid) for pid in workers]
    expected = [allowed[i % len(allowed)] for i in range(count)]
    assert sorted(pinned) == sorted(expected)


@pytest.mark.ferrocorn_only
def test_startup_log_names_cpu_and_io_engine_of_each_worker(serve, engine):
    server = serve("basic:app", workers=2)
    workers = server.wait_workers(2)

    def engine_lines():
        text = server.log()
        found = {}
        for pid in workers:
            m = re.search(r"pid: %d\b[^\n]*cpu (\d+)[^\n]*io engine (\w+)" % pid, text)
            if not m:
                return None
            found[pid] = m.group(2)
        return found

    engines = wait_until(engine_lines, 10, what="a line naming each worker's io engine")
    want = {"uring": "io_uring", "epoll": "epoll"}[engine]
    assert set(engines.values()) == {want}, server.log()


def engine_of_only_worker(server):
    (pid,) = server.wait_workers(1)
    pattern = r"pid: %d\b[^\n]*io engine (\w+)" % pid
    text = wait_until(lambda: (lambda t: t if re.search(pattern, t) else None)(server.log()),
                      10, what="the worker's io engine line")
    return re.search(pattern, text).group(1), text


@pytest.mark.ferrocorn_only
@pytest.mark.parametrize("engine", ["auto"])
def test_auto_io_engine_uses_io_uring_or_says_why_not(serve):
    server = serve("basic:app")
    kind, text = engine_of_only_worker(server)
    if kind == "epoll":
        assert "io_uring unavailable" in text, text
    else:
        assert kind == "io_uring"


@pytest.mark.ferrocorn_only
@pytest.mark.parametrize("engine", ["env"])
def test_io_engine_env_variable_chooses_the_engine(serve):
    server = serve("basic:app", io_engine=None, env={"FERROCORN_IO_ENGINE": "epoll"})
    assert engine_of_only_worker(server)[0] == "epoll"


def test_killed_worker_is_replaced(serve):
    server = serve("basic:app", workers=2)
    workers = server.wait_workers(2)
    victim = next(iter(workers))
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: not alive(victim, workers[victim]), 10, what="the worker to die")
    replaced = wait_until(
        lambda: (lambda w: w if len(w) == 2 and victim not in w else None)(server.workers()),
        15, what="a replacement worker")
    assert len(set(replaced) - set(workers)) == 1
    for _ in range(6):
        assert server.request(target="/say/up").body == b"up"


@pytest.mark.ferrocorn_only
def test_replacement_worker_keeps_the_slot_cpu(serve):
    server = serve("basic:app", workers=2)
    workers = server.wait_workers(2)
    victim = next(iter(workers))
    cpu = pinned_cpu(victim)
    os.kill(victim, signal.SIGKILL)
    replaced = wait_until(
        lambda: (lambda w: w if len(w) == 2 and victim not in w else None)(server.workers()),
        15, what="a replacement worker")
    (new,) = set(replaced) - set(workers)
    assert pinned_cpu(new) == cpu


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_signal_stops_master_and_workers_with_status_0(serve, sig):
    server = serve("basic:app", workers=2)
    workers = server.wait_workers(2)
    assert server.request().status == 200
    assert server.stop(sig) == 0  # stop() also fails if a worker is left
    for pid, start in workers.items():
        assert not alive(pid, start)


def test_term_lets_an_in_flight_request_finish(serve):
    server = serve("basic:app")
    conn = server.connect()
    try:
        conn.send(b"GET /sleep?s=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        # Give the worker time to take the request before the signal.
        wait_until(lambda: server.workers(), 5, what="a worker")
        time.sleep(0.3)
        server.send_signal(signal.SIGTERM)
        resp = conn.read_response()
        assert resp.status == 200
        assert resp.body == b"slept"
    finally:
        conn.close()
    assert server.wait_exit() == 0


def test_hup_replaces_every_worker(serve):
    server = serve("basic:app", workers=2)
    old = server.wait_workers(2)
    server.send_signal(signal.SIGHUP)
    new = wait_until(
        lambda: (lambda w: w if len(w) == 2 and not set(w) & set(old) else None)(server.workers()),
        20, what="two new workers after HUP")
    assert len(new) == 2
    assert server.request(target="/say/reloaded").body == b"reloaded"


def test_ttin_adds_a_worker_and_ttou_removes_one(serve):
    server = serve("basic:app", workers=2)
    server.wait_workers(2)
    server.send_signal(signal.SIGTTIN)
    server.wait_workers(3)
    server.send_signal(signal.SIGTTOU)
    server.wait_workers(2)
    # Every new connection is served: none is left queued where no worker
    # accepts any more (several tries, as the kernel spreads connections).
    for i in range(8):
        assert server.request(target="/say/resized-%d" % i).body == b"resized-%d" % i


@pytest.mark.ferrocorn_only
def test_no_pin_workers_leaves_workers_on_every_allowed_cpu(serve):
    server = serve("basic:app", "--no-pin-workers", workers=2)
    workers = server.wait_workers(2)
    allowed = cpus_allowed(server.pid)
    for pid in workers:
        assert cpus_allowed(pid) == allowed, (pid, cpus_allowed(pid), allowed)
    wait_until(lambda: server.log().count("not pinned") == 2, 10, what="both workers' ready lines")
