"""`--paste FILE[#SECTION]` (alias `--paster`) and `--paste-global`: the app
comes from a PasteDeploy ini file, loaded as gunicorn loads it
(`loadapp("config:" + abspath, relative_to=cwd, global_conf=...)`), with the
file's logging configuration when it has one."""
import json

import pytest

from conftest import run_cli
from support import wait_until

pytest.importorskip("paste.deploy", reason="PasteDeploy is in requirements-dev.txt")

# The fixture app's factory: its answer is the configuration it was given.
FACTORY = '''
import json


def make_app(global_conf, **local_conf):
    body = json.dumps({"global": global_conf, "local": local_conf}).encode()

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/json"),
                                  ("Content-Length", str(len(body)))])
        return [body]

    return app
'''

INI = '''
[DEFAULT]
shared = from-default

[app:main]
use = call:pasteapp:make_app
greeting = hello %(who)s
who = main

[app:other]
use = call:pasteapp:make_app
greeting = hello other
'''


def project(tmp_path, ini=INI):
    (tmp_path / "pasteapp.py").write_text(FACTORY)
    (tmp_path / "app.ini").write_text(ini)
    return tmp_path


def answer(server):
    resp = server.request(target="/")
    assert resp.status == 200, resp
    return json.loads(resp.body)


def test_paste_loads_the_main_app_with_call(serve, tmp_path):
    d = project(tmp_path)
    # The flag stands where the app module would be.
    server = serve("--paste=app.ini", chdir=d)
    conf = answer(server)
    assert conf["local"] == {"greeting": "hello main", "who": "main"}
    assert conf["global"]["shared"] == "from-default"
    assert conf["global"]["__file__"] == str(d / "app.ini")
    assert conf["global"]["here"] == str(d)


def test_paste_section_and_global_conf(serve, tmp_path):
    d = project(tmp_path)
    server = serve("--paster=%s#other" % (d / "app.ini"), "--paste-global", "tier=test",
                   "--paste-global", "a\\=b=c=d", chdir=d)
    conf = answer(server)
    assert conf["local"] == {"greeting": "hello other"}
    assert conf["global"]["tier"] == "test"
    assert conf["global"]["a=b"] == "c=d"


def test_paste_loads_an_egg_entry_point(serve, tmp_path):
    # A tiny installed distribution: a package and a .dist-info naming its
    # paste.app_factory entry point, in the directory the server runs in.
    pkg = tmp_path / "eggapp"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(FACTORY)
    info = tmp_path / "eggapp-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: eggapp\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[paste.app_factory]\nmain = eggapp:make_app\n")
    (tmp_path / "egg.ini").write_text("[app:main]\nuse = egg:eggapp\nflavour = egg\n")
    server = serve("--paste=egg.ini", chdir=tmp_path)
    assert answer(server)["local"] == {"flavour": "egg"}


def test_paste_file_logging_config_is_used(serve, tmp_path):
    ini = INI + '''
[loggers]
keys = root, error

[handlers]
keys = file

[formatters]
keys = plain

[logger_root]
level = INFO
handlers =

[logger_error]
level = INFO
handlers = file
qualname = gunicorn.error
propagate = 0

[handler_file]
class = FileHandler
args = ('%(here)s/paste-error.log',)
formatter = plain

[formatter_plain]
format = from-paste-logging %(message)s
'''
    d = project(tmp_path, ini)
    server = serve("--paste=app.ini", chdir=d)
    answer(server)
    log = d / "paste-error.log"
    wait_until(lambda: log.exists() and "from-paste-logging Booting worker" in log.read_text(),
               10, what="the error log through the ini's logging config")


def test_paste_file_that_does_not_exist_is_a_config_error(tmp_path):
    r = run_cli(["--paste", "missing.ini"], cwd=tmp_path)
    assert r.returncode == 1, r
    assert "paste" in r.stderr and "missing.ini" in r.stderr, r.stderr


@pytest.mark.ferrocorn_only
def test_paste_without_paste_deploy_stops_with_a_clear_error(serve, tmp_path):
    d = project(tmp_path)
    # The config file runs in the master, before the fork: from then on
    # `import paste.deploy` fails as if PasteDeploy were not installed.
    (d / "nopaste.conf.py").write_text("import sys\nsys.modules['paste.deploy'] = None\n")
    server = serve("--paste=app.ini", "-c", "nopaste.conf.py", chdir=d, wait=False)
    assert server.wait_exit(20) == 4
    log = server.log()
    assert "--paste needs PasteDeploy" in log and "pip install PasteDeploy" in log, log
