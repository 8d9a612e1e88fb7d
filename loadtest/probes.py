"""The probes beyond requests/s: memory, RSS over a long run, start-up, a profile.

Each probe is part of the one-command harness (`loadtest/run --probes ...`),
runs on 127.0.0.1 only, is bounded in time and stops every server it starts:

* memory   RSS (and PSS) of one worker before and after it holds N idle
           keep-alive connections, each of which made one request.
* rss      one worker serves about 1M hello requests (keep-alive) while its
           RSS is sampled every second: start, end, max and the slope.
* startup  exec of `-w 4` to all four workers ready, for ferrocorn and
           gunicorn, with a trivial app (its import costs nothing).
* profile  callgrind on one ferrocorn worker serving a bounded number of
           hello requests: instructions per request by function.
* alloc    the same hello and memory figures without mimalloc, when the
           crate has a feature that turns it off (it is reported as
           unavailable otherwise).
* engines  io_uring against epoll in every ferrocorn cell of the matrix,
           both servers up at once and their measured runs interleaved
           (U,E,E,U,...), so that both see the same moments of a shared
           machine: medians per engine and the ratios.
* h2       HTTP/2 with h2load against granian and gunicorn (h2cells.py).
* asgi     ASGI, FastAPI and WebSocket echo against the ASGI peers
           (asgicells.py).
* where    `perf record` of hello and Flask on ferrocorn, the floor, bjoern
           and the app in-process: µs per request by where the samples land
           (perfcells.py).
* variants ferrocorn with the collector, the allocator or mimalloc's pages
           changed, against itself as shipped (variants.py).

See loadtest/README.md and docs/performance.md for what each figure means.
"""

import http.client
import math
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time

import asgicells
import h2cells
import perfcells
import variants
import harness as H

PROBES = ("memory", "rss", "startup", "profile", "alloc", "engines", "h2", "asgi", "where", "variants")
ENGINES = ("uring", "epoll")
REQUEST = b"GET / HTTP/1.1\r\nHost: %s:%d\r\n\r\n"


# ---------------------------------------------------------------- helpers


def mem_kib(pid):
    """{rss, pss} of one process in KiB (pss from smaps_rollup, when readable)."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                out["rss"] = int(line.split()[1])
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    out["pss"] = int(line.split()[1])
    except OSError:
        pass
    return out


def children(pid):
    table = H.proc_table()
    return sorted(p for p, (ppid, *_) in table.items() if ppid == pid)


def raise_nofile(want):
    """Raise this process's soft RLIMIT_NOFILE (servers it starts inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def ferrocorn_argv(engine, workers, port, extra=(), app="wsgi_apps:hello", exe=None):
    exe = exe or [f"{H.VENV_BIN}/ferrocorn"]
    return list(exe) + ["-w", str(workers), "-b", f"{H.HOST}:{port}", "--io-engine", engine,
                        "--chdir", H.APPS, *extra, app]


def spawn(argv, running, tmp, name, env=None, pin=True, args=None):
    """Start a server in its own process group, logging to a file in tmp."""
    log = os.path.join(tmp, f"{name}.log")
    if pin:
        argv = ["taskset", "-c", str(args.server_cpu)] + argv
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, cwd=H.APPS, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, env=env or H.server_env(),
                                start_new_session=True)
    running.add(proc)
    return proc, log


