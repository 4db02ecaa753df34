# -*- test-case-name: tests.test_workers -*-
"""
A worker process of a multi-process server: forked from the master, it
adopts the master's listening sockets (the kernel spreads connections over
every worker accepting on them), serves its own connections entirely, and
talks to the master over its L{Channel}.

 - It pings the master every C{worker_ping_interval}; a worker whose reactor
   hangs stops pinging and the master replaces it.
 - After C{max_request} packets (plus a random grace, so workers do not
   restart together) it stops gracefully and the master starts another.
 - C{SIGTERM} or a C{stop} message: stop accepting, let in-flight callbacks
   finish, close connections, C{workerStop}, exit 0, all within
   C{max_wait_time}.
"""

from __future__ import annotations

import os
import random
import signal
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from twisted.internet import tcp
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from swooletw.runtime.channel import Channel
from swooletw.runtime.child import adoptChannel, becomeChild, runChild
from swooletw.runtime.endpoints import tlsContext
from swooletw.runtime.local import ProcessRuntime
from swooletw.runtime.router import Directory, WorkerRouter, blockRange
from swooletw.runtime.signals import stopReactor
from swooletw.runtime.single import ServingService
from swooletw.wire.table import ConnectionTable, ServerStats

if TYPE_CHECKING:  # pragma: no cover
    from swooletw.api.port import Port

__all__ = ["ListeningSocket", "WorkerService", "recycleLimit", "runWorker"]

#: How often a worker checks whether it reached max_request.
RECYCLE_CHECK_SECONDS = 0.1


@dataclass
class ListeningSocket:
    """
    A socket the master bound for one port, handed to every worker.
    """

    port: Port
    fileno: int
    family: int
    datagram: bool


def recycleLimit(limit: int, grace: int | None, rng: random.Random) -> int:
    """
    The number of requests after which a process is replaced: 0 for never,
    else C{limit} (C{max_request}, C{task_max_request}) plus a random grace
    of up to C{grace} (C{max_request_grace}; L{None}: Swoole's default, half
    of C{limit}), so processes do not restart together.
    """
    if not limit:
        return 0
    if grace is None:
        grace = limit // 2
    return limit + (rng.randint(0, grace) if grace else 0)


class WorkerService(ServingService):
    """
    L{ServingService} for a worker: adopts the master's sockets instead of
    binding, fires only C{workerStart}/C{workerStop}, pings the master and
    recycles itself after C{max_request}.
    """

    log = Logger()

    def __init__(self, serv: Any, runtime: ProcessRuntime, sockets: list[ListeningSocket], channel: Channel) -> None:
        super().__init__(serv, runtime)
        self.sockets = {id(s.port): s for s in sockets}
        self.channel = channel
        self.exitCode = 0
        self._recycleAt = recycleLimit(
            serv.setting["max_request"], serv.setting["max_request_grace"], random.Random()
        )
        self._loops: list[LoopingCall] = []
        self._stopping = False
        if self._recycleAt:
            runtime.closeHook = self._checkRecycle

    def bindPort(self, port: Port, settings: dict[str, Any]) -> Any:
        """
        Adopt the master's socket for C{port}.
        """
        listening = self.sockets[id(port)]
        clock = self.runtime.clock
        try:
            if listening.datagram:
                return clock.adoptDatagramPort(listening.fileno, listening.family, self.udpProtocol(port))
            factory = self.tcpFactory(port)
            if settings["ssl_cert_file"]:
                from twisted.protocols.tls import TLSMemoryBIOFactory

                context = tlsContext(settings["ssl_cert_file"], settings["ssl_key_file"])
                factory = TLSMemoryBIOFactory(context, False, factory)
            return adoptOneAcceptPort(clock, listening.fileno, listening.family, factory)
        finally:
            os.close(listening.fileno)

    def fireStartEvents(self) -> None:
        """
        Only C{workerStart(serv, worker_id)} fires in a worker; then tell
        the master this worker is ready.
        """
        callback = self.serv.getCallback("workerStart")
        if callback is not None:
            try:
                callback(self.serv, self.runtime.workerId)
            except Exception:
                # The master restarts it, with back-off if it keeps failing.
                self.log.failure("workerStart failed in worker {id}", id=self.runtime.workerId)
                self.exitCode = 4
                stopReactor(self.runtime.clock)
                return
        self.channel.send("ready", os.getpid())
        self._every(self.serv.setting["worker_ping_interval"], self._ping)
        if self._recycleAt:
            self._every(RECYCLE_CHECK_SECONDS, self._checkRecycle)

    def fireStopEvents(self) -> None:
        """
        Nothing more after C{workerStop} in a worker.
        """

    def startTasks(self) -> None:
        """
        Task worker processes: this worker's tasks go through the master.
        Task threads: as in one process, with the journal's released tasks
        claimed by whichever worker starts first.
        """
        serv = self.serv
        if serv.setting["task_worker_mode"] != "process" or not serv.setting["task_worker_num"]:
            if serv.setting["task_worker_num"] and self.runtime.tasks is None:
                self.startThreadTasks(self.openTaskStore())
            return
        from swooletw.tasks.processes import ProcessTaskPool

        pool = ProcessTaskPool(serv, self.runtime.clock, self.channel, self.openTaskStore())
        self.channel.handlers.update(pool.handlers())
        self.runtime.tasks = pool
        pool.recover()

    def stopService(self) -> Any:
        """
        Stop gracefully, then stop this process's reactor.
        """
        self._stopping = True
        for loop in self._loops:
            if loop.running:
                loop.stop()
        return super().stopService()

    def _every(self, seconds: float, f: Any) -> None:
        loop = LoopingCall(f)
        loop.clock = self.runtime.clock
        loop.start(seconds, now=True)
        self._loops.append(loop)

    def _ping(self) -> None:
        self.channel.send("ping", self.runtime.localStats())

    def _checkRecycle(self) -> None:
        if self._stopping:
            return
        handled = self.runtime.localStats()["request_count"]
        if handled >= self._recycleAt:
            self.log.info(
                "worker {id} handled {count} requests (max_request): recycling",
                id=self.runtime.workerId,
                count=handled,
            )
            self.channel.send("recycling")
            stopReactor(self.runtime.clock)


