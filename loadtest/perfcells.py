"""The `where` probe: where each server's CPU per request goes, from `perf record`.

The matrix says how much CPU a request costs; this says on what. For each
target below, `perf record -e cpu-clock` samples the server's processes
(every thread, user and kernel) while wrk drives the cell's keep-alive load
for `--where-seconds`, and the server's CPU time over the same window (from
/proc, as in the matrix) turns each sample share into microseconds per
request. The in-process Flask loop (loadtest/inprocess.py, the environ
ferrocorn passes) is sampled the same way, per call.

Targets, one worker each, pinned to the server core:

* hello: the floor responder, ferrocorn (uring, epoll) and bjoern;
* flask: ferrocorn (uring), bjoern, and the app called in-process.

Samples are grouped by where they land: for user space by the object file
(the server's own binary or extension, libpython, libc, ...), for the kernel
by what the function does (TCP/IP and the loopback device, io_uring, epoll,
system-call entry and exit, the scheduler, memory, other). Each target also
keeps its top symbols. `cpu-clock` is a software event, so this works in a
VM without hardware counters; cycles, cache and TLB misses need a machine
that exposes them (`perf stat -e cycles true` says whether this one does).
"""
import json
import os
import re
import shutil
import subprocess
import sys
import time

import harness as H

KERNEL_GROUPS = [
    # In a VM, interrupts (the timer, the virtual NIC's softirqs) are taken
    # when a lock releases them or on the way back to user space.
    ("irq and timers", re.compile(
        r"^(_raw_spin|__pv_queued|queued_spin|native_|read_tsc|irq|__irq|asm_|sysvec|"
        r"hrtimer|__hrtimer|tick_|timekeeping|ktime_get|clockevents|lapic)")),
    ("io_uring", re.compile(r"^(io_|__io_|io_uring)")),
    ("epoll", re.compile(r"^(ep_|do_epoll|__x64_sys_epoll|ep_poll)")),
    ("tcp/ip+loopback", re.compile(
        r"^(tcp|__tcp|ip_|__ip|ipv4|inet|__inet|sk_|__sk|skb|__skb|kfree_skb|sock|__sock|"
        r"security_sock|netif|__netif|net_|__net|napi|__napi|loopback|dev_|__dev|"
        r"process_backlog|validate_xmit|do_softirq|__do_softirq|__local_bh|_raw_spin_unlock_bh|"
        r"release_sock|lock_sock|raw_local_deliver|nf_|ktime_get_with|bpf_)")),
    ("syscall entry/exit", re.compile(
        r"^(entry_|syscall_|__x64_sys|do_syscall|__sys_|exit_to_user|x64_sys_call|"
        r"srso_|__fdget|fput|fget|__fget|security_file|rw_verify|__rcu_read|rcu_)")),
    ("scheduler", re.compile(
        r"^(schedule|__schedule|finish_task_switch|pick_next|dequeue|enqueue|"
        r"try_to_wake_up|update_|__update|psi_|__switch_to|switch_mm|ttwu|wake_up|__wake_up|"
        r"futex|__futex|do_futex)")),
    ("memory", re.compile(
        r"^(clear_page|copy_|_copy|__copy|memcpy|memset|__memcpy|__memset|kmem_|__kmem|"
        r"kmalloc|__kmalloc|kfree|__slab|slab_|page_|__page|handle_mm|exc_page|"
        r"do_user_addr|__handle_mm|alloc_pages|__alloc|free_|rep_movs|check_heap|__check_heap|"
        r"__virt_addr|simple_copy)")),
]


def targets():
    hello, flask = H.SCENARIOS["hello"], H.SCENARIOS["flask"]
    return [
        ("hello", "floor", hello), ("hello", "ferrocorn-uring", hello),
        ("hello", "ferrocorn-epoll", hello), ("hello", "bjoern", hello),
        ("flask", "ferrocorn-uring", flask), ("flask", "bjoern", flask),
        ("flask", "in-process", flask),
    ]


def available():
    """None when perf can sample here, else why not."""
    if shutil.which("perf") is None:
        return "perf not found (Debian: linux-perf)"
    p = subprocess.run(["perf", "record", "-e", "cpu-clock", "-o", "/dev/null", "--", "true"],
                       capture_output=True, text=True)
    if p.returncode != 0:
        return "perf record cannot sample here: " + (p.stderr.strip().splitlines() or ["?"])[-1]
    return None


