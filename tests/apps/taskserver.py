"""
A multi-process swooletw server with task workers, driven by a line
protocol, for tests/test_taskprocs.py.  Run as::

    python taskserver.py '<json config>'

The config: C{settings} (passed to C{serv.set()}, e.g. C{worker_num},
C{task_worker_num}, C{task_worker_mode}); C{record}: a file each C{record}
task appends its data to (one line, one C{os.write}).

Lines it prints (flushed; master, workers and task workers share the
file): C{PORT <port> MASTER <pid>}, C{WORKERSTART <id> <pid>},
C{ROLE <id> <pid> <serv.taskworker> <serv.worker_id>},
C{WORKERSTOP <id> <pid>}, C{WORKERERROR <id> <pid> <exit> <signal>},
C{TASKSTART <tag> <task id> <worker id> <pid> <time>},
C{TASKEND <tag> <task id> <worker id> <pid> <time>},
C{FINISHED <worker id> <task id> <outcome>} (in the asker's C{finish}),
C{SHUTDOWN}.

Commands (one per line; the first reply is one line):

 - C{id}: C{ID <worker_id> <pid> <fd>}
 - C{task <json>}: C{TASKID <worker id> <id or False>}; later the result
   comes as C{FINISH <task id> <outcome>} from the C{finish} event
 - C{tasks <n> <json>}: C{n} tasks at once (a list of JSON data);
   C{TASKIDS <json list of ids>}, then one C{FINISH} per result
 - C{taskcb <json>}: as C{task} with a callback: C{CALLBACK <id> <outcome>}
 - C{taskwait <timeout> <json>}: C{WAIT <outcome>}
 - C{multi <timeout> <json list>}: C{MULTI <json {index: outcome}>}
 - C{badtask <kind>}: C{task()} with data a task cannot take (C{set},
   C{enum}); C{REFUSED <exception type> <message>} or C{TASKID ...}
 - C{stats}: C{STATS <json of stats()>}

An outcome is C{OK <json>} (bytes as C{{"bytes": latin-1 text}}) or
C{FAIL <exception type> <message>} for a L{Failure}.

Task data is a dict with C{op}:

 - C{echo}: returns C{{"value", "tw", "pid", "src", "taskworker"}}
 - C{sleep} (C{seconds}, C{tag}): blocks, then returns like C{echo}
 - C{asleep} (C{seconds}, C{tag}): an C{async def} pause (the reactor runs)
 - C{hold} (C{release}, C{tag}): blocks until the file C{release} exists
   (relative to the server's working directory: the test creates it when
   the task may end), then returns like C{echo}; a task a test wants
   running at some moment is held, not slept
 - C{ahold} (C{release}, C{tag}): the same in an C{async def} (the reactor
   runs while it waits)
 - C{finish}: calls C{serv.finish(value)} and returns L{None}
 - C{none}: returns L{None}
 - C{bytes}: returns C{value} encoded
 - C{raise}: raises C{ValueError(value)}
 - C{badresult}: returns a set; C{enumresult}: an C{IntEnum} member;
   C{subclassresult}: an C{OrderedDict}
 - C{record} (C{seconds}, C{value}, optional C{release}): sleeps, waits
   for the file C{release} if given (as C{hold}), appends C{value} to the
   C{record} file, returns it
"""

import collections
import enum
import json
import os
import sys
import time

sys.dont_write_bytecode = True
config = json.loads(sys.argv[1])

from twisted.internet.defer import ensureDeferred  # noqa: E402
from twisted.internet.task import deferLater  # noqa: E402
from twisted.python.failure import Failure  # noqa: E402

import swooletw  # noqa: E402

serv = swooletw.Server("127.0.0.1", 0)
serv.set(config["settings"])
serv.set(open_eof_split=True, package_eof="\n")

#: task id -> fd that asked (in each worker)
askers = {}


class Color(enum.IntEnum):
    RED = 1


def out(*words):
    # One write per line: every process shares this file.
    os.write(1, (" ".join(str(word) for word in words) + "\n").encode())


def outcome(result):
    if isinstance(result, Failure):
        return f"FAIL {type(result.value).__name__} {result.getErrorMessage()}"
    if isinstance(result, bytes):
        result = {"bytes": result.decode("latin-1")}
    return "OK " + json.dumps(result)


def on_start(serv):
    out("PORT", serv.port, "MASTER", os.getpid())


def on_worker_start(serv, worker_id):
    out("ROLE", worker_id, os.getpid(), serv.taskworker, serv.worker_id)
    out("WORKERSTART", worker_id, os.getpid())


def on_worker_stop(serv, worker_id):
    out("WORKERSTOP", worker_id, os.getpid())


def on_worker_error(serv, worker_id, worker_pid, exit_code, signal):
    out("WORKERERROR", worker_id, worker_pid, exit_code, signal)


def on_shutdown(serv):
    out("SHUTDOWN")


def identity(serv, src, value):
    return {
        "value": value, "tw": serv.worker_id, "pid": os.getpid(), "src": src,
        "taskworker": serv.taskworker,
    }


async def pause(serv, seconds):
    await deferLater(serv.reactor, seconds, lambda: None)


#: How long a held task waits for its release file before it fails (a test
#: that never releases it has failed already; this only bounds the wait).
HOLD_LIMIT = 30.0
#: How often a held task looks for its release file.
HOLD_POLL = 0.01


