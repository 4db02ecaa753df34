#!/usr/bin/env python3
"""Workers scenario: swooletw worker_num 1 vs 2, and reloading the workers under load.

Part 1 (section `workers` of RESULTS.md): throughput and CPU.
  twisted LineReceiver   bench/servers/twisted_echo.py --framing eof (reference)
  swooletw w1            bench/servers/swooletw_echo.py --workers 1 (eof, length)
  swooletw w2            same with --workers 2: a master forking 2 workers
  swooletw w1 pinned     w1 eof with the echo scenario's pinning (server CPU 0,
                         loadgen CPU 1), to connect this table to that one
Loads: 50 connections x 16 packets in flight x {64 B, 4 KiB}. Everything else
is unpinned (`taskset -c 0-1` for server and loadgen): with 2 workers the
server needs both CPUs and loadgen has to share them.

Part 2 (section `workers-reload`): a 2-worker server (eof, 64 B, 50 x 16) under
loadgen --reconnect; SIGUSR1 to the master --reload-at s into the measured
window; the runner watches /proc (worker processes are the master's children
titled "swooletw: worker N") and sends probe echoes, identifying the process
that answered each probe by its socket inode, until every worker has been
replaced and each new one has answered. Once with reload_async true, once
with false; --repeat runs of each.

Usage (from anywhere):  python3 bench/run_workers.py [--quick] [--part throughput|reload]
See bench/README.md and `--help`.
"""
from __future__ import annotations

import json
import os
import resource
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import benchlib as bl  # noqa: E402
from benchlib import (BENCH_DIR, REPO_ROOT, Load, Scenario, ServerSpec, _fmt,  # noqa: E402
                      have_module)

SRV = os.path.join(BENCH_DIR, "servers")
STW = os.path.join(SRV, "swooletw_echo.py")
TW = os.path.join(SRV, "twisted_echo.py")
WORKER_TITLE = "swooletw: worker"
UNPINNED = "0-1"

