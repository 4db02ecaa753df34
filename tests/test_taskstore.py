"""
Tests for the task journal (L{swooletw.tasks.journal}): nothing accepted is
lost, across a dead worker and a dead server.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import sys
from typing import Any

from twisted.internet import reactor as globalReactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from swooletw import Server, SettingError
from swooletw.tasks.journal import Claimed, Journal, JournalClosed, TaskStore, parseStore, releaseTasks
from swooletw.testing import HarnessReactor, ServerHarness
from tests.workersupport import ServerProcess, processGone, waitUntil


class JournalTests(SynchronousTestCase):
    """
    The journal's operations, on one synchronous connection.
    """

    def setUp(self) -> None:
        self.path = os.path.abspath(self.mktemp())
        self.journal = Journal(self.path)
        self.addCleanup(self.journal.close)

    def test_addRemove(self) -> None:
        """add journals a task under its key; remove forgets it."""
        self.journal.add("p.1:1", {"to": "a@example.com"}, 0, 100)
        self.journal.add("p.1:2", b"\x00raw", 1, 100)
        self.assertEqual(self.journal.count(), 2)
        self.journal.remove("p.1:1")
        self.assertEqual(self.journal.count(), 1)

    def test_releaseAndClaim(self) -> None:
        """
        A dead owner's tasks are released and claimed, data intact, oldest
        first, one more attempt each; a claim takes nothing else (not the
        claimer's own live tasks).
        """
        self.journal.add("a:1", {"n": 1}, 0, 100)
        self.journal.add("a:2", b"bytes", 1, 100)
        self.journal.add("b:1", "other", 0, 200)
        self.journal.add("c:1", "mine", 0, 300)
        self.assertEqual(self.journal.claim(300), [])
        self.assertEqual(self.journal.release(100), 2)
        self.assertEqual(
            self.journal.claim(300), [Claimed("a:1", 0, {"n": 1}, 2), Claimed("a:2", 1, b"bytes", 2)]
        )
        self.assertEqual(self.journal.claim(400), [])
        self.assertEqual(self.journal.release(300), 3)

    def test_claimIsExclusive(self) -> None:
        """Two processes claiming at once: each task goes to one of them."""
        for i in range(10):
            self.journal.add(f"k:{i}", i, 0, 1)
        self.journal.release()
        other = Journal(self.path)
        self.addCleanup(other.close)
        mine, theirs = self.journal.claim(2), other.claim(3)
        self.assertEqual(len(mine) + len(theirs), 10)
        self.assertFalse({t.key for t in mine} & {t.key for t in theirs})

    def test_deadLetters(self) -> None:
        """
        fail moves a task to the dead letters: key, data, source worker,
        error, when, attempts; deadLetters lists them newest first.
        """
        self.journal.add("k:1", {"to": "x"}, 3, 100)
        self.journal.add("k:2", b"raw", 1, 100)
        self.journal.release(100)
        self.journal.claim(200)
        self.journal.fail("k:1", "ValueError: bad address")
        self.journal.fail("k:2", "KeyError: 'to'")
        self.assertEqual(self.journal.count(), 0)
        second, first = self.journal.deadLetters()
        self.assertEqual(first[:3], ("k:1", {"to": "x"}, 3))
        self.assertEqual((first.error, first.attempts), ("ValueError: bad address", 2))
        self.assertIsInstance(first.failed, float)
        self.assertEqual((second.key, second.data), ("k:2", b"raw"))
        self.assertEqual(len(self.journal.deadLetters(limit=1)), 1)

    def test_oldLayoutMoved(self) -> None:
        """
        A journal of the earlier layout (AUTOINCREMENT ids) is moved over
        on open, its tasks kept.
        """
        path = os.path.abspath(self.mktemp())
        db = sqlite3.connect(path)
        db.execute(
            "CREATE TABLE tasks (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL,"
            " data BLOB NOT NULL, src_worker INTEGER NOT NULL, owner INTEGER,"
            " created REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 1)"
        )
        db.execute("INSERT INTO tasks (kind, data, src_worker, owner, created) VALUES ('json', '\"m\"', 1, 5, 0)")
        db.commit()
        db.close()
        journal = Journal(path)
        self.addCleanup(journal.close)
        journal.release()
        self.assertEqual(journal.claim(7), [Claimed("v1:1", 1, "m", 2)])

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


class ReleaseTasksTests(SynchronousTestCase):
    """
    The master's release: never waiting on another process's lock.
    """

    def test_releasedNow(self) -> None:
        """With the journal free, the tasks are released at once: how many."""
        path = os.path.abspath(self.mktemp())
        journal = Journal(path)
        self.addCleanup(journal.close)
        journal.add("k:1", "x", 0, 100)
        self.assertEqual(releaseTasks(path, HarnessReactor(), 100), 1)
        self.assertEqual(journal.claim(5), [Claimed("k:1", 0, "x", 2)])

    def test_busyTriesAgain(self) -> None:
        """
        While another process holds the write lock the release returns 0
        at once and tries again on the reactor until the lock is free.
        """
        path = os.path.abspath(self.mktemp())
        journal = Journal(path)
        self.addCleanup(journal.close)
        journal.add("k:1", "x", 0, 100)
        clock = HarnessReactor()
        journal.db.execute("BEGIN IMMEDIATE")
        self.assertEqual(releaseTasks(path, clock, 100), 0)
        clock.advance(0.1)
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        journal.db.commit()
        clock.advance(0.1)
        self.assertEqual(clock.getDelayedCalls(), [])
        self.assertEqual([t.key for t in journal.claim(5)], ["k:1"])


class TaskStoreTests(TestCase):
    """
    One process's journal: a writer thread with group commit, results on
    the reactor.
    """

    def setUp(self) -> None:
        self.addCleanup(sys.setswitchinterval, sys.getswitchinterval())  # start() lowers it
        self.path = os.path.abspath(self.mktemp())
        self.store = TaskStore(self.path)
        self.addCleanup(self.store.close)

    def probe(self) -> Journal:
        journal = Journal(self.path)
        self.addCleanup(journal.close)
        return journal

    def add(self, key: str, data: Any = "x", src: int = 0) -> Deferred[None]:
        """
        C{store.add}, its answer as a Deferred.
        """
        added: Deferred[None] = Deferred()
        self.store.add(key, data, src, 1, added.callback)
        return added

    @inlineCallbacks
    def test_groupCommit(self):
        """
        What was queued together is written in one transaction; each
        Deferred fires once it is committed, in order.
        """
        statements: list[str] = []
        self.store.journal.db.set_trace_callback(statements.append)
        keys = [self.store.key(n) for n in range(200)]
        fired = []
        for key in keys:
            self.add(key, {"k": key}).addCallback(lambda _, key=key: fired.append(key))
        self.store.remove(keys[0])
        flushed = self.store.flushed()
        self.store.start(globalReactor)
        yield flushed
        self.assertEqual([s for s in statements if s in ("BEGIN IMMEDIATE", "COMMIT")], ["BEGIN IMMEDIATE", "COMMIT"])
        self.assertEqual(fired, keys)
        self.assertEqual(self.probe().count(), 199)

    def test_keysUnique(self) -> None:
        """Two journals (processes, or runs) never make the same key."""
        other = TaskStore(self.path)
        self.addCleanup(other.close)
        self.assertNotEqual(self.store.key(1), other.key(1))
        self.assertIn(str(os.getpid()), self.store.key(1))

    @inlineCallbacks
    def test_reactorNeverWaits(self):
        """
        While another process holds the journal's write lock, add() returns
        at once and the reactor goes on; the write lands when the lock is
        free.
        """
        self.store.start(globalReactor)
        yield self.store.flushed()
        blocker = self.probe()
        blocker.db.execute("BEGIN IMMEDIATE")
        added = self.add(self.store.key(1))
        yield deferLater(globalReactor, 0, lambda: None)  # the reactor turns meanwhile
        self.assertFalse(added.called)
        blocker.db.commit()
        yield added
        self.assertEqual(blocker.count(), 1)

    @inlineCallbacks
    def test_batchFailsTogether(self):
        """
        A batch that cannot be written fails every Deferred in it with the
        error, and writes nothing of it; the next batch is written.
        """
        batch = [self.add("dup"), self.add("ok"), self.add("dup")]
        self.store.start(globalReactor)
        failures = []
        for d in batch:
            d.addErrback(failures.append)
            yield d
        self.assertEqual([f.check(sqlite3.IntegrityError) for f in failures], [sqlite3.IntegrityError] * 3)
        self.assertEqual(self.probe().count(), 0)
        yield self.add("again")
        self.assertEqual(self.probe().count(), 1)

    @inlineCallbacks
    def test_claimLater(self):
        """
        claim() fires with the released tasks; with C{later}, tasks released
        afterwards (the master, when a process died) are claimed too.
        """
        self.patch(TaskStore, "claimEvery", 0.01)
        other = self.probe()
        other.add("dead:1", "before", 2, 99)
        other.release(99)
        self.store.start(globalReactor)
        seen: Deferred[list[Claimed]] = Deferred()
        claimed = yield self.store.claim(os.getpid(), later=seen.callback)
        self.assertEqual(claimed, [Claimed("dead:1", 2, "before", 2)])
        other.add("dead:2", "after", 3, 98)
        other.release(98)
        later = yield seen
        self.assertEqual(later, [Claimed("dead:2", 3, "after", 2)])

    @inlineCallbacks
    def test_readsAndDeadLetters(self):
        """count() and deadLetters() answer through the writer."""
        self.store.start(globalReactor)
        self.add("k:1", {"a": 1}, 4)
        self.store.fail("k:1", "RuntimeError: no")
        count = yield self.store.count()
        [letter] = yield self.store.deadLetters()
        self.assertEqual(count, 0)
        self.assertEqual((letter.key, letter.data, letter.src, letter.error), ("k:1", {"a": 1}, 4, "RuntimeError: no"))

    @inlineCallbacks
    def test_closeWritesQueued(self):
        """close() writes what is queued first; later asks fail."""
        self.store.start(globalReactor)
        added = self.add("k:1")
        self.store.close()
        self.failureResultOf(self.store.count(), JournalClosed)
        yield added
        self.assertEqual(self.probe().count(), 1)


class JournalledTaskTests(SynchronousTestCase):
    """
    task() with a store, on the harness (batches written on the reactor's
    next turn, C{harness.advance(0)}).
    """

    def setUp(self) -> None:
        self.patch(TaskStore, "useThread", False)
        self.path = os.path.abspath(self.mktemp())

    def server(self, **settings) -> Server:
        serv = Server("127.0.0.1", 9501, reactor=HarnessReactor())
        serv.set(dict({"worker_num": 1, "task_worker_num": 1, "task_store": f"sqlite:{self.path}"}, **settings))
        return serv

    def probe(self) -> Journal:
        journal = Journal(self.path)
        self.addCleanup(journal.close)
        return journal

    def test_storedBeforeRunRemovedWhenDone(self) -> None:
        """
        task() returns an id at once; the task runs once it is on disk,
        when stored() fires; it leaves the journal when it has run.
        """
        gate: Deferred[None] = Deferred()
        ran = []
        serv = self.server()

        async def onTask(serv, taskId, src, data):
            ran.append(taskId)
            await gate
            return "sent"

        serv.on("task", onTask)
        harness = ServerHarness(serv)
        taskId = serv.task({"to": "x@example.com"})
        stored = serv.taskStored(taskId)
        self.assertEqual((taskId, ran, stored.called), (1, [], False))
        self.assertEqual(self.probe().count(), 0)
        harness.advance(0)
        self.assertIsNone(self.successResultOf(stored))
        self.assertIsNone(self.successResultOf(serv.taskStored(taskId)))
        self.assertEqual((ran, self.probe().count()), ([1], 1))
        gate.callback(None)
        harness.advance(0)
        self.assertEqual(self.probe().count(), 0)
        self.successResultOf(harness.stop())

    def test_storedWithoutStore(self) -> None:
        """Without a store, taskStored() has already fired."""
        serv = self.server(task_store=None)
        serv.on("task", lambda *args: None)
        ServerHarness(serv)
        self.assertIsNone(self.successResultOf(serv.taskStored(serv.task("x"))))

    def test_failedTaskIsDeadLetter(self) -> None:
        """
        A task that raised is logged with its id, counted, and kept as a
        dead letter (not retried).
        """
        serv = self.server()

        def onTask(serv, taskId, src, data):
            raise ValueError("bad task")

        serv.on("task", onTask)
        harness = ServerHarness(serv)
        serv.task({"to": "x"})
        harness.advance(0)
        harness.advance(0)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.assertEqual(serv.stats()["task_failed_count"], 1)
        probe = self.probe()
        self.assertEqual(probe.count(), 0)
        [letter] = probe.deadLetters()
        self.assertEqual(
            (letter.data, letter.src, letter.error, letter.attempts), ({"to": "x"}, 0, "ValueError: bad task", 1)
        )

    def test_notStoredFailsWithoutRunning(self) -> None:
        """
        A task the journal cannot take fails without running: stored()
        fails with the error, the asker gets it, it is logged and counted.
        """
        ran, finished = [], []
        serv = self.server()
        serv.on("task", lambda serv, taskId, src, data: ran.append(taskId))
        serv.on("finish", lambda serv, taskId, result: finished.append((taskId, result)))
        harness = ServerHarness(serv)
        harness.advance(0)  # the start-up claim

        def full(rows):
            raise sqlite3.OperationalError("database or disk is full")

        self.patch(serv.runtime.tasks.store.journal, "addMany", full)
        taskId = serv.task("x")
        stored = serv.taskStored(taskId)
        harness.advance(0)
        self.failureResultOf(stored, sqlite3.OperationalError)
        self.failureResultOf(serv.taskStored(taskId), sqlite3.OperationalError)
        self.assertEqual(ran, [])
        [(gotId, result)] = finished
        self.assertEqual(gotId, taskId)
        self.assertIsInstance(result, Failure)
        self.assertEqual(len(self.flushLoggedErrors(sqlite3.OperationalError)), 1)
        self.assertEqual(serv.stats()["task_failed_count"], 1)
        self.assertEqual(serv.stats()["task_queue_num"], 0)

    def test_recoveredAtStart(self) -> None:
        """
        Tasks left by a dead run run again at start (new ids, their data
        and source worker kept); finish gets their results.
        """
        old = Journal(self.path)
        for n in range(3):
            old.add(f"old:{n}", {"n": n}, 1, 99999)
        old.close()
        seen = []
        serv = self.server()
        serv.on("task", lambda serv, taskId, src, data: [src, data["n"]])
        serv.on("finish", lambda serv, taskId, data: seen.append((taskId, data)))
        harness = ServerHarness(serv)
        harness.advance(0)
        harness.advance(0)
        self.assertEqual(seen, [(1, [1, 0]), (2, [1, 1]), (3, [1, 2])])
        self.assertEqual(self.probe().count(), 0)
        self.assertEqual(serv.task("new"), 4)

    def test_stopWaitsForJournal(self) -> None:
        """A graceful stop ends once the journal has written what it was asked."""
        from twisted.internet.defer import Deferred

        serv = self.server()
        serv.on("task", lambda serv, taskId, src, data: "ok")
        harness = ServerHarness(serv)
        serv.task("x")
        written: Deferred[None] = Deferred()
        self.patch(serv.runtime.tasks.store, "flushed", lambda: written)
        stopped = harness.stop(settle=False)
        harness.advance(0.5)
        self.assertNoResult(stopped)
        written.callback(None)
        self.successResultOf(stopped)
        self.assertEqual(self.probe().count(), 0)

    def test_storeNeedsTaskWorkers(self) -> None:
        """task_store without task workers stops start-up, naming it."""
        serv = Server("127.0.0.1", 9501, reactor=HarnessReactor())
        serv.set(worker_num=1, task_store="sqlite:" + os.path.abspath(self.mktemp()))
        e = self.assertRaises(SettingError, ServerHarness, serv)
        self.assertIn("task_store", str(e))


SCRIPT = """
import json, os, sys, time
import swooletw

config = json.loads(sys.argv[1])
serv = swooletw.Server("127.0.0.1", 0)
serv.set({"worker_num": 2, "task_worker_num": 2, "task_store": "sqlite:" + config["store"],
          "open_eof_split": True, "package_eof": "\\n"})

def out(*words):
    # One write per line: every process shares the output.
    os.write(1, (" ".join(str(word) for word in words) + "\\n").encode())

def onReceive(serv, fd, fromId, data):
    taskId = serv.task(data.decode().strip())
    reply = ("%s %d\\n" % (taskId, serv.worker_id)).encode()
    serv.taskStored(taskId).addCallback(lambda _: serv.send(fd, reply))

def onTask(serv, taskId, src, data):
    out("TASKSTART", data, os.getpid())
    if data not in config["quick"]:
        # Runs until the test creates the release file: a kill before that
        # certainly finds it in the middle of the task.
        deadline = time.monotonic() + 30
        while not os.path.exists(config["release"]):
            if time.monotonic() > deadline:
                raise TimeoutError("no release file")
            time.sleep(0.01)  # poll interval of the wait for the release file
    fd = os.open(config["done"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, (data + "\\n").encode())
    os.close(fd)
    return data

serv.on("start", lambda serv: out("PORT", serv.port, "MASTER", os.getpid()))
serv.on("receive", onReceive)
serv.on("task", onTask)
serv.on("workerStart", lambda serv, wid: out("WORKERSTART", wid, os.getpid()))
serv.start()
"""


class CrashRecoveryTests(TestCase):
    """
    Real processes: SIGKILL while tasks run; after the restart every
    accepted task has run, and nothing else did.

    The first two tasks end at once; the others run until the test creates
    the release file, after the kill.
    """

    def setUp(self) -> None:
        self.tmp = os.path.abspath(self.mktemp())
        os.makedirs(self.tmp)
        self.script = os.path.join(self.tmp, "server.py")
        with open(self.script, "w") as f:
            f.write(SCRIPT)
        self.config = {
            "store": os.path.join(self.tmp, "tasks.db"),
            "done": os.path.join(self.tmp, "done.txt"),
            "release": os.path.join(self.tmp, "release"),
            "quick": ["mail-0", "mail-1"],
        }
        self.done = self.config["done"]

    def start(self) -> ServerProcess:
        server = ServerProcess(self, self.config, script=self.script)
        # Whatever happens, held tasks may end before the server is stopped.
        self.addCleanup(self.release)
        return server

    def release(self) -> None:
        open(self.config["release"], "a").close()

    def submit(self, server: ServerProcess, count: int) -> list[str]:
        accepted = []
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            with sock.makefile("rb") as replies:
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

    def midTasks(self, server: ServerProcess) -> None:
        """
        Wait until the quick tasks are done and two others run (held).
        """
        self.assertTrue(waitUntil(lambda: len(self.doneSet()) >= 2, 10), server.log())
        server.waitFor(r"^TASKSTART ", count=4, timeout=10)

    def waitForAll(self, accepted: list[str], timeout: float = 20) -> None:
        waitUntil(lambda: set(self.doneSet()) == set(accepted), timeout, 0.05)
        self.assertEqual(set(self.doneSet()), set(accepted))

    def test_wholeServerKilled(self) -> None:
        """kill -9 of the master (workers die with it) mid-tasks; after a restart all ran."""
        first = self.start()
        accepted = self.submit(first, 12)
        self.midTasks(first)
        workers = list(first.workerPids().values())
        first.signal(signal.SIGKILL)
        self.assertEqual(first.wait(10), -signal.SIGKILL)
        # Every process is gone: nothing more of that run can be done.
        self.assertTrue(waitUntil(lambda: all(processGone(pid) for pid in workers), 5), workers)
        self.assertLess(len(set(self.doneSet())), len(accepted))
        self.release()
        self.start()
        self.waitForAll(accepted)

    def test_workerKilled(self) -> None:
        """kill -9 of one worker mid-tasks; its replacement runs them."""
        server = self.start()
        accepted = self.submit(server, 12)
        server.waitForWorkers(2, timeout=10)
        self.midTasks(server)
        # The worker that accepted the client holds all its tasks.
        victim = server.workerPids()[self.acceptingWorker]
        os.kill(victim, signal.SIGKILL)
        self.assertTrue(waitUntil(lambda: processGone(victim), 5), victim)
        self.assertLess(len(set(self.doneSet())), len(accepted))
        self.release()
        self.waitForAll(accepted)
