"""Listening sockets the master owns: connections queued in the kernel
survive a worker's death, `fd://N`, systemd's LISTEN_FDS, and the umask
of a unix socket."""
import os
import shutil
import signal
import socket
import stat
import sys

import pytest

from conftest import free_port, short_tempdir
from servers import PROC_APP, launch  # noqa: F401  (the fixture)
from support import RawConn, proc_stat, request_bytes, wait_until

pytestmark = pytest.mark.timeout(60)


def test_connections_queued_before_a_worker_dies_are_answered_by_its_replacement(serve):
    server = serve(PROC_APP)
    (pid,) = server.wait_workers(1)
    os.kill(pid, signal.SIGSTOP)
    conns = []
    try:
        # The stop takes effect when the worker is next scheduled. Until then
        # it may still accept, and a connection it holds dies with it.
        wait_until(lambda: proc_stat(pid)[0] == "T", 15, what="the worker to stop")
        for i in range(8):
            c = server.connect(timeout=15)
            c.send(request_bytes(target="/pid"))
            conns.append(c)
        os.kill(pid, signal.SIGKILL)
        new = wait_until(lambda: (lambda w: w if w and pid not in w else None)(server.workers()),
                         15, what="a replacement worker")
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


def listening_socket():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    return s


def test_fd_bind_serves_on_an_inherited_socket(launch):
    with listening_socket() as sock:
        fd, port = sock.fileno(), sock.getsockname()[1]
        server = launch(PROC_APP, "-b", "fd://%d" % fd, workers=2, port=port, pass_fds=(fd,))
    # Our copy is closed: the server's is the only one.
    workers = server.wait_workers(2)
    pids = {int(server.request(target="/pid").body) for _ in range(20)}
    assert pids <= set(workers)
    assert "Listening at: fd://%d" % fd in server.log() or ":%d" % port in server.log()
    assert server.stop() == 0


# Sets systemd's variables for its own pid, puts the socket at descriptor 3
# (SD_LISTEN_FDS_START), then becomes the server (same pid).
SYSTEMD_WRAPPER = """
import os, sys
fd, whose = int(sys.argv[1]), sys.argv[2]
if fd != 3:
    os.dup2(fd, 3)
    os.close(fd)
os.environ["LISTEN_PID"] = str(os.getpid() + (whose == "other"))
os.environ["LISTEN_FDS"] = "1"
os.execv(sys.argv[3], sys.argv[3:])
"""


def systemd_prefix(tmp_path, fd, whose):
    wrapper = tmp_path / "systemd_wrapper.py"
    wrapper.write_text(SYSTEMD_WRAPPER)
    return [sys.executable, str(wrapper), str(fd), whose]


def test_systemd_listen_fds_for_this_pid_are_used(launch, tmp_path):
    with listening_socket() as sock:
        fd, port = sock.fileno(), sock.getsockname()[1]
        # -b names another address: systemd's socket wins.
        server = launch(PROC_APP, "-b", "127.0.0.1:%d" % free_port(), port=port,
                        pass_fds=(fd,), prefix=systemd_prefix(tmp_path, fd, "mine"))
    (pid,) = server.wait_workers(1)
    assert int(server.request(target="/pid").body) == pid
    assert server.stop() == 0


def test_systemd_listen_fds_for_another_pid_are_ignored(launch, tmp_path):
    port = free_port()
    with listening_socket() as sock:
        fd = sock.fileno()
        server = launch(PROC_APP, "-b", "127.0.0.1:%d" % port, port=port, pass_fds=(fd,),
                        prefix=systemd_prefix(tmp_path, fd, "other"))
    assert server.request(target="/pid").status == 200
    assert server.stop() == 0


@pytest.fixture
def sockdir():
    path = short_tempdir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.parametrize("engine", ["epoll"])
@pytest.mark.parametrize("umask,mode", [("0o007", 0o770), ("077", 0o700), ("0", 0o777)])
def test_unix_socket_file_mode_follows_the_umask(serve, sockdir, umask, mode):
    path = os.path.join(sockdir, "app.sock")
    server = serve(PROC_APP, "--umask", umask, bind="unix:" + path)
    st = os.stat(path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == mode
    with RawConn(path, family=socket.AF_UNIX) as c:
        c.send(request_bytes(target="/pid"))
        assert c.read_response().status == 200
    assert server.stop() == 0
    assert not os.path.exists(path)