def wait_ready(proc, port, log, timeout, workers=1):
    """Until the server answers hello and has its workers; returns the worker pids."""
    scen = H.SCENARIOS["hello"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise H.CheckFailed(f"exited with {proc.returncode}:\n{H.log_tail(log)}")
        try:
            H.check(port, scen, H.KEEP_ALIVE, timeout=2.0)
            pids = [p for p in H.tree(proc.pid) if p != proc.pid]
            if len(pids) >= workers:
                return pids
        except (OSError, http.client.HTTPException, H.CheckFailed):
            pass
        time.sleep(0.1)
    raise H.CheckFailed(f"not ready after {timeout:.0f}s:\n{H.log_tail(log)}")


def read_response(sock, buf=b""):
    """Read one hello response (headers + Content-Length body); returns leftover bytes."""
    while True:
        head_end = buf.find(b"\r\n\r\n")
        if head_end >= 0:
            m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", buf[:head_end])
            if not buf.startswith(b"HTTP/1.1 200") or not m:
                raise H.CheckFailed(f"unexpected answer {buf[:80]!r}")
            end = head_end + 4 + int(m.group(1))
            if len(buf) >= end:
                return buf[end:]
        chunk = sock.recv(4096)
        if not chunk:
            raise H.CheckFailed("connection closed before the response")
        buf += chunk


# ---------------------------------------------------------------- memory


def idle_memory(engine, n, args, running, tmp):
    """KiB of worker memory per idle keep-alive connection (n of them, one request each)."""
    raise_nofile(n + 2000)
    port = H.free_port()
    extra = ["--worker-connections", str(n + 1000), "--keep-alive", "600", "--backlog", "4096",
             "--timeout", "600"]
    proc, log = spawn(ferrocorn_argv(engine, 1, port, extra), running, tmp, f"memory-{engine}",
                      args=args)
    socks = []
    try:
        worker = wait_ready(proc, port, log, args.start_timeout)[0]
        # Warm: the code paths of a request have run, the allocator has its
        # first pages, and nothing is held.
        for _ in range(3):
            warm = [socket.create_connection((H.HOST, port), timeout=5) for _ in range(20)]
            for s in warm:
                for _ in range(5):
                    s.sendall(REQUEST % (H.HOST.encode(), port))
                    read_response(s)
            for s in warm:
                s.close()
        time.sleep(1.0)
        before = mem_kib(worker)
        sock0 = socket_pages()
        t0 = time.monotonic()
        batch = 250
        request = REQUEST % (H.HOST.encode(), port)
        deadline = time.monotonic() + args.memory_timeout
        while len(socks) < n:
            if time.monotonic() > deadline:
                raise H.CheckFailed(f"only {len(socks)} of {n} connections within "
                                    f"{args.memory_timeout:.0f}s")
            group = [socket.create_connection((H.HOST, port), timeout=10)
                     for _ in range(min(batch, n - len(socks)))]
            for s in group:
                s.sendall(request)
            for s in group:
                read_response(s)
            socks += group
        opened_s = time.monotonic() - t0
        time.sleep(1.5)
        if proc.poll() is not None:
            raise H.CheckFailed(f"server exited with {proc.returncode}:\n{H.log_tail(log)}")
        after = mem_kib(worker)
        sock1 = socket_pages()
        held = count_sockets(worker)
        # Every connection is still usable: one more request on a sample.
        for s in socks[:: max(1, n // 50)]:
            s.sendall(request)
            read_response(s)
    finally:
        for s in socks:
            s.close()
        running.stop(proc)
    out = {
        "engine": engine,
        "connections": n,
        "worker_sockets_held": held,
        "open_seconds": round(opened_s, 2),
        "before_kib": before,
        "after_kib": after,
        "rss_kib_per_conn": round((after["rss"] - before["rss"]) / n, 2),
    }
    if "pss" in before and "pss" in after:
        out["pss_kib_per_conn"] = round((after["pss"] - before["pss"]) / n, 2)
    if sock0 is not None and sock1 is not None:
        # Kernel socket buffers, both ends (client and server), all of the machine.
        out["kernel_tcp_kib_per_conn_both_ends"] = round((sock1 - sock0) * 4 / n, 2)
    return out


def socket_pages():
    try:
        with open("/proc/net/sockstat") as f:
            for line in f:
                if line.startswith("TCP:"):
                    parts = line.split()
                    return int(parts[parts.index("mem") + 1])
    except (OSError, ValueError):
        return None
    return None


def count_sockets(pid):
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:"):
                n += 1
        except OSError:
            pass
    return n


# ---------------------------------------------------------------- rss


def rss_flat(engine, total, args, running, tmp):
    """One worker serves `total` hello requests (keep-alive); its RSS every second."""
    port = H.free_port()
    proc, log = spawn(ferrocorn_argv(engine, 1, port, ["--timeout", "600"]), running, tmp,
                      f"rss-{engine}", args=args)
    samples = []  # (seconds since the measured run started, rss KiB)
    marks = [(0.0, 0)]  # (seconds, requests of the measured run so far)
    stop = threading.Event()
    t0 = time.monotonic()
    try:
        worker = wait_ready(proc, port, log, args.start_timeout)[0]
        fresh = mem_kib(worker)["rss"]

        def sample():
            while not stop.is_set():
                try:
                    samples.append((time.monotonic() - t0, mem_kib(worker)["rss"]))
                except OSError:
                    return
                stop.wait(1.0)

        # A short first run warms the worker up and gives the rate; then one
        # continuous run of about the time the rest of the requests take, so
        # the same 50 connections stay open throughout and every sample is
        # taken under load.
        scen = H.SCENARIOS["hello"]
        warm, _ = H.run_wrk(port, scen, H.KEEP_ALIVE, 2, args)
        rate = warm["requests"] / max(warm["duration_us"] / 1e6, 1e-3)
        warm_kib = mem_kib(worker)["rss"]
        t0 = time.monotonic()
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        done = warm["requests"]
        served = 0
        # Aim a little past the total (the rate under a long run is often
        # lower than the warm-up's); top up if it still fell short.
        while done < total and time.monotonic() - t0 < args.rss_seconds - 1:
            left = args.rss_seconds - (time.monotonic() - t0)
            seconds = max(1, min(int(left), math.ceil(1.2 * (total - done) / max(rate, 1.0))))
            result, _ = H.run_wrk(port, scen, H.KEEP_ALIVE, seconds, args)
            if sum(result["errors"].values()) > 0.01 * max(1, result["requests"]):
                raise H.CheckFailed(f"wrk errors: {result['errors']}")
            done += result["requests"]
            served += result["requests"]
            marks.append((time.monotonic() - t0, served))
            rate = result["requests"] / max(result["duration_us"] / 1e6, 1e-3)
        elapsed = time.monotonic() - t0
        stop.set()
        sampler.join(timeout=5)
        time.sleep(0.5)
        idle_kib = mem_kib(worker)["rss"]
        if proc.poll() is not None:
            raise H.CheckFailed(f"server exited with {proc.returncode}:\n{H.log_tail(log)}")
    finally:
        stop.set()
        running.stop(proc)
    # Requests at each sample's time, by interpolation between wrk runs.
    def requests_at(t):
        for (ta, na), (tb, nb) in zip(marks, marks[1:]):
            if t <= tb:
                return na + (nb - na) * max(0.0, t - ta) / max(tb - ta, 1e-9)
        return marks[-1][1]

    # Samples during the continuous run only, from its first second on (wrk
    # opens its connections at the start; the sampler may outlive the run by
    # a moment); requests counted from the start of that run.
    samples = [(t, rss) for t, rss in samples if 0.9 <= t <= elapsed] or samples
    points = [(requests_at(t), rss) for t, rss in samples]
    slope = linear_slope(points)
    return {
        "engine": engine,
        "requests": done,
        "seconds": round(elapsed, 1),
        "rps": round(served / elapsed, 1) if elapsed else None,
        "fresh_kib": fresh,
        "after_warmup_kib": warm_kib,
        "start_kib": points[0][1],
        "end_kib": points[-1][1],
        "max_kib": max(y for _, y in points),
        "idle_after_kib": idle_kib,
        "slope_kib_per_1m_requests": round(slope * 1e6, 1) if slope is not None else None,
        "samples": [[round(t, 1), int(requests_at(t)), rss] for t, rss in samples],
    }


def linear_slope(points):
    if len(points) < 3:
        return None
    xs = [x for x, _ in points]
    ys = [y for _, y in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mx) ** 2 for x in xs)
    if var == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in points) / var


# ---------------------------------------------------------------- startup

HOOKS = '''
import os, socket, time
def post_worker_init(worker):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.sendto(b"WORKER_READY=%d" % os.getpid(), os.environ["LOADTEST_READY_SOCKET"])
    s.close()
'''


def startup_once(name, argv, workers, args, running, tmp, i):
    """ms from exec to READY=1 (sd_notify) and to the last worker's post_worker_init."""
    path = os.path.join(tmp, f"notify-{name}-{i}.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(0.2)
    env = H.server_env()
    env["NOTIFY_SOCKET"] = path
    env["LOADTEST_READY_SOCKET"] = path
    proc = None
    ready_ms = None
    workers_ms = []
    try:
        t0 = time.monotonic()
        proc, log = spawn(argv, running, tmp, f"startup-{name}-{i}", env=env, pin=False)
        deadline = t0 + args.start_timeout
        while time.monotonic() < deadline:
            try:
                msg = sock.recv(4096)
            except socket.timeout:
                if proc.poll() is not None:
                    raise H.CheckFailed(f"exited with {proc.returncode}:\n{H.log_tail(log)}")
                continue
            ms = (time.monotonic() - t0) * 1000
            if msg.startswith(b"WORKER_READY="):
                workers_ms.append(ms)
            elif b"READY=1" in msg.split(b"\n") and ready_ms is None:
                ready_ms = ms
            if len(workers_ms) >= workers and (ready_ms is not None or not name.startswith("ferrocorn")):
                break
        else:
            raise H.CheckFailed(f"not ready within {args.start_timeout:.0f}s")
    finally:
        sock.close()
        os.unlink(path)
        if proc is not None:
            running.stop(proc)
    return {"ready_ms": round(ready_ms, 1) if ready_ms is not None else None,
            "all_workers_ms": round(workers_ms[workers - 1], 1),
            "first_worker_ms": round(workers_ms[0], 1)}


def startup(reps, args, running, tmp):
    workers = 4
    conf = os.path.join(tmp, "startup_hooks.py")
    with open(conf, "w") as f:
        f.write(HOOKS)
    servers = {
        "ferrocorn-uring": lambda port: ferrocorn_argv("uring", workers, port, ["-c", conf]),
        "ferrocorn-epoll": lambda port: ferrocorn_argv("epoll", workers, port, ["-c", conf]),
        "gunicorn-sync": lambda port: [f"{H.VENV_BIN}/gunicorn", "-w", str(workers), "-b",
                                       f"{H.HOST}:{port}", "--chdir", H.APPS, "-c", conf,
                                       "--no-control-socket", "-k", "sync", "wsgi_apps:hello"],
    }
    out = {"workers": workers, "app": "wsgi_apps:hello", "runs": reps, "servers": {}}
    # Interleaved, so every server sees the same moments of a shared machine.
    runs = {name: [] for name in servers}
    errors = {}
    for i in range(reps):
        for name, argv in servers.items():
            if name in errors:
                continue
            try:
                runs[name].append(startup_once(name, argv(H.free_port()), workers, args, running,
                                               tmp, i))
            except (OSError, H.CheckFailed, subprocess.SubprocessError) as e:
                errors[name] = str(e)[-400:]
    for name in servers:
        rs = runs[name]
        entry = {"runs": rs}
        if rs:
            for key in ("ready_ms", "all_workers_ms"):
                vals = [r[key] for r in rs if r[key] is not None]
                if vals:
                    entry[key] = {"median": round(statistics.median(vals), 1),
                                  "min": min(vals), "max": max(vals)}
        if name in errors:
            entry["error"] = errors[name]
        out["servers"][name] = entry
    return out


# ---------------------------------------------------------------- profile


def profile(engine, requests, args, running, tmp):
    """Callgrind on one worker serving `requests` hello requests; Ir per request by function."""
    valgrind = shutil.which("valgrind")
    if not valgrind:
        return {"engine": engine, "error": "valgrind is not installed"}
    outdir = os.path.join(tmp, f"callgrind-{engine}")
    os.makedirs(outdir, exist_ok=True)
    port = H.free_port()
    # The master is python (the console script's interpreter): callgrind
    # runs it and follows the fork into the worker. Only the worker's serve
    # loop is counted (not start-up, not the master): collection is on
    # inside the worker's serve loop. A long --timeout: the worker
    # runs ~50x slower under valgrind. Callgrind's options go through
    # VALGRIND_OPTS, not argv: ferrocorn rewrites its argument area for its
    # process title, and under valgrind that area holds valgrind's own
    # command line, which the forked worker's callgrind reads again.
    env = H.server_env()
    # A fixed hash seed: the environ dict's layout, and so its cost, moves
    # with the seed by about 50 instructions per request.
    env["PYTHONHASHSEED"] = "0"
    env["VALGRIND_OPTS"] = (f"--collect-atstart=no --toggle-collect={SERVE_LOOP} "
                            f"--callgrind-out-file={outdir}/callgrind.out.%p")
    exe = [valgrind, "--tool=callgrind", f"{H.VENV_BIN}/python", f"{H.VENV_BIN}/ferrocorn"]
    argv = ferrocorn_argv(engine, 1, port, ["--timeout", "900", "--graceful-timeout", "20"],
                          app=H.SCENARIOS[args.profile_scenario].app, exe=exe)
    proc, log = spawn(argv, running, tmp, f"profile-{engine}", env=env, args=args)
    t0 = time.monotonic()
    worker = None
    served = 0
    try:
        worker = wait_ready(proc, port, log, args.profile_timeout)[0]
        served = 1  # wait_ready's check
        scen = H.SCENARIOS[args.profile_scenario]
        for _ in range(20):
            H.check(port, scen, H.KEEP_ALIVE, timeout=30)
        served += 20
        served += drive(port, requests, conns=args.profile_connections, timeout=args.profile_timeout)
    except (OSError, H.CheckFailed, http.client.HTTPException, subprocess.SubprocessError) as e:
        return {"engine": engine, "error": f"{type(e).__name__}: {str(e)[-600:]}"}
    finally:
        # TERM: the worker leaves its loop and exits; callgrind writes the
        # worker's profile as it exits.
        running.stop(proc, grace=90)
    dumps = [f for f in os.listdir(outdir) if worker and f.startswith(f"callgrind.out.{worker}")]
    if not dumps:
        return {"engine": engine, "error": f"no callgrind output for worker {worker}: "
                                           f"{H.log_tail(log)}"}
    dump = os.path.join(outdir, sorted(dumps)[0])
    result = summarize_callgrind(dump, served)
    # Over several connections the worker answers a batch of requests per
    # poll of the kernel, and how many arrive together depends on timing: a
    # change in Ir per request with a change here is batching, not code.
    # One connection (the default) makes it two loop turns per request.
    polls = calls_to(dump, "epoll_wait")
    if polls is not None:
        result["polls_per_request"] = round(polls / served, 3)
    result.update({"engine": engine, "app": scen.app, "requests": served,
                   "seconds": round(time.monotonic() - t0, 1),
                   "counted": f"inside {SERVE_LOOP} only (user-space instructions; the kernel's "
                              "share is not visible to callgrind)"})
    os.makedirs(args.out_dir, exist_ok=True)
    keep = os.path.join(args.out_dir, f"callgrind-{args.profile_scenario}-{engine}.txt")
    with open(keep, "w") as f:
        p = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=99", dump],
                           capture_output=True, timeout=300)
        f.write(p.stdout.decode("utf-8", "replace").replace(H.ROOT + os.sep, ""))
    result["annotate"] = os.path.basename(keep)
    return result


# The worker's serve loop (`impl Worker` in worker/serve.rs); a pattern, as
# callgrind demangles it `ferrocorn::worker::serve::<impl ...Worker>::serve`.
SERVE_LOOP = "ferrocorn::worker::serve::*::serve"


def inprocess_ir(app, environ_file, args, tmp):
    """Instructions per call of the app alone: callgrind over two loops of different length.

    The difference of the two totals divided by the difference of the call
    counts leaves out the interpreter's start-up and the app's import.
    """
    valgrind = shutil.which("valgrind")
    totals = {}
    for calls in (200, 1200):
        out = os.path.join(tmp, f"inprocess-{calls}.callgrind")
        argv = [valgrind, "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
                os.path.join(H.HERE, "inprocess.py"), app, "--calls", str(calls)]
        if environ_file:
            argv += ["--environ", environ_file]
        p = subprocess.run(argv, cwd=H.APPS, capture_output=True, env=H.server_env(),
                           timeout=args.profile_timeout, stdin=subprocess.DEVNULL)
        total, _ = annotate_rows(out, inclusive=False) if p.returncode == 0 else (None, None)
        if not total:
            return {"error": p.stderr.decode("utf-8", "replace")[-400:]}
        totals[calls] = total
    return {"ir_per_call": round((totals[1200] - totals[200]) / 1000), "app": app}


def drive(port, requests, conns, timeout):
    """Send `requests` keep-alive hello requests over `conns` connections, pipelining none."""
    request = REQUEST % (H.HOST.encode(), port)
    socks = [socket.create_connection((H.HOST, port), timeout=30) for _ in range(conns)]
    served = 0
    deadline = time.monotonic() + timeout
    try:
        while served < requests and time.monotonic() < deadline:
            for s in socks:
                s.sendall(request)
            for s in socks:
                read_response(s)
            served += conns
    finally:
        for s in socks:
            s.close()
    return served


LINE = re.compile(r"^\s*([\d,]+)\s+(?:\([\s\d.]+%\)\s+)?(.*?)\s*$")


def annotate_rows(dump, inclusive):
    """(program total Ir, [(Ir, "file:function [object]")]) from callgrind_annotate's table."""
    p = subprocess.run(["callgrind_annotate", f"--inclusive={'yes' if inclusive else 'no'}",
                        "--auto=no", "--threshold=100", dump], capture_output=True, timeout=300)
    total, rows, in_table = None, [], False
    for line in p.stdout.decode("utf-8", "replace").splitlines():
        m = LINE.match(line)
        if m and m.group(2).startswith("PROGRAM TOTALS"):
            total = int(m.group(1).replace(",", ""))
        elif "file:function" in line:
            in_table = True
        elif in_table and m:
            rows.append((int(m.group(1).replace(",", "")), m.group(2)))
        elif in_table and rows and not line.strip():
            break
    return total, rows


def calls_to(dump, name):
    """How many calls the dump recorded to the function `name` (None if it has none)."""
    names, total, target = {}, 0, False
    try:
        with open(dump, encoding="utf-8", errors="replace") as f:
            for line in f:
                # Function names are compressed: "(id) name" the first time
                # (in an fn= or a cfn= line), "(id)" after.
                m = re.match(r"(c?fn)=\((\d+)\)(?: (.*))?", line.rstrip("\n"))
                if m:
                    if m.group(3) is not None:
                        names[m.group(2)] = m.group(3)
                    target = m.group(1) == "cfn" and names.get(m.group(2)) == name
                elif line.startswith("calls=") and target:
                    total += int(line.split("=", 1)[1].split()[0])
                    target = False
    except OSError:
        return None
    return total or None


def summarize_callgrind(dump, requests, top=25):
    """Top functions by self cost (Ir) and inclusive cost, per request, and cost per object."""
    total, rows = annotate_rows(dump, inclusive=False)
    if not total:
        return {"error": "callgrind_annotate found no events"}
    out = {"total_ir": total, "ir_per_request": round(total / requests)}

    def entry(ir, what):
        return {"ir_per_request": round(ir / requests), "share": round(ir / total, 4),
                "function": short_fn(what), "object": obj_of(what)}

    out["self"] = [entry(ir, what) for ir, what in rows[:top]]
    sums = {}
    for ir, what in rows:
        obj = re.sub(r"\.so[.\d]*$", ".so", obj_of(what) or "other")
        sums[obj] = sums.get(obj, 0) + ir
    out["by_object"] = {k: {"ir_per_request": round(v / requests), "share": round(v / total, 4)}
                        for k, v in sorted(sums.items(), key=lambda kv: -kv[1])[:8]}
    # Inclusive: below the serve loop (everything above it is the call chain
    # that leads there and costs the same 100 %).
    _, rows = annotate_rows(dump, inclusive=True)
    out["inclusive"] = [entry(ir, what) for ir, what in rows if ir < 0.995 * total][:top]
    return out


def short_fn(what):
    # "file:function [object]" -> "function"
    what = re.sub(r"\s*\[[^\]]*\]\s*$", "", what)
    if ":" in what:
        what = what.split(":", 1)[1]
    return what[:160]


def obj_of(what):
    m = re.search(r"\[([^\]]*)\]\s*$", what)
    if m:
        return os.path.basename(m.group(1))
    # Inlined code is listed under its source file without an object.
    fn = short_fn(what)
    if fn.startswith(("ferrocorn::", "core::", "alloc::", "std::", "<", "pyo3::", "httparse::")):
        return "_ferrocorn.abi3.so"
    return ""


# ---------------------------------------------------------------- alloc

ALLOC_FEATURE = "system-allocator"


def alloc_feature_available():
    """Does Cargo.toml define the feature that turns mimalloc off?"""
    try:
        with open(os.path.join(H.ROOT, "Cargo.toml")) as f:
            text = f.read()
    except OSError:
        return False
    section = re.search(r"^\[features\](.*?)^\[", text, re.S | re.M)
    return bool(section and re.search(rf"^\s*{re.escape(ALLOC_FEATURE)}\s*=", section.group(1), re.M))


def alloc(args, running, tmp):
    """Hello keep-alive and idle-connection memory without mimalloc, beside the default build."""
    if not alloc_feature_available():
        return {"available": False,
                "reason": f"Cargo.toml has no `{ALLOC_FEATURE}` feature: mimalloc is the global "
                          "allocator unconditionally (src/lib.rs), so there is no build to compare"}
    target = os.path.join(tmp, "alloc-target")
    wheels = os.path.join(tmp, "alloc-wheels")
    site = os.path.join(tmp, "alloc-site")
    env = dict(os.environ, CARGO_TARGET_DIR=target)
    p = subprocess.run([f"{H.VENV_BIN}/maturin", "build", "--release", "--interpreter", sys.executable,
                        "--features", f"python,{ALLOC_FEATURE}", "--out", wheels],
                       cwd=H.ROOT, env=env, capture_output=True, timeout=args.alloc_build_timeout)
    if p.returncode != 0:
        return {"available": True, "error": p.stderr.decode("utf-8", "replace")[-800:]}
    wheel = [os.path.join(wheels, w) for w in os.listdir(wheels) if w.endswith(".whl")][0]
    p = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", site,
                        wheel], capture_output=True, timeout=300)
    if p.returncode != 0:
        return {"available": True, "error": p.stderr.decode("utf-8", "replace")[-800:]}
    # The variant runs from its own directory, ahead of the installed package.
    exe = [sys.executable, "-c", f"import sys; sys.path.insert(0, {site!r}); "
           "sys.argv[0] = 'ferrocorn'; from ferrocorn.__main__ import main; sys.exit(main())"]
    out = {"available": True, "feature": ALLOC_FEATURE, "hello": [], "memory": []}
    scen = H.SCENARIOS["hello"]
    for engine in ENGINES:
        for variant, cmd in (("mimalloc", None), ("system", exe)):
            port = H.free_port()
            proc, log = spawn(ferrocorn_argv(engine, 1, port, exe=cmd), running, tmp,
                              f"alloc-{variant}-{engine}", args=args)
            try:
                wait_ready(proc, port, log, args.start_timeout)
                r = H.measure(proc, port, scen, H.KEEP_ALIVE, args)
            except (OSError, H.CheckFailed, http.client.HTTPException, subprocess.SubprocessError) as e:
                r = {"valid": False, "problems": [str(e)[-300:]]}
            finally:
                running.stop(proc)
            out["hello"].append(dict(variant=variant, engine=engine, **{
                k: r.get(k) for k in ("rps", "server_cpu_us_per_req", "valid", "problems", "noise")}))
    return out


