"""The `variants` probe: the experiments of the last microseconds, each against the same build.

Every variant is ferrocorn (`--io-engine uring`, one worker pinned to the
server core) serving Flask hello (or hello) with one thing changed from
`base`: the interpreter's garbage collector, its allocator, or mimalloc's
pages. All variants run at once and are measured in turn for
`--variant-seconds`, the order reversed every other round, for
`--variant-rounds` rounds; each one's figure is the median of its rounds'
CPU per request, and its ratio to `base` is taken round by round (runs
seconds apart), then the median of those.

* `base`: the server as shipped.
* `gc-freeze`: `gc.freeze()` once the app is loaded (post_worker_init), so
  the collector never walks the app's and the frameworks' objects again.
* `gc-threshold`: `gc.set_threshold(50000, 20, 20)` once the app is loaded:
  the youngest generation is collected every 50,000 allocations instead of
  700.
* `pymalloc-off`: `PYTHONMALLOC=malloc`: the interpreter's small objects
  come from libc's malloc instead of its own arenas.
* `large-pages`: `MIMALLOC_ALLOW_LARGE_OS_PAGES=1`: mimalloc (the Rust
  side's allocator) asks for 2 MiB pages.
"""
import http.client
import os
import statistics
import subprocess
import time

import harness as H

HOOK = """
import gc


def post_worker_init(worker):
    {body}
"""

VARIANTS = {
    "base": ({}, None),
    "gc-freeze": ({}, "gc.freeze()"),
    "gc-threshold": ({}, "gc.set_threshold(50000, 20, 20)"),
    "pymalloc-off": ({"PYTHONMALLOC": "malloc"}, None),
    "large-pages": ({"MIMALLOC_ALLOW_LARGE_OS_PAGES": "1"}, None),
}


def start(name, scen, args, running, tmp):
    env_extra, hook = VARIANTS[name]
    port = H.free_port()
    vtmp = os.path.join(tmp, f"variant-{name}")
    os.makedirs(vtmp, exist_ok=True)
    argv = ["taskset", "-c", str(args.server_cpu), f"{H.VENV_BIN}/ferrocorn", "-w", "1",
            "-b", f"{H.HOST}:{port}", "--io-engine", "uring", "--chdir", H.APPS]
    if hook:
        conf = os.path.join(vtmp, "variant.conf.py")
        with open(conf, "w") as f:
            f.write(HOOK.format(body=hook))
        argv += ["-c", conf]
    argv.append(scen.app)
    log = os.path.join(vtmp, "server.log")
    env = dict(H.server_env(), **env_extra)
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, cwd=H.APPS, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
    running.add(proc)
    deadline = time.monotonic() + args.start_timeout
    while True:
        if proc.poll() is not None:
            raise H.CheckFailed(f"{name} exited with {proc.returncode}:\n{H.log_tail(log)}")
        try:
            H.check(port, scen, H.KEEP_ALIVE, timeout=2.0)
            return proc, port
        except (OSError, H.CheckFailed, http.client.HTTPException):
            if time.monotonic() > deadline:
                raise H.CheckFailed(f"{name} did not answer:\n{H.log_tail(log)}")
            time.sleep(0.1)


def cell(scen, args, running, tmp):
    procs = {}
    out = {"scenario": scen.name, "variants": {}}
    try:
        for name in VARIANTS:
            try:
                procs[name] = start(name, scen, args, running, tmp)
            except (OSError, H.CheckFailed) as e:
                out["variants"][name] = {"error": str(e)[-400:]}
        for name, (proc, port) in procs.items():
            H.run_wrk(port, scen, H.KEEP_ALIVE, max(1, args.warmup), args)
        runs = {name: [] for name in procs}
        for i in range(args.variant_rounds):
            order = list(procs) if i % 2 == 0 else list(procs)[::-1]
            for name in order:
                proc, port = procs[name]
                r = H.measure(proc, port, scen, H.KEEP_ALIVE, args, seconds=args.variant_seconds,
                              warmup=0)
                runs[name].append(r["server_cpu_us_per_req"] if r["valid"] else None)
                print(f"  variants {scen.name} round {i + 1} {name:13} "
                      + (f"{r['server_cpu_us_per_req']:.2f} µs/req" if r["valid"]
                         else "FAIL " + "; ".join(r["problems"])[:160]), flush=True)
    finally:
        for proc, _ in procs.values():
            running.stop(proc)
    base = runs.get("base", [])
    for name, rs in runs.items():
        good = [x for x in rs if x]
        if not good:
            out["variants"][name] = {"error": "no valid run"}
            continue
        ratios = [x / b for x, b in zip(rs, base) if x and b]
        out["variants"][name] = {
            "cpu_us_per_req": round(statistics.median(good), 2),
            "rounds": rs,
            "ratio_to_base": round(statistics.median(ratios), 3) if ratios else None,
            "ratio_range": [round(min(ratios), 3), round(max(ratios), 3)] if ratios else None,
        }
    return out


def probe(args, running, tmp):
    return {"rounds": args.variant_rounds, "seconds": args.variant_seconds,
            "cells": [cell(H.SCENARIOS[s], args, running, tmp) for s in ("flask", "hello")]}


def one_line(data):
    parts = []
    for c in data["cells"]:
        for name, v in c["variants"].items():
            if name != "base":
                parts.append(f"{c['scenario']} {name} "
                             + (v["error"][:60] if "error" in v else f"{v['ratio_to_base']}x"))
    return "; ".join(parts)


def markdown(data):
    lines = [f"One worker each (io_uring), all up at once, {data['rounds']} rounds of "
             f"{data['seconds']} s, the order reversed every other round; CPU per request, "
             "medians; the ratio to `base` taken round by round (median, range).", "",
             "| cell | variant | CPU µs/req | vs base |", "|---|---|---:|---|"]
    for c in data["cells"]:
        for name, v in c["variants"].items():
            if "error" in v:
                lines.append(f"| {c['scenario']} | {name} | failed: {v['error'][:100]} | |")
            else:
                rng = v["ratio_range"]
                lines.append(f"| {c['scenario']} | {name} | {v['cpu_us_per_req']:.2f} | "
                             + (f"{v['ratio_to_base']:.3f}x ({rng[0]:.3f}–{rng[1]:.3f})" if rng else "")
                             + " |")
    return lines + [""]
