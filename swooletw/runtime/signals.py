# -*- test-case-name: tests.test_workers -*-
"""
Stopping a reactor quietly, however many times it is asked.

C{SIGTERM} to a whole process group (systemd's default C{KillMode}, C{timeout
(1)}) or Ctrl-C in a terminal reaches the master and every worker at once,
and the master then also tells each worker to stop.  Twisted's own signal
handlers would stop an already stopping reactor and log
C{ReactorNotRunning}; these do nothing the second time.  The master's also
keep C{twistd} from exiting with the signal's status: a graceful stop exits 0.
"""

from __future__ import annotations

import signal
from typing import Any

from twisted.internet.error import ReactorNotRunning

__all__ = ["stopReactor", "stopSoon", "installStopSignals", "restoreSignals"]

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def stopReactor(reactor: Any) -> None:
    """
    Stop C{reactor} unless it is already stopping.
    """
    try:
        reactor.stop()
    except ReactorNotRunning:
        pass


def stopSoon(reactor: Any) -> bool:
    """
    C{serv.shutdown()}: stop C{reactor} gracefully once the current call
    is done.
    """
    reactor.callLater(0, stopReactor, reactor)
    return True


def installStopSignals(reactor: Any) -> dict[int, Any]:
    """
    Make C{SIGTERM} and C{SIGINT} stop C{reactor} gracefully (once).

    @return: the previous handlers, for C{signal.signal} to restore.
    """
    previous = {}
    for signum in STOP_SIGNALS:
        previous[signum] = signal.signal(
            signum, lambda s, f: reactor.callFromThread(stopReactor, reactor)
        )
    return previous


def restoreSignals(previous: dict[int, Any]) -> None:
    """
    Put back handlers saved by L{installStopSignals} (or any such dict).
    """
    for signum, handler in previous.items():
        signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
