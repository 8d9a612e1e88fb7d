"""The example Django project (examples/django) end to end: a template page,
a plain-text view, and a JSON view that refuses a body that is not JSON."""
import pytest
import requests

from conftest import EXAMPLES

DJANGO = EXAMPLES / "django"


@pytest.fixture
def site(serve):
    server = serve("mysite.wsgi:application", workers=2, chdir=DJANGO)
    server.wait_workers(2)
    return server


def test_the_template_page_names_the_worker(site):
    r = requests.get(site.url + "/", timeout=10)
    assert r.status_code == 200
    assert "Served by ferrocorn" in r.text
    assert "answered /." in r.text
    assert r.headers["X-Frame-Options"] == "DENY"


def test_hello_and_an_unknown_path(site):
    r = requests.get(site.url + "/hello", timeout=10)
    assert (r.status_code, r.text) == (200, "Hello, World!")
    assert r.headers["Content-Type"] == "text/plain"
    assert requests.get(site.url + "/nowhere", timeout=10).status_code == 404


def test_json_in_json_out_and_bad_json_refused(site):
    r = requests.post(site.url + "/api/echo", json={"a": [1, 2]}, timeout=10)
    assert r.status_code == 200
    assert r.json()["received"] == {"a": [1, 2]}
    bad = requests.post(site.url + "/api/echo", data=b"{not json", timeout=10,
                        headers={"Content-Type": "application/json"})
    assert bad.status_code == 400
    assert requests.get(site.url + "/api/echo", timeout=10).status_code == 405


def test_a_host_outside_allowed_hosts_is_refused(site):
    r = requests.get(site.url + "/hello", headers={"Host": "evil.example"}, timeout=10)
    assert r.status_code == 400
