"""Binary upgrade: USR2 starts a new master on the same sockets; TERM to the
old one hands all traffic over without a failed request, and the new master
is promoted (pidfile renamed, title without `.2`)."""
import os
import signal
import time

import pytest

from servers import PROC_APP, Detached, wait_pidfile
from support import Load, children, cmdline, gone, read_pidfile, wait_until

pytestmark = pytest.mark.timeout(60)


def test_usr2_then_term_to_the_old_master_under_load_fails_no_request(serve, tmp_path):
    pidfile = tmp_path / "app.pid"
    server = serve(PROC_APP, "-p", str(pidfile), "-n", "upg", workers=2)
    old_workers = server.wait_workers(2)
    assert read_pidfile(pidfile) == server.pid
    new = None
    try:
        with Load(server.host, server.port, clients=4) as load:
            load.wait_for(50)
            server.send_signal(signal.SIGUSR2)
            new_pid = wait_pidfile(str(pidfile) + ".2")
            new = Detached(new_pid)
            assert new_pid in children(server.pid)
            new_workers = new.wait_workers(2)
            wait_until(lambda: cmdline(new_pid) == "ferrocorn: master [upg.2]", 5,
                       what="the new master's title")
            # Both generations serve for a while.
            load.wait_for(50)
            assert read_pidfile(pidfile) == server.pid

            server.send_signal(signal.SIGTERM)
            assert server.wait_exit() == 0, server.log_tail()
            for pid, start in old_workers.items():
                wait_until(lambda: gone(pid, start), 5, what="old worker %d to exit" % pid)
            # Promoted: it takes over the pidfile's name and drops the `.2`.
            wait_until(lambda: read_pidfile(pidfile) == new_pid, 10,
                       what="the pidfile to name the new master")
            assert not os.path.exists(str(pidfile) + ".2")
            wait_until(lambda: cmdline(new_pid) == "ferrocorn: master [upg]", 5,
                       what="the promoted master's title")
            load.wait_for(100)
            assert set(new_workers) & set(load.pids)
        assert load.failures == [], load.summary()
        assert "Master has been promoted" in server.log()

        # The promoted master stops like any other and removes its pidfile.
        new.stop()
        assert not pidfile.exists()
    finally:
        if new is not None:
            new.kill()
        elif os.path.exists(str(pidfile) + ".2"):
            pid = read_pidfile(str(pidfile) + ".2")
            if pid:
                Detached(pid).kill()


@pytest.mark.parametrize("engine", ["epoll"])
def test_a_second_usr2_is_ignored_while_the_new_master_runs(serve, tmp_path):
    pidfile = tmp_path / "app.pid"
    server = serve(PROC_APP, "-p", str(pidfile))
    server.wait_workers(1)
    new = None
    try:
        server.send_signal(signal.SIGUSR2)
        new = Detached(wait_pidfile(str(pidfile) + ".2"))
        new.wait_workers(1)
        server.send_signal(signal.SIGUSR2)
        wait_until(lambda: "USR2 ignored" in server.log(), 5, what="the second USR2 refused")
        time.sleep(0.3)
        masters = [p for p in children(server.pid) if cmdline(p).startswith("ferrocorn: master")]
        assert masters == [new.pid]
        # Stopping the new master leaves the old one serving.
        new.stop()
        assert server.request(target="/pid").status == 200
        wait_until(lambda: "keeps serving" in server.log(), 5,
                   what="the old master to notice the new one left")
        assert read_pidfile(pidfile) == server.pid
    finally:
        if new is not None:
            new.kill()
