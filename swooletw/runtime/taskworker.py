# -*- test-case-name: tests.test_taskprocs -*-
"""
A task worker process (C{task_worker_mode = "process"}): forked and
supervised by the master like a worker, it runs one task at a time as the
master hands them out (L{swooletw.tasks.processes.TaskDispatcher}) and
reports each result.  It can reach every connection of the server through
the router, as any worker can.
"""

from __future__ import annotations

import os
import random
from typing import Any

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from swooletw.deadline import waitAtMost
from swooletw.runtime.channel import Channel
from swooletw.runtime.child import adoptChannel, becomeChild, runChild
from swooletw.runtime.local import ProcessRuntime
from swooletw.runtime.signals import stopReactor
from swooletw.runtime.worker import recycleLimit, workerRuntime
from swooletw.tasks.processes import runTaskHere
from swooletw.wire.table import ConnectionTable

__all__ = ["TaskWorkerService", "runTaskWorker"]


class TaskWorkerService(Service):
    """
    Runs in a task worker process: one task at a time, from the master.
    """

    log = Logger()

    def __init__(self, serv: Any, runtime: ProcessRuntime, channel: Channel, recycleAt: int) -> None:
        self.serv = serv
        self.runtime = runtime
        self.channel = channel
        self.exitCode = 0
        self.handled = 0
        self.recycleAt = recycleAt
        self._current: defer.Deferred[None] | None = None
        self._stopping = False
        self._ping: LoopingCall | None = None

    def startService(self) -> None:
        super().startService()
        serv, runtime = self.serv, self.runtime
        serv.attach(runtime)
        callback = serv.getCallback("workerStart")
        if callback is not None:
            try:
                callback(serv, runtime.workerId)
            except Exception:
                self.log.failure("workerStart failed in task worker {id}", id=runtime.workerId)
                self.exitCode = 4
                stopReactor(runtime.clock)
                return
        self._ping = LoopingCall(lambda: self.channel.send("ping", runtime.localStats()))
        self._ping.clock = runtime.clock
        self._ping.start(serv.setting["worker_ping_interval"], now=True)
        self.channel.send("ready", os.getpid())

    def runTask(self, taskId: int, src: int, data: Any) -> None:
        """
        Run one task and report it to the master.
        """
        self._current = defer.ensureDeferred(self._run(taskId, src, data))

    async def _run(self, taskId: int, src: int, data: Any) -> None:
        ok, value = await runTaskHere(self.serv, taskId, src, data)
        self.handled += 1
        self._current = None
        recycle = self.recycleAt and self.handled >= self.recycleAt and not self._stopping
        if recycle:
            # Before "taskdone", so the master gives this process no more.
            self.channel.send("recycling")
        self.channel.send("taskdone", taskId, ok, value)
        if recycle:
            stopReactor(self.runtime.clock)

    def stopService(self) -> defer.Deferred[None]:
        """
        Finish the running task (within C{max_wait_time}), then
        C{workerStop}, then close the channel once what was written to it
        has reached the master.
        """
        super().stopService()
        self._stopping = True
        if self._ping is not None and self._ping.running:
            self._ping.stop()
        clock = self.runtime.clock
        maxWait = self.serv.setting["max_wait_time"]
        current = self._current or defer.succeed(None)
        waited = waitAtMost(current, maxWait, clock)
        waited.addCallback(lambda _: self._fireWorkerStop())
        waited.addCallback(lambda _: self._closeChannel(maxWait))
        return waited

    def _fireWorkerStop(self) -> None:
        callback = self.serv.getCallback("workerStop")
        if callback is not None:
            try:
                callback(self.serv, self.runtime.workerId)
            except Exception:
                self.log.failure("workerStop failed in task worker {id}", id=self.runtime.workerId)

    def _closeChannel(self, seconds: float) -> defer.Deferred[Any]:
        if not self.channel.reachable:
            return defer.succeed(None)
        lost: defer.Deferred[None] = defer.Deferred()
        self.channel.onLost = lambda reason: lost.called or lost.callback(None)
        self.channel.transport.loseConnection()
        return waitAtMost(lost, seconds, self.runtime.clock)


def runTaskWorker(serv: Any, workerId: int, channelFd: int, masterPid: int, directory: Any) -> int:
    """
    The whole life of a forked task worker process; returns its exit
    status.
    """
    reactor = becomeChild(serv, f"swooletw: task worker {workerId}", masterPid, [channelFd])
    channel = Channel({}, lambda reason: stopReactor(reactor))
    runtime = workerRuntime(serv, reactor, workerId, channel, directory, ConnectionTable(1, 0))
    runtime.taskProcess = True
    recycleAt = recycleLimit(serv.setting["task_max_request"], None, random.Random())
    service = TaskWorkerService(serv, runtime, channel, recycleAt)
    channel.handlers["runtask"] = service.runTask
    channel.handlers["stop"] = lambda: stopReactor(reactor)
    adoptChannel(reactor, channelFd, channel)
    return runChild(reactor, service)
