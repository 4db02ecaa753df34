# -*- test-case-name: tests.test_timer -*-
"""
Swoole's timers: C{tick}, C{after} and C{clear}, in milliseconds.

A callback receives C{(timer_id, *params)} like Swoole's; it may be a plain
function, an C{async def} or return a L{Deferred}.  A tick whose callback
raises is logged and keeps ticking.  Timers may be created before the
reactor runs: they start when it does.

The module functions (C{swooletw.timer.tick(1000, f)}, as PHP's
C{swoole_timer_tick}) use one L{Timers} on the global reactor; each
L{swooletw.Server} has its own, cleared when the server stops.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime

from swooletw.events import invoke

__all__ = ["Timers", "tick", "after", "clear", "clearAll", "exists", "defaultTimers"]


def _checkInterval(ms: Any) -> float:
    if isinstance(ms, bool) or not isinstance(ms, (int, float)) or ms <= 0:
        raise ValueError(f"timer interval must be a positive number of milliseconds, got {ms!r}")
    return ms / 1000.0


class _Timer:
    """
    One scheduled timer; reschedules itself when it repeats.
    """

    def __init__(self, timers: Timers, timerId: int, seconds: float, repeat: bool,
                 callback: Callable[..., Any], params: tuple) -> None:
        self.timers = timers
        self.timerId = timerId
        self.seconds = seconds
        self.repeat = repeat
        self.callback = callback
        self.params = params
        self.call: IDelayedCall | None = None

    def schedule(self, clock: IReactorTime) -> None:
        self.call = clock.callLater(self.seconds, self.fire)

    def fire(self) -> None:
        self.call = None
        if self.repeat:
            # Reschedule before running, so the callback may clear it.
            self.schedule(self.timers.clock)
        else:
            self.timers._forget(self.timerId)
        invoke(self.callback, (self.timerId,) + self.params, "timer", timer_id=self.timerId)

    def cancel(self) -> None:
        if self.call is not None and self.call.active():
            self.call.cancel()
        self.call = None


class Timers:
    """
    A set of Swoole timers on one clock.

    @param clock: an L{IReactorTime}; the global reactor when L{None},
        looked up at first use.
    """

    def __init__(self, clock: IReactorTime | None = None) -> None:
        self._clock = clock
        self._timers: dict[int, _Timer] = {}
        self._ids = itertools.count(1)

    @property
    def clock(self) -> IReactorTime:
        """
        The clock timers run on.
        """
        if self._clock is None:
            from twisted.internet import reactor

            self._clock = reactor  # type: ignore[assignment]
        return self._clock  # type: ignore[return-value]

    def tick(self, ms: float, callback: Callable[..., Any], *params: Any) -> int:
        """
        Call C{callback(timer_id, *params)} every C{ms} milliseconds.

        @return: the timer id, for L{clear}.
        """
        return self._add(ms, True, callback, params)

    def after(self, ms: float, callback: Callable[..., Any], *params: Any) -> int:
        """
        Call C{callback(timer_id, *params)} once, C{ms} milliseconds from now.

        @return: the timer id, for L{clear}.
        """
        return self._add(ms, False, callback, params)

    def clear(self, timerId: int) -> bool:
        """
        Stop a timer.

        @return: C{True} if it was active, C{False} if unknown or done.
        """
        timer = self._timers.pop(timerId, None)
        if timer is None:
            return False
        timer.cancel()
        return True

    def clearAll(self) -> int:
        """
        Stop every timer; return how many were active.
        """
        count = len(self._timers)
        for timerId in list(self._timers):
            self.clear(timerId)
        return count

    def reset(self, clock: IReactorTime | None = None) -> None:
        """
        In a forked child: forget every timer (they ran on the parent's
        reactor) and use C{clock} (default: the global reactor, looked up
        when first needed) from now on.
        """
        self.clearAll()
        self._clock = clock

    def exists(self, timerId: int) -> bool:
        """
        Whether the timer is still scheduled.
        """
        return timerId in self._timers

    def __len__(self) -> int:
        return len(self._timers)

    def _add(self, ms: float, repeat: bool, callback: Callable[..., Any], params: tuple) -> int:
        seconds = _checkInterval(ms)
        if not callable(callback):
            raise TypeError(f"timer callback must be callable, got {callback!r}")
        timerId = next(self._ids)
        timer = _Timer(self, timerId, seconds, repeat, callback, params)
        self._timers[timerId] = timer
        timer.schedule(self.clock)
        return timerId

    def _forget(self, timerId: int) -> None:
        self._timers.pop(timerId, None)


defaultTimers = Timers()
"""The timers behind the module functions, on the global reactor."""


def tick(ms: float, callback: Callable[..., Any], *params: Any) -> int:
    """
    C{swoole_timer_tick}: see L{Timers.tick}.
    """
    return defaultTimers.tick(ms, callback, *params)


def after(ms: float, callback: Callable[..., Any], *params: Any) -> int:
    """
    C{swoole_timer_after}: see L{Timers.after}.
    """
    return defaultTimers.after(ms, callback, *params)


def clear(timerId: int) -> bool:
    """
    C{swoole_timer_clear}: see L{Timers.clear}.
    """
    return defaultTimers.clear(timerId)


def clearAll() -> int:
    """
    C{swoole_timer_clear_all}: see L{Timers.clearAll}.
    """
    return defaultTimers.clearAll()


def exists(timerId: int) -> bool:
    """
    C{swoole_timer_exists}: see L{Timers.exists}.
    """
    return defaultTimers.exists(timerId)
