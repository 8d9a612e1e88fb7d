"""`--preload` (`preload_app`): the master imports the app once, before
on_starting and before forking, and every worker serves that object; an
import error stops the start with exit code 4; HUP reads the configuration
again but re-forks from the master's app (new code needs USR2); ASGI apps
are imported in the master too and run their lifespan in each worker."""
import json
import signal

import pytest

from support import wait_until

pytestmark = [pytest.mark.ferrocorn_only, pytest.mark.timeout(60)]

WSGI_APP = '''
import json
import os

IMPORTED_IN = os.getpid()
VERSION = "v1"
with open("events.log", "a") as f:
    f.write("import %d\\n" % IMPORTED_IN)


def app(environ, start_response):
    body = json.dumps({"imported_in": IMPORTED_IN, "pid": os.getpid(),
                       "version": VERSION}).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
'''

HOOKS = '''
def _rec(line):
    with open("events.log", "a") as f:
        f.write(line + "\\n")


def on_starting(server):
    _rec("on_starting")


def pre_fork(server, worker):
    _rec("pre_fork")


def post_fork(server, worker):
    _rec("post_fork")


def post_worker_init(worker):
    _rec("post_worker_init")


def when_ready(server):
    _rec("when_ready")
'''


def project(tmp_path, source=WSGI_APP):
    (tmp_path / "preapp.py").write_text(source)
    (tmp_path / "hooks.conf.py").write_text(HOOKS)
    return tmp_path


def answers(server, n):
    return [json.loads(server.request(target="/").body) for _ in range(n)]


def test_preload_imports_the_app_once_in_the_master(serve, tmp_path):
    d = project(tmp_path)
    server = serve("preapp:app", "--preload", workers=2, chdir=d)
    workers = server.wait_workers(2)
    seen = set()
    for a in answers(server, 20):
        assert a["imported_in"] == server.pid
        seen.add(a["pid"])
    assert seen <= set(workers)
    events = (d / "events.log").read_text().split()
    assert events.count("import") == 1


def test_without_preload_each_worker_imports_the_app(serve, tmp_path):
    d = project(tmp_path)
    server = serve("preapp:app", workers=2, chdir=d)
    server.wait_workers(2)
    for a in answers(server, 5):
        assert a["imported_in"] == a["pid"] != server.pid


def test_preload_runs_the_hooks_in_gunicorns_order(serve, tmp_path):
    d = project(tmp_path)
    server = serve("preapp:app", "--preload", "-c", "hooks.conf.py", chdir=d)
    server.wait_workers(1)
    log = d / "events.log"
    wait_until(lambda: "when_ready" in log.read_text(), 10, what="when_ready")
    events = [line.split()[0] for line in log.read_text().splitlines()]
    # The import comes first (gunicorn's Arbiter.setup), then on_starting,
    # then the worker's fork hooks; no import in the worker.
    assert events[:5] == ["import", "on_starting", "pre_fork", "post_fork",
                          "post_worker_init"], events
    assert events.count("import") == 1


def test_preload_import_error_stops_the_start_with_exit_code_4(serve, tmp_path):
    d = project(tmp_path, "import no_such_module_for_the_preload_test\n")
    server = serve("preapp:app", "--preload", chdir=d, wait=False)
    assert server.wait_exit(20) == 4
    log = server.log()
    assert "Traceback" in log and "no_such_module_for_the_preload_test" in log, log
    assert "App failed to load" in log
    assert "Booting worker" not in log


def test_hup_with_preload_keeps_the_masters_app(serve, tmp_path):
    d = project(tmp_path)
    server = serve("preapp:app", "--preload", chdir=d)
    (first,) = server.wait_workers(1)
    assert answers(server, 1)[0]["version"] == "v1"
    (d / "preapp.py").write_text(WSGI_APP.replace('"v1"', '"v2"'))
    server.send_signal(signal.SIGHUP)
    wait_until(lambda: (lambda w: w if len(w) == 1 and first not in w else None)(
        server.workers()), 20, what="the re-forked worker")
    a = answers(server, 1)[0]
    assert a["version"] == "v1" and a["imported_in"] == server.pid
    assert a["pid"] != first
    assert "Reload with --preload" in server.log()


ASGI_APP = '''
import json
import os

IMPORTED_IN = os.getpid()
STARTED_IN = []


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                STARTED_IN.append(os.getpid())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = json.dumps({"imported_in": IMPORTED_IN, "started_in": STARTED_IN,
                       "pid": os.getpid()}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})
'''


def test_asgi_app_is_preloaded_and_starts_its_lifespan_in_each_worker(serve, tmp_path):
    d = project(tmp_path, ASGI_APP)
    server = serve("preapp:app", "--preload", "-k", "asgi", workers=2, chdir=d)
    server.wait_workers(2)
    for a in answers(server, 6):
        assert a["imported_in"] == server.pid
        assert a["started_in"] == [a["pid"]]


def test_threads_started_by_a_preloaded_import_are_warned_about(serve, tmp_path):
    d = project(tmp_path, WSGI_APP + '''
import threading
import time

threading.Thread(target=time.sleep, args=(3600,), name="cache-refresher",
                 daemon=True).start()
''')
    server = serve("preapp:app", "--preload", chdir=d)
    assert answers(server, 1)[0]["imported_in"] == server.pid
    log = server.log()
    assert "started 1 thread(s) in the master (cache-refresher)" in log, log
