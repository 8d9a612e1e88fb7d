"""io_uring forbidden by a seccomp profile (as Docker's default one does):
`auto` falls back to epoll and says why; `uring` refuses to start."""
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import REPO, free_port, server_command, server_env

NO_URING = Path(__file__).parent / "tools" / "no_io_uring.py"
APPS = Path(__file__).parent / "apps"

pytestmark = pytest.mark.ferrocorn_only


def forbidden(args):
    return [sys.executable, str(NO_URING)] + server_command() + args


def test_auto_falls_back_to_epoll_when_io_uring_is_forbidden(tmp_path):
    port = free_port()
    log = tmp_path / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            forbidden(["-b", "127.0.0.1:%d" % port, "--io-engine", "auto", "--chdir", str(APPS), "basic:app"]),
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=server_env(),
            start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        body = None
        while time.monotonic() < deadline and body is None:
            assert proc.poll() is None, log.read_text()
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/say/hi" % port, timeout=2) as r:
                    body = r.read()
            except OSError:
                time.sleep(0.1)
        assert body == b"hi", log.read_text()
        text = log.read_text()
        assert "io_uring unavailable: EPERM" in text and "using epoll" in text, text
        assert "io engine epoll" in text, text
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(30) == 0


def test_uring_refuses_to_start_when_io_uring_is_forbidden(tmp_path):
    port = free_port()
    result = subprocess.run(
        forbidden(["-b", "127.0.0.1:%d" % port, "--io-engine", "uring", "--chdir", str(APPS), "basic:app"]),
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, env=server_env(), cwd=REPO)
    assert result.returncode == 3, result.stderr
    assert "--io-engine uring was asked for, but io_uring unavailable: EPERM" in result.stderr, result.stderr
    assert "Worker failed to boot" in result.stderr