SWOOLETW_ENV = {"PYTHONPATH": REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
need_swooletw = have_module("swooletw", env=SWOOLETW_ENV, probe="swooletw.Server")


def stw(framing, workers, **kw):
    name = kw.pop("name", f"swooletw w{workers}")
    return ServerSpec(name, ["{python}", STW, "--port", "{port}", "--framing", framing,
                             "--workers", str(workers)], framing,
                      requires=need_swooletw, env=SWOOLETW_ENV,
                      ready_procs=1 if workers == 1 else workers + 1, **kw)


def servers(eof_runs: int, length_runs: int) -> list:
    """The rows' servers. swooletw w1 and w2 are run several times, interleaved (w1 #1, w2 #1,
    w1 #2, ...): the rate of one run varies by up to ~30 % for the same server (see the
    notes), and which worker accepts which connection is decided anew in each run."""
    def runs(framing, n):
        out = []
        for k in range(1, n + 1):
            out += [stw(framing, 1, name=f"swooletw w1 #{k}"), stw(framing, 2, name=f"swooletw w2 #{k}")]
        return out

    return [
        ServerSpec("twisted LineReceiver",
                   ["{python}", TW, "--port", "{port}", "--framing", "eof"], "eof"),
        stw("eof", 1, name="swooletw w1 pinned", server_cpu="0", load_cpu="1",
            label="server CPU 0, loadgen CPU 1"),
        *runs("eof", eof_runs),
        *runs("length", length_runs),
    ]


SERVERS = servers(3, 2)


def workers_of(name: str) -> str:
    if name.startswith("swooletw w2"):
        return "2"
    return "1" if name.startswith("swooletw w1") else "–"


def median(v):
    v = sorted(v)
    n = len(v)
    return None if not n else (v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2)


LOADS = [Load(64, 16, 50), Load(4096, 16, 50)]
QUICK_LOADS = [Load(64, 16, 50)]


# --------------------------------------------------------------------------- part 1 report
def limit_of(x: dict) -> str:
    """Who limited the row: a saturated server process, both CPUs, or loadgen."""
    procs = x.get("server_by_process") or []
    hot = [p for p in procs if p["cpu_pct"] >= 93]
    if x.get("machine_cpu_pct", 0) >= 185:
        return "both CPUs busy"
    if hot:
        return "server process at 100 %"
    if x["loadgen_cpu_pct"] >= bl.LOADGEN_BUSY_PCT:
        return "loadgen"
    return "none saturated"


def render_workers(scenario, rows, args, command, started, elapsed):
    groups = {}  # (framing, load, "w1"|"w2") -> rows with results (unpinned, numbered runs)
    for r in rows:
        if r.result and r.server.name.startswith(("swooletw w1 #", "swooletw w2 #")):
            groups.setdefault((r.server.framing, r.load, r.server.name[9:11]), []).append(r)
    base = {(f, l): median([r.result["msgs_per_s"] for r in g])
            for (f, l, w), g in groups.items() if w == "w1"}
    hdr = ["server", "workers", "framing", "size B", "msgs/s", "p50 µs", "p99 µs",
           "server CPU µs/msg", "server CPU %", "loadgen CPU %", "machine CPU %",
           "limit", "conns per worker", "msgs/s vs w1 median"]
    lines = [f"## {scenario.title}" + (" (quick)" if args.quick else ""), ""]
    lines += [f"Command (from the repo root): `{command}`", "",
              f"Date: {started}; wall time {elapsed:.0f} s; measured window {args.duration:g} s "
              f"after {args.warmup:g} s warmup per row; 50 connections, 16 packets in flight "
              "each.", ""]
    lines += ["Machine: " + "; ".join(f"{k} {v}" for k, v in bl.machine_facts()), ""]
    lines += [scenario.notes.strip(), ""]
    lines += ["| " + " | ".join(hdr) + " |",
              "|" + "|".join(["---"] * 3 + ["---:"] * 8 + ["---", "---:", "---:"]) + "|"]
    notes = []
    for r in rows:
        name = r.server.name
        where = f"{name} {r.server.framing} {r.load.size} B"
        if r.skipped:
            notes.append(f"{name} ({r.server.framing}): skipped: {r.skipped}")
            continue
        cells = [name, workers_of(name), r.server.framing, str(r.load.size)]
        if not r.result:
            cells += ["–"] * 10
            notes.append(f"{where}: FAILED: {r.failed}")
            lines.append("| " + " | ".join(cells) + " |")
            continue
        x = r.result
        b = base.get((r.server.framing, r.load))
        ratio = f"{x['msgs_per_s'] / b:.2f}×" if b else ""
        procs = x.get("server_by_process") or []
        workers = sorted((p for p in procs if p["title"].startswith(WORKER_TITLE)),
                         key=lambda p: p["title"]) or procs
        split = "/".join(str(p["conns"]) for p in workers)
        cells += [_fmt(x["msgs_per_s"], 0), _fmt(x["p50_us"], 0), _fmt(x["p99_us"], 0),
                  _fmt(r.us_per_msg, 2), _fmt(x["server_cpu_pct"], 0),
                  _fmt(x["loadgen_cpu_pct"], 0), _fmt(x.get("machine_cpu_pct"), 0),
                  limit_of(x), split, ratio]
        lines.append("| " + " | ".join(cells) + " |")
        if len(workers) > 1 and min(p["conns"] for p in workers) == 0:
            notes.append(f"{where}: one worker held no connection: this run measured one "
                         "worker plus an idle one")
        if x.get("machine_cpu_pct", 0) < 185 and not any(p["cpu_pct"] >= 93 for p in procs):
            if r.server.server_cpu or r.server.load_cpu:
                notes.append(f"{where}: the pinned server did not saturate its CPU "
                             f"({x['server_cpu_pct']:.0f}%): disturbed or latency-bound row")
            else:
                notes.append(f"{where}: idle CPU time left ({x.get('machine_cpu_pct', 0):.0f}% "
                             "of 200) although no process saturated a CPU: disturbed, or the "
                             "scheduler stacked processes that wake each other on one CPU for "
                             "part of the window (unpinned)")
        if len(procs) > 1:
            notes.append(f"{where}: " + "; ".join(
                f"{p['title'].replace('swooletw: ', '') or p['pid']} {p['cpu_pct']:.0f}% CPU, "
                f"{p['conns']} conns" for p in procs))
        notes.extend(bl.error_and_noise_notes(where, x, r.load.conns, args.duration))
        if "server_exited" in x:
            notes.append(f"{where}: server exited ({x['server_exited']}) during the run")
        if x["msgs"] and x.get("server_minflt", 0) / x["msgs"] > 0.05:
            notes.append(f"{where}: server took {x['server_minflt'] / x['msgs']:.2f} minor page "
                         "faults per message during the window")
    summary = []
    for (framing, load), b in base.items():
        w1 = groups.get((framing, load, "w1"), [])
        w2 = groups.get((framing, load, "w2"), [])
        if not w2:
            continue
        m2 = median([r.result["msgs_per_s"] for r in w2])
        # all CPU time of the machine per message (server + loadgen + kernel work charged to
        # nobody)
        mcpu = lambda g: median([r.result["machine_cpu_pct"] / 100 / r.result["msgs_per_s"]  # noqa: E731
                                 for r in g]) * 1e6
        fmt = lambda g: ", ".join(f"{r.result['msgs_per_s'] / 1000:,.0f}k" for r in g)  # noqa: E731
        summary.append(
            f"- {framing} {load.size} B: w2 ÷ w1 = **{m2 / b:.2f}×** msgs/s (medians: w1 "
            f"{b:,.0f} of {fmt(w1)}; w2 {m2:,.0f} of {fmt(w2)}); server CPU µs/msg median w1 "
            f"{median([r.us_per_msg for r in w1]):.2f}, w2 {median([r.us_per_msg for r in w2]):.2f}; "
            f"loadgen CPU median w1 {median([r.result['loadgen_cpu_pct'] for r in w1]):.0f}%, w2 "
            f"{median([r.result['loadgen_cpu_pct'] for r in w2]):.0f}%; machine CPU median w2 "
            f"{median([r.result.get('machine_cpu_pct', 0) for r in w2]):.0f}% of 200; machine "
            f"CPU per message median w1 {mcpu(w1):.2f} µs, w2 {mcpu(w2):.2f} µs")
    if summary:
        lines += ["", "Summary (medians include the runs where one worker held every "
                  "connection). A w1 run leaves ~0.5-0.6 of the 2 CPUs idle; a w2 run with both "
                  "workers serving uses it, with the machine at 190-200 %: the 2 CPUs, shared "
                  "with loadgen (~0.4-0.6 CPU), are then the limit, not loadgen. *machine CPU per "
                  "message* (everything the machine did ÷ messages) shows whether the extra "
                  "worker costs more per message.", ""] + summary
    if notes:
        lines += ["", "Per process (title, CPU % of one CPU over the window, connections it "
                  "held at the start of the window) and other notes:", ""] + \
            [f"- {n}" for n in dict.fromkeys(notes)]
    return "\n".join(lines) + "\n"


SCENARIO = Scenario(
    key="workers",
    title="Workers: swooletw worker_num 1 vs 2 on 2 CPUs",
    servers=SERVERS,
    loads=LOADS,
    quick_loads=QUICK_LOADS,
    duration=4.0,
    server_cpu=UNPINNED,
    load_cpu=UNPINNED,
    render=render_workers,
    notes=(
        "Pinning: every row except *swooletw w1 pinned* runs the server (master and workers) "
        "and loadgen unpinned (`taskset -c 0-1` for both): the scheduler spreads the server's "
        "processes and loadgen over the 2 CPUs. *swooletw w1 pinned* uses the echo scenario's "
        "setup (server `taskset -c 0`, loadgen `taskset -c 1`) for comparison with that table. "
        "*server CPU µs/msg* and *server CPU %* add up utime+stime of the server's whole "
        "process tree (master + workers, from /proc; % of one CPU, so up to 200). *loadgen "
        "CPU %* is loadgen's own getrusage. *machine CPU %* is all non-idle time of both CPUs "
        "(/proc/stat) over the window, of 200: at ~200 the machine, not one process, is the "
        "limit. *limit*: `both CPUs busy` when machine CPU ≥ 185 %, `server process at 100 %` "
        "when a single server process saturated its CPU with CPU to spare elsewhere. "
        "*conns per worker*: how many of the 50 connections each worker held (the kernel "
        "queues connections on the one listening socket that all workers share; Twisted "
        "accepts up to 100 per wakeup, so the worker that wakes first takes most of a burst "
        "of connects). swooletw w1 and w2 rows are run several times, interleaved (`#k`), since "
        "one run of the same server can differ from the next by up to ~30 %. *msgs/s vs w1 "
        "median* = msgs/s ÷ the median of the unpinned swooletw w1 runs, same framing and size."
    ),
)


# --------------------------------------------------------------------------- part 2: reload
class ChildWatcher:
    """Cheap polling of a process's children: /proc is listed each poll but only pids
    not seen before have their stat read (pids are not reused within a run)."""

    def __init__(self, parent: int):
        self.parent = parent
        self.seen = set()
        self.children = {}  # pid -> starttime
        self.poll()

    def poll(self) -> None:
        names = {int(n) for n in os.listdir("/proc") if n.isdigit()}
        for pid in names - self.seen:
            st = bl._read_stat(pid)
            if st is not None and st[0] == self.parent:
                self.children[pid] = st[2]
        self.seen |= names
        for pid in list(self.children):
            if pid not in names:
                del self.children[pid]

    def workers(self) -> dict:
        """{pid: title} of children currently titled 'swooletw: worker N' (a zombie
        has an empty cmdline; a just-forked child still shows the master's title)."""
        out = {}
        for pid in list(self.children):
            t = bl.proc_title(pid)
            if t.startswith(WORKER_TITLE):
                out[pid] = t
        return out


def probe_packet(framing: str, n: int) -> bytes:
    body = f"probe-{n:08d}".encode()
    return body + b"\r\n" if framing == "eof" else struct.pack(">I", len(body)) + body


def echo_once(port: int, framing: str, n: int, timeout: float = 2.0, candidates=()):
    """One probe connection: connect, send one packet, read its echo, and (before closing)
    find which of the `candidates` pids holds the server side of it.
    Returns ('ok', owner pid or None, t_ns) | ('refused', None, t) | ('closed'|'timeout'|
    'mismatch', None, t)."""
    pkt = probe_packet(framing, n)
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except ConnectionRefusedError:
        return "refused", None, time.monotonic_ns()
    except OSError:
        return "timeout", None, time.monotonic_ns()
    try:
        s.settimeout(timeout)
        local_port = s.getsockname()[1]
        s.sendall(pkt)
        got = b""
        while len(got) < len(pkt):
            chunk = s.recv(len(pkt) - len(got))
            if not chunk:
                return "closed", None, time.monotonic_ns()
            got += chunk
        t = time.monotonic_ns()
        if got != pkt:
            return "mismatch", None, t
        owner = None
        if candidates:
            inode = next((ino for ino, rport in bl.tcp_established(port).items()
                          if rport == local_port), None)
            if inode:
                owner = next((pid for pid in candidates if inode in bl.socket_inodes(pid)), None)
        return "ok", owner, t
    except (socket.timeout, TimeoutError):
        return "timeout", None, time.monotonic_ns()
    except OSError:
        return "closed", None, time.monotonic_ns()
    finally:
        s.close()


class Prober(threading.Thread):
    """Sends probe echoes back to back (5 ms apart) and records which worker answered."""

    def __init__(self, port, framing, watcher: ChildWatcher):
        super().__init__(daemon=True)
        self.port, self.framing, self.watcher = port, framing, watcher
        self.stop_evt = threading.Event()
        self.answered = {}  # pid -> first t_ns it answered a probe
        self.counts = {"ok": 0, "refused": 0, "closed": 0, "timeout": 0, "mismatch": 0,
                       "unowned": 0}

    def run(self):
        n = 0
        while not self.stop_evt.is_set():
            n += 1
            status, owner, t = echo_once(self.port, self.framing, n,
                                         candidates=list(self.watcher.children))
            if status == "ok":
                if owner is None:  # not found among the children: count, do not attribute
                    self.counts["unowned"] += 1
                else:
                    self.counts["ok"] += 1
                    self.answered.setdefault(owner, t)
            else:
                self.counts[status] += 1
            self.stop_evt.wait(0.005)


def rate(r: dict, t_a: int, t_b: int):
    """msgs/s in [t_a, t_b) (CLOCK_MONOTONIC ns) from loadgen's timeline bins."""
    bins = r.get("timeline_msgs") or []
    w = r["timeline_ms"] * 1_000_000
    t_a = max(t_a, r["load_start_ns"])
    t_b = min(t_b, r["measure_end_ns"], r["load_start_ns"] + len(bins) * w)
    if t_b <= t_a:
        return None
    total = 0.0
    for i, m in enumerate(bins):
        lo = r["load_start_ns"] + i * w
        hi = lo + w
        ov = min(hi, t_b) - max(lo, t_a)
        if ov > 0:
            total += m * ov / w
    return total / ((t_b - t_a) / 1e9)


def reload_run(args, loadgen: str, reload_async: str, run_no: int) -> dict:
    res = {"reload_async": reload_async, "run": run_no}
    port = bl.free_port()
    argv = [bl.PY, STW, "--port", str(port), "--framing", args.reload_framing,
            "--workers", str(args.reload_workers), "--reload-async", reload_async]
    env = dict(os.environ)
    env.update(SWOOLETW_ENV)
    os.makedirs(bl.LOG_DIR, exist_ok=True)
    log_path = os.path.join(bl.LOG_DIR, f"workers-reload-async_{reload_async}-run{run_no}.log")
    busy = bl.wait_quiet(args.quiet_wait)
    if busy > bl.QUIET_PCT:
        print(f"  machine busy ({busy:.0f}% of a CPU used by others), running anyway",
              file=sys.stderr)
    res["busy_before_pct"] = busy
    with open(log_path, "wb") as log:
        srv = subprocess.Popen(["taskset", "-c", args.server_cpu] + argv, stdin=subprocess.DEVNULL,
                               stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO_ROOT)
    lg = None
    try:
        err = bl.wait_port(port, srv) or bl.wait_procs(srv.pid, args.reload_workers + 1,
                                                       title_prefix=WORKER_TITLE)
        if not err:  # until a worker actually echoes
            deadline = time.monotonic() + 10
            while echo_once(port, args.reload_framing, 0)[0] != "ok":
                if time.monotonic() > deadline:
                    err = "no worker answered a probe within 10 s"
                    break
                time.sleep(0.05)
        if err:
            res["failed"] = err + f" (log: {os.path.relpath(log_path, REPO_ROOT)})"
            return res
        watcher = ChildWatcher(srv.pid)
        lg_cmd = ["taskset", "-c", args.load_cpu, loadgen, "--host", "127.0.0.1",
                  "--port", str(port), "--conns", "50", "--inflight", "16",
                  "--size", str(args.reload_size), "--framing", args.reload_framing,
                  "--warmup", str(args.reload_warmup), "--duration", str(args.reload_duration),
                  "--reconnect", "--timeline", "100"]
        lg = subprocess.Popen(lg_cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
        watchdog = threading.Timer(args.reload_warmup + args.reload_duration + 15, lg.kill)
        watchdog.start()
        marks, stderr_lines = {}, []

        def read_stderr():
            for raw in lg.stderr:
                line = raw.decode(errors="replace").strip()
                if line in ("MEASURE_START", "MEASURE_END"):
                    marks[line] = time.monotonic_ns()
                elif line:
                    stderr_lines.append(line)

        reader = threading.Thread(target=read_stderr, daemon=True)
        reader.start()
        deadline = time.monotonic() + args.reload_warmup + 10
        while "MEASURE_START" not in marks and lg.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        if "MEASURE_START" not in marks:
            res["failed"] = "loadgen did not start measuring: " + " | ".join(stderr_lines)[-300:]
            return res
        t_fire = marks["MEASURE_START"] + int(args.reload_at * 1e9)
        while time.monotonic_ns() < t_fire - 200_000_000 and lg.poll() is None:
            time.sleep(0.05)
        watcher.poll()
        old = watcher.workers()
        res["conns_before"] = sorted(bl.conns_by_pid(old, port).values(), reverse=True)
        while time.monotonic_ns() < t_fire:
            time.sleep(0.001)
        # ---- the reload
        probers = [Prober(port, args.reload_framing, watcher)]
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
        t_sig = time.monotonic_ns()
        os.kill(srv.pid, signal.SIGUSR1)
        for p in probers:
            p.start()
        answered, sent = {}, {}
        gone, titled, first_conn, cur = {}, {}, {}, {}
        t_replaced = t_done = None
        give_up = t_sig + int(args.reload_timeout * 1e9)
        while time.monotonic_ns() < give_up and lg.poll() is None:
            watcher.poll()
            now = time.monotonic_ns()
            cur = watcher.workers()
            for pid in old:
                if pid not in cur and pid not in gone:
                    gone[pid] = now
            new = [pid for pid in cur if pid not in old]
            for pid in new:
                titled.setdefault(pid, now)
            pending = [pid for pid in new if pid not in sent]
            if pending:
                diag = bl.tcp_bytes(port)
                for pid in pending:
                    mine = [diag[i] for i in bl.socket_inodes(pid) if i in diag]
                    if mine:
                        first_conn.setdefault(pid, now)
                    if any(acked > 0 for acked, _ in mine):
                        sent[pid] = now
            all_new = (len(gone) == len(old) and len(new) == args.reload_workers
                       and len(cur) == args.reload_workers)
            if all_new and t_replaced is None:
                t_replaced = now
            for p in probers:
                for pid, t in list(p.answered.items()):
                    if t < answered.get(pid, t + 1):
                        answered[pid] = t
            # evidence that a new worker echoes: data sent on a socket it holds, or a probe
            # it answered; whichever was seen first
            proof = {pid: min(t for t in (sent.get(pid), answered.get(pid)) if t is not None)
                     for pid in new if pid in sent or pid in answered}
            if all_new and len(proof) == len(new):
                t_done = max([t_replaced] + list(proof.values()))
                break
            time.sleep(0.005)
        for p in probers:
            p.stop_evt.set()
        for p in probers:
            p.join(timeout=5)
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        t_mon_end = time.monotonic_ns()
        res["runner_cpu_ms"] = 1000 * ((ru1.ru_utime + ru1.ru_stime) - (ru0.ru_utime + ru0.ru_stime))
        res["monitor_ms"] = (t_mon_end - t_sig) / 1e6
        ms = lambda t: None if t is None else (t - t_sig) / 1e6  # noqa: E731
        res["old_gone_ms"] = ms(max(gone.values())) if len(gone) == len(old) and old else None
        res["new_titled_ms"] = ms(max(titled.values())) if t_replaced else None
        res["first_new_titled_ms"] = ms(min(titled.values())) if titled else None
        res["replaced_ms"] = ms(t_replaced)
        res["serving_ms"] = ms(t_done)
        new_pids = [pid for pid in titled if pid in cur]
        res["accepting_ms"] = (ms(max([t_replaced] + [first_conn[pid] for pid in new_pids]))
                               if t_replaced and all(pid in first_conn for pid in new_pids)
                               else None)
        res["first_conn_ms"] = {str(pid): ms(t) for pid, t in first_conn.items()}
        res["per_worker"] = [{"pid": pid, "title": cur.get(pid, ""), "titled_ms": ms(titled[pid]),
                              "first_conn_ms": ms(first_conn.get(pid)),
                              "sent_ms": ms(sent.get(pid)),
                              "answered_ms": ms(answered.get(pid))}
                             for pid in sorted(titled)]
        res["old_gone"] = {str(pid): ms(t) for pid, t in gone.items()}
        res["probes"] = {k: sum(p.counts[k] for p in probers) for k in probers[0].counts}
        res["old_pids"], res["new_pids"] = sorted(old), sorted(p for p in watcher.workers()
                                                                if p not in old)
        # connections per worker near the end of the window (loadgen still running)
        t_after = marks["MEASURE_START"] + int((args.reload_duration - 0.7) * 1e9)
        while time.monotonic_ns() < t_after and lg.poll() is None:
            time.sleep(0.02)
        watcher.poll()
        res["conns_after"] = sorted(bl.conns_by_pid(watcher.workers(), port).values(),
                                    reverse=True)
        try:
            out, _ = lg.communicate(timeout=args.reload_duration + 20)
        finally:
            watchdog.cancel()
        reader.join(timeout=2)
        if lg.returncode != 0:
            res["failed"] = f"loadgen exit {lg.returncode}: {' | '.join(stderr_lines)[-300:]}"
            return res
        r = json.loads(out.decode().strip().splitlines()[-1])
        res["loadgen"] = r
        res["t_sig_ns"] = t_sig
        second = 1_000_000_000
        res["before"] = rate(r, t_sig - 2 * second, t_sig)
        res["reload_second"] = rate(r, t_sig, t_sig + second)
        res["after"] = rate(r, t_sig + 2 * second, t_sig + 4 * second)
        w = r["timeline_ms"] * 1_000_000
        first = (t_sig - r["load_start_ns"]) // w
        bins = r["timeline_msgs"]
        res["worst_bin"] = min((m * 1e9 / w for m in bins[first:first + 10]), default=None)
        res["bins_around"] = [round(m * 1e9 / w) for m in bins[max(0, first - 3):first + 11]]
        res["bins_first_offset_ms"] = ((max(0, first - 3) * w + r["load_start_ns"]) - t_sig) / 1e6
        return res
    finally:
        if lg is not None and lg.poll() is None:
            lg.terminate()
            try:
                lg.wait(timeout=3)
            except subprocess.TimeoutExpired:
                lg.kill()
                lg.wait(timeout=5)
        bl.stop_server(srv)


def render_reload(runs, args, command, started, elapsed):
    title = "Workers: reloading 2 workers under load (SIGUSR1)"
    lines = [f"## {title}" + (" (quick)" if args.quick else ""), ""]
    lines += [f"Command (from the repo root): `{command}`", "",
              f"Date: {started}; wall time {elapsed:.0f} s of the whole command; per run "
              f"{args.reload_warmup:g} s warmup + {args.reload_duration:g} s measured, SIGUSR1 "
              f"to the master {args.reload_at:g} s into the measured window.", ""]
    lines += ["Machine: " + "; ".join(f"{k} {v}" for k, v in bl.machine_facts()), ""]
    lines += [
        f"Server: `swooletw_echo.py --workers {args.reload_workers} --framing "
        f"{args.reload_framing} --reload-async true|false` (max_wait_time default 3 s). Load: "
        f"`loadgen --conns 50 --inflight 16 --size {args.reload_size} --reconnect --timeline "
        "100`: a connection the server closes is reconnected at once and its outstanding "
        "packets are sent again (their latency keeps the original send time); a failed "
        f"connect is counted and retried after 10 ms. Pinning as in the table above: server "
        f"`taskset -c {args.server_cpu}`, loadgen `taskset -c {args.load_cpu}`.",
        "",
        "Timing (all from SIGUSR1, ms): the runner polls /proc every ~5 ms (worker processes "
        "are the master's children whose /proc/PID/cmdline is `swooletw: worker N`). *old gone*: the last old worker has exited. *new "
        "up*: the last new worker has its title. *accepting*: every worker is new and each "
        "holds at least one connection. *answering* (the reload time): every worker is new and "
        "each new one has been seen echoing: it has sent data on a connection it holds "
        "(tcp_info bytes_acked > 0 of a socket in its /proc/PID/fd, read over "
        "NETLINK_SOCK_DIAG) or it answered a probe, whichever was seen first. Probes (one at a "
        "time, 5 ms apart, on fresh connections) are mainly there to catch refused connects: a "
        "probe goes to whichever worker wakes first, mostly an idle one, so probes alone would "
        "time a busy new worker late. "
        "Poll granularity ~5 ms. "
        "*refused connects*: loadgen's failed reconnects + "
        "refused probes, must be 0 (the master keeps the listening socket open). *closed by "
        "server*: loadgen connections the old workers closed on their way out (expected: "
        "connections belong to the worker that accepted them). *msgs/s*: from loadgen's "
        "100 ms bins; *before*: 2 s before SIGUSR1; *reload s*: the 1 s starting at SIGUSR1; "
        "*worst 100 ms*: lowest bin in that second; *after*: 2-4 s after SIGUSR1.",
        "",
    ]
    hdr = ["reload_async", "run", "old gone ms", "new up ms", "accepting ms", "answering ms",
           "refused connects", "closed by server", "msgs/s before", "msgs/s reload s",
           "worst 100 ms", "msgs/s after", "conns per worker before → after", "max latency ms"]
    lines += ["| " + " | ".join(hdr) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * (len(hdr) - 2))
              + "|"]
    notes = []
    for x in runs:
        cells = [x["reload_async"], str(x["run"])]
        if x.get("failed") or "loadgen" not in x:
            cells += ["–"] * (len(hdr) - 2)
            notes.append(f"reload_async {x['reload_async']} run {x['run']}: FAILED: "
                         f"{x.get('failed')}")
            lines.append("| " + " | ".join(cells) + " |")
            continue
        r = x["loadgen"]
        refused = r["connect_failures"] + x["probes"]["refused"]
        pct = lambda v: "" if not x["before"] or v is None else f" ({100 * (v / x['before'] - 1):+.0f}%)"  # noqa: E731
        cells += [_fmt(x["old_gone_ms"], 0), _fmt(x["new_titled_ms"], 0),
                  _fmt(x["accepting_ms"], 0),
                  _fmt(x["serving_ms"], 0) if x["serving_ms"] is not None else "not within "
                  f"{args.reload_timeout:g} s",
                  str(refused), str(r["server_closes"]),
                  _fmt(x["before"], 0), _fmt(x["reload_second"], 0) + pct(x["reload_second"]),
                  _fmt(x["worst_bin"], 0) + pct(x["worst_bin"]),
                  _fmt(x["after"], 0) + pct(x["after"]),
                  "/".join(map(str, x["conns_before"])) + " → " + "/".join(map(str, x["conns_after"])),
                  _fmt(r["max_us"] / 1000, 0)]
        lines.append("| " + " | ".join(cells) + " |")
        tag = f"reload_async {x['reload_async']} run {x['run']}"
        pw = "; ".join(f"{p['title'].replace('swooletw: ', '')} (pid {p['pid']}) titled at "
                       f"{_fmt(p['titled_ms'], 0)} ms, first connection {_fmt(p['first_conn_ms'], 0)}"
                       f" ms, sent its first echo bytes {_fmt(p['sent_ms'], 0)} ms, probe answered at "
                       f"{_fmt(p['answered_ms'], 0)} ms" for p in x["per_worker"])
        notes.append(f"{tag}: {pw}. Old workers gone at "
                     + ", ".join(f"{v:.0f}" for v in sorted(x["old_gone"].values())) + " ms. "
                     f"Probes: {x['probes']['ok']} answered, {x['probes']['closed']} closed by an "
                     f"old worker, {x['probes']['timeout']} timed out, {x['probes']['refused']} "
                     f"refused, {x['probes']['unowned']} answered by a process not found. loadgen: {r['reconnects']} reconnects (mean "
                     f"{r['reconnect_mean_us'] / 1000:.1f} ms, max {r['reconnect_max_us'] / 1000:.1f}"
                     f" ms from close to connected), {r['resent_packets']} packets resent, "
                     f"errors {r['errors']}, p99 over the window {r['p99_us'] / 1000:.1f} ms, "
                     f"loadgen CPU {r['loadgen_cpu_pct']:.0f}%. Runner CPU while watching: "
                     f"{x['runner_cpu_ms']:.0f} ms over {x['monitor_ms']:.0f} ms.")
        notes.append(f"{tag}: msgs/s in 100 ms bins from {x['bins_first_offset_ms']:+.0f} ms "
                     "(SIGUSR1 at 0): " + " ".join(f"{v / 1000:.0f}k" for v in x["bins_around"]))
    ok = [x for x in runs if "loadgen" in x]
    if ok:
        one = sum(1 for x in ok if x["conns_after"] and min(x["conns_after"] + [0] * (
            args.reload_workers - len(x["conns_after"]))) == 0)
        refused = sum(x["loadgen"]["connect_failures"] + x["probes"]["refused"] for x in ok)
        ans = [x["serving_ms"] for x in ok if x["serving_ms"] is not None]
        lines += ["", "Summary:", "",
                  "- reload time (all new workers answering): "
                  + (f"{min(ans):.0f}-{max(ans):.0f} ms" if ans else "–")
                  + f" over {len(ok)} runs; refused connects in total: {refused}; connections "
                  f"closed by the old workers per run: "
                  f"{min(x['loadgen']['server_closes'] for x in ok)}-"
                  f"{max(x['loadgen']['server_closes'] for x in ok)} (of 50 connections), all reconnected and "
                  "their packets resent (more than 50 when a connection reconnected to the old "
                  "worker retired next, with reload_async false).",
                  f"- after the reload, all connections were on one new worker in {one} of "
                  f"{len(ok)} runs (*conns per worker ... → after*): loadgen reconnects all 50 at "
                  "once and the first new worker to wake accepts the whole burst (Twisted accepts "
                  "up to 100 per wakeup), so with long-lived connections the other worker stays "
                  "idle and *msgs/s after* is what one worker does, until connections churn."]
    if notes:
        lines += ["", "Per run:", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- CLI
def add_args(ap):
    ap.set_defaults(time_budget=230.0)
    ap.add_argument("--part", choices=("all", "throughput", "reload"), default="all",
                    help="run the worker_num table, the reload measurement, or both (default)")
    ap.add_argument("--runs", type=int, default=None,
                    help="runs of each unpinned swooletw w1 and w2 row with eof framing "
                         "(default 3; quick 2); length framing gets one fewer (at least 1)")
    ap.add_argument("--repeat", type=int, default=None,
                    help="reload runs per reload_async value (default 2; quick 1)")
    ap.add_argument("--reload-modes", default="true,false",
                    help="reload_async values to run (default true,false)")
    ap.add_argument("--reload-at", type=float, default=3.0,
                    help="SIGUSR1 this many s into the measured window (default 3)")
    ap.add_argument("--reload-duration", type=float, default=8.0,
                    help="measured seconds of a reload run (default 8)")
    ap.add_argument("--reload-warmup", type=float, default=1.0)
    ap.add_argument("--reload-timeout", type=float, default=4.0,
                    help="stop watching a reload after this many s (default 4)")
    ap.add_argument("--reload-size", type=int, default=64)
    ap.add_argument("--reload-framing", choices=("eof", "length"), default="eof")
    ap.add_argument("--reload-workers", type=int, default=2)


def main(argv=None) -> int:
    args = bl.parse_args(SCENARIO, argv, add_args=add_args)
    if args.repeat is None:
        args.repeat = 1 if args.quick else 2
    if args.runs is None:
        args.runs = 2 if args.quick else 3
    if not 1 <= args.runs <= 10:
        print("--runs takes 1..10", file=sys.stderr)
        return 1
    SCENARIO.servers = servers(args.runs, max(1, args.runs - 1))
    modes = [m.strip() for m in args.reload_modes.split(",") if m.strip()]
    if any(m not in ("true", "false") for m in modes) or args.repeat < 1 or args.repeat > 10:
        print("--reload-modes takes true,false; --repeat 1..10", file=sys.stderr)
        return 1
    if not (0.5 <= args.reload_at <= args.reload_duration - 4.5):
        print("--reload-at must leave >= 4.5 s of the window after it (the 'after' rate "
              "covers 2-4 s after SIGUSR1)", file=sys.stderr)
        return 1
    rows = bl.plan(SCENARIO, args) if args.part in ("all", "throughput") else []
    reload_plan = ([(m, i) for m in modes for i in range(1, args.repeat + 1)]
                   if args.part in ("all", "reload") else [])
    if args.list:
        bl.list_rows(rows)
        for m, i in reload_plan:
            print(f"reload: swooletw w{args.reload_workers} {args.reload_framing} "
                  f"size={args.reload_size} reload_async={m} run {i}")
        return 0
    loadgen = bl.build_loadgen()
    started = bl.now_str()
    t0 = time.monotonic()
    command = bl.command_line(argv)
    per_reload = args.reload_warmup + args.reload_duration + 3
    if rows:
        bl.run_rows(SCENARIO, rows, args, loadgen, t0, reserve=per_reload * len(reload_plan))
    runs = []
    if reload_plan and need_swooletw():
        print(f"reload: skipped ({need_swooletw()})", file=sys.stderr)
        reload_plan = []
    for k, (mode, i) in enumerate(reload_plan, 1):
        x = reload_run(args, loadgen, mode, i)
        runs.append(x)
        if x.get("failed"):
            print(f"[reload {k}/{len(reload_plan)}] reload_async={mode} run {i}: FAILED "
                  f"{x['failed']}", file=sys.stderr)
        else:
            r = x["loadgen"]
            print(f"[reload {k}/{len(reload_plan)}] reload_async={mode} run {i}: answering after "
                  f"{_fmt(x['serving_ms'], 0)} ms (accepting {_fmt(x['accepting_ms'], 0)} ms, "
                  f"old gone {_fmt(x['old_gone_ms'], 0)} ms, new up "
                  f"{_fmt(x['new_titled_ms'], 0)} ms); refused {r['connect_failures']}+"
                  f"{x['probes']['refused']}, server closes {r['server_closes']}; msgs/s "
                  f"{_fmt(x['before'], 0)} -> {_fmt(x['reload_second'], 0)} -> "
                  f"{_fmt(x['after'], 0)}", file=sys.stderr)
    elapsed = time.monotonic() - t0
    if rows:
        bl.report(SCENARIO, rows, args, command, started, elapsed,
                  extra_json={"reload": runs} if runs else None)
    if runs:
        text = render_reload(runs, args, command, started, elapsed)
        print(text)
        if args.out and args.out != "-":
            key = "workers-reload" + ("-quick" if args.quick else "")
            bl.write_section(args.out, key, text)
            print(f"wrote section '{key}' of {args.out}", file=sys.stderr)
        if args.json and not rows:
            with open(args.json, "w") as f:
                json.dump({"reload": runs}, f, indent=1)
    failed = any(r.failed for r in rows) or any(x.get("failed") for x in runs)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
