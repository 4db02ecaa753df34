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
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

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
    server_cpu: Optional[str] = None  # taskset -c list for this row's server (default --server-cpu)
    load_cpu: Optional[str] = None    # taskset -c list for this row's loadgen (default --load-cpu)
    label: Optional[str] = None       # extra text shown in the row (e.g. its pinning)
    # wait for this many processes in the server's tree before loading it (a swooletw master
    # with 2 workers: 3). Its port accepts into the backlog before any worker exists.
    ready_procs: int = 1


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
    duration: float = 5.0   # default of --duration (without --quick)
    server_cpu: str = "0"   # default of --server-cpu
    load_cpu: str = "1"     # default of --load-cpu
    # render(scenario, rows, args, command, started, elapsed) -> Markdown; default: render()
    render: Optional[Callable] = None
    # run_one(row, args, loadgen, log_name) -> None, filling row.result / row.failed; default:
    # run_one() (a scenario with its own protocol or extra measurements, e.g. run_tasks.py)
    run_one: Optional[Callable] = None
    # seconds a row takes beyond warmup + duration (start, stop, ...), for --time-budget
    row_overhead: float = 1.5


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


def wait_procs(root: int, count: int, timeout: float = 15.0, title_prefix: str = "") -> Optional[str]:
    """Wait until root's process tree has `count` processes (whose title starts with
    `title_prefix`, root itself always counting). Returns an error string or None."""
    deadline = time.monotonic() + timeout
    n = 0
    while time.monotonic() < deadline:
        tree = process_tree(root)
        n = sum(1 for pid in tree if pid == root or proc_title(pid).startswith(title_prefix))
        if n >= count:
            return None
        time.sleep(0.05)
    return f"server tree has {n} of {count} processes after {timeout:.0f} s"


def _read_stat(pid: int):
    """(ppid, utime+stime ticks, starttime, minflt, utime ticks, cutime+cstime ticks,
    cutime ticks) of pid, or None if gone. cutime/cstime: CPU of its children that it
    has reaped (waitpid), so the CPU of a worker that exits is not lost."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2:].split()
    # fields[0] is field 3 (state); ppid=4, minflt=10, utime=14, stime=15, cutime=16,
    # cstime=17, starttime=22
    return (int(fields[1]), int(fields[11]) + int(fields[12]), int(fields[19]), int(fields[7]),
            int(fields[11]), int(fields[13]) + int(fields[14]), int(fields[13]))


def process_tree(root: int) -> dict:
    """{pid: (cpu_ticks, starttime, minflt, user_ticks, reaped_children_cpu_ticks,
    reaped_children_user_ticks)} for root and all its descendants."""
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


def proc_title(pid: int) -> str:
    """/proc/PID/cmdline as one string (setproctitle titles end in NULs); '' if gone/zombie."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return ""
    return " ".join(p.decode(errors="replace") for p in raw.split(b"\0") if p)


def tcp_established(port: int) -> dict:
    """{socket inode: remote port} of ESTABLISHED IPv4 sockets whose local port is `port`
    (the server side of connections to 127.0.0.1:port), from /proc/net/tcp."""
    out = {}
    try:
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                parts = line.split()
                if len(parts) < 10 or parts[3] != "01":
                    continue
                if int(parts[1].rsplit(":", 1)[1], 16) == port:
                    out[int(parts[9])] = int(parts[2].rsplit(":", 1)[1], 16)
    except OSError:
        pass
    return out


_NETLINK_SOCK_DIAG, _SOCK_DIAG_BY_FAMILY, _INET_DIAG_INFO = 4, 20, 2


