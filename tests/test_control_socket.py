"""The control socket: gunicorn 27's protocol, spoken by gunicorn's own
`gunicornc` and by `ferrocorn ctl`, every command against a real server;
who may use the socket; malformed, oversized, unknown and idle clients;
where the socket goes by default, and that it goes away at exit.
"""
import json
import os
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import APPS, run_cli, server_command, server_env, short_tempdir
from servers import Detached, wait_pidfile
from support import IO_TIMEOUT, wait_until

pytestmark = pytest.mark.ferrocorn_only

GUNICORNC = Path(sys.executable).parent / "gunicornc"
CLIENTS = ["gunicornc", "ferrocorn-ctl"]
NOBODY = 65534


@pytest.fixture
def ctl_dir():
    d = short_tempdir()
    yield Path(d)
    shutil.rmtree(d, ignore_errors=True)


def run_client(client, path, command, json_out=True, env=None):
    """Run one command with `client`; (exit code, stdout, stderr)."""
    if client == "gunicornc":
        argv = [str(GUNICORNC)]
    else:
        argv = server_command() + ["ctl"]
    if path is not None:
        argv += ["-s", str(path)]
    if json_out:
        argv.append("-j")
    argv += ["-c", command]
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=30, env=server_env(env))
    return p.returncode, p.stdout, p.stderr


def ask(client, path, command):
    """The data of a successful command."""
    code, out, err = run_client(client, path, command)
    assert code == 0, (command, out, err)
    return json.loads(out)


def raw_request(sock, payload):
    if isinstance(payload, (dict, list)):
        payload = json.dumps(payload).encode()
    sock.sendall(struct.pack(">I", len(payload)) + payload)


def read_reply(sock):
    head = b""
    while len(head) < 4:
        chunk = sock.recv(4 - len(head))
        if not chunk:
            raise ConnectionError("closed before a reply")
        head += chunk
    (n,) = struct.unpack(">I", head)
    body = b""
    while len(body) < n:
        chunk = sock.recv(n - len(body))
        if not chunk:
            raise ConnectionError("closed inside a reply")
        body += chunk
    return json.loads(body)


def connect(path, timeout=IO_TIMEOUT):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(str(path))
    return s


def round_trip(path, payload):
    with connect(path) as s:
        raw_request(s, payload)
        return read_reply(s)


def start(serve, path, *args, workers=2):
    server = serve("basic:app", "--control-socket", str(path), *args, workers=workers)
    wait_until(lambda: path.exists(), IO_TIMEOUT, what="the control socket")
    return server


def ready_workers(client, path, count):
    """Wait until `show workers` lists `count` workers, every one booted."""
    def check():
        data = ask(client, path, "show workers")
        ws = data["workers"]
        return data if len(ws) == count and all(w["booted"] for w in ws) else None
    return wait_until(check, 15, what="%d ready workers" % count)


# ------------------------------------------------------------------ commands

@pytest.mark.parametrize("client", CLIENTS)
def test_show_commands_report_the_masters_real_state(serve, ctl_dir, client):
    path = ctl_dir / "c.ctl"
    server = start(serve, path)
    data = ready_workers(client, path, 2)
    pids = set(server.wait_workers(2))
    assert data["count"] == 2
    assert {w["pid"] for w in data["workers"]} == pids
    assert sorted(w["age"] for w in data["workers"]) == [1, 2]
    for w in data["workers"]:
        assert w["aborted"] is False
        assert isinstance(w["last_heartbeat"], (int, float)) and w["last_heartbeat"] >= 0

    # Responses are counted only where something reports them (--metrics-bind, statsd).
    assert all(w["requests"] is None for w in data["workers"])

    data = ask(client, path, "show all")
    assert data["arbiter"] == {"pid": server.pid, "type": "arbiter", "role": "master"}
    assert data["web_worker_count"] == 2
    assert {w["pid"] for w in data["web_workers"]} == pids
    assert data["dirty_arbiter"] is None and data["dirty_workers"] == []

    stats = ask(client, path, "show stats")
    assert stats["pid"] == server.pid
    assert stats["workers_current"] == 2 and stats["workers_target"] == 2
    assert stats["workers_spawned"] == 2
    assert stats["reloads"] == 0
    assert stats["uptime"] >= 0
    assert stats["dirty_arbiter_pid"] is None

    listeners = ask(client, path, "show listeners")
    assert listeners["count"] == 1
    assert listeners["listeners"][0]["address"] == "http://127.0.0.1:%d" % server.port
    assert listeners["listeners"][0]["type"] == "tcp"
    assert isinstance(listeners["listeners"][0]["fd"], int)

    config = ask(client, path, "show config")
    assert config["bind"] == ["127.0.0.1:%d" % server.port]
    assert config["workers"] == 2
    assert config["control_socket"] == str(path)
    assert config["control_socket_disable"] is False
    assert config["preload_app"] is False

    assert ask(client, path, "show dirty") == {"enabled": False, "pid": None, "workers": [],
                                               "apps": []}
    assert "worker kill <PID>" in ask(client, path, "help")["commands"]


