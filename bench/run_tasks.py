#!/usr/bin/env python3
"""Tasks scenario: swooletw task workers, tasks accepted and finished per second.

Server: bench/servers/swooletw_tasks.py (EOF framing, task_worker_num 2): the
receive callback calls serv.task(packet) and replies with the task id, at once
or, with a journal, once serv.taskStored(task_id) fired (accept fast, work
later, as the tutorial's mail server); the task handler
returns its data; the finish callback counts finished tasks in a shared
counters file that the runner reads without disturbing the server.

Rows: task_worker_mode thread | process  x  task_store none | sqlite:<tmp>/tasks.db
(a fresh file per row, removed after)  x  worker_num 1 | 2 (--workers), and with
--old REV the same rows for swooletw as of git revision REV, in the same run.
Load: loadgen --reply line, 50 connections x 16 packets in flight, 64 B
packets, closed loop: each reply (a task id) lets the connection send the
next packet, so loadgen measures acceptance; the counters measure finishing
over the same window, the backlog left at its end, and how long the server
takes to drain it once the load stops.

Usage (from anywhere):  python3 bench/run_tasks.py [--quick] [--only NAME] [--workers 1,2] ...
See bench/README.md and `--help`.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import benchlib as bl  # noqa: E402
from benchlib import BENCH_DIR, REPO_ROOT, Load, Scenario, ServerSpec, _fmt, have_module  # noqa: E402

SRV = os.path.join(BENCH_DIR, "servers", "swooletw_tasks.py")
SWOOLETW_ENV = {"PYTHONPATH": REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
need_swooletw = have_module("swooletw", env=SWOOLETW_ENV, probe="swooletw.Server")
TASK_WORKERS = 2
SLOT = 64  # bytes per worker in the counters file (see servers/swooletw_tasks.py)
DEFAULT_QUEUE_MAX = 1 << 20
UNPINNED = "0-1"
MIN_DRAIN_S = 0.5  # a shorter drain gives no finishing rate


@dataclass
class TaskSpec(ServerSpec):
    mode: str = "thread"
    store: bool = False
    workers: int = 1
    run: int = 1
    code: str = ""  # "": this checkout; else the git revision of the swooletw used

    @property
    def config(self) -> tuple:
        return (self.workers, self.mode != "thread", self.store, self.code)


def spec(mode: str, store: bool, workers: int, queue_max: int, run: int = 1,
         code: str = "", tree: str = REPO_ROOT) -> TaskSpec:
    name = f"{mode} {'sqlite' if store else 'no store'} w{workers}{' ' + code if code else ''} #{run}"
    procs = 1 if workers == 1 and mode == "thread" else (
        1 + workers + (TASK_WORKERS if mode == "process" else 0))
    env = {"PYTHONPATH": tree + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return TaskSpec(name, ["{python}", SRV, "--port", "{port}", "--mode", mode,
                           "--workers", str(workers), "--task-workers", str(TASK_WORKERS),
                           "--queue-max", str(queue_max)],
                    "eof", requires=need_swooletw, env=env, ready_procs=procs,
                    mode=mode, store=store, workers=workers, run=run, code=code)


def servers(workers: list, queue_max: int, runs: int = 1, old: tuple = ()) -> list:
    """Every configuration once, then again for each further run: the runs of one
    configuration are spread over the whole command, not back to back.  With `old`
    (revision, source tree), each configuration runs with that code right after this
    checkout's."""
    codes = [("", REPO_ROOT)] + ([old] if old else [])
    return [spec(mode, store, w, queue_max, k, code, tree) for k in range(1, runs + 1)
            for w in workers for mode in ("thread", "process") for store in (False, True)
            for code, tree in codes]


