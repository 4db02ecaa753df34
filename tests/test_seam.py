"""
The seam between L{swooletw.Server} and its runtime
(L{swooletw.interfaces.IServerRuntime}): what the operations answer before
C{start()}, how a runtime is attached, which runtime a server gets, and
what is refused before anything is bound or forked.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from swooletw import BASE, PROCESS, Server, SettingError
from swooletw.interfaces import OPERATIONS, IServerRuntime
from swooletw.runtime import serviceFor
from swooletw.runtime.local import ProcessRuntime
from swooletw.runtime.master import MasterService
from swooletw.runtime.single import ServingService
from swooletw.tasks import NoTaskWorkers
from swooletw.tasks.processes import runTaskHere
from swooletw.testing import ServerHarness


class BeforeStartTests(SynchronousTestCase):
    """
    Before C{start()} the operations answer as Swoole's do: nothing to send
    to or close, no connections, no tasks.
    """

    def setUp(self) -> None:
        self.serv = Server("127.0.0.1", 9501, reactor=MemoryReactorClock())

    def test_connections(self) -> None:
        serv = self.serv
        self.assertFalse(serv.started)
        self.assertIs(serv.send(1, b"x"), False)
        self.assertIs(serv.close(1), False)
        self.assertIs(serv.exists(1), False)
        self.assertIs(serv.exist(1), False)
        self.assertIs(serv.getClientInfo(1), False)
        self.assertEqual(serv.getClientList(), [])
        self.assertEqual(list(serv.connections), [])
        self.assertEqual(len(serv.connections), 0)
        self.assertIs(serv.sendto("127.0.0.1", 9, b"x"), False)

    def test_process(self) -> None:
        self.assertIs(self.serv.reload(), False)
        self.assertIs(self.serv.shutdown(), False)
        self.assertEqual(self.serv.worker_id, 0)
        self.assertFalse(self.serv.taskworker)
        stats = self.serv.stats()
        self.assertEqual((stats["connection_num"], stats["accept_count"]), (0, 0))

    def test_tasks(self) -> None:
        self.assertRaises(NoTaskWorkers, self.serv.task, "x")
        self.assertRaises(NoTaskWorkers, self.serv.taskwait, "x")
        self.assertRaises(NoTaskWorkers, self.serv.taskStored, 1)
        self.assertIs(self.serv.finish("x"), False)


class AttachTests(SynchronousTestCase):
    """
    Attaching a runtime binds its methods onto the server: a call costs
    what the runtime's own does.
    """

    def test_runtimeProvidesTheInterface(self) -> None:
        serv = Server("127.0.0.1", 9501)
        self.assertTrue(verifyObject(IServerRuntime, ProcessRuntime(serv, MemoryReactorClock(), 0)))

    def test_operationsAreTheRuntimes(self) -> None:
        serv = Server("127.0.0.1", 9501)
        runtime = ProcessRuntime(serv, MemoryReactorClock(), 3)
        serv.attach(runtime)
        self.assertTrue(serv.started)
        for name, method in OPERATIONS.items():
            bound = getattr(serv, name)
            self.assertIs(bound.__self__, runtime, name)
            self.assertEqual(bound.__func__, getattr(ProcessRuntime, method), name)
        self.assertEqual(serv.worker_id, 3)

    def test_detachRestores(self) -> None:
        serv = Server("127.0.0.1", 9501)
        serv.attach(ProcessRuntime(serv, MemoryReactorClock(), 3))
        serv.detach()
        self.assertFalse(serv.started)
        self.assertIs(serv.send(1, b"x"), False)
        self.assertEqual(serv.worker_id, 0)

    def test_settingsFrozenOnceStarted(self) -> None:
        serv = Server("127.0.0.1", 9501)
        serv.attach(ProcessRuntime(serv, MemoryReactorClock(), 0))
        from swooletw import ServerStateError

        self.assertRaises(ServerStateError, serv.set, worker_num=2)
        self.assertRaises(ServerStateError, serv.on, "receive", lambda *a: None)
        self.assertRaises(ServerStateError, serv.ports[0].set, max_conn=10)


class ModeTests(SynchronousTestCase):
    """
    PROCESS mode (the default) supervises even one worker; BASE mode with
    one worker and no task worker processes is one process.
    """

    def test_processModeOneWorkerHasAMaster(self) -> None:
        serv = Server("127.0.0.1", 0, reactor=MemoryReactorClock())
        serv.set(worker_num=1)
        self.assertEqual(serv.mode, PROCESS)
        self.assertIsInstance(serviceFor(serv), MasterService)

    def test_baseModeOneWorkerIsOneProcess(self) -> None:
        serv = Server("127.0.0.1", 0, BASE, reactor=MemoryReactorClock())
        serv.set(worker_num=1)
        self.assertIsInstance(serviceFor(serv), ServingService)

    def test_baseModeSeveralWorkersHasAMaster(self) -> None:
        serv = Server("127.0.0.1", 0, BASE, reactor=MemoryReactorClock())
        serv.set(worker_num=2)
        self.assertIsInstance(serviceFor(serv), MasterService)

    def test_baseModeRefusesMaxRequest(self) -> None:
        """
        A setting that needs a master to act on it is refused at start in
        a single process, never silently ignored.
        """
        for name in ("max_request", "task_max_request"):
            serv = Server("127.0.0.1", 0, BASE, reactor=MemoryReactorClock())
            serv.set({name: 3, "worker_num": 1})
            e = self.assertRaises(SettingError, serv.asService)
            self.assertIn(repr(name), str(e))

    def test_baseModeReloadRefused(self) -> None:
        serv = Server("127.0.0.1", 0, BASE)
        harness = ServerHarness(serv)
        self.addCleanup(lambda: self.successResultOf(harness.stop()))
        self.assertIs(serv.reload(), False)

    def test_taskWorkersNeedTaskCallbackBeforeForking(self) -> None:
        """
        C{task_worker_num} without a C{task} callback stops start-up at
        C{asService()} with one clear message, before anything is bound
        or forked.
        """
        reactor = MemoryReactorClock()
        serv = Server("127.0.0.1", 0, reactor=reactor)
        serv.set(worker_num=2, task_worker_num=1)
        e = self.assertRaises(SettingError, serv.asService)
        self.assertIn("'task' callback", str(e))
        self.assertEqual(reactor.tcpServers, [])


class FinishBelongsToItsTaskTests(TestCase):
    """
    Two C{async def} task handlers that C{await} and then call
    C{serv.finish()} each finish their own task.
    """

    def test_threadKind(self) -> None:
        serv = Server("127.0.0.1", 0, BASE)
        serv.set(task_worker_num=2)
        gates = {1: defer.Deferred(), 2: defer.Deferred()}

        async def onTask(serv: Any, taskId: int, src: int, data: Any) -> None:
            await gates[taskId]
            serv.finish(f"result of {data}")

        results: dict[int, Any] = {}
        serv.on("task", onTask)
        serv.on("finish", lambda serv, taskId, result: results.__setitem__(taskId, result))
        harness = ServerHarness(serv)
        self.addCleanup(lambda: self.successResultOf(harness.stop()))
        self.assertEqual((serv.task("one"), serv.task("two")), (1, 2))
        gates[1].callback(None)  # task 1 resumes first, while task 2 waits
        gates[2].callback(None)
        self.assertEqual(results, {1: "result of one", 2: "result of two"})

    @defer.inlineCallbacks
    def test_processKind(self) -> None:
        """
        The same in a task worker process (L{runTaskHere}).
        """
        serv = Server("127.0.0.1", 0)
        gates = {1: defer.Deferred(), 2: defer.Deferred()}

        async def onTask(serv: Any, taskId: int, src: int, data: Any) -> None:
            await gates[taskId]
            serv.finish(f"result of {data}")

        serv.on("task", onTask)
        serv.attach(ProcessRuntime(serv, MemoryReactorClock(), 2))
        first = defer.ensureDeferred(runTaskHere(serv, 1, 0, "one"))
        second = defer.ensureDeferred(runTaskHere(serv, 2, 0, "two"))
        gates[1].callback(None)
        gates[2].callback(None)
        self.assertEqual((yield first), (True, "result of one"))
        self.assertEqual((yield second), (True, "result of two"))


class ClosedChannelTests(SynchronousTestCase):
    """
    A message to the master on a closed channel fails its waiter at once
    instead of leaving it pending forever; an oversized one is refused.
    """

    def test_taskToGoneMasterFails(self) -> None:
        from swooletw.runtime.channel import Channel
        from swooletw.tasks.processes import ProcessTaskPool, TaskFailed

        serv = Server("127.0.0.1", 0)
        serv.set(task_worker_num=1, task_worker_mode="process")
        serv.on("task", lambda *args: None)
        results: list[Any] = []
        serv.on("finish", lambda serv, taskId, result: results.append(result))
        serv.attach(ProcessRuntime(serv, MemoryReactorClock(), 0))
        channel = Channel({}, lambda reason: None)  # never connected
        pool = ProcessTaskPool(serv, MemoryReactorClock(), channel)
        self.assertEqual(pool.submit("x"), 1)
        [failure] = results
        self.assertTrue(failure.check(TaskFailed))
        self.assertEqual(pool.pending, 0)
        self.assertEqual(pool.stats()["task_failed_count"], 1)
        self.flushLoggedErrors(TaskFailed)

    def test_oversizedMessageRefused(self) -> None:
        from twisted.internet.testing import StringTransport

        from swooletw.runtime.channel import Channel

        channel = Channel({}, lambda reason: None)
        transport = StringTransport()
        channel.makeConnection(transport)
        self.assertIs(channel.send("batch", b"x" * (Channel.MAX_LENGTH + 1)), False)
        self.assertEqual(transport.value(), b"")
        self.assertIs(channel.send("ping", 1), True)
        self.assertLess(Channel.MAX_LENGTH, 1 << 30)