# ---------------------------------------------------------------- engines

# A cell counts for io_uring when its median req/s is at least epoll's, or,
# where both medians are within this share of each other (both are held by
# the load generator), when its median CPU per request is at most epoll's.
ENGINE_TIE = 0.03


def engine_cells(args):
    """[(scenario, workers, conn)] of the matrix that both ferrocorn engines serve."""
    servers = [H.SERVERS[f"ferrocorn-{e}"] for e in ENGINES]
    return [(scen, workers, conn) for scen, workers, conns in H.matrix_rows(args)
            for conn in conns if all(s.serves(scen, workers, conn) for s in servers)]


def abba(rounds):
    """The order of the measured runs: U,E then E,U, alternating; `rounds` runs per engine."""
    return [e for i in range(rounds) for e in (ENGINES if i % 2 == 0 else ENGINES[::-1])]


def engine_met(u, e):
    """Does io_uring meet `>= epoll` on these medians ({rps, cpu_us_per_req} each)?

    No worse on one figure and within ENGINE_TIE on the other: req/s is
    held by the load generator in the fast cells (then CPU per request is
    what differs), and CPU per request is 1/req/s where the server is the
    bottleneck, so either figure alone would misjudge some cells.
    """
    rps_ok = u["rps"] >= e["rps"]
    cpu_ok = u["cpu_us_per_req"] <= e["cpu_us_per_req"]
    rps_near = u["rps"] >= (1 - ENGINE_TIE) * e["rps"]
    cpu_near = u["cpu_us_per_req"] <= (1 + ENGINE_TIE) * e["cpu_us_per_req"]
    return (rps_ok and cpu_near) or (cpu_ok and rps_near)


