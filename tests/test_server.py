"""
Unit tests for L{swooletw.api}, L{swooletw.wire} and L{swooletw.runtime.single},
on a memory reactor through L{swooletw.testing}.

"""

from __future__ import annotations

import struct

from twisted.internet.defer import Deferred
from twisted.internet.testing import EventLoggingObserver, MemoryReactorClock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

import swooletw
from swooletw import SOCK_UDP, EventError, Server, ServerStateError, SettingError
from swooletw.testing import ServerHarness


def echoServer(**settings) -> Server:
    serv = Server("127.0.0.1", 9501, reactor=MemoryReactorClock())
    serv.set(dict({"worker_num": 1}, **settings))
    serv.on("receive", lambda serv, fd, reactorId, data: serv.send(fd, data))
    return serv


class SetAndOnTests(SynchronousTestCase):
    """
    C{set()} and C{on()} as Swoole's.
    """

    def test_setDictAndKeywords(self) -> None:
        """A dict and keyword arguments both set settings, normalised."""
        serv = Server("127.0.0.1", 9501)
        serv.set({"open_eof_split": True}, package_eof="\n")
        self.assertIs(serv.setting["open_eof_split"], True)
        self.assertEqual(serv.setting["package_eof"], b"\n")

    def test_unknownSettingNamesClosest(self) -> None:
        """An unknown name raises SettingError naming it and the closest name."""
        serv = Server("127.0.0.1", 9501)
        e = self.assertRaises(SettingError, serv.set, {"heartbeat_idle_tme": 3})
        self.assertIn("'heartbeat_idle_tme'", str(e))
        self.assertIn("'heartbeat_idle_time'", str(e))

    def test_setNotADict(self) -> None:
        """set() with a list is refused with a clear error."""
        serv = Server("127.0.0.1", 9501)
        self.assertRaises(SettingError, serv.set, [("worker_num", 1)])

    def test_contradictoryFramingRefused(self) -> None:
        """EOF and length framing together are refused at set()."""
        serv = Server("127.0.0.1", 9501)
        self.assertRaises(SettingError, serv.set, open_eof_check=True, open_length_check=True)
        self.assertFalse(serv.setting["open_eof_check"])

    def test_eventNamesCaseInsensitive(self) -> None:
        """on('Receive') and on('receive') register the same event."""
        serv = Server("127.0.0.1", 9501)
        f = lambda serv, fd, rid, data: None  # noqa: E731
        serv.on("ReCeIvE", f)
        self.assertIs(serv.getCallback("receive"), f)

    def test_unknownEvent(self) -> None:
        """An unknown event raises EventError with the closest name."""
        serv = Server("127.0.0.1", 9501)
        e = self.assertRaises(EventError, serv.on, "recieve", lambda *a: None)
        self.assertIn("'receive'", str(e))

    def test_notCallable(self) -> None:
        """A callback that is not callable is refused."""
        serv = Server("127.0.0.1", 9501)
        self.assertRaises(EventError, serv.on, "receive", "onReceive")

    def test_noChangesAfterStart(self) -> None:
        """set(), on() and listen() after start raise ServerStateError."""
        harness = ServerHarness(echoServer())
        serv = harness.serv
        self.assertRaises(ServerStateError, serv.set, {"max_conn": 5})
        self.assertRaises(ServerStateError, serv.on, "connect", lambda *a: None)
        self.assertRaises(ServerStateError, serv.listen, "127.0.0.1", 9502)
        self.successResultOf(harness.stop())

    def test_udpAsThirdArgument(self) -> None:
        """Server(host, port, SOCK_UDP) takes the socket type, not a mode."""
        serv = Server("127.0.0.1", 9501, SOCK_UDP)
        self.assertEqual(serv.type, SOCK_UDP)
        self.assertEqual(serv.mode, swooletw.PROCESS)


