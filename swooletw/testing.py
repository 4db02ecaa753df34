# -*- test-case-name: tests.test_server -*-
"""
Test helpers for swooletw applications: run a configured L{Server} on a
L{MemoryReactorClock} and talk to it through in-memory connections, no
sockets and no real time.

    serv = myapp.makeServer()
    harness = ServerHarness(serv)
    client = harness.connect()
    client.write(b'{"event": "ping"}\\r\\n')
    self.assertEqual(client.read(), b"pong\\r\\n")
    harness.advance(60)           # timers and heartbeats run
    self.successResultOf(harness.stop())
"""

from __future__ import annotations

import itertools
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

__all__ = [
    "ServerHarness",
    "FakeClient",
    "ClosingStringTransport",
    "HarnessReactor",
    "SynchronousThreadPool",
]


class HarnessReactor(MemoryReactorClock):
    """
    A L{MemoryReactorClock} whose C{callFromThread} runs the call at once
    (with L{SynchronousThreadPool}, the "thread" is the caller).
    """

    def callFromThread(self, f: Any, *args: Any, **kwargs: Any) -> None:
        f(*args, **kwargs)


class SynchronousThreadPool:
    """
    A thread pool stand-in running each call at once in the calling thread,
    for the task workers under test.
    """

    started = False

    def start(self) -> None:
        self.started = True

    def stop(self) -> None:
        self.started = False

    def callInThreadWithCallback(self, onResult: Any, f: Any, *args: Any, **kwargs: Any) -> None:
        try:
            result = f(*args, **kwargs)
        except BaseException:
            onResult(False, Failure())
        else:
            onResult(True, result)


class ClosingStringTransport(StringTransport):
    """
    A L{StringTransport} whose C{loseConnection} ends the connection at
    once: the protocol's C{connectionLost} runs, as it would once a real
    socket closes.
    """

    protocol: Any = None

    def loseConnection(self) -> None:
        if self.connected:
            self.connected = False
            self.disconnecting = True
            self.protocol.connectionLost(Failure(ConnectionDone("closed")))


class FakeClient:
    """
    The client end of one in-memory connection to a server.

    @ivar fd: the connection id the server gave it.
    @ivar transport: the server side's L{ClosingStringTransport}.
    """

    def __init__(self, protocol: Any, transport: ClosingStringTransport) -> None:
        self.protocol = protocol
        self.transport = transport
        self.fd: int = protocol.fd

    def write(self, data: bytes) -> None:
        """
        Send bytes to the server, as one read event.
        """
        self.protocol.dataReceived(data)

    def read(self) -> bytes:
        """
        Everything the server sent since the last C{read()}.
        """
        data = self.transport.value()
        self.transport.clear()
        return data

    @property
    def closed(self) -> bool:
        """
        Whether the server closed (or this client dropped) the connection.
        """
        return not self.transport.connected

    def disconnect(self) -> None:
        """
        Drop the connection from the client side.
        """
        if self.transport.connected:
            self.transport.connected = False
            self.protocol.connectionLost(Failure(ConnectionDone("client left")))


class ServerHarness:
    """
    A started L{Server} on a L{MemoryReactorClock}.

    @param serv: a configured server; it runs on the harness's reactor.
    @param workerId: the worker it plays (C{serv.worker_id}).
    @ivar reactor: the L{MemoryReactorClock}: C{reactor.tcpServers} shows
        what was listened on.
    """

    def __init__(self, serv: Any, reactor: MemoryReactorClock | None = None, workerId: int = 0) -> None:
        if reactor is None:
            configured = serv.reactor
            reactor = configured if isinstance(configured, MemoryReactorClock) else HarnessReactor()
        serv.adoptReactor(reactor)
        self.reactor = reactor
        self.serv = serv
        # Always one process here: the handlers under test run in this one,
        # whatever worker_num and the mode say.
        from swooletw.runtime.local import ProcessRuntime
        from swooletw.runtime.single import ServingService

        serv.checkStartable()
        self.runtime = ProcessRuntime(serv, reactor, workerId, shutdown=self._shutdown)
        self.service = ServingService(serv, self.runtime)
        self.service.taskThreadPool = SynchronousThreadPool()
        self._peerPorts = itertools.count(40000)
        self.service.privilegedStartService()
        self.service.startService()

    def connect(self, portIndex: int = 0, peer: str = "127.0.0.1") -> FakeClient:
        """
        Open a connection to a TCP port of the server (by its index in
        C{serv.ports}).

        @raise ConnectionRefusedError: when the server refuses it
            (C{max_conn}).
        """
        factory = self.service.factoryFor(self.serv.ports[portIndex])
        address = IPv4Address("TCP", peer, next(self._peerPorts))
        protocol = factory.buildProtocol(address)
        if protocol is None:
            raise ConnectionRefusedError(f"refused by port {portIndex}")
        port = self.serv.ports[portIndex].port
        transport = ClosingStringTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", port), peerAddress=address
        )
        transport.protocol = protocol
        protocol.makeConnection(transport)
        return FakeClient(protocol, transport)

    def datagram(self, data: bytes, portIndex: int = 0, peer: tuple[str, int] = ("127.0.0.1", 50000)) -> None:
        """
        Deliver one UDP datagram to a UDP port of the server.
        """
        for port, protocol in self.service.udpProtocols():
            if port.index == portIndex:
                protocol.datagramReceived(data, peer)
                return
        raise LookupError(f"port {portIndex} is not a UDP port")

    #: how many times the server asked to shut down
    shutdowns = 0

    def _shutdown(self) -> bool:
        self.shutdowns += 1
        return True

    def advance(self, seconds: float) -> None:
        """
        Let C{seconds} pass on the reactor's clock.
        """
        self.reactor.advance(seconds)

    def stop(self, settle: bool = True) -> Any:
        """
        Stop the server gracefully; returns the service's stop Deferred.

        @param settle: move the clock until the stop is done (busy
            connections get up to C{max_wait_time}); with C{False}, only
            start the stop, to watch it happen with L{advance}.
        """
        stopped = self.service.stopService()
        self.reactor.advance(0)
        if settle:
            limit = self.serv.setting["max_wait_time"] + 1
            step = 0.01
            while not stopped.called and limit > 0:
                self.reactor.advance(step)
                limit -= step
        return stopped
