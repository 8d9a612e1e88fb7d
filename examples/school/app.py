"""A small Flask app for a school: students and courses.

Serve it with

    ferrocorn -w 2 -b 127.0.0.1:8000 --chdir examples/school app:app

Pages: / (students and courses, with a form to add a student), POST /students
(adds one, then redirects back), /api/students (JSON). The data lives in
memory and is seeded at import, so each worker process has its own copy:
a student added through one worker is not seen by another.
"""
from itertools import count

from flask import Flask, abort, jsonify, redirect, render_template, request, url_for

app = Flask(__name__)

COURSES = {
    "MATH101": "Algebra",
    "PHYS110": "Mechanics",
    "HIST200": "Modern History",
    "CS120": "Programming in Python",
}

_ids = count(1)
STUDENTS = []


def add_student(name, course):
    student = {"id": next(_ids), "name": name, "course": course}
    STUDENTS.append(student)
    return student


for _name, _course in [("Ada Lovelace", "MATH101"), ("Alan Turing", "CS120"),
                       ("Marie Curie", "PHYS110"), ("Mary Beard", "HIST200")]:
    add_student(_name, _course)


@app.get("/")
def index():
    return render_template("index.html", students=STUDENTS, courses=COURSES,
                           error=request.args.get("error"))


@app.post("/students")
def create_student():
    name = request.form.get("name", "").strip()
    course = request.form.get("course", "")
    if not name or len(name) > 100:
        return redirect(url_for("index", error="A student needs a name (up to 100 characters)."))
    if course not in COURSES:
        return redirect(url_for("index", error="Pick one of the listed courses."))
    add_student(name, course)
    # Post/redirect/get: reloading the page does not add the student twice.
    return redirect(url_for("index"), code=303)


@app.get("/api/students")
def api_students():
    return jsonify(students=STUDENTS, courses=COURSES)


@app.get("/api/students/<int:student_id>")
def api_student(student_id):
    for student in STUDENTS:
        if student["id"] == student_id:
            return jsonify(student)
    abort(404)
