"""Shared machinery for the bench/ scenario runners (stdlib only).

A scenario is a list of server commands (ServerSpec) crossed with a list of
load parameters (Load). For every (load, server) pair the runner:

  1. picks a free loopback port (bind to port 0),
  2. starts the server pinned with ``taskset -c <server-cpu>`` and waits until
     the port accepts connections,
  3. runs bench/build/loadgen pinned with ``taskset -c <load-cpu>``,
  4. snapshots the server's CPU time (utime+stime from /proc/PID/stat, summed
     over the server process and all its descendants) when loadgen prints
     MEASURE_START and again when it prints MEASURE_END on stderr, i.e. exactly
     around loadgen's measured window,
  5. stops the server: SIGTERM, then SIGKILL after 3 s, by PID (descendants
     that survive their parent are SIGKILLed by PID too).

To add a scenario, write a small bench/run_<name>.py that builds a Scenario
and calls ``main(scenario)`` (see run_echo.py).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(BENCH_DIR)
BUILD_DIR = os.path.join(BENCH_DIR, "build")
LOG_DIR = os.path.join(BUILD_DIR, "logs")
LOADGEN_SRC = os.path.join(BENCH_DIR, "loadgen.c")
LOADGEN_BIN = os.path.join(BUILD_DIR, "loadgen")
CLK_TCK = os.sysconf("SC_CLK_TCK")
PY = sys.executable or "python3"
LOADGEN_BUSY_PCT = 90.0   # flag rows where the load tool was close to saturating its CPU
OTHER_BUSY_PCT = 10.0     # flag (and retry) rows where something else used this much of a CPU
                          # (+ 6/duration % for the 10 ms tick granularity of /proc, see noisy())
SERVER_BUSY_PCT = 90.0    # a single-process server should saturate its CPU
QUIET_PCT = 15.0          # before a row, wait (bounded) until the machine is this idle


# --------------------------------------------------------------------------- specs
@dataclass
class ServerSpec:
    """One server command. ``argv`` may contain "{port}" and "{python}"."""

    name: str                      # row label, also what --only matches
    argv: list
    framing: str                   # eof | length (passed to loadgen)
    baseline: Optional[str] = None  # name of the ServerSpec this row is compared with
    requires: Optional[Callable[[], Optional[str]]] = None  # -> skip reason or None
    env: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Load:
    size: int          # total bytes of one packet on the wire, framing included
    inflight: int      # packets outstanding per connection
    conns: int = 50


@dataclass
class Scenario:
    key: str           # section id in RESULTS.md
    title: str
    servers: list
    loads: list
    quick_loads: Optional[list] = None
    ratio_title: str = "CPU vs baseline"
    notes: str = ""    # Markdown paragraph printed above the table


@dataclass
class Row:
    server: ServerSpec
    load: Load
    result: Optional[dict] = None   # loadgen JSON + server_cpu_s etc.
    skipped: Optional[str] = None   # reason
    failed: Optional[str] = None    # reason

    @property
    def us_per_msg(self):
        r = self.result
        if not r or not r.get("msgs"):
            return None
        return r["server_cpu_s"] * 1e6 / r["msgs"]

    @property
    def user_us_per_msg(self):
        r = self.result
        if not r or not r.get("msgs"):
            return None
        return r["server_user_s"] * 1e6 / r["msgs"]


# --------------------------------------------------------------------------- helpers
def build_loadgen(force: bool = False) -> str:
    os.makedirs(BUILD_DIR, exist_ok=True)
    if (force or not os.path.exists(LOADGEN_BIN)
            or os.path.getmtime(LOADGEN_BIN) < os.path.getmtime(LOADGEN_SRC)):
        cmd = ["gcc", "-O2", "-Wall", "-o", LOADGEN_BIN, LOADGEN_SRC, "-lm"]
        print("+ " + shlex.join(cmd), file=sys.stderr)
        subprocess.run(cmd, check=True, timeout=120)
    return LOADGEN_BIN


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 15.0) -> Optional[str]:
    """Wait until 127.0.0.1:port accepts. Returns an error string or None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"server exited with status {proc.returncode} before listening"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return None
        except OSError:
            time.sleep(0.05)
    return f"server did not accept on port {port} within {timeout:.0f} s"


