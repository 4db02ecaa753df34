# -*- test-case-name: tests.test_asyncclient -*-
"""
L{AsyncClient}: a TCP client for Twisted code, with Swoole's client names
and framing, answering with Deferreds instead of blocking.

    client = AsyncClient(SOCK_TCP)
    client.set({"open_length_check": True, "package_length_type": "N",
                "package_length_offset": 0, "package_body_offset": 4})
    await client.connect("127.0.0.1", 9501)
    client.send(struct.pack("!I", 4) + b"ping")
    packet = await client.recv(timeout=5)
    await client.close()

Packets are split by the server's framers (L{swooletw.wire.framing}): each
packet handed out is whole, framing included, as the server's C{receive}
gets it.  A packet goes to the oldest pending L{AsyncClient.recv}; with none
pending, to the C{receive} callback if one is set with L{AsyncClient.on};
otherwise it waits in a queue for the next C{recv()}.  UDP is not supported
here: use the blocking L{swooletw.client.Client} or C{reactor.listenUDP}.
"""

from __future__ import annotations

import errno
from collections import deque
from typing import Any, Callable, Mapping

from twisted.internet import error as _error
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.endpoints import HostnameEndpoint, TCP4ClientEndpoint, TCP6ClientEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger

from swooletw._clientbase import ClientBase, addressDict, firstGiven, framingErrorCode
from swooletw.wire import toBytes
from swooletw.constants import (
    ERROR_CLIENT_NO_CONNECTION,
    ERROR_DNSLOOKUP_RESOLVE_FAILED,
    SOCK_TCP,
    SOCK_TCP6,
    UDP_TYPES,
)
from swooletw.wire.framing import framingFor

__all__ = [
    "AsyncClient",
    "ClientError",
    "ConnectionClosedError",
    "RecvTimeoutError",
    "FramingError",
    "EVENTS",
]

#: The events L{AsyncClient.on} takes, as Swoole's asynchronous client.
EVENTS = ("connect", "receive", "close", "error")


class ClientError(Exception):
    """
    An L{AsyncClient} operation failed.

    @ivar errCode: the C{errno} value or Swoole code, as C{client.errCode}.
    """

    def __init__(self, message: str, errCode: int) -> None:
        super().__init__(message)
        self.errCode = errCode


class ConnectionClosedError(ClientError):
    """
    The connection is closed (or was never made), so no packet will come.
    """


class RecvTimeoutError(ClientError):
    """
    No whole packet arrived within C{recv()}'s timeout.
    """


class FramingError(ClientError):
    """
    The server broke the framing (a packet over C{package_max_length}, a
    bad length field); the connection was closed.
    """


class _Delivery:
    """
    Mixin for a framer class: hands packets and connection events to the
    L{AsyncClient}.
    """

    client: AsyncClient

    def connectionMade(self) -> None:
        """
        Tell the client it is connected.
        """
        self.client._connectionMade(self)

    def packetReceived(self, packet: bytes) -> None:
        """
        Hand one whole packet to the client.
        """
        self.client._packetReceived(packet)

    def framingError(self, reason: str) -> None:
        """
        Record the framing error on the client and close.
        """
        self.client._framingError(reason, self.framingErrorTooLarge)
        self.transport.loseConnection()

    def connectionLost(self, reason: Any = None) -> None:
        """
        Tell the client the connection is gone.
        """
        self.client._connectionLost(reason)


class _ClientFactory(Factory):
    """
    Builds the framed protocol of one connection attempt.
    """

    def __init__(self, client: AsyncClient, settings: Mapping[str, Any]) -> None:
        self.client = client
        self.framing = framingFor(settings)
        framer = self.framing.framer
        self.protocol = type(f"Client{framer.__name__}", (_Delivery, framer), {})

    def buildProtocol(self, addr: Any) -> Any:
        """
        A framed protocol configured for the client's settings.
        """
        protocol = self.protocol()
        self.framing.apply(protocol)
        protocol.factory = self
        protocol.client = self.client
        return protocol


def _codeOf(reason: BaseException) -> int:
    # The errCode for a failed connect, as the blocking client sets it.
    if isinstance(reason, _error.DNSLookupError):
        return ERROR_DNSLOOKUP_RESOLVE_FAILED
    if isinstance(reason, _error.TimeoutError):
        return errno.ETIMEDOUT
    if isinstance(reason, (CancelledError, _error.ConnectingCancelledError)):
        return errno.ECANCELED
    code = getattr(reason, "osError", None)
    if isinstance(code, int):
        return code
    if isinstance(reason, _error.ConnectionRefusedError):
        return errno.ECONNREFUSED
    return errno.EIO


