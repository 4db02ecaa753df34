# -*- test-case-name: tests.test_service -*-
"""
Binding a server's ports: one bind loop and one stop-listening path for the
single process and the master.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from twisted.internet import defer
from twisted.internet.endpoints import (
    SSL4ServerEndpoint,
    TCP4ServerEndpoint,
    TCP6ServerEndpoint,
    serverFromString,
)
from twisted.python.failure import Failure

from swooletw import settings as _settings
from swooletw.constants import SOCK_TCP6

__all__ = [
    "ListenError",
    "tlsContext",
    "endpointFor",
    "listenNow",
    "bindPorts",
    "stopListening",
]


class ListenError(Exception):
    """
    A port could not be bound.
    """


def tlsContext(certFile: str, keyFile: str) -> Any:
    """
    The TLS context of a certificate and key in PEM files.
    """
    from twisted.internet import ssl

    with open(certFile, "rb") as cert, open(keyFile, "rb") as key:
        pem = cert.read() + b"\n" + key.read()
    return ssl.PrivateCertificate.loadPEM(pem).options()


def endpointFor(reactor: Any, port: Any, settings: dict[str, Any]) -> Any:
    """
    The server endpoint of a TCP port: its endpoint string, or TCP, TCP6 or
    TLS (C{ssl_cert_file}) on its host and port with its C{backlog}.
    """
    if port.endpoint is not None:
        return serverFromString(reactor, port.endpoint)
    backlog = settings["backlog"]
    if settings["ssl_cert_file"]:
        context = tlsContext(settings["ssl_cert_file"], settings["ssl_key_file"])
        return SSL4ServerEndpoint(reactor, port.port, context, backlog, port.host)
    if port.type == SOCK_TCP6 or ":" in port.host:
        return TCP6ServerEndpoint(reactor, port.port, backlog, port.host)
    return TCP4ServerEndpoint(reactor, port.port, backlog, port.host)


def listenNow(endpoint: Any, factory: Any) -> Any:
    """
    Listen and return the listening port at once.  The stock endpoints
    listen synchronously; taking the result now makes a bind error raise
    here instead of sitting in a Deferred nobody waits on.

    @raise ListenError: if the endpoint did not listen synchronously.
    """
    listened: list[Any] = []
    endpoint.listen(factory).addBoth(listened.append)
    if not listened:
        raise ListenError("the endpoint did not listen synchronously")
    if isinstance(listened[0], Failure):
        listened[0].raiseException()
    return listened[0]


def bindPorts(ports: Iterable[Any], bindOne: Callable[[Any, dict[str, Any]], Any]) -> list[Any]:
    """
    Bind every port with C{bindOne(port, settings)}; record the real
    address of each (port 0, endpoint strings).  If one fails, those
    already bound are closed.

    @return: the listening ports, in order.
    @raise ListenError: naming the address that could not be bound.
    """
    listening: list[Any] = []
    for port in ports:
        settings = port.effectiveSettings()
        _settings.checkFraming(settings)
        try:
            bound = bindOne(port, settings)
        except Exception as e:
            stopListening(listening)
            where = port.endpoint or f"{port.host}:{port.port}"
            raise ListenError(f"cannot listen on {where}: {e}") from e
        listening.append(bound)
        address = bound.getHost()
        port.port = getattr(address, "port", port.port)
        if port.endpoint is not None:
            port.host = getattr(address, "host", port.host)
    return listening


def stopListening(listening: list[Any]) -> defer.Deferred[Any]:
    """
    Stop every listening port in C{listening} (emptied); fires when all
    have stopped.
    """
    ports = list(listening)
    listening.clear()
    return defer.gatherResults(
        [defer.maybeDeferred(port.stopListening) for port in ports], consumeErrors=True
    )