def _read_stat(pid: int):
    """(ppid, utime+stime ticks, starttime, minflt, utime ticks) of pid, or None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2:].split()
    # fields[0] is field 3 (state); ppid=4, minflt=10, utime=14, stime=15, starttime=22
    return (int(fields[1]), int(fields[11]) + int(fields[12]), int(fields[19]), int(fields[7]),
            int(fields[11]))


def process_tree(root: int) -> dict:
    """{pid: (cpu_ticks, starttime, minflt, user_ticks)} for root and all its descendants."""
    stats = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = _read_stat(int(name))
            if st is not None:
                stats[int(name)] = st
    tree, todo = {}, [root]
    children = {}
    for pid, st in stats.items():
        children.setdefault(st[0], []).append(pid)
    while todo:
        pid = todo.pop()
        if pid in stats and pid not in tree:
            tree[pid] = stats[pid][1:]
            todo.extend(children.get(pid, ()))
    return tree


def system_busy_ticks() -> int:
    """Non-idle jiffies of all CPUs (/proc/stat 'cpu' line, idle and iowait excluded)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal [guest guest_nice: already in user]
    return v[0] + v[1] + v[2] + v[5] + v[6] + v[7]


def machine_busy_pct(interval: float = 0.3) -> float:
    """CPU used by everything on the machine over `interval`, in % of one CPU."""
    a = system_busy_ticks()
    time.sleep(interval)
    return 100.0 * (system_busy_ticks() - a) / CLK_TCK / interval


def wait_quiet(max_wait: float) -> float:
    """Wait up to max_wait s until the machine is (nearly) idle; return last busy %."""
    deadline = time.monotonic() + max_wait
    while True:
        busy = machine_busy_pct()
        if busy <= QUIET_PCT or time.monotonic() >= deadline:
            return busy
        time.sleep(0.5)


def snapshot(root: int) -> dict:
    """Server CPU ticks + minor faults (process tree) and system-wide busy ticks."""
    tree = process_tree(root)
    return {"cpu": sum(t[0] for t in tree.values()), "minflt": sum(t[2] for t in tree.values()),
            "user": sum(t[3] for t in tree.values()),
            "busy": system_busy_ticks(), "pids": len(tree)}


