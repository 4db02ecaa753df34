# -*- test-case-name: tests.test_supervisor -*-
"""
The supervisor: which worker and task worker processes should run, and what
to do when one starts, pings, exits or hangs.  Plain state driven by a clock
and an injected launcher, so it is tested on a C{MemoryReactorClock} with no
real process (C{tests.test_supervisor}).

 - A worker that dies is started again at once; one that keeps dying within
   L{QUICK_DEATH_SECONDS} of starting is restarted with exponential back-off
   (up to L{MAX_BACKOFF_SECONDS}), and the listener hears C{workerFailed}.
 - One that sends no ping for C{worker_timeout} seconds is killed (and so
   replaced).
 - C{reload()} replaces every process (or the task workers only): all at
   once with C{reload_async}, else one at a time, each after the previous
   one's successor is ready.  One that does not stop within
   C{max_wait_time} is killed.
 - C{stop()} asks every process to stop and kills what is left after
   C{max_wait_time}.

The launcher starts processes (C{launch(slot) -> pid}), asks them to stop
(C{askToStop(slot)}) and kills them (C{kill(pid)}); whoever reaps children
calls L{Supervisor.exited}.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from twisted.internet import defer
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

__all__ = [
    "QUICK_DEATH_SECONDS",
    "MAX_BACKOFF_SECONDS",
    "WorkerSlot",
    "Launcher",
    "SupervisorListener",
    "Supervisor",
]

#: A process that dies sooner than this after starting is restarted with
#: back-off.
QUICK_DEATH_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 10.0
#: How much longer than max_wait_time a stopping process gets before it is
#: killed.
STOP_GRACE_SECONDS = 0.5


@dataclass
class WorkerSlot:
    """
    One worker id and the process currently serving it.
    """

    workerId: int
    #: a task worker process (else a worker)
    task: bool = False
    pid: int = 0
    startedAt: float = 0.0
    lastPing: float = 0.0
    ready: bool = False
    #: why the current process is expected to exit (reload, recycle)
    planned: str | None = None
    quickDeaths: int = 0
    onReady: list[Callable[[], None]] = field(default_factory=list)
    pendingRestart: Any = None


class Launcher(Protocol):
    """
    Starts and stops the processes of slots.
    """

    def launch(self, slot: WorkerSlot) -> int:
        """
        Start a process for C{slot}; its pid.
        """

    def askToStop(self, slot: WorkerSlot) -> None:
        """
        Ask C{slot}'s process to stop gracefully.
        """

    def kill(self, pid: int) -> None:
        """
        Kill process C{pid} at once.
        """


class SupervisorListener(Protocol):
    """
    Told what happens to the processes.
    """

    def workerReady(self, slot: WorkerSlot) -> None:
        """
        C{slot}'s process is serving.
        """

    def workerRetiring(self, slot: WorkerSlot) -> None:
        """
        C{slot}'s process was asked to stop (reload, recycling).
        """

    def workerExited(self, slot: WorkerSlot, pid: int) -> None:
        """
        C{slot}'s process C{pid} is gone, for whatever reason.
        """

    def workerFailed(self, slot: WorkerSlot, pid: int, exitCode: int, signum: int) -> None:
        """
        It died unplanned (Swoole's C{workerError}).
        """


class Supervisor:
    """
    See the module docstring.

    @param clock: an C{IReactorTime}.
    @param settings: the server's settings (C{worker_num}, C{max_wait_time},
        C{worker_timeout}, C{worker_ping_interval}, C{reload_async}).
    @param taskWorkers: how many task worker processes (ids after the
        workers').
    """

    log = Logger()

    def __init__(
        self,
        clock: Any,
        launcher: Launcher,
        listener: SupervisorListener,
        settings: dict[str, Any],
        taskWorkers: int = 0,
    ) -> None:
        self.clock = clock
        self.launcher = launcher
        self.listener = listener
        self.settings = settings
        self.slots: dict[int, WorkerSlot] = {}
        workers = settings["worker_num"]
        for workerId in range(workers + taskWorkers):
            self.slots[workerId] = WorkerSlot(workerId, task=workerId >= workers)
        self.stopping = False
        self._allExited: defer.Deferred[None] | None = None
        self._watchdog: LoopingCall | None = None
        self._reloadQueue: list[int] = []
        #: the ids a running reload has not replaced yet
        self._reloading: set[int] = set()

    # ----------------------------------------------------------- running

    def start(self) -> None:
        """
        Start every process and the watchdog.
        """
        for slot in self.slots.values():
            self._launch(slot)
        self._watchdog = LoopingCall(self._checkPings)
        self._watchdog.clock = self.clock
        self._watchdog.start(self.settings["worker_ping_interval"], now=False)

    def stop(self) -> defer.Deferred[None]:
        """
        Ask every process to stop; kill what is left after
        C{max_wait_time}.  Fires when all have exited.
        """
        if self._allExited is not None:
            waiter: defer.Deferred[None] = defer.Deferred()
            self._allExited.addBoth(lambda result: (waiter.callback(None), result)[1])
            return waiter
        self.stopping = True
        self._reloadQueue = []
        self._reloading.clear()
        if self._watchdog is not None and self._watchdog.running:
            self._watchdog.stop()
        self._allExited = defer.Deferred()
        for slot in self.slots.values():
            if slot.pendingRestart is not None and slot.pendingRestart.active():
                slot.pendingRestart.cancel()
            slot.pendingRestart = None
            if slot.pid:
                self.launcher.askToStop(slot)
        killer = self.clock.callLater(
            self.settings["max_wait_time"] + STOP_GRACE_SECONDS, self._killAll
        )
        done = self._allExited
        done.addBoth(lambda result: (killer.active() and killer.cancel(), result)[1])
        self._checkAllExited()
        return done

    def slotOf(self, pid: int) -> WorkerSlot | None:
        """
        The slot whose current process is C{pid}.
        """
        for slot in self.slots.values():
            if slot.pid == pid and pid:
                return slot
        return None

    # ------------------------------------------------- what processes say

    def ready(self, workerId: int) -> None:
        """
        The process of C{workerId} is serving.
        """
        slot = self.slots[workerId]
        slot.lastPing = self.clock.seconds()
        if slot.planned is not None:
            return  # a late word from a process already asked to go
        slot.ready = True
        self._reloading.discard(workerId)
        self.listener.workerReady(slot)
        callbacks, slot.onReady = slot.onReady, []
        for callback in callbacks:
            callback()

    def pinged(self, workerId: int) -> None:
        """
        The process of C{workerId} is alive.
        """
        self.slots[workerId].lastPing = self.clock.seconds()

    def planned(self, workerId: int, reason: str) -> None:
        """
        The process of C{workerId} will exit on purpose (C{reason}: reload,
        max_request).
        """
        slot = self.slots[workerId]
        slot.planned = reason
        self.listener.workerRetiring(slot)

    def exited(self, pid: int, exitCode: int, signum: int) -> None:
        """
        Process C{pid} was reaped: start another for its slot, at once when
        its exit was planned, else after the back-off.
        """
        slot = self.slotOf(pid)
        if slot is None:
            return
        slot.pid = 0
        slot.ready = False
        self.listener.workerExited(slot, pid)
        if self.stopping:
            self.log.info("worker {id} (pid {pid}) stopped", id=slot.workerId, pid=pid)
            self._checkAllExited()
            return
        if slot.planned is not None and exitCode == 0 and not signum:
            self.log.info(
                "worker {id} (pid {pid}) exited for {reason}; starting another",
                id=slot.workerId, pid=pid, reason=slot.planned,
            )
            slot.quickDeaths = 0
            self._launch(slot)
            return
        self.log.error(
            "worker {id} (pid {pid}) died: exit code {code}, signal {signal}",
            id=slot.workerId, pid=pid, code=exitCode, signal=signum,
        )
        self.listener.workerFailed(slot, pid, exitCode, signum)
        delay = self.restartDelay(slot)
        if delay:
            self.log.warn("worker {id} keeps dying; restarting it in {delay}s", id=slot.workerId, delay=delay)
        slot.pendingRestart = self.clock.callLater(delay, self._launch, slot)

    def restartDelay(self, slot: WorkerSlot) -> float:
        """
        How long to wait before starting C{slot} again after an unplanned
        death (and count the quick ones).
        """
        if self.clock.seconds() - slot.startedAt < QUICK_DEATH_SECONDS:
            slot.quickDeaths += 1
        else:
            slot.quickDeaths = 0
        if not slot.quickDeaths:
            return 0.0
        return min(0.1 * 2 ** slot.quickDeaths, MAX_BACKOFF_SECONDS)

    # ------------------------------------------------------------- reload

    def reload(self, onlyTaskWorkers: bool = False) -> bool:
        """
        Replace the processes gracefully (see the module docstring).

        @return: C{False} if a reload is already running or the server is
            stopping.
        """
        if self.stopping or self._reloading:
            return False
        chosen = sorted(i for i, slot in self.slots.items() if slot.task or not onlyTaskWorkers)
        if not chosen:
            self.log.info("reload of task workers asked: there are no task worker processes")
            return True
        self.log.info("reloading {count} processes", count=len(chosen))
        self._reloading = set(chosen)
        if self.settings["reload_async"]:
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
            self.planned(slot.workerId, "reload")
            self.launcher.askToStop(slot)
            # A process that hangs while stopping is killed (and replaced).
            self.clock.callLater(
                self.settings["max_wait_time"] + STOP_GRACE_SECONDS, self._killIfStill, slot, slot.pid
            )

    def _retireNext(self) -> None:
        if not self._reloadQueue or self.stopping:
            self._reloadQueue = []
            return
        slot = self.slots[self._reloadQueue.pop(0)]
        self._retire(slot, self._retireNext if self._reloadQueue else None)

    # ----------------------------------------------------------- internal

    def _launch(self, slot: WorkerSlot) -> None:
        slot.pendingRestart = None
        slot.ready = False
        slot.planned = None
        slot.startedAt = slot.lastPing = self.clock.seconds()
        slot.pid = self.launcher.launch(slot)
        self.log.info("worker {id} started (pid {pid})", id=slot.workerId, pid=slot.pid)

    def _killIfStill(self, slot: WorkerSlot, pid: int) -> None:
        if slot.pid == pid:
            self.log.warn(
                "worker {id} (pid {pid}) did not stop within max_wait_time: killing it",
                id=slot.workerId, pid=pid,
            )
            self.launcher.kill(pid)

    def _killAll(self) -> None:
        for slot in self.slots.values():
            if slot.pid:
                self.log.warn(
                    "worker {id} (pid {pid}) still running after max_wait_time: killing it",
                    id=slot.workerId, pid=slot.pid,
                )
                self.launcher.kill(slot.pid)

    def _checkPings(self) -> None:
        timeout = self.settings["worker_timeout"]
        if not timeout:
            return
        now = self.clock.seconds()
        for slot in self.slots.values():
            if slot.pid and slot.planned is None and now - slot.lastPing > timeout:
                self.log.error(
                    "worker {id} (pid {pid}) sent no ping for {timeout}s: killing it",
                    id=slot.workerId, pid=slot.pid, timeout=timeout,
                )
                self.launcher.kill(slot.pid)
                slot.lastPing = now

    def _checkAllExited(self) -> None:
        if self._allExited is not None and not self._allExited.called:
            if all(slot.pid == 0 for slot in self.slots.values()):
                self._allExited.callback(None)