def kernel_group(sym):
    for name, pat in KERNEL_GROUPS:
        if pat.search(sym):
            return name
    return "other kernel"


def user_group(dso, own):
    base = os.path.basename(dso)
    mine = own(base)
    if mine:
        return mine
    if base.startswith("libpython") or re.match(r"^python3(\.\d+)?$", base):
        return "libpython"
    if base.startswith("libc.so") or base.startswith("libc-"):
        return "libc"
    if base.startswith("ld-linux"):
        return "ld.so"
    return "other user (" + base + ")" if base else "other user"


def report(data_file, own):
    """perf's samples as {(dso, sym): share}, shares summing to 1."""
    p = subprocess.run(["perf", "report", "-i", data_file, "--stdio", "--no-children",
                        "--sort", "dso,sym", "--percent-limit", "0", "-F", "overhead,dso,sym"],
                       capture_output=True, text=True, timeout=300)
    shares = {}
    for line in p.stdout.splitlines():
        m = re.match(r"^\s*([\d.]+)%\s+(\S+)\s+\[([k.])\]\s+(.+?)\s*$", line)
        if m:
            pct, dso, kind, sym = float(m.group(1)), m.group(2), m.group(3), m.group(4)
            shares[(dso, kind, sym)] = shares.get((dso, kind, sym), 0.0) + pct / 100.0
    total = sum(shares.values()) or 1.0
    groups, top = {}, []
    for (dso, kind, sym), share in shares.items():
        share /= total
        g = kernel_group(sym) if kind == "k" else user_group(dso, own)
        g = ("kernel: " if kind == "k" else "user: ") + g
        groups[g] = groups.get(g, 0.0) + share
        top.append((share, g, sym))
    top.sort(reverse=True)
    # The top symbols overall, then those of the server's own code.
    own_top = [t for t in top if not t[1].startswith("kernel: ")
               and t[1] not in ("user: libpython", "user: libc", "user: ld.so")
               and not t[1].startswith("user: other")]
    return groups, top[:25] + [t for t in own_top[:15] if t not in top[:25]]


def per_request(groups, top, us_per_req):
    return {
        "groups_us": {g: round(s * us_per_req, 3) for g, s in sorted(groups.items(), key=lambda x: -x[1])},
        "top": [{"us": round(s * us_per_req, 3), "group": g, "symbol": sym} for s, g, sym in top],
    }


def own_objects(name):
    """Which object files are the server's own code: base name -> group, or None."""
    def own(base):
        if name.startswith("ferrocorn") and (base == "ferrocorn" or base.startswith("_ferrocorn")):
            return "ferrocorn (Rust)"
        if name == "floor" and base == "floor":
            return "floor (Rust)"
        if name == "bjoern" and base.startswith("_bjoern"):
            return "bjoern (C)"
        if name == "bjoern" and base.startswith("libev"):
            return "bjoern (libev)"
        return None
    return own


