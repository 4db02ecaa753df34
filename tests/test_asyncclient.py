"""
Tests for L{swooletw.asyncclient}.

L{MemoryTests} drive the client on a L{MemoryReactorClock} with a
L{StringTransport}, so timeouts run on a fake clock.  L{RealReactorTests}
talk to a Twisted server started on 127.0.0.1 with a random port.
"""

from __future__ import annotations

import errno
import socket
import struct

from twisted.internet import defer, error
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from swooletw.asyncclient import (
    AsyncClient,
    ClientError,
    ConnectionClosedError,
    FramingError,
    RecvTimeoutError,
)
from swooletw.constants import (
    ERROR_CLIENT_NO_CONNECTION,
    ERROR_PACKAGE_LENGTH_TOO_LARGE,
    ERROR_PACKAGE_MALFORMED_DATA,
    SOCK_TCP,
    SOCK_UDP,
)
from swooletw.settings import SettingError

EOF_SPLIT = {"open_eof_split": True, "package_eof": "\r\n"}
LENGTH = {"open_length_check": True, "package_max_length": 64}


def lengthPacket(body: bytes) -> bytes:
    """
    The tutorial's C{pack('N', strlen($body)) . $body}.
    """
    return struct.pack(">I", len(body)) + body


class MemoryTests(SynchronousTestCase):
    """
    L{AsyncClient} on a fake reactor: packets, queueing, timeouts.
    """

    def connect(self, settings: dict | None = None, **connectArgs):
        """
        Connect a client in memory.

        @return: the client, the reactor, the protocol and its transport.
        """
        reactor = MemoryReactorClock()
        client = AsyncClient(reactor=reactor)
        if settings:
            client.set(settings)
        d = client.connect("127.0.0.1", 9501, **connectArgs)
        host, port, factory, timeout, bindAddress = reactor.tcpClients[0]
        protocol = factory.buildProtocol(IPv4Address("TCP", host, port))
        transport = StringTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.1", 40000),
            peerAddress=IPv4Address("TCP", host, port),
        )
        protocol.makeConnection(transport)
        self.assertIs(self.successResultOf(d), client)
        return client, reactor, protocol, transport

    def test_connectTimeoutPassed(self) -> None:
        """
        C{connect} asks the reactor for Swoole's 0.5 s by default, or
        C{set()}'s C{connect_timeout}, or its own argument.
        """
        for settings, args, expected in [
            (None, {}, 0.5),
            ({"connect_timeout": 3}, {}, 3.0),
            ({"connect_timeout": 3}, {"timeout": 7}, 7),
        ]:
            _, reactor, _, _ = self.connect(settings, **args)
            self.assertEqual(reactor.tcpClients[0][:2], ("127.0.0.1", 9501))
            self.assertEqual(reactor.tcpClients[0][3], expected)

    def test_sendWrites(self) -> None:
        """
        C{send} writes bytes (C{str} as UTF-8) and returns C{True}.
        """
        client, _, _, transport = self.connect()
        self.assertIs(client.send("h\u00e9"), True)
        self.assertIs(client.send(b"!"), True)
        self.assertEqual(transport.value(), "h\u00e9!".encode("utf-8"))

    def test_onePacketPerRecv(self) -> None:
        """
        Packets arriving in one chunk before C{recv} are queued and come
        out one per C{recv}, in order.
        """
        client, _, protocol, _ = self.connect(EOF_SPLIT)
        protocol.dataReceived(b"one\r\ntwo\r\nthr")
        self.assertEqual(self.successResultOf(client.recv()), b"one\r\n")
        self.assertEqual(self.successResultOf(client.recv()), b"two\r\n")
        d = client.recv()
        self.assertNoResult(d)
        protocol.dataReceived(b"ee\r\n")
        self.assertEqual(self.successResultOf(d), b"three\r\n")

    def test_lengthHeaderIncluded(self) -> None:
        """
        With length framing the packet comes with its header, even fed one
        byte at a time.
        """
        client, _, protocol, _ = self.connect(LENGTH)
        d = client.recv()
        packet = lengthPacket(b"Just a test.")
        for i in range(len(packet)):
            self.assertNoResult(d)
            protocol.dataReceived(packet[i : i + 1])
        self.assertEqual(self.successResultOf(d), packet)

    def test_recvTimeout(self) -> None:
        """
        C{recv(timeout)} fails with L{RecvTimeoutError} (errCode 110) when
        the clock passes the timeout; a later packet is queued.
        """
        client, reactor, protocol, _ = self.connect(EOF_SPLIT)
        d = client.recv(timeout=5)
        reactor.advance(4.9)
        self.assertNoResult(d)
        reactor.advance(0.2)
        failure = self.failureResultOf(d, RecvTimeoutError)
        self.assertEqual(failure.value.errCode, errno.ETIMEDOUT)
        self.assertEqual(client.errCode, errno.ETIMEDOUT)
        protocol.dataReceived(b"late\r\n")
        self.assertEqual(self.successResultOf(client.recv()), b"late\r\n")

    def test_readTimeoutSetting(self) -> None:
        """
        Without an argument, C{recv} waits C{set()}'s C{read_timeout}; a
        packet in time cancels the timer.
        """
        client, reactor, protocol, _ = self.connect(dict(EOF_SPLIT, read_timeout=2))
        d = client.recv()
        self.assertEqual(len(reactor.getDelayedCalls()), 1)
        protocol.dataReceived(b"ok\r\n")
        self.assertEqual(self.successResultOf(d), b"ok\r\n")
        self.assertEqual(reactor.getDelayedCalls(), [])
        d = client.recv()
        reactor.advance(2)
        self.failureResultOf(d, RecvTimeoutError)

    def test_cancel(self) -> None:
        """
        Cancelling a C{recv} stops waiting; the next packet is queued.
        """
        client, _, protocol, _ = self.connect(EOF_SPLIT)
        d = client.recv()
        d.cancel()
        self.failureResultOf(d, defer.CancelledError)
        protocol.dataReceived(b"kept\r\n")
        self.assertEqual(self.successResultOf(client.recv()), b"kept\r\n")

    def test_pushCallbacks(self) -> None:
        """
        With no C{recv} pending, packets go to the C{receive} callback;
        C{close} fires when the connection is lost.
        """
        client, _, protocol, _ = self.connect(EOF_SPLIT)
        events = []
        client.on("Receive", lambda cli, data: events.append((cli, data)))
        client.on("close", lambda cli: events.append((cli, "closed")))
        protocol.dataReceived(b"a\r\nb\r\n")
        protocol.connectionLost(Failure(error.ConnectionDone()))
        self.assertEqual(events, [(client, b"a\r\n"), (client, b"b\r\n"), (client, "closed")])

    def test_unknownEvent(self) -> None:
        """
        C{on} refuses an unknown event, listing the known ones.
        """
        e = self.assertRaises(ValueError, AsyncClient(reactor=MemoryReactorClock()).on, "packet", print)
        self.assertIn("receive", str(e))

    def test_backPressure(self) -> None:
        """
        Reading pauses when C{maxQueued} packets wait, and resumes when
        C{recv} has drained them.
        """
        client, _, protocol, transport = self.connect(EOF_SPLIT)
        client.maxQueued = 2
        protocol.dataReceived(b"1\r\n2\r\n")
        self.assertEqual(transport.producerState, "paused")
        self.successResultOf(client.recv())
        self.assertEqual(transport.producerState, "paused")
        self.successResultOf(client.recv())
        self.assertEqual(transport.producerState, "producing")

    def test_framingError(self) -> None:
        """
        An over-limit header closes the connection; the pending C{recv}
        fails with L{FramingError} carrying Swoole's code.
        """
        client, _, protocol, transport = self.connect(LENGTH)
        d = client.recv()
        protocol.dataReceived(struct.pack(">I", 1000))
        self.assertTrue(transport.disconnecting)
        protocol.connectionLost(Failure(error.ConnectionDone()))
        failure = self.failureResultOf(d, FramingError)
        self.assertEqual(failure.value.errCode, ERROR_PACKAGE_LENGTH_TOO_LARGE)
        self.assertFalse(client.isConnected())
        self.failureResultOf(client.recv(), FramingError)

    def test_malformedData(self) -> None:
        """
        A length function rejecting the data (even in words that mention
        C{package_max_length}) fails the pending C{recv} with
        C{ERROR_PACKAGE_MALFORMED_DATA}.
        """

        def lengthFunc(buf: bytes) -> int:
            raise ValueError("over package_max_length")

        client, _, protocol, transport = self.connect({"package_length_func": lengthFunc})
        d = client.recv()
        protocol.dataReceived(b"junk")
        self.assertTrue(transport.disconnecting)
        protocol.connectionLost(Failure(error.ConnectionDone()))
        failure = self.failureResultOf(d, FramingError)
        self.assertEqual(failure.value.errCode, ERROR_PACKAGE_MALFORMED_DATA)
        self.assertEqual(client.errCode, ERROR_PACKAGE_MALFORMED_DATA)

    def test_lostWhileWaiting(self) -> None:
        """
        A pending C{recv} fails with L{ConnectionClosedError} when the
        connection is lost; queued packets stay readable after it.
        """
        client, _, protocol, _ = self.connect(EOF_SPLIT)
        d = client.recv()
        protocol.dataReceived(b"first\r\nsecond\r\n")
        self.assertEqual(self.successResultOf(d), b"first\r\n")
        protocol.connectionLost(Failure(error.ConnectionLost()))
        self.assertEqual(self.successResultOf(client.recv()), b"second\r\n")
        self.failureResultOf(client.recv(), ConnectionClosedError)

    def test_close(self) -> None:
        """
        C{close} loses the connection and fires once it is gone.
        """
        client, _, protocol, transport = self.connect()
        d = client.close()
        self.assertTrue(transport.disconnecting)
        self.assertNoResult(d)
        protocol.connectionLost(Failure(error.ConnectionDone()))
        self.assertIsNone(self.successResultOf(d))
        self.assertIs(client.send(b"x"), False)
        self.assertEqual(client.errCode, ERROR_CLIENT_NO_CONNECTION)

    def test_addresses(self) -> None:
        """
        The addresses come back as Swoole's dicts.
        """
        client, _, _, _ = self.connect()
        self.assertEqual(client.getpeername(), {"host": "127.0.0.1", "port": 9501})
        self.assertEqual(client.getsockname(), {"host": "127.0.0.1", "port": 40000})

    def test_connectTwice(self) -> None:
        """
        Connecting a connected client fails with C{EISCONN}.
        """
        client, _, _, _ = self.connect()
        failure = self.failureResultOf(client.connect("127.0.0.1", 9501), ClientError)
        self.assertEqual(failure.value.errCode, errno.EISCONN)

    def test_notConnected(self) -> None:
        """
        Before C{connect}, C{send} fails and C{recv} fails at once.
        """
        client = AsyncClient(reactor=MemoryReactorClock())
        self.assertIs(client.send(b"x"), False)
        self.assertEqual(client.errCode, ERROR_CLIENT_NO_CONNECTION)
        self.failureResultOf(client.recv(), ConnectionClosedError)
        self.assertIs(client.getpeername(), False)

    def test_refusedTypesAndSettings(self) -> None:
        """
        UDP is not implemented here; settings are checked as the blocking
        client checks them.
        """
        e = self.assertRaises(NotImplementedError, AsyncClient, SOCK_UDP)
        self.assertIn("UDP", str(e))
        client = AsyncClient(SOCK_TCP, reactor=MemoryReactorClock())
        e = self.assertRaises(SettingError, client.set, heartbeat_idle_time=3)
        self.assertIn("'heartbeat_idle_time'", str(e))


