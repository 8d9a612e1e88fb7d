"""The load test's measuring: servers, scenarios, wrk runs, CPU accounting,
the in-process ceilings. main.py plans a run and drives it; probes.py adds
the probes. This module imports neither.

For every cell of the matrix (scenario x workers x connection mode) every
server that can serve it is started pinned to the server CPU, checked
(status 200 and the exact expected body), warmed up, and measured with one
wrk thread pinned to the client CPU. The server's CPU time is utime+stime
(plus cutime+cstime, so reaped children still count) summed over its whole
process tree from /proc, sampled just before and just after the measured
run. Every server runs in its own process group and is killed when its
cell is done, on errors and on SIGINT/SIGTERM.
"""

import http.client
import importlib.metadata
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
APPS = os.path.join(HERE, "apps")
LUA = os.path.join(HERE, "wrk", "report.lua")
# The floor responder, built by loadtest/run (loadtest/floor).
FLOOR_BIN = os.path.join(HERE, "floor", "target", "release", "floor")
VENV_BIN = os.path.dirname(os.path.abspath(sys.executable))
CLK_TCK = os.sysconf("SC_CLK_TCK")
HOST = "127.0.0.1"

KEEP_ALIVE = "keep-alive"
CLOSE = "close"


# ---------------------------------------------------------------- scenarios


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    app: str  # MODULE:NAME under apps/
    expect: bytes  # the exact response body
    method: str = "GET"
    body_size: int = 0


HELLO = b"Hello, World!"

SCENARIOS = {
    s.name: s
    for s in [
        Scenario("hello", "hello-world WSGI", "wsgi_apps:hello", HELLO),
        Scenario("flask", "Flask hello", "flask_app:app", HELLO),
        Scenario("64k", "64 KiB response", "wsgi_apps:big", b"x" * 65536),
        Scenario("post1m", "1 MiB POST body", "wsgi_apps:upload", b"1048576", "POST", 1 << 20),
    ]
}

# (scenario, workers, connection modes), in the order they run.
FULL_MATRIX = [
    ("hello", 1, (KEEP_ALIVE, CLOSE)),
    ("hello", 2, (KEEP_ALIVE, CLOSE)),
    ("flask", 1, (KEEP_ALIVE, CLOSE)),
    ("flask", 2, (KEEP_ALIVE,)),
    ("64k", 1, (KEEP_ALIVE,)),
    ("post1m", 1, (KEEP_ALIVE,)),
]
QUICK_MATRIX = [
    ("hello", 1, (KEEP_ALIVE,)),
    ("hello", 2, (CLOSE,)),
    ("flask", 1, (KEEP_ALIVE,)),
    ("64k", 1, (CLOSE,)),
    ("post1m", 1, (KEEP_ALIVE,)),
]


# ---------------------------------------------------------------- servers


@dataclass(frozen=True)
class Server:
    name: str
    describe: str
    max_workers: int = 64
    conns: tuple = (KEEP_ALIVE, CLOSE)
    scenarios: tuple = tuple(SCENARIOS)

    def serves(self, scenario, workers, conn):
        return scenario in self.scenarios and workers <= self.max_workers and conn in self.conns

    def argv(self, scenario, workers, port, tmp):
        bind = f"{HOST}:{port}"
        app = scenario.app
        name = self.name
        if name.startswith("ferrocorn-"):
            engine = name.split("-", 1)[1]
            return [f"{VENV_BIN}/ferrocorn", "-w", str(workers), "-b", bind,
                    "--io-engine", engine, "--chdir", APPS, app]
        if name.startswith("gunicorn-"):
            argv = [f"{VENV_BIN}/gunicorn", "-w", str(workers), "-b", bind, "--chdir", APPS,
                    "--no-control-socket"]
            if name == "gunicorn-sync":
                return argv + ["-k", "sync", app]
            return argv + ["-k", "gthread", "--threads", "1", app]
        if name.startswith("granian"):
            argv = [f"{VENV_BIN}/granian", "--interface", "wsgi", "--http", "1",
                    "--host", HOST, "--port", str(port), "--workers", str(workers),
                    "--working-dir", APPS]
            if name == "granian-st":
                argv += ["--runtime-mode", "st", "--blocking-threads", "1"]
            return argv + [app]
        if name == "bjoern":
            return [f"{VENV_BIN}/python", os.path.join(APPS, "bjoern_run.py"), app, HOST, str(port)]
        if name == "floor":
            return [FLOOR_BIN, HOST, str(port)]
        if name == "nginx":
            conf = os.path.join(tmp, "nginx.conf")
            with open(conf, "w") as f:
                f.write(nginx_conf(tmp, workers, port))
            return [nginx_binary(), "-p", tmp, "-c", conf, "-e", os.path.join(tmp, "error.log")]
        raise ValueError(name)


