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
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from swooletw import process
from swooletw.channel import Channel, ChannelFactory
from swooletw.connection import ConnectionTable, PortFactory, UDPPortProtocol
from swooletw.router import Directory, WorkerRouter, blockRange
from swooletw.service import ServerService

if TYPE_CHECKING:  # pragma: no cover
    from swooletw.server import Port, Server

__all__ = ["ListeningSocket", "WorkerService", "runWorker"]

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


def recycleLimit(settings: dict[str, Any], rng: random.Random) -> int:
    """
    The number of requests after which this worker is replaced: 0 for never,
    else C{max_request} plus a random grace of up to C{max_request_grace}
    (Swoole's default grace: half of C{max_request}).
    """
    limit = settings["max_request"]
    if not limit:
        return 0
    grace = settings["max_request_grace"]
    if grace is None:
        grace = limit // 2
    return limit + (rng.randint(0, grace) if grace else 0)


class WorkerService(ServerService):
    """
    L{ServerService} for a worker: adopts the master's sockets instead of
    binding, fires only C{workerStart}/C{workerStop}, pings the master and
    recycles itself after C{max_request}.
    """

    log = Logger()

    def __init__(self, serv: Server, sockets: list[ListeningSocket], channel: Channel) -> None:
        super().__init__(serv)
        self.sockets = {id(s.port): s for s in sockets}
        self.channel = channel
        self.exitCode = 0
        self._recycleAt = recycleLimit(serv.setting, random.Random())
        self._loops: list[LoopingCall] = []
        self._stopping = False

    def _bind(self, reactor: Any, port: Port, settings: dict[str, Any]) -> Any:
        listening = self.sockets[id(port)]
        try:
            if listening.datagram:
                protocol = UDPPortProtocol(self.serv, port)
                self._udp.append((port, protocol))
                return reactor.adoptDatagramPort(listening.fileno, listening.family, protocol)
            factory = PortFactory(self.serv, port, reactor)
            self._factories.append(factory)
            adopted = reactor.adoptStreamPort(
                listening.fileno, listening.family, self._tlsWrapped(factory, settings)
            )
            _acceptOneAtATime(adopted)
            return adopted
        finally:
            os.close(listening.fileno)

    def _tlsWrapped(self, factory: PortFactory, settings: dict[str, Any]) -> Any:
        if not settings["ssl_cert_file"]:
            return factory
        from twisted.protocols.tls import TLSMemoryBIOFactory

        from swooletw.service import _tlsContext

        context = _tlsContext(settings["ssl_cert_file"], settings["ssl_key_file"])
        return TLSMemoryBIOFactory(context, False, factory)

    def fireStartEvents(self) -> None:
        """
        Only C{workerStart(serv, worker_id)} fires in a worker; then tell
        the master this worker is ready.
        """
        callback = self.serv.getCallback("workerStart")
        if callback is not None:
            try:
                callback(self.serv, self.serv.worker_id)
            except Exception:
                # The master restarts it, with back-off if it keeps failing.
                self.log.failure("workerStart failed in worker {id}", id=self.serv.worker_id)
                self.exitCode = 4
                stopReactor(self.serv.reactor)
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
        Task threads: as in one process.
        """
        serv = self.serv
        if serv.setting["task_worker_mode"] != "process" or not serv.setting["task_worker_num"]:
            super().startTasks()
            return
        from swooletw.taskprocs import ProcessTaskPool

        pool = ProcessTaskPool(serv, serv.reactor, self.channel, self.openTaskStore())
        self.channel.handlers.update(pool.handlers())
        serv._tasks = pool
        pool.recover()

    def openTaskStore(self) -> Any:
        """
        A worker's connection to the task journal: the master has released
        the tasks of dead processes; this worker claims them.
        """
        if not self.serv.setting["task_store"]:
            return None
        from swooletw.taskstore import TaskStore, parseStore

        return TaskStore(parseStore(self.serv.setting["task_store"]))

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
        loop.clock = self.serv.reactor
        loop.start(seconds, now=True)
        self._loops.append(loop)

    def _ping(self) -> None:
        self.channel.send("ping", self.serv._localStats())

    def _checkRecycle(self) -> None:
        if self._stopping:
            return
        handled = self.serv._localStats()["request_count"]
        if handled >= self._recycleAt:
            self.log.info(
                "worker {id} handled {count} requests (max_request): recycling",
                id=self.serv.worker_id,
                count=handled,
            )
            self.channel.send("recycling")
            stopReactor(self.serv.reactor)


def _acceptOneAtATime(port: Any) -> None:
    """
    Every worker wakes when a connection arrives on the shared socket;
    Twisted would then accept up to a hundred (and more) per wake-up, so one
    worker could take a whole burst of connects.  Accepting one per wake-up
    spreads a burst over the workers.
    """
    if not hasattr(port, "numberAccepts"):
        return
    doRead = port.doRead

    def acceptOne() -> Any:
        port.numberAccepts = 1
        return doRead()

    port.doRead = acceptOne


def stopReactor(reactor: Any) -> None:
    """
    Stop the reactor unless it is already stopping (a second C{stop}
    message or signal is not an error).
    """
    from twisted.internet.error import ReactorNotRunning

    try:
        reactor.stop()
    except ReactorNotRunning:
        pass


def becomeChild(serv: Server, workerId: int, title: str, masterPid: int, keep: list[int]) -> Any:
    """
    What every forked child does first: die with the master, close what it
    inherited but C{keep}, start a fresh reactor, take its id and title.

    @return: the new reactor.
    """
    process.dieWithParent(masterPid)
    process.closeInheritedDescriptors(keep)
    reactor = process.freshReactor()
    serv._becomeWorker(workerId, reactor)
    process.setProcessTitle(title)
    return reactor


def adoptChannel(reactor: Any, channelFd: int, channel: Channel) -> None:
    """
    Run C{channel} over this child's end of the socketpair to the master.
    """
    sock = socket.socket(fileno=channelFd)
    reactor.adoptStreamConnection(sock.fileno(), socket.AF_UNIX, ChannelFactory(channel))
    sock.close()


def runWorker(
    serv: Server,
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
        serv, workerId, f"swooletw: worker {workerId}", masterPid,
        [channelFd] + [s.fileno for s in sockets],
    )

    def lost(reason: Any) -> None:
        stopReactor(reactor)

    channel = Channel({"stop": lambda: stopReactor(reactor)}, lost)
    serv._table = ConnectionTable(*blockRange(block))
    serv._connection = serv._table.get
    router = WorkerRouter(serv, workerId, channel, directory)
    channel.handlers.update(router.handlers())
    serv._table.listener = serv._router = router
    # SIGUSR1/SIGUSR2 sent to a worker ask the master to reload.
    for signum, onlyTaskWorkers in ((signal.SIGUSR1, False), (signal.SIGUSR2, True)):
        signal.signal(
            signum,
            lambda s, f, only=onlyTaskWorkers: reactor.callFromThread(channel.send, "reload", only),
        )
    adoptChannel(reactor, channelFd, channel)
    service = WorkerService(serv, sockets, channel)
    serv._service = service
    try:
        service.privilegedStartService()
    except Exception:
        WorkerService.log.failure("worker {id} could not adopt its sockets", id=workerId)
        return 3
    reactor.callWhenRunning(service.startService)
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.run()
    return service.exitCode