def scrub_text(text):
    return str(text).replace(H.ROOT + os.sep, "")


def engines_cell(scen_name, workers, conn, args, running, tmp):
    """Both engines up at once, warmed up, then `--engine-rounds` runs each in ABBA order."""
    scen = H.SCENARIOS[scen_name]
    out = {"scenario": scen_name, "workers": workers, "conn": conn,
           "order": [e[0].upper() for e in abba(args.engine_rounds)],
           "engines": {e: {"runs": []} for e in ENGINES}}
    procs = {}
    try:
        for engine in ENGINES:
            try:
                proc, port, _ = H.start_server(H.SERVERS[f"ferrocorn-{engine}"], scen, workers,
                                               args, running, tmp)
            except (OSError, http.client.HTTPException, H.CheckFailed,
                    subprocess.SubprocessError) as e:
                out["error"] = scrub_text(f"{engine} did not start: {e}")
                return out
            procs[engine] = (proc, port)
        # One warm-up each, then only measured runs: between two of its runs
        # a server sits idle (and costs nothing) while the other is measured.
        for engine in ENGINES:
            proc, port = procs[engine]
            H.run_wrk(port, scen, conn, max(1, args.warmup), args)
        done = []  # (engine, run) in the order measured
        for i, engine in enumerate(abba(args.engine_rounds)):
            proc, port = procs[engine]
            try:
                r = H.measure(proc, port, scen, conn, args, seconds=args.engine_seconds, warmup=0)
            except (OSError, http.client.HTTPException, H.CheckFailed,
                    subprocess.SubprocessError) as e:
                r = {"valid": False, "problems": [scrub_text(f"{type(e).__name__}: {e}")]}
            run = {"round": i // 2 + 1, **{k: r.get(k) for k in (
                "rps", "server_cpu_us_per_req", "server_user_us_per_req", "server_sys_us_per_req",
                "server_cpu_util", "noise", "valid", "problems")}}
            out["engines"][engine]["runs"].append(run)
            done.append((engine, run))
            print(f"  engines {scen_name:7} w{workers} {conn:10} round {run['round']} {engine:5} "
                  + (f"{run['rps']:>10.0f} req/s  cpu {run['server_cpu_us_per_req']:8.1f} us/req"
                     if run["valid"] else "FAIL " + "; ".join(run["problems"])[:200]), flush=True)
    finally:
        for proc, _ in procs.values():
            running.stop(proc)
    # A round is one run of each engine, back to back (U,E or E,U).
    summarize_engines(out, [dict(done[i:i + 2]) for i in range(0, len(done) - 1, 2)])
    return out