class _EchoServerProtocol(Protocol):
    """
    Echoes, after sending the factory's C{greeting}; C{lost} fires when
    the connection is gone.
    """

    def connectionMade(self) -> None:
        self.factory.connections.append(self)
        self.lost = defer.Deferred()
        if self.factory.greeting:
            self.transport.write(self.factory.greeting)

    def dataReceived(self, data: bytes) -> None:
        self.transport.write(data)

    def connectionLost(self, reason: Failure) -> None:
        self.lost.callback(None)


class RealReactorTests(TestCase):
    """
    L{AsyncClient} against a Twisted server on 127.0.0.1.
    """

    def listen(self, greeting: bytes = b"") -> Factory:
        """
        Start an echo server that first sends C{greeting}.

        @return: its factory, with C{port} and C{connections}.
        """
        from twisted.internet import reactor

        factory = Factory.forProtocol(_EchoServerProtocol)
        factory.connections = []
        factory.greeting = greeting
        listening = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(self._stop, listening, factory)
        factory.port = listening.getHost().port
        return factory

    async def _stop(self, listening, factory) -> None:
        for connection in factory.connections:
            connection.transport.loseConnection()
            await connection.lost
        await listening.stopListening()

    async def connected(self, settings: dict | None = None, greeting: bytes = b"") -> AsyncClient:
        """
        A client connected to a new echo server, closed after the test.
        """
        server = self.listen(greeting)
        client = AsyncClient()
        if settings:
            client.set(settings)
        self.assertIs(await client.connect("127.0.0.1", server.port, timeout=5), client)
        self.addCleanup(client.close)
        return client

    async def test_echoOnePacketAtATime(self) -> None:
        """
        Packets sent in one C{send} come back one per C{recv}.
        """
        client = await self.connected(EOF_SPLIT)
        self.assertTrue(client.isConnected())
        client.send(b"a\r\nbb\r\nccc\r\n")
        received = [await client.recv(timeout=5) for _ in range(3)]
        self.assertEqual(received, [b"a\r\n", b"bb\r\n", b"ccc\r\n"])

    async def test_queuedBeforeRecv(self) -> None:
        """
        Packets the server pushes before anyone calls C{recv} are queued.
        """
        packets = [lengthPacket(b"p%d" % i) for i in range(4)]
        client = await self.connected(LENGTH, greeting=b"".join(packets))
        received = [await client.recv(timeout=5) for _ in packets]
        self.assertEqual(received, packets)

    async def test_tcpNoDelay(self) -> None:
        """
        C{open_tcp_nodelay} sets C{TCP_NODELAY} on the socket.
        """
        client = await self.connected({"open_tcp_nodelay": True})
        handle = client._protocol.transport.getHandle()
        self.assertTrue(handle.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    async def test_serverCloses(self) -> None:
        """
        When the server closes, a pending C{recv} fails with
        L{ConnectionClosedError} and the C{close} callback runs.
        """
        server = self.listen()
        client = AsyncClient()
        closed = defer.Deferred()
        client.on("close", closed.callback)
        await client.connect("127.0.0.1", server.port, timeout=5)
        self.addCleanup(client.close)
        d = client.recv(timeout=5)
        server.connections[0].transport.loseConnection()
        with self.assertRaises(ConnectionClosedError):
            await d
        self.assertIs(await closed, client)
        self.assertFalse(client.isConnected())

    async def test_closeFires(self) -> None:
        """
        C{close} fires once the connection is gone; C{recv} then fails.
        """
        client = await self.connected()
        self.assertIsNone(await client.close())
        self.assertFalse(client.isConnected())
        with self.assertRaises(ConnectionClosedError):
            await client.recv()

    async def test_refused(self) -> None:
        """
        Connecting to a closed port fails with C{ConnectionRefusedError},
        C{errCode} 111, and runs the C{error} callback.
        """
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        client = AsyncClient()
        errors = []
        client.on("error", errors.append)
        with self.assertRaises(error.ConnectionRefusedError):
            await client.connect("127.0.0.1", port, timeout=5)
        self.assertEqual(client.errCode, 111)
        self.assertEqual(errors, [client])
        self.assertFalse(client.isConnected())
