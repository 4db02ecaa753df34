"""
Integration tests: a real L{swooletw.Server} on 127.0.0.1 (random ports),
real sockets, trial's reactor.
"""

from __future__ import annotations

import json
import struct

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import DatagramProtocol, Protocol
from twisted.trial.unittest import TestCase

from swooletw import BASE, SOCK_UDP, Server


class Collector(Protocol):
    """
    A raw client: everything received goes into C{data}; C{waitFor(n)}
    fires once C{n} bytes are in.
    """

    def __init__(self) -> None:
        self.data = b""
        self._waiting: list[tuple[int, Deferred[bytes]]] = []
        self.lost: Deferred[None] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        ready = [(n, d) for n, d in self._waiting if len(self.data) >= n]
        self._waiting = [(n, d) for n, d in self._waiting if len(self.data) < n]
        for _, d in ready:
            d.callback(self.data)

    def connectionLost(self, reason: object) -> None:
        self.lost.callback(None)

    def waitFor(self, size: int) -> Deferred[bytes]:
        d: Deferred[bytes] = Deferred()
        if len(self.data) >= size:
            d.callback(self.data)
        else:
            self._waiting.append((size, d))
        return d.addTimeout(10, reactor)


class RealServerMixin:
    """
    Start a server on a free port and stop it after the test.
    """

    def startServer(self, serv: Server) -> Server:
        # These tests are about one process; tests/test_workers.py forks.
        serv.set(worker_num=1)
        serv.mode = BASE
        service = serv.asService()
        service.privilegedStartService()
        service.startService()
        self.addCleanup(service.stopService)
        return serv

    def connect(self, port: int) -> Deferred[Collector]:
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=5)
        return connectProtocol(endpoint, Collector())

    def disconnectAtEnd(self, client: Collector) -> None:
        def close() -> Deferred[None]:
            if client.transport.connected:
                client.transport.loseConnection()
            return client.lost

        self.addCleanup(close)


class PHPClientTests(RealServerMixin, TestCase):
    """
    The tutorial's PHP clients, byte for byte, against a real server.
    """

    @inlineCallbacks
    def test_lengthPackedClient(self):
        """pack('N', strlen($data)) . $data, three times: three whole packets."""
        received = []
        serv = Server("127.0.0.1", 0)
        serv.set(open_length_check=True, package_length_type="N",
                 package_length_offset=0, package_body_offset=4, package_max_length=81920)

        def onReceive(serv, fd, fromId, data):
            received.append(data)
            (length,) = struct.unpack("!I", data[:4])
            serv.send(fd, data[-length:] + b"|")

        serv.on("receive", onReceive)
        self.startServer(serv)
        client = yield self.connect(serv.port)
        self.disconnectAtEnd(client)
        body = b"Just a test."
        packet = struct.pack("!I", len(body)) + body
        client.transport.write(packet * 3)
        yield client.waitFor(3 * (len(body) + 1))
        self.assertEqual(received, [packet] * 3)
        self.assertEqual(client.data, (body + b"|") * 3)

    @inlineCallbacks
    def test_lengthPackedOneByteAtATime(self):
        """A packet trickling in one byte per write still arrives whole."""
        received: list[bytes] = []
        serv = Server("127.0.0.1", 0)
        serv.set(open_length_check=True)
        serv.on("receive", lambda serv, fd, rid, data: (received.append(data), serv.send(fd, b"ok")))
        self.startServer(serv)
        client = yield self.connect(serv.port)
        self.disconnectAtEnd(client)
        packet = struct.pack("!I", 5) + b"hello"
        for i in range(len(packet)):
            client.transport.write(packet[i:i + 1])
            yield _turn()
        yield client.waitFor(2)
        self.assertEqual(received, [packet])

    @inlineCallbacks
    def test_jsonLines(self):
        """The mail client's json_encode($data) . "\\r\\n", glued together, splits per line."""
        events = []
        serv = Server("127.0.0.1", 0)
        serv.set(open_eof_check=True, package_eof="\r\n", open_eof_split=True)

        def onReceive(serv, fd, fromId, data):
            events.append(json.loads(data)["event"])
            serv.send(fd, json.dumps({"ok": True}) + "\r\n")

        serv.on("receive", onReceive)
        self.startServer(serv)
        client = yield self.connect(serv.port)
        self.disconnectAtEnd(client)
        lines = b"".join(json.dumps({"event": f"e{i}", "to": "x@example.com"}).encode() + b"\r\n" for i in range(20))
        client.transport.write(lines)
        yield client.waitFor(20 * len(b'{"ok": true}\r\n'))
        self.assertEqual(events, [f"e{i}" for i in range(20)])

    @inlineCallbacks
    def test_overLimitClosesOnlyThatClient(self):
        """A real client sending an over-limit header is dropped; another is served."""
        serv = Server("127.0.0.1", 0)
        serv.set(open_length_check=True, package_max_length=1024)
        serv.on("receive", lambda serv, fd, rid, data: serv.send(fd, data))
        self.startServer(serv)
        bad = yield self.connect(serv.port)
        good = yield self.connect(serv.port)
        self.disconnectAtEnd(good)
        bad.transport.write(struct.pack("!I", 5000))
        yield bad.lost
        packet = struct.pack("!I", 2) + b"hi"
        good.transport.write(packet)
        yield good.waitFor(len(packet))
        self.assertEqual(good.data, packet)
        self.assertEqual(serv.stats()["packet_error_count"], 1)