def test_workers_requests_are_counted_with_metrics_on(serve, ctl_dir):
    path = ctl_dir / "c.ctl"
    server = start(serve, path, "--metrics-bind", "127.0.0.1:0", workers=1)
    before = ready_workers("ferrocorn-ctl", path, 1)["workers"][0]["requests"]
    for _ in range(3):
        assert server.request("GET", "/").status == 200
    wait_until(lambda: ask("ferrocorn-ctl", path, "show workers")["workers"][0]["requests"]
               == before + 3, IO_TIMEOUT, what="three more responses counted")


@pytest.mark.parametrize("client", CLIENTS)
def test_tables_print_each_worker_and_listener(serve, ctl_dir, client):
    path = ctl_dir / "c.ctl"
    server = start(serve, path)
    ready_workers(client, path, 2)
    pids = server.wait_workers(2)
    code, out, err = run_client(client, path, "show workers", json_out=False)
    assert code == 0, err
    for pid in pids:
        assert str(pid) in out
    assert "Total: 2 workers" in out
    code, out, err = run_client(client, path, "show stats", json_out=False)
    assert code == 0, err
    assert "PID:              %d" % server.pid in out
    code, out, err = run_client(client, path, "show listeners", json_out=False)
    assert code == 0, err
    assert "http://127.0.0.1:%d" % server.port in out
    code, out, err = run_client(client, path, "show dirty", json_out=False)
    assert (code, out.strip()) == (0, "Dirty arbiter not running")


@pytest.mark.parametrize("client", CLIENTS)
def test_worker_add_and_remove_change_the_count_never_below_one(serve, ctl_dir, client):
    path = ctl_dir / "c.ctl"
    server = start(serve, path)
    assert ask(client, path, "worker add 2") == {"added": 2, "previous": 2, "total": 4}
    server.wait_workers(4)
    assert ask(client, path, "worker add") == {"added": 1, "previous": 4, "total": 5}
    server.wait_workers(5)
    assert ask(client, path, "worker remove 9") == {"removed": 4, "previous": 5, "total": 1}
    server.wait_workers(1)
    assert ask(client, path, "worker remove") == {"removed": 0, "previous": 1, "total": 1}
    assert ask(client, path, "show stats")["workers_target"] == 1
    assert server.request("GET", "/").status == 200


@pytest.mark.parametrize("client", CLIENTS)
def test_worker_kill_stops_that_worker_and_a_new_one_takes_its_place(serve, ctl_dir, client):
    path = ctl_dir / "c.ctl"
    server = start(serve, path)
    ready_workers(client, path, 2)
    old = set(server.wait_workers(2))
    victim = min(old)
    assert ask(client, path, "worker kill %d" % victim) == {"success": True, "killed": victim}
    wait_until(lambda: (lambda w: victim not in w and len(w) == 2)(server.workers()), 15,
               what="the killed worker replaced")
    assert ask(client, path, "show stats")["workers_killed"] == 1
    assert ask(client, path, "worker kill 1") == {"success": False,
                                                  "error": "Worker 1 not found"}
    assert server.request("GET", "/").status == 200


@pytest.mark.parametrize("client", CLIENTS)
def test_reload_replaces_every_worker_as_hup_does(serve, ctl_dir, client):
    path = ctl_dir / "c.ctl"
    server = start(serve, path)
    ready_workers(client, path, 2)
    old = set(server.wait_workers(2))
    assert ask(client, path, "reload") == {"status": "reloading"}
    wait_until(lambda: (lambda w: len(w) == 2 and not (set(w) & old))(server.workers()), 20,
               what="a new generation of workers")
    assert ask(client, path, "show stats")["reloads"] == 1
    assert "Handling signal: hup" in server.log()