SERVERS = {
    s.name: s
    for s in [
        Server("ferrocorn-uring", "ferrocorn --io-engine uring"),
        Server("ferrocorn-epoll", "ferrocorn --io-engine epoll"),
        Server("gunicorn-sync", "gunicorn -k sync (closes every connection)"),
        Server("gunicorn-gthread", "gunicorn -k gthread --threads 1 (keeps connections)",
               conns=(KEEP_ALIVE,)),
        Server("granian", "granian --interface wsgi --http 1"),
        Server("granian-st", "granian --interface wsgi --http 1 --runtime-mode st --blocking-threads 1"),
        Server("bjoern", "bjoern.run (one process, one thread)", max_workers=1),
        Server("nginx", "nginx `return 200` (the load generator's ceiling)", scenarios=("hello",)),
        Server("floor", "loadtest/floor: answers on io_uring, nothing else (the kernel's floor)",
               max_workers=1, scenarios=("hello",)),
    ]
}
BASELINE = "gunicorn-sync"


def nginx_binary():
    return shutil.which("nginx") or "/usr/sbin/nginx"


def nginx_conf(tmp, workers, port):
    temp = os.path.join(tmp, "temp")
    os.makedirs(temp, exist_ok=True)
    return f"""
worker_processes {workers};
daemon off;
master_process on;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 100000000;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    server {{
        listen {HOST}:{port} backlog=4096;
        location / {{
            default_type text/plain;
            return 200 "{HELLO.decode()}";
        }}
    }}
}}
"""


# ---------------------------------------------------------------- processes


def proc_table():
    """{pid: (ppid, user ticks, system ticks)} for every process.

    user = utime + cutime, system = stime + cstime (fields 14-17 of
    /proc/<pid>/stat: the process's own threads plus children it reaped).
    The kernel keeps utime + stime equal to the scheduler's exact runtime
    (sum_exec_runtime) and splits it by tick samples, so the total is exact
    to a tick and the split is a sample.
    """
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name (field 2) may hold spaces and parentheses.
        fields = stat[stat.rfind(b")") + 2 :].split()
        # fields[0] is field 3 (state): ppid is field 4, utime..cstime 14..17.
        ppid = int(fields[1])
        user = int(fields[11]) + int(fields[13])
        system = int(fields[12]) + int(fields[14])
        table[int(entry)] = (ppid, user, system)
    return table


def sched_runtime_ns(pids):
    """Nanoseconds on a CPU of every live thread of pids (/proc/<pid>/task/*/schedstat).

    An independent check of the tick figures: the scheduler's own clock,
    which also counts interrupt and softirq work done while the thread was
    current (this kernel has no separate IRQ time accounting).
    """
    total = 0
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[0])
            except (OSError, ValueError, IndexError):
                continue
    return total


def tree(root, table=None):
    """Pids of root and all its descendants."""
    table = proc_table() if table is None else table
    children = {}
    for pid, (ppid, *_) in table.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in table:
            out.append(pid)
            todo.extend(children.get(pid, ()))
    return out