def _turn() -> Deferred[None]:
    d: Deferred[None] = Deferred()
    reactor.callLater(0.001, d.callback, None)
    return d


class WritePathTests(RealServerMixin, TestCase):
    """
    Replies are written at the end of the read event, without waiting for
    the next writable event, and without reordering or losing bytes.
    """

    def watchedServer(self, onReceive) -> tuple[Server, list[int]]:
        serv = Server("127.0.0.1", 0)
        serv.set(open_eof_split=True, package_max_length=16 << 20, buffer_output_size=16 << 20)
        startWriting = []

        def onConnect(serv, fd, reactorId):
            transport = serv.runtime.table.get(fd).transport
            original = transport.startWriting

            def counted():
                startWriting.append(fd)
                original()

            transport.startWriting = counted

        serv.on("connect", onConnect)
        serv.on("receive", onReceive)
        self.startServer(serv)
        return serv, startWriting

    @inlineCallbacks
    def test_replyWrittenDirectly(self):
        """Small replies go out in the read event: the transport never waits for writability."""
        serv, startWriting = self.watchedServer(lambda serv, fd, rid, data: serv.send(fd, data))
        client = yield self.connect(serv.port)
        self.disconnectAtEnd(client)
        for i in range(10):
            client.transport.write(b"ping%d\r\n" % i)
            yield client.waitFor(len(b"ping0\r\n") * (i + 1))
        self.assertEqual(startWriting, [])
        self.assertEqual(client.data, b"".join(b"ping%d\r\n" % i for i in range(10)))

    @inlineCallbacks
    def test_largeReplyPartiallyWrittenKeepsOrder(self):
        """A reply larger than the socket buffer is finished by Twisted, in order."""
        big = bytes(range(256)) * (8 * 4096)  # 8 MiB

        def onReceive(serv, fd, rid, data):
            serv.send(fd, big)
            serv.send(fd, b"END")

        serv, startWriting = self.watchedServer(onReceive)
        client = yield self.connect(serv.port)
        self.disconnectAtEnd(client)
        client.transport.write(b"go\r\n")
        yield client.waitFor(len(big) + 3)
        self.assertEqual(len(client.data), len(big) + 3)
        self.assertTrue(client.data == big + b"END")
        self.assertTrue(startWriting)

    @inlineCallbacks
    def test_sendOutsideReadEvent(self):
        """A send from a timer (outside any read) goes through the transport."""
        serv, _ = self.watchedServer(lambda serv, fd, rid, data: None)
        client = yield self.connect(serv.port)
        self.disconnectAtEnd(client)
        yield _turn()
        fd = list(serv.connections)[0]
        serv.after(1, lambda timerId: serv.send(fd, b"pushed"))
        yield client.waitFor(6)
        self.assertEqual(client.data, b"pushed")


class UDPTests(RealServerMixin, TestCase):
    """
    SOCK_UDP: packet(serv, data, client_info) and sendto().
    """

    def askOverUDP(self, port: int, data: bytes) -> tuple[object, Deferred[bytes]]:
        """
        Send one datagram from a fresh peer port; the peer's listening port
        and a Deferred with the first reply (10 s at most).
        """
        reply: Deferred[bytes] = Deferred()

        class Peer(DatagramProtocol):
            def datagramReceived(self, data, addr):
                if not reply.called:
                    reply.callback(data)

        peer = reactor.listenUDP(0, Peer(), interface="127.0.0.1")
        self.addCleanup(peer.stopListening)
        peer.write(data, ("127.0.0.1", port))
        return peer, reply.addTimeout(10, reactor)

    @inlineCallbacks
    def test_roundTrip(self):
        """A datagram reaches packet() and the reply comes back with sendto()."""
        infos = []
        serv = Server("127.0.0.1", 0, sock_type=SOCK_UDP)

        def onPacket(serv, data, clientInfo):
            infos.append(clientInfo)
            serv.sendto(clientInfo["address"], clientInfo["port"], b"Server: " + data)

        serv.on("packet", onPacket)
        self.startServer(serv)

        peer, reply = self.askOverUDP(serv.port, b"hello")
        self.assertEqual((yield reply), b"Server: hello")
        self.assertEqual(infos[0]["port"], peer.getHost().port)
        self.assertEqual(infos[0]["address"], "127.0.0.1")
        self.assertEqual(infos[0]["server_socket"], 0)

    @inlineCallbacks
    def test_udpPortBesideTCP(self):
        """A UDP port added with listen() serves beside the TCP main port."""
        serv = Server("127.0.0.1", 0)
        serv.on("receive", lambda serv, fd, rid, data: serv.send(fd, b"tcp:" + data))
        udp = serv.listen("127.0.0.1", 0, SOCK_UDP)
        udp.on("packet", lambda serv, data, info: serv.sendto(info["address"], info["port"], b"udp:" + data))
        self.startServer(serv)
        _peer, reply = self.askOverUDP(udp.port, b"x")
        self.assertEqual((yield reply), b"udp:x")
        client = yield self.connect(serv.port)
        self.disconnectAtEnd(client)
        client.transport.write(b"y")
        self.assertEqual((yield client.waitFor(5)), b"tcp:y")


