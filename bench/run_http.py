#!/usr/bin/env python3
"""HTTP scenario: hello-world requests/s, p50/p99 latency and server CPU per request,
measured with wrk (Debian's package), swooletw's HttpServer side by side with
twisted.web, aiohttp, uvicorn (uvloop + httptools), httptools inside a plain Twisted
protocol, and Swoole itself when its PHP extension is built.

Servers (each one process, pinned to --server-cpu, default 0):
  twisted.web             bench/servers/twisted_http.py      Site + leaf Resource (HTTPChannel)
  httptools in Twisted    bench/servers/httptools_twisted.py httptools.HttpRequestParser in a
                                                             plain Protocol (the parser measurement
                                                             of issue 8, next to twisted.web)
  aiohttp                 bench/servers/aiohttp_http.py      aiohttp.web, asyncio loop
  uvicorn                 bench/servers/uvicorn_http.py      bare ASGI app, --loop uvloop
                                                             --http httptools, 1 worker
  swooletw                bench/servers/swooletw_http.py     swooletw.HttpServer(host, port, BASE),
                                                             worker_num 1 (skipped while
                                                             `swooletw.HttpServer` does not import,
                                                             or if the server does not start)
  Swoole                  bench/servers/swoole_http.php      Swoole\\Http\\Server, SWOOLE_BASE,
                                                             worker_num 1 (skipped unless `php`
                                                             loads the swoole extension)
Load: wrk pinned to --load-cpu (default 1), 1 thread, 50 keep-alive connections, GET /,
one request outstanding per connection (no pipelining); a warm-up wrk run, then the
measured wrk run.

Usage (from anywhere):  python3 bench/run_http.py [--quick] [--only NAME] [--out -] ...
See bench/README.md ("HTTP scenario") and `--help`.
"""
import dataclasses
import json
import os
import re
import shlex
import shutil
import signal
import statistics
import socket
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import benchlib  # noqa: E402
from benchlib import (BENCH_DIR, BUILD_DIR, CLK_TCK, LOADGEN_BUSY_PCT, LOG_DIR, PY,  # noqa: E402
                      REPO_ROOT, SERVER_BUSY_PCT, Load, Scenario, ServerSpec, _fmt,
                      error_and_noise_notes, have_module, machine_facts, now_str, free_port,
                      wait_port, snapshot, stop_server, tree_delta, per_process)

SRV = os.path.join(BENCH_DIR, "servers")
BODY = b"Hello World"
WRK = shutil.which("wrk")
WRK_SCRIPT = os.path.join(BUILD_DIR, "wrk_json.lua")
# wrk calls done() once at the end with the summary and the latency histogram (µs).
WRK_LUA = r"""-- written by bench/run_http.py: print wrk's results as one JSON line
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,' ..
    '"write":%d,"status":%d,"timeout":%d,"mean_us":%.1f,"stdev_us":%.1f,"max_us":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency.mean, latency.stdev, latency.max, latency:percentile(50),
    latency:percentile(90), latency:percentile(99), latency:percentile(99.9)))
end
"""