@pytest.mark.parametrize("client", CLIENTS)
def test_reopen_reopens_the_log_files_as_usr1_does(serve, ctl_dir, client, tmp_path):
    path = ctl_dir / "c.ctl"
    errlog = tmp_path / "error.log"
    start(serve, path, "--error-logfile", str(errlog))
    wait_until(lambda: errlog.exists(), IO_TIMEOUT, what="the error log")
    errlog.rename(tmp_path / "error.log.1")
    assert ask(client, path, "reopen") == {"status": "reopening"}
    wait_until(lambda: errlog.exists(), IO_TIMEOUT, what="the error log opened again")
    wait_until(lambda: "Handling signal: usr1" in (tmp_path / "error.log.1").read_text()
               + errlog.read_text(), IO_TIMEOUT, what="the USR1 log line")


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("mode", ["graceful", "quick"])
def test_shutdown_stops_the_server_and_removes_the_socket(serve, ctl_dir, client, mode):
    path = ctl_dir / "c.ctl"
    server = start(serve, path)
    server.wait_workers(2)
    assert ask(client, path, "shutdown %s" % mode) == {"status": "shutting_down", "mode": mode}
    assert server.wait_exit() == 0
    assert not path.exists()
    signal_line = "Handling signal: term" if mode == "graceful" else "Handling signal: int"
    assert signal_line in server.log()


@pytest.mark.parametrize("client", CLIENTS)
def test_error_replies_make_the_client_fail_with_the_reason(serve, ctl_dir, client):
    path = ctl_dir / "c.ctl"
    start(serve, path, workers=1)
    code, out, err = run_client(client, path, "bogus")
    assert code == 1 and "Unknown command: bogus" in err
    code, out, err = run_client(client, path, "worker add lots")
    assert code == 1 and "expected a count" in err
    code, out, err = run_client(client, path, "show dirty")
    assert code == 0


@pytest.mark.parametrize("client", CLIENTS)
def test_dirty_commands_answer_as_gunicorn_without_a_dirty_arbiter(serve, ctl_dir, client):
    path = ctl_dir / "c.ctl"
    start(serve, path, workers=1)
    for command in ("dirty add", "dirty remove 2"):
        assert ask(client, path, command) == {"success": False,
                                              "error": "Dirty arbiter not running"}


def test_ferrocorn_ctl_reads_commands_from_stdin(serve, ctl_dir):
    path = ctl_dir / "c.ctl"
    server = start(serve, path, workers=1)
    p = subprocess.run(server_command() + ["ctl", "-s", str(path), "-j"],
                       input="show stats\nbogus\nshow workers\n", capture_output=True,
                       text=True, timeout=30, env=server_env())
    assert p.returncode == 1  # one command failed
    assert '"pid": %d' % server.pid in p.stdout
    assert "Unknown command: bogus" in p.stderr
    assert '"workers"' in p.stdout


def test_ferrocorn_ctl_without_a_server_says_so(ctl_dir):
    code, out, err = run_client("ferrocorn-ctl", ctl_dir / "none.ctl", "show stats")
    assert code == 1
    assert "cannot connect to %s" % (ctl_dir / "none.ctl") in err


# ------------------------------------------------------------------ bad input

def test_malformed_json_gets_an_error_and_the_connection_goes_on(serve, ctl_dir):
    path = ctl_dir / "c.ctl"
    server = start(serve, path, workers=1)
    with connect(path) as s:
        raw_request(s, b"{not json")
        reply = read_reply(s)
        assert reply["status"] == "error" and reply["error"].startswith("Invalid JSON")
        raw_request(s, b"[1, 2]")
        assert read_reply(s)["error"] == "Invalid request: expected a JSON object"
        raw_request(s, {"id": 5, "command": 7})
        assert read_reply(s) == {"id": 5, "status": "error",
                                 "error": "Invalid request: \"command\" must be a string"}
        raw_request(s, b"\xff\xfe")
        assert "UTF-8" in read_reply(s)["error"]
        raw_request(s, {"id": 6, "command": "show stats", "args": []})
        reply = read_reply(s)
        assert reply["id"] == 6 and reply["status"] == "ok"
        assert reply["data"]["pid"] == server.pid


def test_unknown_command_gets_an_error_reply(serve, ctl_dir):
    path = ctl_dir / "c.ctl"
    start(serve, path, workers=1)
    assert round_trip(path, {"id": 3, "command": "launch rockets", "args": []}) == {
        "id": 3, "status": "error", "error": "Invalid argument: Unknown command: launch"}
    assert round_trip(path, {"id": 4, "command": "show", "args": ["secrets"]}) == {
        "id": 4, "status": "error", "error": "Invalid argument: Unknown show target: secrets"}
    assert round_trip(path, {"id": 5, "command": "", "args": []}) == {
        "id": 5, "status": "error", "error": "Empty command"}


