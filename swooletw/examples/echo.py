# -*- test-case-name: tests.test_examples -*-
"""
Tutorial §7.1: the asynchronous TCP server.  Replies C{"hello server"}
followed by whatever the client sent.

    twistd -ny tap/echo.tac
    twistd -n swoole-tcp --app swooletw.examples.echo:makeServer
"""

from __future__ import annotations

from twisted.logger import Logger

from swooletw.api import Server

log = Logger(namespace="swooletw.examples.echo")


def onConnect(serv: Server, fd: int) -> None:
    """A client connected (PHP: C{echo "new client connected."})."""
    log.info("new client connected. (fd {fd})", fd=fd)


def onReceive(serv: Server, fd: int, fromId: int, data: bytes) -> None:
    """Reply with C{"hello server"} and the data."""
    serv.send(fd, b"hello server" + data)


def onClose(serv: Server, fd: int) -> None:
    """A client left (PHP: C{echo "Client close."})."""
    log.info("Client close. (fd {fd})", fd=fd)


def makeServer(host: str = "127.0.0.1", port: int = 9501) -> Server:
    """
    The §7.1 server, with the tutorial's two workers.
    """
    serv = Server(host, port)
    serv.set({"worker_num": 2})
    serv.on("Connect", onConnect)
    serv.on("Receive", onReceive)
    serv.on("Close", onClose)
    return serv
