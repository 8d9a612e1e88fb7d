"""Logging: the error log file, capture_output, USR1 reopen, the access log
and its atoms, JSON access lines, Python logging (logconfig_dict) and syslog."""
import json
import re
import signal
import socket
import textwrap

import pytest

from conftest import REFERENCE
from support import wait_until

pytestmark = [pytest.mark.timeout(60)]

NEEDS_WIRING = pytest.mark.xfail(
    strict=True, reason="needs worker wiring (access log / USR1 reopen calls)")


def read(path):
    return path.read_text() if path.exists() else ""


def test_error_log_file_gets_the_startup_lines(serve, tmp_path):
    errlog = tmp_path / "error.log"
    server = serve("basic:app", "--error-logfile", str(errlog))
    assert server.request().body == b"hello"
    assert wait_until(lambda: "Listening at" in read(errlog), timeout=5), read(errlog)
    assert "Booting worker" in read(errlog)
    # Nothing of it went to stderr.
    assert "Listening at" not in server.log()


def test_log_level_filters_the_error_log(serve, tmp_path):
    errlog = tmp_path / "error.log"
    server = serve("basic:app", "--log-file", str(errlog), "--log-level", "error")
    assert server.request().body == b"hello"
    assert "Listening at" not in read(errlog)


def test_capture_output_sends_app_prints_to_the_error_log(serve, tmp_path):
    (tmp_path / "printer.py").write_text(textwrap.dedent("""
        import sys
        print("printed at import")
        sys.stdout.flush()

        def app(environ, start_response):
            print("printed in a request", flush=True)
            start_response("200 OK", [("Content-Length", "2")])
            return [b"ok"]
    """))
    errlog = tmp_path / "error.log"
    server = serve("printer:app", "--error-logfile", str(errlog), "--capture-output",
                   chdir=tmp_path)
    assert server.request().body == b"ok"
    assert wait_until(lambda: "printed in a request" in read(errlog), timeout=5), read(errlog)
    assert "printed at import" in read(errlog)
    assert "printed in a request" not in server.log()


def test_usr1_reopens_the_error_log_after_a_rename(serve, tmp_path):
    errlog = tmp_path / "error.log"
    server = serve("basic:app", "--error-logfile", str(errlog))
    assert wait_until(lambda: "Listening at" in read(errlog), timeout=5)
    errlog.rename(tmp_path / "error.log.1")
    server.send_signal(signal.SIGUSR1)
    # The master logs about the reopen into the new file; a TTIN adds a worker
    # whose boot line must land there too.
    assert wait_until(errlog.exists, timeout=5), "no new error log after USR1"
    server.send_signal(signal.SIGTTIN)
    assert wait_until(lambda: "Booting worker" in read(errlog), timeout=10), read(errlog)


def test_usr1_reopens_the_access_log(serve, tmp_path):
    acclog = tmp_path / "access.log"
    server = serve("basic:app", "--access-logfile", str(acclog))
    server.request(target="/before")
    assert wait_until(lambda: "/before" in read(acclog), timeout=5)
    acclog.rename(tmp_path / "access.log.1")
    server.send_signal(signal.SIGUSR1)
    assert wait_until(acclog.exists, timeout=5)
    server.request(target="/after")
    assert wait_until(lambda: "/after" in read(acclog), timeout=5), read(acclog)


def test_access_log_default_format(serve, tmp_path):
    acclog = tmp_path / "access.log"
    server = serve("basic:app", "--access-logfile", str(acclog))
    server.request(target="/say/hi?x=1", headers=[("User-Agent", "probe/1.0"),
                                                 ("Referer", "http://ref/")])
    assert wait_until(lambda: "/say/hi" in read(acclog), timeout=5)
    line = [l for l in read(acclog).splitlines() if "/say/hi" in l][0]
    assert re.match(
        r'^127\.0\.0\.1 - - \[\d\d/\w\w\w/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] '
        r'"GET /say/hi\?x=1 HTTP/1\.1" 200 2 "http://ref/" "probe/1\.0"$', line), line


