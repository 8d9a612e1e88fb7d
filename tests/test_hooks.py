"""Server hooks set in a config file: when each runs, the objects it gets,
and what happens when one raises."""
import json
import signal
import textwrap

import pytest

from support import wait_until

pytestmark = [pytest.mark.timeout(60)]

NEEDS_WIRING = pytest.mark.xfail(
    strict=True, reason="needs worker wiring (hook calls in the arbiter and the worker)")

RECORDING_CONF = """
import json, os

RECORD = %(record)r

def _rec(name, **facts):
    facts["hook"] = name
    facts["os_pid"] = os.getpid()
    with open(RECORD, "a") as f:
        f.write(json.dumps(facts) + "\\n")

def on_starting(server):
    server.log.info("hook says starting %%s", server.cfg.proc_name)
    _rec("on_starting", pid=server.pid, workers=server.cfg.workers, bind=server.cfg.bind)

def on_reload(server):
    _rec("on_reload", pid=server.pid)

def when_ready(server):
    _rec("when_ready", pid=server.pid)

def pre_fork(server, worker):
    _rec("pre_fork", pid=server.pid)

def post_fork(server, worker):
    _rec("post_fork", worker_pid=worker.pid, age=worker.age, timeout=worker.cfg.timeout)

def post_worker_init(worker):
    _rec("post_worker_init", worker_pid=worker.pid)

def pre_request(worker, req):
    _rec("pre_request", method=req.method, path=req.path, query=req.query, uri=req.uri,
         version=list(req.version), headers=[list(h) for h in req.headers])

def post_request(worker, req, environ, resp):
    _rec("post_request", path=req.path, status=resp.status, code=resp.status_code,
         path_info=environ.get("PATH_INFO"), resp_headers=[list(h) for h in resp.headers])

def child_exit(server, worker):
    _rec("child_exit", worker_pid=worker.pid)

def worker_exit(server, worker):
    _rec("worker_exit", worker_pid=worker.pid)

def nworkers_changed(server, new_value, old_value):
    _rec("nworkers_changed", new=new_value, old=old_value)

def on_exit(server):
    _rec("on_exit", pid=server.pid)

def worker_abort(worker):
    _rec("worker_abort", worker_pid=worker.pid)

def worker_int(worker):
    _rec("worker_int", worker_pid=worker.pid)
"""


def records(path):
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def names(path):
    return [r["hook"] for r in records(path)]


@pytest.fixture
def recorded(serve, tmp_path):
    record = tmp_path / "hooks.jsonl"
    conf = tmp_path / "hooks.conf.py"
    conf.write_text(RECORDING_CONF % {"record": str(record)})

    def start(*args, **kw):
        return serve("basic:app", "-c", str(conf), *args, **kw), record
    return start


def test_lifecycle_hooks_run_in_order_with_server_and_worker_objects(recorded):
    server, record = recorded()
    assert server.request(target="/say/x?y=1", headers=[("X-Probe", "1")]).status == 200
    # when_ready comes once the master has seen every worker ready, which
    # may be after the first answer.
    wait_until(lambda: {"post_request", "when_ready"} <= set(names(record)), timeout=10)
    server.stop()
    seen = names(record)
    for hook in ("on_starting", "when_ready", "pre_fork", "post_fork", "post_worker_init",
                 "pre_request", "post_request", "worker_exit", "child_exit", "on_exit"):
        assert hook in seen, (hook, seen)
    assert seen.index("on_starting") < seen.index("pre_fork") < seen.index("post_fork")
    recs = {r["hook"]: r for r in records(record)}
    assert recs["on_starting"]["pid"] == server.pid
    assert recs["on_starting"]["workers"] == 1
    assert recs["post_fork"]["worker_pid"] == recs["post_fork"]["os_pid"] != server.pid
    assert recs["post_fork"]["timeout"] == 30
    assert recs["child_exit"]["os_pid"] == server.pid
    assert recs["worker_exit"]["os_pid"] == recs["post_fork"]["worker_pid"]
    assert "hook says starting" in server.log()