def sample_server(kind, name, scen, args, running, tmp):
    server = H.SERVERS[name]
    proc, port, _ = H.start_server(server, scen, 1, args, running, tmp)
    try:
        H.run_wrk(port, scen, H.KEEP_ALIVE, max(1, args.warmup), args)
        pids = H.tree(proc.pid)
        data = os.path.join(tmp, f"perf-{kind}-{name}.data")
        perf = subprocess.Popen(["perf", "record", "-q", "-e", "cpu-clock", "-F", "4999",
                                 "-p", ",".join(str(p) for p in pids), "-o", data],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        time.sleep(0.5)  # perf attaches to every thread before the window opens
        user0, sys0, _, _ = H.tree_cpu(proc.pid)
        result, _ = H.run_wrk(port, scen, H.KEEP_ALIVE, args.where_seconds, args)
        user1, sys1, _, _ = H.tree_cpu(proc.pid)
        perf.send_signal(2)
        perf.wait(timeout=60)
        requests = result["requests"]
        if not requests:
            return {"error": "no request completed"}
        us = (user1 - user0 + sys1 - sys0) / requests * 1e6
        groups, top = report(data, own_objects(name))
        os.unlink(data)
        return {"requests": requests, "cpu_us_per_req": round(us, 3),
                "user_us_per_req": round((user1 - user0) / requests * 1e6, 3),
                "sys_us_per_req": round((sys1 - sys0) / requests * 1e6, 3),
                **per_request(groups, top, us)}
    finally:
        running.stop(proc)


def sample_inprocess(scen, args, running, tmp):
    env_file = H.capture_environ(args, running, tmp)
    data = os.path.join(tmp, "perf-flask-inprocess.data")
    argv = ["taskset", "-c", str(args.server_cpu), "perf", "record", "-q", "-e", "cpu-clock",
            "-F", "4999", "-o", data, "--", sys.executable, os.path.join(H.HERE, "inprocess.py"),
            scen.app, "--seconds", str(args.where_seconds), "--repeat", "1"]
    if env_file:
        argv += ["--environ", env_file]
    p = subprocess.run(argv, cwd=H.APPS, capture_output=True, env=H.server_env(),
                       timeout=args.where_seconds + 120, stdin=subprocess.DEVNULL)
    if p.returncode != 0:
        return {"error": p.stderr.decode("utf-8", "replace")[-600:]}
    res = json.loads(p.stdout.decode().strip().splitlines()[-1])
    us = res["cpu_us_per_call"]
    groups, top = report(data, own_objects("in-process"))
    os.unlink(data)
    # The loop's start (imports, the app's set-up) is in the samples but not
    # in its per-call figure: a run of several seconds makes it a small share.
    return {"calls": res["calls"], "cpu_us_per_req": us, **per_request(groups, top, us)}


def probe(args, running, tmp):
    why = available()
    if why:
        return {"error": why}
    out = {"seconds": args.where_seconds, "cells": []}
    for kind, name, scen in targets():
        t0 = time.monotonic()
        try:
            if name == "in-process":
                r = sample_inprocess(scen, args, running, tmp)
            else:
                r = sample_server(kind, name, scen, args, running, tmp)
        except (OSError, H.CheckFailed, subprocess.SubprocessError) as e:
            r = {"error": f"{type(e).__name__}: {str(e)[-400:]}"}
        r.update({"scenario": kind, "server": name})
        out["cells"].append(r)
        print(f"  where {kind:5} {name:16} "
              + (r["error"][:160] if "error" in r else f"{r['cpu_us_per_req']:.2f} µs/req")
              + f" ({time.monotonic() - t0:.0f}s)", flush=True)
    return out


def one_line(data):
    if "error" in data:
        return data["error"]
    return "; ".join(f"{c['scenario']} {c['server']} "
                     + (c["error"][:80] if "error" in c else f"{c['cpu_us_per_req']:.2f} µs/req")
                     for c in data["cells"])


def markdown(data):
    """The probe as markdown: per target, µs per request by group, then the differences."""
    if "error" in data:
        return [f"The where probe did not run: {data['error']}", ""]
    cells = [c for c in data["cells"] if "error" not in c]
    lines = [f"`perf record -e cpu-clock` over {data['seconds']} s of keep-alive load per target; "
             "each group's share of the samples times the target's CPU per request.", ""]
    for kind in ("hello", "flask"):
        mine = [c for c in cells if c["scenario"] == kind]
        if not mine:
            continue
        groups = []
        for c in mine:
            for g in c["groups_us"]:
                if g not in groups:
                    groups.append(g)
        lines.append(f"**{kind}**, µs per request:")
        lines.append("")
        lines.append("| group | " + " | ".join(c["server"] for c in mine) + " |")
        lines.append("| --- |" + " ---: |" * len(mine))
        for g in groups:
            lines.append(f"| {g} | " + " | ".join(f"{c['groups_us'].get(g, 0.0):.2f}" for c in mine) + " |")
        lines.append("| **all** | " + " | ".join(f"**{c['cpu_us_per_req']:.2f}**" for c in mine) + " |")
        lines.append("")
    for c in cells:
        lines.append(f"Top symbols, {c['scenario']} {c['server']} (µs per request): "
                     + ", ".join(f"`{t['symbol'][:48]}` {t['us']:.2f}" for t in c["top"][:10]) + ".")
        own = [t for t in c["top"] if not t["group"].startswith(("kernel: ", "user: libpython",
                                                                   "user: libc", "user: ld.so",
                                                                   "user: other"))]
        if own:
            lines.append("Its own code: " + ", ".join(f"`{t['symbol'][:60]}` {t['us']:.2f}"
                                                      for t in own[:8]) + ".")
        lines.append("")
    for c in data["cells"]:
        if "error" in c:
            lines.append(f"* {c['scenario']} {c['server']}: {c['error'][:300]}")
    return lines