class AsyncClient(ClientBase):
    """
    A TCP client on a Twisted reactor with Swoole's client API: C{errCode},
    C{errMsg}, C{type}, C{setting} and C{set()} as L{ClientBase} has them
    (settings take effect at the next L{connect}).

    @cvar maxQueued: packets queued for C{recv()} before reading from the
        socket pauses (resumed when C{recv()} drains the queue).
    """

    log = Logger()
    maxQueued = 128

    def __init__(self, sock_type: int = SOCK_TCP, reactor: Any = None) -> None:
        """
        @param sock_type: C{SOCK_TCP} or C{SOCK_TCP6}.
        @param reactor: the reactor to connect with (default: the global
            one, looked up when first needed).
        @raise NotImplementedError: for C{SOCK_UDP} and C{SOCK_UDP6}.
        @raise ValueError: for anything else that is not a socket type.
        """
        super().__init__(sock_type)
        if self.type in UDP_TYPES:
            raise NotImplementedError(
                "AsyncClient speaks TCP only; for UDP use the blocking "
                "swooletw.client.Client or reactor.listenUDP"
            )
        self._reactor = reactor
        self._callbacks: dict[str, Callable[..., Any]] = {}
        self._protocol: Any = None
        self._connecting: Deferred | None = None
        self._packets: deque[bytes] = deque()
        self._waiters: deque[Deferred] = deque()
        self._timers: dict[Deferred, Any] = {}
        self._closeWaiters: list[Deferred] = []
        self._closeReason: ClientError | None = None
        self._paused = False

    def _getReactor(self) -> Any:
        if self._reactor is None:
            from twisted.internet import reactor

            self._reactor = reactor
        return self._reactor

    # -------------------------------------------------------- callbacks

    def on(self, event: str, callback: Callable[..., Any]) -> None:
        """
        Set a callback, as Swoole's asynchronous client: C{connect(client)},
        C{receive(client, data)}, C{close(client)}, C{error(client)} (a
        failed connect).

        @raise ValueError: for another event name.
        """
        name = event.lower()
        if name not in EVENTS:
            raise ValueError(f"unknown client event {event!r}; use one of {', '.join(EVENTS)}")
        if not callable(callback):
            raise TypeError(f"callback for {event!r} is not callable: {callback!r}")
        self._callbacks[name] = callback

    def _emit(self, event: str, *args: Any) -> None:
        callback = self._callbacks.get(event)
        if callback is None:
            return
        try:
            callback(self, *args)
        except Exception:
            self.log.failure("Uncaught exception in the client's {event} callback", event=event)

    # --------------------------------------------------------- connect

    def _endpoint(self, host: str, port: int, timeout: float | None) -> Any:
        reactor = self._getReactor()
        if isIPv6Address(host):
            return TCP6ClientEndpoint(reactor, host, port, timeout=timeout)
        if isIPAddress(host) and self.type != SOCK_TCP6:
            return TCP4ClientEndpoint(reactor, host, port, timeout=timeout)
        return HostnameEndpoint(reactor, host, port, timeout=timeout or 3600)

    def connect(self, host: str, port: int, timeout: float | None = None) -> Deferred:
        """
        Connect to C{host}:C{port}.

        @param timeout: seconds to connect; C{None} for C{set()}'s
            C{connect_timeout} or C{timeout}, or Swoole's 0.5; zero or
            negative waits forever.
        @return: a Deferred firing with this client once connected, or
            failing with Twisted's connection error (C{ConnectionRefusedError},
            C{TimeoutError}, C{DNSLookupError}), C{errCode} set; or with
            L{ClientError} if already connected or connecting.
        """
        if self._protocol is not None or self._connecting is not None:
            self._fail(errno.EISCONN)
            return fail(ClientError("already connected or connecting", errno.EISCONN))
        s = self._settings
        seconds = firstGiven(timeout, s["connect_timeout"], s["timeout"], 0.5)
        self._packets.clear()
        self._closeReason = None
        factory = _ClientFactory(self, s)
        d = self._endpoint(host, port, seconds if seconds > 0 else None).connect(factory)
        self._connecting = d
        return d.addCallbacks(self._connected, self._connectFailed)

    def _connected(self, protocol: Any) -> AsyncClient:
        self._connecting = None
        self._emit("connect")
        return self

    def _connectFailed(self, reason: Any) -> Any:
        self._connecting = None
        self._fail(_codeOf(reason.value), str(reason.value))
        self._emit("error")
        return reason

    def _connectionMade(self, protocol: Any) -> None:
        self._protocol = protocol
        self._paused = False
        if self._settings["open_tcp_nodelay"]:
            protocol.transport.setTcpNoDelay(True)

    # --------------------------------------------------------- sending

    def send(self, data: str | bytes) -> bool:
        """
        Queue C{data} for sending (C{str} as UTF-8).

        @return: C{True}, or C{False} with C{errCode} set if not connected
            or C{data} is empty.
        """
        payload = toBytes(data)
        if self._protocol is None or self._protocol.transport.disconnecting:
            return self._notConnected()
        if not payload:
            return self._fail(errno.EINVAL, "data to send is empty")
        self._protocol.transport.write(payload)
        return True

    # ------------------------------------------------------- receiving

    def recv(self, timeout: float | None = None) -> Deferred:
        """
        The next whole packet.

        @param timeout: seconds to wait; C{None} for C{set()}'s
            C{read_timeout}, else no limit.  Cancelling the Deferred also
            stops waiting.
        @return: a Deferred firing with the packet (C{bytes}), or failing
            with L{RecvTimeoutError}, L{ConnectionClosedError} or
            L{FramingError}.
        """
        if self._packets:
            packet = self._packets.popleft()
            self._resumeIfDrained()
            return succeed(packet)
        if self._protocol is None and self._connecting is None:
            return fail(self._closedError())
        d = Deferred(self._cancelWaiter)
        self._waiters.append(d)
        if timeout is None:
            timeout = self._settings["read_timeout"]
        if timeout is not None and timeout > 0:
            self._timers[d] = self._getReactor().callLater(timeout, self._timedOut, d, timeout)
        return d

    def _closedError(self) -> ClientError:
        if self._closeReason is not None:
            return self._closeReason
        self._notConnected()
        return ConnectionClosedError(self.errMsg, self.errCode)

    def _forget(self, d: Deferred) -> None:
        self._waiters.remove(d)
        timer = self._timers.pop(d, None)
        if timer is not None and timer.active():
            timer.cancel()

    def _cancelWaiter(self, d: Deferred) -> None:
        self._forget(d)

    def _timedOut(self, d: Deferred, timeout: float) -> None:
        self._timers.pop(d, None)
        self._forget(d)
        self._fail(errno.ETIMEDOUT, f"no whole packet within {timeout} seconds")
        d.errback(RecvTimeoutError(self.errMsg, self.errCode))

    def _packetReceived(self, packet: bytes) -> None:
        if self._waiters:
            d = self._waiters[0]
            self._forget(d)
            d.callback(packet)
        elif "receive" in self._callbacks:
            self._emit("receive", packet)
        else:
            self._packets.append(packet)
            if len(self._packets) >= self.maxQueued and not self._paused:
                self._paused = True
                self._protocol.transport.pauseProducing()

    def _resumeIfDrained(self) -> None:
        if self._paused and not self._packets and self._protocol is not None:
            self._paused = False
            self._protocol.transport.resumeProducing()

    def _framingError(self, reason: str, tooLarge: bool) -> None:
        code = framingErrorCode(tooLarge)
        self._fail(code, reason)
        self._closeReason = FramingError(reason, code)
        self.log.warn("Closing the connection: {reason}", reason=reason)

    # --------------------------------------------------------- closing

    def _connectionLost(self, reason: Any) -> None:
        self._protocol = None
        if self._closeReason is None:
            message = reason.getErrorMessage() if reason is not None else "connection closed"
            self._closeReason = ConnectionClosedError(
                f"connection closed: {message}", ERROR_CLIENT_NO_CONNECTION
            )
        while self._waiters:
            d = self._waiters[0]
            self._forget(d)
            d.errback(self._closeReason)
        self._emit("close")
        waiters, self._closeWaiters = self._closeWaiters, []
        for d in waiters:
            d.callback(None)

    def close(self) -> Deferred:
        """
        Close the connection (or stop connecting).  Pending C{recv()}s fail
        with L{ConnectionClosedError}; packets already queued can still be
        read.

        @return: a Deferred firing with L{None} once the connection is gone.
        """
        if self._connecting is not None:
            self._connecting.cancel()
            return succeed(None)
        if self._protocol is None:
            return succeed(None)
        d = Deferred()
        self._closeWaiters.append(d)
        if self._closeReason is None:
            self._closeReason = ConnectionClosedError(
                "connection closed by close()", ERROR_CLIENT_NO_CONNECTION
            )
        self._protocol.transport.loseConnection()
        return d

    def isConnected(self) -> bool:
        """
        @return: whether the connection is up.
        """
        return self._protocol is not None

    def getsockname(self) -> dict[str, Any] | bool:
        """
        @return: the local address as C{{'host': ..., 'port': ...}}, or
            C{False} if not connected.
        """
        return self._address("getHost")

    def getpeername(self) -> dict[str, Any] | bool:
        """
        @return: the peer's address as C{{'host': ..., 'port': ...}}, or
            C{False} if not connected.
        """
        return self._address("getPeer")

    def _address(self, method: str) -> dict[str, Any] | bool:
        if self._protocol is None:
            return self._notConnected()
        address = getattr(self._protocol.transport, method)()
        return addressDict((address.host, address.port))