def export_tree(rev: str) -> tuple:
    """(short revision, a temporary directory holding swooletw/ as of `rev`)."""
    short = subprocess.run(["git", "-C", REPO_ROOT, "rev-parse", "--short", rev], check=True,
                           capture_output=True, text=True).stdout.strip()
    tree = tempfile.mkdtemp(prefix="swooletw-bench-old-")
    archive = subprocess.run(["git", "-C", REPO_ROOT, "archive", rev, "swooletw"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", tree], input=archive, check=True)
    return short, tree


# --------------------------------------------------------------------------- one row
def read_counters(path: str, workers: int) -> dict:
    """Sum of the per-worker slots (accepted, refused, finished, failed, GC ns, GC
    generation-2 count) and the longest GC pause of any worker."""
    fd = os.open(path, os.O_RDONLY)
    try:
        raw = os.pread(fd, SLOT * workers, 0)
    finally:
        os.close(fd)
    out = {"accepted": 0, "refused": 0, "finished": 0, "failed": 0, "gc_ns": 0, "gc_max_ns": 0,
           "gc2": 0}
    for w in range(workers):
        a, r, f, x, g, gmax, g2, _ = struct.unpack_from("=8Q", raw, SLOT * w)
        out["accepted"] += a
        out["refused"] += r
        out["finished"] += f
        out["failed"] += x
        out["gc_ns"] += g
        out["gc_max_ns"] = max(out["gc_max_ns"], gmax)
        out["gc2"] += g2
    out["t"] = time.monotonic()
    return out


def done(c: dict) -> int:
    return c["finished"] + c["failed"]


def rss_kb(pids) -> int:
    """Sum of VmRSS over pids (shared pages of forked processes count in each)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    return total


def ask(port: int, packet: bytes, timeout: float = 3.0) -> bytes:
    """Send one packet on a fresh connection, return the reply line."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(packet)
        buf = b""
        deadline = time.monotonic() + timeout
        while not buf.endswith(b"\n") and time.monotonic() < deadline:
            chunk = s.recv(1 << 20)
            if not chunk:
                break
            buf += chunk
        return buf


def run_one(row, args, loadgen: str, log_name: str) -> None:
    sp: TaskSpec = row.server
    load = row.load
    port = bl.free_port()
    tmp = tempfile.mkdtemp(prefix="swooletw-bench-tasks-", dir=args.tmpdir)
    counters = os.path.join(tmp, "counters")
    argv = [a.format(port=port, python=bl.PY) for a in sp.argv] + ["--counters", counters]
    if sp.store:
        argv += ["--store", os.path.join(tmp, "tasks.db")]
    env = dict(os.environ)
    env.update(sp.env)
    os.makedirs(bl.LOG_DIR, exist_ok=True)
    log_path = os.path.join(bl.LOG_DIR, log_name)
    srv = None
    try:
        with open(log_path, "wb") as log:
            srv = subprocess.Popen(["taskset", "-c", str(sp.server_cpu or args.server_cpu)] + argv,
                                   stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   env=env, cwd=REPO_ROOT)
        err = bl.wait_port(port, srv)
        if not err and sp.ready_procs > 1:
            err = bl.wait_procs(srv.pid, sp.ready_procs, title_prefix="swooletw: ")
        where = f" (log: {os.path.relpath(log_path, REPO_ROOT)})"
        if err:
            row.failed = err + where
            return
        # readiness: one task through the whole pipeline (accepted, run, finished)
        try:
            reply = ask(port, b"probe\r\n")
        except OSError as e:
            row.failed = f"probe task: {e}" + where
            return
        if not reply[:1].isdigit():
            row.failed = f"probe task not accepted: {reply[:100]!r}" + where
            return
        deadline = time.monotonic() + 10
        while done(read_counters(counters, sp.workers)) < 1:
            if time.monotonic() > deadline or srv.poll() is not None:
                row.failed = "probe task did not finish within 10 s" + where
                return
            time.sleep(0.02)
        time.sleep(0.1)

        lg_cmd = ["taskset", "-c", str(sp.load_cpu or args.load_cpu), loadgen,
                  "--host", "127.0.0.1", "--port", str(port),
                  "--conns", str(load.conns), "--inflight", str(load.inflight),
                  "--size", str(load.size), "--framing", "eof", "--reply", "line",
                  "--duration", str(args.duration), "--warmup", str(args.warmup)]
        # the lifecycle span starts here: backlog 0 (the probe has finished)
        snaps = {"LOAD_START": bl.snapshot(srv.pid)}
        ctrs = {"LOAD_START": read_counters(counters, sp.workers)}
        rss = {"LOAD_START": rss_kb(snaps["LOAD_START"]["tree"])}
        lg = subprocess.Popen(lg_cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
        watchdog = threading.Timer(args.warmup + args.duration + 15, lg.kill)
        watchdog.start()
        other, stats_end = [], None
        try:
            for raw in lg.stderr:
                line = raw.decode(errors="replace").strip()
                if line in ("MEASURE_START", "MEASURE_END"):
                    snaps[line] = bl.snapshot(srv.pid)
                    ctrs[line] = read_counters(counters, sp.workers)
                    rss[line] = rss_kb(snaps[line]["tree"])
                    if line == "MEASURE_START":
                        snaps[line]["conns"] = bl.conns_by_pid(snaps[line]["tree"], port)
                    else:
                        try:
                            stats_end = json.loads(ask(port, b"STATS\r\n"))
                        except (OSError, ValueError) as e:
                            stats_end = {"error": str(e)}
                elif line:
                    other.append(line)
            out = lg.stdout.read().decode(errors="replace")
            lg.wait()
        finally:
            watchdog.cancel()
        res = bl.loadgen_result(lg, out, other, row,
                                measured="MEASURE_END" in snaps and "MEASURE_START" in snaps)
        if res is None:
            return

        # drain: the load has stopped; wait (bounded) until every accepted task finished
        t_end = time.monotonic()
        drain_deadline = t_end + args.drain_timeout
        while True:
            c = read_counters(counters, sp.workers)
            if done(c) >= c["accepted"] or time.monotonic() >= drain_deadline or srv.poll() is not None:
                break
            time.sleep(0.02)
        snaps["DRAINED"] = bl.snapshot(srv.pid)
        ctrs["DRAINED"] = c
        left = c["accepted"] - done(c)

        if srv.poll() is not None:
            res["server_exited"] = srv.returncode
        a, b, z = snaps["MEASURE_START"], snaps["MEASURE_END"], snaps["DRAINED"]
        ca, cb, c0 = ctrs["MEASURE_START"], ctrs["MEASURE_END"], ctrs["LOAD_START"]
        secs = res["seconds"] or 1e-9
        d = bl.tree_delta(a, b)
        res["server_cpu_s"] = d["cpu"] / bl.CLK_TCK
        res["server_user_s"] = d["user"] / bl.CLK_TCK
        res["server_cpu_pct"] = 100.0 * res["server_cpu_s"] / secs
        res["server_minflt"] = d["minflt"]
        res["server_procs"] = b["pids"]
        res["machine_cpu_pct"] = 100.0 * (b["busy"] - a["busy"]) / bl.CLK_TCK / secs
        res["server_by_process"] = bl.per_process(a, b, secs)
        busy_other = (b["busy"] - a["busy"]) / bl.CLK_TCK - res["server_cpu_s"] - res["loadgen_cpu_s"]
        res["other_cpu_pct"] = 100.0 * busy_other / secs
        res["loadgen_stderr"] = other
        # tasks
        res["accepted_per_s"] = (res["msgs"] - res["replies_other"]) / secs
        res["refused_window"] = res["replies_other"]
        res["server_accepted_window"] = cb["accepted"] - ca["accepted"]
        res["server_refused_total"] = cb["refused"]
        res["finished_window"] = done(cb) - done(ca)
        res["finished_per_s"] = res["finished_window"] / secs
        res["failed_total"] = c["failed"]
        res["backlog_start"] = ca["accepted"] - done(ca)
        res["backlog_end"] = cb["accepted"] - done(cb)
        res["stats_end"] = stats_end
        res["drained"] = left == 0
        res["drain_s"] = (c["t"] - t_end) if left == 0 else None
        res["drain_left"] = left
        # finishing alone (no accepting): only over a drain long enough to mean something
        res["drain_per_s"] = ((done(c) - done(cb)) / (c["t"] - cb["t"])
                              if c["t"] - cb["t"] >= MIN_DRAIN_S else None)
        # lifecycle cost: from load start (backlog 0) to drained (backlog 0): every task
        # accepted in the span also finished in it
        dz = bl.tree_delta(snaps["LOAD_START"], z)
        res["span_cpu_s"] = dz["cpu"] / bl.CLK_TCK
        res["span_tasks"] = done(c) - done(c0)
        res["span_accepted"] = c["accepted"] - c0["accepted"]
        res["span_s"] = c["t"] - c0["t"]
        res["cpu_us_per_task"] = (res["span_cpu_s"] * 1e6 / res["span_tasks"]
                                  if res["span_tasks"] else None)
        res["cpu_estimated"] = False
        if left > 0:
            # not drained in time: add the finishing of the tasks left at the CPU per task
            # finished during the drain phase (no accepting then), over the tasks accepted
            dd = bl.tree_delta(b, z)
            fin_drain = done(c) - done(cb)
            res["drain_cpu_us_per_task"] = (dd["cpu"] / bl.CLK_TCK * 1e6 / fin_drain
                                            if fin_drain else None)
            if fin_drain and res["span_accepted"]:
                res["cpu_us_per_task"] = ((res["span_cpu_s"] * 1e6
                                           + left * res["drain_cpu_us_per_task"])
                                          / res["span_accepted"])
                res["cpu_estimated"] = True
        res["gc_ms_window"] = (cb["gc_ns"] - ca["gc_ns"]) / 1e6
        res["gc2_window"] = cb["gc2"] - ca["gc2"]
        res["gc_max_ms"] = cb["gc_max_ns"] / 1e6  # longest pause from start to window end
        res["rss_kb"] = rss
        res["rss_growth_mb"] = (rss["MEASURE_END"] - rss["LOAD_START"]) / 1024
        if sp.store:
            res["store"] = "sqlite:" + os.path.join(tmp, "tasks.db")
        row.result = res
    finally:
        if srv is not None:
            bl.stop_server(srv)
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------- report
def config_name(sp) -> str:
    return (f"{sp.mode}, {'sqlite' if sp.store else 'no store'}, worker_num {sp.workers}"
            + (f", code {sp.code}" if sp.code else ""))


def render(scenario, rows, args, command, started, elapsed):
    lines = [f"## {scenario.title}" + (" (quick)" if args.quick else ""), ""]
    load = rows[0].load if rows else Load(64, 16, 50)
    tmpdir = args.tmpdir or tempfile.gettempdir()
    pinning = (" (unpinned: both share the 2 CPUs)" if args.server_cpu == args.load_cpu == UNPINNED
               else "")
    lines += [f"Command (from the repo root): `{command}`", "",
              f"Date: {started}; wall time {elapsed:.0f} s; per row {args.warmup:g} s warmup + "
              f"{args.duration:g} s measured window, then up to {args.drain_timeout:g} s of "
              f"drain; {load.conns} connections × {load.inflight} packets in flight, "
              f"{load.size} B packets (EOF framing), closed loop; `task_worker_num` "
              f"{TASK_WORKERS}, `task_queue_max` {args.queue_max:,}; {args.runs} run(s) of each "
              f"configuration, spread over the command (`#k`). Pinning: server (all its "
              f"processes and threads) `taskset -c {args.server_cpu}`, loadgen `taskset -c "
              f"{args.load_cpu}`{pinning}.", ""]
    lines += ["Machine: " + "; ".join(f"{k} {v}" for k, v in bl.machine_facts())
              + f"; journal files in {tmpdir} ({fs_type(tmpdir)})", ""]
    lines += [scenario.notes.strip(), ""]
    hdr = ["code", "task_worker_mode", "task_store", "worker_num", "run", "accepted/s", "finished/s",
           "backlog at end", "task_queue_num at end", "drained after", "refused",
           "p50 accept ms", "p99 accept ms", "server CPU µs/task", "server CPU %",
           "loadgen CPU %", "worker GC ms (longest)", "RSS growth MB"]
    lines += ["| " + " | ".join(hdr) + " |",
              "|" + "|".join(["---"] * 4 + ["---:"] * (len(hdr) - 4)) + "|"]
    notes = []
    ordered = sorted(rows, key=lambda r: (r.server.config, r.server.run))
    for r in ordered:
        sp = r.server
        cells = [sp.code or "this", sp.mode, "sqlite" if sp.store else "none", str(sp.workers),
                 str(sp.run)]
        where = sp.name
        if r.skipped:
            notes.append(f"{where}: skipped: {r.skipped}")
            continue
        if not r.result:
            cells += ["–"] * (len(hdr) - len(cells))
            notes.append(f"{where}: FAILED: {r.failed}")
            lines.append("| " + " | ".join(cells) + " |")
            continue
        x = r.result
        st = x.get("stats_end") or {}
        q = st.get("task_queue_num")
        drained = (f"{x['drain_s']:.2f} s" if x["drained"]
                   else f"not in {args.drain_timeout:g} s ({x['drain_left']:,} left)")
        cpu = _fmt(x["cpu_us_per_task"], 0)
        cells += [_fmt(x["accepted_per_s"], 0), _fmt(x["finished_per_s"], 0),
                  _fmt(x["backlog_end"]), _fmt(q) if q is not None else "–", drained,
                  _fmt(x["refused_window"]), _fmt(x["p50_us"] / 1000, 1), _fmt(x["p99_us"] / 1000, 1),
                  ("≈" + cpu) if x.get("cpu_estimated") else cpu, _fmt(x["server_cpu_pct"], 0),
                  _fmt(x["loadgen_cpu_pct"], 0),
                  f"{x['gc_ms_window']:,.0f} ({x['gc_max_ms']:,.0f})", _fmt(x["rss_growth_mb"], 0)]
        lines.append("| " + " | ".join(cells) + " |")
        procs = x.get("server_by_process") or []
        proc_txt = ("; server processes: " + ", ".join(
            f"{p['title'].replace('swooletw: ', '') or p['pid']} {p['cpu_pct']:.0f}%"
            + (f" ({p['conns']} conns)" if p["conns"] else "") for p in procs)
            if len(procs) > 1 else "")
        notes.append(
            f"{where}: in the window {x['server_accepted_window']:,} accepted by the server "
            f"({x['msgs'] - x['replies_other']:,} task ids received by loadgen), "
            f"{x['finished_window']:,} finished, backlog {x['backlog_start']:,} → "
            f"{x['backlog_end']:,}; machine CPU {x['machine_cpu_pct']:.0f}% of 200"
            f"{proc_txt}; {x['gc2_window']} generation-2 collections; after the load: finished "
            + (f"{x['drain_per_s']:,.0f} tasks/s" if x.get("drain_per_s") else "–")
            + (f" (server CPU {x['drain_cpu_us_per_task']:.0f} µs per task finished)"
               if x.get("drain_cpu_us_per_task") else "")
            + f"; span {x['span_s']:.1f} s, {x['span_accepted']:,} tasks accepted, "
            f"{x['span_tasks']:,} finished, {x['span_cpu_s']:.2f} s server CPU; stats() at "
            f"end: tasking_num {st.get('tasking_num', '–')}, task_queue_num "
            f"{st.get('task_queue_num', '–')}")
        if x["refused_window"] or x["server_refused_total"]:
            notes.append(f"{where}: {x['server_refused_total']:,} tasks refused by task() "
                         f"(task_queue_max {args.queue_max:,}), {x['refused_window']:,} of them "
                         "in the window; the CPU spent refusing is in server CPU µs/task, which "
                         "divides by accepted tasks only")
        if x.get("failed_total"):
            notes.append(f"{where}: {x['failed_total']:,} tasks failed")
        notes.extend(bl.error_and_noise_notes(where, x, r.load.conns, args.duration))
        if x["loadgen_cpu_pct"] > bl.LOADGEN_BUSY_PCT:
            notes.append(f"{where}: loadgen used {x['loadgen_cpu_pct']:.0f}% of a CPU, it may "
                         "have limited the rate")
        if "server_exited" in x:
            notes.append(f"{where}: server exited ({x['server_exited']}) during the run")
        if not x["drained"]:
            notes.append(f"{where}: backlog not drained within --drain-timeout "
                         f"{args.drain_timeout:g} s; ≈ server CPU µs/task adds the "
                         f"{x['drain_left']:,} tasks left at the drain phase's CPU per finished "
                         "task")
    # summary per configuration: ranges over the runs
    summary = []
    groups = {}
    for r in ordered:
        if r.result:
            groups.setdefault(r.server.config, []).append(r)
    for cfg, g in groups.items():
        rng = lambda key, nd=0: _range([r.result[key] for r in g], nd)  # noqa: E731
        lag = [r.result["backlog_end"] - r.result["backlog_start"] for r in g]
        summary.append(
            f"- {config_name(g[0].server)}: accepted {rng('accepted_per_s')}/s, finished "
            f"{rng('finished_per_s')}/s during the load; backlog "
            + ("grew by " + _range(lag) if min(lag) > 0 else "changed by " + _range(lag))
            + " over the window; "
            + (f"after the load (finishing only) {rng('drain_per_s')} tasks/s; "
               if any(r.result.get("drain_per_s") for r in g) else "")
            + "server CPU "
            f"{_range([r.result['cpu_us_per_task'] for r in g if r.result['cpu_us_per_task']])} "
            "µs/task")
    summary += journal_ratios(ordered)
    if summary:
        lines += ["", f"Summary (ranges over the {args.runs} run(s) of each configuration):",
                  ""] + summary
    if notes:
        lines += ["", "Per row and other notes (server processes: CPU % of one CPU over the "
                  "window, connections held):", ""] + [f"- {n}" for n in dict.fromkeys(notes)]
    return "\n".join(lines) + "\n"


def journal_ratios(rows) -> list:
    """Per mode, worker_num and code: the journal rows' rates ÷ those of the rows without it
    from the same round (#k with #k: measured next to each other)."""
    by = {(r.server.mode, r.server.workers, r.server.code, r.server.run, r.server.store): r.result
          for r in rows if r.result}
    out = []
    for mode, workers, code in dict.fromkeys(k[:3] for k in by):
        pairs = [(by[k[:4] + (True,)], by[k[:4] + (False,)]) for k in by
                 if k[:3] == (mode, workers, code) and k[4]
                 and k[:4] + (False,) in by]
        if not pairs:
            continue
        ratio = lambda key: _range([j[key] / n[key] for j, n in pairs if n[key]], 2)  # noqa: E731
        out.append(f"- {mode}, worker_num {workers}" + (f", code {code}" if code else "")
                   + f": with the journal ÷ without (same round): accepted/s {ratio('accepted_per_s')}, "
                   f"finished/s {ratio('finished_per_s')}")
    return out


def _range(values, nd=0) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    lo, hi = min(values), max(values)
    if round(lo, nd) == round(hi, nd):
        return f"{lo:,.{nd}f}"
    return f"{lo:,.{nd}f}" + (" to " if lo < 0 else "–") + f"{hi:,.{nd}f}"


def fs_type(path: str) -> str:
    try:
        out = subprocess.run(["df", "-T", path], capture_output=True, text=True, timeout=10).stdout
        return out.splitlines()[1].split()[1]
    except (OSError, subprocess.SubprocessError, IndexError):
        return "unknown fs"


NOTES = (
    "Server: `bench/servers/swooletw_tasks.py`: EOF framing, `task_worker_num` 2; the receive "
    "callback calls `serv.task(packet)` (the 64 B packet as bytes) and replies with the task id "
    "(`refused` when `task()` returns False): at once without a journal; with one, once "
    "`serv.taskStored(task_id)` fired (the task is on disk; the ids confirmed in one reactor "
    "turn go out in one send per connection), except for code without `taskStored`, which "
    "wrote the journal inside `task()` and replies at once; the task handler returns its data; "
    "the finish callback counts. *code*: `this` is the checkout the command ran from, a "
    "revision is `--old REV`'s swooletw (`git archive`), run right after the same "
    "configuration of this checkout. The counters live in a small file each worker maps shared and "
    "writes its own slot of, read by the runner at will; a `STATS` packet returns `stats()`. "
    "Load: `loadgen --reply line` (a reply is any line; one that does not start with a digit "
    "counts as refused). *accepted/s*: replies with a task id in loadgen's window ÷ window. "
    "*finished/s*: tasks that reached `finish` in the same window ÷ window. *backlog at end*: "
    "tasks accepted but not finished at the end of the window (from the counters). "
    "*task_queue_num at end*: `stats()` asked right then on a fresh connection (the worker "
    "that takes it; other workers and, for the process kind, the master's queue as of their "
    "last ping, ≤ 1 s old). *drained after*: from the end of the load until every accepted "
    "task had finished (polled every 20 ms). *refused*: `task()` refusals in the window "
    "(`task_queue_max` {qmax}: set large so the finite run never refuses; the default is "
    "65536). *p50/p99 accept ms*: loadgen's latency from sending a packet to its task-id "
    "reply, including queueing behind the connection's 15 other packets: with 800 packets "
    "in flight, p50 is close to 800 ÷ accepted/s (Little's law). *server CPU "
    "µs/task*: utime+stime of the server's whole process tree (master, workers, task worker "
    "processes, task threads) from the start of the load (backlog 0) until the backlog is "
    "drained (0 again), ÷ the tasks accepted and finished in that span: accepting and "
    "finishing included, whatever the lag (≈: not drained within the drain time; the tasks "
    "left are added at the CPU per task the server used while only finishing, after the "
    "load). *server CPU %*: over the window, % of one CPU "
    "(up to 200). *worker GC ms (longest)*: time the worker processes spent in Python's "
    "cyclic garbage collector during the window, summed over workers (a `gc.callbacks` hook; "
    "the whole process, task threads included, waits meanwhile), and in brackets the longest "
    "single collection from start to the window's end. *RSS growth*: summed VmRSS of the server's processes at the end of the "
    "window minus before the load (mostly the backlog; forked processes' shared pages count "
    "in each)."
)

SCENARIO = Scenario(
    key="tasks",
    title="Tasks: accepted and finished per second (thread and process task workers, "
          "with and without the SQLite journal)",
    servers=servers([1, 2], DEFAULT_QUEUE_MAX),
    loads=[Load(64, 16, 50)],
    notes=NOTES,
    duration=3.0,
    server_cpu=UNPINNED,
    load_cpu=UNPINNED,
    render=render,
    run_one=run_one,
    row_overhead=6.0,
)


def add_args(ap):
    ap.set_defaults(time_budget=180.0)
    ap.add_argument("--runs", type=int, default=None,
                    help="runs of each configuration (default 2; quick 1), spread over the "
                         "command")
    ap.add_argument("--workers", default="1,2",
                    help="worker_num values, comma-separated (default 1,2)")
    ap.add_argument("--queue-max", type=int, default=DEFAULT_QUEUE_MAX,
                    help=f"task_queue_max (default {DEFAULT_QUEUE_MAX}: no refusals in a "
                         "bounded run; 65536 is the setting's default)")
    ap.add_argument("--drain-timeout", type=float, default=5.0,
                    help="after the load, wait at most S s for the backlog to finish (default 5; "
                         "a row not drained by then has its CPU per task extrapolated)")
    ap.add_argument("--tmpdir", default=None,
                    help="where the per-row journal and counters files go (default: the system's)")
    ap.add_argument("--old", metavar="REV", default=None,
                    help="also run every configuration with swooletw as of git revision REV "
                         "(exported to a temporary directory), in the same run")


def main(argv=None) -> int:
    args = bl.parse_args(SCENARIO, argv, add_args=add_args)
    try:
        workers = [int(w) for w in args.workers.split(",") if w.strip()]
    except ValueError:
        workers = []
    if not workers or any(not 1 <= w <= 8 for w in workers):
        print("--workers takes worker_num values 1..8, e.g. 1,2", file=sys.stderr)
        return 1
    if args.runs is None:
        args.runs = 1 if args.quick else 2
    if args.queue_max < 1 or not 0 < args.drain_timeout <= 60 or not 1 <= args.runs <= 10:
        print("--queue-max >= 1, --drain-timeout in (0, 60], --runs 1..10", file=sys.stderr)
        return 1
    old = export_tree(args.old) if args.old else ()
    try:
        return run(args, workers, old, argv)
    finally:
        if old:
            shutil.rmtree(old[1], ignore_errors=True)


def run(args, workers: list, old: tuple, argv) -> int:
    SCENARIO.servers = servers(workers, args.queue_max, args.runs, old)
    SCENARIO.notes = NOTES.replace("{qmax}", f"{args.queue_max:,}")
    rows = bl.plan(SCENARIO, args)
    if args.list:
        bl.list_rows(rows)
        return 0
    loadgen = bl.build_loadgen()
    started = bl.now_str()
    t0 = time.monotonic()
    command = bl.command_line(argv)
    bl.run_rows(SCENARIO, rows, args, loadgen, t0)
    for r in rows:
        x = r.result
        if x:
            print(f"  {r.server.name}: accepted {x['accepted_per_s']:,.0f}/s finished "
                  f"{x['finished_per_s']:,.0f}/s backlog {x['backlog_end']:,} drained "
                  f"{_fmt(x['drain_s'], 2)} s CPU {_fmt(x['cpu_us_per_task'], 1)} µs/task "
                  f"refused {x['refused_window']}", file=sys.stderr)
    elapsed = time.monotonic() - t0
    bl.report(SCENARIO, rows, args, command, started, elapsed)
    return 1 if any(r.failed for r in rows) else 0

if __name__ == "__main__":
    sys.exit(main())
