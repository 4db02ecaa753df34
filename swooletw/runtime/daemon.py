# -*- test-case-name: tests.test_daemon -*-
"""
C{Server.start()}: what Swoole's blocking C{start()} does around the
service: logging, C{daemonize}, C{pid_file}, running the reactor.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from twisted.logger import Logger, globalLogBeginner, textFileLogObserver

__all__ = ["daemonize", "writePidFile", "runServer"]

log = Logger()


def daemonize(logFile: str | None) -> None:
    """
    Detach from the terminal (fork, setsid, fork); standard output and
    error go to C{logFile} (or nowhere), as Swoole's C{daemonize}.  The
    original process exits 0.
    """
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    null = os.open(os.devnull, os.O_RDWR)
    out = os.open(logFile, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644) if logFile else null
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)


def writePidFile(path: str, reactor: Any) -> None:
    """
    Write this process's pid to C{path}; remove it when the reactor stops.
    """
    with open(path, "w") as f:
        f.write(f"{os.getpid()}\n")

    def remove() -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass

    reactor.addSystemEventTrigger("after", "shutdown", remove)


def runServer(serv: Any) -> bool:
    """
    C{Server.start()}: bind, detach if C{daemonize}, write C{pid_file}, run
    the reactor until it stops, stop the service gracefully on the way out.
    Logs go to C{log_file} if set (when daemonized, so does standard
    output), else to standard output.  (A program that sets up Twisted's
    logging itself runs C{serv.asService()} instead.)

    @return: C{False} if it could not start (the reason is logged).
    """
    settings = serv.setting
    logFile = settings["log_file"]
    stream = sys.stdout if settings["daemonize"] or not logFile else open(logFile, "a")
    globalLogBeginner.beginLoggingTo([textFileLogObserver(stream)], redirectStandardIO=False)
    try:
        service = serv.asService()
        service.privilegedStartService()
    except Exception as e:
        log.error("server not started: {error}", error=e)
        return False
    if settings["daemonize"]:
        daemonize(logFile)
    reactor = serv.reactor
    if settings["pid_file"]:
        writePidFile(settings["pid_file"], reactor)
    reactor.callWhenRunning(service.startService)
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.run()
    return True
