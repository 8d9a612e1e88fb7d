"""The `asgi` probe: ASGI hello, FastAPI hello and WebSocket echo against
uvicorn, granian and gunicorn 27's asgi worker.

Each server runs one worker (one process) pinned to the server core:

* ferrocorn: `-k asgi -w 1 --io-engine uring`;
* uvicorn: uvloop, httptools, the `websockets` implementation, no access log;
* granian: `--interface asgi --workers 1`;
* gunicorn: `-k asgi -w 1` (gunicorn 27's own asyncio worker).

Cells, all servers of a cell up at once and measured in turn, the order
reversed every other round, `--asgi-rounds` rounds:

* `asgi-hello` (apps/asgi_apps.py:hello) and `fastapi-hello`
  (apps/fastapi_app.py): wrk keep-alive as in the matrix (--connections,
  `--asgi-seconds` per run); req/s and server CPU per request;
* `ws-echo` (apps/asgi_apps.py:echo): loadtest/wsbench (built by
  loadtest/run) on the client core, 50 connections, 1 KiB text messages,
  each connection sending its next message when the echo of the last is
  back; messages per second and server CPU per message.

Medians per server, and ferrocorn's ratios to each peer.

Then `ws-idle`: each server in turn (ferrocorn with `--worker-connections
11000`) takes 10,000 WebSocket connections from wsbench, which needs every
one upgraded and echoing before it counts, and then holds them idle; the
server's resident memory (its whole process tree) before and while they
are held gives the cost of one idle WebSocket. Then `ws-idle-fastapi`: the
same with 2,000 connections to a FastAPI WebSocket echo endpoint
(apps/fastapi_app.py, /ws), the figure issue #20 sets a target for.
"""
import json
import os
import resource
import statistics
import subprocess
import time

import harness as H

SERVERS = ("ferrocorn", "uvicorn", "granian", "gunicorn")
WSBENCH = os.path.join(H.HERE, "wsbench", "target", "release", "wsbench")
WS_CONNECTIONS = 50
WS_SIZE = 1024
IDLE_CONNECTIONS = 10_000
# The idle cells: (app, WebSocket path, connections).
IDLE = {
    "ws-idle": ("asgi_apps:echo", "/", IDLE_CONNECTIONS),
    "ws-idle-fastapi": ("fastapi_app:app", "/ws", 2_000),
}

CELLS = {
    "asgi-hello": H.Scenario("asgi-hello", "raw ASGI hello", "asgi_apps:hello", H.HELLO),
    "fastapi-hello": H.Scenario("fastapi-hello", "FastAPI hello", "fastapi_app:app", H.HELLO),
    "ws-echo": H.Scenario("ws-echo", "WebSocket echo, 1 KiB text", "asgi_apps:echo", H.HELLO),
}


def argv(name, app, port, extra=()):
    bind = f"{H.HOST}:{port}"
    if name == "ferrocorn":
        return [f"{H.VENV_BIN}/ferrocorn", "-k", "asgi", "-w", "1", "-b", bind,
                "--io-engine", "uring", "--chdir", H.APPS, *extra, app]
    if name == "uvicorn":
        return [f"{H.VENV_BIN}/uvicorn", "--host", H.HOST, "--port", str(port), "--workers", "1",
                "--loop", "uvloop", "--http", "httptools", "--ws", "websockets",
                "--no-access-log", "--log-level", "warning", "--app-dir", H.APPS, app]
    if name == "granian":
        return [f"{H.VENV_BIN}/granian", "--interface", "asgi", "--host", H.HOST,
                "--port", str(port), "--workers", "1", "--working-dir", H.APPS, app]
    if name == "gunicorn":
        return [f"{H.VENV_BIN}/gunicorn", "-k", "asgi", "-w", "1", "-b", bind, "--chdir", H.APPS,
                "--no-control-socket", app]
    raise ValueError(name)