def test_access_log_atoms(serve, tmp_path):
    acclog = tmp_path / "access.log"
    fmt = ("m=%(m)s U=%(U)s q=%(q)s H=%(H)s s=%(s)s b=%(b)s B=%(B)s u=%(u)s "
           "T=%(T)s M=%(M)s D=%(D)s L=%(L)s p=%(p)s "
           "i=%({x-probe}i)s o=%({Content-Type}o)s e=%({REMOTE_ADDR}e)s none=%(zz)s")
    server = serve("basic:app", "--access-logfile", str(acclog), "--access-logformat", fmt)
    server.request(target="/say/a%20b?k=v", headers=[("X-Probe", 'va"l'),
                                                    ("Authorization", "Basic dXNlcjpwdw==")])
    assert wait_until(lambda: "U=/say/a b" in read(acclog), timeout=5)
    # The start-up probe is logged too, and with app threads maybe later.
    line = [l for l in read(acclog).splitlines() if "U=/say/a b" in l][0]
    assert "U=/say/a b q=k=v H=HTTP/1.1 s=200 b=3 B=3 u=user " in line, line
    assert 'i=va\\"l o=text/plain e=127.0.0.1 none=-' in line, line
    assert re.search(r"T=0 M=\d+ D=\d+ L=0\.\d{6} p=<\d+>", line), line


def test_access_log_to_stdout_with_dash(serve):
    server = serve("basic:app", "--access-logfile", "-")
    server.request(target="/say/dash")
    assert wait_until(lambda: '"GET /say/dash HTTP/1.1" 200' in server.log(), timeout=5), \
        server.log_tail()


@pytest.mark.ferrocorn_only
def test_access_log_json_lines(serve, tmp_path):
    acclog = tmp_path / "access.log"
    server = serve("basic:app", "--access-logfile", str(acclog), "--access-log-json")
    server.request(target="/say/js?z=1", headers=[("User-Agent", "probe")])
    assert wait_until(lambda: "/say/js" in read(acclog), timeout=5)
    rec = [json.loads(l) for l in read(acclog).splitlines() if "/say/js" in l][0]
    assert rec["method"] == "GET"
    assert rec["path"] == "/say/js"
    assert rec["query"] == "z=1"
    assert rec["status"] == 200
    assert rec["bytes"] == 2
    assert rec["user_agent"] == "probe"
    assert isinstance(rec["duration_us"], int)


def test_no_access_log_by_default(serve):
    server = serve("basic:app")
    server.request(target="/say/quiet")
    assert '"GET /say/quiet' not in server.log()


def test_logconfig_dict_routes_the_error_log_through_python_logging(serve, tmp_path):
    out = tmp_path / "py-error.log"
    conf = tmp_path / "log.conf.py"
    conf.write_text(textwrap.dedent("""
        logconfig_dict = {
            "version": 1,
            "formatters": {"tagged": {"format": "PYLOG %%(levelname)s %%(message)s"}},
            "handlers": {"file": {"class": "logging.FileHandler", "filename": %r,
                                  "formatter": "tagged"}},
            "loggers": {"gunicorn.error": {"level": "INFO", "handlers": ["file"],
                                           "propagate": False}},
        }
    """ % str(out)))
    server = serve("basic:app", "-c", str(conf))
    assert server.request().body == b"hello"
    assert wait_until(lambda: "PYLOG INFO Listening at" in read(out), timeout=5), read(out)


@pytest.mark.ferrocorn_only
def test_syslog_receives_error_lines(serve):
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(10)
    port = rx.getsockname()[1]
    try:
        serve("basic:app", "--log-syslog", "--log-syslog-to", "udp://127.0.0.1:%d" % port,
              "--log-syslog-prefix", "shop", "--log-syslog-facility", "local0")
        seen = []
        while not any(b"Listening at" in m for m in seen):
            seen.append(rx.recv(4096))
        msg = [m for m in seen if b"Listening at" in m][0]
        assert re.match(rb"^<134>ferrocorn\.shop\.error: \[\d+\] Listening at", msg), msg
    finally:
        rx.close()


def test_unwritable_error_log_is_reported_before_start(tmp_path):
    from conftest import run_cli, APPS
    result = run_cli(["--error-logfile", str(tmp_path / "no" / "dir" / "e.log"),
                      "--chdir", str(APPS), "basic:app"], cwd=tmp_path)
    assert result.returncode == 1
    out = result.stdout + result.stderr
    if not REFERENCE:
        assert "errorlog" in out
    assert "e.log" in out
