"""The load test's entry point: plan the matrix and the probes, run them,
and write JSON, a markdown report and plots.

Started by loadtest/run (which installs everything first); see
loadtest/README.md for what each scenario and column means. The measuring
itself is harness.py's, the extra probes are probes.py's; both are imported
from here, and neither imports this file.
"""

import argparse
import datetime
import http.client
import importlib.metadata
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import probes  # noqa: E402
from harness import (  # noqa: E402
    CLOSE,
    CheckFailed,
    HERE,
    KEEP_ALIVE,
    ROOT,
    Running,
    SCENARIOS,
    SERVERS,
    capture_environ,
    ceiling,
    ceiling_once,
    interleaved,
    matrix_rows,
    measure,
    nginx_binary,
    paired_ceiling,
    start_server,
)
from probes import PROBES  # noqa: E402


def plan(args):
    if args.no_matrix:
        return []
    cells = []
    for scen, workers, conns in matrix_rows(args):
        servers = [s for s in SERVERS.values()
                   if (not args.servers or s.name in args.servers)
                   and any(s.serves(scen, workers, c) for c in conns)]
        if conns and servers:
            cells.append((SCENARIOS[scen], workers, conns, servers))
    return cells


def versions():
    out = {}
    for dist in ("ferrocorn", "gunicorn", "granian", "bjoern", "flask", "werkzeug"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    out["python"] = platform.python_version()
    try:
        p = subprocess.run([nginx_binary(), "-v"], capture_output=True, timeout=10)
        out["nginx"] = p.stderr.decode().strip().split("/")[-1]
    except (OSError, subprocess.TimeoutExpired):
        out["nginx"] = None
    try:
        p = subprocess.run(["wrk", "-v"], capture_output=True, timeout=10)
        m = re.search(r"wrk (\S+)", (p.stdout + p.stderr).decode())
        out["wrk"] = m.group(1) if m else None
    except (OSError, subprocess.TimeoutExpired):
        out["wrk"] = None
    return out


def machine():
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    commit = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"],
                            capture_output=True, timeout=10).stdout.decode().strip()
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "ferrocorn_commit": commit,
        "loadavg_start": os.getloadavg(),
    }


