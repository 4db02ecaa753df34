"""
Tests for task worker processes (C{task_worker_mode = "process"},
L{swooletw.tasks.processes}).

L{TaskDispatcherTests} and L{ProcessTaskPoolTests} are unit tests with a
fake send and a fake channel.  The rest run C{tests/apps/taskserver.py} as a
real process tree (a master, C{worker_num} 2 workers and
C{task_worker_num} 2 task worker processes) on 127.0.0.1, talk to it over
real sockets, send it signals and read what it prints.  Every process is
stopped by PID in cleanup (L{tests.workersupport.ServerProcess.stop}:
C{SIGTERM}, then C{SIGKILL}); every wait is bounded.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
from typing import Any

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from swooletw import Server
from swooletw.runtime.channel import Channel
from swooletw.runtime.local import ProcessRuntime
from swooletw.tasks.journal import Journal
from swooletw.tasks.processes import ProcessTaskPool, TaskDispatcher, TaskFailed
from swooletw.testing import HarnessReactor
from tests.workersupport import (
    LineClient,
    ServerProcess,
    clientsOnBothWorkers,
    cmdline,
    processGone,
    waitUntil,
)

PROCESS_TASKS = {"worker_num": 2, "task_worker_num": 2, "task_worker_mode": "process"}
TASK_WORKER_IDS = [2, 3]


# ------------------------------------------------------------------ units


class FakeSend:
    """
    The master's C{send(worker_id, kind, *args)}: records every message;
    sending to a worker id in C{gone} fails (returns C{False}).
    """

    def __init__(self) -> None:
        self.sent: list[tuple[Any, ...]] = []
        self.gone: set[int] = set()

    def __call__(self, workerId: int, kind: str, *args: Any) -> bool:
        if workerId in self.gone:
            return False
        self.sent.append((workerId, kind) + args)
        return True

    def take(self) -> list[tuple[Any, ...]]:
        sent, self.sent = self.sent, []
        return sent


class TaskDispatcherTests(SynchronousTestCase):
    """
    The master's queue of tasks and idle task workers.
    """

    def setUp(self) -> None:
        self.send = FakeSend()
        self.dispatcher = TaskDispatcher(self.send)

    def test_targetedWaitsForItsTaskWorker(self) -> None:
        """
        A task for task worker 3 (dst_worker_id) goes to 3 only, even when
        2 is idle; 2 keeps taking untargeted ones.
        """
        d = self.dispatcher
        d.ready(2)
        d.submitted(0, 1, 0, "for-3", 3)
        self.assertEqual(self.send.take(), [])
        d.submitted(0, 2, 0, "any")
        self.assertEqual(self.send.take(), [(2, "runtask", 2, 0, "any")])
        d.submitted(1, 3, 1, "any-2")
        self.assertEqual(d.stats()["task_queue_num"], 2)
        d.ready(3)
        self.assertEqual(self.send.take(), [(3, "runtask", 1, 0, "for-3")])
        d.done(3, 1, True, "ok")
        self.assertEqual(self.send.take(), [(0, "taskresult", 1, True, "ok"), (3, "runtask", 3, 1, "any-2")])

    def test_queuedInOrder(self) -> None:
        """
        With no idle task worker, tasks wait in the order they came; one
        task worker then runs them one at a time, in that order.
        """
        d = self.dispatcher
        d.submitted(0, 1, 0, "a")
        d.submitted(1, 1, 1, "b")
        d.submitted(0, 2, 0, "c")
        self.assertEqual(self.send.take(), [])
        self.assertEqual(d.stats(), {"tasking_num": 0, "task_queue_num": 3, "task_idle_worker_num": 0})
        d.ready(2)
        self.assertEqual(self.send.take(), [(2, "runtask", 1, 0, "a")])
        self.assertEqual(d.stats(), {"tasking_num": 1, "task_queue_num": 2, "task_idle_worker_num": 0})
        d.done(2, 1, True, "A")
        self.assertEqual(self.send.take(), [(0, "taskresult", 1, True, "A"), (2, "runtask", 1, 1, "b")])
        d.done(2, 1, True, "B")
        self.assertEqual(self.send.take(), [(1, "taskresult", 1, True, "B"), (2, "runtask", 2, 0, "c")])
        d.done(2, 2, True, "C")
        self.assertEqual(self.send.take(), [(0, "taskresult", 2, True, "C")])
        self.assertEqual(d.stats(), {"tasking_num": 0, "task_queue_num": 0, "task_idle_worker_num": 1})

    def test_idleFirst(self) -> None:
        """
        A task goes to an idle task worker at once, the one idle longest
        first: after one finishes, the next task goes to the other.
        """
        d = self.dispatcher
        d.ready(3)
        d.ready(2)
        d.submitted(0, 1, 0, "a")
        self.assertEqual(self.send.take(), [(3, "runtask", 1, 0, "a")])
        d.done(3, 1, True, None)
        self.assertEqual(self.send.take(), [(0, "taskresult", 1, True, None)])
        # 2 has been idle since before 3 took its task.
        d.submitted(1, 1, 1, "b")
        self.assertEqual(self.send.take(), [(2, "runtask", 1, 1, "b")])
        d.submitted(1, 2, 1, "c")
        self.assertEqual(self.send.take(), [(3, "runtask", 2, 1, "c")])
        self.assertEqual(d.stats()["tasking_num"], 2)

    def test_bothRunAtOnce(self) -> None:
        """
        Two tasks submitted together with two idle task workers: both run
        at once; a third waits for the first task worker that finishes.
        """
        d = self.dispatcher
        d.ready(2)
        d.ready(3)
        d.submitted(0, 1, 0, "a")
        d.submitted(1, 1, 1, "b")
        d.submitted(0, 2, 0, "c")
        self.assertEqual(self.send.take(), [(2, "runtask", 1, 0, "a"), (3, "runtask", 1, 1, "b")])
        self.assertEqual(d.stats(), {"tasking_num": 2, "task_queue_num": 1, "task_idle_worker_num": 0})
        d.done(3, 1, True, "B")
        self.assertEqual(self.send.take(), [(1, "taskresult", 1, True, "B"), (3, "runtask", 2, 0, "c")])

    def test_doneRepliesToAsker(self) -> None:
        """
        The result goes to the worker that handed the task to the master
        (C{replyTo}), not to C{src} (the worker that first asked, for a
        task run again from the journal), with the failure flag as given.
        """
        d = self.dispatcher
        d.ready(2)
        d.submitted(1, 7, 0, {"x": 1})
        self.assertEqual(self.send.take(), [(2, "runtask", 7, 0, {"x": 1})])
        d.done(2, 7, False, "ValueError: boom")
        self.assertEqual(self.send.take(), [(1, "taskresult", 7, False, "ValueError: boom")])

    def test_doneToGoneAskerStillFreesTaskWorker(self) -> None:
        """
        A result for a worker that is gone is dropped (logged); the task
        worker is idle again.
        """
        d = self.dispatcher
        d.ready(2)
        d.submitted(1, 7, 1, "x")
        self.send.take()
        self.send.gone.add(1)
        d.done(2, 7, True, "X")
        self.assertEqual(self.send.take(), [])
        self.assertEqual(list(d.idle), [2])
        d.submitted(0, 8, 0, "y")
        self.assertEqual(self.send.take(), [(2, "runtask", 8, 0, "y")])

    def test_lostRequeuesFirst(self) -> None:
        """
        A task worker that dies has its running task queued again ahead of
        every waiting task; the next idle task worker runs it.
        """
        d = self.dispatcher
        d.ready(2)
        d.submitted(0, 1, 0, "running")
        d.submitted(0, 2, 0, "waiting")
        self.send.take()
        d.lost(2)
        self.assertEqual(self.send.take(), [])
        self.assertEqual([task[3] for task in d.queue], ["running", "waiting"])
        self.assertEqual(d.stats(), {"tasking_num": 0, "task_queue_num": 2, "task_idle_worker_num": 0})
        d.ready(2)  # its replacement
        self.assertEqual(self.send.take(), [(2, "runtask", 1, 0, "running")])
        d.done(2, 1, True, "R")
        self.assertEqual(self.send.take(), [(0, "taskresult", 1, True, "R"), (2, "runtask", 2, 0, "waiting")])

    def test_lostWhileAnotherIsIdle(self) -> None:
        """
        The lost task goes at once to a task worker that is idle.
        """
        d = self.dispatcher
        d.ready(2)
        d.submitted(0, 1, 0, "a")
        d.ready(3)
        self.send.take()
        d.lost(2)
        self.assertEqual(self.send.take(), [(3, "runtask", 1, 0, "a")])

    def test_lostIdleTaskWorker(self) -> None:
        """
        An idle task worker that dies is no longer handed tasks.
        """
        d = self.dispatcher
        d.ready(2)
        d.ready(3)
        d.lost(2)
        self.assertEqual(list(d.idle), [3])
        d.submitted(0, 1, 0, "a")
        d.submitted(0, 2, 0, "b")
        self.assertEqual(self.send.take(), [(3, "runtask", 1, 0, "a")])
        self.assertEqual(len(d.queue), 1)

    def test_sendFailingKeepsTaskQueued(self) -> None:
        """
        A task that cannot be sent (its task worker is gone) stays queued,
        first; the next task worker that is ready runs it.
        """
        d = self.dispatcher
        d.ready(2)
        self.send.gone.add(2)
        d.submitted(0, 1, 0, "a")
        d.submitted(0, 2, 0, "b")
        self.assertEqual(self.send.take(), [])
        self.assertEqual([task[3] for task in d.queue], ["a", "b"])
        self.assertEqual(d.stats()["tasking_num"], 0)
        d.ready(3)
        self.assertEqual(self.send.take(), [(3, "runtask", 1, 0, "a")])
        self.assertEqual([task[3] for task in d.queue], ["b"])

    def test_readyTwiceIsOnce(self) -> None:
        """
        A task worker that says it is ready twice is idle once: it is not
        handed two tasks at once.
        """
        d = self.dispatcher
        d.ready(2)
        d.ready(2)
        d.submitted(0, 1, 0, "a")
        d.submitted(0, 2, 0, "b")
        self.assertEqual(self.send.take(), [(2, "runtask", 1, 0, "a")])


class FakeChannel:
    """
    A worker's channel to the master: records what is sent.
    """

    def __init__(self) -> None:
        self.sent: list[tuple[Any, ...]] = []
        self.handlers: dict[str, Any] = {}

    def send(self, kind: str, *args: Any) -> None:
        self.sent.append((kind,) + args)


class ProcessTaskPoolTests(SynchronousTestCase):
    """
    A worker's side: tasks go to the master, results come back.
    """

    def setUp(self) -> None:
        self.serv = Server("127.0.0.1", 9501, reactor=HarnessReactor())
        self.serv.set(PROCESS_TASKS)
        self.finished: list[tuple[int, Any]] = []
        self.serv.on("task", lambda *args: None)
        self.serv.on("finish", lambda serv, taskId, result: self.finished.append((taskId, result)))
        self.channel = FakeChannel()
        self.clock = Clock()
        self.runtime = ProcessRuntime(self.serv, self.clock, 1)
        self.serv.attach(self.runtime)
        self.pool = ProcessTaskPool(self.serv, self.clock, self.channel)

    def reconfigure(self, **settings: Any) -> None:
        """
        Change settings of the running worker (as between two starts).
        """
        self.serv.detach()
        self.serv.set(**settings)
        self.serv.attach(self.runtime)

    def test_submitSendsToMaster(self) -> None:
        """
        C{task()} sends C{("task", id, this worker's id, data)} and counts it
        as pending; the result reaches C{finish}.
        """
        taskId = self.pool.submit({"to": "x"})
        self.assertEqual(self.channel.sent, [("task", taskId, 1, {"to": "x"}, -1)])
        self.assertEqual(self.pool.pending, 1)
        # How busy the task processes are is the master's to say.
        self.assertNotIn("tasking_num", self.pool.stats())
        self.pool.gotResult(taskId, True, "sent")
        self.assertEqual(self.finished, [(taskId, "sent")])
        self.assertEqual(self.pool.pending, 0)
        self.assertEqual(self.pool.stats()["task_done_count"], 1)

    def test_failureIsTaskFailed(self) -> None:
        """
        A failed task reaches C{finish} as a L{Failure} of L{TaskFailed}
        carrying the task worker's error text.
        """
        taskId = self.pool.submit("x")
        self.pool.gotResult(taskId, False, "ValueError: boom")
        [(gotId, result)] = self.finished
        self.assertEqual(gotId, taskId)
        self.assertIsInstance(result, Failure)
        self.assertTrue(result.check(TaskFailed))
        self.assertEqual(result.getErrorMessage(), "ValueError: boom")
        self.assertEqual(self.pool.stats()["task_failed_count"], 1)
        self.flushLoggedErrors(TaskFailed)

    def test_taskwait(self) -> None:
        """
        C{taskwait} fires with the result that comes back from the master.
        """
        waited = self.pool.wait("x", 1.0)
        [(_, taskId, _, _, _)] = self.channel.sent
        self.pool.gotResult(taskId, True, {"r": 1})
        self.assertEqual(self.successResultOf(waited), {"r": 1})

    def test_unknownResultDropped(self) -> None:
        """
        A result for a task this worker does not wait for is dropped.
        """
        self.pool.gotResult(99, True, "x")
        self.assertEqual(self.finished, [])

    def test_fullQueue(self) -> None:
        """
        With C{task_queue_max} tasks waiting for results, C{task()} returns
        C{False} and nothing is sent.
        """
        self.reconfigure(task_queue_max=2)
        pool = ProcessTaskPool(self.serv, self.clock, self.channel)
        self.assertIsInstance(pool.submit("a"), int)
        self.assertIsInstance(pool.submit("b"), int)
        self.assertIs(pool.submit("c"), False)
        self.assertEqual(len(self.channel.sent), 2)
        self.assertEqual(pool.stats()["task_refused_count"], 1)

    def test_dataMarshalCannotCarry(self) -> None:
        """
        Task data of a JSON-like type's subclass (an C{IntEnum}, an
        C{OrderedDict}) cannot cross the channel (C{marshal}): C{task()}
        raises L{TypeError} as for any data a task cannot take, and the
        refused task takes no place in the queue.
        """
        import collections
        import enum

        class Color(enum.IntEnum):
            RED = 1

        self.reconfigure(task_queue_max=1)
        channel = Channel({}, lambda reason: None)
        transport = StringTransport()
        channel.makeConnection(transport)
        pool = ProcessTaskPool(self.serv, self.clock, channel)
        self.assertRaises(TypeError, pool.submit, {"color": Color.RED})
        self.assertRaises(TypeError, pool.submit, collections.OrderedDict(a=1))
        self.assertEqual(pool.pending, 0)
        self.assertIsInstance(pool.submit("fine"), int)
        self.assertTrue(transport.value())


# ---------------------------------------------------------- real processes


class TaskProcessTestsMixin:
    """
    Helpers for tests on a real server tree.
    """

    def start(self, config: dict[str, Any] | None = None, **settings: Any) -> ServerProcess:
        config = dict(config or {})
        config["settings"] = {**PROCESS_TASKS, **settings}
        server = ServerProcess(self, config, script="taskserver.py")
        server.waitForWorkers(4, timeout=10)
        return server

    def taskWorkerPids(self, server: ServerProcess) -> dict[int, int]:
        pids = server.workerPids()
        return {i: pids[i] for i in TASK_WORKER_IDS if i in pids}

    def events(self, server: ServerProcess, kind: str) -> dict[str, list[tuple[int, int, int, float]]]:
        """
        C{TASKSTART}/C{TASKEND} lines by tag: (task id or -1, task worker
        id, pid, time).
        """
        found: dict[str, list[tuple[int, int, int, float]]] = {}
        for m in server.lines(rf"^{kind} (\S+) (\S+) (\d+) (\d+) (\S+)$"):
            taskId = int(m.group(2)) if m.group(2) != "-" else -1
            found.setdefault(m.group(1), []).append(
                (taskId, int(m.group(3)), int(m.group(4)), float(m.group(5)))
            )
        return found

    def client(self, server: ServerProcess) -> LineClient:
        client = LineClient(server.port)
        self.addCleanup(client.close)  # type: ignore[attr-defined]
        return client

    def held(self, server: ServerProcess, tag: str, op: str = "hold") -> dict[str, Any]:
        """
        Data of a task (C{hold}, or C{ahold} for an C{async} handler) that
        runs until L{release}C{(server, tag)}: while it has not been
        released it is certainly still running.  Released in cleanup in any
        case (before the server is stopped).
        """
        self.addCleanup(self.release, server, tag)  # type: ignore[attr-defined]
        return {"op": op, "release": f"release-{tag}", "tag": tag}

    def release(self, server: ServerProcess, tag: str) -> None:
        """
        Let the held task C{tag} end.
        """
        open(os.path.join(server.directory, f"release-{tag}"), "a").close()


def taskCommand(data: Any) -> str:
    return "task " + json.dumps(data)


def parseOutcome(text: str) -> tuple[str, Any]:
    """
    C{("OK", value)} or C{("FAIL", "<type> <message>")}.
    """
    word, _, rest = text.partition(" ")
    return (word, json.loads(rest)) if word == "OK" else (word, rest)


class ProcessTaskTests(TaskProcessTestsMixin, TestCase):
    """
    A master, two workers and two task worker processes.
    """

    def assertNoErrors(self, server: ServerProcess) -> None:
        self.assertEqual(server.errors(), [], server.log())

    # --------------------------------------------------------- the API

    def test_identityAndTitles(self) -> None:
        """
        Task workers have ids C{worker_num .. worker_num + task_worker_num
        - 1}; C{workerStart} fires in each task process with its id, where
        C{serv.taskworker} is true and C{serv.worker_id} is that id (false
        in the workers); C{ps} shows C{swooletw: task worker N}.
        """
        server = self.start()
        pids = server.workerPids()
        self.assertEqual(sorted(pids), [0, 1, 2, 3])
        self.assertEqual(len(set(pids.values())), 4)
        roles = {int(m.group(1)): (m.group(3), int(m.group(4))) for m in server.lines(r"^ROLE (\d+) (\d+) (\S+) (-?\d+)$")}
        self.assertEqual(roles, {0: ("False", 0), 1: ("False", 1), 2: ("True", 2), 3: ("True", 3)})
        for workerId in TASK_WORKER_IDS:
            title = cmdline(pids[workerId])
            self.assertTrue(title.startswith(f"swooletw: task worker {workerId}"), title)
        for workerId in (0, 1):
            title = cmdline(pids[workerId])
            self.assertTrue(title.startswith(f"swooletw: worker {workerId}"), title)
        self.assertNoErrors(server)

    def test_dstWorkerId(self) -> None:
        """
        task(data, dst_worker_id) runs on that task worker process, every
        time, from either worker.
        """
        server = self.start()
        taskPids = self.taskWorkerPids(server)
        clients = clientsOnBothWorkers(self, server.port)
        for workerId, (client, _askerPid, _) in sorted(clients.items()):
            for dst in (3, 3, 2, 3):
                reply = client.request(f"taskto {dst} " + json.dumps({"op": "echo", "value": dst}))
                taskId = reply.split()[2]
                line = client.readLine(timeout=5)
                self.assertTrue(line.startswith(f"FINISH {taskId} "), line)
                _kind, value = parseOutcome(line.split(" ", 2)[2])
                self.assertEqual((value["tw"], value["pid"]), (dst, taskPids[dst]))

    def test_apiFromEitherWorker(self) -> None:
        """
        From each of the two workers: C{task()}'s result reaches that
        worker's C{finish}; a C{callback} gets it instead; C{finish()} in
        the handler sends its value; bytes come back as bytes; a handler
        returning L{None} fires no C{finish}; C{taskwait} and
        C{taskWaitMulti} get results.  Every task ran in a task worker
        process (C{taskworker} true, id 2 or 3, not the asker's pid) that
        saw the asker's id as C{src_worker_id}.
        """
        server = self.start()
        taskPids = self.taskWorkerPids(server)
        clients = clientsOnBothWorkers(self, server.port)
        usedTaskWorkers = set()

        def checkRan(value: dict[str, Any], workerId: int, askerPid: int) -> None:
            self.assertIn(value["tw"], TASK_WORKER_IDS)
            self.assertEqual(value["pid"], taskPids[value["tw"]])
            self.assertNotEqual(value["pid"], askerPid)
            self.assertEqual(value["src"], workerId)
            self.assertIs(value["taskworker"], True)
            usedTaskWorkers.add(value["tw"])

        for workerId, (client, askerPid, _) in sorted(clients.items()):
            # task() -> finish
            reply = client.request(taskCommand({"op": "echo", "value": f"hi{workerId}"}))
            word, asker, taskId = reply.split()
            self.assertEqual((word, int(asker)), ("TASKID", workerId))
            line = client.readLine(timeout=5)
            self.assertTrue(line.startswith(f"FINISH {taskId} "), line)
            kind, value = parseOutcome(line.split(" ", 2)[2])
            self.assertEqual(kind, "OK", line)
            self.assertEqual(value["value"], f"hi{workerId}")
            checkRan(value, workerId, askerPid)

            # task() with a callback
            reply = client.request("taskcb " + json.dumps({"op": "echo", "value": "cb"}))
            taskId = reply.split()[2]
            line = client.readLine(timeout=5)
            self.assertTrue(line.startswith(f"CALLBACK {taskId} OK "), line)
            kind, value = parseOutcome(line.split(" ", 2)[2])
            self.assertEqual(value["value"], "cb")
            checkRan(value, workerId, askerPid)

            # finish() inside the handler
            reply = client.request(taskCommand({"op": "finish", "value": "via finish"}))
            taskId = reply.split()[2]
            line = client.readLine(timeout=5)
            self.assertTrue(line.startswith(f"FINISH {taskId} OK "), line)
            self.assertEqual(parseOutcome(line.split(" ", 2)[2])[1]["finished"], "via finish")

            # bytes
            reply = client.request(taskCommand({"op": "bytes", "value": "raw\u00e9"}))
            line = client.readLine(timeout=5)
            self.assertEqual(line, f"FINISH {reply.split()[2]} OK " + json.dumps({"bytes": "raw\u00e9".encode().decode("latin-1")}))

            # None: no finish (taskwait below is answered first)
            noneId = client.request(taskCommand({"op": "none", "tag": f"none{workerId}"})).split()[2]

            # taskwait, and an async handler
            line = client.request("taskwait 5 " + json.dumps({"op": "echo", "value": "waited"}))
            kind, value = parseOutcome(line[len("WAIT "):])
            self.assertEqual((kind, value["value"]), ("OK", "waited"), line)
            checkRan(value, workerId, askerPid)
            line = client.request("taskwait 5 " + json.dumps({"op": "asleep", "seconds": 0.05, "tag": "async"}))
            kind, value = parseOutcome(line[len("WAIT "):])
            self.assertEqual((kind, value["value"]), ("OK", "async"), line)
            checkRan(value, workerId, askerPid)

            # taskWaitMulti
            line = client.request(
                "multi 5 " + json.dumps([
                    {"op": "echo", "value": "m0"}, {"op": "finish", "value": "m1"}, {"op": "echo", "value": "m2"},
                ])
            )
            self.assertTrue(line.startswith("MULTI "), line)
            results = {k: parseOutcome(v) for k, v in json.loads(line[len("MULTI "):]).items()}
            self.assertEqual(sorted(results), ["0", "1", "2"])
            self.assertEqual(results["0"][1]["value"], "m0")
            self.assertEqual(results["1"][1]["finished"], "m1")
            self.assertEqual(results["2"][1]["value"], "m2")
            checkRan(results["0"][1], workerId, askerPid)

            # No finish for None.  The positive signal that its result (if
            # any) has been handled: a later task on the same task worker
            # answered, whose result travels the same ordered channels
            # (task worker -> master -> asker) behind it.
            ran = server.waitFor(rf"^TASKEND none{workerId} {noneId} (\d+) ", timeout=3)
            reply = client.request(f"taskto {ran.group(1)} " + json.dumps({"op": "echo", "value": "behind"}))
            line = client.readLine(timeout=5)
            self.assertTrue(line.startswith(f"FINISH {reply.split()[2]} OK "), line)
            self.assertEqual(server.lines(rf"^FINISHED {workerId} {noneId} "), [])

        # Idle-first: sequential tasks alternate, so both were used.
        self.assertEqual(usedTaskWorkers, set(TASK_WORKER_IDS))
        self.assertEqual(self.taskWorkerPids(server), taskPids)
        self.assertEqual(server.lines(r"^WORKERERROR"), [])
        self.assertNoErrors(server)

    def test_sharedIdleFirstInParallel(self) -> None:
        """
        Two tasks submitted together run at once in the two task worker
        processes (different pids): both are inside their handlers at the
        same moment.  A third, from the other worker, waits (queued in the
        master) for the task worker that becomes idle first, and runs there
        while the other task still runs.
        """
        server = self.start(worker_ping_interval=0.2)
        taskPids = self.taskWorkerPids(server)
        clients = clientsOnBothWorkers(self, server.port)
        first, second = clients[0][0], clients[1][0]
        reply = first.request("tasks " + json.dumps([self.held(server, "a"), self.held(server, "b")]))
        self.assertTrue(reply.startswith("TASKIDS "), reply)
        # Neither can end before it is released: both started means both run at once.
        server.waitFor(r"^TASKSTART a ", timeout=5)
        server.waitFor(r"^TASKSTART b ", timeout=5)
        cId = second.request(taskCommand({"op": "echo", "value": "c", "tag": "c"})).split()[2]
        # c is queued in the master (no idle task worker), not running.
        observer = self.client(server)
        queued = waitUntil(
            lambda: json.loads(observer.request("stats")[len("STATS "):])["task_queue_num"] == 1, 5, 0.05
        )
        self.assertTrue(queued, server.log())
        self.assertEqual(server.lines(r"^TASKSTART c "), [])

        self.release(server, "a")
        aLine = first.readLine(timeout=5)
        self.assertTrue(aLine.startswith("FINISH ") and " OK " in aLine, aLine)
        cLine = second.readLine(timeout=5)
        self.assertTrue(cLine.startswith(f"FINISH {cId} OK "), cLine)
        self.release(server, "b")
        bLine = first.readLine(timeout=5)
        self.assertTrue(bLine.startswith("FINISH ") and " OK " in bLine, bLine)

        starts = self.events(server, "TASKSTART")
        (_, twA, pidA, _), (_, twB, pidB, _) = starts["a"][0], starts["b"][0]
        self.assertNotEqual(pidA, pidB)
        self.assertEqual({pidA, pidB}, set(taskPids.values()))
        self.assertEqual({twA, twB}, set(TASK_WORKER_IDS))
        # In parallel: each started before either ended.
        firstEnd = min(server.position(r"^TASKEND a "), server.position(r"^TASKEND b "))
        self.assertLess(server.position(r"^TASKSTART a "), firstEnd)
        self.assertLess(server.position(r"^TASKSTART b "), firstEnd)
        # c waited for a task worker: it started after a (the first to be
        # idle again) ended, in a's task worker, while b still ran.
        (_, _, pidC, _) = starts["c"][0]
        self.assertEqual(pidC, pidA)
        self.assertLess(server.position(r"^TASKEND a "), server.position(r"^TASKSTART c "))
        self.assertLess(server.position(r"^TASKSTART c "), server.position(r"^TASKEND b "))
        self.assertNoErrors(server)

    # ----------------------------------------------------------- failures

    def test_failingTask(self) -> None:
        """
        A handler that raises, or returns something that is not JSON-like
        or bytes, fails its task: the asker gets a L{Failure} of
        L{TaskFailed} with the error text (through C{finish}, a callback
        or C{taskwait}), the failure is logged with the task id, and the
        same task worker processes keep serving.
        """
        server = self.start()
        taskPids = self.taskWorkerPids(server)
        client = self.client(server)
        taskId = client.request(taskCommand({"op": "raise", "value": "boom 42"})).split()[2]
        line = client.readLine(timeout=5)
        self.assertEqual(line, f"FINISH {taskId} FAIL TaskFailed ValueError: boom 42")
        server.waitFor(rf"task {taskId} failed", count=2, timeout=3)  # task worker and asker

        reply = client.request("taskcb " + json.dumps({"op": "raise", "value": "in callback"}))
        line = client.readLine(timeout=5)
        self.assertEqual(line, f"CALLBACK {reply.split()[2]} FAIL TaskFailed ValueError: in callback")

        line = client.request("taskwait 5 " + json.dumps({"op": "raise", "value": "waited"}))
        self.assertEqual(line, "WAIT FAIL TaskFailed ValueError: waited")

        line = client.request("taskwait 5 " + json.dumps({"op": "badresult"}))
        self.assertTrue(line.startswith("WAIT FAIL TaskFailed TypeError: task result is a set"), line)

        for _ in range(4):
            line = client.request("taskwait 5 " + json.dumps({"op": "echo", "value": "still"}))
            self.assertEqual(parseOutcome(line[len("WAIT "):])[1]["value"], "still", line)
        self.assertEqual(self.taskWorkerPids(server), taskPids)
        self.assertEqual(server.lines(r"^WORKERERROR"), [])
        self.assertIn("ValueError: boom 42", server.log())

    def test_resultMarshalCannotCarry(self) -> None:
        """
        A handler returning a subclass of a JSON-like type (an C{IntEnum}
        member, an C{OrderedDict}) that the channel's C{marshal} refuses
        fails its task with L{TaskFailed} like any bad result, and its task
        worker keeps serving: two slow tasks still run at once.
        """
        server = self.start()
        client = self.client(server)
        for op in ("enumresult", "subclassresult"):
            line = client.request("taskwait 2 " + json.dumps({"op": op}), timeout=5)
            self.assertTrue(line.startswith("WAIT FAIL TaskFailed "), f"{op}: {line}")
        reply = client.request("tasks " + json.dumps([self.held(server, t) for t in "xy"]))
        self.assertTrue(reply.startswith("TASKIDS "), reply)
        # Neither ends before it is released: both started means both run at once.
        server.waitFor(r"^TASKSTART x ", timeout=5)
        server.waitFor(r"^TASKSTART y ", timeout=5)
        self.release(server, "x")
        self.release(server, "y")
        lines = [client.readLine(timeout=5), client.readLine(timeout=5)]
        self.assertTrue(all(line.startswith("FINISH ") and " OK " in line for line in lines), lines)

    def test_badDataAndFullQueue(self) -> None:
        """
        In a worker, C{task()} with data that is not JSON-like or bytes
        raises L{TypeError}; with C{task_queue_max} 2 tasks waiting for
        results, C{task()} returns C{False}; the accepted ones complete.
        """
        server = self.start(task_queue_max=2)
        client = self.client(server)
        reply = client.request("badtask set")
        self.assertTrue(reply.startswith("REFUSED TypeError task data is a set"), reply)
        reply = client.request("badtask object")
        self.assertTrue(reply.startswith("REFUSED TypeError "), reply)
        # The four are submitted in one reactor turn: no result can come
        # back in between, so the third and fourth find the queue full.
        reply = client.request(
            "tasks " + json.dumps([{"op": "echo", "value": f"q{i}", "tag": f"q{i}"} for i in range(4)])
        )
        ids = json.loads(reply[len("TASKIDS "):])
        self.assertEqual([type(i) for i in ids], [int, int, bool, bool], ids)
        self.assertEqual(ids[2:], [False, False])
        lines = sorted([client.readLine(timeout=5), client.readLine(timeout=5)])
        self.assertEqual([line.split()[:3] for line in lines], sorted([["FINISH", str(i), "OK"] for i in ids[:2]]))
        self.assertIn("task refused", server.log())
        # Room again once they are done.
        line = client.request("taskwait 5 " + json.dumps({"op": "echo", "value": "again"}))
        self.assertEqual(parseOutcome(line[len("WAIT "):])[1]["value"], "again", line)

    def test_badDataMarshalCannotCarry(self) -> None:
        """
        In a worker, C{task()} with data holding an C{IntEnum} member
        (an C{int} subclass the channel's C{marshal} refuses) raises
        L{TypeError} like any data a task cannot take, and does not use
        up a place in the queue (C{task_queue_max} 1: the next good task is
        accepted).
        """
        server = self.start(task_queue_max=1)
        client = self.client(server)
        reply = client.request("badtask enum")
        self.assertTrue(reply.startswith("REFUSED TypeError "), reply)
        reply = client.request(taskCommand({"op": "echo", "value": "after"}))
        self.assertNotEqual(reply.split()[2], "False", reply)
        line = client.readLine(timeout=5)
        self.assertIn(" OK ", line)

    def test_statsCountTaskWorkers(self) -> None:
        """
        C{stats()} in a worker counts the task worker processes as Swoole
        does: both idle at first (C{task_idle_worker_num} 2, C{tasking_num}
        0); while one slow task runs, one busy and one idle.
        """
        server = self.start(worker_ping_interval=0.2)
        client = self.client(server)
        stats: dict[str, Any] = {}

        def current(busy: int) -> bool:
            stats.clear()
            stats.update(json.loads(client.request("stats").split(" ", 1)[1]))
            return stats["tasking_num"] == busy and stats["task_idle_worker_num"] == 2 - busy

        self.assertTrue(waitUntil(lambda: current(0), 2, 0.1), stats)
        self.assertEqual(stats["task_worker_num"], 2)
        other = self.client(server)
        other.request(taskCommand(self.held(server, "busy")))
        server.waitFor(r"^TASKSTART busy ", timeout=3)
        # Held: it still runs however long the stats take to show it.
        self.assertTrue(waitUntil(lambda: current(1), 5, 0.1), stats)

    # -------------------------------------------------------- supervision

    def test_killedTaskWorkerTaskRunsAgain(self) -> None:
        """
        C{kill -9} of a task worker in the middle of a task: the master
        queues the task again, another or a replacement task worker runs it
        and the asker gets the result; C{workerError} fires in the master
        for that task worker with signal 9, and a replacement with the same
        id starts.
        """
        server = self.start()
        before = self.taskWorkerPids(server)
        client = self.client(server)
        reply = client.request(taskCommand(self.held(server, "victim")))
        taskId = reply.split()[2]
        started = server.waitFor(r"^TASKSTART victim \S+ (\d+) (\d+) ", timeout=3)
        victimId, victimPid = int(started.group(1)), int(started.group(2))
        self.assertEqual(before[victimId], victimPid)
        # Held: certainly in the middle of the task when killed.
        os.kill(victimPid, signal.SIGKILL)
        self.release(server, "victim")  # the run after the kill may end
        line = client.readLine(timeout=6)
        self.assertTrue(line.startswith(f"FINISH {taskId} OK "), line)
        value = parseOutcome(line.split(" ", 2)[2])[1]
        self.assertNotEqual(value["pid"], victimPid)
        runs = self.events(server, "TASKSTART")["victim"]
        self.assertEqual(len(runs), 2, runs)
        self.assertNotEqual(runs[1][2], victimPid)
        error = server.waitFor(rf"^WORKERERROR {victimId} {victimPid} (-?\d+) (\d+)$", timeout=3)
        self.assertEqual((error.group(1), error.group(2)), ("0", "9"))
        self.assertIn("was running in task worker", server.log())
        replaced = waitUntil(
            lambda: self.taskWorkerPids(server).get(victimId) not in (None, victimPid), 3
        )
        self.assertTrue(replaced, server.log())
        # Everyone still serves.
        for _ in range(3):
            line = client.request("taskwait 5 " + json.dumps({"op": "echo", "value": "after"}))
            self.assertIn("OK", line)

    def test_taskMaxRequestRecycles(self) -> None:
        """
        With C{task_max_request} 2 (grace 1), task workers are replaced
        after 2 or 3 tasks: their pids change, C{workerStart} fires again
        with the same ids, the workers are untouched, no C{workerError},
        and every task ran exactly once.
        """
        server = self.start(task_max_request=2)
        workers = {i: server.workerPids()[i] for i in (0, 1)}
        client = self.client(server)
        perPid: dict[int, list[str]] = {}
        for n in range(12):
            line = client.request("taskwait 5 " + json.dumps({"op": "echo", "value": f"n{n}", "tag": f"n{n}"}))
            kind, value = parseOutcome(line[len("WAIT "):])
            self.assertEqual((kind, value["value"]), ("OK", f"n{n}"), line)
            perPid.setdefault(value["pid"], []).append(value["value"])
        self.assertGreaterEqual(len(perPid), 4, perPid)
        self.assertLessEqual(max(len(v) for v in perPid.values()), 3, perPid)
        self.assertEqual([m.group(0) for m in server.lines(r"^WORKERERROR.*$")], [], server.log())
        recycled = server.lines(r"worker (\d+) \(pid \d+\) exited for max_request")
        self.assertEqual({m.group(1) for m in recycled}, {"2", "3"}, server.log())
        waitUntil(lambda: len(server.lines(r"^WORKERSTART [23] ")) >= 2 + len(recycled), 3)
        self.assertGreaterEqual(len(server.lines(r"^WORKERSTART [23] ")), 2 + len(recycled))
        self.assertEqual({i: server.workerPids()[i] for i in (0, 1)}, workers)
        starts = self.events(server, "TASKSTART")
        self.assertEqual({tag: len(runs) for tag, runs in starts.items()}, {f"n{n}": 1 for n in range(12)})
        self.assertEqual(server.lines(r"^WORKERERROR"), [], server.log())
        self.assertNoErrors(server)

    def test_reloadSignals(self) -> None:
        """
        C{SIGUSR2} replaces the task workers only (their pids change, the
        workers' do not); C{SIGUSR1} replaces both.  Tasks run in the new
        task workers.
        """
        server = self.start()
        before = server.workerPids()
        client = self.client(server)

        server.signal(signal.SIGUSR2)
        # The master chose the processes to replace when the signal came
        # and says how many: two.  Once both task workers are replaced,
        # those two were the task workers, so no worker was chosen.
        server.waitFor(r"reloading 2 processes", timeout=5)
        changed = waitUntil(
            lambda: all(server.workerPids()[i] != before[i] for i in TASK_WORKER_IDS), 5
        )
        self.assertTrue(changed, server.log())
        afterUsr2 = server.workerPids()
        self.assertEqual({i: afterUsr2[i] for i in (0, 1)}, {i: before[i] for i in (0, 1)})
        reloaded = {m.group(1) for m in server.lines(r"worker (\d+) \(pid \d+\) exited for reload")}
        self.assertEqual(reloaded, {"2", "3"})
        for _ in range(2):
            line = client.request("taskwait 5 " + json.dumps({"op": "echo"}))
            value = parseOutcome(line[len("WAIT "):])[1]
            self.assertIn(value["pid"], [afterUsr2[i] for i in TASK_WORKER_IDS])
        client.close()

        server.signal(signal.SIGUSR1)
        changed = waitUntil(
            lambda: all(server.workerPids()[i] != afterUsr2[i] for i in range(4)), 5
        )
        self.assertTrue(changed, server.log())
        afterUsr1 = server.workerPids()
        client = self.client(server)
        line = client.request("taskwait 5 " + json.dumps({"op": "echo"}))
        value = parseOutcome(line[len("WAIT "):])[1]
        self.assertIn(value["pid"], [afterUsr1[i] for i in TASK_WORKER_IDS])
        self.assertEqual(server.lines(r"^WORKERERROR"), [], server.log())
        self.assertNoErrors(server)

    def test_sigtermFinishesRunningTask(self) -> None:
        """
        C{SIGTERM} while a (blocking) task runs in a task process: the task
        completes, its result reaches the asking worker's C{finish} before
        it exits, the task workers run C{workerStop}, and the master exits
        0 after C{shutdown}, without waiting for C{max_wait_time}.
        """
        self.sigtermWhileRunning("hold")

    def test_sigtermFinishesRunningAsyncTask(self) -> None:
        """
        The same with an C{async} task handler (the task process's reactor
        runs while it waits).
        """
        self.sigtermWhileRunning("ahold")

    def sigtermWhileRunning(self, op: str) -> None:
        # max_wait_time far beyond the bounded waits below: a stop that
        # waited for it instead of for the task fails them.
        server = self.start(max_wait_time=60)
        client = self.client(server)
        reply = client.request(taskCommand(self.held(server, "last", op)))
        asker, taskId = reply.split()[1:]
        started = server.waitFor(r"^TASKSTART last \S+ (\d+) ", timeout=3)
        runner = int(started.group(1))
        server.signal(signal.SIGTERM)

        def exited(workerId: int | str) -> str:
            # The master's line once it reaped the process.
            return rf"worker {workerId} \(pid \d+\) stopped$"

        # The stop is under way: the processes with nothing to finish exit...
        for workerId in sorted({0, 1, 2, 3} - {int(asker), runner}):
            server.waitFor(exited(workerId), timeout=5)
        # ... while the task's task worker and the asker wait for it.
        self.assertEqual(server.lines(exited(f"({runner}|{asker})")), [], server.log())
        self.assertIsNone(server.proc.poll(), server.log())
        self.release(server, "last")
        self.assertEqual(server.wait(20), 0, server.log())
        self.assertIn("last", self.events(server, "TASKEND"))
        self.assertEqual(len(server.lines(rf"^FINISHED {asker} {taskId} OK$")), 1, server.log())
        self.assertEqual(len(self.events(server, "TASKSTART")["last"]), 1)
        # The task ended before its task worker exited; its result reached
        # the asker's finish before the asker exited; everyone ran
        # workerStop and exited before the shutdown; nothing was killed
        # for max_wait_time.
        self.assertLess(server.position(r"^TASKEND last "), server.position(exited(runner)))
        self.assertLess(server.position(rf"^FINISHED {asker} {taskId} OK$"), server.position(exited(asker)))
        self.assertEqual(sorted(int(m.group(1)) for m in server.lines(r"^WORKERSTOP (\d+) ")), [0, 1, 2, 3])
        lastExit = max(m.start() for m in server.lines(exited(r"\d+")))
        self.assertEqual(len(server.lines(exited(r"\d+"))), 4, server.log())
        self.assertLess(lastExit, server.position(r"^SHUTDOWN$"))
        self.assertEqual(server.lines(r"max_wait_time"), [], server.log())
        self.assertNoErrors(server)


class ProcessCrashRecoveryTests(TaskProcessTestsMixin, TestCase):
    """
    The journal with task worker processes: C{kill -9} of the whole server
    while tasks run; after a restart exactly the accepted tasks have run.
    A task that failed is a dead letter.
    """

    def test_wholeServerKilled(self) -> None:
        """
        12 tasks accepted (journalled) by one worker, C{kill -9} of the
        master while two are done and two run (held: they cannot end before
        the kill; every process dies with it); after a restart on the same
        journal every accepted task has run, nothing else did, at most the
        ones that were running ran twice, and the journal is empty.
        """
        tmp = os.path.abspath(self.mktemp())
        os.makedirs(tmp)
        store = os.path.join(tmp, "tasks.db")
        record = os.path.join(tmp, "done.txt")
        release = os.path.join(tmp, "release")
        config = {"record": record}
        settings = {"task_store": "sqlite:" + store}

        def done() -> list[str]:
            if not os.path.exists(record):
                return []
            with open(record) as f:
                return f.read().split()

        first = self.start(config, **settings)
        self.addCleanup(lambda: open(release, "a").close())  # before any stop
        pids = list(first.workerPids().values())
        client = self.client(first)
        # The first two end at once; the others wait for the release file,
        # which comes only after the kill.
        tasks = [{"op": "record", "value": f"mail-{n}", "tag": f"mail-{n}"} for n in range(12)]
        for task in tasks[2:]:
            task["release"] = release
        reply = client.request("tasks " + json.dumps(tasks))
        ids = json.loads(reply[len("TASKIDS "):])
        self.assertTrue(all(isinstance(i, int) and i is not False for i in ids), ids)
        accepted = [f"mail-{n}" for n in range(12)]
        self.assertTrue(waitUntil(lambda: len(done()) >= 2, 5), first.log())
        first.waitFor(r"^TASKSTART ", count=4, timeout=5)  # two running
        first.signal(signal.SIGKILL)
        self.assertEqual(first.wait(5), -signal.SIGKILL)
        self.assertTrue(waitUntil(lambda: all(processGone(pid) for pid in pids), 3), pids)
        before = done()
        self.assertLess(len(set(before)), len(accepted))
        open(release, "a").close()

        def journalEmpty() -> bool:
            db = sqlite3.connect(store, timeout=5)
            try:
                return db.execute("SELECT COUNT(*) FROM tasks").fetchone()[0] == 0
            finally:
                db.close()

        second = self.start(config, **settings)
        complete = waitUntil(lambda: set(done()) == set(accepted), 10, 0.05)
        self.assertTrue(complete, (sorted(set(accepted) - set(done())), second.log()))
        # Nothing left to run: the journal is empty, and a task sent after
        # that to each task worker (one task at a time each, queued behind
        # anything the master held) has answered.  Anything extra shows now.
        self.assertTrue(waitUntil(journalEmpty, 3, 0.05))
        client = self.client(second)
        for dst in TASK_WORKER_IDS:
            reply = client.request(f"taskto {dst} " + json.dumps({"op": "echo", "value": "last"}))
            line = client.readLine(timeout=5)
            self.assertTrue(line.startswith(f"FINISH {reply.split()[2]} OK "), line)
        final = done()
        self.assertEqual(set(final), set(accepted))
        self.assertLessEqual(len(final), len(accepted) + 2, final)
        self.assertIn("will run again", second.log())
        self.assertTrue(waitUntil(journalEmpty, 3, 0.05))

    def test_failedTaskIsDeadLetter(self) -> None:
        """
        A task that fails in a task worker process after it was accepted is
        logged with its id, counted in C{stats()} and kept in the journal's
        dead letters with its data, source worker and error.
        """
        store = os.path.abspath(self.mktemp())
        server = self.start(task_store="sqlite:" + store)
        client = self.client(server)
        data = {"op": "raise", "value": "boom 7"}
        _, asker, taskId = client.request(taskCommand(data)).split()
        self.assertEqual(client.readLine(timeout=5), f"FINISH {taskId} FAIL TaskFailed ValueError: boom 7")
        server.waitFor(rf"task {taskId} failed", count=2, timeout=3)
        stats = json.loads(client.request("stats")[len("STATS "):])
        self.assertEqual(stats["task_failed_count"], 1)
        journal = Journal(store)
        self.addCleanup(journal.close)
        letters = waitUntil(journal.deadLetters, 3, 0.02)
        self.assertEqual(len(letters), 1, server.log())
        [letter] = letters
        self.assertEqual((letter.data, letter.src, letter.attempts), (data, int(asker), 1))
        self.assertIn("ValueError: boom 7", letter.error)
        self.assertEqual(journal.count(), 0)