def summarize_engines(out, pairs):
    """Medians per engine, ratios of the medians, and the range of the per-round ratios."""
    for engine in ENGINES:
        d = out["engines"][engine]
        good = [r for r in d["runs"] if r["valid"]]
        d["valid_runs"] = len(good)
        if good:
            d["rps"] = round(statistics.median(r["rps"] for r in good), 1)
            d["cpu_us_per_req"] = round(statistics.median(r["server_cpu_us_per_req"] for r in good), 2)
    u, e = out["engines"]["uring"], out["engines"]["epoll"]
    if "rps" not in u or "rps" not in e:
        out["error"] = "no valid run of " + " and ".join(
            x for x in ENGINES if "rps" not in out["engines"][x])
        return
    out["rps_ratio"] = round(u["rps"] / e["rps"], 3)
    out["cpu_ratio"] = round(u["cpu_us_per_req"] / e["cpu_us_per_req"], 3)
    rounds = [(p["uring"]["rps"] / p["epoll"]["rps"],
               p["uring"]["server_cpu_us_per_req"] / p["epoll"]["server_cpu_us_per_req"])
              for p in pairs if p["uring"]["valid"] and p["epoll"]["valid"]]
    if rounds:
        out["round_rps_ratios"] = [round(x, 3) for x, _ in rounds]
        out["round_cpu_ratios"] = [round(y, 3) for _, y in rounds]
    out["met"] = engine_met(u, e)