def parse_list(text, allowed, kind=str):
    items = [kind(x) for x in text.split(",") if x.strip()]
    bad = [x for x in items if allowed is not None and x not in allowed]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown: {', '.join(map(str, bad))} (choose from {', '.join(map(str, allowed))})")
    return items


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="loadtest/run",
        description="Load test ferrocorn against gunicorn, granian, bjoern and nginx on 127.0.0.1.",
    )
    p.add_argument("--quick", action="store_true",
                   help="smoke test: few cells, 1 s runs, results in results/quick/")
    p.add_argument("--duration", type=int, help="seconds of each measured run (default 6, quick 1)")
    p.add_argument("--warmup", type=int, help="seconds of warm-up before each run (default 2, quick 1)")
    p.add_argument("--connections", type=int, default=50, help="wrk connections (default 50)")
    p.add_argument("--servers", type=lambda s: parse_list(s, list(SERVERS)),
                   help=f"comma list, default all: {','.join(SERVERS)}")
    p.add_argument("--scenarios", type=lambda s: parse_list(s, list(SCENARIOS)),
                   help=f"comma list, default all: {','.join(SCENARIOS)}")
    p.add_argument("--workers", type=lambda s: parse_list(s, None, int), help="comma list, e.g. 1,2")
    p.add_argument("--conn", type=lambda s: parse_list(s, [KEEP_ALIVE, CLOSE]),
                   help="comma list: keep-alive,close")
    p.add_argument("--server-cpu", type=int, default=0, help="CPU the servers are pinned to (default 0)")
    p.add_argument("--client-cpu", type=int, default=1, help="CPU wrk is pinned to (default 1)")
    p.add_argument("--ceiling-seconds", type=int, help="seconds of the in-process ceiling (default 5, quick 1)")
    p.add_argument("--rounds", type=int,
                   help="rounds over the hello 1-worker keep-alive cell with all its servers up "
                        "at once, the order reversed every other round; each server's figures "
                        "are the medians of its rounds (default 5, quick 1: the single run)")
    p.add_argument("--round-seconds", type=int, default=3,
                   help="seconds of each server's run in a round (default 3)")
    p.add_argument("--pair-rounds", type=int,
                   help="rounds of server / app-alone alternation for the ceiling ratio "
                        "(default 5, quick 2; 0: none)")
    p.add_argument("--pair-seconds", type=int, default=1,
                   help="seconds of each half of a round (default 1)")
    p.add_argument("--engine-rounds", type=int,
                   help="measured runs per engine and cell of the engines probe, the two engines "
                        "alternating U,E,E,U,... (default 5, quick 1)")
    p.add_argument("--engine-seconds", type=int, default=3,
                   help="seconds of each run of the engines probe (default 3)")
    p.add_argument("--asgi-rounds", type=int, default=3,
                   help="interleaved rounds of the asgi probe (default 3)")
    p.add_argument("--asgi-seconds", type=int, default=5,
                   help="seconds of each measured run of the asgi probe (default 5)")
    p.add_argument("--h2-rounds", type=int, default=3,
                   help="interleaved rounds of the h2 probe (default 3)")
    p.add_argument("--h2-seconds", type=int, default=5,
                   help="seconds of each h2load run of the h2 probe (default 5)")
    p.add_argument("--where-seconds", type=int, default=5,
                   help="seconds of load sampled by perf for each target of the where probe (default 5)")
    p.add_argument("--variant-rounds", type=int, default=5,
                   help="interleaved rounds of the variants probe (default 5)")
    p.add_argument("--variant-seconds", type=int, default=3,
                   help="seconds of each variant's run in a round (default 3)")
    p.add_argument("--start-timeout", type=float, default=30.0, help="seconds a server may take to answer")
    p.add_argument("--out", help="results directory (default results/<date>/, quick: results/quick/)")
    p.add_argument("--probes", type=lambda s: [] if s == "none" else parse_list(s, list(PROBES)),
                   help=f"comma list or none, default all: {','.join(PROBES)} "
                        "(see loadtest/README.md)")
    p.add_argument("--no-matrix", action="store_true",
                   help="skip the requests/s matrix (and its in-process ceilings): probes only")
    p.add_argument("--memory-conns", type=int,
                   help="idle keep-alive connections of the memory probe (default 10000, quick 1000)")
    p.add_argument("--memory-timeout", type=float, default=120.0,
                   help="seconds the memory probe may take to open its connections")
    p.add_argument("--rss-requests", type=int,
                   help="requests of the RSS probe (default 1000000, quick 100000)")
    p.add_argument("--rss-seconds", type=int, default=90,
                   help="at most this many seconds of load per engine in the RSS probe (default 90)")
    p.add_argument("--profile-requests", type=int,
                   help="requests served under callgrind (default 20000, quick 2000)")
    p.add_argument("--profile-connections", type=int, default=1,
                   help="keep-alive connections driving the profile (default 1: two loop turns "
                        "per request, so the count repeats; more batch requests per poll as "
                        "timing allows)")
    p.add_argument("--profile-engine", choices=["uring", "epoll"], default="epoll",
                   help="io engine of the profiled worker (default epoll: under valgrind the "
                        "uring worker does not see its stop signal, so it never writes a profile)")
    p.add_argument("--profile-scenarios", type=lambda s: parse_list(s, ["hello", "flask"]),
                   default=["hello", "flask"],
                   help="apps the profiled worker serves, one profile each (default hello,flask; "
                        "flask also counts the app's instructions alone)")
    p.add_argument("--profile-timeout", type=float, default=300.0,
                   help="seconds the profiled server may take to start and to serve")
    p.add_argument("--alloc-build-timeout", type=float, default=1200.0,
                   help="seconds the alloc probe may take to build its wheel")
    p.add_argument("--list", action="store_true", help="print the plan and exit")
    p.add_argument("--pids-file", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.duration is None:
        args.duration = 1 if args.quick else 6
    if args.warmup is None:
        args.warmup = 1 if args.quick else 2
    if args.ceiling_seconds is None:
        args.ceiling_seconds = 2 if args.quick else 5
    if args.probes is None:
        args.probes = list(PROBES)
    if args.pair_rounds is None:
        args.pair_rounds = 2 if args.quick else 5
    if args.rounds is None:
        args.rounds = 1 if args.quick else 5
    if args.round_seconds < 1:
        p.error("--round-seconds must be >= 1")
    if args.engine_rounds is None:
        args.engine_rounds = 1 if args.quick else 5
    if args.engine_rounds < 1 or args.engine_seconds < 1:
        p.error("--engine-rounds and --engine-seconds must be >= 1")
    if args.duration < 1 or args.warmup < 0 or args.connections < 1:
        p.error("--duration must be >= 1, --warmup >= 0, --connections >= 1")
    return args


def on_signal(signum, frame):
    raise SystemExit(128 + signum)


def main(argv):
    args = parse_args(argv)
    cells = plan(args)
    runs = [(scen, w, s, c) for scen, w, conns, servers in cells for s in servers for c in conns
            if s.serves(scen.name, w, c)]
    starts = sum(len(servers) for _, _, _, servers in cells)
    est = 2.0 * starts + len(runs) * (args.warmup + args.duration + 0.5)
    if cells:  # the in-process ceilings and the paired rounds belong to the matrix
        est += 4 * (args.ceiling_seconds + 2) + 4 * args.pair_rounds * (2 * args.pair_seconds + 1.5)
    if args.rounds > 1:
        est += sum(len([s for s in servers if s.serves("hello", 1, KEEP_ALIVE)])
                   * (2.0 + max(1, args.warmup) + args.rounds * (args.round_seconds + 0.7))
                   for scen, w, conns, servers in cells
                   if scen.name == "hello" and w == 1 and KEEP_ALIVE in conns)
    est += probes.estimate_seconds(args)
    print(f"plan: {len(cells)} cells, {len(runs)} measured runs of {args.duration}s "
          f"(+{args.warmup}s warm-up), probes: {','.join(args.probes) or 'none'}; "
          f"about {est / 60:.1f} minutes", flush=True)
    for scen, w, conns, servers in cells:
        print(f"  {scen.name:7} {w} worker(s) {'/'.join(conns):20} {', '.join(s.name for s in servers)}")
    if "engines" in args.probes:
        ecells = probes.engine_cells(args)
        print(f"  engines probe: {len(ecells)} cells ("
              + ", ".join(f"{s} w{w} {c}" for s, w, c in ecells)
              + f"), uring and epoll up together, {args.engine_rounds} run(s) of "
              f"{args.engine_seconds}s each, order {''.join(e[0].upper() for e in probes.abba(args.engine_rounds))}")
    if args.list:
        return 0
    if not cells and not args.probes:
        print("nothing to run", file=sys.stderr)
        return 2

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    running = Running(args.pids_file)
    today = datetime.date.today().isoformat()
    out_dir = args.out or os.path.join(HERE, "results", "quick" if args.quick else today)
    args.out_dir = out_dir
    extra = {}
    started = time.time()
    results = []
    ceilings = {}
    tmp = tempfile.mkdtemp(prefix="ferrocorn-loadtest-")
    environ_file = None
    try:
        meta = {"date": today, "machine": machine(), "versions": versions()}
        for scen, workers, conns, servers in cells:
            # The app alone, right before and right after the cell whose
            # ratio the summary quotes, pinned to the same core: the server
            # runs sit between the two, so all see the same machine.
            with_ceiling = (scen.name in ("hello", "flask") and scen.name not in ceilings
                            and workers == 1 and KEEP_ALIVE in conns and args.ceiling_seconds > 0)
            if with_ceiling:
                if environ_file is None:
                    environ_file = capture_environ(args, running, tmp) or ""
                    if environ_file:
                        with open(environ_file) as f:
                            meta["ceiling_environ"] = json.load(f)
                before = ceiling_once(scen.app, args, environ_file)
            for server in servers:
                todo = [c for c in conns if server.serves(scen.name, workers, c)]
                base = {"scenario": scen.name, "workers": workers, "server": server.name}
                try:
                    proc, port, log = start_server(server, scen, workers, args, running, tmp)
                except (OSError, http.client.HTTPException, CheckFailed, subprocess.SubprocessError) as e:
                    msg = f"did not start: {e}"
                    print(f"  FAIL {server.name} {scen.name} w{workers}: {msg}", flush=True)
                    results += [dict(base, conn=c, valid=False, problems=[msg]) for c in todo]
                    running.stop_all()
                    continue
                try:
                    for conn in todo:
                        try:
                            r = measure(proc, port, scen, conn, args)
                            if (with_ceiling and conn == KEEP_ALIVE and args.pair_rounds > 0
                                    and server.name.startswith("ferrocorn-") and r["valid"]):
                                r["paired_ceiling"] = paired_ceiling(proc, port, scen, args,
                                                                     environ_file)
                        except (OSError, http.client.HTTPException, CheckFailed,
                                subprocess.SubprocessError) as e:
                            r = {"valid": False, "problems": [f"{type(e).__name__}: {e}"]}
                        r = dict(base, conn=conn, **r)
                        results.append(r)
                        print_line(r)
                finally:
                    running.stop(proc)
            if scen.name == "hello" and workers == 1 and KEEP_ALIVE in conns:
                interleaved(scen, servers, args, running, tmp, results)
            if with_ceiling:
                ceilings[scen.name] = ceiling(before, ceiling_once(scen.app, args, environ_file))
                c = ceilings[scen.name]
                if "error" in c:
                    print(f"  in-process {scen.name}: failed: {c['error'][-300:]}", flush=True)
                else:
                    print(f"  in-process {scen.name}: {c['calls_per_s']:,.0f} calls/s, "
                          f"{c['cpu_us_per_call']:.1f} CPU us/call (before {c['before'].get('cpu_us_per_call')}, "
                          f"after {c['after'].get('cpu_us_per_call')})", flush=True)
        probes.run_selected(args, running, tmp, extra)
    finally:
        running.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)

    meta["machine"]["loadavg_end"] = os.getloadavg()
    meta["elapsed_s"] = round(time.time() - started, 1)
    meta["settings"] = {
        "duration_s": args.duration, "warmup_s": args.warmup, "connections": args.connections,
        "wrk_threads": 1, "server_cpu": args.server_cpu, "client_cpu": args.client_cpu,
        "quick": args.quick, "ceiling_seconds": args.ceiling_seconds,
        "pair_rounds": args.pair_rounds, "pair_seconds": args.pair_seconds,
        "rounds": args.rounds, "round_seconds": args.round_seconds,
        "engine_rounds": args.engine_rounds, "engine_seconds": args.engine_seconds,
    }
    meta["servers"] = {s.name: s.describe for s in SERVERS.values()}
    meta["scenarios"] = {s.name: s.title for s in SCENARIOS.values()}
    meta["settings"]["probes"] = args.probes
    doc = scrub({"meta": meta, "results": results, "in_process": ceilings, "probes": extra})

    import report  # matplotlib is imported only once there is something to plot

    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    report.write(doc, out_dir)
    md = report.markdown(doc)
    if not args.quick and not args.out:
        link = os.path.join(HERE, "results", "latest")
        if os.path.islink(link) or os.path.exists(link):
            os.remove(link)
        os.symlink(today, link)
    print(md)
    print(f"results: {out_dir} ({meta['elapsed_s']:.0f}s)")
    bad = [r for r in results if not r.get("valid")]
    if bad:
        print(f"{len(bad)} run(s) failed their checks: see 'problems' in results.json", file=sys.stderr)
        return 1
    return 0


def scrub(doc):
    """Problem texts quote server logs: show paths inside the repository relative to it."""
    for r in doc["results"]:
        r["problems"] = [p.replace(ROOT + os.sep, "") for p in r.get("problems", [])]
    for c in doc["in_process"].values():
        if "error" in c:
            c["error"] = c["error"].replace(ROOT + os.sep, "")
    return doc


def print_line(r):
    if not r.get("valid"):
        print(f"  FAIL {r['server']:17} {r['scenario']:7} w{r['workers']} {r['conn']:10} "
              f"{'; '.join(r.get('problems', []))}", flush=True)
        return
    print(f"  {r['server']:17} {r['scenario']:7} w{r['workers']} {r['conn']:10} "
          f"{r['rps']:>10.0f} req/s  p50 {r['latency_ms']['p50']:7.2f} ms  p99 {r['latency_ms']['p99']:7.2f} ms  "
          f"cpu {r['server_cpu_us_per_req']:8.1f} us/req ({r['server_cpu_util'] * 100:3.0f}%)", flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
