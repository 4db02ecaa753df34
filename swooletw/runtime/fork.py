# -*- test-case-name: tests.test_workers -*-
"""
Forking the master's children and knowing when they end.

L{OSForker} forks (see L{swooletw.runtime.child} for why a fork and not
C{spawnProcess}), gives the child one end of a socketpair for its channel
to the master, and has Twisted's own child reaping (its C{SIGCHLD}
handling) report the exit status.  The master takes any L{Forker}, so its
wiring is unit-tested with a fake one and no real process.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from typing import Callable, Protocol

from twisted.internet import process as twistedProcess
from twisted.logger import Logger

from swooletw.runtime.signals import STOP_SIGNALS

__all__ = ["Forker", "OSForker"]


class Forker(Protocol):
    """
    Starts, signals and watches child processes.
    """

    def fork(self, child: Callable[[int], int]) -> tuple[int, socket.socket]:
        """
        Start a child running C{child(channelFd)}, which returns its exit
        status; return its pid and the parent's end of its channel.
        """

    def watch(self, pid: int, ended: Callable[[int, int], None]) -> None:
        """
        Call C{ended(pid, waitStatus)} once C{pid} has exited.
        """

    def signal(self, pid: int, signum: int) -> None:
        """
        Send C{signum} to C{pid} if it still runs.
        """


class _Reaper:
    """
    Registered with Twisted's child reaping for one forked pid.
    """

    def __init__(self, pid: int, ended: Callable[[int, int], None]) -> None:
        self.pid = pid
        self.ended = ended

    def reapProcess(self) -> None:
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            pid, status = self.pid, 0
        if pid:
            self.processEnded(status)

    def processEnded(self, status: int) -> None:
        twistedProcess.unregisterReapProcessHandler(self.pid, self)
        self.ended(self.pid, status)


class OSForker:
    """
    The real L{Forker}.
    """

    log = Logger()

    def fork(self, child: Callable[[int], int]) -> tuple[int, socket.socket]:
        parentEnd, childEnd = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        sys.stdout.flush()
        sys.stderr.flush()
        # A stop signal to the whole group (Ctrl-C) may reach the child
        # before it has its handlers: it stays pending until the child's
        # reactor is ready for it (see child.runChild).
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        pid = os.fork()
        if pid == 0:
            parentEnd.close()
            self._runChild(child, childEnd.detach())
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        childEnd.close()
        return pid, parentEnd

    def _runChild(self, child: Callable[[int], int], channelFd: int) -> None:
        """
        In the forked child: its whole life, then exit (never returning to
        the master's code).
        """
        code = 1
        try:
            code = child(channelFd)
        except BaseException:
            self.log.failure("a forked process crashed")
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    def watch(self, pid: int, ended: Callable[[int, int], None]) -> None:
        twistedProcess.registerReapProcessHandler(pid, _Reaper(pid, ended))

    def signal(self, pid: int, signum: int) -> None:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass
