"""
Tests for the task workers, thread kind (L{swooletw.tasks}).
"""

from __future__ import annotations

import threading

from twisted.internet import reactor as globalReactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from swooletw import BASE, Server, SettingError
from swooletw.tasks import NoTaskWorkers, TaskTimeout, checkTaskData
from swooletw.testing import HarnessReactor, ServerHarness


def taskServer(**settings) -> Server:
    serv = Server("127.0.0.1", 9501, reactor=HarnessReactor())
    serv.set(dict({"worker_num": 1, "task_worker_num": 2}, **settings))
    return serv


class TaskDataTests(SynchronousTestCase):
    """
    What a task may carry.
    """

    def test_jsonLikeAndBytes(self) -> None:
        """JSON-like values and bytes pass."""
        checkTaskData({"to": "a@example.com", "n": [1, 2.5, None, True], "raw": b"\x00"})

    def test_otherTypesRefused(self) -> None:
        """A set, an object or a non-str key is refused, naming where."""
        e = self.assertRaises(TypeError, checkTaskData, {"a": [1, {2}]})
        self.assertIn("data['a'][1]", str(e))
        self.assertIn("set", str(e))
        self.assertRaises(TypeError, checkTaskData, object())
        self.assertRaises(TypeError, checkTaskData, {1: "x"})


