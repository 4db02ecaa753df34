"""
Tests for L{swooletw.client}: the blocking client against real sockets.

The servers here are plain Python sockets served from a thread on
127.0.0.1 with a random port, so these tests do not depend on the swooletw
server.  Packets are built with C{struct} the way PHP's C{pack()} builds
them, independently of the library's own tables.
"""

from __future__ import annotations

import errno
import socket
import struct
import sys
import threading
import time
from typing import Any, Callable, Iterable

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from swooletw.client import Client
from swooletw.constants import (
    ERROR_CLIENT_NO_CONNECTION,
    ERROR_PACKAGE_LENGTH_TOO_LARGE,
    ERROR_PACKAGE_MALFORMED_DATA,
    KEEP,
    SOCK_ASYNC,
    SOCK_SYNC,
    SOCK_TCP,
    SOCK_UDP,
    SSL,
)
from swooletw.settings import SettingError

_HOST = "<" if sys.byteorder == "little" else ">"
#: PHP pack() codes as struct formats, written out independently.
PHP_PACK = {"c": "<b", "C": "<B", "n": ">H", "N": ">I", "v": "<H", "V": "<I", "S": _HOST + "H", "l": _HOST + "i"}


def pack(lengthType: str, lengthOffset: int, bodyOffset: int, body: bytes) -> bytes:
    """
    A length-framed packet: filler bytes, the length field at
    C{lengthOffset}, filler up to C{bodyOffset}, then C{body}; the length
    field holds the packet's size minus C{bodyOffset} (Swoole's rule).
    """
    fmt = PHP_PACK[lengthType]
    headerEnd = lengthOffset + struct.calcsize(fmt)
    padding = b"\xee" * max(0, bodyOffset - headerEnd)
    size = headerEnd + len(padding) + len(body)
    return b"\xab" * lengthOffset + struct.pack(fmt, size - bodyOffset) + padding + body


# -------------------------------------------------------------- servers


def waitForClose(conn: socket.socket, stopping: threading.Event) -> None:
    """
    Read and drop everything until the client closes or the test ends.
    """
    conn.settimeout(0.05)
    while not stopping.is_set():
        try:
            if not conn.recv(65536):
                return
        except socket.timeout:
            continue
        except OSError:
            return


def echo(conn: socket.socket, stopping: threading.Event) -> None:
    """
    Send back whatever arrives.
    """
    conn.settimeout(0.05)
    while not stopping.is_set():
        try:
            data = conn.recv(65536)
        except socket.timeout:
            continue
        if not data:
            return
        conn.sendall(data)


def sends(chunks: Iterable[bytes], delay: float = 0.0, then: Any = waitForClose) -> Callable:
    """
    A handler that sends C{chunks} one C{send} each, C{delay} seconds apart,
    then runs C{then} (by default: waits for the client to close).
    """

    def handler(conn: socket.socket, stopping: threading.Event) -> None:
        # An Event in chunks means: wait until the test sets it.
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for chunk in chunks:
            if isinstance(chunk, threading.Event):
                chunk.wait(5)
                continue
            conn.sendall(chunk)
            if delay:
                time.sleep(delay)
        if then is not None:
            then(conn, stopping)

    return handler


def byteByByte(data: bytes) -> list[bytes]:
    """
    C{data} cut into one-byte sends.
    """
    return [data[i : i + 1] for i in range(len(data))]


class ThreadedServer:
    """
    A plain-Python TCP server on 127.0.0.1 that runs C{handler(conn,
    stopping)} for each connection in turn, on one thread.
    """

    def __init__(self, handler: Callable) -> None:
        self.handler = handler
        self.stopping = threading.Event()
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.listener.settimeout(0.05)
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except socket.timeout:
                continue
            with conn:
                try:
                    self.handler(conn, self.stopping)
                except OSError:
                    pass

    def stop(self) -> None:
        """
        Stop serving, join the thread and close the listening socket.
        """
        self.stopping.set()
        self.thread.join(5)
        self.listener.close()