def engines(args, running, tmp):
    out = {"rounds": args.engine_rounds, "seconds": args.engine_seconds, "warmup": max(1, args.warmup),
           "tie": ENGINE_TIE, "cells": []}
    for scen, workers, conn in engine_cells(args):
        try:
            out["cells"].append(engines_cell(scen, workers, conn, args, running, tmp))
        except (OSError, http.client.HTTPException, H.CheckFailed, subprocess.SubprocessError) as e:
            # Only the warm-up can get here (a measured run's failure is the run's).
            out["cells"].append({"scenario": scen, "workers": workers, "conn": conn,
                                 "error": scrub_text(f"{type(e).__name__}: {e}")})
        finally:
            running.stop_all()
    return out


# ---------------------------------------------------------------- driver


def sizes(args):
    quick = args.quick
    return {
        "memory_conns": args.memory_conns or (1000 if quick else 10000),
        "rss_requests": args.rss_requests or (100_000 if quick else 1_000_000),
        "startup_reps": 2 if quick else 5,
        "profile_requests": args.profile_requests or (2000 if quick else 20000),
    }


def estimate_seconds(args):
    s = sizes(args)
    est = 0.0
    for probe in args.probes:
        if probe == "memory":
            est += 2 * (5 + s["memory_conns"] / 2000)
        elif probe == "rss":
            est += 2 * (5 + min(args.rss_seconds, s["rss_requests"] / 30000))
        elif probe == "startup":
            est += 3 * s["startup_reps"] * 1.5
        elif probe == "profile":
            est += 15 + s["profile_requests"] / 800
            if "flask" in args.profile_scenarios:
                est += 40 + s["profile_requests"] / 7 / 100
        elif probe == "alloc":
            est += 5 if not alloc_feature_available() else 600
        elif probe == "asgi":
            est += 3 * (4 * 3 + args.asgi_rounds * 4 * (args.asgi_seconds + 2))
        elif probe == "h2":
            est += 2 * (3 * 3 + args.h2_rounds * 3 * (args.h2_seconds + 2))
        elif probe == "where":
            est += 7 * (args.where_seconds + max(1, args.warmup) + 8)
        elif probe == "variants":
            est += 2 * (10 + args.variant_rounds * 5 * (args.variant_seconds + 0.7))
        elif probe == "engines":
            for _, workers, _ in engine_cells(args):
                est += (2 * (2.0 + 0.3 * workers) + 2 * (max(1, args.warmup) + 0.5)
                        + 2 * args.engine_rounds * (args.engine_seconds + 0.7))
    return est


