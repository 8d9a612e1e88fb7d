"""The `h2` probe: HTTP/2 hello against granian's and gunicorn 27's HTTP/2.

Each server runs one worker pinned to the server core, serving
wsgi_apps:hello over cleartext HTTP/2 with prior knowledge (h2c) and over
TLS (h2 by ALPN, a self-signed certificate made with openssl for the run):

* ferrocorn: `--http-protocols h2,h1` and `--http2-cleartext prior-knowledge`
  (or `--certfile/--keyfile`), io_uring;
* granian: `--interface wsgi --http 2` (or `--ssl-certificate/--ssl-keyfile`);
* gunicorn: `-k gthread --threads 50` with gunicorn's own HTTP/2 settings
  (its sync worker does not serve HTTP/2, and a gthread worker gives each
  connection a thread, so it needs one per client connection).

h2load (Debian's nghttp2-client), pinned to the client core, opens 50
connections with 10 streams each (`-c 50 -m 10`): a warm-up of 2,000
requests gives the server's rate, then the measured run asks for as many
requests as that rate serves in `--h2-seconds` (h2load's own duration mode
hangs at its end against gunicorn over TLS). All servers of a transport are up at once and measured in
turn, the order reversed every other round, for `--h2-rounds` rounds; the
medians of req/s and of the server's CPU per request are reported, with
ferrocorn's ratios to each peer.
"""
import os
import re
import statistics
import subprocess
import tempfile
import time

import harness as H

SERVERS = ("ferrocorn", "granian", "gunicorn")
APP = "wsgi_apps:hello"


def argv(name, port, tls):
    bind = f"{H.HOST}:{port}"
    if name == "ferrocorn":
        extra = (["--certfile", tls[0], "--keyfile", tls[1]] if tls
                 else ["--http2-cleartext", "prior-knowledge"])
        return [f"{H.VENV_BIN}/ferrocorn", "-w", "1", "-b", bind, "--io-engine", "uring",
                "--chdir", H.APPS, "--http-protocols", "h2,h1", *extra, APP]
    if name == "granian":
        extra = ["--ssl-certificate", tls[0], "--ssl-keyfile", tls[1]] if tls else []
        return [f"{H.VENV_BIN}/granian", "--interface", "wsgi", "--http", "2", "--host", H.HOST,
                "--port", str(port), "--workers", "1", "--working-dir", H.APPS, *extra, APP]
    if name == "gunicorn":
        extra = (["--certfile", tls[0], "--keyfile", tls[1]] if tls
                 else ["--http2-cleartext", "prior-knowledge"])
        return [f"{H.VENV_BIN}/gunicorn", "-k", "gthread", "--threads", "50", "-w", "1", "-b", bind,
                "--chdir", H.APPS, "--no-control-socket", "--http-protocols", "h2,h1", *extra, APP]
    raise ValueError(name)


def certificate(tmp):
    """A self-signed certificate for 127.0.0.1: (certfile, keyfile)."""
    cert, key = os.path.join(tmp, "h2-cert.pem"), os.path.join(tmp, "h2-key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", key, "-out", cert], check=True, capture_output=True, timeout=60)
    return cert, key


def h2load(url, args, requests, timeout=120):
    """One h2load run of `requests` from the client core: {rps, requests, failed}."""
    cmd = ["taskset", "-c", str(args.client_cpu), "h2load", "-c", "50", "-m", "10",
           "-n", str(requests), url]
    p = subprocess.run(cmd, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
    out = p.stdout.decode("utf-8", "replace")
    done = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, "
                     r"(\d+) failed, (\d+) errored", out)
    rate = re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", out)
    proto = re.search(r"Application protocol: (\S+)", out)
    if proto and proto.group(1) not in ("h2", "h2c"):
        raise H.CheckFailed(f"the server answered {proto.group(1)}, not h2")
    if not done or not rate:
        raise H.CheckFailed(f"h2load exited {p.returncode} without a result:\n{out[-600:]}"
                            f"{p.stderr.decode('utf-8', 'replace')[-400:]}")
    return {"rps": float(rate.group(1)), "requests": int(done.group(3)),
            "failed": int(done.group(4)) + int(done.group(5))}