class CallbackTests(SynchronousTestCase):
    """
    Events reach callbacks with Swoole's arguments.
    """

    def test_lifecycleEvents(self) -> None:
        """start, managerStart, workerStart(0); then workerStop, managerStop, shutdown."""
        events = []
        serv = echoServer()
        for name in ["start", "managerStart", "workerStart", "workerStop", "managerStop", "shutdown"]:
            serv.on(name, lambda *args, name=name: events.append((name,) + args[1:]))
        harness = ServerHarness(serv)
        self.assertEqual(events, [("start",), ("managerStart",), ("workerStart", 0)])
        self.successResultOf(harness.stop())
        self.assertEqual(events[3:], [("workerStop", 0), ("managerStop",), ("shutdown",)])

    def test_phpStyleShortCallbacks(self) -> None:
        """A callback taking fewer arguments gets the first ones, as in PHP."""
        seen = []
        serv = echoServer()
        serv.on("connect", lambda serv, fd: seen.append(("connect", fd)))
        serv.on("close", lambda serv, fd: seen.append(("close", fd)))
        client = ServerHarness(serv).connect()
        client.disconnect()
        self.assertEqual(seen, [("connect", client.fd), ("close", client.fd)])

    def test_closeReactorId(self) -> None:
        """close gets reactor id 0 when the peer left, -1 when the server closed."""
        seen = []
        serv = echoServer()
        serv.on("close", lambda serv, fd, reactorId: seen.append((fd, reactorId)))
        harness = ServerHarness(serv)
        first, second = harness.connect(), harness.connect()
        first.disconnect()
        self.assertTrue(serv.close(second.fd))
        self.assertEqual(seen, [(first.fd, 0), (second.fd, -1)])
        self.assertTrue(second.closed)

    def test_exceptionInCallbackLogged(self) -> None:
        """A raising receive is logged with the fd and the next packet is served."""
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        calls = []

        def onReceive(serv, fd, reactorId, data):
            calls.append(data)
            if data == b"boom\r\n":
                raise ValueError("bad handler")
            serv.send(fd, data)

        serv = Server("127.0.0.1", 9501, reactor=MemoryReactorClock())
        serv.set(open_eof_split=True)
        serv.on("receive", onReceive)
        client = ServerHarness(serv).connect()
        client.write(b"boom\r\nok\r\n")
        self.assertEqual(calls, [b"boom\r\n", b"ok\r\n"])
        self.assertEqual(client.read(), b"ok\r\n")
        self.assertFalse(client.closed)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        failures = [e for e in observer if "log_failure" in e]
        self.assertEqual(failures[0]["fd"], client.fd)

    def test_asyncCallback(self) -> None:
        """An async def receive runs; its reply is sent when it completes."""
        gate: Deferred[None] = Deferred()

        async def onReceive(serv, fd, reactorId, data):
            await gate
            serv.send(fd, b"late:" + data)

        serv = Server("127.0.0.1", 9501, reactor=MemoryReactorClock())
        serv.on("receive", onReceive)
        client = ServerHarness(serv).connect()
        client.write(b"x")
        self.assertEqual(client.read(), b"")
        gate.callback(None)
        self.assertEqual(client.read(), b"late:x")

    def test_failingDeferredLogged(self) -> None:
        """A Deferred returned by a callback that fails is logged, not lost."""
        serv = Server("127.0.0.1", 9501, reactor=MemoryReactorClock())
        d: Deferred[None] = Deferred()
        serv.on("receive", lambda *args: d)
        client = ServerHarness(serv).connect()
        client.write(b"x")
        d.errback(RuntimeError("async failure"))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertFalse(client.closed)


