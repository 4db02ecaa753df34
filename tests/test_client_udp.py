"""
Tests for L{swooletw.client} with C{SOCK_UDP}: C{sendto}, and C{connect}
choosing the peer, against a UDP echo server on a thread.
"""

from __future__ import annotations

import errno
import socket

from twisted.trial.unittest import SynchronousTestCase

from swooletw.client import Client
from swooletw.constants import SOCK_TCP, SOCK_UDP
from swooletw.settings import SettingError

from tests.clientsupport import ThreadedSocket, freePort


class ThreadedUDPEcho(ThreadedSocket):
    """
    A UDP echo server on 127.0.0.1 served from a thread.
    """

    def __init__(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        super().__init__(sock)

    def serveOnce(self) -> None:
        """
        Echo one datagram, prefixed with C{echo:}.
        """
        data, peer = self.sock.recvfrom(65535)
        self.sock.sendto(b"echo:" + data, peer)


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
