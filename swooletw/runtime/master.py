# -*- test-case-name: tests.test_master -*-
"""
The master of a supervised server (C{PROCESS} mode, or several workers, or
task worker processes).  Swoole splits this role between a master and a
manager process; here one process does both, so C{start}, C{managerStart},
C{workerError}, C{managerStop} and C{shutdown} all fire in it.

 - It binds every port once and never accepts: the forked workers adopt the
   sockets and the kernel spreads connections over them.  The sockets stay
   open in the master for the server's whole life, so a reload refuses no
   connection attempt (they wait in the backlog for the new workers).
 - It forks the processes the L{Supervisor} asks for (through a
   L{Forker}: the real one forks and reaps through the reactor's own child
   reaping on C{SIGCHLD}; tests give a fake), and wires each one's channel
   to the router, the task dispatcher and the supervisor.
 - C{SIGUSR1} (or C{serv.reload()}) reloads every process, C{SIGUSR2} the
   task workers only; C{SIGTERM}/C{SIGINT} (or C{serv.shutdown()}) stop
   gracefully, and the process exits 0.
"""

from __future__ import annotations

import os
import signal
import socket
from typing import Any, Callable

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.protocol import DatagramProtocol, Factory
from twisted.logger import Logger

from swooletw.constants import UDP_TYPES
from swooletw.events import invoke
from swooletw.proctitle import set_process_name
from swooletw.runtime.channel import Channel, ChannelFactory
from swooletw.runtime.fork import Forker, OSForker
from swooletw.runtime.endpoints import ListenError, bindPorts, endpointFor, listenNow, stopListening
from swooletw.runtime.local import ProcessRuntime
from swooletw.runtime.router import MasterRouter
from swooletw.runtime.signals import installStopSignals, restoreSignals, stopSoon
from swooletw.runtime.supervisor import Supervisor, WorkerSlot
from swooletw.runtime.taskworker import runTaskWorker
from swooletw.runtime.worker import ListeningSocket, runWorker
from swooletw.tasks.processes import TaskDispatcher
from swooletw.wire.table import ConnectionTable

__all__ = ["MasterService"]


class _NoConnections(Factory):
    """
    The factory of the master's own listening ports, which never accept.
    """

    noisy = False

    def buildProtocol(self, addr: Any) -> None:
        return None