class ConnectionAPITests(SynchronousTestCase):
    """
    send, close, exists, getClientInfo, getClientList, connections, stats.
    """

    def setUp(self) -> None:
        self.harness = ServerHarness(echoServer(open_eof_split=True))
        self.serv = self.harness.serv

    def test_sendUnknownFd(self) -> None:
        """send/close to an unknown fd return False and raise nothing."""
        self.assertIs(self.serv.send(999, b"x"), False)
        self.assertIs(self.serv.close(999), False)
        self.assertIs(self.serv.exists(999), False)
        self.assertIs(self.serv.getClientInfo(999), False)

    def test_sendAfterClose(self) -> None:
        """Sending to a closed connection returns False."""
        client = self.harness.connect()
        client.disconnect()
        self.assertIs(self.serv.send(client.fd, b"x"), False)

    def test_sendStr(self) -> None:
        """A str is sent as UTF-8, as PHP strings are bytes."""
        client = self.harness.connect()
        self.assertTrue(self.serv.send(client.fd, "héllo"))
        self.assertEqual(client.read(), "héllo".encode())

    def test_sendWrongType(self) -> None:
        """Sending an int is a TypeError."""
        client = self.harness.connect()
        self.assertRaises(TypeError, self.serv.send, client.fd, 42)

    def test_fdsUniqueAndIncreasing(self) -> None:
        """Connection ids start at 1 and are never reused."""
        first = self.harness.connect()
        first.disconnect()
        second = self.harness.connect()
        self.assertEqual((first.fd, second.fd), (1, 2))

    def test_existsAndConnections(self) -> None:
        """exists() and connections follow connections opening and closing."""
        a, b, c = (self.harness.connect() for _ in range(3))
        b.disconnect()
        self.assertEqual(list(self.serv.connections), [a.fd, c.fd])
        self.assertEqual(len(self.serv.connections), 2)
        self.assertIn(a.fd, self.serv.connections)
        self.assertTrue(self.serv.exists(a.fd))
        self.assertFalse(self.serv.exists(b.fd))

    def test_getClientList(self) -> None:
        """getClientList pages through ids after start_fd."""
        fds = [self.harness.connect().fd for _ in range(5)]
        self.assertEqual(self.serv.getClientList(0, 2), fds[:2])
        self.assertEqual(self.serv.getClientList(fds[1], 10), fds[2:])
        self.assertEqual(self.serv.getClientList(fds[-1], 10), [])

    def test_getClientInfo(self) -> None:
        """getClientInfo has Swoole's keys; last_time follows inbound data."""
        client = self.harness.connect()
        self.harness.advance(7)
        client.write(b"a\r\n")
        info = self.serv.getClientInfo(client.fd)
        self.assertEqual(info["remote_ip"], "127.0.0.1")
        self.assertEqual(info["remote_port"], 40000)
        self.assertEqual(info["server_port"], 9501)
        self.assertEqual(info["connect_time"], 0)
        self.assertEqual(info["last_time"], 7)

    def test_stats(self) -> None:
        """stats() counts accepts, closes, requests and bytes."""
        a = self.harness.connect()
        b = self.harness.connect()
        a.write(b"one\r\ntwo\r\n")
        b.disconnect()
        stats = self.serv.stats()
        self.assertEqual(stats["connection_num"], 1)
        self.assertEqual(stats["accept_count"], 2)
        self.assertEqual(stats["close_count"], 1)
        self.assertEqual(stats["request_count"], 2)
        self.assertEqual(stats["total_recv_bytes"], 10)
        self.assertEqual(stats["total_send_bytes"], 10)
        self.assertEqual(stats["worker_num"], 1)

    def test_closeFlushesRepliesFirst(self) -> None:
        """A reply sent before close() in the same receive reaches the peer."""
        serv = Server("127.0.0.1", 9501, reactor=MemoryReactorClock())

        def onReceive(serv, fd, reactorId, data):
            serv.send(fd, b"bye")
            serv.close(fd)
            serv.send(fd, b"never")

        serv.on("receive", onReceive)
        client = ServerHarness(serv).connect()
        client.write(b"x")
        self.assertEqual(client.read(), b"bye")
        self.assertTrue(client.closed)

    def test_closedConnectionGetsNoMorePackets(self) -> None:
        """After close() in receive, later packets of the same read are dropped."""
        seen = []
        serv = Server("127.0.0.1", 9501, reactor=MemoryReactorClock())
        serv.set(open_eof_split=True)

        def onReceive(serv, fd, reactorId, data):
            seen.append(data)
            serv.close(fd)

        serv.on("receive", onReceive)
        ServerHarness(serv).connect().write(b"a\r\nb\r\n")
        self.assertEqual(seen, [b"a\r\n"])

    def test_shutdownClosesEverything(self) -> None:
        """Stopping closes every connection (close fires) and clears timers."""
        closed = []
        serv = echoServer()
        serv.on("close", lambda serv, fd, reactorId: closed.append((fd, reactorId)))
        harness = ServerHarness(serv)
        clients = [harness.connect() for _ in range(3)]
        for client in clients:
            client.write(b"x")
        serv.tick(1000, lambda timerId: None)
        self.successResultOf(harness.stop())
        self.assertEqual(closed, [(c.fd, -1) for c in clients])
        self.assertEqual(len(serv.timers), 0)
        self.assertEqual(len(serv.connections), 0)


class FramingErrorTests(SynchronousTestCase):
    """
    Bad input closes one connection, with a warning and a counter.
    """

    def test_overLimitClosesOnlyThatConnection(self) -> None:
        """A length header over package_max_length closes that connection only."""
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        harness = ServerHarness(echoServer(open_length_check=True, package_max_length=100))
        bad, good = harness.connect(), harness.connect()
        bad.write(struct.pack("!I", 97))
        self.assertTrue(bad.closed)
        packet = struct.pack("!I", 3) + b"abc"
        good.write(packet)
        self.assertEqual(good.read(), packet)
        self.assertEqual(harness.serv.stats()["packet_error_count"], 1)
        warnings = [e for e in observer if e.get("reason")]
        self.assertEqual(warnings[0]["fd"], bad.fd)
        self.assertIn("101", warnings[0]["reason"])
        self.assertIn("package_max_length 100", warnings[0]["reason"])

    def test_eofWithoutMarkerPastLimit(self) -> None:
        """An EOF stream with no marker within the limit is closed."""
        harness = ServerHarness(echoServer(open_eof_split=True, package_max_length=64))
        client = harness.connect()
        client.write(b"x" * 65)
        self.assertTrue(client.closed)
        self.assertEqual(harness.serv.stats()["packet_error_count"], 1)

    def test_garbageLength(self) -> None:
        """A negative signed length is garbage and closes the connection."""
        harness = ServerHarness(
            echoServer(open_length_check=True, package_length_type="l", package_body_offset=4)
        )
        client = harness.connect()
        client.write(struct.pack("=i", -5) + b"abc")
        self.assertTrue(client.closed)