class OneAcceptPort(tcp.Port):
    """
    A listening port that accepts one connection per wake-up.  Every worker
    wakes when a connection arrives on the shared socket; Twisted's
    C{tcp.Port} would accept up to a hundred (and more) per wake-up, so one
    worker could take a whole burst of connects.  One per wake-up spreads a
    burst over the workers.
    """

    def doRead(self) -> None:
        self.numberAccepts = 1
        super().doRead()


def adoptOneAcceptPort(reactor: Any, fileno: int, family: int, factory: Any) -> OneAcceptPort:
    """
    C{reactor.adoptStreamPort}, with a L{OneAcceptPort}.
    """
    port = OneAcceptPort._fromListeningDescriptor(reactor, fileno, family, factory)
    port.startListening()
    return port


def workerRuntime(
    serv: Any, reactor: Any, workerId: int, channel: Channel, directory: Directory, table: ConnectionTable
) -> ProcessRuntime:
    """
    The runtime of a forked process: its operations on other processes'
    connections, reloads and shutdowns go to the master over C{channel}.
    """
    counters = ServerStats()
    router = WorkerRouter(
        reactor, workerId, channel, directory, table, counters, serv.setting["worker_ping_interval"]
    )
    channel.handlers.update(router.handlers())
    return ProcessRuntime(
        serv, reactor, workerId, table, router,
        reload=lambda only: channel.send("reload", only) or True,
        shutdown=lambda: channel.send("shutdown") or True,
        counters=counters,
    )


def runWorker(
    serv: Any,
    workerId: int,
    channelFd: int,
    sockets: list[ListeningSocket],
    masterPid: int,
    block: int,
    directory: Directory,
) -> int:
    """
    The whole life of a forked worker; returns its exit status.  Called in
    the child right after C{fork()}; never returns to the master's code.
    """
    reactor = becomeChild(
        serv, f"swooletw: worker {workerId}", masterPid,
        [channelFd] + [s.fileno for s in sockets],
    )
    # Without the master this worker is done; tasks waiting for results
    # stay in the journal (if any) for the next run.
    channel = Channel({"stop": lambda: stopReactor(reactor)}, lambda reason: stopReactor(reactor))
    table = ConnectionTable(*blockRange(block))
    runtime = workerRuntime(serv, reactor, workerId, channel, directory, table)
    table.listener = runtime.router
    # SIGUSR1/SIGUSR2 sent to a worker ask the master to reload.
    for signum, onlyTaskWorkers in ((signal.SIGUSR1, False), (signal.SIGUSR2, True)):
        signal.signal(
            signum,
            lambda s, f, only=onlyTaskWorkers: reactor.callFromThread(channel.send, "reload", only),
        )
    adoptChannel(reactor, channelFd, channel)
    service = WorkerService(serv, runtime, sockets, channel)
    try:
        service.privilegedStartService()
    except Exception:
        WorkerService.log.failure("worker {id} could not adopt its sockets", id=workerId)
        return 3
    return runChild(reactor, service)