class ThreadedUDPEcho:
    """
    A UDP echo server on 127.0.0.1 served from a thread.
    """

    def __init__(self) -> None:
        self.stopping = threading.Event()
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                data, peer = self.sock.recvfrom(65535)
            except socket.timeout:
                continue
            self.sock.sendto(b"echo:" + data, peer)

    def stop(self) -> None:
        """
        Stop serving, join the thread and close the socket.
        """
        self.stopping.set()
        self.thread.join(5)
        self.sock.close()


def freePort() -> int:
    """
    A port on 127.0.0.1 with nothing listening on it.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _ClientTestMixin:
    """
    Servers and clients that are stopped and closed after each test.
    """

    def serve(self, handler: Callable) -> ThreadedServer:
        """
        A L{ThreadedServer} running C{handler}.
        """
        server = ThreadedServer(handler)
        self.addCleanup(server.stop)
        return server

    def client(self, settings: dict | None = None, sockType: int = SOCK_TCP) -> Client:
        """
        A new L{Client} with C{settings}.
        """
        client = Client(sockType)
        if settings:
            client.set(settings)
        self.addCleanup(client.close)
        return client

    def connected(self, handler: Callable, settings: dict | None = None, timeout: float = 2.0) -> Client:
        """
        A L{Client} with C{settings} connected to a new server running
        C{handler}, with C{timeout} as C{connect}'s.
        """
        server = self.serve(handler)
        client = self.client(settings)
        self.assertTrue(client.connect("127.0.0.1", server.port, timeout), client.errMsg)
        return client


# ---------------------------------------------------------------- tests


class ConstructionTests(SynchronousTestCase):
    """
    C{Client(sock_type, is_sync)} as PHP writes it.
    """

    def test_phpStyle(self) -> None:
        """
        C{Client(SOCK_TCP, SOCK_SYNC)} makes a TCP client, not connected.
        """
        client = Client(SOCK_TCP, SOCK_SYNC)
        self.assertEqual(client.type, SOCK_TCP)
        self.assertFalse(client.isConnected())

    def test_asyncRefused(self) -> None:
        """
        C{SOCK_ASYNC} is refused with a pointer to the asynchronous client.
        """
        e = self.assertRaises(ValueError, Client, SOCK_TCP, SOCK_ASYNC)
        self.assertIn("AsyncClient", str(e))

    def test_flagsRefused(self) -> None:
        """
        The C{SSL} and C{KEEP} flags are refused, naming themselves.
        """
        self.assertIn("SSL", str(self.assertRaises(ValueError, Client, SOCK_TCP | SSL)))
        self.assertIn("KEEP", str(self.assertRaises(ValueError, Client, SOCK_TCP | KEEP)))

    def test_unknownType(self) -> None:
        """
        A number that is no socket type is refused, listing the valid ones.
        """
        self.assertIn("SOCK_UDP6", str(self.assertRaises(ValueError, Client, 9)))


class SettingsTests(SynchronousTestCase):
    """
    L{Client.set} checks settings with the server's rules.
    """

    def test_unknownWithHint(self) -> None:
        """
        A misspelt name is refused with the closest valid one.
        """
        e = self.assertRaises(SettingError, Client().set, {"open_eof_spilt": True})
        self.assertIn("'open_eof_spilt'", str(e))
        self.assertIn("'open_eof_split'", str(e))

    def test_serverOnly(self) -> None:
        """
        A server setting is refused as one.
        """
        e = self.assertRaises(SettingError, Client().set, {"worker_num": 4})
        self.assertIn("'worker_num'", str(e))
        self.assertIn("server", str(e))

    def test_portOnly(self) -> None:
        """
        Port settings without meaning for a client are refused with a reason.
        """
        for name, value in [("backlog", 10), ("heartbeat_check_interval", 5), ("ssl_cert_file", "x")]:
            e = self.assertRaises(SettingError, Client().set, {name: value})
            self.assertIn(repr(name), str(e))

    def test_badValue(self) -> None:
        """
        A bad value is refused naming the setting, keywords work as dicts.
        """
        e = self.assertRaises(SettingError, Client().set, package_length_type="X")
        self.assertIn("'package_length_type'", str(e))
        e = self.assertRaises(SettingError, Client().set, {"timeout": "1"})
        self.assertIn("'timeout'", str(e))

    def test_contradiction(self) -> None:
        """
        EOF and length framing together are refused, and a failed C{set}
        changes nothing.
        """
        client = Client()
        client.set({"open_eof_split": True})
        self.assertRaises(SettingError, client.set, {"open_length_check": True})
        self.assertEqual(client.setting, {"open_eof_split": True})

    def test_normalised(self) -> None:
        """
        C{setting} keeps what was set, normalised (EOF markers as bytes).
        """
        client = Client()
        client.set({"package_eof": "\r\n\r\n"}, open_eof_check=True, timeout=1)
        self.assertEqual(
            client.setting, {"package_eof": b"\r\n\r\n", "open_eof_check": True, "timeout": 1.0}
        )

    def test_notAMapping(self) -> None:
        """
        C{set} takes a dict.
        """
        self.assertRaises(SettingError, Client().set, [("timeout", 1)])


class ConnectTests(_ClientTestMixin, SynchronousTestCase):
    """
    L{Client.connect}, L{Client.close} and the addresses.
    """

    def test_connect(self) -> None:
        """
        C{connect} returns C{True}; the addresses come back as Swoole's
        dicts.
        """
        server = self.serve(waitForClose)
        client = self.client()
        self.assertIs(client.connect("127.0.0.1", server.port), True)
        self.assertTrue(client.isConnected())
        self.assertEqual(client.getpeername(), {"host": "127.0.0.1", "port": server.port})
        local = client.getsockname()
        self.assertEqual(local["host"], "127.0.0.1")
        self.assertGreater(local["port"], 0)

    def test_refused(self) -> None:
        """
        Connecting to a closed port returns C{False} with C{errCode} 111.
        """
        client = self.client()
        self.assertIs(client.connect("127.0.0.1", freePort()), False)
        self.assertEqual(client.errCode, errno.ECONNREFUSED)
        self.assertEqual(client.errCode, 111)
        self.assertIn("refused", client.errMsg)
        self.assertFalse(client.isConnected())

    def test_connectTimeout(self) -> None:
        """
        A connect that gets no answer in time fails with C{errCode} 110.
        The listener's full accept queue drops the SYNs.
        """
        listener = socket.socket()
        self.addCleanup(listener.close)
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port = listener.getsockname()[1]
        for _ in range(8):
            client = self.client()
            started = time.monotonic()
            if not client.connect("127.0.0.1", port, 0.2):
                break
        else:
            raise SkipTest("this kernel accepted every connection")
        self.assertEqual(client.errCode, errno.ETIMEDOUT)
        self.assertGreaterEqual(time.monotonic() - started, 0.15)

    def test_twice(self) -> None:
        """
        Connecting a connected client fails with C{EISCONN}.
        """
        server = self.serve(waitForClose)
        client = self.client()
        self.assertTrue(client.connect("127.0.0.1", server.port))
        self.assertIs(client.connect("127.0.0.1", server.port), False)
        self.assertEqual(client.errCode, errno.EISCONN)

    def test_notConnected(self) -> None:
        """
        Before C{connect}, C{send}, C{recv}, C{close} and the addresses
        fail with C{ERROR_CLIENT_NO_CONNECTION}.
        """
        client = Client()
        for call in (lambda: client.send(b"x"), client.recv, client.close, client.getpeername):
            client.errCode = 0
            self.assertIs(call(), False)
            self.assertEqual(client.errCode, ERROR_CLIENT_NO_CONNECTION)

    def test_closeAndReconnect(self) -> None:
        """
        After C{close}, the same client connects again.
        """
        server = self.serve(echo)
        client = self.client()
        self.assertTrue(client.connect("127.0.0.1", server.port))
        self.assertIs(client.close(), True)
        self.assertFalse(client.isConnected())
        self.assertTrue(client.connect("127.0.0.1", server.port))
        client.send(b"again")
        self.assertEqual(client.recv(), b"again")


class RawTests(_ClientTestMixin, SynchronousTestCase):
    """
    Without framing, C{recv} returns what one read gives.
    """

    def test_echo(self) -> None:
        """
        C{send} returns the byte count; C{str} is sent as UTF-8.
        """
        client = self.connected(echo)
        self.assertEqual(client.send("h\u00e9llo"), 6)
        self.assertEqual(client.recv(), "h\u00e9llo".encode("utf-8"))

    def test_sizeLimit(self) -> None:
        """
        C{recv(size)} returns at most C{size} bytes; the rest stays.
        """
        client = self.connected(echo)
        client.send(b"abcdef")
        self.assertEqual(client.recv(4), b"abcd")
        self.assertEqual(client.recv(), b"ef")

    def test_emptySend(self) -> None:
        """
        Sending nothing fails with C{EINVAL}.
        """
        client = self.connected(echo)
        self.assertIs(client.send(b""), False)
        self.assertEqual(client.errCode, errno.EINVAL)

    def test_peerCloses(self) -> None:
        """
        Data sent before the server closes comes first, then C{b""}; the
        client is then closed.
        """
        client = self.connected(sends([b"bye"], then=None))
        self.assertEqual(client.recv(), b"bye")
        self.assertEqual(client.recv(), b"")
        self.assertFalse(client.isConnected())
        self.assertIs(client.recv(), False)
        self.assertEqual(client.errCode, ERROR_CLIENT_NO_CONNECTION)


class EOFFramingTests(_ClientTestMixin, SynchronousTestCase):
    """
    EOF framing: one packet per C{recv}, the marker included.
    """

    SPLIT = {"open_eof_split": True, "package_eof": "\r\n"}

    def test_gluedPackets(self) -> None:
        """
        Packets arriving in one chunk come out one per C{recv}.
        """
        client = self.connected(sends([b"one\r\ntwo\r\nthree\r\n"]), self.SPLIT)
        self.assertEqual([client.recv() for _ in range(3)], [b"one\r\n", b"two\r\n", b"three\r\n"])

    def test_byteByByte(self) -> None:
        """
        A packet sent one byte at a time comes out whole.
        """
        client = self.connected(sends(byteByByte(b"Just a test.\r\nnext\r\n"), 0.001), self.SPLIT)
        self.assertEqual(client.recv(), b"Just a test.\r\n")
        self.assertEqual(client.recv(), b"next\r\n")

    def test_longMarker(self) -> None:
        """
        A multi-byte marker cut across sends is found.
        """
        settings = {"open_eof_split": True, "package_eof": "#END#"}
        client = self.connected(sends([b"a#EN", b"D#b#", b"END#"], 0.01), settings)
        self.assertEqual(client.recv(), b"a#END#")
        self.assertEqual(client.recv(), b"b#END#")

    def test_eofCheck(self) -> None:
        """
        With C{open_eof_check} alone, as Swoole, C{recv} returns everything
        up to the last marker of a read, which may hold several packets.
        """
        settings = {"open_eof_check": True, "package_eof": "\r\n"}
        client = self.connected(sends([b"a\r\nb\r\n"]), settings)
        self.assertEqual(client.recv(), b"a\r\nb\r\n")

    def test_overLimit(self) -> None:
        """
        No marker within C{package_max_length} bytes: C{recv} fails with
        C{ERROR_PACKAGE_LENGTH_TOO_LARGE} and the client is closed.
        """
        settings = dict(self.SPLIT, package_max_length=16)
        client = self.connected(sends([b"x" * 40]), settings)
        self.assertIs(client.recv(), False)
        self.assertEqual(client.errCode, ERROR_PACKAGE_LENGTH_TOO_LARGE)
        self.assertIn("package_max_length", client.errMsg)
        self.assertFalse(client.isConnected())


class LengthFramingTests(_ClientTestMixin, SynchronousTestCase):
    """
    Length framing: one whole packet per C{recv}, header included.
    """

    LAYOUTS = [("N", 0, 4), ("n", 0, 2), ("N", 0, 0), ("V", 2, 6), ("C", 1, 4), ("S", 0, 2)]

    def layoutSettings(self, lengthType: str, lengthOffset: int, bodyOffset: int) -> dict:
        """
        Length framing settings for one header layout.
        """
        return {
            "open_length_check": True,
            "package_length_type": lengthType,
            "package_length_offset": lengthOffset,
            "package_body_offset": bodyOffset,
            "package_max_length": 4096,
        }

    def test_layoutsByteByByte(self) -> None:
        """
        For several length types and offsets, packets sent one byte at a
        time come out whole, one per C{recv}.
        """
        for layout in self.LAYOUTS:
            packets = [pack(*layout, body) for body in (b"Just a test.", b"", b"x" * 100)]
            handler = sends(byteByByte(b"".join(packets)), 0.0002)
            client = self.connected(handler, self.layoutSettings(*layout))
            self.assertEqual([client.recv() for _ in packets], packets, layout)
            client.close()

    def test_layoutsGlued(self) -> None:
        """
        Packets arriving in one chunk come out one per C{recv}.
        """
        for layout in self.LAYOUTS:
            packets = [pack(*layout, b"p%d" % i) for i in range(5)]
            client = self.connected(sends([b"".join(packets)]), self.layoutSettings(*layout))
            self.assertEqual([client.recv() for _ in packets], packets, layout)
            client.close()

    def test_tutorialClient(self) -> None:
        """
        The tutorial's C{pack('N', strlen($data)) . $data}, echoed back,
        comes out as one packet.
        """
        client = self.connected(echo, self.layoutSettings("N", 0, 4))
        packets = [struct.pack(">I", 12) + b"Just a test."] * 3
        for packet in packets:
            client.send(packet)
        self.assertEqual([client.recv() for _ in packets], packets)

    def test_lengthFunc(self) -> None:
        """
        C{package_length_func} splits: a 1-byte body size before the body.
        """
        settings = {"package_length_func": lambda buf: 1 + buf[0]}
        client = self.connected(sends([b"\x03abc\x01z\x02", b"yy"], 0.01), settings)
        self.assertEqual([client.recv() for _ in range(3)], [b"\x03abc", b"\x01z", b"\x02yy"])

    def test_overLimit(self) -> None:
        """
        A header announcing more than C{package_max_length} fails the
        C{recv} with C{ERROR_PACKAGE_LENGTH_TOO_LARGE} and closes.
        """
        settings = dict(self.layoutSettings("N", 0, 4), package_max_length=64)
        client = self.connected(sends([struct.pack(">I", 1000) + b"x" * 10]), settings)
        self.assertIs(client.recv(), False)
        self.assertEqual(client.errCode, ERROR_PACKAGE_LENGTH_TOO_LARGE)
        self.assertFalse(client.isConnected())

    def test_goodPacketsBeforeTheBadOne(self) -> None:
        """
        Whole packets read before the framing broke are still returned;
        the error comes after them.
        """
        good = pack("N", 0, 4, b"fine")
        settings = dict(self.layoutSettings("N", 0, 4), package_max_length=64)
        client = self.connected(sends([good + struct.pack(">I", 1000)]), settings)
        self.assertEqual(client.recv(), good)
        self.assertIs(client.recv(), False)
        self.assertEqual(client.errCode, ERROR_PACKAGE_LENGTH_TOO_LARGE)

    def test_malformed(self) -> None:
        """
        A C{package_length_func} that rejects the data fails the C{recv}
        with C{ERROR_PACKAGE_MALFORMED_DATA}.
        """
        client = self.connected(sends([b"junk"]), {"package_length_func": lambda buf: -1})
        self.assertIs(client.recv(), False)
        self.assertEqual(client.errCode, ERROR_PACKAGE_MALFORMED_DATA)
        self.assertFalse(client.isConnected())


class TimeoutTests(_ClientTestMixin, SynchronousTestCase):
    """
    C{recv} waits up to the connect timeout (or C{read_timeout}).
    """

    def test_recvTimeout(self) -> None:
        """
        No data within the timeout: C{False}, C{errCode} 110, and the
        connection stays up.
        """
        client = self.connected(waitForClose, timeout=0.2)
        started = time.monotonic()
        self.assertIs(client.recv(), False)
        elapsed = time.monotonic() - started
        self.assertEqual(client.errCode, errno.ETIMEDOUT)
        self.assertGreaterEqual(elapsed, 0.15)
        self.assertLess(elapsed, 2)
        self.assertTrue(client.isConnected())

    def test_partialPacketKept(self) -> None:
        """
        Half a packet read before a timeout is kept for the next C{recv}.
        """
        rest = threading.Event()
        self.addCleanup(rest.set)
        packet = pack("N", 0, 4, b"patience")
        handler = sends([packet[:6], rest, packet[6:]])
        settings = {"open_length_check": True}
        client = self.connected(handler, settings, timeout=0.2)
        self.assertIs(client.recv(), False)
        self.assertEqual(client.errCode, errno.ETIMEDOUT)
        rest.set()
        self.assertEqual(client.recv(), packet)

    def test_readTimeoutSetting(self) -> None:
        """
        C{set({'read_timeout': ...})} wins over the connect timeout.
        """
        client = self.connected(waitForClose, {"read_timeout": 0.1}, timeout=30)
        started = time.monotonic()
        self.assertIs(client.recv(), False)
        self.assertLess(time.monotonic() - started, 5)
        self.assertEqual(client.errCode, errno.ETIMEDOUT)


class UDPTests(SynchronousTestCase):
    """
    A C{SOCK_UDP} client: C{sendto}, and C{connect} choosing the peer.
    """

    def setUp(self) -> None:
        self.server = ThreadedUDPEcho()
        self.addCleanup(self.server.stop)
        self.udp = Client(SOCK_UDP)
        self.addCleanup(self.udp.close)

    def test_sendto(self) -> None:
        """
        C{sendto} needs no C{connect}; C{recv} returns one datagram and
        C{getpeername} its sender.
        """
        self.assertIs(self.udp.sendto("127.0.0.1", self.server.port, b"ping"), True)
        self.assertEqual(self.udp.recv(), b"echo:ping")
        self.assertEqual(self.udp.getpeername(), {"host": "127.0.0.1", "port": self.server.port})

    def test_connectSend(self) -> None:
        """
        After C{connect}, C{send} goes to that peer.
        """
        self.assertTrue(self.udp.connect("127.0.0.1", self.server.port))
        self.assertEqual(self.udp.send(b"one"), 3)
        self.assertEqual(self.udp.recv(), b"echo:one")

    def test_udpConnectFlag(self) -> None:
        """
        With C{flag=1} the socket itself is connected; the round trip works.
        """
        self.assertTrue(self.udp.connect("127.0.0.1", self.server.port, 1, 1))
        self.udp.send("two")
        self.assertEqual(self.udp.recv(), b"echo:two")

    def test_timeout(self) -> None:
        """
        No datagram within the timeout: C{False} with C{errCode} 110.
        """
        self.assertTrue(self.udp.connect("127.0.0.1", freePort(), 0.1))
        self.assertIs(self.udp.recv(), False)
        self.assertEqual(self.udp.errCode, errno.ETIMEDOUT)

    def test_framingRefused(self) -> None:
        """
        Framing settings are refused for UDP, naming the setting.
        """
        e = self.assertRaises(SettingError, self.udp.set, {"open_eof_split": True})
        self.assertIn("'open_eof_split'", str(e))

    def test_sendtoOnTCP(self) -> None:
        """
        C{sendto} on a TCP client fails.
        """
        tcp = Client(SOCK_TCP)
        self.assertIs(tcp.sendto("127.0.0.1", self.server.port, b"x"), False)
        self.assertEqual(tcp.errCode, errno.EPROTOTYPE)
