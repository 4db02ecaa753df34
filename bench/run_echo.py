#!/usr/bin/env python3
"""Echo scenario: swooletw EOF/length echo vs bare Twisted and asyncio.

Servers (each pinned to --server-cpu, default 0):
  twisted LineReceiver         bench/servers/twisted_echo.py --framing eof
  twisted Int32StringReceiver  bench/servers/twisted_echo.py --framing length
  asyncio                      bench/servers/asyncio_echo.py (both framings)
  asyncio+uvloop               same with --uvloop (skipped if uvloop is missing)
  swooletw                     bench/servers/swooletw_echo.py (both framings;
                               skipped if `import swooletw; swooletw.Server` fails)
Loads: 50 connections x {64 B, 4 KiB} x {1, 16} packets in flight.

Usage (from anywhere):  python3 bench/run_echo.py [--quick] [--only NAME] ...
See bench/README.md and `--help`.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from benchlib import BENCH_DIR, REPO_ROOT, Load, Scenario, ServerSpec, have_module, main  # noqa: E402

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
    ServerSpec("swooletw", cmd(STW, "--framing", "eof"), "eof",
               baseline="twisted LineReceiver", requires=need_swooletw, env=SWOOLETW_ENV),
    ServerSpec("swooletw", cmd(STW, "--framing", "length"), "length",
               baseline="twisted Int32StringReceiver", requires=need_swooletw, env=SWOOLETW_ENV),
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
        "swooletw uses less CPU per message."
    ),
)

if __name__ == "__main__":
    sys.exit(main(SCENARIO))
