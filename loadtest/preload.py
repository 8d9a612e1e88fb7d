"""What `--preload` saves: PSS per worker with and without it, ferrocorn
against gunicorn 27 doing the same, on the Flask and Django examples.

    loadtest/.venv/bin/python loadtest/preload.py [--json FILE]

For each server (ferrocorn, gunicorn's sync worker), app (examples/school,
Flask; examples/django) and mode (without, with --preload), it starts the
server with 4 workers on a free 127.0.0.1 port, waits until every worker
has run post_worker_init (a config-file hook both servers call, which sends
a datagram here) and the app answers, sends 200 requests on new
connections so every worker has served some, then reads the proportional
set size (Pss in /proc/PID/smaps_rollup) of the master and of each worker.
PSS divides shared pages among the processes that share them, so the pages
a preloading master gave its workers copy-on-write are counted once in all.

Needs ferrocorn, gunicorn==27.0.1, Flask and Django in the running Python's
environment (`loadtest/run` sets up loadtest/.venv with all of them).
It stops by itself and only talks to 127.0.0.1.
"""
import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
WORKERS = 4
REQUESTS = 200
HOOKS = """
import os, socket
def post_worker_init(worker):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.sendto(b"%d" % os.getpid(), os.environ["PRELOAD_READY_SOCKET"])
    s.close()
"""
APPS = {
    "flask": (REPO / "examples" / "school", "app:app", "/"),
    "django": (REPO / "examples" / "django", "mysite.wsgi:application", "/"),
}


def argv(server, app, preload, port, conf, engine):
    chdir, spec, _ = APPS[app]
    common = ["-w", str(WORKERS), "-b", "127.0.0.1:%d" % port, "--chdir", str(chdir), "-c", conf]
    if preload:
        common.append("--preload")
    if server == "gunicorn":
        return [str(BIN / "gunicorn"), "--no-control-socket", *common, spec]
    return [str(BIN / "ferrocorn"), "--io-engine", engine, *common, spec]


def pss_kib(pid):
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            if line.startswith("Pss:"):
                return int(line.split()[1])
    raise OSError("no Pss line for pid %d" % pid)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request("GET", path, headers={"Connection": "close"})
        r = c.getresponse()
        r.read()
        return r.status
    finally:
        c.close()


def measure(server, app, preload, tmp, timeout, engine):
    port = free_port()
    sock_path = os.path.join(tmp, "ready-%s-%s-%d.sock" % (server, app, preload))
    ready = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    ready.bind(sock_path)
    ready.settimeout(0.2)
    conf = os.path.join(tmp, "hooks.py")
    env = dict(os.environ, PRELOAD_READY_SOCKET=sock_path,
               SCHOOL_DB=os.path.join(tmp, "school-%s-%d.sqlite3" % (server, preload)))
    log_path = os.path.join(tmp, "%s-%s-%d.log" % (server, app, preload))
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv(server, app, preload, port, conf, engine), stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)
    try:
        pids = set()
        deadline = time.monotonic() + timeout
        while len(pids) < WORKERS:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError("%s %s preload=%s: %d of %d workers ready; log:\n%s" % (
                    server, app, preload, len(pids), WORKERS,
                    Path(log_path).read_text(errors="replace")[-2000:]))
            try:
                pids.add(int(ready.recv(64)))
            except socket.timeout:
                pass
        path = APPS[app][2]
        for _ in range(REQUESTS):
            status = get(port, path)
            if status != 200:
                raise RuntimeError("%s %s: GET %s answered %d" % (server, app, path, status))
        time.sleep(0.5)
        workers = sorted(pids)
        per_worker = [pss_kib(p) for p in workers]
        master = pss_kib(proc.pid)
        return {"server": server, "app": app, "preload": preload,
                "worker_pss_kib": per_worker,
                "worker_pss_mib_mean": round(statistics.mean(per_worker) / 1024, 1),
                "master_pss_mib": round(master / 1024, 1),
                "total_pss_mib": round((master + sum(per_worker)) / 1024, 1)}
    finally:
        ready.close()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--timeout", type=float, default=60.0, help="seconds a server may take to start")
    ap.add_argument("--apps", default="flask,django")
    ap.add_argument("--servers", default="ferrocorn,gunicorn")
    ap.add_argument("--io-engine", default="auto", help="ferrocorn's --io-engine (default auto)")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="preload-")
    with open(os.path.join(tmp, "hooks.py"), "w") as f:
        f.write(HOOKS)
    results = []
    try:
        for app in args.apps.split(","):
            for server in args.servers.split(","):
                for preload in (False, True):
                    r = measure(server, app, preload, tmp, args.timeout, args.io_engine)
                    results.append(r)
                    print("%-9s %-6s %-10s worker PSS %6.1f MiB (mean of %d), master %5.1f MiB, "
                          "in all %6.1f MiB" % (server, app, "--preload" if preload else "",
                                                r["worker_pss_mib_mean"], WORKERS,
                                                r["master_pss_mib"], r["total_pss_mib"]),
                          flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
