"""
Tests for L{swooletw.timer} and the server's timer methods.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from swooletw import Server, timer
from swooletw.timer import Timers


class TimersTests(SynchronousTestCase):
    """
    tick, after and clear on a L{Clock}.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.timers = Timers(self.clock)

    def test_tickWithParams(self) -> None:
        """tick calls f(timer_id, *params) every interval."""
        calls = []
        timerId = self.timers.tick(1000, lambda tid, a, b: calls.append((tid, a, b)), "x", 2)
        self.clock.advance(0.999)
        self.assertEqual(calls, [])
        self.clock.pump([0.001, 1, 1])
        self.assertEqual(calls, [(timerId, "x", 2)] * 3)

    def test_tutorialClearAfterFive(self) -> None:
        """The tutorial's tick clears itself after five calls (§12)."""
        count = []

        def onTick(timeId, params):
            count.append(params)
            if len(count) >= 5:
                self.timers.clear(timeId)

        self.timers.tick(1000, onTick, "world")
        self.clock.pump([1] * 10)
        self.assertEqual(count, ["world"] * 5)
        self.assertEqual(len(self.timers), 0)

    def test_afterOnce(self) -> None:
        """after calls once, then the id is gone."""
        calls = []
        timerId = self.timers.after(3000, lambda tid: calls.append(tid))
        self.assertTrue(self.timers.exists(timerId))
        self.clock.pump([3, 3, 3])
        self.assertEqual(calls, [timerId])
        self.assertFalse(self.timers.exists(timerId))
        self.assertFalse(self.timers.clear(timerId))

    def test_clearBeforeFiring(self) -> None:
        """A cleared timer never fires; clear returns True once."""
        calls = []
        timerId = self.timers.after(10, lambda tid: calls.append(tid))
        self.assertTrue(self.timers.clear(timerId))
        self.clock.advance(1)
        self.assertEqual(calls, [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_raisingTickKeepsTicking(self) -> None:
        """A tick whose callback raises is logged and keeps running."""
        calls = []

        def onTick(tid):
            calls.append(tid)
            raise ValueError("tick failed")

        self.timers.tick(100, onTick)
        self.clock.pump([0.1, 0.1, 0.1])
        self.assertEqual(len(calls), 3)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 3)

    def test_asyncCallback(self) -> None:
        """An async def timer callback runs."""
        done: Deferred[None] = Deferred()
        seen = []

        async def onTimer(tid):
            await done
            seen.append(tid)

        timerId = self.timers.after(5, onTimer)
        self.clock.advance(0.005)
        done.callback(None)
        self.assertEqual(seen, [timerId])

    def test_badInterval(self) -> None:
        """Zero, negative or non-number intervals are refused."""
        for ms in (0, -5, "100", True):
            self.assertRaises(ValueError, self.timers.tick, ms, lambda tid: None)
        self.assertRaises(TypeError, self.timers.after, 10, "not callable")

    def test_clearAll(self) -> None:
        """clearAll stops every timer and counts them."""
        self.timers.tick(10, lambda tid: None)
        self.timers.after(10, lambda tid: None)
        self.assertEqual(self.timers.clearAll(), 2)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class ModuleFunctionTests(SynchronousTestCase):
    """
    swooletw.timer.tick/after/clear, as swoole_timer_*.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.patch(timer, "defaultTimers", Timers(self.clock))

    def test_tickAndClear(self) -> None:
        """The module functions use the default timers."""
        calls = []
        timerId = timer.tick(500, lambda tid, p: calls.append(p), "world")
        self.clock.pump([0.5, 0.5])
        self.assertTrue(timer.exists(timerId))
        self.assertTrue(timer.clear(timerId))
        self.clock.advance(1)
        self.assertEqual(calls, ["world", "world"])

    def test_after(self) -> None:
        """timer.after fires once."""
        calls = []
        timer.after(3000, lambda tid: calls.append(tid))
        self.clock.pump([3, 3])
        self.assertEqual(len(calls), 1)
        self.assertEqual(timer.clearAll(), 0)


class ServerTimerTests(SynchronousTestCase):
    """
    serv.tick/after/clearTimer, usable before start.
    """

    def test_beforeStart(self) -> None:
        """A timer made before start runs on the server's clock."""
        clock = Clock()
        serv = Server("127.0.0.1", 9501, reactor=clock)
        calls = []
        serv.tick(1000, lambda tid: calls.append(tid))
        once = serv.after(2000, lambda tid: calls.append(-tid))
        clock.pump([1, 1])
        self.assertEqual(len(calls), 3)
        self.assertIn(-once, calls)
        self.assertFalse(serv.clearTimer(once))
