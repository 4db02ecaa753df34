"""
A multi-process swooletw server driven by a line protocol, for
tests/test_workers.py.  Run as::

    python cmdserver.py '<json config>'

The config (all keys optional but C{settings}):

 - C{settings}: passed to C{serv.set()} (C{worker_num}, C{max_request},
   ...); the framing is always one command per line.
 - C{path}: directories put first on C{sys.path}.
 - C{stale_module}: imported here, before C{start()} (tutorial §11
   NoReload.php): a reload must not change it.
 - C{fresh_module}: imported inside C{workerStart} (Reload.php): a reload
   must pick up its new code.
 - C{fail_start}: C{{"worker": id, "times": n, "counter": path}}: that
   worker's C{workerStart} raises on its first C{n} runs.
 - C{announce_connect}: print a C{CONNECT} line for every connection a
   worker accepts (a positive signal for the tests, and an order marker in
   the output the master and the workers share).

Lines it prints (flushed) for the tests to parse:
C{PORT <port> MASTER <pid>} (C{start}), C{WORKERSTART <id> <pid>},
C{FAILSTART <id> <pid> <n>}, C{WORKERSTOP <id> <pid>}, C{WORKERERROR <id> <pid> <exit> <signal>},
C{CONNECT <worker id> <pid> <fd> <remote port>} (with C{announce_connect}),
C{SLOWSTART <worker id> <fd>}, C{SLOWEND <worker id> <fd>},
C{HANG <worker id> <pid>}, C{SHUTDOWN}.

One process writes each line with one C{write()} to the file all of them
share (one open file description, so one offset): the order of the lines
in the file is the order in which they were written.

Commands (one per line; every reply is one line):

 - C{id}: C{ID <worker_id> <pid> <fd>}
 - C{code}: C{CODE <fresh.value()> <stale.value()>}
 - C{list}: C{LIST <fd> <fd> ...} (C{serv.connections}, sorted)
 - C{exists <fd>}, C{send <fd> <text>}, C{close <fd>}: C{RESULT <bool>}
   (the relayed text arrives as C{MSG <text>})
 - C{info <fd>}: C{INFO <json of getClientInfo>}
 - C{broadcast <text>}: C{MSG <text>} to every connection, then
   C{BROADCAST <count>}
 - C{stats}: C{STATS <json of stats()>}
 - C{slow <path>}: an async callback that runs until the file C{path}
   exists (the test creates it when it wants the callback to end), then
   prints C{SLOWEND} and replies C{SLOW done <worker id>}
 - C{hang}: blocks the worker's reactor for 30 s (time.sleep: a hung
   worker is the behaviour under test; the watchdog kills it sooner)
 - C{later}: C{LATER <worker_id>}, sent from a C{callLater} on the reactor
   imported at module level before C{start()}
"""

import importlib
import json
import os
import sys
import time

sys.dont_write_bytecode = True
config = json.loads(sys.argv[1])
for directory in reversed(config.get("path", [])):
    sys.path.insert(0, directory)

stale = importlib.import_module(config["stale_module"]) if config.get("stale_module") else None

# A module-level reactor import before start(), as user code often has:
# in a forked worker it must reach that worker's reactor.
from twisted.internet import reactor as moduleReactor  # noqa: E402
from twisted.internet.task import deferLater  # noqa: E402

import swooletw  # noqa: E402

serv = swooletw.Server("127.0.0.1", 0)
serv.set(config["settings"])
serv.set(open_eof_split=True, package_eof="\n")
fresh = {}


def out(*words):
    # One write per line: the master and the workers share this file.
    sys.stdout.write(" ".join(str(word) for word in words) + "\n")
    sys.stdout.flush()


def on_start(serv):
    out("PORT", serv.port, "MASTER", os.getpid())


def on_worker_start(serv, worker_id):
    fail = config.get("fail_start")
    if fail and worker_id == fail["worker"]:
        try:
            with open(fail["counter"]) as f:
                count = int(f.read() or 0)
        except FileNotFoundError:
            count = 0
        count += 1
        with open(fail["counter"], "w") as f:
            f.write(str(count))
        if count <= fail["times"]:
            out("FAILSTART", worker_id, os.getpid(), count)
            raise RuntimeError(f"workerStart failure number {count}")
    if config.get("fresh_module"):
        fresh["module"] = importlib.import_module(config["fresh_module"])
    out("WORKERSTART", worker_id, os.getpid())


def on_worker_error(serv, worker_id, worker_pid, exit_code, signal):
    out("WORKERERROR", worker_id, worker_pid, exit_code, signal)


def on_worker_stop(serv, worker_id):
    out("WORKERSTOP", worker_id, os.getpid())


def on_shutdown(serv):
    out("SHUTDOWN")


async def slow(serv, fd, release):
    out("SLOWSTART", serv.worker_id, fd)
    # Runs until the test says so: poll (on the reactor, which keeps
    # serving) for the file the test creates.
    while not os.path.exists(release):
        await deferLater(serv.reactor, 0.01, lambda: None)
    out("SLOWEND", serv.worker_id, fd)
    serv.send(fd, f"SLOW done {serv.worker_id}\n")


def on_connect(serv, fd, reactor_id):
    if config.get("announce_connect"):
        out("CONNECT", serv.worker_id, os.getpid(), fd, serv.getClientInfo(fd)["remote_port"])


def on_receive(serv, fd, reactor_id, data):
    words = data.decode().strip().split(" ", 2)
    command, args = words[0], words[1:]
    if command == "id":
        reply = f"ID {serv.worker_id} {os.getpid()} {fd}"
    elif command == "code":
        freshValue = fresh["module"].value() if "module" in fresh else "-"
        staleValue = stale.value() if stale is not None else "-"
        reply = f"CODE {freshValue} {staleValue}"
    elif command == "list":
        reply = "LIST " + " ".join(str(c) for c in sorted(serv.connections))
    elif command == "exists":
        reply = f"RESULT {serv.exists(int(args[0]))}"
    elif command == "info":
        reply = "INFO " + json.dumps(serv.getClientInfo(int(args[0])))
    elif command == "send":
        reply = f"RESULT {serv.send(int(args[0]), 'MSG ' + args[1] + chr(10))}"
    elif command == "close":
        reply = f"RESULT {serv.close(int(args[0]))}"
    elif command == "broadcast":
        count = 0
        for other in serv.connections:
            count += bool(serv.send(other, "MSG " + args[0] + "\n"))
        reply = f"BROADCAST {count}"
    elif command == "stats":
        reply = "STATS " + json.dumps(serv.stats())
    elif command == "slow":
        return slow(serv, fd, args[0])
    elif command == "later":
        moduleReactor.callLater(0.01, serv.send, fd, f"LATER {serv.worker_id}\n")
        return None
    elif command == "hang":
        out("HANG", serv.worker_id, os.getpid())
        time.sleep(30)  # blocks the reactor on purpose: a hung worker
        reply = "HUNG"
    else:
        reply = f"UNKNOWN {command}"
    serv.send(fd, reply + "\n")


serv.on("start", on_start)
serv.on("workerStart", on_worker_start)
serv.on("workerError", on_worker_error)
serv.on("workerStop", on_worker_stop)
serv.on("shutdown", on_shutdown)
serv.on("connect", on_connect)
serv.on("receive", on_receive)
sys.exit(0 if serv.start() else 1)