def cpu_stat(cpus):
    """{cpu: {busy, softirq, steal, all}} in ticks from /proc/stat for the given CPUs.

    busy = user + nice + system + irq + softirq: everything but idle, iowait
    (an idle CPU while someone waits on I/O; io_uring waits count here) and
    steal (the hypervisor ran someone else).
    """
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            name, *vals = line.split()
            if not name.startswith("cpu") or name == "cpu":
                continue
            cpu = int(name[3:])
            if cpu not in cpus:
                continue
            # user nice system idle iowait irq softirq steal (guest is inside user)
            v = [int(x) for x in vals[:8]] + [0] * (8 - len(vals[:8]))
            idle = v[3] + v[4]
            steal = v[7]
            total = sum(v)
            out[cpu] = {"busy": total - idle - steal, "softirq": v[6], "steal": steal, "all": total}
    return out


def tree_cpu(root):
    """(user seconds, system seconds, scheduler seconds, process count) of root's tree."""
    table = proc_table()
    pids = tree(root, table)
    user = sum(table[p][1] for p in pids) / CLK_TCK
    system = sum(table[p][2] for p in pids) / CLK_TCK
    return user, system, sched_runtime_ns(pids) / 1e9, len(pids)


class Running:
    """The servers alive right now, mirrored in the pids file for loadtest/run."""

    def __init__(self, pids_file):
        self.pids_file = pids_file
        self.procs = []

    def _sync(self):
        if self.pids_file:
            with open(self.pids_file, "w") as f:
                f.writelines(f"{p.pid}\n" for p in self.procs)

    def add(self, proc):
        self.procs.append(proc)
        self._sync()

    def stop(self, proc, grace=5.0):
        pids = tree(proc.pid)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            try:
                proc.wait(timeout=grace)
                # Children that left the group and outlived the leader.
                if not any(os.path.exists(f"/proc/{p}") for p in pids if p != proc.pid):
                    break
                time.sleep(0.2)
            except subprocess.TimeoutExpired:
                continue
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
        if proc in self.procs:
            self.procs.remove(proc)
        self._sync()

    def stop_all(self):
        for proc in list(self.procs):
            self.stop(proc, grace=2.0)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def server_env():
    env = dict(os.environ)
    for name in ("FERROCORN_CMD_ARGS", "GUNICORN_CMD_ARGS", "WEB_CONCURRENCY", "PORT",
                 "FERROCORN_IO_ENGINE", "PYTHONPATH"):
        env.pop(name, None)
    env["PATH"] = VENV_BIN + os.pathsep + env.get("PATH", "")
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


# ---------------------------------------------------------------- checks


class CheckFailed(Exception):
    pass


def check(port, scenario, conn, timeout=5.0):
    """One request as wrk will send it; the answer must be exactly right."""
    c = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        headers = {"Connection": "close"} if conn == CLOSE else {}
        body = None
        if scenario.body_size:
            body = b"x" * scenario.body_size
            headers["Content-Type"] = "application/octet-stream"
        c.request(scenario.method, "/", body=body, headers=headers)
        r = c.getresponse()
        data = r.read()
    finally:
        c.close()
    if r.status != 200:
        raise CheckFailed(f"status {r.status} (want 200), body {data[:80]!r}")
    if data != scenario.expect:
        raise CheckFailed(f"body {data[:40]!r}... ({len(data)} bytes), want {scenario.expect[:40]!r} "
                          f"({len(scenario.expect)} bytes)")