def run_selected(args, running, tmp, extra):
    if not args.probes:
        return
    s = sizes(args)
    for probe in args.probes:
        started = time.monotonic()
        print(f"probe {probe}", flush=True)
        try:
            if probe == "memory":
                extra["memory"] = [guard(idle_memory, e, s["memory_conns"], args, running, tmp)
                                   for e in ENGINES]
            elif probe == "rss":
                extra["rss"] = [guard(rss_flat, e, s["rss_requests"], args, running, tmp)
                                for e in ENGINES]
            elif probe == "startup":
                extra["startup"] = startup(s["startup_reps"], args, running, tmp)
            elif probe == "profile":
                extra["profile"] = []
                for scen in args.profile_scenarios:
                    n = s["profile_requests"] if scen == "hello" else max(200, s["profile_requests"] // 7)
                    args.profile_scenario = scen
                    extra["profile"].append(profile(args.profile_engine, n, args, running, tmp))
                if "flask" in args.profile_scenarios:
                    # Flask's first requests cost far more (lazy set-up): a
                    # shorter second profile gives the marginal cost per
                    # request, as the in-process figure is a marginal one.
                    args.profile_scenario = "flask"
                    big = next((p for p in extra["profile"]
                                if p.get("app") == H.SCENARIOS["flask"].app and "total_ir" in p), None)
                    small = profile(args.profile_engine, max(100, s["profile_requests"] // 40), args,
                                    running, tmp)
                    env_file = H.capture_environ(args, running, tmp)
                    alone = inprocess_ir(H.SCENARIOS["flask"].app, env_file, args, tmp)
                    if big and "total_ir" in small and "ir_per_call" in alone \
                            and big["requests"] > small["requests"]:
                        marginal = ((big["total_ir"] - small["total_ir"])
                                    / (big["requests"] - small["requests"]))
                        alone["server_ir_per_request"] = round(marginal)
                        alone["ratio"] = round(alone["ir_per_call"] / marginal, 4)
                    extra["flask_instructions"] = alone
            elif probe == "alloc":
                extra["alloc"] = alloc(args, running, tmp)
            elif probe == "engines":
                extra["engines"] = engines(args, running, tmp)
            elif probe == "h2":
                extra["h2"] = h2cells.probe(args, running, tmp)
            elif probe == "asgi":
                extra["asgi"] = asgicells.probe(args, running, tmp)
            elif probe == "where":
                extra["where"] = perfcells.probe(args, running, tmp)
            elif probe == "variants":
                extra["variants"] = variants.probe(args, running, tmp)
        finally:
            running.stop_all()
        print(f"  {probe}: {one_line(probe, extra.get(probe))} ({time.monotonic() - started:.0f}s)",
              flush=True)


def guard(fn, engine, *a):
    try:
        return fn(engine, *a)
    except (OSError, H.CheckFailed, http.client.HTTPException, subprocess.SubprocessError) as e:
        return {"engine": engine, "error": f"{type(e).__name__}: {str(e)[-600:]}"}


def one_line(probe, data):
    if data is None:
        return "no result"
    if probe == "memory":
        return "; ".join(d.get("error") or f"{d['engine']} {d['rss_kib_per_conn']} KiB RSS/conn "
                         f"({d['connections']} conns)" for d in data)
    if probe == "rss":
        return "; ".join(d.get("error") or f"{d['engine']} {d['requests']} req: RSS {d['start_kib']} -> "
                         f"{d['end_kib']} KiB (max {d['max_kib']}), slope "
                         f"{d['slope_kib_per_1m_requests']} KiB/1M req" for d in data)
    if probe == "startup":
        parts = []
        for name, e in data["servers"].items():
            if "all_workers_ms" in e:
                parts.append(f"{name} {e['all_workers_ms']['median']} ms")
            else:
                parts.append(f"{name} failed: {e.get('error', '?')[:200]}")
        return "; ".join(parts)
    if probe == "profile":
        return "; ".join(d.get("error") or f"{d['engine']} {d.get('ir_per_request')} Ir/request"
                         for d in data)
    if probe == "alloc":
        return data.get("reason") or data.get("error") or "measured"
    if probe == "h2":
        return h2cells.one_line(data)
    if probe == "asgi":
        return asgicells.one_line(data)
    if probe == "where":
        return perfcells.one_line(data)
    if probe == "variants":
        return variants.one_line(data)
    if probe == "engines":
        return "; ".join(
            f"{c['scenario']} w{c['workers']} {c['conn']}: "
            + (c["error"][:200] if "error" in c else
               f"uring/epoll {c['rps_ratio']:.2f}x req/s, {c['cpu_ratio']:.2f}x CPU/req "
               f"({'met' if c['met'] else 'not met'})")
            for c in data["cells"]) or "no cell"
    return ""
