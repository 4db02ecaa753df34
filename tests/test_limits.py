"""
Limits on one connection: the output buffer (C{buffer_output_size}), the
deadline for a whole packet (C{package_recv_timeout}), closes for idleness or
a limit that abort instead of waiting for the peer to read, a raising
C{package_length_func}, and the guard on the direct write path's reliance on
Twisted's C{tcp.Connection} internals.
"""

from __future__ import annotations

import struct

from twisted.internet import reactor, tcp
from twisted.internet.abstract import FileDescriptor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import EventLoggingObserver, MemoryReactorClock
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase

from swooletw import Server, SettingError, settings
from swooletw.connection import _canWriteDirectly
from swooletw.testing import ServerHarness
from tests.test_integration import RealServerMixin


def limitServer(**values) -> Server:
    """
    A server on a memory reactor with EOF framing and C{values} set.
    """
    serv = Server("127.0.0.1", 9501, reactor=MemoryReactorClock())
    serv.set(dict({"worker_num": 1, "open_eof_split": True}, **values))
    return serv


def warnings(observer: EventLoggingObserver, word: str) -> list[dict]:
    """
    The warnings logged whose format mentions C{word}.
    """
    return [
        e for e in observer
        if e["log_level"] == LogLevel.warn and word in e.get("log_format", "")
    ]


class AbortTests(SynchronousTestCase):
    """
    A close for idleness or for a limit aborts the connection: queued
    output is dropped instead of waiting for a peer that may never read.
    """

    def test_heartbeatAborts(self) -> None:
        """The heartbeat's close is an abort."""
        harness = ServerHarness(limitServer(heartbeat_check_interval=1))
        client = harness.connect()
        harness.advance(1)
        harness.advance(1)
        self.assertTrue(client.closed)
        self.assertTrue(client.transport.disconnected, "closed without abortConnection")

    def test_framingErrorAborts(self) -> None:
        """A framing error's close is an abort."""
        harness = ServerHarness(limitServer(package_max_length=8))
        client = harness.connect()
        client.write(b"far too long for the limit")
        self.assertTrue(client.closed)
        self.assertTrue(client.transport.disconnected, "closed without abortConnection")

    def test_userCloseStillGraceful(self) -> None:
        """serv.close(fd) still closes after the data sent."""
        serv = limitServer()
        client = ServerHarness(serv).connect()
        serv.close(client.fd)
        self.assertTrue(client.closed)
        self.assertFalse(client.transport.disconnected)


class LengthFuncFailureTests(SynchronousTestCase):
    """
    A C{package_length_func} that raises: logged with its traceback and the
    fd, that connection closed, counted as a packet error.
    """

    def test_raisingLengthFunc(self) -> None:
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

        def lengthFunc(data: bytes) -> int:
            raise ValueError("cannot parse")

        serv = Server("127.0.0.1", 9501, reactor=MemoryReactorClock())
        serv.set(worker_num=1, package_length_func=lengthFunc)
        harness = ServerHarness(serv)
        client, other = harness.connect(), harness.connect()
        client.write(b"data")
        self.assertTrue(client.closed)
        self.assertFalse(other.closed)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        [failure] = [e for e in observer if "log_failure" in e]
        self.assertEqual(failure["fd"], client.fd)
        self.assertEqual(serv.stats()["packet_error_count"], 1)


class NeverReadingClientTests(RealServerMixin, TestCase):
    """
    Real sockets: a client that stops reading while the server sends.
    """

    @inlineCallbacks
    def test_heartbeatAbortsStuckConnection(self):
        """
        A connection idle past the heartbeat with megabytes queued for a
        client that does not read is gone at once: close fires and the
        client sees a reset, not an orderly end.
        """
        closed: Deferred[int] = Deferred()

        def onConnect(serv, fd, rid):
            for _ in range(128):
                serv.send(fd, b"q" * 65536)  # 8 MiB, more than the kernel holds

        serv = Server("127.0.0.1", 0)
        serv.set(heartbeat_check_interval=0.1, heartbeat_idle_time=0.2)
        serv.on("connect", onConnect)
        serv.on("receive", lambda serv, fd, rid, data: None)
        serv.on("close", lambda serv, fd, rid: closed.callback(fd))
        self.startServer(serv)
        client = yield self.connect(serv.port)
        self.disconnectAtEnd(client)
        client.transport.pauseProducing()
        reasons = []
        original = client.connectionLost
        client.connectionLost = lambda reason: (reasons.append(reason), original(reason))
        yield closed.addTimeout(10, reactor)
        self.assertEqual(serv.stats()["heartbeat_close_count"], 1)
        self.assertEqual(len(serv.connections), 0)
        client.transport.resumeProducing()
        yield client.lost
        self.assertLess(len(client.data), 128 * 65536)
        self.assertIsNone(reasons[0].check(ConnectionDone), reasons[0])


class DirectWriteGuardTests(RealServerMixin, TestCase):
    """
    The direct write path reads C{tcp.Connection} internals: fail loudly if
    the installed Twisted no longer has them, and use C{transport.write}
    for transports without them.
    """

    @inlineCallbacks
    def test_tcpConnectionInternals(self):
        """
        A real server connection on 127.0.0.1 is a C{tcp.Connection} with
        C{_tempDataLen}, C{dataBuffer}, C{offset} and C{socket} meaning what
        the direct path assumes, and the direct path is taken.
        """
        connected: Deferred[int] = Deferred()
        serv = Server("127.0.0.1", 0)
        serv.on("connect", lambda serv, fd, rid: connected.callback(fd))
        serv.on("receive", lambda serv, fd, rid, data: None)
        self.startServer(serv)
        client = yield self.connect(serv.port)
        self.disconnectAtEnd(client)
        fd = yield connected
        connection = serv._table.get(fd)
        transport = connection.transport
        self.assertIsInstance(transport, tcp.Connection)
        changed = "Twisted's tcp.Connection changed: swooletw.connection's direct write path"
        for name in ("_tempDataLen", "dataBuffer", "offset", "socket", "connected", "disconnecting"):
            self.assertTrue(hasattr(transport, name), f"{changed} needs {name!r}")
        self.assertEqual(len(transport.dataBuffer) - transport.offset + transport._tempDataLen, 0)
        self.assertTrue(_canWriteDirectly(transport), changed + " is no longer taken")
        self.assertEqual(connection._write, connection._writeDirect)

        queued = []
        self.patch(transport, "write", queued.append)
        self.assertIs(serv.send(fd, b"direct"), True)
        yield client.waitFor(6)
        self.assertEqual((client.data, queued), (b"direct", []))

        # What Twisted queues shows in the fields the path reads.
        tcp.Connection.write(transport, b"abc")
        self.assertEqual(len(transport.dataBuffer) - transport.offset + transport._tempDataLen, 3)

    def test_fallbackWithoutInternals(self) -> None:
        """
        A transport without them (a test double, or a tcp.Connection of a
        Twisted that dropped one) gets C{transport.write}.
        """
        client = ServerHarness(limitServer()).connect()
        self.assertEqual(client.protocol._write, client.transport.write)

        def missing(self):
            raise AttributeError("gone")

        internals = ("_tempDataLen", "dataBuffer", "offset", "socket")

        def bare(cls, without=None):
            transport = cls.__new__(cls)
            for name in internals:
                if name != without:
                    setattr(transport, name, getattr(transport, name, None))
            return transport

        self.assertTrue(_canWriteDirectly(bare(tcp.Server)))
        for name in internals:
            changed = type("Changed", (tcp.Server,), {name: property(missing)})
            self.assertFalse(_canWriteDirectly(bare(changed, name)), f"without {name}")