def log_tail(path, lines=15):
    try:
        with open(path, "rb") as f:
            text = f.read()[-4000:].decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def start_server(server, scenario, workers, args, running, tmp):
    """Start, wait until it answers correctly; returns (proc, port, log path)."""
    port = free_port()
    stmp = tempfile.mkdtemp(prefix=f"{server.name}-", dir=tmp)
    argv = ["taskset", "-c", str(args.server_cpu)] + server.argv(scenario, workers, port, stmp)
    log = os.path.join(stmp, "server.log")
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, cwd=APPS, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, env=server_env(), start_new_session=True)
    running.add(proc)
    deadline = time.monotonic() + args.start_timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise CheckFailed(f"exited with {proc.returncode} while starting:\n{log_tail(log)}")
        try:
            check(port, scenario, KEEP_ALIVE, timeout=2.0)
            break
        except (OSError, http.client.HTTPException, CheckFailed) as e:
            last = f"{type(e).__name__}: {e}"
            time.sleep(0.1)
    else:
        raise CheckFailed(f"not answering correctly after {args.start_timeout:.0f}s ({last}):\n"
                          f"{log_tail(log)}")
    # Let every worker come up (the first answer may come from one of several).
    time.sleep(0.3 * workers)
    for _ in range(4 * workers):
        check(port, scenario, CLOSE)
    return proc, port, log


# ---------------------------------------------------------------- wrk


