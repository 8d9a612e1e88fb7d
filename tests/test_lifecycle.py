"""What a process supervisor sees: the pidfile, process titles, systemd's
readiness notifications, and `-D/--daemon`."""
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from conftest import free_port, server_command, server_env, short_tempdir
from servers import PROC_APP, Detached, server_args, wait_pidfile
from support import cmdline, proc_stat, wait_until

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("engine", ["epoll"])
def test_pidfile_holds_the_master_pid_and_is_removed_at_exit(serve, tmp_path):
    pidfile = tmp_path / "run" / "app.pid"
    pidfile.parent.mkdir()
    server = serve(PROC_APP, "--pid", str(pidfile))
    assert pidfile.read_text() == "%d\n" % server.pid
    assert server.stop() == 0
    assert not pidfile.exists()


@pytest.mark.parametrize("engine", ["epoll"])
def test_pidfile_of_another_process_is_left_alone_at_exit(serve, tmp_path):
    pidfile = tmp_path / "app.pid"
    server = serve(PROC_APP, "--pid", str(pidfile))
    pidfile.write_text("1\n")  # someone else took the name meanwhile
    assert server.stop() == 0
    assert pidfile.read_text() == "1\n"


@pytest.mark.parametrize("engine", ["epoll"])
def test_process_titles_name_master_and_workers(serve):
    server = serve(PROC_APP, workers=2)
    workers = server.wait_workers(2)
    assert cmdline(server.pid) == "ferrocorn: master [%s]" % PROC_APP
    for pid in workers:
        assert cmdline(pid) == "ferrocorn: worker [%s]" % PROC_APP
    assert open("/proc/%d/comm" % server.pid).read().strip() == "ferrocorn: mast"


@pytest.mark.parametrize("engine", ["epoll"])
def test_name_flag_sets_the_title(serve):
    server = serve(PROC_APP, "-n", "shop")
    (pid,) = server.wait_workers(1)
    assert cmdline(server.pid) == "ferrocorn: master [shop]"
    assert cmdline(pid) == "ferrocorn: worker [shop]"


@pytest.fixture
def notify_socket():
    """A datagram socket standing in for systemd's NOTIFY_SOCKET."""
    path = os.path.join(short_tempdir(), "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(15)
    yield path, sock
    sock.close()
    shutil.rmtree(os.path.dirname(path), ignore_errors=True)


def messages_until(sock, wanted):
    """Datagrams received until one holds the line `wanted`."""
    got = []
    while True:
        try:
            msg = sock.recv(4096).decode()
        except socket.timeout:
            raise AssertionError("no %r within the timeout; got %r" % (wanted, got))
        got.append(msg)
        if wanted in msg.split("\n"):
            return got


def test_notify_socket_hears_ready_reloading_and_stopping(serve, notify_socket):
    path, sock = notify_socket
    server = serve(PROC_APP, workers=2, env={"NOTIFY_SOCKET": path})
    server.wait_workers(2)
    messages_until(sock, "READY=1")
    # Ready only once every worker is: nothing more while idle.
    sock.settimeout(0.5)
    with pytest.raises(socket.timeout):
        sock.recv(4096)
    sock.settimeout(15)
    server.send_signal(signal.SIGHUP)
    got = messages_until(sock, "RELOADING=1")
    assert not any("READY=1" in m for m in got)
    reloading = [m for m in got if "RELOADING=1" in m][0]
    assert re.search(r"MONOTONIC_USEC=\d+", reloading), reloading
    messages_until(sock, "READY=1")
    server.send_signal(signal.SIGTERM)
    messages_until(sock, "STOPPING=1")
    assert server.wait_exit() == 0


@pytest.mark.parametrize("engine", ["epoll"])
def test_daemon_detaches_writes_its_pid_and_stops_on_term(engine, tmp_path):
    pidfile = tmp_path / "daemon.pid"
    port = free_port()
    argv = server_args(PROC_APP, ["-D", "-p", str(pidfile), "-b", "127.0.0.1:%d" % port],
                       1, engine)
    launcher = subprocess.run(server_command() + argv, stdin=subprocess.DEVNULL,
                              capture_output=True, env=server_env(), cwd=tmp_path, timeout=15)
    assert launcher.returncode == 0, launcher.stderr
    daemon = Detached(wait_pidfile(pidfile))
    try:
        assert proc_stat(daemon.pid)[1] != os.getpid()  # not our child
        assert os.getsid(daemon.pid) != os.getsid(0)  # its own session
        assert cmdline(daemon.pid) == "ferrocorn: master [%s]" % PROC_APP
        (worker,) = daemon.wait_workers(1)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
            c.sendall(b"GET /pid HTTP/1.0\r\n\r\n")
            data = b""
            while True:
                chunk = c.recv(4096)
                if not chunk:
                    break
                data += chunk
        assert data.split(b"\r\n")[0].endswith(b" 200 OK")
        assert data.endswith(str(worker).encode())
        t0 = time.monotonic()
        daemon.stop(signal.SIGTERM)
        assert time.monotonic() - t0 < 10
        wait_until(lambda: not pidfile.exists(), 5, what="the pidfile to be removed")
    finally:
        daemon.kill()


def _ids(pid):
    with open("/proc/%d/status" % pid) as f:
        fields = dict(line.split(":", 1) for line in f if ":" in line)
    return int(fields["Uid"].split()[0]), int(fields["Gid"].split()[0])


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
def test_user_and_group_apply_to_workers_not_the_master(serve):
    import pwd
    import grp
    try:
        nobody = pwd.getpwnam("nobody")
        group = grp.getgrgid(nobody.pw_gid)
    except KeyError:
        pytest.skip("no 'nobody' user here")
    try:
        probe = subprocess.run(
            [sys.executable, "-c", "import importlib, json"], capture_output=True,
            preexec_fn=lambda: (os.setgid(nobody.pw_gid), os.setuid(nobody.pw_uid)))
        readable = probe.returncode == 0
    except OSError:
        readable = False
    if not readable:
        pytest.skip("this Python installation is not readable by 'nobody'")
    server = serve("basic:app", "-u", "nobody", "-g", group.gr_name)
    (worker,) = server.wait_workers(1)
    assert _ids(worker) == (nobody.pw_uid, nobody.pw_gid)
    assert _ids(server.pid) == (0, 0)
    assert server.request(target="/say/ok").body == b"ok"


def test_worker_connections_caps_open_connections_without_failing(serve):
    server = serve("basic:app", "--worker-connections", "2")
    first, second = server.connect(), server.connect()
    try:
        for c in (first, second):
            c.send(b"GET /say/held HTTP/1.1\r\nHost: x\r\n\r\n")
            assert c.read_response().body == b"held"
        # A third connection waits in the kernel's queue while two are open...
        third = server.connect()
        third.send(b"GET /say/third HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        third.sock.settimeout(0.7)
        with pytest.raises(OSError):
            third.sock.recv(1)
        # ...and is served as soon as one of them closes.
        third.sock.settimeout(10)
        first.close()
        assert third.read_response().body == b"third"
        third.close()
    finally:
        first.close()
        second.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="switching groups needs root")
def test_group_applies_to_workers_not_the_master(serve):
    import grp
    try:
        group = grp.getgrnam("nogroup")
    except KeyError:
        pytest.skip("no 'nogroup' group here")
    server = serve("basic:app", "-g", "nogroup")
    (worker,) = server.wait_workers(1)
    assert _ids(worker) == (0, group.gr_gid)
    assert _ids(server.pid) == (0, 0)
    assert server.request(target="/say/ok").body == b"ok"