def start(name, tls, args, running, tmp):
    port = H.free_port()
    log = os.path.join(tmp, f"h2-{name}-{'tls' if tls else 'h2c'}.log")
    cmd = ["taskset", "-c", str(args.server_cpu)] + argv(name, port, tls)
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=H.APPS, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, env=H.server_env(),
                                start_new_session=True)
    running.add(proc)
    url = f"{'https' if tls else 'http'}://{H.HOST}:{port}/"
    deadline = time.monotonic() + args.start_timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise H.CheckFailed(f"{name} exited with {proc.returncode}:\n{H.log_tail(log)}")
        try:
            r = h2load(url, args, requests=100)
            if r["requests"] == 100 and not r["failed"]:
                return proc, url
            last = f"{r['failed']} of 100 failed"
        except (OSError, subprocess.SubprocessError, H.CheckFailed) as e:
            last = str(e)[-300:]
        time.sleep(0.2)
    raise H.CheckFailed(f"{name} did not answer HTTP/2 within {args.start_timeout:.0f}s "
                        f"({last}):\n{H.log_tail(log)}")


def measure(proc, url, args):
    warm = h2load(url, args, 2000)
    n = max(2000, int(warm["rps"] * args.h2_seconds))
    user0, sys0, _, _ = H.tree_cpu(proc.pid)
    r = h2load(url, args, n, timeout=args.h2_seconds * 10 + 60)
    user1, sys1, _, _ = H.tree_cpu(proc.pid)
    cpu = (user1 - user0) + (sys1 - sys0)
    r["server_cpu_us_per_req"] = round(cpu / r["requests"] * 1e6, 2) if r["requests"] else None
    r["valid"] = r["requests"] > 0 and r["failed"] <= 0.01 * r["requests"] and proc.poll() is None
    return r


def probe(args, running, tmp):
    out = {"connections": 50, "streams_per_connection": 10, "seconds": args.h2_seconds,
           "rounds": args.h2_rounds, "transports": {}}
    ctmp = tempfile.mkdtemp(prefix="h2-", dir=tmp)
    cert = certificate(ctmp)
    for transport, tls in (("h2c", None), ("tls", cert)):
        procs, errors = {}, {}
        try:
            for name in SERVERS:
                try:
                    procs[name] = start(name, tls, args, running, ctmp)
                except (OSError, subprocess.SubprocessError, H.CheckFailed) as e:
                    errors[name] = f"{type(e).__name__}: {str(e)[-600:]}"
            runs = {name: [] for name in procs}
            for i in range(args.h2_rounds):
                order = list(procs) if i % 2 == 0 else list(procs)[::-1]
                for name in order:
                    proc, url = procs[name]
                    try:
                        r = measure(proc, url, args)
                    except (OSError, subprocess.SubprocessError, H.CheckFailed) as e:
                        r = {"valid": False, "error": str(e)[-300:]}
                    r["round"] = i + 1
                    runs[name].append(r)
                    print(f"  h2 {transport} round {i + 1} {name:10} "
                          + (f"{r['rps']:>10.0f} req/s, cpu {r['server_cpu_us_per_req']:.1f} us/req"
                             if r["valid"] else f"FAIL {r.get('error') or r}"), flush=True)
        finally:
            for proc, _ in procs.values():
                running.stop(proc)
        servers = {}
        for name in SERVERS:
            if name in errors:
                servers[name] = {"error": errors[name]}
                continue
            good = [r for r in runs[name] if r["valid"]]
            if not good:
                servers[name] = {"error": "no valid run", "runs": runs[name]}
                continue
            servers[name] = {
                "rps": statistics.median_low(r["rps"] for r in good),
                "server_cpu_us_per_req": statistics.median_low(
                    r["server_cpu_us_per_req"] for r in good),
                "runs": runs[name],
            }
        ratios = {}
        f = servers.get("ferrocorn", {})
        for peer in ("granian", "gunicorn"):
            p = servers.get(peer, {})
            if "rps" in f and "rps" in p:
                ratios[peer] = {"rps": round(f["rps"] / p["rps"], 2),
                                "cpu": round(f["server_cpu_us_per_req"] / p["server_cpu_us_per_req"], 2)}
        out["transports"][transport] = {"servers": servers, "ferrocorn_vs": ratios}
    return out


def one_line(data):
    parts = []
    for transport, t in data.get("transports", {}).items():
        for peer, r in t["ferrocorn_vs"].items():
            parts.append(f"{transport} vs {peer} {r['rps']:.2f}x req/s, {r['cpu']:.2f}x CPU/req")
        for name, s in t["servers"].items():
            if "error" in s:
                parts.append(f"{transport} {name} failed: {s['error'][:160]}")
    return "; ".join(parts) or "no result"

