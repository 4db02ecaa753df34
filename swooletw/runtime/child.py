# -*- test-case-name: tests.test_workers -*-
"""
Process plumbing for the master/worker model: forking a worker out of a
running master, and what the child must undo before it runs.

Workers are forked from the master, as Swoole's manager forks them, rather
than started with C{spawnProcess} (fork + exec): only a fork keeps Swoole's
reload rule, where code imported before C{start()} lives on in every worker
and only code imported in C{workerStart} is fresh after a reload, and only a
fork lets a plain script with closures as callbacks run unchanged.

The child inherits the master's reactor, which it must not touch: it closes
every inherited descriptor but its own (the listening sockets, its channel
to the master, standard I/O and open regular files such as log files),
installs a fresh reactor, and asks the kernel to kill it if the master dies.
The parent's reactor object, which user code may hold from a module-level
C{from twisted.internet import reactor} done before C{start()}, forwards
everything to the fresh one in the child, so such code works there.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import socket
import stat
import sys
from typing import Any, Iterable

from swooletw import timer
from swooletw.proctitle import set_process_name
from swooletw.runtime.signals import STOP_SIGNALS, installStopSignals

__all__ = [
    "closeInheritedDescriptors",
    "freshReactor",
    "dieWithParent",
    "becomeChild",
    "adoptChannel",
]

_PR_SET_PDEATHSIG = 1


def _openDescriptors() -> list[int]:
    try:
        return sorted(int(name) for name in os.listdir("/proc/self/fd"))
    except OSError:
        return list(range(3, os.sysconf("SC_OPEN_MAX")))


def closeInheritedDescriptors(keep: Iterable[int]) -> None:
    """
    Close every descriptor above 2 that is not in C{keep} and not a regular
    file or a character device (log files stay open; the master's epoll
    instance, wake-up pipes, sockets and other workers' channels go).
    """
    kept = set(keep)
    for fd in _openDescriptors():
        if fd <= 2 or fd in kept:
            continue
        try:
            mode = os.fstat(fd).st_mode
        except OSError:
            continue
        if stat.S_ISREG(mode) or stat.S_ISCHR(mode):
            continue
        try:
            os.close(fd)
        except OSError:
            pass


class _ForwardingReactor:
    """
    What the parent's reactor object becomes in a forked child: every
    attribute is the fresh reactor's.
    """

    def __getattribute__(self, name: str) -> Any:
        return getattr(_freshReactor[0], name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(_freshReactor[0], name, value)


_freshReactor: list[Any] = []


def freshReactor() -> Any:
    """
    Replace the global reactor inherited from the master by a new one of
    the same kind, and return it; the old object forwards to it from now
    on.  Must run after L{closeInheritedDescriptors}, in a process that
    will never return to the old reactor.
    """
    import twisted.internet

    old = sys.modules.pop("twisted.internet.reactor", None)
    if hasattr(twisted.internet, "reactor"):
        del twisted.internet.reactor
    if old is not None and type(old).__module__.endswith("epollreactor"):
        from twisted.internet import epollreactor

        epollreactor.install()
    else:
        from twisted.internet import default

        default.install()
    from twisted.internet import reactor

    if old is not None and old is not reactor:
        _freshReactor[:] = [reactor]
        try:
            old.__class__ = _ForwardingReactor
        except TypeError:
            pass  # a reactor whose class cannot change: it stays stale
    return reactor


def dieWithParent(parentPid: int) -> None:
    """
    Have the kernel send this process C{SIGKILL} when its parent dies (Linux
    C{PR_SET_PDEATHSIG}); if the parent is already gone, exit now.
    """
    libcName = ctypes.util.find_library("c")
    if libcName:
        libc = ctypes.CDLL(libcName, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parentPid:
        os._exit(1)


def becomeChild(serv: Any, title: str, parentPid: int, keep: list[int]) -> Any:
    """
    What every forked child does first: die with the master, close what it
    inherited but C{keep}, start a fresh reactor, drop the parent's timers
    and runtime, take its title.

    @return: the new reactor.
    """
    dieWithParent(parentPid)
    closeInheritedDescriptors(keep)
    reactor = freshReactor()
    serv.adoptReactor(reactor)
    timer.defaultTimers.reset()
    serv.worker_pid = os.getpid()
    set_process_name(title)
    return reactor


def adoptChannel(reactor: Any, channelFd: int, channel: Any) -> None:
    """
    Run C{channel} over this child's end of the socketpair to the master.
    """
    from swooletw.runtime.channel import ChannelFactory

    sock = socket.socket(fileno=channelFd)
    reactor.adoptStreamConnection(sock.fileno(), socket.AF_UNIX, ChannelFactory(channel))
    sock.close()


def runChild(reactor: Any, service: Any) -> int:
    """
    Run C{service} on this child's reactor until it stops, with quiet
    C{SIGTERM}/C{SIGINT} handling; its C{exitCode}.
    """
    installStopSignals(reactor)
    # Blocked since the fork (see fork.OSForker): a stop signal that came
    # meanwhile is handled now.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    reactor.callWhenRunning(service.startService)
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.run(installSignalHandlers=False)
    return service.exitCode
