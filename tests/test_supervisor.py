"""
Tests for L{swooletw.runtime.supervisor}: the L{Supervisor} driven by a
L{MemoryReactorClock}, a fake launcher and a fake listener, with no real
process.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import LoopingCall
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from swooletw.runtime.supervisor import (
    MAX_BACKOFF_SECONDS,
    QUICK_DEATH_SECONDS,
    STOP_GRACE_SECONDS,
    Supervisor,
    WorkerSlot,
)
from swooletw.settings import defaults

#: How far short of (or past) a deadline the clock is advanced.
EPSILON = 0.001


class FakeLauncher:
    """
    Records what the supervisor asks of its processes and hands out pids.
    """

    def __init__(self) -> None:
        self._nextPid = 1000
        #: (workerId, task, pid) per launch
        self.launched: list[tuple[int, bool, int]] = []
        #: (workerId, pid) per askToStop
        self.askedToStop: list[tuple[int, int]] = []
        #: pids, per kill
        self.killed: list[int] = []

    def launch(self, slot: WorkerSlot) -> int:
        self._nextPid += 1
        self.launched.append((slot.workerId, slot.task, self._nextPid))
        return self._nextPid

    def askToStop(self, slot: WorkerSlot) -> None:
        self.askedToStop.append((slot.workerId, slot.pid))

    def kill(self, pid: int) -> None:
        self.killed.append(pid)

    def launchedIds(self) -> list[int]:
        return [workerId for workerId, task, pid in self.launched]


class FakeListener:
    """
    Records what the supervisor tells, as tuples (the slot is mutable, so
    what it held at the time is copied).
    """

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def workerReady(self, slot: WorkerSlot) -> None:
        self.events.append(("ready", slot.workerId, slot.pid))

    def workerRetiring(self, slot: WorkerSlot) -> None:
        self.events.append(("retiring", slot.workerId, slot.pid, slot.planned))

    def workerExited(self, slot: WorkerSlot, pid: int) -> None:
        self.events.append(("exited", slot.workerId, pid))

    def workerFailed(self, slot: WorkerSlot, pid: int, exitCode: int, signum: int) -> None:
        self.events.append(("failed", slot.workerId, pid, exitCode, signum))

    def of(self, kind: str) -> list[tuple[Any, ...]]:
        return [event[1:] for event in self.events if event[0] == kind]


class SupervisorTestCase(SynchronousTestCase):
    """
    Builds a L{Supervisor} on a clock with the fakes.
    """

    def makeSupervisor(self, taskWorkers: int = 0, start: bool = True, **settings: Any) -> Supervisor:
        values = defaults()
        values.update(
            worker_num=2,
            max_wait_time=3.0,
            worker_timeout=0.0,
            worker_ping_interval=1.0,
            reload_async=False,
        )
        values.update(settings)
        self.settings = values
        self.clock = MemoryReactorClock()
        self.launcher = FakeLauncher()
        self.listener = FakeListener()
        self.supervisor = Supervisor(self.clock, self.launcher, self.listener, values, taskWorkers)
        if start:
            self.supervisor.start()
        return self.supervisor

    def pid(self, workerId: int) -> int:
        return self.supervisor.slots[workerId].pid

    def pendingDelays(self) -> list[float]:
        """
        The delays of the pending calls other than the watchdog's.
        """
        now = self.clock.seconds()
        return sorted(
            call.getTime() - now
            for call in self.clock.getDelayedCalls()
            if not isinstance(call.func, LoopingCall)
            and not isinstance(getattr(call.func, "__self__", None), LoopingCall)
        )


class StartTests(SupervisorTestCase):
    """
    L{Supervisor.start}.
    """

    def test_nothingBeforeStart(self) -> None:
        """Building a supervisor launches nothing and schedules nothing."""
        self.makeSupervisor(taskWorkers=1, start=False)
        self.assertEqual(self.launcher.launched, [])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(sorted(self.supervisor.slots), [0, 1, 2])

    def test_launchesWorkersThenTaskWorkers(self) -> None:
        """
        start launches worker_num workers (ids 0..worker_num-1) then the
        task workers (the ids after, flagged task), each slot holding its
        process's pid.
        """
        self.makeSupervisor(taskWorkers=2, worker_num=3)
        launched = self.launcher.launched
        self.assertEqual(
            [(workerId, task) for workerId, task, pid in launched],
            [(0, False), (1, False), (2, False), (3, True), (4, True)],
        )
        pids = [pid for workerId, task, pid in launched]
        self.assertEqual(len(set(pids)), 5)
        for workerId, task, pid in launched:
            slot = self.supervisor.slots[workerId]
            self.assertEqual((slot.pid, slot.task, slot.ready, slot.planned), (pid, task, False, None))
        self.assertEqual(self.launcher.askedToStop, [])
        self.assertEqual(self.launcher.killed, [])
        self.assertEqual(self.listener.events, [])

    def test_startsWatchdog(self) -> None:
        """
        start schedules the watchdog every worker_ping_interval (first run
        one interval after start), and it kills a silent worker with no
        other prompting.
        """
        self.makeSupervisor(worker_num=1, worker_ping_interval=2.0, worker_timeout=3.0)
        self.assertEqual([call.getTime() for call in self.clock.getDelayedCalls()], [2.0])
        self.clock.pump([2.0] * 3)
        self.assertEqual(self.launcher.killed, [self.pid(0)])

    def test_readyTellsListener(self) -> None:
        """ready marks the slot ready and tells the listener."""
        self.makeSupervisor()
        self.supervisor.ready(1)
        self.assertTrue(self.supervisor.slots[1].ready)
        self.assertFalse(self.supervisor.slots[0].ready)
        self.assertEqual(self.listener.events, [("ready", 1, self.pid(1))])


class RestartTests(SupervisorTestCase):
    """
    What happens when a process exits outside a stop.
    """

    def test_unplannedExitAfterLongLife(self) -> None:
        """
        A process that lived longer than QUICK_DEATH_SECONDS and died is
        reported (workerExited, then workerFailed with its exit code and
        signal) and started again with no delay.
        """
        self.makeSupervisor()
        self.clock.advance(QUICK_DEATH_SECONDS + 1)
        old = self.pid(0)
        other = self.pid(1)
        self.supervisor.exited(old, 3, 0)
        self.assertEqual(self.listener.events, [("exited", 0, old), ("failed", 0, old, 3, 0)])
        self.assertEqual(self.pid(0), 0)
        self.assertEqual(self.pendingDelays(), [0.0])
        self.clock.advance(0)
        self.assertEqual(self.launcher.launchedIds(), [0, 1, 0])
        new = self.pid(0)
        self.assertNotIn(new, (0, old, other))
        self.assertEqual(self.pid(1), other)
        self.assertEqual(self.supervisor.slots[0].startedAt, QUICK_DEATH_SECONDS + 1)

    def test_unplannedSignalledExit(self) -> None:
        """workerFailed carries the signal of a process killed by one."""
        self.makeSupervisor()
        self.clock.advance(QUICK_DEATH_SECONDS + 1)
        old = self.pid(1)
        self.supervisor.exited(old, 0, 9)
        self.assertEqual(self.listener.of("failed"), [(1, old, 0, 9)])
        self.clock.advance(0)
        self.assertEqual(self.launcher.launchedIds(), [0, 1, 1])

    def test_plannedExitRelaunchesWithoutFailure(self) -> None:
        """
        A process that said it will exit (max_request) and exits with code
        0 is replaced at once (before the clock moves), workerRetiring and
        workerExited are told, workerFailed is not.
        """
        self.makeSupervisor()
        self.clock.advance(5)
        old = self.pid(0)
        self.supervisor.planned(0, "max_request")
        self.assertEqual(self.listener.events, [("retiring", 0, old, "max_request")])
        self.supervisor.exited(old, 0, 0)
        self.assertEqual(self.launcher.launchedIds(), [0, 1, 0])
        self.assertNotIn(self.pid(0), (0, old))
        self.assertIsNone(self.supervisor.slots[0].planned)
        self.assertEqual(self.listener.of("failed"), [])
        self.assertEqual(self.listener.of("exited"), [(0, old)])
        self.assertEqual(self.launcher.killed, [])

    def test_plannedQuickExitHasNoBackoff(self) -> None:
        """
        A planned exit soon after starting (a small max_request) is not a
        crash: replaced at once, and it resets the count of quick deaths.
        """
        self.makeSupervisor(worker_num=1)
        self.supervisor.exited(self.pid(0), 1, 0)
        self.clock.advance(0.2)
        self.assertEqual(len(self.launcher.launched), 2)
        self.supervisor.planned(0, "max_request")
        self.supervisor.exited(self.pid(0), 0, 0)
        self.assertEqual(len(self.launcher.launched), 3)
        # The next quick crash gets the first delay again.
        self.supervisor.exited(self.pid(0), 1, 0)
        self.assertEqual(self.pendingDelays(), [0.2])

    def test_plannedExitWithErrorIsAFailure(self) -> None:
        """A planned process that exits with a non-zero code failed."""
        self.makeSupervisor()
        self.clock.advance(5)
        old = self.pid(0)
        self.supervisor.planned(0, "max_request")
        self.supervisor.exited(old, 255, 0)
        self.assertEqual(self.listener.of("failed"), [(0, old, 255, 0)])
        self.clock.advance(0)
        self.assertEqual(self.launcher.launchedIds(), [0, 1, 0])


class BackoffTests(SupervisorTestCase):
    """
    Exponential back-off for processes that keep dying.
    """

    def crashAndExpect(self, workerId: int, delay: float) -> None:
        """
        Crash C{workerId}'s process now; assert it is started again after
        C{delay} and not before.
        """
        launches = len(self.launcher.launched)
        old = self.pid(workerId)
        self.supervisor.exited(old, 1, 0)
        self.assertEqual(self.listener.events[-1], ("failed", workerId, old, 1, 0))
        self.assertAlmostEqual(self.pendingDelays()[0], delay)
        if delay:
            self.clock.advance(delay - EPSILON)
            self.assertEqual(len(self.launcher.launched), launches, f"launched before {delay}s")
            self.assertEqual(self.pid(workerId), 0)
            self.clock.advance(2 * EPSILON)
        else:
            self.clock.advance(0)
        self.assertEqual(len(self.launcher.launched), launches + 1, f"not launched after {delay}s")
        self.assertEqual(self.launcher.launched[-1][0], workerId)
        self.assertNotIn(self.pid(workerId), (0, old))

    def test_doublingDelaysCapped(self) -> None:
        """
        Deaths right after starting get 0.2, 0.4, 0.8 ... seconds, capped
        at MAX_BACKOFF_SECONDS.
        """
        self.makeSupervisor(worker_num=1)
        for delay in [0.2, 0.4, 0.8, 1.6, 3.2, 6.4, MAX_BACKOFF_SECONDS, MAX_BACKOFF_SECONDS]:
            self.crashAndExpect(0, delay)
        self.assertEqual(len(self.listener.of("failed")), 8)

    def test_quickMeansYoungerThanQuickDeathSeconds(self) -> None:
        """
        Dying just inside QUICK_DEATH_SECONDS of starting is quick; dying
        just after it is not.
        """
        self.makeSupervisor(worker_num=1)
        self.clock.advance(QUICK_DEATH_SECONDS - 0.1)
        self.crashAndExpect(0, 0.2)
        self.clock.advance(QUICK_DEATH_SECONDS + 0.1)
        self.crashAndExpect(0, 0.0)

    def test_longLifeResetsCount(self) -> None:
        """
        After quick deaths, a death after a long life restarts at once and
        the next quick death starts the sequence again at 0.2.
        """
        self.makeSupervisor(worker_num=1)
        for delay in [0.2, 0.4, 0.8]:
            self.crashAndExpect(0, delay)
        self.clock.advance(60)
        self.crashAndExpect(0, 0.0)
        self.crashAndExpect(0, 0.2)

    def test_backoffIsPerSlot(self) -> None:
        """One slot's quick deaths do not delay another's restart."""
        self.makeSupervisor()
        for delay in [0.2, 0.4, 0.8]:
            self.crashAndExpect(0, delay)
        self.clock.advance(60)
        self.crashAndExpect(1, 0.0)


class WatchdogTests(SupervisorTestCase):
    """
    Processes that stop pinging are killed.
    """

    def tick(self, seconds: int, pinging: tuple[int, ...] = ()) -> None:
        """
        Advance the clock one second at a time, C{pinging} processes
        pinging each second.
        """
        for _ in range(seconds):
            self.clock.advance(1.0)
            for workerId in pinging:
                self.supervisor.pinged(workerId)

    def test_killsOnlyTheSilentOne(self) -> None:
        """
        With worker_timeout 5, the silent worker is killed once its last
        ping is more than 5 seconds old (and only once); the pinging one,
        and one that is retiring (max_request), are not.
        """
        self.makeSupervisor(worker_num=3, worker_timeout=5.0)
        silent = self.pid(1)
        self.supervisor.planned(2, "max_request")
        self.tick(4, pinging=(0,))
        self.assertEqual(self.launcher.killed, [])
        self.tick(3, pinging=(0,))
        self.assertEqual(self.launcher.killed, [silent])
        self.tick(3, pinging=(0,))
        self.assertEqual(self.launcher.killed, [silent])
        # It dies of the kill: an unplanned death, replaced.
        self.supervisor.exited(silent, 0, 9)
        self.assertEqual(self.listener.of("failed"), [(1, silent, 0, 9)])
        self.clock.advance(0)
        self.assertEqual(self.launcher.launchedIds(), [0, 1, 2, 1])

    def test_readyCountsAsPing(self) -> None:
        """A process that reported ready recently is not killed."""
        self.makeSupervisor(worker_num=1, worker_timeout=5.0)
        self.tick(4)
        self.supervisor.ready(0)
        self.tick(4)
        self.assertEqual(self.launcher.killed, [])
        self.tick(3)
        self.assertEqual(self.launcher.killed, [self.pid(0)])

    def test_laterLaunchGetsFullTimeout(self) -> None:
        """
        A process started later (replacing a recycled one) has its whole
        timeout counted from its start, not from its predecessor's.
        """
        self.makeSupervisor(worker_num=1, worker_timeout=5.0)
        self.tick(4)
        self.supervisor.planned(0, "max_request")
        self.supervisor.exited(self.pid(0), 0, 0)
        self.tick(5)
        self.assertEqual(self.launcher.killed, [])
        self.tick(1)
        self.assertEqual(self.launcher.killed, [self.pid(0)])

    def test_slotWaitingForRestartNotKilled(self) -> None:
        """
        A slot with no process (waiting out its back-off) is silent, but
        there is nothing to kill.
        """
        self.makeSupervisor(worker_num=1, worker_timeout=2.0)
        for _ in range(7):
            self.supervisor.exited(self.pid(0), 1, 0)
            self.clock.advance(self.pendingDelays()[0])
        self.supervisor.exited(self.pid(0), 1, 0)
        self.assertEqual(self.pendingDelays(), [MAX_BACKOFF_SECONDS])
        self.tick(9)
        self.assertEqual(self.launcher.killed, [])
        self.assertEqual(self.pid(0), 0)

    def test_reloadRetiringNotKilledByWatchdog(self) -> None:
        """
        A process asked to stop by a reload is left to the reload's
        max_wait_time, not killed by the watchdog.
        """
        self.makeSupervisor(worker_num=1, worker_timeout=2.0, max_wait_time=60.0)
        self.assertTrue(self.supervisor.reload())
        self.tick(10)
        self.assertEqual(self.launcher.killed, [])

    def test_zeroTimeoutDisables(self) -> None:
        """worker_timeout 0 kills nobody, however long the silence."""
        self.makeSupervisor(worker_timeout=0)
        self.tick(100)
        self.assertEqual(self.launcher.killed, [])

    def test_relaunchedProcessGetsFreshTimeout(self) -> None:
        """A process started to replace a killed one gets a full timeout."""
        self.makeSupervisor(worker_num=1, worker_timeout=5.0)
        self.tick(6)
        first = self.pid(0)
        self.assertEqual(self.launcher.killed, [first])
        self.supervisor.exited(first, 0, 9)
        self.clock.advance(0)
        second = self.pid(0)
        self.tick(5)
        self.assertEqual(self.launcher.killed, [first])
        self.tick(1)
        self.assertEqual(self.launcher.killed, [first, second])


class SequentialReloadTests(SupervisorTestCase):
    """
    L{Supervisor.reload} with reload_async False: one at a time.
    """

    def test_oneAtATime(self) -> None:
        """
        Only the first process is asked to stop; its successor is started
        when it exits; the next is asked only once that successor is
        ready; every process is replaced, in order.
        """
        self.makeSupervisor(taskWorkers=1)
        old = [self.pid(i) for i in range(3)]
        self.assertTrue(self.supervisor.reload())
        self.assertEqual(self.launcher.askedToStop, [(0, old[0])])
        self.assertEqual(self.listener.events, [("retiring", 0, old[0], "reload")])
        self.supervisor.exited(old[0], 0, 0)
        self.assertEqual(self.launcher.launchedIds(), [0, 1, 2, 0])
        new0 = self.pid(0)
        # Not ready yet: nobody else is asked, however long it takes.
        self.clock.advance(2)
        self.assertEqual(self.launcher.askedToStop, [(0, old[0])])
        self.supervisor.ready(0)
        self.assertEqual(self.launcher.askedToStop, [(0, old[0]), (1, old[1])])
        self.supervisor.exited(old[1], 0, 0)
        self.assertEqual(len(self.launcher.askedToStop), 2)
        self.supervisor.ready(1)
        self.assertEqual(self.launcher.askedToStop, [(0, old[0]), (1, old[1]), (2, old[2])])
        self.supervisor.exited(old[2], 0, 0)
        self.supervisor.ready(2)
        self.assertEqual(len(self.launcher.askedToStop), 3)
        self.assertEqual(self.launcher.launchedIds(), [0, 1, 2, 0, 1, 2])
        new = [self.pid(i) for i in range(3)]
        self.assertEqual(new[0], new0)
        self.assertEqual(set(new) & set(old), set())
        self.assertEqual(self.listener.of("failed"), [])
        self.assertEqual(self.launcher.killed, [])
        self.assertEqual([event[1] for event in self.listener.events if event[0] == "retiring"], [0, 1, 2])

    def test_refusedWhileRunning(self) -> None:
        """
        A second reload while one is running returns False and asks no
        one; once it is over a new one is accepted.
        """
        self.makeSupervisor()
        self.assertTrue(self.supervisor.reload())
        self.assertFalse(self.supervisor.reload())
        self.assertFalse(self.supervisor.reload(onlyTaskWorkers=True))
        self.assertEqual(len(self.launcher.askedToStop), 1)
        for workerId in (0, 1):
            self.supervisor.exited(self.launcher.askedToStop[-1][1], 0, 0)
            self.supervisor.ready(workerId)
        self.assertEqual(len(self.launcher.askedToStop), 2)
        self.assertTrue(self.supervisor.reload())
        self.assertEqual(self.launcher.askedToStop[-1], (0, self.pid(0)))

    def test_refusedWhileLastIsReplaced(self) -> None:
        """
        The reload is still running while its last process is being
        replaced: a second reload returns False and asks no one again.
        """
        self.makeSupervisor()
        self.assertTrue(self.supervisor.reload())
        self.supervisor.exited(self.pid(0), 0, 0)
        self.supervisor.ready(0)
        self.assertEqual([workerId for workerId, pid in self.launcher.askedToStop], [0, 1])
        self.assertFalse(self.supervisor.reload())
        self.assertEqual([workerId for workerId, pid in self.launcher.askedToStop], [0, 1])


    def test_lateReadyOfRetiredProcessDoesNotAdvance(self) -> None:
        """
        A process asked to stop before it said ready (a reload right after
        start) may still say ready: that is not its successor's ready, so
        the next process is not asked yet.
        """
        self.makeSupervisor()
        old0 = self.pid(0)
        self.supervisor.reload()
        self.supervisor.ready(0)
        self.assertEqual(self.pid(0), old0)
        self.assertEqual(self.launcher.askedToStop, [(0, old0)])


    def test_onlyTaskWorkers(self) -> None:
        """reload(onlyTaskWorkers=True) replaces the task slots only."""
        self.makeSupervisor(taskWorkers=2)
        workers = [self.pid(0), self.pid(1)]
        old2, old3 = self.pid(2), self.pid(3)
        self.assertTrue(self.supervisor.reload(onlyTaskWorkers=True))
        self.assertEqual(self.launcher.askedToStop, [(2, old2)])
        self.supervisor.exited(old2, 0, 0)
        self.supervisor.ready(2)
        self.assertEqual(self.launcher.askedToStop, [(2, old2), (3, old3)])
        self.supervisor.exited(old3, 0, 0)
        self.supervisor.ready(3)
        self.assertEqual(self.launcher.launchedIds(), [0, 1, 2, 3, 2, 3])
        self.assertEqual([self.pid(0), self.pid(1)], workers)
        self.assertEqual(len(self.launcher.askedToStop), 2)

    def test_onlyTaskWorkersWithoutTaskSlots(self) -> None:
        """
        With no task worker processes, reload(onlyTaskWorkers=True) returns
        True and does nothing (and does not block a later reload).
        """
        self.makeSupervisor()
        self.assertTrue(self.supervisor.reload(onlyTaskWorkers=True))
        self.assertEqual(self.launcher.askedToStop, [])
        self.assertEqual(self.listener.events, [])
        self.assertEqual(self.pendingDelays(), [])
        self.assertTrue(self.supervisor.reload())
        self.assertEqual(self.launcher.askedToStop, [(0, self.pid(0))])

    def test_crashedSuccessorDelaysNext(self) -> None:
        """
        If the successor dies before it is ready, the next process is asked
        only when the successor's replacement is ready.
        """
        self.makeSupervisor()
        old1 = self.pid(1)
        self.supervisor.reload()
        self.supervisor.exited(self.pid(0), 0, 0)
        self.supervisor.exited(self.pid(0), 1, 0)
        self.clock.advance(1)
        self.assertEqual(len(self.launcher.askedToStop), 1)
        self.supervisor.ready(0)
        self.assertEqual(self.launcher.askedToStop[-1], (1, old1))

    def test_refusedWhileStopping(self) -> None:
        """No reload once stop() was called."""
        self.makeSupervisor()
        self.supervisor.stop()
        asked = list(self.launcher.askedToStop)
        self.assertFalse(self.supervisor.reload())
        self.assertEqual(self.launcher.askedToStop, asked)


class AsyncReloadTests(SupervisorTestCase):
    """
    L{Supervisor.reload} with reload_async True: all at once.
    """

    def test_allAtOnce(self) -> None:
        """
        Every process is asked to stop at once, and each is replaced as it
        exits, with no workerFailed.
        """
        self.makeSupervisor(taskWorkers=1, reload_async=True)
        old = [self.pid(i) for i in range(3)]
        self.assertTrue(self.supervisor.reload())
        self.assertEqual(self.launcher.askedToStop, [(0, old[0]), (1, old[1]), (2, old[2])])
        self.assertEqual(self.listener.of("retiring"), [(i, old[i], "reload") for i in range(3)])
        for pid in reversed(old):
            self.supervisor.exited(pid, 0, 0)
        self.assertEqual(self.launcher.launchedIds(), [0, 1, 2, 2, 1, 0])
        self.assertEqual(set(self.pid(i) for i in range(3)) & set(old), set())
        self.assertEqual(self.listener.of("failed"), [])

    def test_onlyTaskWorkers(self) -> None:
        """All task slots at once, and no worker."""
        self.makeSupervisor(taskWorkers=2, reload_async=True)
        self.assertTrue(self.supervisor.reload(onlyTaskWorkers=True))
        self.assertEqual(self.launcher.askedToStop, [(2, self.pid(2)), (3, self.pid(3))])

    def test_refusedWhileRunning(self) -> None:
        """
        A second reload while an all-at-once reload is running returns
        False and does not ask the processes to stop again.
        """
        self.makeSupervisor(reload_async=True)
        self.assertTrue(self.supervisor.reload())
        self.assertFalse(self.supervisor.reload())
        self.assertEqual(len(self.launcher.askedToStop), 2)



class ReloadTimeoutTests(SupervisorTestCase):
    """
    A process that does not stop within max_wait_time of a reload.
    """

    def test_hungProcessKilled(self) -> None:
        """
        It is killed max_wait_time + STOP_GRACE_SECONDS after it was asked
        to stop (not before), replaced, and the reload goes on.
        """
        self.makeSupervisor(max_wait_time=3.0)
        hung, next_ = self.pid(0), self.pid(1)
        self.supervisor.reload()
        self.clock.advance(3.0 + STOP_GRACE_SECONDS - EPSILON)
        self.assertEqual(self.launcher.killed, [])
        self.clock.advance(2 * EPSILON)
        self.assertEqual(self.launcher.killed, [hung])
        self.supervisor.exited(hung, 0, 9)
        self.clock.advance(0)
        self.assertEqual(self.launcher.launchedIds(), [0, 1, 0])
        self.supervisor.ready(0)
        self.assertEqual(self.launcher.askedToStop[-1], (1, next_))

    def test_hungProcessKilledAsync(self) -> None:
        """With reload_async, only the ones that did not stop are killed."""
        self.makeSupervisor(max_wait_time=3.0, reload_async=True, taskWorkers=1)
        stops, hung, hungTask = self.pid(0), self.pid(1), self.pid(2)
        self.supervisor.reload()
        self.clock.advance(1)
        self.supervisor.exited(stops, 0, 0)
        self.clock.advance(2.0 + STOP_GRACE_SECONDS + EPSILON)
        self.assertEqual(sorted(self.launcher.killed), sorted([hung, hungTask]))

    def test_stoppedInTimeNotKilled(self) -> None:
        """
        A process that stops in time is not killed, nor is its successor
        when the deadline comes.
        """
        self.makeSupervisor(max_wait_time=3.0)
        self.supervisor.reload()
        self.supervisor.exited(self.pid(0), 0, 0)
        self.clock.advance(3.0 + STOP_GRACE_SECONDS + 1)
        self.assertEqual(self.launcher.killed, [])


class StopTests(SupervisorTestCase):
    """
    L{Supervisor.stop}.
    """

    def test_firesWhenAllExited(self) -> None:
        """
        stop asks every process to stop; its Deferred fires only when all
        have exited; those exits (even with errors) neither start another
        process nor fire workerFailed; nothing is killed afterwards.
        """
        self.makeSupervisor(taskWorkers=1)
        pids = [self.pid(i) for i in range(3)]
        d = self.supervisor.stop()
        self.assertEqual(self.launcher.askedToStop, [(i, pids[i]) for i in range(3)])
        self.assertNoResult(d)
        self.supervisor.exited(pids[0], 0, 0)
        self.supervisor.exited(pids[2], 1, 0)
        self.assertNoResult(d)
        self.supervisor.exited(pids[1], 0, 15)
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(self.listener.of("exited"), [(0, pids[0]), (2, pids[2]), (1, pids[1])])
        self.assertEqual(self.listener.of("failed"), [])
        self.clock.advance(60)
        self.assertEqual(len(self.launcher.launched), 3)
        self.assertEqual(self.launcher.killed, [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stragglerKilled(self) -> None:
        """
        A process that never exits is killed after max_wait_time +
        STOP_GRACE_SECONDS (not before); the Deferred fires once its exit
        is reported; no workerFailed, no new process.
        """
        self.makeSupervisor(max_wait_time=3.0)
        quick, straggler = self.pid(0), self.pid(1)
        d = self.supervisor.stop()
        self.supervisor.exited(quick, 0, 0)
        self.clock.advance(3.0 + STOP_GRACE_SECONDS - EPSILON)
        self.assertEqual(self.launcher.killed, [])
        self.clock.advance(2 * EPSILON)
        self.assertEqual(self.launcher.killed, [straggler])
        self.assertNoResult(d)
        self.supervisor.exited(straggler, 0, 9)
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(self.listener.of("failed"), [])
        self.clock.advance(60)
        self.assertEqual(len(self.launcher.launched), 2)

    def test_cancelsPendingRestart(self) -> None:
        """
        A restart waiting out its back-off is cancelled by stop: nothing is
        launched after stop, the slot is not asked, and the Deferred fires
        when the running processes have exited.
        """
        self.makeSupervisor()
        self.supervisor.exited(self.pid(0), 1, 0)
        self.assertEqual(self.pendingDelays(), [0.2])
        other = self.pid(1)
        d = self.supervisor.stop()
        self.assertEqual(self.launcher.askedToStop, [(1, other)])
        self.supervisor.exited(other, 0, 0)
        self.assertIsNone(self.successResultOf(d))
        self.clock.advance(MAX_BACKOFF_SECONDS + 1)
        self.assertEqual(self.launcher.launchedIds(), [0, 1])

    def test_cancelsImmediateRestart(self) -> None:
        """
        Even a restart due at once (after a long life), not yet run when
        stop is called, does not happen.
        """
        self.makeSupervisor(worker_num=1)
        self.clock.advance(10)
        self.supervisor.exited(self.pid(0), 1, 0)
        d = self.supervisor.stop()
        self.assertIsNone(self.successResultOf(d))
        self.clock.advance(0)
        self.assertEqual(self.launcher.launchedIds(), [0])

    def test_nothingRunning(self) -> None:
        """With no process running, the Deferred fires at once."""
        self.makeSupervisor(worker_num=1)
        self.supervisor.exited(self.pid(0), 1, 0)
        d = self.supervisor.stop()
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(self.launcher.askedToStop, [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_plannedExitDuringStopNotReplaced(self) -> None:
        """A process that was recycling and exits during stop is not replaced."""
        self.makeSupervisor(worker_num=1)
        self.supervisor.planned(0, "max_request")
        d = self.supervisor.stop()
        self.supervisor.exited(self.pid(0), 0, 0)
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(self.launcher.launchedIds(), [0])

    def test_stopsWatchdog(self) -> None:
        """After stop, the watchdog kills nobody (only the stop's deadline does)."""
        self.makeSupervisor(worker_num=1, worker_timeout=2.0, max_wait_time=60.0)
        self.supervisor.stop()
        self.clock.pump([1.0] * 10)
        self.assertEqual(self.launcher.killed, [])

    def test_duringSequentialReload(self) -> None:
        """
        stop in the middle of a one-at-a-time reload: the process the reload
        retired exits and is not replaced; a ready() afterwards asks no
        one else; the Deferred fires when all are gone.
        """
        self.makeSupervisor(taskWorkers=1)
        old = [self.pid(i) for i in range(3)]
        self.supervisor.reload()
        self.supervisor.exited(old[0], 0, 0)
        new0 = self.pid(0)
        d = self.supervisor.stop()
        self.assertEqual(self.launcher.askedToStop[1:], [(0, new0), (1, old[1]), (2, old[2])])
        self.supervisor.ready(0)
        self.assertEqual(len(self.launcher.askedToStop), 4)
        for pid in (new0, old[1], old[2]):
            self.supervisor.exited(pid, 0, 0)
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(self.launcher.launchedIds(), [0, 1, 2, 0])


    def test_stopTwice(self) -> None:
        """
        A second stop() while the first is running does not orphan the first
        Deferred: both fire when all processes have exited.
        """
        self.makeSupervisor()
        first = self.supervisor.stop()
        second = self.supervisor.stop()
        for workerId in (0, 1):
            self.supervisor.exited(self.pid(workerId), 0, 0)
        self.assertIsNone(self.successResultOf(second))
        self.assertIsNone(self.successResultOf(first))



class UnknownPidTests(SupervisorTestCase):
    """
    L{Supervisor.exited} for a pid that is not a slot's process.
    """

    def assertNothingHappened(self, slots: list[tuple[int, int]]) -> None:
        self.assertEqual(self.listener.events, [])
        self.assertEqual(self.launcher.launchedIds(), [0, 1])
        self.assertEqual(self.pendingDelays(), [])
        self.assertEqual([(s.workerId, s.pid) for s in self.supervisor.slots.values()], slots)

    def test_unknownPidIgnored(self) -> None:
        """An unknown pid changes nothing, tells nothing, starts nothing."""
        self.makeSupervisor()
        slots = [(0, self.pid(0)), (1, self.pid(1))]
        self.supervisor.exited(999999, 1, 9)
        self.clock.advance(0)
        self.assertNothingHappened(slots)

    def test_pidZeroIgnored(self) -> None:
        """Pid 0 is no slot's process, even when a slot has none."""
        self.makeSupervisor()
        self.supervisor.exited(self.pid(0), 1, 0)
        events = list(self.listener.events)
        self.supervisor.exited(0, 1, 0)
        self.assertEqual(self.listener.events, events)
        self.assertEqual(self.pendingDelays(), [0.2])

    def test_secondExitOfSamePidIgnored(self) -> None:
        """A pid reported twice is handled once."""
        self.makeSupervisor()
        self.clock.advance(10)
        old = self.pid(0)
        self.supervisor.exited(old, 1, 0)
        self.clock.advance(0)
        self.supervisor.exited(old, 1, 0)
        self.clock.advance(0)
        self.assertEqual(self.listener.of("failed"), [(0, old, 1, 0)])
        self.assertEqual(self.launcher.launchedIds(), [0, 1, 0])

    def test_unknownPidDuringStop(self) -> None:
        """An unknown pid does not make the stop's Deferred fire early."""
        self.makeSupervisor()
        d = self.supervisor.stop()
        self.supervisor.exited(999999, 0, 0)
        self.assertNoResult(d)
