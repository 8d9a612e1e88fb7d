"""The example Flask app (examples/school) end to end, through `requests`:
two workers sharing one SQLite database."""
import re
import sqlite3

import pytest
import requests

from conftest import EXAMPLES

SCHOOL = EXAMPLES / "school"
WORKERS = 2


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "school.sqlite3"


@pytest.fixture
def start_school(serve, db_path):
    def start():
        server = serve("app:app", workers=WORKERS, chdir=SCHOOL, env={"SCHOOL_DB": str(db_path)})
        server.wait_workers(WORKERS)
        return server
    return start


@pytest.fixture
def school(start_school):
    return start_school()


def get(url, **kw):
    # A new connection per request: with SO_REUSEPORT each one may land on
    # either worker.
    with requests.Session() as http:
        return http.get(url, timeout=10, **kw)


def names(school):
    return [s["name"] for s in get(school.url + "/api/students").json()["students"]]


def test_index_lists_seeded_students_and_courses(school):
    resp = get(school.url + "/")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("text/html")
    assert "Ada Lovelace" in resp.text
    assert "Programming in Python" in resp.text


def test_schema_and_seed_are_created_once_in_the_database_file(school, db_path):
    assert names(school) == ["Ada Lovelace", "Alan Turing", "Marie Curie", "Mary Beard"]
    with sqlite3.connect(db_path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT count(*) FROM courses").fetchone()[0] == 4


def test_posting_the_form_adds_a_student_then_redirects(school):
    with requests.Session() as http:
        resp = http.post(school.url + "/students",
                         data={"name": "Grace Hopper", "course": "CS120"},
                         allow_redirects=False, timeout=10)
        assert resp.status_code == 303
        assert resp.headers["Location"].endswith("/")
        page = http.get(school.url + "/", timeout=10)
        assert page.status_code == 200
        assert re.search(r'class="student">Grace Hopper<', page.text)
    api = get(school.url + "/api/students").json()
    assert {"name": "Grace Hopper", "course": "CS120"}.items() <= api["students"][-1].items()


def test_students_added_through_any_worker_show_on_every_read(school):
    served_by = set()
    added = []
    for i in range(12):
        name = "Student %02d" % i
        with requests.Session() as http:
            resp = http.post(school.url + "/students", data={"name": name, "course": "MATH101"},
                             allow_redirects=False, timeout=10)
        assert resp.status_code == 303, resp.text
        served_by.add(resp.headers["X-Served-By"])
        added.append(name)
        for _ in range(3):
            resp = get(school.url + "/api/students")
            served_by.add(resp.headers["X-Served-By"])
            assert [s["name"] for s in resp.json()["students"]][4:] == added
    # Reads keep coming until both workers have answered one (bounded).
    for _ in range(200):
        if len(served_by) == WORKERS:
            break
        resp = get(school.url + "/")
        served_by.add(resp.headers["X-Served-By"])
        assert all(name in resp.text for name in added)
    assert served_by == set(str(pid) for pid in school.workers()), \
        "expected answers from both workers, got %s" % served_by


def test_students_survive_a_restart(start_school):
    first = start_school()
    resp = requests.post(first.url + "/api/students",
                         json={"name": "Rosalind Franklin", "course": "PHYS110"}, timeout=10)
    assert resp.status_code == 201, resp.text
    student = resp.json()
    assert first.stop() == 0
    second = start_school()
    assert "Rosalind Franklin" in names(second)
    assert get(second.url + "/api/students/%d" % student["id"]).json() == student
    # Seeded once, not again on the second start.
    assert names(second).count("Ada Lovelace") == 1


@pytest.mark.parametrize("form, message", [
    ({"name": " ", "course": "CS120"}, "A student needs a name."),
    ({"name": "x" * 101, "course": "CS120"}, "at most 100 characters"),
    ({"name": "Bell\x07", "course": "CS120"}, "control characters"),
    ({"name": "Emmy Noether", "course": "NOPE999"}, "Pick one of the listed courses."),
    ({"course": "CS120"}, "A student needs a name."),
])
def test_bad_form_input_is_refused_with_a_message(school, form, message):
    before = names(school)
    resp = requests.post(school.url + "/students", data=form, allow_redirects=False, timeout=10)
    assert resp.status_code == 422
    assert resp.headers["Content-Type"].startswith("text/html")
    assert re.search(r'<p class="error"[^>]*>[^<]*%s' % re.escape(message), resp.text), resp.text
    if form.get("name") == "Emmy Noether":
        assert 'value="Emmy Noether"' in resp.text  # what was typed is kept
    assert names(school) == before


def test_bad_json_input_is_refused_with_a_message(school):
    before = names(school)
    resp = requests.post(school.url + "/api/students", data=b"not json",
                         headers={"Content-Type": "application/json"}, timeout=10)
    assert resp.status_code == 400
    assert "JSON object" in resp.json()["error"]
    resp = requests.post(school.url + "/api/students", json={"name": "", "course": "CS120"},
                         timeout=10)
    assert resp.status_code == 422
    assert resp.json() == {"error": "A student needs a name."}
    resp = requests.post(school.url + "/api/students", json={"name": 7, "course": "CS120"},
                         timeout=10)
    assert resp.status_code == 422
    assert names(school) == before


def test_json_endpoint_lists_students(school):
    resp = get(school.url + "/api/students")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "application/json"
    data = resp.json()
    assert [s["name"] for s in data["students"]][:2] == ["Ada Lovelace", "Alan Turing"]
    assert data["courses"]["MATH101"] == "Algebra"
    one = get(school.url + "/api/students/1").json()
    assert one["name"] == "Ada Lovelace"
    assert get(school.url + "/api/students/999").status_code == 404


def test_keep_alive_session_serves_many_requests(school):
    with requests.Session() as http:
        for _ in range(20):
            assert http.get(school.url + "/api/students", timeout=10).status_code == 200