def test_oversized_message_gets_an_error_and_is_not_read(serve, ctl_dir):
    path = ctl_dir / "c.ctl"
    server = start(serve, path, workers=1)
    with connect(path) as s:
        s.sendall(struct.pack(">I", 16 * 1024 * 1024))
        reply = read_reply(s)
        assert reply["status"] == "error" and "too large" in reply["error"]
        assert s.recv(1) == b""  # then closed
    assert round_trip(path, {"id": 1, "command": "show stats"})["data"]["pid"] == server.pid


def test_silent_and_half_sent_clients_do_not_hold_up_others(serve, ctl_dir):
    path = ctl_dir / "c.ctl"
    server = start(serve, path, workers=1)
    silent = [connect(path) for _ in range(20)]
    half = connect(path)
    half.sendall(struct.pack(">I", 100) + b'{"id": 1, "comm')
    try:
        for _ in range(3):
            reply = round_trip(path, {"id": 2, "command": "show workers"})
            assert reply["status"] == "ok" and reply["data"]["count"] == 1
        assert server.request("GET", "/").status == 200
        # The half-sent message is dropped once its time is up, not answered.
        half.settimeout(15)
        assert half.recv(1) == b""
    finally:
        for s in silent + [half]:
            s.close()


# ------------------------------------------------------------------ access

