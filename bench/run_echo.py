#!/usr/bin/env python3
"""Echo scenario: swooletw EOF/length echo vs bare Twisted and asyncio.

Servers (each pinned to --server-cpu, default 0):
  twisted LineReceiver         bench/servers/twisted_echo.py --framing eof
  twisted Int32StringReceiver  bench/servers/twisted_echo.py --framing length
  asyncio                      bench/servers/asyncio_echo.py (both framings)
  asyncio+uvloop               same with --uvloop (skipped if uvloop is missing)
  swooletw BASE                bench/servers/swooletw_echo.py --mode base (both framings;
                               skipped if `import swooletw; swooletw.Server` fails): one process
  swooletw PROCESS             same with --mode process (Swoole's default): a master + 1 worker
  swooletw (before)            with --baseline-tree PATH only: swooletw_echo.py --mode base with
                               PYTHONPATH=PATH, i.e. another checkout's swooletw (e.g. a
                               `git worktree` of an older commit), run back to back with the
                               rows above for a now-vs-before comparison
Loads: 50 connections x {64 B, 4 KiB} x {1, 16} packets in flight.

Usage (from anywhere):  python3 bench/run_echo.py [--quick] [--only NAME] ...
See bench/README.md and `--help`.
"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from benchlib import (BENCH_DIR, REPO_ROOT, Load, Scenario, ServerSpec, _fmt,  # noqa: E402
                      have_module, main, noisy_limit, render)

SRV = os.path.join(BENCH_DIR, "servers")
TW = "twisted_echo.py"
AIO = "asyncio_echo.py"
STW = "swooletw_echo.py"


def cmd(script, *extra):
    return ["{python}", os.path.join(SRV, script), "--port", "{port}", *extra]


SWOOLETW_ENV = {"PYTHONPATH": REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
need_uvloop = have_module("uvloop")
need_swooletw = have_module("swooletw", env=SWOOLETW_ENV, probe="swooletw.Server")

SERVERS = [
    ServerSpec("twisted LineReceiver", cmd(TW, "--framing", "eof"), "eof"),
    ServerSpec("twisted Int32StringReceiver", cmd(TW, "--framing", "length"), "length"),
    ServerSpec("asyncio", cmd(AIO, "--framing", "eof"), "eof"),
    ServerSpec("asyncio", cmd(AIO, "--framing", "length"), "length"),
    ServerSpec("asyncio+uvloop", cmd(AIO, "--framing", "eof", "--uvloop"), "eof",
               requires=need_uvloop),
    ServerSpec("asyncio+uvloop", cmd(AIO, "--framing", "length", "--uvloop"), "length",
               requires=need_uvloop),
]
TWISTED_OF = {"eof": "twisted LineReceiver", "length": "twisted Int32StringReceiver"}
BEFORE = "swooletw (before)"
for framing in ("eof", "length"):
    SERVERS += [
        # one process, as worker_num 1 was in either mode before 1ba3927
        ServerSpec("swooletw BASE", cmd(STW, "--framing", framing, "--mode", "base"), framing,
                   baseline=TWISTED_OF[framing], requires=need_swooletw, env=SWOOLETW_ENV),
        # Swoole's default mode: a master supervising 1 worker (the worker serves)
        ServerSpec("swooletw PROCESS", cmd(STW, "--framing", framing, "--mode", "process"),
                   framing, baseline=TWISTED_OF[framing], requires=need_swooletw,
                   env=SWOOLETW_ENV, ready_procs=2),
    ]

LOADS = [Load(size, inflight, 50) for size in (64, 4096) for inflight in (1, 16)]
QUICK_LOADS = [Load(64, 1, 50), Load(64, 16, 50), Load(4096, 16, 50)]

SCENARIO = Scenario(
    key="echo",
    title="Echo: swooletw vs bare Twisted vs asyncio",
    servers=SERVERS,
    loads=LOADS,
    quick_loads=QUICK_LOADS,
    ratio_title="CPU vs bare Twisted",
    notes=(
        "Closed loop: each of the connections keeps *inflight* packets outstanding; *size* is "
        "the whole packet on the wire (framing included). *server CPU µs/msg* = server "
        "utime+stime over the measured window / messages echoed in it. *CPU vs bare Twisted* "
        "= swooletw µs/msg ÷ the bare Twisted protocol with the same framing "
        "(eof: LineReceiver, length: Int32StringReceiver), same size and inflight; < 1 means "
        "swooletw uses less CPU per message. *swooletw BASE*: `Server(host, port, BASE)` with "
        "worker_num 1, one process serving. *swooletw PROCESS*: the default mode, a master "
        "supervising 1 worker that serves (both pinned to the server CPU); its CPU is the "
        "whole tree's."
    ),
)



def add_args(ap):
    ap.set_defaults(time_budget=600.0)  # 40 rows (48 with --baseline-tree) of ~7.5 s
    ap.add_argument("--baseline-tree", metavar="PATH",
                    help=f"also run rows '{BEFORE}': swooletw_echo.py --mode base with "
                         "PYTHONPATH=PATH (another checkout of the repo, e.g. a git worktree of an "
                         "older commit), each right before the same row of the current tree")


def configure(scenario, args):
    """--baseline-tree: add the '(before)' rows, each just before its 'swooletw BASE' row."""
    if not args.baseline_tree:
        return
    tree = os.path.abspath(args.baseline_tree)
    env = {"PYTHONPATH": tree + os.pathsep + os.environ.get("PYTHONPATH", "")}
    need = have_module("swooletw", env=env, probe="swooletw.Server")
    servers = []
    for s in scenario.servers:
        if s.name == "swooletw BASE":
            servers.append(ServerSpec(BEFORE, s.argv, s.framing, baseline=s.baseline,
                                      requires=need, env=env))
        servers.append(s)
    scenario.servers = servers
    rev = subprocess.run(["git", "-C", tree, "log", "-1", "--format=%h %s"],
                         capture_output=True, text=True, timeout=10).stdout.strip()
    scenario.notes += (f" *{BEFORE}*: the same server script and options as *swooletw BASE*, "
                       f"with swooletw imported from `{tree}`"
                       + (f" (commit {rev.split()[0]})" if rev else "") + ".")


def render_echo(scenario, rows, args, command, started, elapsed):
    """The common table, plus swooletw now vs before (with --baseline-tree)."""
    text = render(scenario, rows, args, command, started, elapsed)
    by = {(r.server.name, r.server.framing, r.load): r for r in rows if r.us_per_msg}
    lines, worse, ratios = [], [], {}

    def noisy(*rs):
        return any(x.result["other_cpu_pct"] > noisy_limit(args.duration) for x in rs)

    for r in rows:
        old = by.get((BEFORE, r.server.framing, r.load))
        if r.server.name != "swooletw BASE" or old is None:
            continue
        new, proc = by.get(("swooletw BASE", r.server.framing, r.load)), \
            by.get(("swooletw PROCESS", r.server.framing, r.load))
        cells = [r.server.framing, str(r.load.size), str(r.load.inflight),
                 _fmt(old.us_per_msg, 2)]
        for which, x in (("BASE", new), ("PROCESS", proc)):
            if x is None:
                cells += ["–", "–"]
                continue
            q = x.us_per_msg / old.us_per_msg
            flag = " (noisy)" if noisy(old, x) else ""
            ratios.setdefault(which, []).append(q)
            if q > 1.05:
                worse.append(f"{which} {r.server.framing} {r.load.size} B inflight "
                             f"{r.load.inflight} ({(q - 1) * 100:+.1f} %{', noisy' if flag else ''})")
            cells += [_fmt(x.us_per_msg, 2), f"**{q:.3f}×**{flag}"]
        # PROCESS: the part of its CPU the serving worker used (the rest is the master's)
        serving = [p for p in (proc.result.get("server_by_process") or []) if p["conns"]] \
            if proc else []
        share = (sum(p["cpu_pct"] for p in serving) / proc.result["server_cpu_pct"]
                 if serving and proc.result["server_cpu_pct"] else None)
        cells.append(f"{share * 100:.1f} %" if share is not None else "–")
        lines.append("| " + " | ".join(cells) + " |")
    if not lines:
        return text
    summary = []
    for which in ("BASE", "PROCESS"):
        qs = ratios.get(which)
        if qs:
            summary.append(f"*swooletw {which}* ÷ *{BEFORE}* is {min(qs):.3f}×–{max(qs):.3f}× "
                           f"on the {len(qs)} rows")
    verdict = ("; " .join(summary) + ": " +
               ("within 5 % or better on every row." if not worse
                else "more than 5 % worse on " + ", ".join(worse) + "."))
    return text + "\n".join([
        "", "### swooletw now vs before", "",
        f"Server CPU µs/msg of *swooletw BASE* (this tree, one process) and *swooletw PROCESS* "
        f"(this tree, master + 1 worker: the whole tree's CPU) ÷ *{BEFORE}* (one process), "
        "same framing, size and inflight, run back to back. *worker share*: the part of the "
        "PROCESS row's CPU used by the worker holding the connections. *(noisy)*: other "
        "processes were busy during one of the two rows (see the notes above).", "",
        "| framing | size B | inflight | before µs/msg | BASE µs/msg | BASE ÷ before | "
        "PROCESS µs/msg | PROCESS ÷ before | PROCESS worker share |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        *lines, "", "Result: " + verdict, ""])


SCENARIO.render = render_echo

if __name__ == "__main__":
    sys.exit(main(SCENARIO, add_args=add_args, configure=configure))
