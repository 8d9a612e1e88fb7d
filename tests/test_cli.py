"""The command line: gunicorn's flags, app spec forms, environment defaults."""
import importlib.metadata
import re
import sys

import pytest

from conftest import APPS, REFERENCE, SERVER_NAME, free_port, run_cli

pytestmark = pytest.mark.timeout(60)


def test_version_prints_name_and_package_version():
    result = run_cli(["--version"])
    assert result.returncode == 0, result.stderr
    out = result.stdout + result.stderr
    assert SERVER_NAME in out
    assert importlib.metadata.version(SERVER_NAME) in out


@pytest.mark.ferrocorn_only
def test_version_names_the_io_engines_and_the_python():
    result = run_cli(["--version"])
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    # gunicorn's first line, then what this build and machine offer.
    assert lines[0] == "ferrocorn (version %s)" % importlib.metadata.version("ferrocorn")
    assert re.fullmatch(r"io engines: uring, epoll; --io-engine auto picks (uring|epoll \(.+\))",
                        lines[1]), lines[1]
    assert lines[2].startswith("python: CPython %d.%d." % sys.version_info[:2]), lines[2]


@pytest.mark.ferrocorn_only
def test_python_dash_m_runs_the_same_entry_point():
    result = run_cli_python(["-m", "ferrocorn", "--version"])
    assert result.returncode == 0, result.stderr
    assert importlib.metadata.version("ferrocorn") in result.stdout + result.stderr


def run_cli_python(args):
    import subprocess
    from conftest import server_env
    return subprocess.run([sys.executable] + args, capture_output=True, text=True,
                          timeout=30, stdin=subprocess.DEVNULL, env=server_env())


def test_help_lists_gunicorn_flags_and_app_module():
    result = run_cli(["--help"])
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "APP_MODULE" in out
    for flag in ("--bind", "--workers", "--chdir", "--pythonpath", "--keep-alive",
                 "--backlog", "--reuse-port", "--limit-request-line",
                 "--limit-request-fields", "--limit-request-field_size",
                 "--forwarded-allow-ips", "--log-level"):
        assert flag in out, "--help does not mention %s" % flag


@pytest.mark.ferrocorn_only
def test_help_lists_io_engine_choices():
    out = run_cli(["--help"]).stdout
    assert "--io-engine" in out
    for choice in ("auto", "uring", "epoll"):
        assert choice in out


def test_unknown_flag_exits_2_naming_the_flag():
    result = run_cli(["--frobnicate-the-server", "basic:app"], cwd=APPS)
    assert result.returncode == 2
    assert "--frobnicate-the-server" in result.stderr


@pytest.mark.ferrocorn_only
def test_bad_io_engine_value_exits_2():
    result = run_cli(["--io-engine", "kqueue", "basic:app"], cwd=APPS)
    assert result.returncode == 2
    assert "kqueue" in result.stderr


def test_missing_app_module_exits_nonzero_without_restart_loop(serve):
    server = serve("no_such_module_xyz:app", workers=2, wait=False)
    code = server.wait_exit(timeout=20)
    assert code is not None, "server still running 20 s after failing to load the app\n" \
        + server.log_tail()
    assert code != 0
    log = server.log()
    assert "no_such_module_xyz" in log
    # Each worker may try once; a master that restarts them would boot more.
    assert len(re.findall(r"Booting worker", log)) <= 2, log


def test_app_spec_naming_a_non_callable_exits_nonzero(serve):
    server = serve("specapp:not_callable", wait=False)
    code = server.wait_exit(timeout=20)
    assert code is not None and code != 0, server.log_tail()
    assert "callable" in server.log().lower()


@pytest.mark.parametrize("spec, body", [
    ("specapp", b"specapp.application"),
    ("specapp:named", b"specapp.named"),
    ("specpkg.factory:create_app()", b"factory"),
    ("specpkg.factory:create_app('hi', excited=True, times=2)", b"hi!hi!"),
])
def test_app_spec_forms_load_the_right_callable(serve, spec, body):
    server = serve(spec)
    resp = server.request(target="/")
    assert resp.status == 200
    assert resp.body == body


def test_chdir_sets_the_working_directory_and_import_root(serve, tmp_path):
    server = serve("basic:app", chdir=APPS, cwd=tmp_path)
    resp = server.request(target="/cwd")
    assert resp.status == 200
    assert resp.body.decode() == str(APPS)


def test_pythonpath_makes_a_directory_importable(serve, tmp_path):
    server = serve("pathapp:app", "--pythonpath", str(APPS / "extra_path"), chdir=tmp_path)
    assert server.request().body == b"pathapp"


def test_port_env_sets_the_default_bind_on_all_interfaces(serve):
    port = free_port()
    server = serve("basic:app", bind=None, port=port, env={"PORT": str(port)})
    assert server.request().body == b"hello"
    assert "Listening at: http://0.0.0.0:%d" % port in server.log()


def test_web_concurrency_env_sets_the_default_worker_count(serve):
    server = serve("basic:app", workers=None, env={"WEB_CONCURRENCY": "3"})
    server.wait_workers(3)


def test_workers_flag_overrides_web_concurrency(serve):
    server = serve("basic:app", workers=1, env={"WEB_CONCURRENCY": "3"})
    server.wait_workers(1)


def test_startup_log_names_version_and_address(serve):
    server = serve("basic:app")
    log = server.log()
    if REFERENCE:
        assert "Starting %s" % SERVER_NAME in log
    else:
        assert "Starting ferrocorn %s" % importlib.metadata.version("ferrocorn") in log
    assert "Listening at: http://127.0.0.1:%d (%d)" % (server.port, server.pid) in log