class TaskAPITests(SynchronousTestCase):
    """
    task/finish/taskwait on the harness (a synchronous stand-in pool).
    """

    def test_returnValueReachesFinish(self) -> None:
        """The handler's return value reaches finish(serv, task_id, data) in the asker."""
        seen = []
        serv = taskServer()
        serv.on("task", lambda serv, taskId, srcWorkerId, data: {"echo": data, "from": srcWorkerId})
        serv.on("finish", lambda serv, taskId, data: seen.append((taskId, data)))
        ServerHarness(serv)
        taskId = serv.task("mail")
        self.assertEqual(taskId, 1)
        self.assertEqual(seen, [(1, {"echo": "mail", "from": 0})])

    def test_finishCall(self) -> None:
        """serv.finish() inside the handler sends its value."""
        seen = []
        serv = taskServer()

        def onTask(serv, taskId, srcWorkerId, data):
            serv.finish("done:" + data)

        serv.on("task", onTask)
        serv.on("finish", lambda serv, taskId, data: seen.append(data))
        ServerHarness(serv)
        serv.task("x")
        self.assertEqual(seen, ["done:x"])

    def test_noFinishWithoutResult(self) -> None:
        """A handler returning None fires no finish (as Swoole)."""
        seen = []
        serv = taskServer()
        serv.on("task", lambda *args: None)
        serv.on("finish", lambda *args: seen.append(args))
        ServerHarness(serv)
        serv.task("x")
        self.assertEqual(seen, [])
        self.assertEqual(serv.stats()["task_done_count"], 1)

    def test_callbackInsteadOfFinish(self) -> None:
        """A callback given to task() gets the result instead of finish."""
        finishes, callbacks = [], []
        serv = taskServer()
        serv.on("task", lambda serv, taskId, src, data: data * 2)
        serv.on("finish", lambda *args: finishes.append(args))
        ServerHarness(serv)
        serv.task(21, callback=lambda serv, taskId, data: callbacks.append(data))
        self.assertEqual((finishes, callbacks), ([], [42]))

    def test_failingTaskReachesAsker(self) -> None:
        """A raising handler is logged with its id; finish gets the Failure; the pool goes on."""
        seen = []
        serv = taskServer()

        def onTask(serv, taskId, src, data):
            if data == "bad":
                raise ValueError("cannot send")
            return "ok"

        serv.on("task", onTask)
        serv.on("finish", lambda serv, taskId, data: seen.append(data))
        ServerHarness(serv)
        serv.task("bad")
        serv.task("good")
        self.assertIsInstance(seen[0], Failure)
        self.assertTrue(seen[0].check(ValueError))
        self.assertEqual(seen[1], "ok")
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        stats = serv.stats()
        self.assertEqual((stats["task_failed_count"], stats["task_done_count"]), (1, 1))

    def test_taskWorkerIdentity(self) -> None:
        """In the handler serv.taskworker is true and worker_id a task worker id."""
        seen = []
        serv = taskServer(worker_num=1, task_worker_num=3)
        serv.on("task", lambda serv, taskId, src, data: seen.append((serv.worker_id, serv.taskworker)))
        serv.on("workerStart", lambda serv, workerId: seen.append(("start", workerId, serv.taskworker)))
        ServerHarness(serv)
        seen.clear()
        serv.task("x")
        self.assertEqual(seen, [("start", 1, True), (1, True)])
        self.assertEqual((serv.worker_id, serv.taskworker), (0, False))

    def test_taskwait(self) -> None:
        """taskwait fires with the result, even None."""
        serv = taskServer()
        serv.on("task", lambda serv, taskId, src, data: None if data == "none" else data.upper())
        ServerHarness(serv)
        self.assertEqual(self.successResultOf(serv.taskwait("abc")), "ABC")
        self.assertIsNone(self.successResultOf(serv.taskwait("none")))

    def test_taskwaitTimesOut(self) -> None:
        """taskwait fails with TaskTimeout after its timeout; the task goes on."""
        gate: Deferred[str] = Deferred()
        serv = taskServer()

        async def onTask(serv, taskId, src, data):
            return await gate

        serv.on("task", onTask)
        harness = ServerHarness(serv)
        waited = serv.taskwait("x", timeout=0.5)
        harness.advance(0.49)
        self.assertNoResult(waited)
        harness.advance(0.02)
        self.failureResultOf(waited, TaskTimeout)
        self.assertEqual(serv.stats()["tasking_num"], 1)
        gate.callback("late")
        self.assertEqual(serv.stats()["tasking_num"], 0)

    def test_taskWaitMulti(self) -> None:
        """taskWaitMulti returns the finished results by index."""
        gate: Deferred[str] = Deferred()
        serv = taskServer()

        async def onTask(serv, taskId, src, data):
            if data == "slow":
                return await gate
            return data + "!"

        serv.on("task", onTask)
        harness = ServerHarness(serv)
        waited = serv.taskWaitMulti(["a", "slow", "b"], timeout=1)
        harness.advance(1.1)
        self.assertEqual(self.successResultOf(waited), {0: "a!", 2: "b!"})

    def test_queueFull(self) -> None:
        """task() beyond task_queue_max returns False, counted; none lost silently."""
        gate: Deferred[None] = Deferred()
        serv = taskServer(task_queue_max=2)

        async def onTask(serv, taskId, src, data):
            await gate

        serv.on("task", onTask)
        ServerHarness(serv)
        self.assertEqual([serv.task(i) for i in range(3)], [1, 2, False])
        self.assertEqual(serv.stats()["task_refused_count"], 1)
        gate.callback(None)
        self.assertEqual(serv.task(3), 3)

    def test_dstWorkerIdChecked(self) -> None:
        """dst_worker_id must be -1 or a task worker id; threads run it anyway."""
        serv = taskServer(worker_num=1, task_worker_num=2)
        serv.on("task", lambda serv, taskId, src, data: data)
        ServerHarness(serv)
        self.assertEqual(self.successResultOf(serv.taskwait("x", 1, dst_worker_id=2)), "x")
        e = self.assertRaises(ValueError, serv.task, "x", 3)
        self.assertIn("1..2", str(e))
        self.assertRaises(ValueError, serv.task, "x", 0)

    def test_badDataRefused(self) -> None:
        """Data that is not JSON-like or bytes raises TypeError at task()."""
        serv = taskServer()
        serv.on("task", lambda *args: None)
        ServerHarness(serv)
        self.assertRaises(TypeError, serv.task, {"when": object()})

    def test_noTaskWorkers(self) -> None:
        """task() without task_worker_num raises a clear error."""
        serv = Server("127.0.0.1", 9501, reactor=HarnessReactor())
        serv.set(worker_num=1)
        ServerHarness(serv)
        e = self.assertRaises(NoTaskWorkers, serv.task, "x")
        self.assertIn("task_worker_num", str(e))

    def test_taskCallbackRequired(self) -> None:
        """task_worker_num without a task callback stops start-up, naming it."""
        serv = taskServer()
        e = self.assertRaises(SettingError, ServerHarness, serv)
        self.assertIn("'task'", str(e))

    def test_finishOutsideTask(self) -> None:
        """finish() outside a task handler returns False."""
        serv = taskServer()
        serv.on("task", lambda *args: None)
        ServerHarness(serv)
        self.assertIs(serv.finish("x"), False)
        self.assertEqual(len(self.flushLoggedErrors()), 0)

    def test_receiveHandsOffTask(self) -> None:
        """The tutorial's §8 server: receive tasks, replies at once; finish later."""
        order = []
        serv = taskServer()

        def onReceive(serv, fd, fromId, data):
            serv.task(data.decode())
            serv.send(fd, b"This is a message from server.")
            order.append("worker continue run.")

        serv.on("receive", onReceive)
        serv.on("task", lambda serv, taskId, fromId, data: order.append("task " + data) or "done")
        serv.on("finish", lambda serv, taskId, data: order.append("finish " + data))
        client = ServerHarness(serv).connect()
        client.write(b"hi")
        self.assertEqual(client.read(), b"This is a message from server.")
        self.assertIn("finish done", order)

    def test_stopDrainsTasks(self) -> None:
        """Stopping waits for running tasks (within max_wait_time)."""
        gate: Deferred[None] = Deferred()
        serv = taskServer()

        async def onTask(serv, taskId, src, data):
            await gate
            return "finished"

        seen = []
        serv.on("task", onTask)
        serv.on("finish", lambda serv, taskId, data: seen.append(data))
        harness = ServerHarness(serv)
        serv.task("x")
        stopped = harness.stop(settle=False)
        harness.advance(1)
        self.assertNoResult(stopped)
        gate.callback(None)
        harness.advance(0.02)
        self.successResultOf(stopped)
        self.assertEqual(seen, ["finished"])