def tcp_bytes(port: int) -> dict:
    """{socket inode: (bytes_acked, bytes_received)} of the server side of ESTABLISHED IPv4
    TCP connections to local port `port`, from tcp_info over NETLINK_SOCK_DIAG (inet_diag;
    no subprocess, ~0.2 ms). bytes_acked > 0: the socket's owner has sent data on it."""
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_SOCK_DIAG)
    try:
        # inet_diag_req_v2 {family, protocol, ext, pad, states} + inet_diag_sockid (48 B,
        # ignored by a dump: we filter on the reply's source port)
        sockid = (struct.pack("!HH16s16s", port, 0, b"", b"") + struct.pack("=I", 0)
                  + struct.pack("=II", 0xFFFFFFFF, 0xFFFFFFFF))
        req = struct.pack("=BBBBI", socket.AF_INET, socket.IPPROTO_TCP,
                          1 << (_INET_DIAG_INFO - 1), 0, 1 << 1) + sockid  # TCP_ESTABLISHED
        s.sendto(struct.pack("=IHHII", 16 + len(req), _SOCK_DIAG_BY_FAMILY,
                             0x1 | 0x300, 1, 0) + req, (0, 0))  # NLM_F_REQUEST | NLM_F_DUMP
        out = {}
        while True:
            data = s.recv(1 << 16)
            off = 0
            while off + 16 <= len(data):
                ln, typ = struct.unpack_from("=IH", data, off)
                if typ == 3:  # NLMSG_DONE
                    return out
                if typ == 2:  # NLMSG_ERROR
                    raise OSError("inet_diag dump failed")
                body, end = off + 16, off + ln
                sport = struct.unpack_from("!H", data, body + 4)[0]
                inode = struct.unpack_from("=I", data, body + 68)[0]
                a = body + 72  # rtattrs after inet_diag_msg
                while a + 4 <= end:
                    alen, atype = struct.unpack_from("=HH", data, a)
                    if alen < 4:
                        break
                    # struct tcp_info: tcpi_bytes_acked at offset 120, tcpi_bytes_received 128
                    if atype == _INET_DIAG_INFO and alen - 4 >= 136 and sport == port:
                        out[inode] = struct.unpack_from("=QQ", data, a + 4 + 120)
                    a += (alen + 3) & ~3
                off += (ln + 3) & ~3
            if not data:
                return out
    finally:
        s.close()


def socket_inodes(pid: int) -> set:
    """Inodes of the sockets open in process pid (empty if it is gone)."""
    inodes = set()
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return inodes
    for name in names:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(int(link[8:-1]))
    return inodes


def conns_by_pid(pids, port: int) -> dict:
    """{pid: number of established connections to 127.0.0.1:port it holds}."""
    est = tcp_established(port)
    return {pid: len(socket_inodes(pid) & est.keys()) for pid in pids}


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
            "busy": system_busy_ticks(), "pids": len(tree), "tree": tree}


def tree_delta(a: dict, b: dict) -> dict:
    """CPU ticks, user ticks and minor faults of a process tree between snapshots a and b.

    Per process: a process alive in both counts b - a; one started after a counts all
    of b. One that exited after a is counted through its reaper's cutime/cstime (a
    worker reaped by the master), so a process ending inside the window neither
    subtracts its earlier CPU nor loses its last part."""
    cpu = user = flt = 0
    for pid, tb in b["tree"].items():
        ta = a["tree"].get(pid)
        if ta is None or ta[1] != tb[1]:
            ta = (0, tb[1], 0, 0, 0, 0)
        cpu += (tb[0] - ta[0]) + (tb[4] - ta[4])
        user += (tb[3] - ta[3]) + (tb[5] - ta[5])
        flt += tb[2] - ta[2]
    return {"cpu": cpu, "user": user, "minflt": flt}


def per_process(a: dict, b: dict, secs: float) -> list:
    """Per server process over the window between snapshots a and b: pid, title,
    CPU % of one CPU, connections it held at a (a["conns"], counted right after the
    snapshot: at b loadgen is already closing them). Processes alive at both only (the
    totals of tree_delta also count the others)."""
    conns = a.get("conns", {})
    out = []
    for pid, tb in sorted(b["tree"].items()):
        ta = a["tree"].get(pid)
        if ta is None or ta[1] != tb[1]:
            continue
        out.append({"pid": pid, "title": proc_title(pid),
                    "cpu_pct": round(100.0 * (tb[0] - ta[0]) / CLK_TCK / secs, 1),
                    "conns": conns.get(pid, 0)})
    return out


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


def loadgen_result(lg: Any, out: str, other: list, row: Any, measured: bool = True) -> Any:
    """
    loadgen's JSON result, or None with row.failed saying why (it failed,
    printed no JSON, or got no reply in the measured window; `measured`
    False also counts as the latter).
    """
    if lg.returncode != 0:
        row.failed = f"loadgen exit {lg.returncode}: {' | '.join(other)[-300:]}"
        return None
    try:
        res = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        row.failed = f"loadgen printed no JSON: {out[-200:]!r}"
        return None
    if not res.get("msgs") or not measured:
        row.failed = (f"no replies in the measured window (errors={res.get('errors')}, "
                      f"conns_alive={res.get('conns_alive')})")
        return None
    return res


