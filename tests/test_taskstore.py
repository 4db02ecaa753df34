"""
Tests for the task journal (L{swooletw.tasks.journal}): nothing accepted is
lost, across a dead worker and a dead server.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase, TestCase

from swooletw import Server, SettingError
from swooletw.tasks.journal import TaskStore, parseStore
from swooletw.testing import HarnessReactor, ServerHarness

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class TaskStoreTests(SynchronousTestCase):
    """
    The journal's operations.
    """

    def setUp(self) -> None:
        self.path = os.path.abspath(self.mktemp())
        self.store = TaskStore(self.path)
        self.addCleanup(self.store.close)

    def test_addRemove(self) -> None:
        """add journals a task with an increasing id; remove forgets it."""
        first = self.store.add({"to": "a@example.com"}, 0, 100)
        second = self.store.add(b"\x00raw", 1, 100)
        self.assertEqual(second, first + 1)
        self.assertEqual(self.store.count(), 2)
        self.store.remove(first)
        self.assertEqual(self.store.count(), 1)

    def test_releaseAndClaim(self) -> None:
        """A dead owner's tasks are released and claimed, data intact, oldest first."""
        a = self.store.add({"n": 1}, 0, 100)
        b = self.store.add(b"bytes", 1, 100)
        self.store.add("other", 0, 200)
        self.assertEqual(self.store.claim(300), [])
        self.assertEqual(self.store.release(100), 2)
        self.assertEqual(self.store.claim(300), [(a, 0, {"n": 1}), (b, 1, b"bytes")])
        self.assertEqual(self.store.claim(400), [])

    def test_claimIsExclusive(self) -> None:
        """Two processes claiming at once: each task goes to one of them."""
        for i in range(10):
            self.store.add(i, 0, 1)
        self.store.release()
        other = TaskStore(self.path)
        self.addCleanup(other.close)
        mine, theirs = self.store.claim(2), other.claim(3)
        self.assertEqual(len(mine) + len(theirs), 10)
        self.assertFalse({t[0] for t in mine} & {t[0] for t in theirs})

    def test_parseStore(self) -> None:
        """Only sqlite:PATH is a store."""
        self.assertEqual(parseStore("sqlite:/tmp/t.db"), "/tmp/t.db")
        for bad in ("redis://x", "sqlite:", "t.db"):
            self.assertRaises(ValueError, parseStore, bad)

    def test_setting(self) -> None:
        """The task_store setting is checked at set()."""
        serv = Server("127.0.0.1", 9501)
        e = self.assertRaises(SettingError, serv.set, task_store="mysql://x")
        self.assertIn("'task_store'", str(e))


class JournalledTaskTests(SynchronousTestCase):
    """
    task() with a store, on the harness.
    """

    def server(self, path: str) -> Server:
        serv = Server("127.0.0.1", 9501, reactor=HarnessReactor())
        serv.set(worker_num=1, task_worker_num=1, task_store=f"sqlite:{path}")
        return serv

    def test_writtenBeforeReturnRemovedWhenDone(self) -> None:
        """An accepted task is in the journal when task() returns, gone when it ran."""
        path = os.path.abspath(self.mktemp())
        gate: Deferred[None] = Deferred()
        serv = self.server(path)

        async def onTask(serv, taskId, src, data):
            await gate
            return "sent"

        serv.on("task", onTask)
        harness = ServerHarness(serv)
        taskId = serv.task({"to": "x@example.com"})
        probe = TaskStore(path)
        self.addCleanup(probe.close)
        self.assertEqual(probe.count(), 1)
        gate.callback(None)
        self.assertEqual(probe.count(), 0)
        self.assertIsInstance(taskId, int)
        self.successResultOf(harness.stop())

    def test_failedTaskLeavesJournal(self) -> None:
        """A task that raised has run: it leaves the journal (it is not retried)."""
        path = os.path.abspath(self.mktemp())
        serv = self.server(path)

        def onTask(serv, taskId, src, data):
            raise ValueError("bad task")

        serv.on("task", onTask)
        ServerHarness(serv)
        serv.task("x")
        self.flushLoggedErrors(ValueError)
        probe = TaskStore(path)
        self.addCleanup(probe.close)
        self.assertEqual(probe.count(), 0)

    def test_recoveredAtStart(self) -> None:
        """Tasks left by a dead run run again at start; finish gets their results."""
        path = os.path.abspath(self.mktemp())
        old = TaskStore(path)
        ids = [old.add({"n": n}, 1, 99999) for n in range(3)]
        old.close()
        seen = []
        serv = self.server(path)
        serv.on("task", lambda serv, taskId, src, data: [src, data["n"]])
        serv.on("finish", lambda serv, taskId, data: seen.append((taskId, data)))
        ServerHarness(serv)
        self.assertEqual(seen, [(ids[0], [1, 0]), (ids[1], [1, 1]), (ids[2], [1, 2])])
        probe = TaskStore(path)
        self.addCleanup(probe.close)
        self.assertEqual(probe.count(), 0)

    def test_storeNeedsTaskWorkers(self) -> None:
        """task_store without task workers stops start-up, naming it."""
        serv = Server("127.0.0.1", 9501, reactor=HarnessReactor())
        serv.set(worker_num=1, task_store="sqlite:" + os.path.abspath(self.mktemp()))
        e = self.assertRaises(SettingError, ServerHarness, serv)
        self.assertIn("task_store", str(e))