SWOOLETW_ENV = {"PYTHONPATH": REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
SWOOLE_SO = os.environ.get("SWOOLE_SO", "/tmp/anchors/swoole/swoole.so")


def py(script, *extra):
    return ["{python}", os.path.join(SRV, script), "--host", "127.0.0.1", "--port", "{port}",
            *extra]


def swoole_argv():
    """php command line for Swoole: the built extension (build-swoole.sh puts it in
    /tmp/anchors/swoole/swoole.so; $SWOOLE_SO overrides), or one php already loads."""
    php = shutil.which("php") or "php"
    pre = [php] if not os.path.exists(SWOOLE_SO) else [php, "-d", f"extension={SWOOLE_SO}"]
    return pre + [os.path.join(SRV, "swoole_http.php"), "127.0.0.1", "{port}", "1", "base"]


def need_swoole():
    php = shutil.which("php")
    if php is None:
        return ("no `php` on PATH (Swoole is not built here: see "
                "../shared/tools/build-swoole.sh)")
    argv = swoole_argv()
    r = subprocess.run(argv[:-5] + ["-r", "echo phpversion('swoole');"], capture_output=True,
                       text=True, timeout=30)
    if r.returncode != 0 or not r.stdout.strip():
        return (f"php does not load the swoole extension ({SWOOLE_SO} "
                + ("missing" if not os.path.exists(SWOOLE_SO) else "does not load")
                + "; see ../shared/tools/build-swoole.sh)")
    return None


def need_modules(*mods):
    checks = [have_module(m) for m in mods]

    def check():
        for c in checks:
            why = c()
            if why:
                return why
        return None
    return check


UVICORN = "uvicorn"
SERVERS = [
    ServerSpec("twisted.web", py("twisted_http.py"), "http", baseline=UVICORN,
               label="Site + Resource: twisted.web's HTTPChannel parser, epoll reactor"),
    ServerSpec("httptools in Twisted", py("httptools_twisted.py"), "http", baseline=UVICORN,
               requires=have_module("httptools"),
               label="plain Twisted Protocol + httptools.HttpRequestParser, epoll reactor"),
    ServerSpec("aiohttp", py("aiohttp_http.py"), "http", baseline=UVICORN,
               requires=have_module("aiohttp"), label="aiohttp.web, asyncio selector loop"),
    ServerSpec(UVICORN, py("uvicorn_http.py"), "http",
               requires=need_modules("uvicorn", "uvloop", "httptools"),
               label="bare ASGI app, --loop uvloop --http httptools, 1 worker, no access log"),
    ServerSpec("swooletw", py("swooletw_http.py"), "http", baseline=UVICORN,
               env=SWOOLETW_ENV,
               requires=have_module("swooletw", env=SWOOLETW_ENV, probe="swooletw.HttpServer"),
               label="swooletw.HttpServer(host, port, BASE), worker_num 1"),
    ServerSpec("Swoole", swoole_argv(), "http", baseline=UVICORN, requires=need_swoole,
               label="Swoole\\Http\\Server, SWOOLE_BASE, worker_num 1 (PHP)"),
]


# --------------------------------------------------------------------------- HTTP check
def _read_response(sock, buf: bytes, deadline: float):
    """Read one HTTP/1.x response from sock (buf: bytes already read). Returns
    (status, headers dict lower-cased, body, wire bytes, rest of buf)."""
    def more():
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("connection closed by the server")
        return data
    while b"\r\n\r\n" not in buf:
        buf += more()
        if len(buf) > 65536:
            raise ValueError("response head over 64 KiB")
    head, buf = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    m = re.match(r"HTTP/1\.[01] (\d{3})", lines[0])
    if not m:
        raise ValueError(f"bad status line {lines[0]!r}")
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    wire = len(head) + 4
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            while b"\r\n" not in buf:
                buf += more()
            size_line, buf = buf.split(b"\r\n", 1)
            size = int(size_line.split(b";")[0], 16)
            while len(buf) < size + 2:
                buf += more()
            body += buf[:size]
            wire += len(size_line) + 2 + size + 2
            buf = buf[size + 2:]
            if size == 0:
                break
    else:
        n = int(headers.get("content-length", "0"))
        while len(buf) < n:
            buf += more()
        body, buf = buf[:n], buf[n:]
        wire += n
    return int(m.group(1)), headers, body, wire, buf


def check_hello(port: int, timeout: float = 10.0):
    """Two GETs on one keep-alive connection; both must be 200 "Hello World". Returns
    (None, info) or (error string, None). Retries until `timeout` (a server may accept
    before it answers)."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                req = f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
                s.sendall(req)
                buf = b""
                st, hd, body, wire, buf = _read_response(s, buf, time.monotonic() + 3)
                if st != 200 or body != BODY:
                    return f"first response: status {st}, body {body[:60]!r}", None
                if hd.get("connection", "").lower() == "close":
                    return "server closed the HTTP/1.1 connection (no keep-alive)", None
                s.sendall(req)
                st2, _, body2, _, _ = _read_response(s, buf, time.monotonic() + 3)
                if st2 != 200 or body2 != BODY:
                    return f"second keep-alive response: status {st2}, body {body2[:60]!r}", None
                return None, {"response_bytes": wire, "server_header": hd.get("server", ""),
                              "content_type": hd.get("content-type", ""),
                              "framing": ("chunked" if "chunked" in hd.get("transfer-encoding", "")
                                          else "content-length")}
        except (OSError, ValueError) as e:
            last = f"{type(e).__name__}: {e}"
            time.sleep(0.1)
    return f"no valid response within {timeout:.0f} s ({last})", None


# --------------------------------------------------------------------------- wrk
def wrk_cmd(args, port: int, seconds: int) -> list:
    return ["wrk", "-t", str(args.threads), "-c", str(args.conns_), "-d", f"{seconds}s",
            "--timeout", f"{args.wrk_timeout}s", "-s", WRK_SCRIPT, f"http://127.0.0.1:{port}/"]


def run_wrk(cmd: list, cpu: str, cap: float):
    """Run wrk pinned to `cpu`; return (returncode, stdout, stderr, cpu seconds, wall seconds).
    taskset execs wrk, so the child's rusage from wait4 is wrk's own CPU."""
    t0 = time.monotonic()
    p = subprocess.Popen(["taskset", "-c", cpu] + cmd, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    watchdog = threading.Timer(cap, p.kill)   # wrk stops by itself; belt and braces
    watchdog.start()
    out, err = [], []
    readers = [threading.Thread(target=lambda f=f, o=o: o.append(f.read()), daemon=True)
               for f, o in ((p.stdout, out), (p.stderr, err))]
    for t in readers:
        t.start()
    try:
        _, status, ru = os.wait4(p.pid, 0)
    finally:
        watchdog.cancel()
    wall = time.monotonic() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    for t in readers:
        t.join(5)
    return (p.returncode, b"".join(out).decode(errors="replace"),
            b"".join(err).decode(errors="replace"), ru.ru_utime + ru.ru_stime, wall)


def parse_wrk(out: str):
    for line in out.splitlines():
        if line.startswith("WRK_JSON "):
            return json.loads(line[len("WRK_JSON "):])
    return None


def tail(path: str, n: int = 1) -> str:
    try:
        with open(path, errors="replace") as f:
            lines = [ln.strip() for ln in f if ln.strip()]
    except OSError:
        return ""
    return " | ".join(lines[-n:])[-240:]


def run_one(row, args, _loadgen, log_name) -> None:
    spec = row.server
    port = free_port()
    argv = [a.format(port=port, python=PY) for a in spec.argv]
    env = dict(os.environ)
    env.update(spec.env)
    os.makedirs(LOG_DIR, exist_ok=True)
    log_path = os.path.join(LOG_DIR, log_name)
    rel_log = os.path.relpath(log_path, REPO_ROOT)
    with open(log_path, "wb") as log:
        srv = subprocess.Popen(["taskset", "-c", str(spec.server_cpu or args.server_cpu)] + argv,
                               stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                               env=env, cwd=REPO_ROOT)
    try:
        err = wait_port(port, srv, timeout=args.start_timeout)
        if err:
            # a server that does not start is skipped with a note, not a failed run
            row.start_failed = True
            last = tail(log_path)
            row.failed = err + (f": {last}" if last else "") + f" (log: {rel_log})"
            return
        err, info = check_hello(port)
        if err:
            row.failed = f"response check failed: {err} (log: {rel_log})"
            return
        time.sleep(0.1)  # let the probe connections' close settle
        cap = args.warmup + args.duration + 15
        if args.warmup > 0:
            rc, out, errtxt, _, _ = run_wrk(wrk_cmd(args, port, int(args.warmup)),
                                            spec.load_cpu or args.load_cpu, cap)
            if rc != 0 or parse_wrk(out) is None:
                row.failed = f"warm-up wrk exit {rc}: {(errtxt or out).strip()[-200:]}"
                return
            time.sleep(0.1)
        # measured window: from just before wrk starts to just after it exits. Outside
        # wrk's own -d window the server only accepts and closes the connections.
        cmd = wrk_cmd(args, port, int(args.duration))
        a = snapshot(srv.pid)
        rc, out, errtxt, wrk_cpu, wall = run_wrk(cmd, spec.load_cpu or args.load_cpu, cap)
        b = snapshot(srv.pid)
        w = parse_wrk(out)
        if rc != 0 or w is None:
            row.failed = f"wrk exit {rc}: {(errtxt or out).strip()[-200:]}"
            return
        if not w["requests"]:
            row.failed = f"no requests completed: {out.strip()[-200:]}"
            return
        secs = w["duration_us"] / 1e6
        d = tree_delta(a, b)
        res = dict(w)
        res.update(info)
        res["msgs"] = w["requests"]
        res["seconds"] = secs
        res["msgs_per_s"] = w["requests"] / secs
        res["errors"] = w["connect"] + w["read"] + w["write"] + w["status"] + w["timeout"]
        res["conns_alive"] = args.conns_   # wrk does not report it; errors cover lost ones
        res["window_s"] = wall
        res["server_cpu_s"] = d["cpu"] / CLK_TCK
        res["server_user_s"] = d["user"] / CLK_TCK
        res["server_cpu_pct"] = 100.0 * res["server_cpu_s"] / wall
        res["server_minflt"] = d["minflt"]
        res["server_procs"] = b["pids"]
        res["server_by_process"] = per_process(a, b, wall)
        res["loadgen_cpu_s"] = wrk_cpu
        res["loadgen_cpu_pct"] = 100.0 * wrk_cpu / wall
        busy = (b["busy"] - a["busy"]) / CLK_TCK
        res["machine_cpu_pct"] = 100.0 * busy / wall
        res["other_cpu_pct"] = 100.0 * (busy - res["server_cpu_s"] - wrk_cpu) / wall
        res["wrk_cmd"] = shlex.join(["taskset", "-c", spec.load_cpu or args.load_cpu]
                                    + [os.path.relpath(c, REPO_ROOT) if c == WRK_SCRIPT else c
                                       for c in cmd])
        res["wrk_stderr"] = errtxt.strip()[-500:]
        if srv.poll() is not None:
            res["server_exited"] = srv.returncode
        row.result = res
    finally:
        stop_server(srv)


# --------------------------------------------------------------------------- report
def tool_versions() -> list:
    code = ("import importlib.metadata as m\n"
            "for n in ('aiohttp', 'uvicorn', 'uvloop', 'httptools'):\n"
            "    try: print(n, m.version(n))\n"
            "    except Exception: print(n, 'not installed')\n")
    r = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=60)
    out = [tuple(line.split(" ", 1)) for line in r.stdout.splitlines() if " " in line]
    wrk = "not installed"
    if WRK:
        v = subprocess.run([WRK, "--version"], capture_output=True, text=True, timeout=10)
        m = re.search(r"wrk (\S+)", v.stdout + v.stderr)
        wrk = m.group(1) if m else "?"
    return [("wrk", wrk)] + out


def _median(values):
    return statistics.median(values) if values else None


def render(scenario, rows, args, command, started, elapsed):
    runs = getattr(args, "runs", 1)
    lines = [f"## {scenario.title}" + (" (quick)" if args.quick else ""), ""]
    lines += [f"Command (from the repo root): `{command}`", "",
              f"Date: {started}; wall time {elapsed:.0f} s; measured window {args.duration:g} s "
              f"after a {args.warmup:g} s warm-up wrk run per server"
              + (f", {runs} rounds (every server once per round)" if runs > 1 else "")
              + f"; server on CPU {args.server_cpu}, wrk on CPU {args.load_cpu}.", ""]
    facts = machine_facts()
    at_start = getattr(args, "repo_at_start", None)
    facts = [(k, f"{at_start} at start, {v} at the end" if k == "repo" and at_start
              and at_start != v else v) for k, v in facts]
    lines += ["Machine: " + "; ".join(f"{k} {v}" for k, v in facts + tool_versions()), ""]
    lines += [scenario.notes.strip(), ""]
    example = next((r.result["wrk_cmd"] for r in rows if r.result), None)
    if example:
        lines += [f"Measured run (per server, its own port): `{example}`", ""]
    groups = {}
    for r in rows:
        groups.setdefault(getattr(r.server, "base_name", r.server.name), []).append(r)
    hdr = ["server"] + (["runs"] if runs > 1 else []) + [
        "requests/s", "p50 µs", "p99 µs",
        "server CPU µs/req" + (" (median, min–max)" if runs > 1 else ""), "of which user",
        "server CPU %", "wrk CPU %", "response B", "CPU vs uvicorn"]
    lines += ["| " + " | ".join(hdr) + " |", "|---|" + "---:|" * (len(hdr) - 1)]
    notes = []
    med = {}
    for name, grp in groups.items():
        done = [r for r in grp if r.result]
        if done:
            med[name] = _median([r.us_per_msg for r in done])
    base = med.get(UVICORN)
    for name, grp in groups.items():
        done = [r for r in grp if r.result]
        for r in grp:
            if r.failed:
                notes.append(f"{r.server.name}: FAILED: {r.failed}")
        if not done:
            why = (f"skipped: {grp[0].skipped}" if grp[0].skipped
                   else f"FAILED: {grp[0].failed}")
            lines.append(f"| {name} | {why.replace('|', '/')} |" + " |" * (len(hdr) - 2))
            continue

        def m(key):
            return _median([float(r.result[key]) for r in done])
        cpu = med[name]
        cpu_cell = f"**{cpu:.2f}**"
        if len(done) > 1:
            us = [r.us_per_msg for r in done]
            cpu_cell += f" ({min(us):.2f}–{max(us):.2f})"
        ratio = (f"{cpu / base:.2f}×" if base and name != UVICORN else
                 ("1.00×" if name == UVICORN else ""))
        lines.append("| " + " | ".join(
            [name] + ([f"{len(done)}/{len(grp)}"] if runs > 1 else []) + [
                _fmt(m("msgs_per_s"), 0), _fmt(m("p50_us"), 0), _fmt(m("p99_us"), 0), cpu_cell,
                _fmt(_median([r.user_us_per_msg for r in done]), 2),
                _fmt(m("server_cpu_pct"), 0), _fmt(m("loadgen_cpu_pct"), 0),
                str(done[0].result["response_bytes"]), ratio]) + " |")
        for r in done:
            x, where = r.result, r.server.name
            if x["errors"]:
                notes.append(f"{where}: wrk errors: connect {x['connect']}, read {x['read']}, "
                             f"write {x['write']}, timeout {x['timeout']}, non-2xx {x['status']}")
            notes.extend(error_and_noise_notes(where, {**x, "errors": 0}, args.conns_,
                                               args.duration))
            if x["loadgen_cpu_pct"] > LOADGEN_BUSY_PCT:
                notes.append(f"{where}: wrk used {x['loadgen_cpu_pct']:.0f}% of its CPU, it may "
                             "have limited the rate (CPU µs/req is still valid)")
            if x["server_cpu_pct"] < SERVER_BUSY_PCT and x["loadgen_cpu_pct"] < LOADGEN_BUSY_PCT:
                notes.append(f"{where}: neither the server ({x['server_cpu_pct']:.0f}%) nor wrk "
                             f"({x['loadgen_cpu_pct']:.0f}%) saturated its CPU: disturbed or "
                             "latency-bound row")
            if x.get("server_procs", 1) > 1:
                notes.append(f"{where}: {x['server_procs']} server processes, CPU summed over "
                             "all")
            if "server_exited" in x:
                notes.append(f"{where}: server exited ({x['server_exited']}) during the run")
    if runs > 1:
        per = [f"{name}: " + ", ".join(_fmt(r.us_per_msg, 2) if r.result else "–" for r in grp)
               for name, grp in groups.items() if any(r.result for r in grp)]
        lines += ["", "Server CPU µs/req per round: " + "; ".join(per) + "."]
    summary = []
    tw, ht = med.get("twisted.web"), med.get("httptools in Twisted")
    if tw and ht:
        rate = {n: _median([r.result["msgs_per_s"] for r in groups[n] if r.result])
                for n in ("twisted.web", "httptools in Twisted")}
        summary.append(
            f"Parser (issue 8, point 8): twisted.web's HTTPChannel {tw:.2f} µs/req vs "
            f"httptools in a plain Twisted protocol {ht:.2f} µs/req ({ht / tw:.2f}×, "
            f"{rate['httptools in Twisted'] / rate['twisted.web']:.2f}× the requests/s).")
    sw = med.get("swooletw")
    if sw and base:
        verdict = "below" if sw < base else "NOT below"
        summary.append(f"swooletw {sw:.2f} µs/req vs uvicorn {base:.2f} µs/req "
                       f"({sw / base:.2f}×): {verdict} uvicorn's server CPU per request in this "
                       "run" + (" (medians)." if runs > 1 else "."))
    if summary:
        lines += [""] + summary
    if notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in dict.fromkeys(notes)]
    return "\n".join(lines) + "\n"


NOTES = (
    "Hello world over HTTP/1.1: `GET /` on 50 keep-alive connections, one request "
    "outstanding per connection (wrk does not pipeline), every server one process and one "
    "worker answering `Hello World` (11 bytes) with `Content-Length`, access logs off. "
    "Before measuring, the runner checks that two requests on one connection are both "
    "answered 200 `Hello World`. *requests/s*, *p50*, *p99*: wrk's (latency from writing "
    "a request to reading its whole response). *server CPU µs/req* = utime+stime of the "
    "server process (and any children) from /proc over the measured wrk run ÷ requests it "
    "completed; loopback TCP work done in the server's syscalls is included, as for every "
    "row. *response B*: bytes of one response on the wire (headers differ by server). "
    "*CPU vs uvicorn* = µs/req ÷ uvicorn's in this run (< 1: less CPU per request). "
    "Servers: twisted.web = Site + leaf Resource (its HTTPChannel parser); httptools in "
    "Twisted = a plain Protocol feeding httptools.HttpRequestParser (URL and headers "
    "collected, Content-Length response, keep-alive), the parser measurement of issue 8; "
    "aiohttp = aiohttp.web on the asyncio loop (its C parser); uvicorn = bare ASGI app with "
    "`--loop uvloop --http httptools`; swooletw = `HttpServer(host, port, BASE)`, "
    "worker_num 1; Swoole = `Swoole\\Http\\Server` in SWOOLE_BASE with worker_num 1."
)

SCENARIO = Scenario(
    key="http",
    title="HTTP hello world: swooletw vs twisted.web, httptools in Twisted, aiohttp, uvicorn",
    servers=SERVERS,
    loads=[Load(0, 1, 50)],
    notes=NOTES,
    render=render,
    run_one=run_one,
    row_overhead=4.0,
)


def add_args(ap):
    ap.add_argument("--threads", type=int, default=1, help="wrk threads (default 1: one CPU)")
    ap.add_argument("--wrk-timeout", type=int, default=5,
                    help="wrk --timeout seconds (a slower response counts as an error; default 5)")
    ap.add_argument("--start-timeout", type=float, default=20.0,
                    help="seconds to wait for a server's port (default 20)")
    ap.add_argument("--runs", type=int, default=1,
                    help="measure every server N times, in N rounds (all servers once per "
                         "round); the table then shows medians and the range (default 1)")


def main(argv=None) -> int:
    args = benchlib.parse_args(SCENARIO, argv, add_args)
    # wrk takes whole seconds: --quick is 1 s warm-up + 2 s measured
    if args.quick and args.duration == 1.5:
        args.duration = 2.0
    if args.quick and args.warmup == 0.5:
        args.warmup = 1.0
    if args.duration != int(args.duration) or args.warmup != int(args.warmup):
        sys.exit("run_http.py: --duration and --warmup must be whole seconds (wrk's -d)")
    args.conns_ = args.conns or 50
    if args.sizes or args.inflight:
        sys.exit("run_http.py: --sizes/--inflight do not apply (use --conns)")
    if args.runs < 1:
        sys.exit("run_http.py: --runs must be >= 1")
    rows = benchlib.plan(SCENARIO, args)
    if args.runs > 1:  # rounds: every server once per round, so drift hits all alike
        rounds = []
        for k in range(1, args.runs + 1):
            for r in rows:
                spec = dataclasses.replace(r.server, name=f"{r.server.name} #{k}")
                spec.base_name = r.server.name
                rounds.append(benchlib.Row(spec, r.load))
        rows = rounds
    if args.list:
        benchlib.list_rows(rows)
        return 0
    if WRK is None:
        sys.exit("run_http.py: wrk not found (Debian: apt-get install -y wrk)")
    if args.server_cpu == args.load_cpu:
        print(f"warning: server and wrk share CPU {args.server_cpu}", file=sys.stderr)
    os.makedirs(BUILD_DIR, exist_ok=True)
    with open(WRK_SCRIPT, "w") as f:
        f.write(WRK_LUA)
    started = now_str()
    args.repo_at_start = benchlib.git_info()
    t0 = time.monotonic()
    command = benchlib.command_line(argv)
    benchlib.run_rows(SCENARIO, rows, args, None, t0)
    for r in rows:  # a server that does not start is reported as skipped, with the reason
        if getattr(r, "start_failed", False) and not r.result:
            r.skipped, r.failed = f"did not start: {r.failed}", None
    elapsed = time.monotonic() - t0
    benchlib.report(SCENARIO, rows, args, command, started, elapsed)
    return 1 if any(r.failed for r in rows) else 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(143))  # run the finally: stop servers
    sys.exit(main())
