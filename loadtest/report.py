"""Turn a load test's results.json document into markdown and PNG plots.

    python report.py results/2026-01-01/results.json   # rewrite results.md and the PNGs

Used by harness.py at the end of a run; runnable alone to redo the report
of an earlier run.
"""

import json
import os
import statistics
import sys

import perfcells
import variants

BASELINE = "gunicorn-sync"
CONN_TITLE = {"keep-alive": "keep-alive", "close": "Connection: close"}
# Order of the rows; servers a run did not have are skipped.
SERVER_ORDER = ["ferrocorn-uring", "ferrocorn-epoll", "gunicorn-sync", "gunicorn-gthread",
                "granian", "granian-st", "bjoern", "nginx", "floor"]
COLOURS = {
    "ferrocorn-uring": "#d62728",
    "ferrocorn-epoll": "#ff9896",
    "gunicorn-sync": "#1f77b4",
    "gunicorn-gthread": "#aec7e8",
    "granian": "#2ca02c",
    "granian-st": "#98df8a",
    "bjoern": "#9467bd",
    "nginx": "#7f7f7f",
    "floor": "#17becf",
}


def cells(doc):
    """[(scenario, workers, conn)] in the order the run measured them."""
    seen = []
    for r in doc["results"]:
        key = (r["scenario"], r["workers"], r["conn"])
        if key not in seen:
            seen.append(key)
    return seen


def rows(doc, cell):
    found = [r for r in doc["results"] if (r["scenario"], r["workers"], r["conn"]) == cell]
    order = {name: i for i, name in enumerate(SERVER_ORDER)}
    return sorted(found, key=lambda r: order.get(r["server"], len(order)))


def cell_title(doc, cell):
    scen, workers, conn = cell
    title = doc["meta"].get("scenarios", {}).get(scen, scen)
    return f"{title}, {workers} worker{'s' if workers > 1 else ''}, {CONN_TITLE.get(conn, conn)}"


def find(doc, cell, server):
    for r in rows(doc, cell):
        if r["server"] == server and r.get("valid"):
            return r
    return None