def error_and_noise_notes(where: str, x: dict, conns: int, duration: float) -> list:
    """
    The notes every scenario adds for a row: loadgen errors or lost
    connections, and other processes' CPU during the window.
    """
    notes = []
    if x.get("errors") or x.get("conns_alive", conns) != conns:
        notes.append(f"{where}: errors={x.get('errors')} (conn_errors={x.get('conn_errors')}, "
                     f"mismatches={x.get('mismatches')}), conns_alive={x.get('conns_alive')}")
    if x.get("other_cpu_pct", 0) > noisy_limit(duration):
        notes.append(f"{where}: {x['other_cpu_pct']:.0f}% of a CPU was used by other "
                     "processes/kernel work during the window (noisy row)")
    return notes


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
        srv = subprocess.Popen(["taskset", "-c", str(spec.server_cpu or args.server_cpu)] + argv,
                               stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                               env=env, cwd=REPO_ROOT)
    try:
        err = wait_port(port, srv)
        if not err and spec.ready_procs > 1:
            err = wait_procs(srv.pid, spec.ready_procs)
        if err:
            row.failed = err + f" (log: {os.path.relpath(log_path, REPO_ROOT)})"
            return
        time.sleep(0.1)  # let the readiness probe's connection close settle
        lg_cmd = ["taskset", "-c", str(spec.load_cpu or args.load_cpu), loadgen,
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
                    if line == "MEASURE_START":  # after the snapshot: not on the window's clock
                        snaps[line]["conns"] = conns_by_pid(snaps[line]["tree"], port)
                elif line:
                    other.append(line)
            out = lg.stdout.read().decode(errors="replace")
            lg.wait()
        finally:
            watchdog.cancel()
        res = loadgen_result(lg, out, other, row)
        if res is None:
            return
        if "MEASURE_START" not in snaps or "MEASURE_END" not in snaps:
            row.failed = "missing MEASURE_START/MEASURE_END from loadgen"
            return
        if srv.poll() is not None:
            res["server_exited"] = srv.returncode
        a, b = snaps["MEASURE_START"], snaps["MEASURE_END"]
        secs = res["seconds"] or 1e-9
        d = tree_delta(a, b)
        res["server_cpu_s"] = d["cpu"] / CLK_TCK
        res["server_user_s"] = d["user"] / CLK_TCK
        res["server_cpu_pct"] = 100.0 * res["server_cpu_s"] / secs
        res["server_minflt"] = d["minflt"]
        res["server_procs"] = b["pids"]
        res["machine_cpu_pct"] = 100.0 * (b["busy"] - a["busy"]) / CLK_TCK / secs
        res["server_by_process"] = per_process(a, b, secs)
        # CPU used by anything but the server and loadgen during the window
        # (other benchmarks, builds...): % of one CPU. Kernel work not charged
        # to either process (e.g. softirq time) also lands here.
        busy_other = (b["busy"] - a["busy"]) / CLK_TCK - res["server_cpu_s"] - res["loadgen_cpu_s"]
        res["other_cpu_pct"] = 100.0 * busy_other / secs
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
            where = f"{r.server.name} {r.server.framing} {r.load.size} B inflight {r.load.inflight}"
            if x["loadgen_cpu_pct"] > LOADGEN_BUSY_PCT:
                notes.append(f"{where}: loadgen used {x['loadgen_cpu_pct']:.0f}% of its CPU, "
                             "it may have limited the rate")
            notes.extend(error_and_noise_notes(where, x, r.load.conns, args.duration))
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
def parse_args(scenario: Scenario, argv=None, add_args: Optional[Callable] = None):
    """The common options; `add_args(parser)` may add a scenario's own."""
    ap = argparse.ArgumentParser(description=f"Run the '{scenario.key}' benchmark scenario.")
    ap.add_argument("--duration", type=float, default=None,
                    help=f"measured seconds per row (default {scenario.duration:g}; quick 1.5)")
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
    ap.add_argument("--server-cpu", default=scenario.server_cpu,
                    help=f"taskset -c list for the server (default {scenario.server_cpu})")
    ap.add_argument("--load-cpu", default=scenario.load_cpu,
                    help=f"taskset -c list for loadgen (default {scenario.load_cpu})")
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
                         "(default %(default)s)")
    ap.add_argument("--list", action="store_true", help="list the rows and exit")
    if add_args is not None:
        add_args(ap)
    args = ap.parse_args(argv)
    if args.duration is None:
        args.duration = 1.5 if args.quick else scenario.duration
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


