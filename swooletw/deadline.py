"""
Waiting for something, at most so long, without cancelling it.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred

__all__ = ["waitAtMost"]


def waitAtMost(awaited: Deferred[Any], seconds: float, clock: Any) -> Deferred[bool]:
    """
    A Deferred that fires with C{True} when C{awaited} fires, or with
    C{False} after C{seconds} on C{clock}, whichever comes first.
    C{awaited} itself is neither cancelled nor changed (its result passes
    on to its own later callbacks).
    """
    waited: Deferred[bool] = Deferred()

    def fired(result: Any) -> Any:
        if not waited.called:
            waited.callback(True)
        return result

    awaited.addBoth(fired)
    if not waited.called:
        waited.addTimeout(max(0.0, seconds), clock, onTimeoutCancel=lambda result, timeout: False)
    return waited