class HeartbeatTests(SynchronousTestCase):
    """
    heartbeat_check_interval and heartbeat_idle_time.
    """

    def test_idleConnectionClosed(self) -> None:
        """A connection silent for the idle time is closed at the next sweep; close fires."""
        closed = []
        serv = echoServer(heartbeat_check_interval=5)
        serv.on("close", lambda serv, fd, reactorId: closed.append(fd))
        harness = ServerHarness(serv)
        idle, active = harness.connect(), harness.connect()
        for _ in range(4):
            harness.advance(3)
            active.write(b"ping")
        self.assertTrue(idle.closed)
        self.assertFalse(active.closed)
        self.assertEqual(closed, [idle.fd])
        self.assertEqual(serv.stats()["heartbeat_close_count"], 1)

    def test_notClosedBeforeIdleTime(self) -> None:
        """With interval 5 and idle 10, a connection survives 9 silent seconds."""
        harness = ServerHarness(echoServer(heartbeat_check_interval=5, heartbeat_idle_time=10))
        client = harness.connect()
        harness.advance(5)
        harness.advance(4)
        self.assertFalse(client.closed)
        harness.advance(1)
        self.assertTrue(client.closed)

    def test_stopsWithServer(self) -> None:
        """The sweep stops when the server stops: no call stays scheduled."""
        harness = ServerHarness(echoServer(heartbeat_check_interval=1))
        self.successResultOf(harness.stop())
        self.assertEqual(harness.reactor.getDelayedCalls(), [])


class MaxConnTests(SynchronousTestCase):
    """
    max_conn refuses connections past the limit and counts them.
    """

    def test_refusedPastLimit(self) -> None:
        """The third connection with max_conn 2 is refused; a freed slot is reusable."""
        harness = ServerHarness(echoServer(max_conn=2))
        first = harness.connect()
        harness.connect()
        self.assertRaises(ConnectionRefusedError, harness.connect)
        self.assertEqual(harness.serv.stats()["max_conn_refused_count"], 1)
        first.disconnect()
        harness.connect()
        self.assertEqual(len(harness.serv.connections), 2)

    def test_maxConnectionAlias(self) -> None:
        """max_connection is Swoole's other name for max_conn."""
        serv = Server("127.0.0.1", 9501)
        serv.set(max_connection=7)
        self.assertEqual(serv.setting["max_conn"], 7)


class MultiPortTests(SynchronousTestCase):
    """
    listen()/addlistener(): ports with their own settings and callbacks.
    """

    def test_portsFramingAndCallbacks(self) -> None:
        """Each port splits with its own framing; callbacks fall back to the server's."""
        serv = Server("127.0.0.1", 9501, reactor=MemoryReactorClock())
        serv.set(open_eof_split=True)
        serv.on("receive", lambda serv, fd, rid, data: serv.send(fd, b"main:" + data))
        lengthPort = serv.listen("127.0.0.1", 9502)
        lengthPort.set(open_length_check=True, package_length_type="n", package_body_offset=2)
        lengthPort.on("receive", lambda serv, fd, rid, data: serv.send(fd, b"len:" + data))
        inheriting = serv.addlistener("127.0.0.1", 9503)
        harness = ServerHarness(serv)
        self.assertEqual([p[0] for p in harness.reactor.tcpServers], [9501, 9502, 9503])

        main, length, third = harness.connect(0), harness.connect(1), harness.connect(2)
        main.write(b"a\r\nb\r\n")
        length.write(struct.pack("!H", 2) + b"hi")
        third.write(b"c\r\n")
        self.assertEqual(main.read(), b"main:a\r\nmain:b\r\n")
        self.assertEqual(length.read(), b"len:\x00\x02hi")
        self.assertEqual(third.read(), b"main:c\r\n")
        self.assertEqual(lengthPort.connections, [length.fd])
        self.assertEqual(inheriting.getCallback("receive"), serv.getCallback("receive"))

    def test_portHeartbeatOwn(self) -> None:
        """A port's heartbeat applies to its connections only."""
        serv = echoServer()
        port = serv.listen("127.0.0.1", 9502)
        port.set(heartbeat_check_interval=1, heartbeat_idle_time=2)
        harness = ServerHarness(serv)
        main, watched = harness.connect(0), harness.connect(1)
        harness.advance(1)
        harness.advance(1)
        self.assertTrue(watched.closed)
        self.assertFalse(main.closed)

    def test_portRefusesServerSettings(self) -> None:
        """A port's set() refuses server-wide settings, saying so."""
        port = Server("127.0.0.1", 9501).listen("127.0.0.1", 9502)
        e = self.assertRaises(SettingError, port.set, worker_num=1)
        self.assertIn("belongs to the server", str(e))

    def test_portRefusesServerEvents(self) -> None:
        """A port's on() takes connect/receive/close/packet only."""
        port = Server("127.0.0.1", 9501).listen("127.0.0.1", 9502)
        self.assertRaises(EventError, port.on, "workerStart", lambda *a: None)