def stop_server(proc: subprocess.Popen, grace: float = 3.0) -> None:
    """SIGTERM, then SIGKILL after `grace` s, by PID; then kill surviving descendants."""
    if proc.poll() is not None:
        return
    tree = process_tree(proc.pid)
    try:
        proc.send_signal(signal.SIGTERM)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
    deadline = time.monotonic() + grace
    for pid, (_, start, *_) in tree.items():
        if pid == proc.pid:
            continue
        while time.monotonic() < deadline:
            st = _read_stat(pid)
            if st is None or st[2] != start:
                break
            time.sleep(0.05)
        st = _read_stat(pid)
        if st is not None and st[2] == start:  # same process, still there
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def git_info() -> str:
    try:
        head = subprocess.run(["git", "-C", REPO_ROOT, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, timeout=10)
        rev = head.stdout.strip() if head.returncode == 0 else "no commits"
        dirty = subprocess.run(["git", "-C", REPO_ROOT, "status", "--porcelain", "--", "swooletw"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return rev + (" (swooletw/ has uncommitted changes)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine_facts() -> list:
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    twisted = subprocess.run([PY, "-c", "import twisted; print(twisted.__version__)"],
                             capture_output=True, text=True, timeout=30).stdout.strip() or "not installed"
    gcc = subprocess.run(["gcc", "-dumpfullversion"], capture_output=True, text=True,
                         timeout=30).stdout.strip()
    return [
        ("nproc", str(os.cpu_count())),
        ("CPU", model),
        ("kernel", platform.release()),
        ("Python", platform.python_version() + f" ({PY})"),
        ("Twisted", twisted),
        ("gcc", gcc),
        ("repo", git_info()),
    ]


def have_module(mod: str, env: Optional[dict] = None, probe: str = "") -> Callable[[], Optional[str]]:
    """A ``requires`` callable: skip unless `import mod` (plus `probe`) works."""
    code = f"import {mod}" + (f"; {probe}" if probe else "")
    cache = []

    def check():
        if not cache:
            e = dict(os.environ)
            e.update(env or {})
            r = subprocess.run([PY, "-c", code], capture_output=True, text=True, env=e, timeout=60)
            if r.returncode == 0:
                cache.append(None)
            else:
                last = (r.stderr.strip().splitlines() or ["failed"])[-1]
                cache.append(f"`{code}` failed: {last}")
        return cache[0]

    return check


def noisy_limit(duration: float) -> float:
    return OTHER_BUSY_PCT + 6.0 / duration


# --------------------------------------------------------------------------- one run
def run_one(row: Row, args, loadgen: str, log_name: str) -> None:
    spec, load = row.server, row.load
    port = free_port()
    argv = [a.format(port=port, python=PY) for a in spec.argv]
    env = dict(os.environ)
    env.update(spec.env)
    os.makedirs(LOG_DIR, exist_ok=True)
    log_path = os.path.join(LOG_DIR, log_name)
    with open(log_path, "wb") as log:
        srv = subprocess.Popen(["taskset", "-c", str(args.server_cpu)] + argv,
                               stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                               env=env, cwd=REPO_ROOT)
    try:
        err = wait_port(port, srv)
        if err:
            row.failed = err + f" (log: {os.path.relpath(log_path, REPO_ROOT)})"
            return
        time.sleep(0.1)  # let the readiness probe's connection close settle
        lg_cmd = ["taskset", "-c", str(args.load_cpu), loadgen,
                  "--host", "127.0.0.1", "--port", str(port),
                  "--conns", str(load.conns), "--inflight", str(load.inflight),
                  "--size", str(load.size), "--framing", spec.framing,
                  "--duration", str(args.duration), "--warmup", str(args.warmup)]
        lg = subprocess.Popen(lg_cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
        # watchdog: loadgen caps itself at warmup+duration+5 s; belt and braces
        watchdog = threading.Timer(args.warmup + args.duration + 15, lg.kill)
        watchdog.start()
        snaps = {}
        other = []
        try:
            for raw in lg.stderr:
                line = raw.decode(errors="replace").strip()
                if line in ("MEASURE_START", "MEASURE_END"):
                    snaps[line] = snapshot(srv.pid)
                elif line:
                    other.append(line)
            out = lg.stdout.read().decode(errors="replace")
            lg.wait()
        finally:
            watchdog.cancel()
        if lg.returncode != 0:
            row.failed = f"loadgen exit {lg.returncode}: {' | '.join(other)[-300:]}"
            return
        try:
            res = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            row.failed = f"loadgen printed no JSON: {out[-200:]!r}"
            return
        if not res.get("msgs"):
            row.failed = (f"no replies in the measured window (errors={res.get('errors')}, "
                          f"conns_alive={res.get('conns_alive')})")
            return
        if "MEASURE_START" not in snaps or "MEASURE_END" not in snaps:
            row.failed = "missing MEASURE_START/MEASURE_END from loadgen"
            return
        if srv.poll() is not None:
            res["server_exited"] = srv.returncode
        a, b = snaps["MEASURE_START"], snaps["MEASURE_END"]
        secs = res["seconds"] or 1e-9
        res["server_cpu_s"] = (b["cpu"] - a["cpu"]) / CLK_TCK
        res["server_user_s"] = (b["user"] - a["user"]) / CLK_TCK
        res["server_cpu_pct"] = 100.0 * res["server_cpu_s"] / secs
        res["server_minflt"] = b["minflt"] - a["minflt"]
        res["server_procs"] = b["pids"]
        # CPU used by anything but the server and loadgen during the window
        # (other benchmarks, builds...): % of one CPU. Kernel work not charged
        # to either process (e.g. softirq time) also lands here.
        other = (b["busy"] - a["busy"]) / CLK_TCK - res["server_cpu_s"] - res["loadgen_cpu_s"]
        res["other_cpu_pct"] = 100.0 * other / secs
        res["loadgen_stderr"] = other
        row.result = res
    finally:
        stop_server(srv)


# --------------------------------------------------------------------------- report
def _fmt(v, nd=1):
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.{nd}f}"
    return f"{v:,}"


def compute_ratios(rows: list) -> dict:
    by_key = {(r.server.name, r.load): r for r in rows}
    ratios = {}
    for r in rows:
        if r.server.baseline and r.us_per_msg is not None:
            b = by_key.get((r.server.baseline, r.load))
            if b is not None and b.us_per_msg:
                ratios[id(r)] = r.us_per_msg / b.us_per_msg
    return ratios


def render(scenario: Scenario, rows: list, args, command: str, started: str, elapsed: float) -> str:
    ratios = compute_ratios(rows)
    has_ratio = any(r.server.baseline for r in rows)
    hdr = ["server", "framing", "size B", "conns", "inflight", "msgs/s", "p50 µs", "p99 µs",
           "server CPU µs/msg", "of which user", "server CPU %", "loadgen CPU %"]
    if has_ratio:
        hdr.append(scenario.ratio_title)
    lines = [f"## {scenario.title}" + (" (quick)" if args.quick else ""), ""]
    lines += [f"Command (from the repo root): `{command}`", "",
              f"Date: {started}; wall time {elapsed:.0f} s; measured window {args.duration:g} s "
              f"after {args.warmup:g} s warmup per row; server on CPU {args.server_cpu}, "
              f"loadgen on CPU {args.load_cpu}.", ""]
    lines += ["Machine: " + "; ".join(f"{k} {v}" for k, v in machine_facts()), ""]
    if scenario.notes:
        lines += [scenario.notes.strip(), ""]
    lines += ["| " + " | ".join(hdr) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * (len(hdr) - 2)) + "|"]
    notes = []
    for r in rows:
        if r.skipped:
            notes.append(f"{r.server.name} ({r.server.framing}): skipped: {r.skipped}")
            continue
        cells = [r.server.name, r.server.framing, str(r.load.size), str(r.load.conns),
                 str(r.load.inflight)]
        if r.result:
            x = r.result
            cells += [_fmt(x["msgs_per_s"], 0), _fmt(x["p50_us"]), _fmt(x["p99_us"]),
                      _fmt(r.us_per_msg, 2), _fmt(r.user_us_per_msg, 2),
                      _fmt(x["server_cpu_pct"], 0),
                      _fmt(x["loadgen_cpu_pct"], 0)]
            if x.get("errors") or x.get("conns_alive", r.load.conns) != r.load.conns:
                notes.append(f"{r.server.name} {r.server.framing} {r.load.size} B inflight "
                             f"{r.load.inflight}: errors={x.get('errors')} (conn_errors="
                             f"{x.get('conn_errors')}, mismatches={x.get('mismatches')}), "
                             f"conns_alive={x.get('conns_alive')}")
            where = f"{r.server.name} {r.server.framing} {r.load.size} B inflight {r.load.inflight}"
            if x["loadgen_cpu_pct"] > LOADGEN_BUSY_PCT:
                notes.append(f"{where}: loadgen used {x['loadgen_cpu_pct']:.0f}% of its CPU, "
                             "it may have limited the rate")
            if x.get("other_cpu_pct", 0) > noisy_limit(args.duration):
                notes.append(f"{where}: {x['other_cpu_pct']:.0f}% of a CPU was used by other "
                             "processes/kernel work during the window (noisy row)")
            if (x["server_cpu_pct"] < SERVER_BUSY_PCT and x["loadgen_cpu_pct"] < LOADGEN_BUSY_PCT
                    and x.get("server_procs", 1) == 1):
                notes.append(f"{where}: neither the server ({x['server_cpu_pct']:.0f}%) nor loadgen "
                             f"({x['loadgen_cpu_pct']:.0f}%) saturated its CPU: disturbed or "
                             "latency-bound row")
            if x["msgs"] and x.get("server_minflt", 0) / x["msgs"] > 0.05:
                notes.append(f"{where}: server took {x['server_minflt'] / x['msgs']:.2f} minor "
                             "page faults per message during the window")
            if "server_exited" in x:
                notes.append(f"{r.server.name} {r.server.framing}: server exited "
                             f"({x['server_exited']}) during the run")
        else:
            why = f"FAILED: {r.failed}"
            cells += ["–"] * 7
            notes.append(f"{r.server.name} {r.server.framing} {r.load.size} B inflight "
                         f"{r.load.inflight}: {why}")
        if has_ratio:
            cells.append(f"{ratios[id(r)]:.2f}×" if id(r) in ratios else "")
        lines.append("| " + " | ".join(cells) + " |")
    if notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in dict.fromkeys(notes)]
    return "\n".join(lines) + "\n"


def write_section(path: str, key: str, body: str) -> None:
    """Replace (or append) the <!-- bench:key --> section of the Markdown file."""
    begin, end = f"<!-- bench:{key}:begin -->", f"<!-- bench:{key}:end -->"
    block = f"{begin}\n{body.rstrip()}\n{end}\n"
    text = ""
    if os.path.exists(path):
        with open(path) as f:
            text = f.read()
    if begin in text and end in text:
        pre, rest = text.split(begin, 1)
        post = rest.split(end, 1)[1].lstrip("\n")
        text = pre + block + ("\n" + post if post else "")
    else:
        if not text:
            text = ("# swooletw benchmark results\n\n"
                    "Generated by the runners in bench/ (see bench/README.md). Each section is "
                    "rewritten by the command shown in it.\n\n")
        text = text.rstrip("\n") + "\n\n" + block
    with open(path, "w") as f:
        f.write(text)


# --------------------------------------------------------------------------- CLI
def parse_args(scenario: Scenario, argv=None):
    ap = argparse.ArgumentParser(description=f"Run the '{scenario.key}' benchmark scenario.")
    ap.add_argument("--duration", type=float, default=None, help="measured seconds per row (default 5; quick 1.5)")
    ap.add_argument("--warmup", type=float, default=None, help="warmup seconds per row (default 1; quick 0.5)")
    ap.add_argument("--quick", action="store_true", help="shorter runs on a subset of the load parameters")
    ap.add_argument("--only", action="append", default=[], metavar="NAME",
                    help="only servers whose name contains NAME (case-insensitive; repeatable or "
                         "comma-separated); the baselines of the selected servers are added")
    ap.add_argument("--no-baseline", action="store_true",
                    help="with --only: do not add the baselines of the selected servers")
    ap.add_argument("--sizes", help="comma-separated packet sizes, overrides the scenario's")
    ap.add_argument("--inflight", help="comma-separated in-flight counts, overrides the scenario's")
    ap.add_argument("--conns", type=int, help="connections, overrides the scenario's")
    ap.add_argument("--server-cpu", default="0", help="taskset -c list for the server (default 0)")
    ap.add_argument("--load-cpu", default="1", help="taskset -c list for loadgen (default 1)")
    ap.add_argument("--out", default=os.path.join(BENCH_DIR, "RESULTS.md"),
                    help="Markdown file to write the section into ('-' = stdout only)")
    ap.add_argument("--json", help="also dump raw per-row results to this JSON file")
    ap.add_argument("--quiet-wait", type=float, default=10.0, metavar="S",
                    help="before each row wait up to S s for the machine to be idle (default 10)")
    ap.add_argument("--retry-noisy", type=int, default=1, metavar="N",
                    help=f"re-run a row up to N times when other processes used > {OTHER_BUSY_PCT:g}%% "
                         "(+ 6/duration %%) of a CPU during its window; the least disturbed run is "
                         "kept (default 1)")
    ap.add_argument("--time-budget", type=float, default=330.0, metavar="S",
                    help="skip quiet-waits and retries once they would push the run past S s "
                         "(default 330)")
    ap.add_argument("--list", action="store_true", help="list the rows and exit")
    args = ap.parse_args(argv)
    if args.duration is None:
        args.duration = 1.5 if args.quick else 5.0
    if args.warmup is None:
        args.warmup = 0.5 if args.quick else 1.0
    if args.duration <= 0 or args.duration > 600 or args.warmup < 0 or args.warmup > 60:
        ap.error("--duration must be in (0, 600], --warmup in [0, 60]")
    for opt in ("server_cpu", "load_cpu"):
        if not re.fullmatch(r"[0-9]+([-,][0-9]+)*", getattr(args, opt)):
            ap.error(f"--{opt.replace('_', '-')} must be a taskset -c CPU list like 0 or 0-1")
    return args


def plan(scenario: Scenario, args) -> list:
    loads = scenario.quick_loads if (args.quick and scenario.quick_loads) else scenario.loads
    if args.sizes or args.inflight or args.conns:
        sizes = [int(s) for s in args.sizes.split(",")] if args.sizes else sorted({l.size for l in loads})
        infl = ([int(s) for s in args.inflight.split(",")] if args.inflight
                else sorted({l.inflight for l in loads}))
        conns = args.conns or loads[0].conns
        loads = [Load(s, i, conns) for s in sizes for i in infl]
    only = [o.strip().lower() for spec in args.only for o in spec.split(",") if o.strip()]
    picked = [s for s in scenario.servers if not only or any(o in s.name.lower() for o in only)]
    if only and not args.no_baseline:  # keep the ratio column meaningful
        want = {s.baseline for s in picked if s.baseline}
        picked += [s for s in scenario.servers if s.name in want and s not in picked]
    servers = [s for s in scenario.servers if s in picked]  # scenario order
    rows = []
    # load parameters outermost, servers innermost: rows that get compared run
    # next to each other in time, so slow drift of the machine hurts less.
    for framing in dict.fromkeys(s.framing for s in servers):
        for load in loads:
            for s in servers:
                if s.framing == framing:
                    rows.append(Row(s, load))
    return rows


def main(scenario: Scenario, argv=None) -> int:
    args = parse_args(scenario, argv)
    rows = plan(scenario, args)
    if args.list:
        for r in rows:
            print(f"{r.server.name:32} {r.server.framing:6} size={r.load.size:<6} "
                  f"inflight={r.load.inflight:<3} conns={r.load.conns}")
        return 0
    if args.server_cpu == args.load_cpu:
        print(f"warning: server and loadgen share CPU {args.server_cpu}", file=sys.stderr)
    loadgen = build_loadgen()
    started = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    t0 = time.monotonic()
    script = os.path.relpath(os.path.abspath(sys.argv[0]), REPO_ROOT)
    command = shlex.join(["python3", script] + (sys.argv[1:] if argv is None else list(argv)))
    skip_reasons = {}
    for i, row in enumerate(rows, 1):
        spec = row.server
        if spec.requires is not None:
            if spec.name not in skip_reasons:
                skip_reasons[spec.name] = spec.requires()
            if skip_reasons[spec.name]:
                row.skipped = skip_reasons[spec.name]
                print(f"[{i}/{len(rows)}] {spec.name} {spec.framing}: skipped ({row.skipped})",
                      file=sys.stderr)
                continue
        tag = f"{spec.name} {spec.framing} size={row.load.size} inflight={row.load.inflight}"
        log_name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{scenario.key}-{tag}") + ".log"
        tries = []
        per_row = args.warmup + args.duration + 1.5
        for attempt in range(1 + max(0, args.retry_noisy)):
            # retries and quiet-waits only while the run stays within --time-budget
            slack = args.time_budget - (time.monotonic() - t0) - per_row * (len(rows) - i + 1)
            if attempt > 0 and slack < per_row:
                print("  (no time left in --time-budget for a retry)", file=sys.stderr)
                break
            busy = wait_quiet(max(0.0, min(args.quiet_wait, slack)))
            if busy > QUIET_PCT:
                print(f"  machine busy ({busy:.0f}% of a CPU used by others), running anyway",
                      file=sys.stderr)
            row.result = row.failed = None
            run_one(row, args, loadgen, log_name)
            if not row.result:
                break
            tries.append(row.result)
            if row.result["other_cpu_pct"] <= noisy_limit(args.duration):
                break
            print(f"  noisy window (other {row.result['other_cpu_pct']:.0f}% of a CPU)"
                  + (", retrying" if attempt < args.retry_noisy else ""), file=sys.stderr)
        if tries:
            row.result = min(tries, key=lambda x: x["other_cpu_pct"])
            row.result["attempts"] = len(tries)
        if row.result:
            x = row.result
            print(f"[{i}/{len(rows)}] {tag}: {x['msgs_per_s']:,.0f} msg/s p50 {x['p50_us']:.0f} µs "
                  f"p99 {x['p99_us']:.0f} µs server {row.us_per_msg:.2f} µs/msg "
                  f"({x['server_cpu_pct']:.0f}% CPU) loadgen {x['loadgen_cpu_pct']:.0f}% CPU "
                  f"other {x['other_cpu_pct']:.0f}%"
                  + (f" ERRORS {x['errors']}" if x["errors"] else ""), file=sys.stderr)
        else:
            print(f"[{i}/{len(rows)}] {tag}: FAILED {row.failed}", file=sys.stderr)
    elapsed = time.monotonic() - t0
    text = render(scenario, rows, args, command, started, elapsed)
    print(text)
    if args.out and args.out != "-":
        key = scenario.key + ("-quick" if args.quick else "")
        write_section(args.out, key, text)
        print(f"wrote section '{key}' of {args.out}", file=sys.stderr)
    if args.json:
        with open(args.json, "w") as f:
            json.dump([{"server": r.server.name, "framing": r.server.framing,
                        "size": r.load.size, "inflight": r.load.inflight, "conns": r.load.conns,
                        "result": r.result, "skipped": r.skipped, "failed": r.failed,
                        "server_cpu_us_per_msg": r.us_per_msg,
                        "server_user_us_per_msg": r.user_us_per_msg} for r in rows], f, indent=1)
    return 1 if any(r.failed for r in rows) else 0
