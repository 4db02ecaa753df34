"""
Tests for L{swooletw.client}'s framing: with framing set, C{recv} returns
one whole packet, and a framing violation fails it with Swoole's code.
"""

from __future__ import annotations

import struct

from twisted.trial.unittest import SynchronousTestCase

from swooletw.constants import ERROR_PACKAGE_LENGTH_TOO_LARGE, ERROR_PACKAGE_MALFORMED_DATA

from tests.clientsupport import ClientTestMixin, byteByByte, echo, pack, sends


class EOFFramingTests(ClientTestMixin, SynchronousTestCase):
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


class LengthFramingTests(ClientTestMixin, SynchronousTestCase):
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

    def test_badLengthField(self) -> None:
        """
        A length field too small for its own header is garbage, not a
        packet over the limit: C{ERROR_PACKAGE_MALFORMED_DATA}.
        """
        settings = self.layoutSettings("N", 0, 0)
        client = self.connected(sends([struct.pack(">I", 2) + b"xxxx"]), settings)
        self.assertIs(client.recv(), False)
        self.assertEqual(client.errCode, ERROR_PACKAGE_MALFORMED_DATA)
        self.assertIn("bad length field", client.errMsg)
        self.assertFalse(client.isConnected())

    def test_codeNotGuessedFromText(self) -> None:
        """
        The code comes from the framer, not the reason's words: a
        C{package_length_func} raising about C{package_max_length} is still
        malformed data.
        """

        def lengthFunc(buf: bytes) -> int:
            raise ValueError("over package_max_length")

        client = self.connected(sends([b"junk"]), {"package_length_func": lengthFunc})
        self.assertIs(client.recv(), False)
        self.assertEqual(client.errCode, ERROR_PACKAGE_MALFORMED_DATA)
        self.assertIn("package_max_length", client.errMsg)
