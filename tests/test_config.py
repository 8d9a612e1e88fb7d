"""Configuration: sources and precedence, the config file, --print-config,
--check-config, -e, and the error messages of every kind of mistake."""
import re
import textwrap

import pytest

from conftest import APPS, REFERENCE, free_port, run_cli

pytestmark = [pytest.mark.timeout(60)]

ferrocorn_only = pytest.mark.ferrocorn_only


def write(path, text):
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def printed(result):
    """--print-config output as {name: value text}."""
    assert result.returncode == 0, result.stdout + result.stderr
    out = {}
    for line in result.stdout.splitlines():
        m = re.match(r"^(\w+)\s+= (.*)$", line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def print_config(args, tmp_path, env=None):
    """--print-config also loads the app (as gunicorn's does), so basic:app
    is found through --chdir."""
    if "--chdir" not in args:
        args = ["--chdir", str(APPS)] + list(args)
    return printed(run_cli(["--print-config"] + list(args), env=env, cwd=tmp_path))


PRODUCTION_CONF = """
    # A typical production gunicorn.conf.py
    import multiprocessing
    import os

    bind = os.environ.get("TEST_BIND", "127.0.0.1:8000")
    workers = multiprocessing.cpu_count() * 2 + 1
    worker_connections = 500
    timeout = 45
    graceful_timeout = 20
    keepalive = 5
    max_requests = 1000
    max_requests_jitter = 50
    accesslog = "-"
    errorlog = "-"
    loglevel = "warning"
    access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(D)s'
    forwarded_allow_ips = "10.0.0.0/8,127.0.0.1"
    secure_scheme_headers = {"X-FORWARDED-PROTO": "https"}
    proc_name = "shop"
    raw_env = ["SHOP_MODE=production"]

    def on_starting(server):
        server.log.info("starting shop")

    def post_fork(server, worker):
        server.log.info("Worker spawned (pid: %s)", worker.pid)

    def pre_request(worker, req):
        worker.log.debug("%s %s", req.method, req.path)

    def post_request(worker, req, environ, resp):
        pass

    def worker_exit(server, worker):
        pass

    def when_ready(server):
        server.log.info("Server is ready. Spawning workers")
"""


def test_production_gunicorn_conf_py_is_read_from_the_working_directory(tmp_path):
    import multiprocessing
    write(tmp_path / "gunicorn.conf.py", PRODUCTION_CONF)
    conf = print_config(["basic:app", "--chdir", str(APPS)], tmp_path)
    assert conf["workers"] == str(multiprocessing.cpu_count() * 2 + 1)
    assert conf["bind"] == "['127.0.0.1:8000']"
    assert conf["timeout"] == "45"
    assert conf["keepalive"] == "5"
    assert conf["loglevel"] == "warning"
    assert conf["accesslog"] == "-"
    assert conf["proc_name"] == "shop"
    assert conf["max_requests_jitter"] == "50"
    assert conf["secure_scheme_headers"] == "{'X-FORWARDED-PROTO': 'https'}"
    assert conf["raw_env"] == "['SHOP_MODE=production']"
    if not REFERENCE:
        assert conf["config"] == "./gunicorn.conf.py"
        for hook in ("on_starting", "post_fork", "pre_request", "post_request",
                     "worker_exit", "when_ready"):
            assert conf[hook] != "None", hook


def test_production_conf_serves_requests(serve, tmp_path):
    conf = write(tmp_path / "prod.conf.py", PRODUCTION_CONF.replace(
        "workers = multiprocessing.cpu_count() * 2 + 1", "workers = 2"))
    port = free_port()
    server = serve("basic:app", "-c", str(conf), bind=None, port=port, workers=None,
                   env={"TEST_BIND": "127.0.0.1:%d" % port})
    assert server.request().body == b"hello"
    server.wait_workers(2)


@ferrocorn_only
def test_ferrocorn_conf_py_is_preferred_over_gunicorn_conf_py(tmp_path):
    write(tmp_path / "gunicorn.conf.py", "workers = 2\n")
    write(tmp_path / "ferrocorn.conf.py", "workers = 3\n")
    assert print_config(["basic:app"], tmp_path)["workers"] == "3"
    (tmp_path / "ferrocorn.conf.py").unlink()
    assert print_config(["basic:app"], tmp_path)["workers"] == "2"


def test_precedence_cli_over_cmd_args_env_over_config_file(tmp_path):
    write(tmp_path / "gunicorn.conf.py", """
        workers = 2
        timeout = 10
        keepalive = 7
        backlog = 100
    """)
    env = {"GUNICORN_CMD_ARGS": "--timeout 11 --keep-alive 8", "WEB_CONCURRENCY": "5"}
    conf = print_config(["--keep-alive", "9", "basic:app"], tmp_path, env=env)
    assert conf["workers"] == "2"      # config file beats $WEB_CONCURRENCY
    assert conf["timeout"] == "11"     # GUNICORN_CMD_ARGS beats the config file
    assert conf["keepalive"] == "9"    # the command line beats everything
    assert conf["backlog"] == "100"


@ferrocorn_only
def test_ferrocorn_cmd_args_win_over_gunicorn_cmd_args(tmp_path):
    env = {"GUNICORN_CMD_ARGS": "--timeout 11 -w 2", "FERROCORN_CMD_ARGS": "--timeout 12"}
    conf = print_config(["basic:app"], tmp_path, env=env)
    assert conf["timeout"] == "12"
    assert conf["workers"] == "1"


def test_environment_defaults(tmp_path):
    env = {"PORT": "9123", "WEB_CONCURRENCY": "4", "FORWARDED_ALLOW_IPS": "10.1.1.1"}
    conf = print_config(["basic:app"], tmp_path, env=env)
    assert conf["bind"] == "['0.0.0.0:9123']"
    assert conf["workers"] == "4"
    assert conf["forwarded_allow_ips"] == "10.1.1.1"


def test_config_flag_forms_file_and_python_module(tmp_path):
    write(tmp_path / "settings_one.py", "workers = 3\n")
    assert print_config(["-c", "settings_one.py", "basic:app"], tmp_path)["workers"] == "3"
    assert print_config(["-c", "file:settings_one.py", "basic:app"], tmp_path)["workers"] == "3"
    pkg = tmp_path / "confpkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    write(pkg / "prod.py", "workers = 4\n")
    conf = print_config(["-c", "python:confpkg.prod", "basic:app"], tmp_path,
                        env={"PYTHONPATH": str(tmp_path)})
    assert conf["workers"] == "4"


def test_wsgi_app_from_the_config_file(serve, tmp_path):
    conf = write(tmp_path / "app.conf.py", 'wsgi_app = "specapp:named"\n')
    server = serve("", "-c", str(conf))
    assert server.request().body == b"specapp.named"


def test_print_config_lists_every_setting_and_exits_0(tmp_path):
    result = run_cli(["--print-config", "--chdir", str(APPS), "basic:app"], cwd=tmp_path)
    conf = printed(result)
    for name in ("bind", "workers", "timeout", "accesslog", "access_log_format",
                 "errorlog", "loglevel", "post_fork", "limit_request_line"):
        assert name in conf, name
    assert conf["limit_request_line"] == "4094"


def test_check_config_loads_the_app_and_exits_0_or_1(tmp_path):
    ok = run_cli(["--check-config", "--chdir", str(APPS), "basic:app"], cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    bad = run_cli(["--check-config", "--chdir", str(APPS), "no_such_module_xyz:app"],
                  cwd=tmp_path)
    assert bad.returncode == 1
    assert "no_such_module_xyz" in bad.stdout + bad.stderr


def test_env_flag_sets_variables_the_workers_see(serve, tmp_path):
    write(tmp_path / "envapp.py", """
        import os

        def app(environ, start_response):
            body = ("%s|%s" % (os.environ.get("GREETING"), os.environ.get("OTHER"))).encode()
            start_response("200 OK", [("Content-Length", str(len(body)))])
            return [body]
    """)
    conf = write(tmp_path / "env.conf.py", 'raw_env = ["OTHER=from-file"]\n')
    server = serve("envapp:app", "-e", "GREETING=hello=world", chdir=tmp_path)
    assert server.request().body == b"hello=world|None"
    server2 = serve("envapp:app", "-c", str(conf), chdir=tmp_path)
    assert server2.request().body == b"None|from-file"


# ---------------------------------------------------------------- mistakes

def assert_error(result, *needles):
    out = result.stdout + result.stderr
    assert result.returncode == 1, "exit %s\n%s" % (result.returncode, out)
    for n in needles:
        assert n in out, "%r not in:\n%s" % (n, out)
    assert "Booting worker" not in out


@ferrocorn_only
def test_wrong_type_in_config_file_names_setting_value_and_expectation(tmp_path):
    write(tmp_path / "gunicorn.conf.py", 'workers = "four"\n')
    result = run_cli(["basic:app"], cwd=tmp_path)
    assert_error(result, "workers", "'four'", "gunicorn.conf.py", "expected a whole number")


@ferrocorn_only
def test_bad_bind_in_config_file_is_reported_before_start(tmp_path):
    write(tmp_path / "gunicorn.conf.py", 'bind = ["127.0.0.1:notaport"]\n')
    result = run_cli(["basic:app"], cwd=tmp_path)
    assert_error(result, "bind", "'127.0.0.1:notaport'", "notaport")


@ferrocorn_only
def test_bad_bind_on_the_command_line_names_the_flag(tmp_path):
    result = run_cli(["-b", "127.0.0.1:99999", "basic:app"], cwd=tmp_path)
    assert_error(result, "--bind", "127.0.0.1:99999", "65535")


@ferrocorn_only
def test_syntax_error_in_config_file_gives_file_and_line(tmp_path):
    write(tmp_path / "gunicorn.conf.py", "workers = 2\ntimeout = (\n")
    result = run_cli(["basic:app"], cwd=tmp_path)
    assert_error(result, "gunicorn.conf.py, line 2", "SyntaxError")


@ferrocorn_only
def test_exception_in_config_file_gives_file_line_and_traceback(tmp_path):
    write(tmp_path / "gunicorn.conf.py", "workers = 2\nimport no_such_module_for_conf\n")
    result = run_cli(["basic:app"], cwd=tmp_path)
    assert_error(result, "gunicorn.conf.py, line 2", "no_such_module_for_conf", "Traceback")


@ferrocorn_only
def test_hook_with_the_wrong_arity_is_refused(tmp_path):
    write(tmp_path / "gunicorn.conf.py", "def post_fork(worker):\n    pass\n")
    result = run_cli(["basic:app"], cwd=tmp_path)
    assert_error(result, "post_fork", "taking 2 positional arguments", "it takes 1")


def test_missing_config_file_on_the_command_line_is_an_error(tmp_path):
    result = run_cli(["-c", "nope.conf.py", "basic:app"], cwd=tmp_path)
    assert result.returncode == 1
    assert "nope.conf.py" in result.stdout + result.stderr


@ferrocorn_only
def test_unknown_config_file_name_is_warned_about(tmp_path):
    write(tmp_path / "gunicorn.conf.py", "workerz = 3\n")
    result = run_cli(["--print-config", "--chdir", str(APPS), "basic:app"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Unknown setting workerz" in result.stderr
    assert "did you mean workers?" in result.stderr


@ferrocorn_only
def test_unimplemented_gunicorn_setting_is_accepted_with_a_warning(tmp_path):
    write(tmp_path / "gunicorn.conf.py", 'enable_backlog_metric = True\n')
    result = run_cli(["--print-config", "--chdir", str(APPS), "basic:app"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "enable_backlog_metric = True" in result.stderr
    assert "does not implement" in result.stderr


@ferrocorn_only
def test_bad_value_in_cmd_args_env_names_the_variable(tmp_path):
    result = run_cli(["basic:app"], cwd=tmp_path, env={"FERROCORN_CMD_ARGS": "--no-such"})
    assert result.returncode == 2
    assert "FERROCORN_CMD_ARGS" in result.stderr


def test_bad_integer_on_the_command_line_is_a_usage_error(tmp_path):
    result = run_cli(["--timeout", "soon", "basic:app"], cwd=tmp_path)
    assert result.returncode == 2
    assert "soon" in result.stderr


@ferrocorn_only
def test_bad_web_concurrency_names_the_variable(tmp_path):
    result = run_cli(["basic:app"], cwd=tmp_path, env={"WEB_CONCURRENCY": "lots"})
    assert_error(result, "WEB_CONCURRENCY", "'lots'")


@ferrocorn_only
def test_help_is_grouped_by_section():
    out = run_cli(["--help"]).stdout
    for heading in ("Server Socket:", "Worker Processes:", "Logging:", "Security:", "SSL:"):
        assert heading in out, heading
    assert out.index("Logging:") < out.index("--access-logfile")


@ferrocorn_only
def test_settings_doc_is_generated_from_the_table():
    from conftest import REPO
    result = run_cli(["--print-settings-doc"])
    assert result.returncode == 0
    assert result.stdout == (REPO / "docs" / "settings.md").read_text(), \
        "docs/settings.md is stale: run `ferrocorn --print-settings-doc > docs/settings.md`"


def test_eventlet_is_refused_naming_the_alternatives():
    result = run_cli(["-k", "eventlet", "-b", "127.0.0.1:0", "--chdir", str(APPS), "basic:app"])
    assert result.returncode == 1, result.stderr
    assert "--worker-class" in result.stderr and "eventlet" in result.stderr
    assert "removed its worker" in result.stderr
    for alternative in ("--threads", "-k gevent", "-k asgi"):
        assert alternative in result.stderr


def test_gevent_worker_class_passes_check_config_without_a_warning():
    result = run_cli(["-k", "gevent", "--check-config", "--chdir", str(APPS), "basic:app"])
    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stderr.upper(), result.stderr