def fmt_ratio(x):
    if x is None:
        return "–"
    return f"{x:.2f}x" if x < 10 else f"{x:.0f}x"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def markdown(doc):
    meta = doc["meta"]
    st = meta["settings"]
    m = meta["machine"]
    v = meta["versions"]
    out = []
    out.append(f"# ferrocorn load test, {meta['date']}{' (quick mode)' if st.get('quick') else ''}\n")
    out.append(
        f"Servers pinned to CPU {st['server_cpu']}, wrk pinned to CPU {st['client_cpu']} with "
        f"{st['wrk_threads']} thread and {st['connections']} connections; each run "
        f"{st['duration_s']} s after a {st['warmup_s']} s warm-up, all on 127.0.0.1. "
        f"Machine: {m.get('cpu')} ({m.get('cpus')} CPUs, Linux {m.get('kernel')}), "
        f"load average {fmt_load(m.get('loadavg_start'))} at the start and "
        f"{fmt_load(m.get('loadavg_end'))} at the end: the machine is shared, so compare "
        f"servers within one table (ratios), not against other runs.\n")
    if st.get("rounds", 1) > 1:
        out.append(
            "The hello cell with 1 worker and keep-alive, whose ratios the targets use, is measured "
            "again with all its servers up at once (each pinned as above; an idle one costs "
            f"nothing): {st['rounds']} rounds of {st['round_seconds']} s per server after one "
            "warm-up each, the order reversed every other round, so every ratio compares runs "
            "seconds apart. Its figures are each server's medians over the rounds (req/s, latency "
            "and noise from the run with the median req/s, CPU from the run with the median CPU "
            "per request); the summary gives each ratio's range over the rounds, and "
            "results.json keeps every round (`rounds`) and the cell's single run (`single_run`).\n")
    noise = noise_summary(doc)
    if noise:
        out.append(noise + "\n")
    out.append(
        "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if val) +
        f"; ferrocorn commit {m.get('ferrocorn_commit')}.\n")
    out.append(
        "Columns: **req/s** from wrk; **p50/p99** wrk latency; **CPU µs/req** = the server's CPU "
        "time (utime+stime of its whole process tree, from /proc) during the run divided by the "
        "requests served; on loopback that includes the kernel's TCP work done on the server's "
        "core (its system calls, and the softirq delivery of its responses to wrk's sockets, which "
        "Linux runs on the sending core; wrk's core likewise delivers the requests), the same way "
        "for every server; **user / sys** = its split into user space (the server's own code and "
        "Python) and kernel; **CPU** = that CPU time over the run's wall time (100 % = the server's "
        f"core was saturated; below that the load generator was the limit); **vs {BASELINE}** = "
        "req/s ratio and CPU-per-request ratio to gunicorn sync in the same table; **others on "
        "cores** = the share of the server's core / wrk's core that other processes (and the "
        "hypervisor's steal) took during the run, a measure of the noise.\n")

    table = targets_table(doc)
    if table:
        out.append("## Targets\n")
        out.extend(table)
        out.append("")
    out.append("## Summary\n")
    out.extend(summary(doc))

    if cells(doc):
        out.append("\n## Requests per second (overview)\n")
        out.extend(overview(doc, "rps", lambda r: f"{r['rps']:,.0f}"))
        out.append("\n## Server CPU µs per request (overview)\n")
        out.extend(overview(doc, "cpu", lambda r: f"{r['server_cpu_us_per_req']:,.1f}"))

    for cell in cells(doc):
        out.append(f"\n## {cell_title(doc, cell)}\n")
        rounds = {len(r["rounds"]) for r in rows(doc, cell) if r.get("rounds")}
        if rounds:
            out.append(f"Medians of {max(rounds)} interleaved rounds per server (see above).\n")
        base = find(doc, cell, BASELINE)
        out.append(f"| server | req/s | p50 ms | p99 ms | CPU µs/req | user / sys | CPU "
                   f"| req/s vs {BASELINE} | CPU/req vs {BASELINE} | others on cores |")
        out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in rows(doc, cell):
            if not r.get("valid"):
                why = "; ".join(r.get("problems", []))[:160].replace("|", "/").replace("\n", " ")
                if r.get("rps"):
                    why += f" (measured {r['rps']:,.0f} req/s, not counted)"
                out.append(f"| {r['server']} | failed: {why} | | | | | | | | |")
                continue
            lat = r["latency_ms"]
            out.append(
                f"| {r['server']} | {r['rps']:,.0f} | {lat['p50']:.2f} | {lat['p99']:.2f} "
                f"| {r['server_cpu_us_per_req']:,.1f} | {fmt_split(r)} | {r['server_cpu_util'] * 100:.0f} % "
                f"| {fmt_ratio(ratio(r['rps'], base and base['rps']))} "
                f"| {fmt_ratio(ratio(r['server_cpu_us_per_req'], base and base['server_cpu_us_per_req']))} "
                f"| {fmt_noise(r.get('noise'))} |")

    ip = doc.get("in_process") or {}
    if ip:
        out.append("\n## In-process ceiling\n")
        out.append("The app's callable called in a loop in one process pinned to the server CPU "
                   "(a fresh environ per call with the keys and values ferrocorn passes for wrk's "
                   "request, body iterated, close() called): no server, no socket. Run right "
                   "before and right after its cell; the figures are over both runs (total calls "
                   "over total time), the statistic a server's run gets.\n")
        out.append("| app | calls/s | µs/call (wall) | CPU µs/call | CPU µs/call before / after |")
        out.append("|---|---:|---:|---:|---:|")
        for name, c in ip.items():
            if "error" in c:
                out.append(f"| {name} | failed: {c['error'][:120]!r} | | | |")
            else:
                b = (c.get("before") or {}).get("cpu_us_per_call")
                a = (c.get("after") or {}).get("cpu_us_per_call")
                out.append(f"| {name} | {c['calls_per_s']:,.0f} | {c['us_per_call']:.2f} "
                           f"| {c['cpu_us_per_call']:.2f} | {b} / {a} |")
        paired = [r for r in doc["results"] if r.get("paired_ceiling")]
        if paired:
            out.append("\n**Paired** (the figure the summary uses): the server and the app alone "
                       "alternate on the same core, 1 s each, for several rounds; CPU is the "
                       "scheduler's runtime on both sides.\n")
            out.append("| server | scenario | server CPU µs/req | app alone CPU µs/call | CPU ratio "
                       "| server req/s | app alone calls/s | req/s ratio |")
            out.append("|---|---|---:|---:|---:|---:|---:|---:|")
            for r in paired:
                p = r["paired_ceiling"]
                if "error" in p:
                    out.append(f"| {r['server']} | {r['scenario']} | failed: {p['error'][:100]!r} "
                               "| | | | | |")
                    continue
                out.append(f"| {r['server']} | {r['scenario']} | {p['server_cpu_us_per_req']:.1f} "
                           f"| {p['app_cpu_us_per_call']:.1f} | **{p['cpu_ratio'] * 100:.0f} %** "
                           f"| {p['server_rps']:,.0f} | {p['app_calls_per_s']:,.0f} "
                           f"| {p['rps_ratio'] * 100:.0f} % |")

    out.extend(probe_sections(doc))

    bad = [r for r in doc["results"] if not r.get("valid")]
    if bad:
        out.append("\n## Failed runs\n")
        for r in bad:
            out.append(f"* {r['server']} {r['scenario']} w{r['workers']} {r['conn']}: "
                       + "; ".join(r.get("problems", [])).replace("\n", " ")[:400])
    out.append("")
    return "\n".join(out)


def fmt_split(r):
    u, k = r.get("server_user_us_per_req"), r.get("server_sys_us_per_req")
    if u is None or k is None:
        return "–"
    return f"{u:,.1f} / {k:,.1f}"


def fmt_noise(noise):
    """Other processes' share (plus steal) of the server core / client core during the run."""
    if not noise:
        return "?"
    parts = []
    for role in ("server_core", "client_core"):
        n = noise.get(role)
        parts.append("?" if n is None else f"{(n['others'] + n['steal']) * 100:.0f} %")
    return " / ".join(parts)