class GracefulStopTests(SynchronousTestCase):
    """
    A graceful stop lets running receive callbacks finish first.
    """

    def test_inflightCallbackFinishesBeforeClose(self) -> None:
        """The reply of a callback still running at stop reaches the client."""
        gate: Deferred[None] = Deferred()

        async def onReceive(serv, fd, reactorId, data):
            await gate
            serv.send(fd, b"done")

        serv = Server("127.0.0.1", 9501, reactor=MemoryReactorClock())
        serv.set(worker_num=1)
        serv.on("receive", onReceive)
        harness = ServerHarness(serv)
        client = harness.connect()
        client.write(b"x")
        stopped = harness.stop(settle=False)
        self.assertNoResult(stopped)
        self.assertFalse(client.closed)
        gate.callback(None)
        self.assertEqual(client.read(), b"done")
        self.assertTrue(client.closed)
        self.successResultOf(stopped)

    def test_inflightBoundedByMaxWaitTime(self) -> None:
        """A callback that never finishes delays the stop by max_wait_time only."""
        serv = Server("127.0.0.1", 9501, reactor=MemoryReactorClock())
        serv.set(worker_num=1, max_wait_time=2)
        serv.on("receive", lambda *args: Deferred())
        harness = ServerHarness(serv)
        client = harness.connect()
        client.write(b"x")
        stopped = harness.stop(settle=False)
        harness.advance(1.9)
        self.assertNoResult(stopped)
        harness.advance(0.2)
        self.successResultOf(stopped)
        self.assertTrue(client.closed)


class GracefulCloseTests(SynchronousTestCase):
    """
    A graceful stop closes idle connections at once and lets busy ones
    finish their packet first (a reload must not drop a request).
    """

    def setUp(self) -> None:
        serv = Server("127.0.0.1", 9501, reactor=MemoryReactorClock())
        serv.set(worker_num=1, open_eof_split=True, max_wait_time=3)
        serv.on("receive", lambda serv, fd, reactorId, data: serv.send(fd, b"re:" + data))
        self.harness = ServerHarness(serv)

    def test_freshConnectionServedThenClosed(self) -> None:
        """A connection accepted just before the stop gets its first reply, then closes."""
        fresh = self.harness.connect()
        stopped = self.harness.stop(settle=False)
        self.assertFalse(fresh.closed)
        fresh.write(b"first\r\n")
        self.assertEqual(fresh.read(), b"re:first\r\n")
        self.assertTrue(fresh.closed)
        self.harness.advance(0.02)
        self.successResultOf(stopped)

    def test_partialPacketFinished(self) -> None:
        """A connection holding half a packet gets to finish it."""
        client = self.harness.connect()
        client.write(b"one\r\ntw")
        client.read()
        self.harness.stop(settle=False)
        self.assertFalse(client.closed)
        client.write(b"o\r\n")
        self.assertEqual(client.read(), b"re:two\r\n")
        self.assertTrue(client.closed)

    def test_idleClosedAtOnce(self) -> None:
        """A connection that was served and holds nothing closes at once."""
        client = self.harness.connect()
        client.write(b"a\r\n")
        self.harness.stop(settle=False)
        self.assertTrue(client.closed)

    def test_silentConnectionResetAtMaxWaitTime(self) -> None:
        """A connection that never sends is reset after max_wait_time."""
        client = self.harness.connect()
        stopped = self.harness.stop(settle=False)
        self.harness.advance(2.9)
        self.assertNoResult(stopped)
        self.assertFalse(client.closed)
        self.harness.advance(0.2)
        self.assertTrue(client.closed)
        self.successResultOf(stopped)
