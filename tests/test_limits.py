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
from swooletw.wire.directwrite import canWriteDirectly
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


class OutputLimitSettingTests(SynchronousTestCase):
    """
    C{buffer_output_size}: Swoole's default, checked, per port.
    """

    def test_default(self) -> None:
        """The default is 2 MiB."""
        self.assertEqual(settings.defaults()["buffer_output_size"], 2 * 1024 * 1024)

    def test_mustBePositive(self) -> None:
        """0 and negative sizes are refused at set()."""
        for bad in (0, -1, 1.5, "2M"):
            self.assertRaises(SettingError, Server("127.0.0.1", 9501).set, buffer_output_size=bad)

    def test_perPort(self) -> None:
        """A port may set its own size."""
        port = Server("127.0.0.1", 9501).listen("127.0.0.1", 9502)
        port.set(buffer_output_size=4096)
        self.assertEqual(port.effectiveSettings()["buffer_output_size"], 4096)


class OutputLimitTests(SynchronousTestCase):
    """
    Past C{buffer_output_size} unsent bytes, C{send()} returns C{False}; what
    was accepted is still delivered, in order.
    """

    def setUp(self) -> None:
        self.observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def test_repliesInReadWhileBackedUp(self) -> None:
        """
        In a read that starts with the transport backed up, each reply is
        checked: the one that would pass the limit is refused and counted,
        the earlier ones arrive, and the connection stays open.
        """
        results = []

        def onReceive(serv, fd, reactorId, data):
            for i in range(4):
                results.append(serv.send(fd, b"%039d\n" % i))

        serv = limitServer(buffer_output_size=FileDescriptor.bufferSize + 100)
        serv.on("receive", onReceive)
        client = ServerHarness(serv).connect()
        client.transport.producer.pauseProducing()
        client.write(b"go\r\n")
        self.assertEqual(results, [True, True, False, False])
        self.assertEqual(client.read(), b"%039d\n%039d\n" % (0, 1))
        self.assertFalse(client.closed)
        self.assertEqual(serv.stats()["output_buffer_overflow_count"], 2)

    def test_repliesGatheredInOneRead(self) -> None:
        """
        Replies gathered during a read count against the limit one by one:
        past it, a send is refused and what was accepted goes out whole.
        """
        results = []

        def onReceive(serv, fd, reactorId, data):
            for i in range(4):
                results.append(serv.send(fd, b"%039d\n" % i))

        serv = limitServer(buffer_output_size=100)
        serv.on("receive", onReceive)
        client = ServerHarness(serv).connect()
        client.write(b"go\r\n")
        self.assertEqual(results, [True, True, False, False])
        self.assertEqual(client.read(), b"".join(b"%039d\n" % i for i in range(2)))
        self.assertEqual(serv.stats()["output_buffer_overflow_count"], 2)

    def test_singleSendOverLimit(self) -> None:
        """One send larger than the limit is refused outright."""
        serv = limitServer(buffer_output_size=100)
        client = ServerHarness(serv).connect()
        self.assertIs(serv.send(client.fd, b"x" * 101), False)
        self.assertIs(serv.send(client.fd, b"x" * 100), True)
        self.assertEqual(client.read(), b"x" * 100)

    def test_pausedTransportCounts(self) -> None:
        """
        Once the transport says its buffer is full (pauseProducing), what
        it holds and each accepted send count; when it has drained
        (resumeProducing), sends are accepted again.
        """
        high = FileDescriptor.bufferSize
        serv = limitServer(buffer_output_size=high + 25_000)
        client = ServerHarness(serv).connect()
        producer = client.transport.producer
        self.assertTrue(client.transport.streaming)
        producer.pauseProducing()
        results = [serv.send(client.fd, b"x" * 10_000) for _ in range(3)]
        self.assertEqual(results, [True, True, False])
        producer.resumeProducing()
        self.assertIs(serv.send(client.fd, b"y" * 10_000), True)
        self.assertEqual(client.read(), b"x" * 20_000 + b"y" * 10_000)

    def test_warnedOncePerConnection(self) -> None:
        """
        One warning per connection, naming its fd and the limit, however
        many sends are refused.
        """
        serv = limitServer(buffer_output_size=10)
        harness = ServerHarness(serv)
        first, second = harness.connect(), harness.connect()
        for client in (first, second, first, second):
            self.assertIs(serv.send(client.fd, b"x" * 11), False)
        logged = warnings(self.observer, "buffer_output_size")
        self.assertEqual([e["fd"] for e in logged], [first.fd, second.fd])
        self.assertEqual({e["limit"] for e in logged}, {10})
        self.assertEqual(serv.stats()["output_buffer_overflow_count"], 4)

    def test_closingRefuses(self) -> None:
        """A connection being closed refuses sends, as before."""
        serv = limitServer()
        client = ServerHarness(serv).connect()
        client.disconnect()
        self.assertIs(serv.send(client.fd, b"x"), False)
        self.assertEqual(serv.stats()["output_buffer_overflow_count"], 0)


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