def noise_summary(doc):
    """One sentence on how much of both cores other processes took, over all runs."""
    shares = {"server_core": [], "client_core": []}
    ep = engines_probe(doc) or {}
    probe_runs = [r for c in ep.get("cells") or [] for d in (c.get("engines") or {}).values()
                  for r in d.get("runs", [])]
    for r in doc["results"] + probe_runs:
        for role, n in (r.get("noise") or {}).items():
            if role in shares:
                shares[role].append(n["others"] + n["steal"])
    if not shares["server_core"]:
        return ""

    def median(xs):
        xs = sorted(xs)
        return xs[len(xs) // 2]

    s, c = shares["server_core"], shares["client_core"] or [0.0]
    text = (f"Noise: other processes (and steal) took a median {median(s) * 100:.0f} % of the "
            f"server's core (max {max(s) * 100:.0f} %) and {median(c) * 100:.0f} % of wrk's core "
            f"(max {max(c) * 100:.0f} %) during the measured runs.")
    if median(s) > 0.2 or median(c) > 0.2:
        text += (" **That is a busy machine: req/s here is far below what these servers do on "
                 "quiet cores and varies from run to run; rely on the ratios within a table, and "
                 "on CPU per request more than on req/s.**")
    return text


def fmt_load(load):
    if not load:
        return "?"
    return "/".join(f"{x:.1f}" for x in load)


def overview(doc, what, fmt):
    order = [s for s in SERVER_ORDER if any(r["server"] == s for r in doc["results"])]
    cs = cells(doc)
    heads = [f"{scen} w{w} {'ka' if conn == 'keep-alive' else 'close'}" for scen, w, conn in cs]
    lines = ["| server | " + " | ".join(heads) + " |", "|---|" + "---:|" * len(cs)]
    for server in order:
        vals = []
        for cell in cs:
            r = next((x for x in rows(doc, cell) if x["server"] == server), None)
            if r is None:
                vals.append("")
            elif not r.get("valid"):
                vals.append("failed")
            else:
                vals.append(fmt(r))
        lines.append(f"| {server} | " + " | ".join(vals) + " |")
    return lines


def summary(doc):
    """The figures the design document sets targets for, where this run has them."""
    lines = []

    def get(scen, w, conn, server, key):
        r = find(doc, (scen, w, conn), server)
        return r[key] if r else None

    def per_round(server, peer, key):
        """The ratio's range over the interleaved rounds, as text ('' without rounds)."""
        a = find(doc, ("hello", 1, "keep-alive"), server) or {}
        b = find(doc, ("hello", 1, "keep-alive"), peer) or {}
        pairs = [(x.get(key), y.get(key)) for x, y in zip(a.get("rounds", []), b.get("rounds", []))
                 if x.get("valid") and y.get("valid")]
        rs = [r for r in (ratio(x, y) for x, y in pairs) if r is not None]
        if len(rs) < 2:
            return ""
        return f" (rounds {fmt_ratio(min(rs))}–{fmt_ratio(max(rs))})"

    for engine in ("ferrocorn-uring", "ferrocorn-epoll"):
        parts = []
        rps = get("hello", 1, "keep-alive", engine, "rps")
        cpu = get("hello", 1, "keep-alive", engine, "server_cpu_us_per_req")
        if rps is not None:
            for peer, key, label in [
                ("nginx", "rps", "req/s vs nginx `return 200` (target >= 0.95x)"),
                ("gunicorn-sync", "rps", "req/s vs gunicorn sync"),
            ]:
                r = ratio(rps, get("hello", 1, "keep-alive", peer, key))
                if r is not None:
                    parts.append(f"{label}: **{fmt_ratio(r)}**{per_round(engine, peer, key)}")
            for peer, target in [("floor", " (target <= 1.15x)"), ("bjoern", ""), ("granian", ""),
                                 ("granian-st", "")]:
                r = ratio(cpu, get("hello", 1, "keep-alive", peer, "server_cpu_us_per_req"))
                if r is not None:
                    parts.append(f"CPU/req vs {peer}{target}: **{fmt_ratio(r)}**"
                                 f"{per_round(engine, peer, 'server_cpu_us_per_req')}")
        if parts:
            lines.append(f"* {engine}, hello-world, 1 worker, keep-alive: " + "; ".join(parts) + ".")
        flask = find(doc, ("flask", 1, "keep-alive"), engine)
        p = (flask or {}).get("paired_ceiling")
        if p and "error" not in p:
            lines.append(
                f"* {engine}, Flask hello, 1 worker, keep-alive, against the app called in-process: "
                f"by CPU **{p['cpu_ratio'] * 100:.0f} %** (the app alone costs "
                f"{p['app_cpu_us_per_call']:.1f} µs per call, the server {p['server_cpu_us_per_req']:.1f} µs "
                f"per request), by req/s {p['rps_ratio'] * 100:.0f} % ({p['server_rps']:,.0f} against "
                f"{p['app_calls_per_s']:,.0f} calls/s); paired measurement, "
                f"{p['rounds']} rounds.")
            floor = get("hello", 1, "keep-alive", "floor", "server_cpu_us_per_req")
            if floor is not None:
                extra = p["server_cpu_us_per_req"] - p["app_cpu_us_per_call"] - floor
                user = (flask or {}).get("server_user_us_per_req")
                sys_ = (flask or {}).get("server_sys_us_per_req")
                split = (f"; the server's user time {user:.1f} µs and kernel time {sys_:.1f} µs "
                         f"per request" if user is not None and sys_ is not None else "")
                lines.append(
                    f"* {engine}, Flask hello decomposed: the app in-process "
                    f"{p['app_cpu_us_per_call']:.1f} µs + the floor {floor:.1f} µs; ferrocorn adds "
                    f"**{extra:.1f} µs** beyond both (target <= 2 µs){split}.")
    for line in probe_summary(doc):
        lines.append(line)
    return lines + engine_lines(doc)


ENGINE_RULE = ("a cell is met when io_uring is no worse than epoll on one median (req/s at "
               "least epoll's, or CPU µs/req at most epoll's) and within {tie:.0f} % of epoll "
               "on the other")


def runs(n, what="run"):
    return f"{n} {what}{'' if n == 1 else 's'}"


def cell_short(c):
    return f"{c['scenario']} w{c['workers']} {'ka' if c['conn'] == 'keep-alive' else 'close'}"


def engines_probe(doc):
    return (doc.get("probes") or {}).get("engines")


def engines_verdict(ep):
    """(text, cells not met) of the interleaved io_uring >= epoll target, or None without cells."""
    cs = ep.get("cells") or []
    if not cs:
        return None
    measured = [c for c in cs if "met" in c]
    wins = [c for c in measured if c["met"]]
    failed = len(cs) - len(measured)
    losers = [f"{cell_short(c)} {c['rps_ratio']:.2f}x req/s, {c['cpu_ratio']:.2f}x CPU/req"
              for c in measured if not c["met"]]
    text = f"{len(wins)} of {len(cs)} cells"
    if failed:
        text += f", {failed} not measured"
    text += " (met)" if len(wins) == len(cs) else " (**not met**)"
    return text, losers


def engine_lines(doc):
    lines = []
    ep = engines_probe(doc)
    if ep and ep.get("cells"):
        parts = []
        for c in ep["cells"]:
            if "met" not in c:
                parts.append(f"{cell_short(c)} failed")
                continue
            parts.append(f"{cell_short(c)} {c['rps_ratio']:.2f}x req/s, {c['cpu_ratio']:.2f}x CPU/req"
                         f"{'' if c['met'] else ' (not met)'}")
        text, _ = engines_verdict(ep)
        lines.append(f"* io_uring vs epoll, interleaved (medians of {runs(ep['rounds'])} of "
                     f"{ep['seconds']} s per engine; target: never slower, "
                     f"{ENGINE_RULE.format(tie=ep['tie'] * 100)}): {text}: " + "; ".join(parts) + ".")
    # io_uring against epoll, every cell.
    wins = []
    for cell in cells(doc):
        u = find(doc, cell, "ferrocorn-uring")
        e = find(doc, cell, "ferrocorn-epoll")
        if u and e:
            wins.append(f"{cell[0]} w{cell[1]} {'ka' if cell[2] == 'keep-alive' else 'close'} "
                        f"{u['rps'] / e['rps']:.2f}x req/s, "
                        f"{u['server_cpu_us_per_req'] / e['server_cpu_us_per_req']:.2f}x CPU/req")
    if wins:
        lines.append("* io_uring vs epoll, single runs of the matrix (one run per engine and "
                     "cell, context only): " + "; ".join(wins) + ".")
    return lines


def targets_table(doc):
    """One table of the issue's targets: the figure per engine and whether it is met."""
    def get(cell, server, key="rps"):
        r = find(doc, cell, server)
        return r[key] if r else None

    hello = ("hello", 1, "keep-alive")
    flask = ("flask", 1, "keep-alive")
    pr = doc.get("probes") or {}
    rows = []

    def row(label, values, good):
        if all(v is None for v in values):
            return
        cells_ = []
        for v in values:
            if v is None:
                cells_.append("–")
            else:
                text, x = v
                cells_.append(f"{text} ({'met' if good(x) else '**not met**'})")
        rows.append(f"| {label} | " + " | ".join(cells_) + " |")

    engines = ("ferrocorn-uring", "ferrocorn-epoll")

    def rel(peer, key, fmt=fmt_ratio):
        out = []
        for e in engines:
            x = ratio(get(hello, e, key), get(hello, peer, key))
            out.append(None if x is None else (fmt(x), x))
        return out

    row("hello req/s vs nginx `return 200` (>= 0.95x)", rel("nginx", "rps"), lambda x: x >= 0.95)

    def against_floor(e):
        """CPU/req over the floor's, round by round (interleaved rounds)."""
        mine = {r["round"]: r for r in (find(doc, hello, e) or {}).get("rounds") or []
                if r.get("valid")}
        floor = {r["round"]: r for r in (find(doc, hello, "floor") or {}).get("rounds") or []
                 if r.get("valid")}
        ratios = sorted(mine[i]["server_cpu_us_per_req"] / floor[i]["server_cpu_us_per_req"]
                        for i in mine if i in floor and floor[i]["server_cpu_us_per_req"])
        if not ratios:
            x = ratio(get(hello, e, "server_cpu_us_per_req"), get(hello, "floor", "server_cpu_us_per_req"))
            return None if x is None else (f"{fmt_ratio(x)} (one run)", x)
        median = statistics.median(ratios)
        return (f"{median:.2f}x, median of {len(ratios)} rounds "
                f"(rounds {ratios[0]:.2f}x to {ratios[-1]:.2f}x)", median)

    row("hello CPU/req vs the floor responder (<= 1.15x)", [against_floor(e) for e in engines],
        lambda x: x <= 1.15)
    row("hello CPU/req vs bjoern (context)", rel("bjoern", "server_cpu_us_per_req"),
        lambda x: x <= 1.0)
    fi = pr.get("flask_instructions") or {}
    if "ratio" in fi:
        # The profile runs one engine; its column gets the figure.
        eng = next((p.get("engine") for p in pr.get("profile") or [] if p.get("engine")), "epoll")
        v = (f"{fi['ratio'] * 100:.1f} % of user-space instructions (callgrind)", fi["ratio"])
        row("Flask hello vs the app in-process, by instructions (>= 90 %)",
            [v if eng == "uring" else None, v if eng == "epoll" else None], lambda x: x >= 0.9)
    ep = engines_probe(doc)
    verdict = engines_verdict(ep) if ep else None
    if verdict:
        rows.append(f"| io_uring >= epoll, every cell, interleaved (medians of {runs(ep['rounds'])} "
                    f"each; met: no worse on req/s or CPU/req, within {ep['tie'] * 100:.0f} % "
                    f"on the other) | {verdict[0]}"
                    + "".join(f"; {x}" for x in verdict[1]) + " | |")
    wins = total = 0
    for cell in cells(doc):
        u, e = find(doc, cell, engines[0]), find(doc, cell, engines[1])
        if u and e:
            total += 1
            wins += u["rps"] >= e["rps"]
    if total:
        context = ", context only" if verdict else ""
        rows.append(f"| io_uring >= epoll (req/s), every cell, single runs{context} | {wins} of "
                    f"{total} cells ({'met' if wins == total else '**not met**'}) | |")
    mem = {m["engine"]: m for m in pr.get("memory") or [] if "error" not in m}
    row("RSS per idle keep-alive connection (<= 8 KiB)",
        [(f"{mem[e]['rss_kib_per_conn']:.1f} KiB", mem[e]["rss_kib_per_conn"]) if e in mem else None
         for e in ("uring", "epoll")], lambda x: x <= 8)
    rss = {r["engine"]: r for r in pr.get("rss") or [] if "error" not in r}

    def flat(e):
        r = rss.get(e)
        if not r or r["slope_kib_per_1m_requests"] is None:
            return None
        # Flat: growth over the run within 1 % of the worker's RSS.
        grow = abs(r["slope_kib_per_1m_requests"]) * r["requests"] / 1e6
        return (f"{r['start_kib'] / 1024:.1f} → {r['end_kib'] / 1024:.1f} MiB over "
                f"{r['requests'] / 1e6:.2f}M requests, {fmt_slope(r['slope_kib_per_1m_requests'])}",
                grow / max(r["start_kib"], 1))

    row("RSS over 1M requests flat (growth < 1 %)", [flat("uring"), flat("epoll")], lambda x: x < 0.01)
    st = (pr.get("startup") or {}).get("servers") or {}
    row("start to ready, `-w 4`, app import excluded (< 300 ms)",
        [(f"{st[e]['ready_ms']['median']:.0f} ms", st[e]["ready_ms"]["median"])
         if "ready_ms" in st.get(e, {}) else None for e in engines], lambda x: x < 300)
    if not rows:
        return []
    return ["| target | ferrocorn-uring | ferrocorn-epoll |", "|---|---|---|"] + rows


def headline(doc):
    """The targets and the hello keep-alive cell, short enough for a README."""
    out = []
    table = targets_table(doc)
    if table:
        out.extend(table)
        out.append("")
    cell = ("hello", 1, "keep-alive")
    rs = [r for r in rows(doc, cell) if r.get("valid")]
    if rs:
        base = find(doc, cell, BASELINE)
        out.append(f"hello-world WSGI, 1 worker on one core, keep-alive, wrk -t1 -c{doc['meta']['settings']['connections']} "
                   "on the other core:\n")
        out.append(f"| server | req/s | CPU µs/req (user / sys) | req/s vs {BASELINE} "
                   "| others on cores (server / wrk) |")
        out.append("|---|---:|---:|---:|---:|")
        for r in rs:
            out.append(f"| {r['server']} | {r['rps']:,.0f} | {r['server_cpu_us_per_req']:.1f} ({fmt_split(r)}) "
                       f"| {fmt_ratio(ratio(r['rps'], base and base['rps']))} | {fmt_noise(r.get('noise'))} |")
        out.append("")
    noise = noise_summary(doc)
    if noise:
        out.append(noise.replace("**", "") + "\n")
    return "\n".join(out)


def probe_summary(doc):
    """The target lines of the probes (memory, RSS, start-up)."""
    pr = doc.get("probes") or {}
    lines = []
    for m in pr.get("memory") or []:
        if "error" in m:
            lines.append(f"* memory per idle keep-alive connection, {m['engine']}: failed: {m['error'][:200]}")
            continue
        met = "met" if m["rss_kib_per_conn"] <= 8 else "not met"
        lines.append(
            f"* memory per idle keep-alive connection, {m['engine']} (target <= 8 KiB): "
            f"**{m['rss_kib_per_conn']:.1f} KiB RSS** ({met}; PSS {m.get('pss_kib_per_conn', '?')} KiB), "
            f"{m['connections']:,} connections held by one worker.")
    for r in pr.get("rss") or []:
        if "error" in r:
            lines.append(f"* RSS over a long run, {r['engine']}: failed: {r['error'][:200]}")
            continue
        lines.append(
            f"* RSS over {r['requests']:,} hello requests, {r['engine']} (target: flat): "
            f"{r['start_kib']:,} KiB at the start, {r['end_kib']:,} at the end, max {r['max_kib']:,}; "
            f"slope **{fmt_slope(r['slope_kib_per_1m_requests'])}**.")
    fi = pr.get("flask_instructions")
    if fi and "ratio" in fi:
        lines.append(f"* Flask hello by user-space instructions (callgrind, no noise): the app alone "
                     f"{fi['ir_per_call']:,} per call, through ferrocorn {fi['server_ir_per_request']:,} "
                     f"per request: **{fi['ratio'] * 100:.1f} %**.")
    st = pr.get("startup")
    if st:
        parts = []
        for name, e in st["servers"].items():
            if name.startswith("ferrocorn") and "ready_ms" in e:
                met = "met" if e["ready_ms"]["median"] < 300 else "not met"
                parts.append(f"{name} **{e['ready_ms']['median']:.0f} ms** to READY=1 ({met})")
            elif "all_workers_ms" in e:
                parts.append(f"{name} {e['all_workers_ms']['median']:.0f} ms to its 4th worker's "
                             "post_worker_init")
            else:
                parts.append(f"{name} failed")
        lines.append(f"* start-up, {st['workers']} workers, trivial app (target < 300 ms), median of "
                     f"{st['runs']}: " + "; ".join(parts) + ".")
    return lines


def fmt_slope(x):
    if x is None:
        return "too few samples"
    return f"{x:+,.0f} KiB per 1M requests"


def probe_sections(doc):
    pr = doc.get("probes") or {}
    out = []
    if pr.get("memory"):
        out.append("\n## Memory per idle keep-alive connection\n")
        out.append("One worker (`-w 1 --worker-connections N+1000 --keep-alive 600`); N connections "
                   "each make one request and then stay open and idle. RSS and PSS of the worker "
                   "(/proc/<pid>/status, smaps_rollup) before and after, divided by N. Kernel socket "
                   "buffers are not in RSS; `kernel` is the change of the TCP memory of "
                   "/proc/net/sockstat (both ends, the whole machine).\n")
        out.append("| engine | connections | held | RSS before → after KiB | KiB/conn (RSS) | KiB/conn (PSS) | kernel KiB/conn |")
        out.append("|---|---:|---:|---:|---:|---:|---:|")
        for m in pr["memory"]:
            if "error" in m:
                out.append(f"| {m['engine']} | failed: {m['error'][:160]!r} | | | | | |")
                continue
            out.append(f"| {m['engine']} | {m['connections']:,} | {m['worker_sockets_held']:,} "
                       f"| {m['before_kib']['rss']:,} → {m['after_kib']['rss']:,} "
                       f"| **{m['rss_kib_per_conn']:.2f}** | {m.get('pss_kib_per_conn', '–')} "
                       f"| {m.get('kernel_tcp_kib_per_conn_both_ends', '–')} |")
    if pr.get("rss"):
        out.append("\n## RSS over a long run\n")
        out.append("One worker serves hello with keep-alive: 2 s of warm-up, then one wrk run "
                   "sized to reach the total; the worker's RSS is sampled every second. The slope "
                   "is a least-squares fit of RSS against requests served, from the first second "
                   "of the run on (`rss.png`).\n")
        out.append("| engine | requests | req/s | fresh KiB | start KiB | end KiB | max KiB | idle after KiB | slope |")
        out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in pr["rss"]:
            if "error" in r:
                out.append(f"| {r['engine']} | failed: {r['error'][:160]!r} | | | | | | | |")
                continue
            out.append(f"| {r['engine']} | {r['requests']:,} | {r['rps']:,.0f} | {r['fresh_kib']:,} "
                       f"| {r['start_kib']:,} | {r['end_kib']:,} | {r['max_kib']:,} "
                       f"| {r['idle_after_kib']:,} | {fmt_slope(r['slope_kib_per_1m_requests'])} |")
    st = pr.get("startup")
    if st:
        out.append("\n## Start-up\n")
        out.append(f"`-w {st['workers']}` with `{st['app']}` (importing it costs nothing), not "
                   "pinned, runs of the servers interleaved. Clock from just before the exec to: "
                   "**READY=1**, which ferrocorn's master sends to $NOTIFY_SOCKET once every worker "
                   "is ready (gunicorn sends it right after binding, before any worker exists, so "
                   "it is not comparable); **all workers**, the last `post_worker_init` hook (a "
                   "config file's hook sends a datagram to the same socket), the same event for "
                   "both servers. Median (min–max) ms.\n")
        out.append("| server | READY=1 | all workers (post_worker_init) |")
        out.append("|---|---:|---:|")
        for name, e in st["servers"].items():
            if "error" in e and "all_workers_ms" not in e:
                out.append(f"| {name} | failed: {e['error'][:160]!r} | |")
                continue

            def rng(k):
                v = e.get(k)
                return f"{v['median']:.0f} ({v['min']:.0f}–{v['max']:.0f})" if v else "–"
            out.append(f"| {name} | {rng('ready_ms')} | {rng('all_workers_ms')} |")
    for p in pr.get("profile") or []:
        out.append(f"\n## Profile (callgrind, {p.get('app', 'wsgi_apps:hello')}, {p.get('engine')} engine)\n")
        if "error" in p:
            out.append(f"failed: {p['error'][:400]}")
            continue
        out.append(f"One worker served {p['requests']:,} requests over 8 keep-alive "
                   f"connections under callgrind; counted {p['counted']}. "
                   f"**{p['ir_per_request']:,} instructions per request** in user space. "
                   f"Full listing: `{p.get('annotate')}`.\n")
        out.append("By object: " + "; ".join(f"{k} {v['ir_per_request']:,} ({v['share'] * 100:.0f} %)"
                                            for k, v in p.get("by_object", {}).items()) + ".\n")
        out.append("| self Ir/request | share | function | object |")
        out.append("|---:|---:|---|---|")
        for r in p["self"][:20]:
            out.append(f"| {r['ir_per_request']:,} | {r['share'] * 100:.1f} % | `{r['function'][:90]}` | {r['object']} |")
        out.append("\nInclusive (the function and all it calls), below the serve loop:\n")
        out.append("| inclusive Ir/request | share | function |")
        out.append("|---:|---:|---|")
        seen = set()
        for r in p["inclusive"]:
            if r["function"] in seen:
                continue
            seen.add(r["function"])
            out.append(f"| {r['ir_per_request']:,} | {r['share'] * 100:.1f} % | `{r['function'][:100]}` |")
            if len(seen) >= 20:
                break
    fi = pr.get("flask_instructions")
    if fi:
        out.append("\n## Flask by instructions\n")
        if "ratio" in fi:
            out.append(f"The Flask app called in-process under callgrind (the difference of a 1,200- "
                       f"and a 200-call loop, so start-up and import cancel out): "
                       f"**{fi['ir_per_call']:,} instructions per call**; served by ferrocorn (the "
                       f"difference of two profiles of different length, serve loop only, so Flask's "
                       f"costly first requests cancel out too): "
                       f"{fi['server_ir_per_request']:,} per request, so the "
                       f"app is **{fi['ratio'] * 100:.1f} %** of the user-space instructions of a "
                       "request. Instructions are not time: the kernel's share (system time) and the "
                       "app's slower run between network work (colder caches) are not in them.")
        else:
            out.append(f"failed: {fi.get('error', '?')[:400]}")
    if pr.get("engines"):
        out.extend(engines_section(pr["engines"], doc["meta"].get("settings", {})))
    if pr.get("h2"):
        out.extend(h2_section(pr["h2"]))
    if pr.get("asgi"):
        out.extend(asgi_section(pr["asgi"]))
    if pr.get("where"):
        out.extend(["### Where the CPU goes (where probe)", ""] + perfcells.markdown(pr["where"]))
    if pr.get("variants"):
        out.extend(["### The collector, the allocator, large pages (variants probe)", ""]
                   + variants.markdown(pr["variants"]))
    al = pr.get("alloc")
    if al:
        out.append("\n## Allocator\n")
        if not al.get("available"):
            out.append(f"Not measured: {al.get('reason')}.")
        elif "error" in al:
            out.append(f"failed: {al['error'][:400]}")
        else:
            out.append("hello, 1 worker, keep-alive; the two builds alternate per engine.\n")
            out.append("| allocator | engine | req/s | CPU µs/req |")
            out.append("|---|---|---:|---:|")
            for h in al["hello"]:
                if h.get("valid"):
                    out.append(f"| {h['variant']} | {h['engine']} | {h['rps']:,.0f} | {h['server_cpu_us_per_req']:.1f} |")
                else:
                    out.append(f"| {h['variant']} | {h['engine']} | failed | |")
    return out


def asgi_section(data):
    """The asgi probe (loadtest/asgicells.py) as markdown."""
    lines = ["### ASGI and WebSocket (asgi probe)", "",
             f"One worker each, pinned; {data['rounds']} interleaved rounds of {data['seconds']} s; "
             "medians. HTTP cells: wrk keep-alive. ws-echo: loadtest/wsbench, 50 connections, "
             "1 KiB text messages, one in flight per connection. Targets: CPU per request at most "
             "0.55x granian's and req/s ahead of every peer; WebSocket echo at least 1.5x the best "
             "peer's messages per second.", "",
             "| cell | server | per second | CPU µs each | ferrocorn's ratio (rate, CPU) |",
             "|---|---|---|---|---|"]
    for cell, c in data.get("cells", {}).items():
        for name, srv in c["servers"].items():
            if "error" in srv:
                lines.append(f"| {cell} | {name} | failed: {srv['error'][:120]} | | |")
                continue
            r = c["ferrocorn_vs"].get(name)
            ratio = f"{r['rate']:.2f}x, {r['cpu']:.2f}x" if r else ""
            lines.append(f"| {cell} | {name} | {srv['rate']:,.0f} | {srv['cpu_us']:.1f} | {ratio} |")
    idle = {(app, name): m for app, key in (("raw echo", "ws_idle"), ("FastAPI", "ws_idle_fastapi"))
            for name, m in (data.get(key) or {}).items()}
    if idle:
        lines += ["", "Idle WebSockets: each server takes 10,000 connections to the raw echo app "
                  "and 2,000 to a FastAPI echo endpoint (every one upgraded and echoing), then "
                  "holds them idle; its resident memory (whole process tree) before and while "
                  "held. Target for ferrocorn: at most 32 KiB per idle FastAPI WebSocket.", "",
                  "| app | server | connections | RSS before → held | KiB per idle WebSocket |",
                  "|---|---|---|---|---|"]
        for (app, name), m in idle.items():
            if "error" in m:
                lines.append(f"| {app} | {name} | failed: {m['error'][:120]} | | |")
            else:
                lines.append(f"| {app} | {name} | {m['connections']:,} | "
                             f"{m['rss_before_kib'] / 1024:.1f} → "
                             f"{m['rss_held_kib'] / 1024:.1f} MiB | {m['kib_per_connection']:.1f} |")
    return lines + [""]


def h2_section(data):
    """The h2 probe (loadtest/h2cells.py) as markdown."""
    lines = ["### HTTP/2 (h2load)", "",
             f"h2load `-c {data['connections']} -m {data['streams_per_connection']}`, "
             f"{data['seconds']} s runs after a 1 s warm-up, {data['rounds']} interleaved rounds; "
             "one worker pinned, wsgi_apps:hello; medians. Target: ferrocorn >= 1.5x granian's "
             "req/s.", "",
             "| transport | server | req/s | CPU µs/req | ferrocorn's ratio (req/s, CPU/req) |",
             "|---|---|---|---|---|"]
    for transport, t in data.get("transports", {}).items():
        for name, s in t["servers"].items():
            if "error" in s:
                lines.append(f"| {transport} | {name} | failed: {s['error'][:120]} | | |")
                continue
            r = t["ferrocorn_vs"].get(name)
            ratio = f"{r['rps']:.2f}x, {r['cpu']:.2f}x" if r else ""
            lines.append(f"| {transport} | {name} | {s['rps']:,.0f} | "
                         f"{s['server_cpu_us_per_req']:.1f} | {ratio} |")
    return lines + [""]


def engines_noise(c):
    """Median share of the server's / wrk's core other processes took over a cell's runs."""
    shares = {"server_core": [], "client_core": []}
    for d in c["engines"].values():
        for r in d["runs"]:
            for role, n in (r.get("noise") or {}).items():
                if role in shares:
                    shares[role].append(n["others"] + n["steal"])
    if not shares["server_core"]:
        return "?"
    return " / ".join(f"{sorted(xs)[len(xs) // 2] * 100:.0f} %" if xs else "?"
                      for xs in shares.values())


def engines_section(ep, st):
    out = ["\n## io_uring vs epoll, interleaved\n"]
    order = " ".join("UE" if i % 2 == 0 else "EU" for i in range(ep["rounds"]))
    out.append(
        f"For every ferrocorn cell both servers run at once, each on its own port and both pinned "
        f"to CPU {st.get('server_cpu', 0)} (the idle one costs nothing); each gets one "
        f"{ep['warmup']} s warm-up, then {runs(ep['rounds'], 'measured run')} of {ep['seconds']} s per "
        f"engine alternate in the order {order} (ABBA), so a drift of the machine's load "
        "falls on both alike. Figures are the medians of each engine's runs; the ratios are "
        "io_uring / epoll of the medians; the range is the lowest and highest ratio of one round "
        "(one run of each engine, back to back); **others on cores** is the median over the "
        "cell's runs of the share other processes took of the server's / wrk's core. Rule of "
        "the target: "
        f"{ENGINE_RULE.format(tie=ep['tie'] * 100)}.\n")
    out.append("| cell | uring req/s | epoll req/s | req/s ratio | range | uring CPU µs/req "
               "| epoll CPU µs/req | CPU/req ratio | range | others on cores | io_uring >= epoll |")
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for c in ep.get("cells") or []:
        name = cell_short(c)
        if "met" not in c:
            why = str(c.get("error", "?"))[:200].replace("|", "/").replace("\n", " ")
            out.append(f"| {name} | failed: {why} | | | | | | | | | |")
            continue
        u, e = c["engines"]["uring"], c["engines"]["epoll"]

        def rng(key):
            xs = c.get(key)
            return f"{min(xs):.2f}–{max(xs):.2f}" if xs else "–"

        verdict = "met" if c["met"] else "**not met**"
        partial = (f" (valid: {u['valid_runs']} uring, {e['valid_runs']} epoll)"
                   if min(u["valid_runs"], e["valid_runs"]) < ep["rounds"] else "")
        out.append(f"| {name}{partial} | {u['rps']:,.0f} | {e['rps']:,.0f} | {c['rps_ratio']:.2f}x "
                   f"| {rng('round_rps_ratios')} | {u['cpu_us_per_req']:,.1f} "
                   f"| {e['cpu_us_per_req']:,.1f} | {c['cpu_ratio']:.2f}x "
                   f"| {rng('round_cpu_ratios')} | {engines_noise(c)} | {verdict} |")
    bad = [(c, eng, r) for c in ep.get("cells") or [] for eng, d in (c.get("engines") or {}).items()
           for r in d.get("runs", []) if not r.get("valid")]
    if bad:
        out.append("\nRuns left out of the medians:\n")
        for c, eng, r in bad:
            out.append(f"* {cell_short(c)} {eng} round {r.get('round')}: "
                       + "; ".join(r.get("problems") or []).replace("\n", " ")[:300])
    return out


def rss_plot(doc, out_dir, plt):
    runs = [r for r in (doc.get("probes") or {}).get("rss") or [] if "samples" in r]
    if not runs:
        return
    fig, ax = plt.subplots(figsize=(7, 3.2))
    for r in runs:
        xs = [s[1] / 1e6 for s in r["samples"]]
        ys = [s[2] / 1024 for s in r["samples"]]
        ax.plot(xs, ys, marker=".", label=f"ferrocorn-{r['engine']}",
                color=COLOURS.get(f"ferrocorn-{r['engine']}"))
    ax.set_xlabel("requests served (millions)")
    ax.set_ylabel("worker RSS (MiB)")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    ax.set_title(f"worker RSS during a long hello run, {doc['meta']['date']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "rss.png"), dpi=72)
    plt.close(fig)


def plots(doc, out_dir):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rss_plot(doc, out_dir, plt)
    cs = cells(doc)
    if not cs:
        return
    for what, key, label, fname, log in [
        ("rps", "rps", "requests/s (higher is better)", "rps.png", False),
        ("cpu", "server_cpu_us_per_req", "server CPU µs per request (lower is better, log scale)",
         "cpu_per_request.png", True),
    ]:
        ncols = 3 if len(cs) > 4 else min(len(cs), 2)
        nrows = (len(cs) + ncols - 1) // ncols
        fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 2.9 * nrows), squeeze=False)
        for ax, cell in zip(axes.flat, cs):
            rs = rows(doc, cell)
            names = [r["server"] for r in rs]
            vals = [r[key] if r.get("valid") else None for r in rs]
            good = [v for v in vals if v]
            top = max(good) if good else 1
            low = min(good) if good else 1
            y = list(range(len(rs)))
            ax.barh(y, [v or 0 for v in vals], color=[COLOURS.get(n, "#333333") for n in names])
            ax.set_yticks(y)
            ax.set_yticklabels(names, fontsize=8)
            ax.invert_yaxis()
            if log and good:
                ax.set_xscale("log")
                ax.set_xlim(low * 0.7, top * 6)
            elif good:
                ax.set_xlim(0, top * 1.25)
            ax.set_title(cell_title(doc, cell), fontsize=9)
            ax.tick_params(axis="x", labelsize=7)
            for i, v in enumerate(vals):
                if v is None:
                    ax.text(low * 0.75 if log else 0, i, " failed (see results.md)", va="center",
                            fontsize=7, color="#b00000")
                else:
                    ax.text(v, i, " " + (f"{v:,.0f}" if v >= 100 else f"{v:.1f}"), va="center",
                            fontsize=7)
        for ax in list(axes.flat)[len(cs):]:
            ax.axis("off")
        fig.suptitle(f"ferrocorn load test {doc['meta']['date']}: {label}", fontsize=11)
        fig.tight_layout()
        fig.savefig(os.path.join(out_dir, fname), dpi=72)
        plt.close(fig)


def main(argv):
    if len(argv) != 1:
        raise SystemExit(__doc__)
    path = argv[0]
    with open(path) as f:
        doc = json.load(f)
    out_dir = os.path.dirname(os.path.abspath(path))
    write(doc, out_dir)


def write(doc, out_dir):
    """results.md, headline.md and the plots of one run."""
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write(markdown(doc))
    with open(os.path.join(out_dir, "headline.md"), "w") as f:
        f.write(headline(doc))
    plots(doc, out_dir)


if __name__ == "__main__":
    main(sys.argv[1:])
