# -*- test-case-name: tests.test_examples -*-
"""
Tutorial §8: asynchronous tasks.  C{receive} hands the data to a task
(C{$serv->task($data)}), answers C{"This is a message from server."} at
once and goes on; the task (a plain function: it runs in a task thread,
so its C{sleep} blocks no one) works for five seconds and returns; its
result reaches C{finish} in the worker that asked.

As in Swoole, C{finish} fires only for a task that returns a value or
calls C{serv.finish()}: the PHP task returns nothing, this one returns the
data so that the C{finish} of the tutorial shows.
"""

from __future__ import annotations

import time
from typing import Callable

from twisted.logger import Logger

from swooletw.api import Server

log = Logger(namespace="swooletw.examples.task")


def onConnect(serv: Server, fd: int) -> None:
    """C{echo "new client connected."}"""
    log.info("new client connected.")


def onReceive(serv: Server, fd: int, fromId: int, data: bytes) -> None:
    """Hand the data to a task, tell the client, go on."""
    log.info("worker received data: {data!r}", data=data)
    serv.task(data)
    serv.send(fd, b"This is a message from server.")
    log.info("worker continue run.")


def makeOnTask(steps: int = 5, sleep: Callable[[float], None] = time.sleep) -> Callable[..., bytes]:
    """
    The task callback: C{steps} seconds of blocking work, logged.
    """

    def onTask(serv: Server, taskId: int, fromId: int, data: bytes) -> bytes:
        log.info("task start. --- from worker id: {from_id}.", from_id=fromId)
        for i in range(steps):
            sleep(1)
            log.info("task runing. --- {i}", i=i)
        log.info("task end.")
        return data

    return onTask


def onFinish(serv: Server, taskId: int, data: bytes) -> None:
    """C{echo "finish received data '{$data}'"}"""
    log.info("finish received data {data!r}", data=data)


def makeServer(
    host: str = "127.0.0.1", port: int = 9501, steps: int = 5,
    sleep: Callable[[float], None] = time.sleep,
) -> Server:
    """
    The §8 server: one task worker, as the tutorial sets; one worker
    process.
    """
    serv = Server(host, port)
    serv.set({"worker_num": 1, "task_worker_num": 1})
    serv.on("Connect", onConnect)
    serv.on("Receive", onReceive)
    serv.on("Task", makeOnTask(steps, sleep))
    serv.on("Finish", onFinish)
    return serv