class PacketDeadlineTests(SynchronousTestCase):
    """
    C{package_recv_timeout}: a packet must arrive whole within that many
    seconds of its first byte.
    """

    def setUp(self) -> None:
        self.observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def lengthServer(self, **values) -> tuple[ServerHarness, Server, list]:
        received: list[bytes] = []
        serv = Server("127.0.0.1", 9501, reactor=MemoryReactorClock())
        serv.set(dict({"worker_num": 1, "open_length_check": True}, **values))
        serv.on("receive", lambda serv, fd, rid, data: received.append(data))
        return ServerHarness(serv), serv, received

    def test_settingChecked(self) -> None:
        """Off by default; seconds, not negative; per port."""
        self.assertEqual(settings.defaults()["package_recv_timeout"], 0)
        self.assertRaises(SettingError, Server("127.0.0.1", 9501).set, package_recv_timeout=-1)
        port = Server("127.0.0.1", 9501).listen("127.0.0.1", 9502)
        port.set(package_recv_timeout=5)
        self.assertEqual(port.effectiveSettings()["package_recv_timeout"], 5.0)

    def test_offTrickleNeverClosed(self) -> None:
        """Without the setting a trickling sender keeps its connection, no timer is set."""
        harness, serv, received = self.lengthServer()
        client = harness.connect()
        before = len(harness.reactor.getDelayedCalls())
        client.write(struct.pack("!I", 1000))
        for _ in range(1000):
            harness.advance(0.1)
            client.write(b"x")
            self.assertEqual(len(harness.reactor.getDelayedCalls()), before)
        self.assertFalse(client.closed)
        self.assertEqual(len(received), 1)

    def test_trickleClosed(self) -> None:
        """
        1 byte per 100 ms: the connection is aborted once the packet is
        late, counted, and logged with its fd, port and the reason.
        """
        harness, serv, received = self.lengthServer(package_recv_timeout=1)
        client = harness.connect()
        client.write(struct.pack("!I", 100))
        for _ in range(9):
            harness.advance(0.1)
            client.write(b"x")
        self.assertFalse(client.closed)
        harness.advance(0.2)
        self.assertTrue(client.closed)
        self.assertTrue(client.transport.disconnected, "closed without abortConnection")
        self.assertEqual(received, [])
        self.assertEqual(serv.stats()["packet_timeout_count"], 1)
        [logged] = warnings(self.observer, "closing fd")
        self.assertEqual((logged["fd"], logged["port"]), (client.fd, 9501))
        self.assertIn("package_recv_timeout", logged["reason"])
        self.assertEqual(harness.reactor.getDelayedCalls(), [])

    def test_clockStartsAtEachPacket(self) -> None:
        """
        Whole packets on time keep the connection; the clock of a packet
        starts at its own first byte, with one timer at most.
        """
        harness, serv, received = self.lengthServer(package_recv_timeout=1)
        client = harness.connect()
        packet = struct.pack("!I", 3) + b"abc"
        for _ in range(5):
            client.write(packet[:5])
            harness.advance(0.9)
            self.assertLessEqual(len(harness.reactor.getDelayedCalls()), 1)
            client.write(packet[5:])
            harness.advance(0.9)
        self.assertEqual(len(received), 5)
        client.write(packet[:5])
        harness.advance(0.9)
        client.write(packet[5:] + packet[:2])  # one ends, the next starts
        harness.advance(0.9)
        self.assertLessEqual(len(harness.reactor.getDelayedCalls()), 1)
        self.assertFalse(client.closed)
        harness.advance(0.2)
        self.assertTrue(client.closed)
        self.assertEqual(len(received), 6)

    def test_noTimerLeftAfterWholePacket(self) -> None:
        """After a whole packet the timer, once due, is not set again."""
        harness, serv, received = self.lengthServer(package_recv_timeout=1)
        client = harness.connect()
        client.write(b"\x00\x00")
        client.write(b"\x00\x01z")
        harness.advance(1)
        self.assertEqual(harness.reactor.getDelayedCalls(), [])
        self.assertFalse(client.closed)

    def test_timerCancelledOnClose(self) -> None:
        """A connection that ends with a partial packet leaves no timer."""
        harness, serv, received = self.lengthServer(package_recv_timeout=1)
        client = harness.connect()
        client.write(b"\x00")
        client.disconnect()
        self.assertEqual(harness.reactor.getDelayedCalls(), [])
        self.assertEqual(serv.stats()["packet_timeout_count"], 0)


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
    def test_sendRefusedPastLimitAcceptedDataIntact(self):
        """
        The server sends 64 KiB chunks until send() returns False; once the
        client reads, it gets exactly every chunk accepted, in order, and a
        send after the buffer drained is accepted again.
        """
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        connected: Deferred[int] = Deferred()
        serv = Server("127.0.0.1", 0)
        serv.on("connect", lambda serv, fd, rid: connected.callback(fd))
        serv.on("receive", lambda serv, fd, rid, data: None)
        self.startServer(serv)
        client = yield self.connect(serv.port)
        self.disconnectAtEnd(client)
        client.transport.pauseProducing()
        fd = yield connected
        accepted = []
        for i in range(1024):  # 64 MiB: far past any kernel buffer + 2 MiB
            chunk = b"%07d\n" % i * 8192
            if not serv.send(fd, chunk):
                break
            accepted.append(chunk)
        else:
            self.fail("send() accepted 64 MiB for a client that does not read")
        self.assertIs(serv.send(fd, b"y" * 65536), False)
        self.assertEqual(serv.stats()["output_buffer_overflow_count"], 2)
        [warning] = warnings(observer, "buffer_output_size")
        self.assertEqual((warning["fd"], warning["limit"]), (fd, 2 * 1024 * 1024))

        expected = b"".join(accepted)
        client.transport.resumeProducing()
        yield client.waitFor(len(expected))
        self.assertEqual(len(client.data), len(expected))
        self.assertTrue(client.data == expected, "the bytes received differ from those accepted")
        self.assertIs(serv.send(fd, b"END"), True)
        yield client.waitFor(len(expected) + 3)
        self.assertTrue(client.data == expected + b"END")

    @inlineCallbacks
    def test_echoToClientNotReading(self):
        """
        An echo server and a client that sends packets but does not read:
        replies are refused once its output buffer is full, and when the
        client reads it gets exactly the replies that were accepted, in
        order.
        """
        decided: list[tuple[bytes, bool]] = []
        waiting: list[Deferred[None]] = []

        def onReceive(serv, fd, rid, data):
            decided.append((data, serv.send(fd, data)))
            if waiting and len(decided) == sent:
                waiting.pop().callback(None)

        serv = Server("127.0.0.1", 0)
        serv.set(open_length_check=True, package_max_length=1 << 20)
        serv.on("receive", onReceive)
        self.startServer(serv)
        client = yield self.connect(serv.port)
        self.disconnectAtEnd(client)
        client.transport.pauseProducing()
        sent = 0
        while all(ok for data, ok in decided):
            if sent == 2048:  # 64 MiB
                self.fail("no reply refused for a client that does not read")
            for _ in range(16):
                body = b"%07d\n" % sent * 4096
                client.transport.write(struct.pack("!I", len(body)) + body)
                sent += 1
            waiting.append(Deferred())
            yield waiting[0].addTimeout(10, reactor)
        accepted = [data for data, ok in decided if ok]
        self.assertLess(len(accepted), sent)
        expected = b"".join(accepted)
        client.transport.resumeProducing()
        yield client.waitFor(len(expected))
        self.assertEqual(len(client.data), len(expected))
        self.assertTrue(client.data == expected, "the bytes received differ from those accepted")

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


    @inlineCallbacks
    def test_resetAfterOrderlyCloseAborts(self):
        """
        close(fd, reset=True) on a connection whose orderly close is still
        waiting for the client to read (what a graceful stop does at
        max_wait_time) aborts it.
        """
        closed: Deferred[int] = Deferred()
        connected: Deferred[int] = Deferred()
        serv = Server("127.0.0.1", 0)
        serv.set(buffer_output_size=16 * 1024 * 1024)
        serv.on("connect", lambda serv, fd, rid: connected.callback(fd))
        serv.on("receive", lambda serv, fd, rid, data: None)
        serv.on("close", lambda serv, fd, rid: closed.callback(fd))
        self.startServer(serv)
        client = yield self.connect(serv.port)
        self.disconnectAtEnd(client)
        client.transport.pauseProducing()
        fd = yield connected
        for _ in range(128):
            self.assertIs(serv.send(fd, b"q" * 65536), True)
        self.assertIs(serv.close(fd), True)
        self.assertFalse(closed.called)
        self.assertIs(serv.close(fd, reset=True), True)
        self.assertEqual((yield closed.addTimeout(10, reactor)), fd)
        self.assertIs(serv.close(fd, reset=True), False)


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
        connection = serv.runtime.table.get(fd)
        transport = connection.transport
        self.assertIsInstance(transport, tcp.Connection)
        changed = "Twisted's tcp.Connection changed: swooletw.wire.directwrite"
        for name in ("_tempDataLen", "dataBuffer", "offset", "socket", "connected", "disconnecting"):
            self.assertTrue(hasattr(transport, name), f"{changed} needs {name!r}")
        self.assertEqual(len(transport.dataBuffer) - transport.offset + transport._tempDataLen, 0)
        self.assertTrue(canWriteDirectly(transport), changed + " is no longer taken")
        self.assertIsNot(connection._write, transport.write)

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

        self.assertTrue(canWriteDirectly(bare(tcp.Server)))
        for name in internals:
            changed = type("Changed", (tcp.Server,), {name: property(missing)})
            self.assertFalse(canWriteDirectly(bare(changed, name)), f"without {name}")


class AcceptOneGuardTests(TestCase):
    """
    Workers listen with L{swooletw.runtime.worker.OneAcceptPort}, a
    C{tcp.Port} subclass built the way C{reactor.adoptStreamPort} builds
    its port: this fails loudly if Twisted changes that.
    """

    def test_adoptsAndAcceptsOnePerWakeUp(self) -> None:
        import socket as stdsocket

        from twisted.internet import reactor as globalReactor
        from twisted.internet.protocol import Factory

        from swooletw.runtime.worker import OneAcceptPort, adoptOneAcceptPort

        self.assertTrue(
            hasattr(tcp.Port, "_fromListeningDescriptor"),
            "Twisted's tcp.Port changed: swooletw.runtime.worker.adoptOneAcceptPort needs _fromListeningDescriptor",
        )
        listener = stdsocket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(5)
        listener.setblocking(False)
        port = adoptOneAcceptPort(globalReactor, listener.fileno(), stdsocket.AF_INET, Factory())
        listener.close()
        self.addCleanup(port.stopListening)
        self.assertIsInstance(port, OneAcceptPort)
        self.assertEqual(port.getHost().host, "127.0.0.1")