class RealThreadTests(TestCase):
    """
    Task handlers on real threads of a dedicated pool, with the real reactor.
    """

    def setUp(self) -> None:
        self.serv = Server("127.0.0.1", 0, BASE)
        self.serv.set(worker_num=1, task_worker_num=2)
        self.threads = set()
        #: what each handler does inside (set by the test): it blocks there
        self.inside = lambda data: None

        def onTask(serv, taskId, src, data):
            self.threads.add(threading.current_thread().name)
            self.inside(data)
            return [taskId, data, serv.worker_id, serv.taskworker]

        self.serv.on("task", onTask)
        service = self.serv.asService()
        service.privilegedStartService()
        service.startService()
        self.addCleanup(service.stopService)

    @inlineCallbacks
    def test_tasksRunInParallelOffTheReactor(self):
        """
        Two tasks run at once in the pool's threads: each handler waits
        inside for the other to be inside too (a barrier; one task at a
        time, or a task on the reactor thread, breaks it).
        """
        barrier = threading.Barrier(2)
        met = []
        self.inside = lambda data: met.append(barrier.wait(timeout=10))
        results = yield self.serv.taskWaitMulti(["a", "b"], timeout=15)
        self.assertEqual(sorted(met), [0, 1])
        self.assertEqual(sorted(r[1] for r in results.values()), ["a", "b"])
        self.assertTrue(all(r[3] is True and r[2] in (1, 2) for r in results.values()))
        self.assertTrue(all("swooletw-task" in name for name in self.threads), self.threads)
        self.assertNotIn(threading.current_thread().name, self.threads)

    @inlineCallbacks
    def test_reactorNotBlocked(self):
        """
        While a task's handler is blocked, the reactor runs: it hears from
        the handler's thread and a timer fires, and only then does the test
        let the handler go on.
        """
        entered: Deferred[None] = Deferred()
        release = threading.Event()
        released = []

        def inside(data):
            globalReactor.callFromThread(entered.callback, None)
            released.append(release.wait(timeout=10))

        self.inside = inside
        waited = self.serv.taskwait("slow", timeout=15)
        yield entered
        yield deferLater(globalReactor, 0, lambda: None)  # a timer fires
        self.assertFalse(waited.called)
        release.set()
        result = yield waited
        self.assertEqual(result[1], "slow")
        self.assertEqual(released, [True])


class RunBlockingTests(TestCase):
    """
    serv.runBlocking: blocking code from an async task handler, off the
    reactor, in the task threads.
    """

    def test_inTaskThread(self):
        """runBlocking runs f in a task thread and fires with its result."""
        serv = Server("127.0.0.1", 0, BASE)
        serv.set(worker_num=1, task_worker_num=1)

        async def onTask(serv, taskId, src, data):
            return await serv.runBlocking(lambda x: (x * 2, threading.current_thread().name), data)

        serv.on("task", onTask)
        service = serv.asService()
        service.privilegedStartService()
        service.startService()
        self.addCleanup(service.stopService)

        def check(result):
            self.assertEqual(result[0], 42)
            self.assertIn("swooletw-task", result[1])

        return serv.taskwait(21, timeout=5).addCallback(check)

    def test_withoutTaskWorkers(self):
        """Without task workers runBlocking refuses, rather than borrow the reactor's pool."""
        serv = Server("127.0.0.1", 0, BASE)
        self.assertRaises(NoTaskWorkers, serv.runBlocking, lambda: None)