class MasterService(Service):
    """
    Runs a server as a master with forked worker and task worker processes.
    """

    log = Logger()

    def __init__(self, serv: Any, forker: Forker | None = None) -> None:
        self.serv = serv
        self.forker = forker if forker is not None else OSForker()
        self.setName("swooletw-master")
        setting = serv.setting
        self.sockets: list[ListeningSocket] = []
        self._listening: list[Any] = []
        self.channels: dict[int, Channel] = {}
        #: pid -> [exit status once reaped, whether its channel is closed]
        self._ending: dict[int, list[Any]] = {}
        self._previousSignals: dict[int, Any] = {}
        taskProcesses = setting["task_worker_num"] if setting["task_worker_mode"] == "process" else 0
        self.dispatcher = TaskDispatcher(self._sendTo) if taskProcesses else None
        self.router = MasterRouter(serv.reactor, self.dispatcher.stats if self.dispatcher else None)
        self.supervisor = Supervisor(serv.reactor, self, self, setting, taskProcesses)
        self.runtime = ProcessRuntime(
            serv, serv.reactor, -1, ConnectionTable(1, 0), self.router,
            reload=self.supervisor.reload, shutdown=lambda: stopSoon(serv.reactor),
        )

    # ---------------------------------------------------------- listening

    def privilegedStartService(self) -> None:
        """
        Bind every port, once, for all workers.
        """
        super().privilegedStartService()
        if not self._listening:
            self._listening = bindPorts(self.serv.ports, self._bindOne)
            for port, listening in zip(self.serv.ports, self._listening):
                listening.stopReading()
                self.sockets.append(
                    ListeningSocket(port, listening.fileno(), listening.socket.family, port.type in UDP_TYPES)
                )

    def _bindOne(self, port: Any, settings: dict[str, Any]) -> Any:
        reactor = self.serv.reactor
        if port.type in UDP_TYPES:
            return reactor.listenUDP(port.port, DatagramProtocol(), interface=port.host)
        if port.endpoint is not None and port.endpoint.split(":", 1)[0] in ("ssl", "tls"):
            raise ListenError(
                f"{port.endpoint}: with worker processes set ssl_cert_file and "
                "ssl_key_file on the port instead of an ssl: endpoint"
            )
        # The workers do TLS themselves, over the plain socket.
        plain = dict(settings, ssl_cert_file=None, ssl_key_file=None)
        return listenNow(endpointFor(reactor, port, plain), _NoConnections())

    # ---------------------------------------------------------- lifecycle

    def startService(self) -> None:
        """
        Fire C{start} and C{managerStart}, start the processes.
        """
        if not self._listening:
            self.privilegedStartService()
        super().startService()
        serv = self.serv
        serv.master_pid = serv.manager_pid = serv.worker_pid = os.getpid()
        self.runtime.counters.start_time = int(serv.reactor.seconds())
        serv.attach(self.runtime)
        set_process_name("swooletw: master")
        # Once running: twistd installs its own handlers as the reactor starts.
        serv.reactor.callWhenRunning(self._installSignals)
        released = self._releaseTasks()
        if released:
            self.log.info("{count} tasks from a previous run will run again", count=released)
        self._fire("start")
        self._fire("managerStart")
        self.supervisor.start()

    def stopService(self) -> defer.Deferred[None]:
        """
        Stop every process gracefully (kill what is left after
        C{max_wait_time}), close the sockets, fire C{managerStop} and
        C{shutdown}.
        """
        super().stopService()
        restoreSignals(self._previousSignals)
        self._previousSignals = {}
        done = self.supervisor.stop()
        done.addCallback(lambda _: stopListening(self._listening))
        done.addBoth(lambda _: self._finish())
        return done

    def _finish(self) -> None:
        self.serv.timers.clearAll()
        self._fire("managerStop")
        self._fire("shutdown")

    def _releaseTasks(self, owner: int | None = None) -> int:
        """
        Hand back the journalled tasks of a dead process (all of them at
        start: every one is from a run that died); the next worker to start
        claims them.  The master opens the journal only for this, so no
        SQLite connection is ever inherited by a forked worker.
        """
        if not self.serv.setting["task_store"]:
            return 0
        from swooletw.tasks.journal import parseStore, releaseTasks

        return releaseTasks(parseStore(self.serv.setting["task_store"]), self.serv.reactor, owner)

    # ----------------------------------------------------- the launcher

    def launch(self, slot: WorkerSlot) -> int:
        """
        Fork a process for C{slot} and wire its channel.
        """
        masterPid = os.getpid()
        block = None if slot.task else self.router.leaseBlock()
        pid, parentEnd = self.forker.fork(lambda channelFd: self._childMain(slot, channelFd, masterPid, block))
        channel = Channel(self._handlersFor(slot, pid), lambda reason: self._ended(pid, channelLost=True))
        self.channels[slot.workerId] = channel
        self.router.attach(slot.workerId, channel)
        self.serv.reactor.adoptStreamConnection(parentEnd.fileno(), socket.AF_UNIX, ChannelFactory(channel))
        parentEnd.close()
        self.forker.watch(pid, self._reaped)
        return pid

    def _childMain(self, slot: WorkerSlot, channelFd: int, masterPid: int, block: int | None) -> int:
        """
        The whole life of the forked child; its exit status.
        """
        if slot.task:
            return runTaskWorker(self.serv, slot.workerId, channelFd, masterPid, self.router.directory)
        return runWorker(
            self.serv, slot.workerId, channelFd, list(self.sockets), masterPid, block, self.router.directory
        )

    def askToStop(self, slot: WorkerSlot) -> None:
        """
        Ask C{slot}'s process to stop gracefully: a message on its channel,
        or C{SIGTERM} if the channel is gone.
        """
        channel = self.channels.get(slot.workerId)
        if channel is None or not channel.send("stop"):
            self.forker.signal(slot.pid, signal.SIGTERM)

    def kill(self, pid: int) -> None:
        """
        Kill C{pid} at once (C{SIGKILL}) if it still runs.
        """
        self.forker.signal(pid, signal.SIGKILL)

    def _reaped(self, pid: int, status: int) -> None:
        self._ended(pid, status=status)

    def _ended(self, pid: int, status: int | None = None, channelLost: bool = False) -> None:
        """
        A child is done once it is reaped and its channel is read to the
        end (its last messages, such as "recycling", come first).
        """
        seen = self._ending.setdefault(pid, [None, False])
        if status is not None:
            seen[0] = status
        seen[1] = seen[1] or channelLost
        if seen[0] is None or not seen[1]:
            return
        del self._ending[pid]
        status = seen[0]
        exitCode = os.WEXITSTATUS(status) if os.WIFEXITED(status) else 0
        signum = os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0
        self.supervisor.exited(pid, exitCode, signum)

    def _handlersFor(self, slot: WorkerSlot, pid: int) -> dict[str, Callable[..., Any]]:
        workerId = slot.workerId
        supervisor = self.supervisor
        handlers: dict[str, Callable[..., Any]] = {
            **self.router.handlersFor(workerId),
            "ready": lambda pid: supervisor.ready(workerId),
            "ping": lambda stats: self._pinged(workerId, stats),
            "recycling": lambda: supervisor.planned(workerId, "max_request"),
            "reload": lambda onlyTaskWorkers: supervisor.reload(onlyTaskWorkers),
            "shutdown": lambda: stopSoon(self.serv.reactor),
        }
        dispatcher = self.dispatcher
        if dispatcher is not None and slot.task:
            handlers["taskdone"] = lambda taskId, ok, result: dispatcher.done(workerId, taskId, ok, result)
        elif dispatcher is not None:
            handlers["task"] = lambda taskId, src, data, dst=-1: dispatcher.submitted(workerId, taskId, src, data, dst)
        return handlers

    def _sendTo(self, workerId: int, kind: str, *args: Any) -> bool:
        channel = self.channels.get(workerId)
        return channel is not None and channel.send(kind, *args)

    def _pinged(self, workerId: int, stats: dict[str, Any]) -> None:
        self.supervisor.pinged(workerId)
        self.router.gotStats(workerId, stats)

    # ------------------------------------------- the supervisor listener

    def workerReady(self, slot: WorkerSlot) -> None:
        if slot.task and self.dispatcher is not None:
            self.dispatcher.ready(slot.workerId, started=True)

    def workerRetiring(self, slot: WorkerSlot) -> None:
        if slot.task and self.dispatcher is not None:
            self.dispatcher.retire(slot.workerId)

    def workerExited(self, slot: WorkerSlot, pid: int) -> None:
        self.channels.pop(slot.workerId, None)
        self.router.detach(slot.workerId)
        if slot.task and self.dispatcher is not None:
            self.dispatcher.lost(slot.workerId)
        released = self._releaseTasks(pid)
        if released:
            self.log.warn(
                "worker {id} (pid {pid}) left {count} tasks; they will run again",
                id=slot.workerId, pid=pid, count=released,
            )

    def workerFailed(self, slot: WorkerSlot, pid: int, exitCode: int, signum: int) -> None:
        self._fire("workerError", slot.workerId, pid, exitCode, signum)

    # ------------------------------------------------------------ signals

    def _installSignals(self) -> None:
        reactor = self.serv.reactor
        self._previousSignals = installStopSignals(reactor)
        for signum, onlyTaskWorkers in ((signal.SIGUSR1, False), (signal.SIGUSR2, True)):
            self._previousSignals[signum] = signal.signal(
                signum,
                lambda s, f, only=onlyTaskWorkers: reactor.callFromThread(self.supervisor.reload, only),
            )

    def _fire(self, event: str, *args: Any) -> None:
        callback = self.serv.getCallback(event)
        if callback is not None:
            invoke(callback, (self.serv,) + args, event)