def list_rows(rows: list) -> None:
    for r in rows:
        print(f"{r.server.name:32} {r.server.framing:6} size={r.load.size:<6} "
              f"inflight={r.load.inflight:<3} conns={r.load.conns}"
              + (f"  [{r.server.label}]" if r.server.label else ""))


def now_str() -> str:
    return datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def command_line(argv=None) -> str:
    script = os.path.relpath(os.path.abspath(sys.argv[0]), REPO_ROOT)
    return shlex.join(["python3", script] + (sys.argv[1:] if argv is None else list(argv)))


def main(scenario: Scenario, argv=None, add_args: Optional[Callable] = None,
         configure: Optional[Callable] = None) -> int:
    """Run a scenario. `add_args(parser)` may add its own options, `configure(scenario,
    args)` then change it from them (run_echo.py's --baseline-tree adds servers)."""
    args = parse_args(scenario, argv, add_args)
    if configure is not None:
        configure(scenario, args)
    rows = plan(scenario, args)
    if args.list:
        list_rows(rows)
        return 0
    if args.server_cpu == args.load_cpu:
        print(f"warning: server and loadgen share CPU {args.server_cpu}", file=sys.stderr)
    loadgen = build_loadgen()
    started = now_str()
    t0 = time.monotonic()
    command = command_line(argv)
    run_rows(scenario, rows, args, loadgen, t0)
    elapsed = time.monotonic() - t0
    report(scenario, rows, args, command, started, elapsed)
    return 1 if any(r.failed for r in rows) else 0


def run_rows(scenario: Scenario, rows: list, args, loadgen: str, t0: float,
             reserve: float = 0.0) -> None:
    """Run every row (quiet-wait, noisy retries) and fill in row.result / failed.
    `reserve`: seconds of --time-budget to keep for work done after these rows."""
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
        per_row = args.warmup + args.duration + scenario.row_overhead
        for attempt in range(1 + max(0, args.retry_noisy)):
            # retries and quiet-waits only while the run stays within --time-budget
            slack = (args.time_budget - reserve - (time.monotonic() - t0)
                     - per_row * (len(rows) - i + 1))
            if attempt > 0 and slack < per_row:
                print("  (no time left in --time-budget for a retry)", file=sys.stderr)
                break
            busy = wait_quiet(max(0.0, min(args.quiet_wait, slack)))
            if busy > QUIET_PCT:
                print(f"  machine busy ({busy:.0f}% of a CPU used by others), running anyway",
                      file=sys.stderr)
            row.result = row.failed = None
            (scenario.run_one or run_one)(row, args, loadgen, log_name)
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


def report(scenario: Scenario, rows: list, args, command: str, started: str, elapsed: float,
           extra_json: Optional[dict] = None) -> str:
    """Render the rows, print them, write the scenario's RESULTS.md section and --json."""
    text = (scenario.render or render)(scenario, rows, args, command, started, elapsed)
    print(text)
    if args.out and args.out != "-":
        key = scenario.key + ("-quick" if args.quick else "")
        write_section(args.out, key, text)
        print(f"wrote section '{key}' of {args.out}", file=sys.stderr)
    if args.json:
        data = [{"server": r.server.name, "framing": r.server.framing,
                 "size": r.load.size, "inflight": r.load.inflight, "conns": r.load.conns,
                 "result": r.result, "skipped": r.skipped, "failed": r.failed,
                 "server_cpu_us_per_msg": r.us_per_msg,
                 "server_user_us_per_msg": r.user_us_per_msg} for r in rows]
        with open(args.json, "w") as f:
            json.dump(data if extra_json is None else {"rows": data, **extra_json}, f, indent=1)
    return text