SCRIPT = """
import json, os, sys, time
import swooletw

port, store, done = int(sys.argv[1]), sys.argv[2], sys.argv[3]
serv = swooletw.Server("127.0.0.1", port)
serv.set({"worker_num": 2, "task_worker_num": 2, "task_store": "sqlite:" + store,
          "open_eof_split": True, "package_eof": "\\n"})

def onReceive(serv, fd, fromId, data):
    taskId = serv.task(data.decode().strip())
    serv.send(fd, ("%s %d\\n" % (taskId, serv.worker_id)).encode())

def onTask(serv, taskId, src, data):
    time.sleep(0.3)
    fd = os.open(done, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, (data + "\\n").encode())
    os.close(fd)
    return data

serv.on("receive", onReceive)
serv.on("task", onTask)
serv.on("workerStart", lambda serv, wid: print("WORKER", wid, os.getpid(), flush=True))
serv.start()
"""


def _freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class CrashRecoveryTests(TestCase):
    """
    Real processes: SIGKILL while tasks run; after the restart every
    accepted task has run, and nothing else did.
    """

    def setUp(self) -> None:
        self.tmp = os.path.abspath(self.mktemp())
        os.makedirs(self.tmp)
        self.script = os.path.join(self.tmp, "server.py")
        with open(self.script, "w") as f:
            f.write(SCRIPT)
        self.store = os.path.join(self.tmp, "tasks.db")
        self.done = os.path.join(self.tmp, "done.txt")
        self.port = _freePort()
        self.processes: list[subprocess.Popen] = []
        self.addCleanup(self.stopAll)

    def start(self) -> subprocess.Popen:
        log = open(os.path.join(self.tmp, f"server{len(self.processes)}.log"), "wb")
        self.addCleanup(log.close)
        process = subprocess.Popen(
            [sys.executable, self.script, str(self.port), self.store, self.done],
            cwd=self.tmp, env=dict(os.environ, PYTHONPATH=REPO), stdout=log, stderr=subprocess.STDOUT,
        )
        self.processes.append(process)
        self.logPath = log.name
        return process

    def stopAll(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.wait(timeout=10)

    def workers(self) -> dict[int, int]:
        with open(self.logPath) as f:
            lines = [line.split() for line in f if line.startswith("WORKER ")]
        return {int(w): int(pid) for _, w, pid in lines}

    def submit(self, count: int) -> list[str]:
        deadline = time.monotonic() + 10
        while True:
            try:
                sock = socket.create_connection(("127.0.0.1", self.port), timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        accepted = []
        with sock, sock.makefile("rb") as replies:
            for n in range(count):
                data = f"mail-{n}"
                sock.sendall(data.encode() + b"\n")
                taskId, worker = replies.readline().split()
                self.assertNotEqual(taskId, b"False")
                accepted.append(data)
        self.acceptingWorker = int(worker)
        return accepted

    def doneSet(self) -> list[str]:
        if not os.path.exists(self.done):
            return []
        with open(self.done) as f:
            return f.read().split()

    def waitForAll(self, accepted: list[str], timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while set(self.doneSet()) != set(accepted) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual(set(self.doneSet()), set(accepted))

    def test_wholeServerKilled(self) -> None:
        """kill -9 of the master (workers die with it) mid-tasks; after a restart all ran."""
        master = self.start()
        accepted = self.submit(12)
        time.sleep(0.2)
        master.send_signal(signal.SIGKILL)
        master.wait(timeout=10)
        time.sleep(0.5)
        self.assertLess(len(set(self.doneSet())), len(accepted))
        self.start()
        self.waitForAll(accepted)

    def test_workerKilled(self) -> None:
        """kill -9 of one worker mid-tasks; its replacement runs them."""
        self.start()
        accepted = self.submit(12)
        deadline = time.monotonic() + 10
        while len(self.workers()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.1)
        # The worker that accepted the client holds all its tasks.
        os.kill(self.workers()[self.acceptingWorker], signal.SIGKILL)
        time.sleep(0.2)
        self.assertLess(len(set(self.doneSet())), len(accepted))
        self.waitForAll(accepted)