def test_request_hooks_see_the_request_environ_and_response(recorded):
    server, record = recorded()
    server.request(target="/say/x?y=1", headers=[("X-Probe", "1")])
    # The start-up probe's request runs the hooks too; with app threads its
    # post_request may land after this one's, so pick this request's records.
    def mine():
        return {r["hook"]: r for r in records(record)
                if r.get("path") == "/say/x" or r.get("path_info") == "/say/x"}
    wait_until(lambda: "post_request" in mine(), timeout=5)
    recs = mine()
    pre = recs["pre_request"]
    assert (pre["method"], pre["path"], pre["query"], pre["uri"]) == \
        ("GET", "/say/x", "y=1", "/say/x?y=1")
    assert pre["version"] == [1, 1]
    assert ["X-PROBE", "1"] in pre["headers"]
    post = recs["post_request"]
    assert post["status"] == "200 OK" and post["code"] == 200
    assert post["path_info"] == "/say/x"
    assert ["Content-Type", "text/plain"] in post["resp_headers"]


def test_hup_calls_on_reload_and_ttin_calls_nworkers_changed(recorded):
    server, record = recorded()
    server.send_signal(signal.SIGTTIN)
    wait_until(lambda: "nworkers_changed" in names(record), timeout=10)
    rec = [r for r in records(record) if r["hook"] == "nworkers_changed"][0]
    assert (rec["new"], rec["old"]) == (2, 1)
    server.send_signal(signal.SIGHUP)
    wait_until(lambda: "on_reload" in names(record), timeout=10)


def _conf(tmp_path, text):
    conf = tmp_path / "h.conf.py"
    conf.write_text(textwrap.dedent(text))
    return str(conf)


def test_post_fork_exception_is_a_worker_boot_error(serve, tmp_path):
    conf = _conf(tmp_path, """
        def post_fork(server, worker):
            raise RuntimeError("post_fork refuses")
    """)
    server = serve("basic:app", "-c", conf, wait=False)
    code = server.wait_exit(timeout=20)
    assert code not in (None, 0), server.log_tail()
    log = server.log()
    assert "post_fork refuses" in log and "Traceback" in log


def test_pre_request_exception_answers_500_and_is_logged(serve, tmp_path):
    conf = _conf(tmp_path, """
        def pre_request(worker, req):
            raise ValueError("pre_request refuses " + req.path)
    """)
    server = serve("basic:app", "-c", conf)
    assert server.request(target="/say/no").status == 500
    wait_until(lambda: "pre_request refuses /say/no" in server.log(), timeout=5)


def test_post_request_exception_is_logged_and_the_response_stands(serve, tmp_path):
    conf = _conf(tmp_path, """
        def post_request(worker, req):
            raise ValueError("post_request fails")
    """)
    server = serve("basic:app", "-c", conf)
    assert server.request().body == b"hello"
    assert server.request().body == b"hello"
    wait_until(lambda: "Exception in post_request hook" in server.log(), timeout=5)
    assert "post_request fails" in server.log()


@pytest.mark.sync_worker
def test_timeout_calls_worker_abort_in_the_stuck_worker(recorded):
    server, record = recorded("--timeout", "1")
    (worker,) = server.wait_workers(1)
    from support import ConnectionClosed
    with pytest.raises((OSError, ConnectionClosed)):
        server.request(target="/sleep?s=10")  # the worker is aborted mid-request: no answer
    wait_until(lambda: "worker_abort" in names(record), timeout=15)
    rec = [r for r in records(record) if r["hook"] == "worker_abort"][0]
    assert rec["worker_pid"] == rec["os_pid"] == worker
    assert "WORKER TIMEOUT" in server.log()


def test_int_calls_worker_int(recorded):
    server, record = recorded()
    (worker,) = server.wait_workers(1)
    server.stop(signal.SIGINT)
    assert [r["worker_pid"] for r in records(record) if r["hook"] == "worker_int"] == [worker]
