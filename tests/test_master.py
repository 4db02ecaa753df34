"""
L{MasterService} on a L{MemoryReactorClock} with a fake L{Forker}: the
wiring between the processes' channels, the supervisor, the router and the
task dispatcher, with no real process.
"""

from __future__ import annotations

import marshal
import os
import signal
import socket
from typing import Any, Callable

from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from swooletw import Server
from swooletw.runtime.master import MasterService


class _BoundPort:
    """
    What the master needs of a listening port: a real bound socket it
    never accepts on.
    """

    def __init__(self) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.bind(("127.0.0.1", 0))

    def stopReading(self) -> None:
        pass

    def fileno(self) -> int:
        return self.socket.fileno()

    def getHost(self) -> IPv4Address:
        return IPv4Address("TCP", "127.0.0.1", self.socket.getsockname()[1])

    def stopListening(self) -> None:
        self.socket.close()


class _Reactor(MemoryReactorClock):
    def __init__(self) -> None:
        super().__init__()
        self.bound: list[_BoundPort] = []

    def listenTCP(self, port: int, factory: Any, backlog: int = 50, interface: str = "") -> _BoundPort:
        bound = _BoundPort()
        self.tcpServers.append((port, factory, backlog, interface))
        self.bound.append(bound)
        return bound


class FakeForker:
    """
    Hands out pids; the test says when a process ends.
    """

    def __init__(self) -> None:
        self.forked: list[int] = []
        self.signals: list[tuple[int, int]] = []
        self.watching: dict[int, Callable[[int, int], None]] = {}
        self._next = 5000

    def fork(self, child: Callable[[int], int]) -> tuple[int, socket.socket]:
        self._next += 1
        self.forked.append(self._next)
        parentEnd, childEnd = socket.socketpair()
        childEnd.close()
        return self._next, parentEnd

    def watch(self, pid: int, ended: Callable[[int, int], None]) -> None:
        self.watching[pid] = ended

    def signal(self, pid: int, signum: int) -> None:
        self.signals.append((pid, signum))


def exitStatus(code: int = 0, signum: int = 0) -> int:
    """
    A C{waitpid} status.
    """
    return signum if signum else code << 8


class MasterTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = _Reactor()
        self.serv = Server("127.0.0.1", 0, reactor=self.reactor)
        self.events: list[tuple[Any, ...]] = []
        self.serv.set(worker_num=2, task_worker_num=1, task_worker_mode="process", max_wait_time=3)
        self.serv.on("task", lambda *args: None)
        for event in ("start", "managerStart", "managerStop", "shutdown"):
            self.serv.on(event, lambda serv, event=event: self.events.append((event,)))
        self.serv.on("workerError", lambda serv, *args: self.events.append(("workerError",) + args))
        self.forker = FakeForker()
        self.master = MasterService(self.serv, self.forker)
        self.master.privilegedStartService()
        self.master.startService()
        self.transports = {}
        for workerId in self.master.channels:
            self.connect(workerId)
        self.addCleanup(lambda: [port.socket.close() for port in self.reactor.bound])

    def connect(self, workerId: int) -> StringTransport:
        """
        Connect the master's channel to C{workerId} to a transport the
        test reads.
        """
        transport = StringTransport()
        self.master.channels[workerId].makeConnection(transport)
        self.transports[workerId] = transport
        return transport

    def sentTo(self, workerId: int) -> list[tuple[Any, ...]]:
        """
        The messages the master wrote to C{workerId}'s channel.
        """
        data = self.transports[workerId].value()
        self.transports[workerId].clear()
        messages = []
        while data:
            size = int.from_bytes(data[:4], "big")
            messages.append(marshal.loads(data[4:4 + size]))
            data = data[4 + size:]
        return messages

    def say(self, workerId: int, kind: str, *args: Any) -> None:
        """
        C{workerId} sends a message to the master.
        """
        self.master.channels[workerId].handlers[kind](*args)

    def end(self, workerId: int, status: int) -> None:
        """
        C{workerId}'s process exits with C{status}: reaped, channel closed.
        """
        pid = self.master.supervisor.slots[workerId].pid
        self.forker.watching.pop(pid)(pid, status)
        self.master.channels[workerId].connectionLost(None)

    def test_startForksEveryProcess(self) -> None:
        self.assertEqual(self.events, [("start",), ("managerStart",)])
        self.assertEqual(len(self.forker.forked), 3)
        self.assertEqual(sorted(self.master.channels), [0, 1, 2])
        self.assertEqual(self.serv.worker_id, -1)
        self.assertEqual(self.serv.master_pid, os.getpid())

    def test_exitHandledOnceChannelReadToTheEnd(self) -> None:
        """
        A worker's last message ("recycling") can come after its exit is
        reaped: the exit is handled only once the channel is closed too, so
        a recycle is never mistaken for a crash.
        """
        pid = self.master.supervisor.slots[0].pid
        self.forker.watching.pop(pid)(pid, exitStatus(0))
        self.assertEqual(self.master.supervisor.slots[0].pid, pid)  # not yet
        self.say(0, "recycling")
        self.master.channels[0].connectionLost(None)
        self.assertNotEqual(self.master.supervisor.slots[0].pid, pid)
        self.assertEqual([e for e in self.events if e[0] == "workerError"], [])
        self.assertEqual(len(self.forker.forked), 4)

    def test_crashFiresWorkerError(self) -> None:
        pid = self.master.supervisor.slots[1].pid
        self.reactor.advance(5)
        self.end(1, exitStatus(signum=signal.SIGKILL))
        self.assertIn(("workerError", 1, pid, 0, signal.SIGKILL), self.events)
        self.reactor.advance(0)
        self.assertEqual(len(self.forker.forked), 4)

    def test_taskRoundTrip(self) -> None:
        """
        A worker's task goes to the idle task worker; its result back to
        the worker that asked.
        """
        self.say(2, "ready", 1)
        self.say(0, "task", 7, 0, "data", -1)
        self.assertEqual(self.sentTo(2), [("runtask", 7, 0, "data")])
        self.say(2, "taskdone", 7, True, "done")
        self.assertEqual(self.sentTo(0), [("taskresult", 7, True, "done")])

    def test_statsOnlyWhenAsked(self) -> None:
        """
        Pings carry counters to the master and nothing back; a worker that
        asks gets everyone's.
        """
        self.say(0, "ping", {"accept_count": 2})
        self.say(1, "ping", {"accept_count": 3})
        self.assertEqual((self.sentTo(0), self.sentTo(1)), ([], []))
        self.say(1, "wantstats")
        [(kind, perWorker, _)] = self.sentTo(1)
        self.assertEqual((kind, perWorker), ("allstats", {0: {"accept_count": 2}, 1: {"accept_count": 3}}))

    def test_stopAsksThenKillsWithinMaxWaitTime(self) -> None:
        """
        Stopping asks every process over its channel; one that is still
        running after C{max_wait_time} is killed; C{managerStop} and
        C{shutdown} fire once all have exited.
        """
        stopped = self.master.stopService()
        for workerId in (0, 1, 2):
            self.assertEqual(self.sentTo(workerId), [("stop",)])
        self.end(0, exitStatus(0))
        self.end(2, exitStatus(0))
        self.reactor.advance(3)
        self.assertEqual(self.forker.signals, [])
        self.reactor.advance(0.6)
        hung = self.master.supervisor.slots[1].pid
        self.assertEqual(self.forker.signals, [(hung, signal.SIGKILL)])
        self.assertNoResult(stopped)
        self.end(1, exitStatus(signum=signal.SIGKILL))
        self.successResultOf(stopped)
        self.assertEqual(self.events[-2:], [("managerStop",), ("shutdown",)])
        self.assertEqual(len(self.forker.forked), 3)  # nothing restarted

    def test_workerAsksForShutdown(self) -> None:
        self.reactor.running = True
        self.say(0, "shutdown")
        self.reactor.advance(0)
        self.assertTrue(self.reactor.hasStopped)
