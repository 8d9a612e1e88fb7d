"""Turn a load test's results.json document into markdown and PNG plots.

    python report.py results/2026-01-01/results.json   # rewrite results.md and the PNGs

Used by harness.py at the end of a run; runnable alone to redo the report
of an earlier run.
"""

import json
import os
import sys

BASELINE = "gunicorn-sync"
CONN_TITLE = {"keep-alive": "keep-alive", "close": "Connection: close"}
# Order of the rows; servers a run did not have are skipped.
SERVER_ORDER = ["ferrocorn-uring", "ferrocorn-epoll", "gunicorn-sync", "gunicorn-gthread",
                "granian", "granian-st", "bjoern", "nginx"]
COLOURS = {
    "ferrocorn-uring": "#d62728",
    "ferrocorn-epoll": "#ff9896",
    "gunicorn-sync": "#1f77b4",
    "gunicorn-gthread": "#aec7e8",
    "granian": "#2ca02c",
    "granian-st": "#98df8a",
    "bjoern": "#9467bd",
    "nginx": "#7f7f7f",
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
    noise = noise_summary(doc)
    if noise:
        out.append(noise + "\n")
    out.append(
        "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if val) +
        f"; ferrocorn commit {m.get('ferrocorn_commit')}.\n")
    out.append(
        "Columns: **req/s** from wrk; **p50/p99** wrk latency; **CPU µs/req** = the server's CPU "
        "time (utime+stime of its whole process tree, from /proc) during the run divided by the "
        "requests served; **CPU** = that CPU time over the run's wall time (100 % = the server's "
        f"core was saturated; below that the load generator was the limit); **vs {BASELINE}** = "
        "req/s ratio and CPU-per-request ratio to gunicorn sync in the same table; **others on "
        "cores** = the share of the server's core / wrk's core that other processes (and the "
        "hypervisor's steal) took during the run, a measure of the noise.\n")

    out.append("## Summary\n")
    out.extend(summary(doc))

    out.append("\n## Requests per second (overview)\n")
    out.extend(overview(doc, "rps", lambda r: f"{r['rps']:,.0f}"))
    out.append("\n## Server CPU µs per request (overview)\n")
    out.extend(overview(doc, "cpu", lambda r: f"{r['server_cpu_us_per_req']:,.1f}"))

    for cell in cells(doc):
        out.append(f"\n## {cell_title(doc, cell)}\n")
        base = find(doc, cell, BASELINE)
        out.append(f"| server | req/s | p50 ms | p99 ms | CPU µs/req | CPU | req/s vs {BASELINE} "
                   f"| CPU/req vs {BASELINE} | others on cores |")
        out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for r in rows(doc, cell):
            if not r.get("valid"):
                why = "; ".join(r.get("problems", []))[:160].replace("|", "/").replace("\n", " ")
                if r.get("rps"):
                    why += f" (measured {r['rps']:,.0f} req/s, not counted)"
                out.append(f"| {r['server']} | failed: {why} | | | | | | | |")
                continue
            lat = r["latency_ms"]
            out.append(
                f"| {r['server']} | {r['rps']:,.0f} | {lat['p50']:.2f} | {lat['p99']:.2f} "
                f"| {r['server_cpu_us_per_req']:,.1f} | {r['server_cpu_util'] * 100:.0f} % "
                f"| {fmt_ratio(ratio(r['rps'], base and base['rps']))} "
                f"| {fmt_ratio(ratio(r['server_cpu_us_per_req'], base and base['server_cpu_us_per_req']))} "
                f"| {fmt_noise(r.get('noise'))} |")

    ip = doc.get("in_process") or {}
    if ip:
        out.append("\n## In-process ceiling\n")
        out.append("The app's callable called in a loop in one process pinned to the server CPU "
                   "(fresh environ per call, body iterated, close() called): no server, no socket.\n")
        out.append("| app | calls/s | µs/call (wall) | CPU µs/call |")
        out.append("|---|---:|---:|---:|")
        for name, c in ip.items():
            if "error" in c:
                out.append(f"| {name} | failed: {c['error'][:120]!r} | | |")
            else:
                out.append(f"| {name} | {c['calls_per_s']:,.0f} | {c['us_per_call']:.2f} "
                           f"| {c['cpu_us_per_call']:.2f} |")

    bad = [r for r in doc["results"] if not r.get("valid")]
    if bad:
        out.append("\n## Failed runs\n")
        for r in bad:
            out.append(f"* {r['server']} {r['scenario']} w{r['workers']} {r['conn']}: "
                       + "; ".join(r.get("problems", [])).replace("\n", " ")[:400])
    out.append("")
    return "\n".join(out)


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
    for r in doc["results"]:
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
    ip = doc.get("in_process") or {}

    def get(scen, w, conn, server, key):
        r = find(doc, (scen, w, conn), server)
        return r[key] if r else None

    for engine in ("ferrocorn-uring", "ferrocorn-epoll"):
        parts = []
        rps = get("hello", 1, "keep-alive", engine, "rps")
        cpu = get("hello", 1, "keep-alive", engine, "server_cpu_us_per_req")
        if rps is not None:
            for peer, key, label in [
                ("nginx", "rps", "req/s vs nginx `return 200` (target >= 0.95x)"),
                ("gunicorn-sync", "rps", "req/s vs gunicorn sync (target >= 30x)"),
            ]:
                r = ratio(rps, get("hello", 1, "keep-alive", peer, key))
                if r is not None:
                    parts.append(f"{label}: **{fmt_ratio(r)}**")
            for peer, target in [("bjoern", "0.75x"), ("granian", "0.4x"), ("granian-st", "0.4x")]:
                r = ratio(cpu, get("hello", 1, "keep-alive", peer, "server_cpu_us_per_req"))
                if r is not None:
                    parts.append(f"CPU/req vs {peer} (target <= {target}): **{fmt_ratio(r)}**")
        if parts:
            lines.append(f"* {engine}, hello-world, 1 worker, keep-alive: " + "; ".join(parts) + ".")
        flask = find(doc, ("flask", 1, "keep-alive"), engine)
        c = ip.get("flask")
        if flask and c and "calls_per_s" in c:
            pct_rps = 100 * flask["rps"] / c["calls_per_s"]
            pct_cpu = 100 * c["cpu_us_per_call"] / flask["server_cpu_us_per_req"]
            # A server cannot beat the app alone: if it seems to, the machine
            # was busier while the ceiling ran than during the server's run.
            if (c["cpu_us_per_call"] >= flask["server_cpu_us_per_req"]
                    or flask["rps"] >= c["calls_per_s"]):
                lines.append(
                    f"* {engine}, Flask hello, 1 worker, keep-alive: **no valid comparison with "
                    f"the in-process ceiling in this run**: the app alone measured "
                    f"{c['calls_per_s']:,.0f} calls/s and {c['cpu_us_per_call']:.1f} CPU µs per call, "
                    f"against the server's {flask['rps']:,.0f} req/s and "
                    f"{flask['server_cpu_us_per_req']:.1f} CPU µs per request (which include the "
                    f"app): the machine was busier while the ceiling ran than during the server's run.")
                continue
            lines.append(
                f"* {engine}, Flask hello, 1 worker, keep-alive: {flask['rps']:,.0f} req/s = "
                f"**{pct_rps:.0f} %** of the in-process ceiling ({c['calls_per_s']:,.0f} calls/s; "
                f"target >= 90 %). By CPU, which a busy machine disturbs less: the app alone costs "
                f"{c['cpu_us_per_call']:.1f} µs per call, **{pct_cpu:.0f} %** of the server's "
                f"{flask['server_cpu_us_per_req']:.1f} µs per request.")
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
        lines.append("* io_uring vs epoll (target: never slower): " + "; ".join(wins) + ".")
    if not lines:
        lines.append("* (no cell of this run has the figures the design targets)")
    return lines


def plots(doc, out_dir):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write(markdown(doc))
    plots(doc, out_dir)


if __name__ == "__main__":
    main(sys.argv[1:])
