# -*- test-case-name: tests.test_examples -*-
"""
Tutorial §12: timers.

 - L{makeServer}: the object-oriented version: a tick started in
   C{workerStart} only in worker 0 (so N workers do not start N identical
   timers), cleared after five ticks; and a one-off timer started from
   C{receive} (C{$serv->after(3000, ...)}).
 - L{startGlobalTick}: C{swoole_timer_tick(1000, f, 'world')} with the
   module functions, cleared after five ticks.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger

from swooletw import timer
from swooletw.api import Server

log = Logger(namespace="swooletw.examples.timers")


def onWorkerStart(serv: Server, workerId: int) -> None:
    """Only worker 0 starts the tick."""
    if workerId == 0:
        state = {"i": 0}
        params = "world"

        def onTick(timerId: int) -> None:
            state["i"] += 1
            log.info("hello, {params} --- {i}", params=params, i=state["i"])
            if state["i"] >= 5:
                serv.clearTimer(timerId)

        serv.tick(1000, onTick)


def onReceive(serv: Server, fd: int, fromId: int, data: bytes) -> None:
    """A one-off timer per packet."""
    serv.after(3000, lambda timerId: log.info("only once."))


def makeServer(host: str = "127.0.0.1", port: int = 9501) -> Server:
    """
    The §12 server, with the tutorial's two workers (hence the worker-0
    test in C{workerStart}).
    """
    serv = Server(host, port)
    serv.set({"worker_num": 2})
    serv.on("WorkerStart", onWorkerStart)
    serv.on("Receive", onReceive)
    return serv


def startGlobalTick(ms: float = 1000) -> int:
    """
    C{swoole_timer_tick(1000, function ($timeId, $params) {...}, 'world')}:
    log five ticks, then clear.
    """
    state = {"i": 0}

    def onTick(timeId: int, params: Any) -> None:
        state["i"] += 1
        log.info("hello, {params} --- {i}", params=params, i=state["i"])
        if state["i"] >= 5:
            timer.clear(timeId)

    return timer.tick(ms, onTick, "world")
