"""
Tests for L{swooletw.client}: the blocking client against real sockets
(servers from L{tests.clientsupport}): construction, settings, connecting,
raw reads and timeouts.  Framing is in L{tests.test_client_framing}, UDP in
L{tests.test_client_udp}.
"""

from __future__ import annotations

import errno
import socket
import threading
import time

from twisted.trial.unittest import SkipTest, SynchronousTestCase

from swooletw.client import Client
from swooletw.constants import (
    ERROR_CLIENT_NO_CONNECTION,
    KEEP,
    SOCK_ASYNC,
    SOCK_SYNC,
    SOCK_TCP,
    SSL,
)
from swooletw.settings import SettingError

from tests.clientsupport import ClientTestMixin, echo, freePort, pack, sends, waitForClose


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
        e = self.assertRaises(SettingError, Client().set, [("timeout", 1)])
        self.assertEqual(str(e), "set() takes a dict of settings, got list")


class ConnectTests(ClientTestMixin, SynchronousTestCase):
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


class RawTests(ClientTestMixin, SynchronousTestCase):
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


class TimeoutTests(ClientTestMixin, SynchronousTestCase):
    """
    C{recv} waits up to the connect timeout (or C{read_timeout}).
    """

    def test_recvTimeout(self) -> None:
        """
        No data within the timeout: C{False}, C{errCode} 110, after waiting
        about the timeout, and the connection stays up.  The server holds
        its data back until the test has seen the timeout (or 30 s: a
        C{recv} that ignored the timeout would get the data instead).
        """
        release = threading.Event()
        client = self.connected(sends([release, b"late"], eventTimeout=30), timeout=0.2)
        self.addCleanup(release.set)  # before the server's stop (LIFO)
        started = time.monotonic()
        self.assertIs(client.recv(), False)
        elapsed = time.monotonic() - started
        self.assertEqual(client.errCode, errno.ETIMEDOUT)
        self.assertGreaterEqual(elapsed, 0.15)  # it did wait for the timeout
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
        C{set({'read_timeout': ...})} wins over the connect timeout.  With
        C{connect}'s timeout -1 (wait forever) and a server that holds its
        data back until the test has seen the timeout (or 30 s), only
        C{read_timeout} can make C{recv} give up.
        """
        release = threading.Event()
        handler = sends([release, b"late"], eventTimeout=30)
        client = self.connected(handler, {"read_timeout": 0.1}, timeout=-1)
        self.addCleanup(release.set)  # before the server's stop (LIFO)
        self.assertIs(client.recv(), False)
        self.assertEqual(client.errCode, errno.ETIMEDOUT)
        self.assertTrue(client.isConnected())
