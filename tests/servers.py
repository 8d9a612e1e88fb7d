"""Servers started in ways the `serve` fixture does not cover: with
inherited descriptors (`fd://N`, systemd's LISTEN_FDS), behind a wrapper
command, or as servers that outlive the process we started (daemons and
upgraded masters), which are then found through their pidfile.

Import the `launch` fixture into a test module to use it.
"""
import os
import signal
import subprocess
import time

import pytest

from conftest import APPS, Server, server_command, server_env
from support import children, gone, kill_tree, read_pidfile, wait_until

PROC_APP = "procapp:app"


class CustomServer(Server):
    """A Server started with `prefix` before the server command, with
    `pass_fds` kept open in it, and in a session of its own unless
    `new_session` is false (then the scheduler treats it and the test as
    one group, which changes the timing under load)."""

    def __init__(self, args, log_path, prefix=(), pass_fds=(), new_session=True, **kw):
        super().__init__(args, log_path, **kw)
        self.prefix = list(prefix)
        self.pass_fds = tuple(pass_fds)
        self.new_session = new_session

    def start(self, wait=True):
        self.log_file = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.prefix + server_command() + self.args,
                                     stdin=subprocess.DEVNULL, stdout=self.log_file,
                                     stderr=subprocess.STDOUT, env=server_env(self.env),
                                     cwd=self.cwd, start_new_session=self.new_session,
                                     pass_fds=self.pass_fds)
        if wait:
            self.wait_ready()
        return self


def server_args(app, args, workers, engine):
    argv = ["-w", str(workers)]
    if engine not in (None, "reference"):
        argv += ["--io-engine", engine]
    return argv + ["--chdir", str(APPS)] + list(args) + [app]


@pytest.fixture
def launch(engine, tmp_path):
    """launch(app, *args, workers=1, port=None, unix_path=None, prefix=(),
              pass_fds=(), env=None, wait=True, new_session=True)

    Like `serve`, but the caller gives the listening address in `args` (and
    says which `port` or `unix_path` to probe). Stopped after the test."""
    servers = []

    def start(app, *args, workers=1, port=None, unix_path=None, prefix=(), pass_fds=(),
              env=None, wait=True, new_session=True):
        server = CustomServer(server_args(app, args, workers, engine),
                              tmp_path / ("custom-%d.log" % len(servers)), prefix=prefix,
                              pass_fds=pass_fds, new_session=new_session, env=env,
                              cwd=tmp_path, port=port, unix_path=unix_path)
        servers.append(server)
        return server.start(wait=wait)

    yield start

    failures = []
    for server in servers:
        print("==== server %s\n%s" % (" ".join(server.args), server.log()))
        if server.proc.poll() is None:
            try:
                server.stop()
            except pytest.fail.Exception as e:
                failures.append(str(e))
    if failures:
        pytest.fail("\n".join(failures))


class Detached:
    """A master that is not our child (a daemon, or the new master of an
    upgrade once the old one is gone), known by its pid."""

    def __init__(self, pid):
        self.pid = pid
        self.start_time = None
        st = open("/proc/%d/stat" % pid).read()
        self.start_time = int(st[st.rindex(")") + 2:].split()[19])
        self.seen_workers = {}

    def workers(self):
        found = children(self.pid)
        self.seen_workers.update(found)
        return found

    def wait_workers(self, count, timeout=15.0):
        return wait_until(lambda: (lambda w: w if len(w) == count else None)(self.workers()),
                          timeout, what="%d worker processes of pid %d" % (count, self.pid))

    def running(self):
        return not gone(self.pid, self.start_time)

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        """Signal it, wait until it and every worker seen are gone; kill them
        and fail if that takes longer than `timeout`."""
        self.workers()
        if self.running():
            os.kill(self.pid, sig)
        try:
            wait_until(lambda: not self.running(), timeout, interval=0.05,
                       what="pid %d to exit" % self.pid)
            wait_until(lambda: all(gone(p, s) for p, s in self.seen_workers.items()), 5,
                       what="the workers of pid %d to exit" % self.pid)
        except AssertionError:
            self.kill()
            raise

    def kill(self):
        if self.running():
            kill_tree(self.pid)
        for p, s in self.seen_workers.items():
            if not gone(p, s):
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def wait_pidfile(path, timeout=15.0, not_pid=None):
    """The pid written to `path` (other than `not_pid`), waiting for it."""
    def found():
        pid = read_pidfile(path)
        return pid if pid and pid != not_pid else None
    return wait_until(found, timeout, what="a pid in %s" % path)


def wait_gone(pid, timeout=10.0):
    wait_until(lambda: gone(pid), timeout, what="pid %d to exit" % pid)


def sleep_until(deadline):
    delay = deadline - time.monotonic()
    if delay > 0:
        time.sleep(delay)
