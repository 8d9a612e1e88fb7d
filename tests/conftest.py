"""Fixtures that run the real server.

`serve(...)` starts the installed `ferrocorn` console script (the venv's, from
the wheel scripts/test built) on a free 127.0.0.1 port with one of the fixture
apps in tests/apps/, waits until it answers, and stops it after the test:
SIGTERM, a bounded wait, SIGKILL of its process group as a last resort, and
then a check that none of its worker processes is left.

Every test that uses `serve` runs once per io engine (`--io-engine uring` and
`--io-engine epoll`).

Environment:
  FERROCORN_BIN             the server command (split like a shell would);
                            default: .venv/bin/ferrocorn of this repository
  FERROCORN_TEST_REFERENCE  set to the name of a gunicorn-compatible server
                            (e.g. `gunicorn`) to run the suite against it:
                            no --io-engine flag, one run per test, and the
                            tests marked `ferrocorn_only` are skipped.
  FERROCORN_TEST_EXTRA_ARGS extra arguments for every server `serve` starts
                            (e.g. "--threads 4": scripts/test reruns the
                            request and response suites with app threads,
                            and with "-k gevent" with greenlets).
"""
import os
import shlex
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from support import IO_TIMEOUT, RawConn, alive, children, request_bytes, wait_until

REPO = Path(__file__).resolve().parent.parent
APPS = REPO / "tests" / "apps"
EXAMPLES = REPO / "examples"

REFERENCE = os.environ.get("FERROCORN_TEST_REFERENCE", "")
# The name the server gives itself (Server header, SERVER_SOFTWARE, --version).
SERVER_NAME = REFERENCE or "ferrocorn"
ENGINES = ["reference"] if REFERENCE else ["uring", "epoll"]
EXTRA_ARGS = shlex.split(os.environ.get("FERROCORN_TEST_EXTRA_ARGS", ""))

START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0

# After this many servers in a row failed to answer, the rest of the run
# fails at once instead of waiting START_TIMEOUT for each test: a server
# that cannot serve at all must not turn the suite into an hour of waiting.
MAX_START_FAILURES_IN_A_ROW = 3
_start_failures = {"in_a_row": 0, "last": ""}

# Variables that change what the server does; the tests set them explicitly.
SCRUB_ENV = ("PORT", "WEB_CONCURRENCY", "FERROCORN_CMD_ARGS", "GUNICORN_CMD_ARGS",
             "FERROCORN_IO_ENGINE", "SCRIPT_NAME", "FORWARDED_ALLOW_IPS")


def server_command():
    custom = os.environ.get("FERROCORN_BIN")
    if custom:
        return shlex.split(custom)
    path = REPO / ".venv" / "bin" / "ferrocorn"
    if not path.exists():
        pytest.fail("%s not found: build and install the wheel first (scripts/test does)" % path)
    return [str(path)]


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The control socket is on by default, at $XDG_RUNTIME_DIR/ferrocorn.ctl: the
# servers of this run put theirs in a directory of the run's own, never in
# the user's runtime or home directory, where another run's servers are.
_RUNTIME_DIR = tempfile.TemporaryDirectory(prefix="fc-run-", dir="/tmp")


def server_env(extra=None):
    env = {k: v for k, v in os.environ.items() if k not in SCRUB_ENV}
    env["XDG_RUNTIME_DIR"] = _RUNTIME_DIR.name
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    if extra:
        env.update(extra)
    return env


def run_cli(args, env=None, cwd=None, timeout=30):
    """Run the server command to completion (for --version, --help, errors)."""
    return subprocess.run(server_command() + list(args), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout,
                          env=server_env(env), cwd=cwd)


