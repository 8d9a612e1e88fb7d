"""The example Flask app (examples/school) end to end, through `requests`."""
import re

import pytest
import requests

from conftest import EXAMPLES


@pytest.fixture
def school(serve):
    # One worker: the app keeps its data in memory, per process.
    return serve("app:app", chdir=EXAMPLES / "school")


def test_index_lists_seeded_students_and_courses(school):
    resp = requests.get(school.url + "/", timeout=10)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("text/html")
    assert "Ada Lovelace" in resp.text
    assert "Programming in Python" in resp.text


def test_posting_the_form_adds_a_student_then_redirects(school):
    with requests.Session() as http:
        resp = http.post(school.url + "/students",
                         data={"name": "Grace Hopper", "course": "CS120"},
                         allow_redirects=False, timeout=10)
        assert resp.status_code == 303
        assert resp.headers["Location"].endswith("/")
        page = http.get(school.url + resp.headers["Location"].replace(school.url, ""),
                        timeout=10)
        assert page.status_code == 200
        assert re.search(r'class="student">Grace Hopper<', page.text)
        api = http.get(school.url + "/api/students", timeout=10).json()
    assert {"name": "Grace Hopper", "course": "CS120"}.items() <= api["students"][-1].items()


def test_form_without_a_name_is_refused_with_a_message(school):
    resp = requests.post(school.url + "/students", data={"name": " ", "course": "CS120"},
                         timeout=10)
    assert resp.status_code == 200  # after the redirect
    assert "needs a name" in resp.text
    names = [s["name"] for s in requests.get(school.url + "/api/students", timeout=10)
             .json()["students"]]
    assert " " not in names and "" not in names


def test_json_endpoint_lists_students(school):
    resp = requests.get(school.url + "/api/students", timeout=10)
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "application/json"
    data = resp.json()
    assert [s["name"] for s in data["students"]][:2] == ["Ada Lovelace", "Alan Turing"]
    assert data["courses"]["MATH101"] == "Algebra"
    one = requests.get(school.url + "/api/students/1", timeout=10).json()
    assert one["name"] == "Ada Lovelace"
    assert requests.get(school.url + "/api/students/999", timeout=10).status_code == 404


def test_keep_alive_session_serves_many_requests(school):
    with requests.Session() as http:
        for _ in range(20):
            assert http.get(school.url + "/api/students", timeout=10).status_code == 200
