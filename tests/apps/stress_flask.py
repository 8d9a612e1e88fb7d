"""A Flask app for tests/test_stress.py: a view that sleeps, as a view
waiting on a database does."""
import time

from flask import Flask, request

app = Flask(__name__)


@app.route("/sleep")
def sleep():
    time.sleep(float(request.args.get("s", "0.3")))
    return "slept %s" % request.headers.get("X-Stress-Id", "")
