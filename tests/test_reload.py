"""--reload: a changed source file (or --reload-extra-file) gets the worker
replaced by one running the new code, with no request refused."""
import shutil
import time

import pytest

from support import wait_until

APP_V1 = '''
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"v1"]
'''


def body(server):
    try:
        return server.request(target="/").body
    except OSError:
        return None


def test_changed_module_is_reloaded(serve, tmp_path):
    (tmp_path / "reloadme.py").write_text(APP_V1)
    server = serve("reloadme:app", "--reload", chdir=tmp_path)
    assert body(server) == b"v1"
    time.sleep(1.1)  # file times have a coarse clock on some filesystems
    (tmp_path / "reloadme.py").write_text(APP_V1.replace("v1", "v2"))
    wait_until(lambda: body(server) == b"v2", 15, what="the new code to answer")
    assert "Worker reloading:" in server.log()
    assert "reloadme.py modified" in server.log()
    assert "inotify unavailable" not in server.log()


def test_extra_file_glob_triggers_a_reload(serve, tmp_path):
    (tmp_path / "reloadme.py").write_text(APP_V1)
    (tmp_path / "settings.toml").write_text("a = 1\n")
    server = serve("reloadme:app", "--reload", "--reload-extra-file", str(tmp_path / "*.toml"), chdir=tmp_path)
    (worker,) = server.wait_workers(1)
    time.sleep(1.1)
    (tmp_path / "settings.toml").write_text("a = 2\n")
    wait_until(lambda: (lambda w: w if len(w) == 1 and worker not in w else None)(server.workers()),
               15, what="a new worker")
    assert "settings.toml modified" in server.log()


def test_without_reload_nothing_is_watched(serve, tmp_path):
    (tmp_path / "reloadme.py").write_text(APP_V1)
    server = serve("reloadme:app", chdir=tmp_path)
    (worker,) = server.wait_workers(1)
    time.sleep(1.1)
    (tmp_path / "reloadme.py").write_text(APP_V1.replace("v1", "v2"))
    time.sleep(2.5)
    assert body(server) == b"v1"
    assert list(server.workers()) == [worker]