class Server:
    """One running server (the master process) and what it printed."""

    def __init__(self, args, log_path, env=None, cwd=None, host="127.0.0.1", port=None,
                 unix_path=None):
        self.args = args
        self.log_path = log_path
        self.env = env
        self.cwd = cwd
        self.host = host
        self.port = port
        self.unix_path = unix_path
        self.proc = None
        self.returncode = None
        # Every worker seen, {pid: starttime}, so none can be missed at exit.
        self.seen_workers = {}

    # ------------------------------------------------------------ lifecycle
    def start(self, wait=True):
        if wait and _start_failures["in_a_row"] >= MAX_START_FAILURES_IN_A_ROW:
            pytest.fail("not started: the last %d servers never answered; the last one:\n%s"
                        % (_start_failures["in_a_row"], _start_failures["last"]))
        self.log_file = open(self.log_path, "wb")
        self.proc = subprocess.Popen(server_command() + self.args, stdin=subprocess.DEVNULL,
                                     stdout=self.log_file, stderr=subprocess.STDOUT,
                                     env=server_env(self.env), cwd=self.cwd,
                                     start_new_session=True)
        if wait:
            self.wait_ready()
        return self

    @property
    def pid(self):
        return self.proc.pid

    def wait_ready(self, timeout=START_TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail("server exited with status %s before answering\n%s"
                            % (self.proc.returncode, self.log_tail()))
            if self._probe():
                _start_failures["in_a_row"] = 0
                return
            time.sleep(0.1)
        _start_failures["in_a_row"] += 1
        _start_failures["last"] = "server did not answer within %gs\n%s" % (
            timeout, self.log_tail())
        pytest.fail(_start_failures["last"])

    def _probe(self):
        try:
            with self.connect(timeout=2.0) as conn:
                conn.send(b"GET /__probe__ HTTP/1.0\r\n\r\n")
                return conn.read_until_closed().startswith(b"HTTP/")
        except OSError:
            return False

    def send_signal(self, sig):
        os.kill(self.proc.pid, sig)

    def wait_exit(self, timeout=STOP_TIMEOUT):
        """Wait for the master to exit; return its exit status (None on timeout)."""
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        return self.returncode

    def stop(self, sig=signal.SIGTERM):
        """Stop the server with `sig` and return its exit status. Fails the
        test if it does not exit in time or leaves a worker behind."""
        if self.proc.poll() is None:
            self.workers()  # record the current workers
            self.send_signal(sig)
            if self.wait_exit() is None:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(IO_TIMEOUT)
                pytest.fail("server did not exit within %gs of %s; killed\n%s"
                            % (STOP_TIMEOUT, signal.Signals(sig).name, self.log_tail()))
        self.returncode = self.proc.returncode
        left = [pid for pid, start in self.seen_workers.items() if alive(pid, start)]
        if left:
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            pytest.fail("worker processes %s still running after the master exited\n%s"
                        % (left, self.log_tail()))
        return self.returncode

    # ------------------------------------------------------------ access
    def workers(self):
        """The master's live child processes: {pid: starttime}."""
        found = children(self.proc.pid)
        self.seen_workers.update(found)
        return found

    def wait_workers(self, count, timeout=START_TIMEOUT):
        return wait_until(lambda: (lambda w: w if len(w) == count else None)(self.workers()),
                          timeout, what="%d worker processes" % count)

    def connect(self, timeout=IO_TIMEOUT):
        if self.unix_path:
            return RawConn(self.unix_path, family=socket.AF_UNIX, timeout=timeout)
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        return RawConn((self.host, self.port), family=family, timeout=timeout)

    def request(self, method="GET", target="/", version="HTTP/1.1", headers=(), body=b""):
        """One request on a fresh connection; returns the final response."""
        with self.connect() as conn:
            conn.send(request_bytes(method, target, version, headers, body))
            return conn.read_final_response(method)[1]

    @property
    def url(self):
        host = "[%s]" % self.host if ":" in self.host else self.host
        return "http://%s:%d" % (host, self.port)

    def log(self):
        self.log_file.flush()
        return Path(self.log_path).read_text("utf-8", "replace")

    def log_tail(self, lines=40):
        return "---- server log (last %d lines) ----\n%s" % (
            lines, "\n".join(self.log().splitlines()[-lines:]))


@pytest.fixture(params=ENGINES)
def engine(request):
    return request.param


@pytest.fixture
def serve(engine, tmp_path):
    """serve(app, *args, workers=1, bind="tcp", chdir=APPS, env=None, cwd=None,
             port=None, wait=True, io_engine=<the engine parameter>)

    Starts the server with APP spec `app` and extra CLI `args`. `bind` is
    "tcp" (a free 127.0.0.1 port), None (no -b at all; then say which `port`
    to probe) or a full bind string such as "unix:/path". `workers=None` and
    `io_engine=None` leave out -w and --io-engine. Returns the Server; it is
    stopped after the test.
    """
    servers = []

    def start(app, *args, workers=1, bind="tcp", chdir=APPS, env=None, cwd=None,
              port=None, wait=True, io_engine=engine):
        argv = []
        host, unix_path = "127.0.0.1", None
        if bind == "tcp":
            port = free_port()
            argv += ["-b", "127.0.0.1:%d" % port]
        elif bind is not None:
            argv += ["-b", bind]
            if bind.startswith("unix:"):
                unix_path = bind[len("unix:"):]
            elif bind.startswith("["):
                host = bind[1:bind.index("]")]
        if workers is not None:
            argv += ["-w", str(workers)]
        if io_engine not in (None, "reference"):
            argv += ["--io-engine", io_engine]
        if chdir is not None:
            argv += ["--chdir", str(chdir)]
        argv += list(args) + EXTRA_ARGS + [app]
        server = Server(argv, tmp_path / ("server-%d.log" % len(servers)), env=env,
                        cwd=cwd or tmp_path, host=host, port=port, unix_path=unix_path)
        servers.append(server)
        return server.start(wait=wait)

    yield start

    failures = []
    for server in servers:
        if server.proc is None:
            continue  # never started
        # Shown by pytest only when the test fails.
        print("==== server %s\n%s" % (" ".join(server.args), server.log()))
        if server.proc.poll() is None:
            try:
                server.stop()
            except pytest.fail.Exception as e:
                failures.append(str(e))
    if failures:
        pytest.fail("\n".join(failures))


@pytest.fixture
def close_log(tmp_path):
    """A file the fixture app appends to when a response's close() is called
    (passed to it as TEST_CLOSE_LOG)."""
    path = tmp_path / "close.log"
    path.write_text("")
    return path


def pytest_collection_modifyitems(config, items):
    if EXTRA_ARGS:
        skip = pytest.mark.skip(reason="needs the sync worker; running with %s"
                                % " ".join(EXTRA_ARGS))
        for item in items:
            if "sync_worker" in item.keywords:
                item.add_marker(skip)
    if "gevent" in EXTRA_ARGS:
        skip = pytest.mark.skip(reason="requests do not queue for greenlets; running with %s"
                                % " ".join(EXTRA_ARGS))
        for item in items:
            if "few_app_slots" in item.keywords:
                item.add_marker(skip)
    if not REFERENCE:
        return
    skip = pytest.mark.skip(reason="ferrocorn-specific; running against %s" % REFERENCE)
    for item in items:
        if "ferrocorn_only" in item.keywords:
            item.add_marker(skip)


def short_tempdir():
    """A short directory name for unix socket paths (108-byte limit)."""
    return tempfile.mkdtemp(prefix="fc-", dir="/tmp")