def start(name, cell, args, running, tmp, extra=(), app=None, ws_path="/"):
    scen = CELLS[cell]
    port = H.free_port()
    log = os.path.join(tmp, f"asgi-{cell}-{name}.log")
    cmd = ["taskset", "-c", str(args.server_cpu)] + argv(name, app or scen.app, port, extra)
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=H.APPS, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, env=H.server_env(),
                                start_new_session=True)
    running.add(proc)
    deadline = time.monotonic() + args.start_timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise H.CheckFailed(f"{name} exited with {proc.returncode}:\n{H.log_tail(log)}")
        try:
            H.check(port, scen, H.KEEP_ALIVE, timeout=2.0)
            if cell == "ws-echo":
                wsbench(port, args, seconds=1, connections=2, path=ws_path)
            return proc, port
        except (OSError, H.CheckFailed, subprocess.SubprocessError) as e:
            last = f"{type(e).__name__}: {str(e)[-300:]}"
            time.sleep(0.2)
    raise H.CheckFailed(f"{name} not ready for {cell} within {args.start_timeout:.0f}s "
                        f"({last}):\n{H.log_tail(log)}")


def wsbench(port, args, seconds, connections=WS_CONNECTIONS, path="/"):
    cmd = ["taskset", "-c", str(args.client_cpu), WSBENCH, H.HOST, str(port), path,
           str(connections), str(seconds), str(WS_SIZE)]
    p = subprocess.run(cmd, capture_output=True, timeout=seconds + 60, stdin=subprocess.DEVNULL)
    if p.returncode != 0:
        raise H.CheckFailed(f"wsbench exited {p.returncode}: "
                            f"{p.stderr.decode('utf-8', 'replace')[-400:]}")
    r = json.loads(p.stdout)
    if not r["messages"]:
        raise H.CheckFailed("no message echoed")
    return r


def measure_ws(proc, port, args):
    wsbench(port, args, seconds=1)  # warm-up
    user0, sys0, _, _ = H.tree_cpu(proc.pid)
    r = wsbench(port, args, seconds=args.asgi_seconds)
    user1, sys1, _, _ = H.tree_cpu(proc.pid)
    cpu = (user1 - user0) + (sys1 - sys0)
    return {"messages_per_s": round(r["messages"] / r["seconds"], 1),
            "server_cpu_us_per_msg": round(cpu / r["messages"] * 1e6, 2),
            "valid": proc.poll() is None}


def tree_rss_kib(root):
    total = 0
    for pid in H.tree(root):
        try:
            with open(f"/proc/{pid}/status") as f:
                total += next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
        except (OSError, StopIteration):
            pass
    return total


def idle(name, args, running, tmp, variant="ws-idle"):
    """RSS per idle WebSocket over the variant's connections (IDLE)."""
    app, path, conns = IDLE[variant]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = conns * 2 + 1000
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    extra = ["--worker-connections", str(conns + 1000)] if name == "ferrocorn" else []
    proc, port = start(name, "ws-echo", args, running, tmp, extra, app=app, ws_path=path)
    try:
        wsbench(port, args, seconds=1, path=path)  # warm-up, then the baseline
        time.sleep(0.5)
        before = tree_rss_kib(proc.pid)
        cmd = ["taskset", "-c", str(args.client_cpu), WSBENCH, H.HOST, str(port), path,
               str(conns), "2", "16", "6"]
        client = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  stdin=subprocess.DEVNULL)
        try:
            line = client.stdout.readline()  # printed once every connection echoed
            if not line:
                raise H.CheckFailed("wsbench: " + client.stderr.read().decode("utf-8", "replace")[-400:])
            r = json.loads(line)
            time.sleep(2)  # idle now
            during = tree_rss_kib(proc.pid)
            alive = proc.poll() is None
        finally:
            client.wait(timeout=120)
        return {"connections": conns, "app": app, "echoed": r["messages"],
                "rss_before_kib": before, "rss_held_kib": during,
                "kib_per_connection": round((during - before) / conns, 2),
                "server_alive": alive}
    finally:
        running.stop(proc)