def hold(path):
    """
    Block until the test creates C{path}: the test's positive signal that
    the task may end.
    """
    deadline = time.monotonic() + HOLD_LIMIT
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} was not created in {HOLD_LIMIT}s")
        time.sleep(HOLD_POLL)  # poll interval of the wait for the release file


async def ahold(serv, path):
    """
    L{hold} in an C{async def}: the reactor runs while it waits.
    """
    deadline = time.monotonic() + HOLD_LIMIT
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} was not created in {HOLD_LIMIT}s")
        await pause(serv, HOLD_POLL)  # poll interval of the wait for the release file


def on_task(serv, task_id, src, data):
    op = data["op"]
    tag = data.get("tag", "-")
    out("TASKSTART", tag, task_id, serv.worker_id, os.getpid(), repr(time.time()))
    try:
        if op == "echo":
            return identity(serv, src, data.get("value"))
        if op == "sleep":
            time.sleep(data["seconds"])  # simulated work: paces, synchronises nothing
            return identity(serv, src, tag)
        if op == "asleep":
            return ensureDeferred(asleep(serv, src, data))
        if op == "hold":
            hold(data["release"])
            return identity(serv, src, tag)
        if op == "ahold":
            return ensureDeferred(asleep(serv, src, data))
        if op == "finish":
            serv.finish({"finished": data.get("value"), "tw": serv.worker_id})
            return None
        if op == "none":
            return None
        if op == "bytes":
            return data["value"].encode()
        if op == "raise":
            raise ValueError(data["value"])
        if op == "badresult":
            return {1, 2}
        if op == "enumresult":
            return Color.RED
        if op == "subclassresult":
            return collections.OrderedDict(a=1)
        if op == "record":
            time.sleep(data.get("seconds", 0))  # simulated work: paces, synchronises nothing
            if "release" in data:
                hold(data["release"])
            fd = os.open(config["record"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            os.write(fd, (data["value"] + "\n").encode())
            os.close(fd)
            return data["value"]
        raise ValueError(f"unknown op {op!r}")
    finally:
        if op not in ("asleep", "ahold"):
            out("TASKEND", tag, task_id, serv.worker_id, os.getpid(), repr(time.time()))


async def asleep(serv, src, data):
    if data["op"] == "ahold":
        await ahold(serv, data["release"])
    else:
        await pause(serv, data["seconds"])  # simulated work: paces, synchronises nothing
    out("TASKEND", data.get("tag", "-"), "-", serv.worker_id, os.getpid(), repr(time.time()))
    return identity(serv, src, data.get("tag"))


def on_finish(serv, task_id, result):
    out("FINISHED", serv.worker_id, task_id, outcome(result).split(" ", 1)[0])
    fd = askers.pop(task_id, None)
    if fd is not None:
        serv.send(fd, f"FINISH {task_id} {outcome(result)}\n")


def on_receive(serv, fd, reactor_id, data):
    command, _, rest = data.decode().strip().partition(" ")
    if command == "id":
        reply = f"ID {serv.worker_id} {os.getpid()} {fd}"
    elif command == "task":
        taskId = serv.task(json.loads(rest))
        if taskId is not False:
            askers[taskId] = fd
        reply = f"TASKID {serv.worker_id} {taskId}"
    elif command == "taskto":
        dst, _, payload = rest.partition(" ")
        taskId = serv.task(json.loads(payload), int(dst))
        if taskId is not False:
            askers[taskId] = fd
        reply = f"TASKID {serv.worker_id} {taskId}"
    elif command == "tasks":
        ids = []
        for item in json.loads(rest):
            taskId = serv.task(item)
            if taskId is not False:
                askers[taskId] = fd
            ids.append(taskId)
        reply = f"TASKIDS {json.dumps(ids)}"
    elif command == "taskcb":
        def callback(serv, task_id, result):
            serv.send(fd, f"CALLBACK {task_id} {outcome(result)}\n")

        taskId = serv.task(json.loads(rest), callback=callback)
        reply = f"TASKID {serv.worker_id} {taskId}"
    elif command == "taskwait":
        timeout, _, payload = rest.partition(" ")
        waited = serv.taskwait(json.loads(payload), float(timeout))
        waited.addBoth(lambda result: serv.send(fd, f"WAIT {outcome(result)}\n"))
        return waited
    elif command == "multi":
        timeout, _, payload = rest.partition(" ")
        waited = serv.taskWaitMulti(json.loads(payload), float(timeout))

        def answer(results):
            text = json.dumps({str(k): outcome(v) for k, v in sorted(results.items())})
            serv.send(fd, f"MULTI {text}\n")

        waited.addCallback(answer)
        return waited
    elif command == "badtask":
        bad = {"set": {1, 2}, "enum": {"color": Color.RED}, "object": object()}[rest]
        try:
            taskId = serv.task(bad)
        except Exception as e:
            reply = f"REFUSED {type(e).__name__} {e}"
        else:
            reply = f"TASKID {serv.worker_id} {taskId}"
    elif command == "stats":
        reply = "STATS " + json.dumps(serv.stats())
    else:
        reply = f"UNKNOWN {command}"
    serv.send(fd, reply + "\n")


serv.on("start", on_start)
serv.on("workerStart", on_worker_start)
serv.on("workerStop", on_worker_stop)
serv.on("workerError", on_worker_error)
serv.on("shutdown", on_shutdown)
serv.on("task", on_task)
serv.on("finish", on_finish)
serv.on("receive", on_receive)
sys.exit(0 if serv.start() else 1)
