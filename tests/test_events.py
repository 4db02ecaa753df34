"""
Tests for L{swooletw.events}.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, fail
from twisted.trial.unittest import SynchronousTestCase

from swooletw.events import EventError, adaptArity, canonicalEvent, invoke


class CanonicalEventTests(SynchronousTestCase):
    """
    Event names are looked up case-insensitively in an explicit table.
    """

    def test_caseInsensitive(self) -> None:
        """WorkerStart, workerstart and WORKERSTART are one event with 2 arguments."""
        for name in ("WorkerStart", "workerstart", "WORKERSTART"):
            self.assertEqual(canonicalEvent(name), ("workerstart", 2))

    def test_unknownSuggests(self) -> None:
        """An unknown name suggests the closest event."""
        e = self.assertRaises(EventError, canonicalEvent, "workerStrat")
        self.assertIn("'workerStart'", str(e))

    def test_restricted(self) -> None:
        """A restricted table refuses the others, saying where."""
        e = self.assertRaises(EventError, canonicalEvent, "start", frozenset({"receive"}))
        self.assertIn("on a port", str(e))

    def test_notAString(self) -> None:
        """A non-string name is refused, not crashed on."""
        self.assertRaises(EventError, canonicalEvent, 42)


class AdaptArityTests(SynchronousTestCase):
    """
    Callbacks get as many arguments as they take, like PHP.
    """

    def test_fullSignatureUnchanged(self) -> None:
        """A callback taking all arguments is returned as is (no per-call cost)."""
        def f(serv, fd, reactorId):
            return fd

        self.assertIs(adaptArity(f, 3), f)

    def test_varargsUnchanged(self) -> None:
        """A *args callback is returned as is."""
        def f(*args):
            return args

        self.assertIs(adaptArity(f, 4), f)

    def test_shorterGetsFirstArguments(self) -> None:
        """A two-argument callback for a three-argument event gets the first two."""
        adapted = adaptArity(lambda serv, fd: (serv, fd), 3)
        self.assertEqual(adapted("s", 7, 0), ("s", 7))

    def test_boundMethod(self) -> None:
        """A bound method's self does not count ([$this, 'onConnect'])."""
        class App:
            def onConnect(self, serv, fd):
                return fd

        adapted = adaptArity(App().onConnect, 3)
        self.assertEqual(adapted("s", 9, 0), 9)

    def test_notCallable(self) -> None:
        """A non-callable is refused."""
        self.assertRaises(EventError, adaptArity, "onReceive", 4)


class InvokeTests(SynchronousTestCase):
    """
    invoke() never lets a callback's failure escape.
    """

    def test_plainValue(self) -> None:
        """A plain result is returned."""
        self.assertEqual(invoke(lambda a: a + 1, (1,), "test"), 2)

    def test_raisingLogged(self) -> None:
        """An exception is logged and None returned."""
        def boom():
            raise KeyError("x")

        self.assertIsNone(invoke(boom, (), "test", fd=3))
        self.assertEqual(len(self.flushLoggedErrors(KeyError)), 1)

    def test_failedDeferredLogged(self) -> None:
        """A failed Deferred result is logged and consumed."""
        d = invoke(lambda: fail(ValueError("late")), (), "test")
        self.assertIsInstance(d, Deferred)
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)

    def test_coroutine(self) -> None:
        """An async def result becomes a Deferred with its value."""
        async def f():
            return 5

        self.assertEqual(self.successResultOf(invoke(f, (), "test")), 5)