def probe(args, running, tmp):
    out = {"rounds": args.asgi_rounds, "seconds": args.asgi_seconds, "cells": {}}
    for cell in CELLS:
        procs, errors = {}, {}
        runs = {}
        try:
            for name in SERVERS:
                try:
                    procs[name] = start(name, cell, args, running, tmp)
                except (OSError, subprocess.SubprocessError, H.CheckFailed) as e:
                    errors[name] = f"{type(e).__name__}: {str(e)[-600:]}"
            runs = {name: [] for name in procs}
            for i in range(args.asgi_rounds):
                order = list(procs) if i % 2 == 0 else list(procs)[::-1]
                for name in order:
                    proc, port = procs[name]
                    try:
                        if cell == "ws-echo":
                            r = measure_ws(proc, port, args)
                        else:
                            r = H.measure(proc, port, CELLS[cell], H.KEEP_ALIVE, args,
                                          seconds=args.asgi_seconds, warmup=1)
                    except (OSError, subprocess.SubprocessError, H.CheckFailed) as e:
                        r = {"valid": False, "problems": [f"{type(e).__name__}: {str(e)[-300:]}"]}
                    r["round"] = i + 1
                    runs[name].append(r)
                    rate, cost = (("messages_per_s", "server_cpu_us_per_msg") if cell == "ws-echo"
                                  else ("rps", "server_cpu_us_per_req"))
                    print(f"  {cell} round {i + 1} {name:10} "
                          + (f"{r[rate]:>10.0f}/s, cpu {r[cost]:.1f} us" if r["valid"]
                             else "FAIL " + "; ".join(r.get("problems", []))[:200]), flush=True)
        finally:
            for proc, _ in procs.values():
                running.stop(proc)
        out["cells"][cell] = summarize(cell, runs, errors)
    for variant in IDLE:
        key = variant.replace("-", "_")
        out[key] = {}
        for name in SERVERS:
            try:
                out[key][name] = idle(name, args, running, tmp, variant)
            except (OSError, subprocess.SubprocessError, H.CheckFailed, ValueError) as e:
                out[key][name] = {"error": f"{type(e).__name__}: {str(e)[-400:]}"}
            print(f"  {variant} {name:10} {out[key][name]}", flush=True)
    return out


def summarize(cell, runs, errors):
    rate, cost = (("messages_per_s", "server_cpu_us_per_msg") if cell == "ws-echo"
                  else ("rps", "server_cpu_us_per_req"))
    servers = {}
    for name in SERVERS:
        if name in errors:
            servers[name] = {"error": errors[name]}
            continue
        good = [r for r in runs.get(name, []) if r.get("valid")]
        if not good:
            servers[name] = {"error": "no valid run"}
            continue
        servers[name] = {"rate": statistics.median_low(r[rate] for r in good),
                         "cpu_us": statistics.median_low(r[cost] for r in good),
                         "rounds": [{k: r.get(k) for k in (rate, cost, "valid", "round")}
                                    for r in runs[name]]}
    ratios = {}
    f = servers.get("ferrocorn", {})
    for peer in SERVERS[1:]:
        p = servers.get(peer, {})
        if "rate" in f and "rate" in p:
            ratios[peer] = {"rate": round(f["rate"] / p["rate"], 2),
                            "cpu": round(f["cpu_us"] / p["cpu_us"], 2)}
    return {"unit": "messages" if cell == "ws-echo" else "requests", "servers": servers,
            "ferrocorn_vs": ratios}


def one_line(data):
    parts = []
    for variant in IDLE:
        for name, m in data.get(variant.replace("-", "_"), {}).items():
            parts.append(f"{variant} {name} " + (m["error"][:120] if "error" in m else
                                                  f"{m['kib_per_connection']} KiB/conn"))
    for cell, c in data.get("cells", {}).items():
        for peer, r in c["ferrocorn_vs"].items():
            parts.append(f"{cell} vs {peer} {r['rate']:.2f}x/s, {r['cpu']:.2f}x CPU")
        for name, s in c["servers"].items():
            if "error" in s:
                parts.append(f"{cell} {name} failed: {s['error'][:160]}")
    return "; ".join(parts) or "no result"