def as_nobody(path, payload):
    """Connect and ask as uid 65534 from a forked child; its result as JSON
    ({"connect_error": errno} or the reply)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            try:
                with connect(path) as s:
                    raw_request(s, payload)
                    out = read_reply(s)
            except OSError as e:
                out = {"connect_error": e.errno}
            os.write(w, json.dumps(out).encode())
        finally:
            os._exit(0)
    os.close(w)
    data = b""
    with os.fdopen(r, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    return json.loads(data)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to another user")
def test_another_user_is_refused_even_when_the_mode_lets_it_connect(serve, ctl_dir):
    os.chmod(ctl_dir, 0o755)
    path = ctl_dir / "c.ctl"
    server = start(serve, path, "--control-socket-mode", "0666", workers=1)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o666
    reply = as_nobody(path, {"id": 1, "command": "shutdown quick"})
    assert reply["status"] == "error" and "Permission denied" in reply["error"]
    assert "uid 65534" in reply["error"]
    assert server.proc.poll() is None
    assert round_trip(path, {"id": 2, "command": "show stats"})["data"]["pid"] == server.pid
    assert "refused a client running as uid 65534" in server.log()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to another user")
def test_default_mode_is_0600_and_keeps_other_users_out(serve, ctl_dir):
    os.chmod(ctl_dir, 0o755)
    path = ctl_dir / "c.ctl"
    start(serve, path, workers=1)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert as_nobody(path, {"id": 1, "command": "show stats"}) == {"connect_error": 13}


def test_mode_is_applied(serve, ctl_dir):
    path = ctl_dir / "c.ctl"
    start(serve, path, "--control-socket-mode", "0o660", workers=1)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o660


def test_bad_mode_is_refused_before_the_start(tmp_path):
    result = run_cli(["--control-socket-mode", "999", "basic:app"], cwd=tmp_path)
    assert result.returncode != 0
    assert "--control-socket-mode" in result.stderr and "999" in result.stderr


# ------------------------------------------------------------------ the path

def test_default_path_is_in_xdg_runtime_dir(serve, ctl_dir):
    env = {"XDG_RUNTIME_DIR": str(ctl_dir)}
    server = serve("basic:app", workers=1, env=env)
    path = ctl_dir / "ferrocorn.ctl"
    wait_until(lambda: path.exists(), IO_TIMEOUT, what="the default control socket")
    code, out, err = run_client("ferrocorn-ctl", None, "show stats", env=env)
    assert code == 0, err
    assert json.loads(out)["pid"] == server.pid
    assert "Control socket listening at %s" % path in server.log()


def test_default_path_without_xdg_runtime_dir_is_under_home(serve, ctl_dir):
    env = {"XDG_RUNTIME_DIR": str(ctl_dir / "missing"), "HOME": str(ctl_dir)}
    server = serve("basic:app", workers=1, env=env)
    path = ctl_dir / ".ferrocorn" / "ferrocorn.ctl"
    wait_until(lambda: path.exists(), IO_TIMEOUT, what="the control socket under HOME")
    assert stat.S_IMODE(os.stat(ctl_dir / ".ferrocorn").st_mode) == 0o700
    code, out, err = run_client("ferrocorn-ctl", None, "show stats", env=env)
    assert code == 0, err
    assert json.loads(out)["pid"] == server.pid
    server.stop()
    assert not path.exists()


def test_no_control_socket_opens_none(serve, ctl_dir):
    env = {"XDG_RUNTIME_DIR": str(ctl_dir)}
    server = serve("basic:app", "--no-control-socket", workers=1, env=env)
    assert server.request("GET", "/").status == 200
    assert not (ctl_dir / "ferrocorn.ctl").exists()
    assert "Control socket" not in server.log()


def test_relative_path_is_relative_to_the_chdir(serve, ctl_dir):
    server = serve("basic:app", "--control-socket", "rel.ctl", "--pythonpath", str(APPS),
                   workers=1, chdir=ctl_dir)
    wait_until(lambda: (ctl_dir / "rel.ctl").exists(), IO_TIMEOUT, what="rel.ctl")
    assert round_trip(ctl_dir / "rel.ctl", {"command": "show stats"})["data"]["pid"] == server.pid


def test_second_server_takes_the_path_and_the_first_leaves_it_at_exit(serve, ctl_dir):
    path = ctl_dir / "c.ctl"
    first = start(serve, path, workers=1)
    before = os.stat(path).st_ino
    second = serve("basic:app", "--control-socket", str(path), workers=1)
    wait_until(lambda: os.stat(path).st_ino != before, IO_TIMEOUT, what="the path taken over")
    assert round_trip(path, {"command": "show stats"})["data"]["pid"] == second.pid
    first.stop()
    assert path.exists()
    assert round_trip(path, {"command": "show stats"})["data"]["pid"] == second.pid
    second.stop()
    assert not path.exists()


def pid_at(path):
    """The pid of the master answering at `path`, or None while none does."""
    try:
        return round_trip(path, {"command": "show stats"})["data"]["pid"]
    except OSError:
        return None


@pytest.mark.timeout(60)
def test_usr2_new_master_takes_the_path_and_keeps_it_when_the_old_one_stops(serve, ctl_dir,
                                                                           tmp_path):
    path = ctl_dir / "c.ctl"
    pidfile = tmp_path / "app.pid"
    server = start(serve, path, "-p", str(pidfile), workers=1)
    assert pid_at(path) == server.pid
    new = None
    try:
        server.send_signal(signal.SIGUSR2)
        new = Detached(wait_pidfile(str(pidfile) + ".2"))
        new.wait_workers(1)
        wait_until(lambda: pid_at(path) == new.pid, 10, what="the new master at the path")
        server.send_signal(signal.SIGTERM)
        assert server.wait_exit() == 0
        assert pid_at(path) == new.pid
        assert ask("ferrocorn-ctl", path, "show stats")["pid"] == new.pid
        new.stop()
        assert not path.exists()
    finally:
        if new is not None:
            new.kill()


def test_a_file_that_is_not_a_socket_is_left_alone(serve, ctl_dir):
    path = ctl_dir / "c.ctl"
    path.write_text("keep me")
    server = serve("basic:app", "--control-socket", str(path), workers=1)
    wait_until(lambda: "Cannot open the control socket" in server.log(), IO_TIMEOUT,
               what="the warning")
    assert server.request("GET", "/").status == 200
    server.stop()
    assert path.read_text() == "keep me"


def listening_inode(path):
    """The socket inode of the unix socket listening at `path` (/proc/net/unix)."""
    with open("/proc/net/unix") as f:
        next(f)
        for line in f:
            fields = line.split()
            # Flags 00010000: a listening socket (accepted ones show the path too).
            if len(fields) >= 8 and fields[7] == str(path) and fields[3] == "00010000":
                return fields[6]
    return None


def test_workers_do_not_hold_the_control_socket(serve, ctl_dir):
    path = ctl_dir / "c.ctl"
    server = start(serve, path, workers=2)
    inode = listening_inode(path)
    assert inode is not None
    target = "socket:[%s]" % inode

    def holders(pid):
        fds = "/proc/%d/fd" % pid
        found = []
        for fd in os.listdir(fds):
            try:
                if os.readlink(os.path.join(fds, fd)) == target:
                    found.append(fd)
            except OSError:
                pass
        return found

    assert holders(server.pid), "the master holds it"
    for pid in server.wait_workers(2):
        assert holders(pid) == [], pid
    assert ask("ferrocorn-ctl", path, "worker add")["total"] == 3
    for pid in server.wait_workers(3):
        assert holders(pid) == [], pid
