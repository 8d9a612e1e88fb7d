"""A small Flask app for a school: students and courses, kept in SQLite.

Serve it with

    ferrocorn -w 2 -b 127.0.0.1:8000 --chdir examples/school app:app

Pages: / (students and courses, with a form to add a student), POST /students
(adds one, then redirects back), /api/students (JSON; POST a JSON object
{"name": ..., "course": ...} to add one).

The data lives in one SQLite file, shared by every worker and kept across
restarts: $SCHOOL_DB, or var/school.sqlite3 beside this file. The schema is
created, and a few students seeded, on the first start. Each request opens
its own connection (SQLite connections must not cross threads or forked
processes), the database runs in WAL mode so readers never wait for the
writer, and a writer that finds the database locked waits up to
BUSY_TIMEOUT seconds instead of failing.
"""
import os
import sqlite3
import time
import unicodedata
from pathlib import Path

from flask import Flask, abort, g, jsonify, redirect, render_template, request, url_for

app = Flask(__name__)

DB_PATH = Path(os.environ.get("SCHOOL_DB") or Path(__file__).resolve().parent / "var"
               / "school.sqlite3")
BUSY_TIMEOUT = 10.0
NAME_MAX = 100

COURSES = [
    ("MATH101", "Algebra"),
    ("PHYS110", "Mechanics"),
    ("HIST200", "Modern History"),
    ("CS120", "Programming in Python"),
]
SEED_STUDENTS = [("Ada Lovelace", "MATH101"), ("Alan Turing", "CS120"),
                 ("Marie Curie", "PHYS110"), ("Mary Beard", "HIST200")]

SCHEMA = """
CREATE TABLE IF NOT EXISTS courses (
    code  TEXT PRIMARY KEY,
    title TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS students (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    name   TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    course TEXT NOT NULL REFERENCES courses(code)
);
"""


def connect():
    conn = sqlite3.connect(DB_PATH, timeout=BUSY_TIMEOUT, isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def use_wal(conn):
    """WAL is a property of the file: set once, kept by every later
    connection. Switching to it needs the file to itself, and SQLite answers
    "database is locked" at once, without waiting out the busy timeout, while
    another worker is switching or seeding: try again until the timeout."""
    deadline = time.monotonic() + BUSY_TIMEOUT
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def init_db():
    """Create the file, the schema and the seed rows if they are missing.
    Every worker runs this when it imports the app; BEGIN IMMEDIATE makes
    the check-and-seed one step, so two workers starting together seed once."""
    DB_PATH.parent.mkdir(parents=True, exist_ok=True)
    conn = connect()
    try:
        use_wal(conn)
        conn.execute("BEGIN IMMEDIATE")
        for statement in SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        if conn.execute("SELECT count(*) FROM courses").fetchone()[0] == 0:
            conn.executemany("INSERT INTO courses (code, title) VALUES (?, ?)", COURSES)
            conn.executemany("INSERT INTO students (name, course) VALUES (?, ?)",
                             SEED_STUDENTS)
        conn.execute("COMMIT")
    finally:
        conn.close()


def db():
    """This request's connection, opened on first use and closed at its end."""
    if "db" not in g:
        g.db = connect()
    return g.db


@app.teardown_appcontext
def close_db(_exc):
    conn = g.pop("db", None)
    if conn is not None:
        conn.close()


def courses():
    return {row["code"]: row["title"]
            for row in db().execute("SELECT code, title FROM courses ORDER BY code")}


def students():
    return [dict(row) for row in
            db().execute("SELECT id, name, course FROM students ORDER BY id")]


def validate(name, course):
    """The cleaned-up name, or raise ValueError with a message for the user."""
    name = " ".join((name or "").split())
    if not name:
        raise ValueError("A student needs a name.")
    if len(name) > NAME_MAX:
        raise ValueError("A name can have at most %d characters (this one has %d)."
                         % (NAME_MAX, len(name)))
    if any(unicodedata.category(c)[0] == "C" for c in name):
        raise ValueError("A name cannot contain control characters.")
    if course not in courses():
        raise ValueError("Pick one of the listed courses.")
    return name


def add_student(name, course):
    cur = db().execute("INSERT INTO students (name, course) VALUES (?, ?)", (name, course))
    return {"id": cur.lastrowid, "name": name, "course": course}


@app.after_request
def served_by(resp):
    # Which worker answered: shows that every worker sees the same data.
    resp.headers["X-Served-By"] = str(os.getpid())
    return resp


@app.get("/")
def index():
    return render_template("index.html", students=students(), courses=courses(),
                           error=None, form={})


@app.post("/students")
def create_student():
    form = {"name": request.form.get("name", ""), "course": request.form.get("course", "")}
    try:
        name = validate(form["name"], form["course"])
    except ValueError as e:
        # The page again, with the message and what was typed, as 422.
        return render_template("index.html", students=students(), courses=courses(),
                               error=str(e), form=form), 422
    add_student(name, form["course"])
    # Post/redirect/get: reloading the page does not add the student twice.
    return redirect(url_for("index"), code=303)


@app.get("/api/students")
def api_students():
    return jsonify(students=students(), courses=courses())


@app.post("/api/students")
def api_create_student():
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        return jsonify(error='Send a JSON object: {"name": ..., "course": ...}.'), 400
    name, course = data.get("name"), data.get("course")
    if not isinstance(name, str) or not isinstance(course, str):
        return jsonify(error="name and course must be strings."), 422
    try:
        name = validate(name, course)
    except ValueError as e:
        return jsonify(error=str(e)), 422
    return jsonify(add_student(name, course)), 201


@app.get("/api/students/<int:student_id>")
def api_student(student_id):
    row = db().execute("SELECT id, name, course FROM students WHERE id = ?",
                       (student_id,)).fetchone()
    if row is None:
        abort(404)
    return jsonify(dict(row))


init_db()