class MultiPortRealTests(RealServerMixin, TestCase):
    """
    Two real ports with different framing on one server.
    """

    @inlineCallbacks
    def test_eofAndLengthPorts(self):
        """The EOF port and the length port each deliver whole packets of their framing."""
        seen = []
        serv = Server("127.0.0.1", 0)
        serv.set(open_eof_split=True, package_eof=b"\n")
        serv.on("receive", lambda serv, fd, rid, data: (seen.append(data), serv.send(fd, b"+")))
        port = serv.listen("127.0.0.1", 0)
        port.set(open_length_check=True, package_length_type="v", package_body_offset=2)
        self.startServer(serv)
        eofClient = yield self.connect(serv.port)
        lengthClient = yield self.connect(port.port)
        self.disconnectAtEnd(eofClient)
        self.disconnectAtEnd(lengthClient)
        eofClient.transport.write(b"a\nbb\n")
        yield eofClient.waitFor(2)
        lengthClient.transport.write(struct.pack("<H", 3) + b"xyz")
        yield lengthClient.waitFor(1)
        self.assertEqual(seen, [b"a\n", b"bb\n", b"\x03\x00xyz"])

    def test_bindErrorIsClear(self):
        """A port already in use stops start-up with a ListenError naming it."""
        from swooletw.runtime.endpoints import ListenError

        first = Server("127.0.0.1", 0)
        self.startServer(first)
        second = Server("127.0.0.1", first.port)
        second.set(worker_num=1)
        e = self.assertRaises(ListenError, second.asService().privilegedStartService)
        self.assertIn(f"127.0.0.1:{first.port}", str(e))


class SyncClientTests(RealServerMixin, TestCase):
    """
    The blocking L{swooletw.Client} against a real swooletw server (the client
    runs in a thread while the reactor serves).
    """

    def test_tutorialClient(self):
        """§7.2: connect, send "hello server.", recv the reply, close."""
        import swooletw
        from twisted.internet.threads import deferToThread

        serv = Server("127.0.0.1", 0)
        serv.on("receive", lambda serv, fd, fromId, data: serv.send(fd, b"hello server" + data))
        self.startServer(serv)

        def talk():
            client = swooletw.Client(swooletw.SOCK_TCP, swooletw.SOCK_SYNC)
            if not client.connect("127.0.0.1", serv.port, 2):
                return ("connect failed", client.errCode)
            client.send("hello server.")
            response = client.recv()
            client.close()
            return response

        return deferToThread(talk).addCallback(self.assertEqual, b"hello serverhello server.")

    def test_framedPacketsOneByOne(self):
        """With the server's length framing set on the client, recv returns one packet each."""
        import swooletw
        from twisted.internet.threads import deferToThread

        settings = {"open_length_check": True, "package_length_type": "N",
                    "package_length_offset": 0, "package_body_offset": 4}
        serv = Server("127.0.0.1", 0)
        serv.set(settings)

        def onReceive(serv, fd, fromId, data):
            for i in range(3):  # three replies in one write
                body = b"reply%d:" % i + data[4:]
                serv.send(fd, struct.pack("!I", len(body)) + body)

        serv.on("receive", onReceive)
        self.startServer(serv)

        def talk():
            client = swooletw.Client(swooletw.SOCK_TCP)
            client.set(settings)
            assert client.connect("127.0.0.1", serv.port, 2), client.errMsg
            client.send(struct.pack("!I", 2) + b"hi")
            packets = [client.recv() for _ in range(3)]
            client.close()
            return packets

        expected = [struct.pack("!I", 9) + b"reply%d:hi" % i for i in range(3)]
        return deferToThread(talk).addCallback(self.assertEqual, expected)
