# -*- test-case-name: tests.test_workers -*-
"""
The master of a multi-process server (C{worker_num} > 1).  Swoole splits
this role between a master and a manager process; here one process does
both, so C{start}, C{managerStart}, C{workerError}, C{managerStop} and
C{shutdown} all fire in it.

 - It binds every port once and never accepts: the forked workers adopt the
   sockets and the kernel spreads connections over them.  The sockets stay
   open in the master for the server's whole life, so a reload refuses no
   connection attempt (they wait in the backlog for the new workers).
 - It supervises like C{twisted.runner.procmon} and gunicorn's arbiter: a
   worker that dies is forked again at once, with back-off if it keeps dying
   within a second of starting, and C{workerError(serv, worker_id,
   worker_pid, exit_code, signal)} fires.  A worker that stops pinging for
   C{worker_timeout} seconds is killed and replaced.
 - C{SIGUSR1} (or C{serv.reload()}) replaces every worker gracefully: all at
   once with C{reload_async}, else one at a time, each after the previous
   one's successor is ready.  C{SIGUSR2} reloads task workers only.
 - Stopping (C{SIGTERM}, C{serv.shutdown()}) asks every worker to stop
   gracefully and kills what is left after C{max_wait_time}.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import traceback
from typing import TYPE_CHECKING, Any, Callable

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.protocol import Factory
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from swooletw import process
from swooletw import settings as _settings
from swooletw.channel import Channel, ChannelFactory
from swooletw.constants import UDP_TYPES as _UDP
from swooletw.events import invoke
from swooletw.router import MasterRouter
from swooletw.taskprocs import TaskDispatcher, runTaskWorker
from swooletw.service import ListenError, endpointFor, listenNow
from swooletw.worker import ListeningSocket, runWorker, stopReactor

if TYPE_CHECKING:  # pragma: no cover
    from swooletw.server import Server

__all__ = ["MasterService", "WorkerSlot"]

#: A worker that dies sooner than this after starting is restarted with
#: back-off.
QUICK_DEATH_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 10.0


class _NoConnections(Factory):
    """
    The factory of the master's own listening ports, which never accept.
    """

    noisy = False

    def buildProtocol(self, addr: Any) -> None:
        return None


class WorkerSlot:
    """
    One worker id and the process currently serving it.
    """

    def __init__(self, workerId: int, task: bool = False) -> None:
        self.workerId = workerId
        #: a task worker process (else a worker)
        self.task = task
        self.pid = 0
        self.channel: Channel | None = None
        self.startedAt = 0.0
        self.lastPing = 0.0
        self.ready = False
        #: why the current process is expected to exit (reload, recycle)
        self.planned: str | None = None
        self.quickDeaths = 0
        self.onReady: list[Callable[[], None]] = []
        self.pendingRestart: Any = None


class MasterService(Service):
    """
    Runs a L{Server} as a master with C{worker_num} forked workers.
    """

    log = Logger()

    def __init__(self, serv: Server) -> None:
        self.serv = serv
        self.setName("swooletw-master")
        self.slots: dict[int, WorkerSlot] = {}
        self.sockets: list[ListeningSocket] = []
        self._listening: list[Any] = []
        self._stopping = False
        self._allExited: defer.Deferred[None] | None = None
        self._watchdog: LoopingCall | None = None
        self._previousHandlers: dict[int, Any] = {}
        self._reloadQueue: list[int] = []
        self.router = MasterRouter(serv.reactor)
        serv._router = self.router
        self.dispatcher = TaskDispatcher(self._sendTo)

    # ---------------------------------------------------------- listening

    def privilegedStartService(self) -> None:
        """
        Bind every port, once, for all workers.
        """
        super().privilegedStartService()
        if not self._listening:
            self._bindAll()

    def _bindAll(self) -> None:
        reactor = self.serv.reactor
        for port in self.serv.ports:
            settings = port.effectiveSettings()
            _settings.checkFraming(settings)
            if port.endpoint is not None and port.endpoint.split(":", 1)[0] in ("ssl", "tls"):
                raise ListenError(
                    f"{port.endpoint}: with worker_num > 1 set ssl_cert_file and "
                    "ssl_key_file on the port instead of an ssl: endpoint"
                )
            try:
                listening = self._bindOne(reactor, port, settings)
            except Exception as e:
                self._closeSockets()
                where = port.endpoint or f"{port.host}:{port.port}"
                raise ListenError(f"cannot listen on {where}: {e}") from e
            listening.stopReading()
            self._listening.append(listening)
            address = listening.getHost()
            port.port = getattr(address, "port", port.port)
            self.sockets.append(
                ListeningSocket(
                    port, listening.fileno(), listening.socket.family, port.type in _UDP
                )
            )

    def _bindOne(self, reactor: Any, port: Any, settings: dict[str, Any]) -> Any:
        if port.type in _UDP:
            from twisted.internet.protocol import DatagramProtocol

            return reactor.listenUDP(port.port, DatagramProtocol(), interface=port.host)
        # The workers do TLS themselves, over the plain socket.
        plain = dict(settings, ssl_cert_file=None, ssl_key_file=None)
        return listenNow(endpointFor(reactor, port, plain), _NoConnections())

    def _closeSockets(self) -> defer.Deferred[Any]:
        listening, self._listening = self._listening, []
        return defer.gatherResults(
            [defer.maybeDeferred(port.stopListening) for port in listening],
            consumeErrors=True,
        )

    # ---------------------------------------------------------- lifecycle

    def startService(self) -> None:
        """
        Fire C{start} and C{managerStart}, fork the workers, watch them.
        """
        if not self._listening:
            self._bindAll()
        super().startService()
        serv = self.serv
        serv.master_pid = serv.manager_pid = serv.worker_pid = os.getpid()
        serv.worker_id = -1
        serv._stats.start_time = int(serv.reactor.seconds())
        process.setProcessTitle("swooletw: master")
        self._installSignals()
        released = self._releaseTasks()
        if released:
            self.log.info("{count} tasks from a previous run will run again", count=released)
        self._fire("start")
        self._fire("managerStart")
        for workerId in range(serv.setting["worker_num"]):
            self.slots[workerId] = WorkerSlot(workerId)
            self._fork(self.slots[workerId])
        if serv.setting["task_worker_num"] and serv.setting["task_worker_mode"] == "process":
            if serv.getCallback("task") is None:
                raise _settings.SettingError(
                    "setting 'task_worker_num' needs a 'task' callback: serv.on('task', f)"
                )
            serv._taskDispatcher = self.dispatcher
            first = serv.setting["worker_num"]
            for workerId in range(first, first + serv.setting["task_worker_num"]):
                self.slots[workerId] = WorkerSlot(workerId, task=True)
                self._fork(self.slots[workerId])
        self._watchdog = LoopingCall(self._checkPings)
        self._watchdog.clock = serv.reactor
        self._watchdog.start(serv.setting["worker_ping_interval"], now=False)

    def stopService(self) -> defer.Deferred[None]:
        """
        Stop every worker gracefully (kill what is left after
        C{max_wait_time}), close the sockets, fire C{managerStop} and
        C{shutdown}.
        """
        super().stopService()
        self._stopping = True
        self._restoreSignals()
        if self._watchdog is not None and self._watchdog.running:
            self._watchdog.stop()
        self._allExited = defer.Deferred()
        for slot in self.slots.values():
            if slot.pendingRestart is not None and slot.pendingRestart.active():
                slot.pendingRestart.cancel()
            self._askToStop(slot)
        self._checkAllExited()
        reactor = self.serv.reactor
        killer = reactor.callLater(self.serv.setting["max_wait_time"] + 0.5, self._killAll)
        done = self._allExited
        done.addBoth(lambda _: killer.cancel() if killer.active() else None)
        done.addCallback(lambda _: self._closeSockets())
        done.addBoth(lambda _: self._finish())
        return done

    def _releaseTasks(self, owner: int | None = None) -> int:
        """
        Hand back the journalled tasks of a dead worker (all of them at
        start: every one is from a run that died); the next worker to start
        claims them.  The master opens the journal only for this, so no
        SQLite connection is ever inherited by a forked worker.
        """
        if not (self.serv.setting["task_store"] and self.serv.setting["task_worker_num"]):
            return 0
        from swooletw.taskstore import parseStore, releaseTasks

        return releaseTasks(parseStore(self.serv.setting["task_store"]), self.serv.reactor, owner)

    def _finish(self) -> None:
        self.serv.timers.clearAll()
        self._fire("managerStop")
        self._fire("shutdown")

    # ------------------------------------------------------------ workers

    def _fork(self, slot: WorkerSlot) -> None:
        slot.pendingRestart = None
        parentEnd, childEnd = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        masterPid = os.getpid()
        block = None if slot.task else self.router.leaseBlock()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                parentEnd.close()
                if slot.task:
                    code = runTaskWorker(
                        self.serv, slot.workerId, childEnd.detach(), masterPid, self.router.directory
                    )
                else:
                    code = runWorker(
                        self.serv, slot.workerId, childEnd.detach(), list(self.sockets), masterPid,
                        block, self.router.directory,
                    )
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        childEnd.close()
        reactor = self.serv.reactor
        slot.pid = pid
        slot.ready = False
        slot.planned = None
        slot.startedAt = slot.lastPing = reactor.seconds()
        channel = Channel(
            {
                **self.router.handlersFor(slot.workerId),
                **self._taskHandlersFor(slot),
                "ready": lambda pid, slot=slot: self._ready(slot),
                "ping": lambda stats, slot=slot: self._pinged(slot, stats),
                "recycling": lambda slot=slot: self._plan(slot, "max_request"),
                "reload": lambda onlyTaskWorkers: self.reload(onlyTaskWorkers),
                "shutdown": lambda: stopReactor(self.serv.reactor),
            },
            lambda reason, slot=slot, pid=pid: self._channelLost(slot, pid),
        )
        slot.channel = channel
        self.router.attach(slot.workerId, channel)
        reactor.adoptStreamConnection(parentEnd.fileno(), socket.AF_UNIX, ChannelFactory(channel))
        parentEnd.close()
        self.log.info("worker {id} started (pid {pid})", id=slot.workerId, pid=pid)

    def _taskHandlersFor(self, slot: WorkerSlot) -> dict[str, Callable[..., Any]]:
        workerId = slot.workerId
        if slot.task:
            return {
                "taskdone": lambda taskId, ok, result: self.dispatcher.done(workerId, taskId, ok, result),
            }
        return {
            "task": lambda taskId, src, data, dst=-1: self.dispatcher.submitted(
                workerId, taskId, src, data, dst
            ),
        }

    def _sendTo(self, workerId: int, kind: str, *args: Any) -> bool:
        slot = self.slots.get(workerId)
        if slot is None or slot.channel is None:
            return False
        slot.channel.send(kind, *args)
        return True

    def _ready(self, slot: WorkerSlot) -> None:
        if slot.task:
            self.dispatcher.ready(slot.workerId, started=True)
        slot.ready = True
        slot.lastPing = self.serv.reactor.seconds()
        callbacks, slot.onReady = slot.onReady, []
        for callback in callbacks:
            callback()

    def _pinged(self, slot: WorkerSlot, stats: dict[str, Any]) -> None:
        slot.lastPing = self.serv.reactor.seconds()
        self.router.gotStats(slot.workerId, stats)
        self.router.shareStats(self.dispatcher.stats() if self.serv._taskDispatcher else None)

    def _plan(self, slot: WorkerSlot, reason: str) -> None:
        slot.planned = reason
        if slot.task:
            self.dispatcher.retire(slot.workerId)

    def _askToStop(self, slot: WorkerSlot) -> None:
        if slot.channel is not None:
            slot.channel.send("stop")
        elif slot.pid:
            self._signal(slot.pid, signal.SIGTERM)

    def _signal(self, pid: int, signum: int) -> None:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    def _channelLost(self, slot: WorkerSlot, pid: int) -> None:
        if slot.pid == pid:
            slot.channel = None
            self.router.detach(slot.workerId)
        self._reap(slot, pid, self.serv.reactor.seconds() + 5)

    def _reap(self, slot: WorkerSlot, pid: int, deadline: float) -> None:
        try:
            reaped, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            reaped, status = pid, 0
        reactor = self.serv.reactor
        if reaped == 0:
            if reactor.seconds() > deadline:
                self._signal(pid, signal.SIGKILL)
            reactor.callLater(0.01, self._reap, slot, pid, deadline)
            return
        self._exited(slot, pid, status)

    def _exited(self, slot: WorkerSlot, pid: int, status: int) -> None:
        exitCode = os.WEXITSTATUS(status) if os.WIFEXITED(status) else 0
        signum = os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0
        if slot.pid != pid:
            return
        slot.pid = 0
        if slot.task:
            self.dispatcher.lost(slot.workerId)
        released = self._releaseTasks(pid)
        if released:
            self.log.warn(
                "worker {id} (pid {pid}) left {count} tasks; they will run again",
                id=slot.workerId, pid=pid, count=released,
            )
        if self._stopping:
            self.log.info("worker {id} (pid {pid}) stopped", id=slot.workerId, pid=pid)
            self._checkAllExited()
            return
        reactor = self.serv.reactor
        if slot.planned is not None and exitCode == 0 and not signum:
            self.log.info(
                "worker {id} (pid {pid}) exited for {reason}; starting another",
                id=slot.workerId, pid=pid, reason=slot.planned,
            )
            slot.quickDeaths = 0
            self._fork(slot)
            return
        self.log.error(
            "worker {id} (pid {pid}) died: exit code {code}, signal {signal}",
            id=slot.workerId, pid=pid, code=exitCode, signal=signum,
        )
        self._fire("workerError", slot.workerId, pid, exitCode, signum)
        if reactor.seconds() - slot.startedAt < QUICK_DEATH_SECONDS:
            slot.quickDeaths += 1
        else:
            slot.quickDeaths = 0
        delay = 0.0 if not slot.quickDeaths else min(0.1 * 2 ** slot.quickDeaths, MAX_BACKOFF_SECONDS)
        if delay:
            self.log.warn(
                "worker {id} keeps dying; restarting it in {delay}s", id=slot.workerId, delay=delay
            )
        slot.pendingRestart = reactor.callLater(delay, self._fork, slot)

    def _checkAllExited(self) -> None:
        if self._allExited is not None and not self._allExited.called:
            if all(slot.pid == 0 for slot in self.slots.values()):
                self._allExited.callback(None)

    def _killAll(self) -> None:
        for slot in self.slots.values():
            if slot.pid:
                self.log.warn(
                    "worker {id} (pid {pid}) still running after max_wait_time: killing it",
                    id=slot.workerId, pid=slot.pid,
                )
                self._signal(slot.pid, signal.SIGKILL)

    def _checkPings(self) -> None:
        timeout = self.serv.setting["worker_timeout"]
        if not timeout:
            return
        now = self.serv.reactor.seconds()
        for slot in self.slots.values():
            if slot.pid and slot.planned is None and now - slot.lastPing > timeout:
                self.log.error(
                    "worker {id} (pid {pid}) sent no ping for {timeout}s: killing it",
                    id=slot.workerId, pid=slot.pid, timeout=timeout,
                )
                self._signal(slot.pid, signal.SIGKILL)
                slot.lastPing = now

    # ------------------------------------------------------------- reload

    def reload(self, onlyTaskWorkers: bool = False) -> bool:
        """
        Replace the workers gracefully (see the module docstring).

        @return: C{False} if a reload is already running or the server is
            stopping.
        """
        if self._stopping or self._reloadQueue:
            return False
        chosen = sorted(i for i, slot in self.slots.items() if slot.task or not onlyTaskWorkers)
        if not chosen:
            self.log.info("reload of task workers asked: there are no task worker processes")
            return True
        self.log.info("reloading {count} processes", count=len(chosen))
        if self.serv.setting["reload_async"]:
            for workerId in chosen:
                self._retire(self.slots[workerId])
        else:
            self._reloadQueue = chosen
            self._retireNext()
        return True

    def _retire(self, slot: WorkerSlot, then: Callable[[], None] | None = None) -> None:
        if then is not None:
            slot.onReady.append(then)
        if slot.pid:
            self._plan(slot, "reload")
            self._askToStop(slot)
            # A worker that hangs while stopping is killed (and replaced).
            self.serv.reactor.callLater(
                self.serv.setting["max_wait_time"] + 2, self._killIfStill, slot, slot.pid
            )

    def _killIfStill(self, slot: WorkerSlot, pid: int) -> None:
        if slot.pid == pid:
            self.log.warn(
                "worker {id} (pid {pid}) did not stop within max_wait_time: killing it",
                id=slot.workerId, pid=pid,
            )
            self._signal(pid, signal.SIGKILL)

    def _retireNext(self) -> None:
        if not self._reloadQueue or self._stopping:
            self._reloadQueue = []
            return
        slot = self.slots[self._reloadQueue.pop(0)]
        self._retire(slot, self._retireNext if self._reloadQueue else None)

    # ------------------------------------------------------------ signals

    def _installSignals(self) -> None:
        reactor = self.serv.reactor
        for signum, handler in (
            (signal.SIGUSR1, lambda: self.reload()),
            (signal.SIGUSR2, lambda: self.reload(onlyTaskWorkers=True)),
        ):
            self._previousHandlers[signum] = signal.signal(
                signum, lambda s, f, h=handler: reactor.callFromThread(h)
            )

    def _restoreSignals(self) -> None:
        for signum, previous in self._previousHandlers.items():
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        self._previousHandlers = {}

    def _fire(self, event: str, *args: Any) -> None:
        callback = self.serv.getCallback(event)
        if callback is not None:
            invoke(callback, (self.serv,) + args, event)