def run_wrk(port, scenario, conn, seconds, args):
    """One wrk run; returns (parsed result, wrk cpu seconds)."""
    env = dict(os.environ)
    env["LOADTEST_METHOD"] = scenario.method
    env["LOADTEST_BODY_SIZE"] = str(scenario.body_size)
    env["LOADTEST_CLOSE"] = "1" if conn == CLOSE else "0"
    argv = ["taskset", "-c", str(args.client_cpu), "wrk", "-t1", "-c", str(args.connections),
            "-d", f"{seconds}s", "--timeout", "5s", "-s", LUA, f"http://{HOST}:{port}/"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, env=env,
                       timeout=seconds + 30)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = p.stdout.decode("utf-8", "replace")
    for line in out.splitlines():
        if line.startswith("LOADTEST_RESULT "):
            result = json.loads(line[len("LOADTEST_RESULT "):])
            break
    else:
        raise CheckFailed(f"wrk exited {p.returncode} without a result:\n{out[-800:]}"
                          f"{p.stderr.decode('utf-8', 'replace')[-800:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return result, cpu


def measure(proc, port, scenario, conn, args, seconds=None, warmup=None):
    """Check, warm up, then the measured run with CPU samples around it.

    seconds and warmup default to --duration and --warmup; warmup=0 skips it.
    """
    seconds = args.duration if seconds is None else seconds
    warmup = args.warmup if warmup is None else warmup
    check(port, scenario, conn)
    if warmup > 0:
        run_wrk(port, scenario, conn, warmup, args)
        check(port, scenario, conn)
    cores = (args.server_cpu, args.client_cpu)
    stat0 = cpu_stat(cores)
    user0, sys0, sched0, _ = tree_cpu(proc.pid)
    result, wrk_cpu = run_wrk(port, scenario, conn, seconds, args)
    user1, sys1, sched1, nprocs = tree_cpu(proc.pid)
    stat1 = cpu_stat(cores)

    problems = []
    if proc.poll() is not None:
        problems.append(f"server exited with {proc.returncode} during the run")
    else:
        try:
            check(port, scenario, conn)
        except (OSError, http.client.HTTPException, CheckFailed) as e:
            problems.append(f"wrong answer after the run: {e}")
    requests = result["requests"]
    errors = result["errors"]
    n_errors = sum(errors.values())
    if requests == 0:
        problems.append("no request completed")
    if errors["status"]:
        problems.append(f"{errors['status']} responses were not 2xx/3xx")
    if requests and n_errors > 0.01 * requests:
        problems.append(f"{n_errors} socket errors ({errors})")

    seconds = result["duration_us"] / 1e6
    user, system = user1 - user0, sys1 - sys0
    server_cpu = user + system
    # How busy both cores were with everything else (other users of a
    # shared machine) and how much time the hypervisor took (steal).
    noise = {}
    core = {}
    for role, cpu, ours in (("server_core", args.server_cpu, server_cpu),
                            ("client_core", args.client_cpu, wrk_cpu)):
        if cpu in stat0 and cpu in stat1:
            d = {k: (stat1[cpu][k] - stat0[cpu][k]) / CLK_TCK for k in stat0[cpu]}
            if d["all"] > 0:
                noise[role] = {"others": round(max(0.0, d["busy"] - ours) / d["all"], 3),
                               "steal": round(d["steal"] / d["all"], 3)}
            core[role] = d

    def per_req(x):
        return round(x / requests * 1e6, 2) if requests else None

    server_core = core.get("server_core", {})
    lat = result["latency_us"]
    return {
        "requests": requests,
        "seconds": round(seconds, 3),
        "rps": round(requests / seconds, 1) if seconds else 0.0,
        "latency_ms": {k: round(v / 1000, 3) for k, v in lat.items()},
        "errors": errors,
        "server_cpu_s": round(server_cpu, 3),
        "server_cpu_us_per_req": per_req(server_cpu),
        "server_user_us_per_req": per_req(user),
        "server_sys_us_per_req": per_req(system),
        # Checks and context for the figure above (see README, "Server CPU").
        "server_sched_us_per_req": per_req(sched1 - sched0),
        "server_core_busy_us_per_req": per_req(server_core.get("busy", 0.0)),
        "server_core_softirq_us_per_req": per_req(server_core.get("softirq", 0.0)),
        "server_cpu_util": round(server_cpu / seconds, 3) if seconds else None,
        "server_processes": nprocs,
        "wrk_cpu_util": round(wrk_cpu / seconds, 3) if seconds else None,
        "mbytes_per_s": round(result["bytes"] / seconds / 1e6, 1) if seconds else 0.0,
        "noise": noise,
        "valid": not problems,
        "problems": problems,
    }


def interleaved(scen, servers, args, running, tmp, results):
    """Measure the target cell again with every server up at once, in rounds.

    The hello cell with 1 worker and keep-alive carries the targets' ratios.
    Run one server after another, minutes apart, and the machine drifts
    between them (the same build measured 10.8 and 9.2 us per request in one
    run). Here every server of the cell is started (all pinned to the same
    core; an idle one costs nothing), warmed up once, and then measured for
    `--round-seconds` in each of `--rounds` rounds, the order reversed every
    other round, so each ratio compares runs seconds apart. Each server's
    entry becomes the medians of its rounds (the lower middle run, so every
    figure is one real run's): req/s, latency and noise from the run with
    the median req/s, the CPU figures from the run with the median CPU per
    request. Every round is kept in `rounds`, the matrix's single run in
    `single_run`.
    """
    if args.rounds < 2:
        return
    chosen = [s for s in servers if s.serves(scen.name, 1, KEEP_ALIVE)]
    procs = {}
    try:
        for server in chosen:
            try:
                proc, port, _ = start_server(server, scen, 1, args, running, tmp)
            except (OSError, http.client.HTTPException, CheckFailed, subprocess.SubprocessError) as e:
                print(f"  rounds: {server.name} did not start: {e}", flush=True)
                continue
            procs[server.name] = (proc, port)
        for name, (proc, port) in list(procs.items()):
            try:
                run_wrk(port, scen, KEEP_ALIVE, max(1, args.warmup), args)
            except (OSError, CheckFailed, subprocess.SubprocessError) as e:
                # Its single run of the matrix stands.
                print(f"  rounds: {name} failed its warm-up: {e}", flush=True)
                running.stop(procs.pop(name)[0])
        runs = {name: [] for name in procs}
        for i in range(args.rounds):
            order = list(procs) if i % 2 == 0 else list(procs)[::-1]
            for name in order:
                proc, port = procs[name]
                try:
                    r = measure(proc, port, scen, KEEP_ALIVE, args, seconds=args.round_seconds,
                                warmup=0)
                except (OSError, http.client.HTTPException, CheckFailed,
                        subprocess.SubprocessError) as e:
                    r = {"valid": False, "problems": [f"{type(e).__name__}: {e}"]}
                r["round"] = i + 1
                runs[name].append(r)
                print(f"  round {i + 1} {name:17} " + (
                    f"{r['rps']:>10.0f} req/s, cpu {r['server_cpu_us_per_req']:.1f} us/req"
                    if r["valid"] else "FAIL " + "; ".join(r["problems"])[:200]), flush=True)
    finally:
        for proc, _ in procs.values():
            running.stop(proc)
    for name, rs in runs.items():
        good = [r for r in rs if r["valid"]]
        first = next((r for r in results if r["scenario"] == scen.name and r["workers"] == 1
                      and r["conn"] == KEEP_ALIVE and r["server"] == name), None)
        if first is None or len(good) * 2 <= len(rs):
            continue  # most rounds failed: the single run stands
        by_rps = statistics.median_low(r["rps"] for r in good)
        by_cpu = statistics.median_low(r["server_cpu_us_per_req"] for r in good)
        at_rps = next(r for r in good if r["rps"] == by_rps)
        at_cpu = next(r for r in good if r["server_cpu_us_per_req"] == by_cpu)
        entry = dict(at_rps)
        for k in [k for k in at_cpu if k.startswith("server_")]:
            entry[k] = at_cpu[k]
        entry.pop("round", None)
        entry.update({"scenario": scen.name, "workers": 1, "server": name, "conn": KEEP_ALIVE,
                      "figures": f"medians of {len(good)} interleaved rounds of {args.round_seconds}s",
                      "rounds": [{k: r.get(k) for k in (
                          "round", "rps", "server_cpu_us_per_req", "server_user_us_per_req",
                          "server_sys_us_per_req", "noise", "valid", "problems")} for r in rs],
                      "single_run": {k: first.get(k) for k in (
                          "rps", "server_cpu_us_per_req", "server_user_us_per_req",
                          "server_sys_us_per_req", "noise", "valid")}})
        if "paired_ceiling" in first:
            entry["paired_ceiling"] = first["paired_ceiling"]
        results[results.index(first)] = entry
        print(f"  rounds {name:17} median {by_rps:>10.0f} req/s, cpu {by_cpu:.1f} us/req "
              f"(single run {first.get('rps') or 0:.0f} req/s, {first.get('server_cpu_us_per_req') or 0:.1f})",
              flush=True)


# ---------------------------------------------------------------- the run


def capture_environ(args, running, tmp):
    """The environ ferrocorn passes for wrk's request, as JSON in a file (or None).

    wrk sends `GET / HTTP/1.1` with a Host header and nothing else; the
    in-process ceiling then calls the app with an environ of the same keys.
    """
    scen = Scenario("environ", "environ", "wsgi_apps:environ_dump", b"")
    server = SERVERS["ferrocorn-epoll"]
    try:
        proc = None
        port = free_port()
        argv = ["taskset", "-c", str(args.server_cpu)] + server.argv(scen, 1, port, tmp)
        proc = subprocess.Popen(argv, cwd=APPS, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env=server_env(), start_new_session=True)
        running.add(proc)
        deadline = time.monotonic() + args.start_timeout
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with socket.create_connection((HOST, port), timeout=2.0) as s:
                    s.sendall(f"GET / HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n\r\n"
                              .encode())
                    data = b""
                    while chunk := s.recv(65536):
                        data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                if head.startswith(b"HTTP/1.1 200"):
                    shape = json.loads(body)
                    # wrk keeps the connection open: no Connection header.
                    shape.pop("HTTP_CONNECTION", None)
                    path = os.path.join(tmp, "environ.json")
                    with open(path, "w") as f:
                        json.dump(shape, f)
                    return path
            except (OSError, ValueError):
                time.sleep(0.1)
    finally:
        if proc is not None:
            running.stop(proc)
    return None


def ceiling_once(app, args, environ_file, seconds=None, repeat=5):
    """The app called in a loop in one process pinned to the server CPU."""
    argv = ["taskset", "-c", str(args.server_cpu), sys.executable, os.path.join(HERE, "inprocess.py"),
            app, "--seconds", str(seconds or args.ceiling_seconds), "--repeat", str(repeat)]
    if environ_file:
        argv += ["--environ", environ_file]
    p = subprocess.run(argv, cwd=APPS, capture_output=True, env=server_env(),
                       timeout=args.ceiling_seconds + 60, stdin=subprocess.DEVNULL)
    if p.returncode != 0:
        return {"error": p.stderr.decode("utf-8", "replace")[-800:]}
    return json.loads(p.stdout.decode().strip().splitlines()[-1])


def paired_ceiling(proc, port, scenario, args, environ_file):
    """Server and app alone, alternating on the same core: the ratio a busy machine disturbs least.

    `--pair-rounds` rounds of: wrk against the server for `--pair-seconds`,
    then the app called in-process for as long (the server idle meanwhile).
    Both CPU figures are the scheduler's runtime in ns (the server's live
    threads from /proc/<pid>/task/*/schedstat, the loop's own
    CLOCK_PROCESS_CPUTIME_ID), so they are on one clock; alternating puts
    both under the same moments of other people's load.
    """
    srv_cpu = srv_req = srv_wall = app_cpu = app_calls = app_wall = 0.0
    rounds = []
    for _ in range(args.pair_rounds):
        pids = tree(proc.pid)
        c0 = sched_runtime_ns(pids)
        result, _ = run_wrk(port, scenario, KEEP_ALIVE, args.pair_seconds, args)
        c1 = sched_runtime_ns(pids)
        c = ceiling_once(scenario.app, args, environ_file, seconds=args.pair_seconds, repeat=1)
        if "error" in c or not result["requests"]:
            return {"error": c.get("error", "no request completed")}
        srv = (c1 - c0) / 1e9
        srv_cpu += srv
        srv_req += result["requests"]
        srv_wall += result["duration_us"] / 1e6
        app_cpu += c["cpu_us_per_call"] * c["calls"] / 1e6
        app_calls += c["calls"]
        app_wall += c["seconds"]
        rounds.append({"server_cpu_us_per_req": round(srv / result["requests"] * 1e6, 2),
                       "app_cpu_us_per_call": c["cpu_us_per_call"]})
    return {
        "rounds": len(rounds),
        "seconds_each": args.pair_seconds,
        "server_rps": round(srv_req / srv_wall, 1),
        "server_cpu_us_per_req": round(srv_cpu / srv_req * 1e6, 2),
        "app_calls_per_s": round(app_calls / app_wall, 1),
        "app_cpu_us_per_call": round(app_cpu / app_calls * 1e6, 2),
        "cpu_ratio": round((app_cpu / app_calls) / (srv_cpu / srv_req), 3),
        "rps_ratio": round((srv_req / srv_wall) / (app_calls / app_wall), 3),
        "each": rounds,
    }


def ceiling(before, after):
    """One ceiling from the runs just before and just after a cell: their mean."""
    runs = [c for c in (before, after) if c and "error" not in c]
    if not runs:
        return {"error": (before or after or {}).get("error", "no ceiling run")}
    calls = sum(c["calls"] for c in runs)
    wall = sum(c["seconds"] for c in runs)
    cpu = sum(c["cpu_us_per_call"] * c["calls"] for c in runs)
    return {
        "calls_per_s": round(calls / wall, 1),
        "us_per_call": round(wall / calls * 1e6, 3),
        "cpu_us_per_call": round(cpu / calls, 3),
        "environ_keys": runs[0].get("environ_keys"),
        "before": before,
        "after": after,
    }


def matrix_rows(args):
    """[(scenario name, workers, connection modes)] of the matrix after the filters.

    --scenarios, --workers and --conn apply; --servers and --no-matrix do not
    (the probes that follow the matrix's cells use this too).
    """
    rows = []
    for scen, workers, conns in QUICK_MATRIX if args.quick else FULL_MATRIX:
        if args.scenarios and scen not in args.scenarios:
            continue
        if args.workers and workers not in args.workers:
            continue
        conns = tuple(c for c in conns if not args.conn or c in args.conn)
        if conns:
            rows.append((scen, workers, conns))
    return rows
