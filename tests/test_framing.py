"""
Tests for L{swooletw.wire.framing}.

Every protocol here is built the way a port builds one: a PHP-style settings
dict goes through L{swooletw.settings.normalise} onto
L{swooletw.settings.defaults}, L{swooletw.wire.framing.framingFor} picks the
framer, and L{swooletw.wire.framing.Framing.apply} configures the instance, which
is then connected to a L{StringTransport}.  Packets are built with C{struct}
the way PHP's C{pack()} builds them, independently of the library's own table.
"""

from __future__ import annotations

import random
import struct
import sys
from typing import Any, Callable, Iterable

from twisted.internet.testing import StringTransport
from twisted.python.compat import iterbytes
from twisted.trial.unittest import SynchronousTestCase

from swooletw import settings
from swooletw.wire import framing

# ------------------------------------------------------------------ helpers

_HOST = "<" if sys.byteorder == "little" else ">"

#: PHP pack() codes as struct formats, written out here rather than taken
#: from the library: s S l L are machine byte order, n N big-endian, v V
#: little-endian.
PHP_PACK = {
    "c": "<b",
    "C": "<B",
    "s": _HOST + "h",
    "S": _HOST + "H",
    "n": ">H",
    "N": ">I",
    "l": _HOST + "i",
    "L": _HOST + "I",
    "v": "<H",
    "V": "<I",
}

SIGNED = ("c", "s", "l")
LENGTH_OFFSETS = (0, 2)
FEEDS = ("whole", "bytes", "random")


def headerEnd(lengthType: str, lengthOffset: int) -> int:
    return lengthOffset + struct.calcsize(PHP_PACK[lengthType])


def bodyOffsetsFor(lengthType: str, lengthOffset: int) -> tuple[int, int, int]:
    """
    The three body offsets tried for a header: right after the length field,
    0 (the length counts the whole packet) and 3 bytes past the length field
    (a header with extra fields after the length).
    """
    end = headerEnd(lengthType, lengthOffset)
    return (end, 0, end + 3)


def allLayouts() -> Iterable[tuple[str, int, int]]:
    for lengthType in PHP_PACK:
        for lengthOffset in LENGTH_OFFSETS:
            for bodyOffset in bodyOffsetsFor(lengthType, lengthOffset):
                yield lengthType, lengthOffset, bodyOffset


def lengthConfig(
    lengthType: str, lengthOffset: int, bodyOffset: int, **extra: Any
) -> dict[str, Any]:
    config = {
        "open_length_check": True,
        "package_length_type": lengthType,
        "package_length_offset": lengthOffset,
        "package_body_offset": bodyOffset,
    }
    config.update(extra)
    return config


def lengthPacket(
    lengthType: str,
    lengthOffset: int,
    bodyOffset: int,
    body: bytes,
    value: int | None = None,
) -> bytes:
    """
    One packet as PHP would build it: C{lengthOffset} bytes of other header
    fields, the length field, more header fields up to C{bodyOffset}, the
    body.  The length is the body's (or, with body offset 0, the whole
    packet's) unless C{value} overrides it.
    """
    fmt = PHP_PACK[lengthType]
    end = headerEnd(lengthType, lengthOffset)
    if bodyOffset == 0:
        pad = b""
        natural = end + len(body)
    else:
        pad = b"\xee" * (bodyOffset - end)
        natural = len(body)
    if value is None:
        value = natural
    # 0xff before the length field: read from the wrong place, it gives a
    # huge or negative length.
    return b"\xff" * lengthOffset + struct.pack(fmt, value) + pad + body


def randomBodies(rnd: random.Random, count: int, maxSize: int = 60) -> list[bytes]:
    return [rnd.randbytes(rnd.randint(0, maxSize)) for _ in range(count)]


def eofPackets(
    eof: bytes, count: int, seed: int = 0, maxSize: int = 40
) -> list[bytes]:
    """
    C{count} packets ending with C{eof}, payloads drawn from an alphabet
    rich in the EOF's own bytes, such that in the concatenated stream the EOF
    occurs only at the end of each packet.
    """
    rnd = random.Random(seed)
    alphabet = bytes(sorted(set(b"ab\x00\r\n" + eof)))
    packets: list[bytes] = []
    while len(packets) < count:
        payload = bytes(rnd.choice(alphabet) for _ in range(rnd.randint(0, maxSize)))
        prefix = eof if packets else b""
        window = prefix + payload + eof
        found = []
        at = window.find(eof)
        while at >= 0:
            found.append(at)
            at = window.find(eof, at + 1)
        wanted = ([0] if prefix else []) + [len(window) - len(eof)]
        if found == wanted:
            packets.append(payload + eof)
    return packets


def chunked(stream: bytes, feed: str, seed: int = 0) -> list[bytes]:
    """
    C{stream} cut as C{feed} says: C{whole}, C{bytes} (one byte at a time)
    or C{random} (seeded random sizes from 1 to 64 bytes).
    """
    if feed == "whole":
        return [stream]
    if feed == "bytes":
        return list(iterbytes(stream))
    rnd = random.Random(seed)
    chunks = []
    at = 0
    while at < len(stream):
        size = rnd.randint(1, 64)
        chunks.append(stream[at : at + size])
        at += size
    return chunks


def checkDeliveries(packets: list[bytes], chunks: list[bytes]) -> list[bytes]:
    """
    What C{open_eof_check} delivers for C{packets} cut into C{chunks}: after
    each chunk, everything up to the end of the last complete packet.
    """
    stream = b"".join(packets)
    boundaries = []
    at = 0
    for packet in packets:
        at += len(packet)
        boundaries.append(at)
    out = []
    delivered = 0
    seen = 0
    for chunk in chunks:
        seen += len(chunk)
        complete = max([b for b in boundaries if b <= seen], default=0)
        if complete > delivered:
            out.append(stream[delivered:complete])
            delivered = complete
    return out


class _Collector:
    """
    Mixed in before a framer: records packets and framing errors, and calls
    C{onPacket(protocol, packet)} after recording each packet.
    """

    onPacket: Callable[[Any, bytes], None] | None = None

    def packetReceived(self, packet: bytes) -> None:
        self.packets.append(packet)
        if self.onPacket is not None:
            self.onPacket(self, packet)

    def framingError(self, reason: str) -> None:
        self.errors.append(reason)


_collectorClasses: dict[type, type] = {}


def portSettings(config: dict[str, Any]) -> dict[str, Any]:
    values = settings.defaults()
    values.update(settings.normalise(config))
    settings.checkFraming(values)
    return values


def connect(
    config: dict[str, Any], onPacket: Callable[[Any, bytes], None] | None = None
) -> Any:
    """
    A collecting protocol configured from the PHP-style C{config}, connected
    to a L{StringTransport}.
    """
    configured = framing.framingFor(portSettings(config))
    framer = configured.framer
    cls = _collectorClasses.get(framer)
    if cls is None:
        cls = type("Collecting" + framer.__name__, (_Collector, framer), {})
        _collectorClasses[framer] = cls
    proto = cls()
    proto.packets = []
    proto.errors = []
    proto.onPacket = onPacket
    configured.apply(proto)
    proto.makeConnection(StringTransport())
    return proto


def feed(proto: Any, chunks: Iterable[bytes]) -> Any:
    for chunk in chunks:
        proto.dataReceived(chunk)
    return proto


def feedUntilError(proto: Any, chunks: Iterable[bytes]) -> Any:
    """
    Feed C{chunks} until the first framing error, as a connection that closes
    on it would (L{StickyErrorTests} checks what comes after).
    """
    for chunk in chunks:
        proto.dataReceived(chunk)
        if proto.errors:
            break
    return proto


class _FramingAssertions:
    """
    Assertions shared by the test cases below.
    """

    def assertFramed(
        self, config: dict[str, Any], packets: list[bytes], feeds=FEEDS, seed: int = 0
    ) -> None:
        """
        Fed as each of C{feeds}, the stream of C{packets} comes out as exactly
        C{packets}, without framing errors.
        """
        stream = b"".join(packets)
        for how in feeds:
            proto = feed(connect(config), chunked(stream, how, seed))
            where = f"config {config!r}, fed {how}"
            self.assertEqual(proto.errors, [], where)
            self.assertEqual(len(proto.packets), len(packets), where)
            self.assertEqual(proto.packets, packets, where)

    def assertRejected(
        self,
        config: dict[str, Any],
        good: list[bytes],
        bad: bytes,
        after: list[bytes],
        mentions: Iterable[str],
        feeds=FEEDS,
    ) -> None:
        """
        Fed as each of C{feeds}, the stream C{good + [bad] + after} delivers
        the C{good} packets, then calls C{framingError} exactly once with a
        reason containing each of C{mentions}, and delivers nothing else
        (chunks after the error are not fed).
        """
        stream = b"".join(good) + bad + b"".join(after)
        for how in feeds:
            proto = feedUntilError(connect(config), chunked(stream, how))
            where = f"config {config!r}, fed {how}"
            self.assertEqual(proto.packets, good, where)
            self.assertEqual(len(proto.errors), 1, f"{where}: {proto.errors!r}")
            for word in mentions:
                self.assertIn(word, proto.errors[0], where)


# -------------------------------------------------------------------- tests


class FramingForTests(SynchronousTestCase):
    """
    L{framing.framingFor} picks the framer from the settings.
    """

    def framerFor(self, config: dict[str, Any]) -> type:
        return framing.framingFor(portSettings(config)).framer

    def test_nothing(self) -> None:
        """
        With no framing option set, the framer is L{framing.RawReceiver}.
        """
        self.assertIs(self.framerFor({}), framing.RawReceiver)

    def test_eofCheck(self) -> None:
        """
        C{open_eof_check} alone selects L{framing.EOFCheckReceiver}.
        """
        self.assertIs(
            self.framerFor({"open_eof_check": True}), framing.EOFCheckReceiver
        )

    def test_eofSplit(self) -> None:
        """
        C{open_eof_split} selects L{framing.EOFSplitReceiver}, with or without
        C{open_eof_check}.
        """
        self.assertIs(
            self.framerFor({"open_eof_split": True}), framing.EOFSplitReceiver
        )
        self.assertIs(
            self.framerFor({"open_eof_split": True, "open_eof_check": True}),
            framing.EOFSplitReceiver,
        )

    def test_standardLength(self) -> None:
        """
        Length type N at offset 0 with body offset 4 selects
        L{framing.Int32PacketReceiver}.
        """
        self.assertIs(
            self.framerFor(lengthConfig("N", 0, 4)), framing.Int32PacketReceiver
        )
        self.assertIs(
            self.framerFor({"open_length_check": True}), framing.Int32PacketReceiver
        )

    def test_otherLengthLayouts(self) -> None:
        """
        Every other length layout selects L{framing.LengthPacketReceiver}.
        """
        for layout in allLayouts():
            if layout == ("N", 0, 4):
                continue
            self.assertIs(
                self.framerFor(lengthConfig(*layout)),
                framing.LengthPacketReceiver,
                layout,
            )

    def test_lengthFunc(self) -> None:
        """
        C{package_length_func} selects L{framing.LengthFuncReceiver}, also
        when C{open_length_check} is set.
        """
        func = lambda data: 0  # noqa: E731
        self.assertIs(
            self.framerFor({"package_length_func": func}), framing.LengthFuncReceiver
        )
        self.assertIs(
            self.framerFor({"package_length_func": func, "open_length_check": True}),
            framing.LengthFuncReceiver,
        )

    def test_applyConfigures(self) -> None:
        """
        L{framing.Framing.apply} gives the protocol its limit, EOF and length
        layout from the settings.
        """
        proto = connect(
            {"open_eof_split": True, "package_eof": "\r\n\r\n", "package_max_length": 70000}
        )
        self.assertEqual(proto.MAX_LENGTH, 70000)
        self.assertEqual(proto.delimiter, b"\r\n\r\n")
        proto = connect(lengthConfig("v", 2, 9, package_max_length=1234))
        self.assertEqual(proto.MAX_LENGTH, 1234)
        self.assertEqual(
            (proto.lengthType, proto.lengthOffset, proto.bodyOffset), ("v", 2, 9)
        )


class RawReceiverTests(SynchronousTestCase):
    """
    L{framing.RawReceiver}: every chunk is one packet.
    """

    def test_chunksArePackets(self) -> None:
        """
        Each chunk read is delivered unchanged as one packet, however it is cut.
        """
        stream = random.Random(1).randbytes(3000)
        for how in FEEDS:
            chunks = chunked(stream, how, seed=3)
            proto = feed(connect({}), chunks)
            self.assertEqual(proto.packets, chunks, how)
            self.assertEqual(proto.errors, [])

    def test_largeChunk(self) -> None:
        """
        A chunk bigger than C{package_max_length} is still one packet (no
        framing, no limit).
        """
        data = b"x" * 5000
        proto = feed(connect({"package_max_length": 100}), [data])
        self.assertEqual(proto.packets, [data])
        self.assertEqual(proto.errors, [])


class EOFSplitTests(_FramingAssertions, SynchronousTestCase):
    """
    L{framing.EOFSplitReceiver}: one packet per EOF, EOF included.
    """

    EOFS = (b"\r\n", b"\n", b"\r\n\r\n", b"\x00\x01\x02\x03\x04\x05\x06\x07", b"ENDENDEN")

    def config(self, eof: Any, **extra: Any) -> dict[str, Any]:
        return dict({"open_eof_split": True, "package_eof": eof}, **extra)

    def test_feeds(self) -> None:
        """
        The same stream fed whole, byte by byte and in random chunks gives the
        packets sent, each with its EOF.
        """
        for eof in self.EOFS:
            packets = eofPackets(eof, 200, seed=len(eof))
            self.assertFramed(self.config(eof), packets, seed=len(eof))
            for packet in packets:
                self.assertTrue(packet.endswith(eof))

    def test_largeBatch(self) -> None:
        """
        10,000 packets in one C{dataReceived} come out as 10,000 packets.
        """
        for eof in (b"\r\n", b"\r\n\r\n"):
            packets = eofPackets(eof, 10000, seed=7, maxSize=20)
            self.assertFramed(self.config(eof), packets, feeds=("whole",))

    def test_eofAcrossChunks(self) -> None:
        """
        A multi-byte EOF cut at any point between two chunks still ends its
        packet.
        """
        for eof in (b"\r\n\r\n", b"\x00\x01\x02\x03\x04\x05\x06\x07"):
            packets = [b"hello" + eof, b"\r\nw\r" + eof]
            stream = b"".join(packets)
            for cut in range(1, len(stream)):
                proto = feed(connect(self.config(eof)), [stream[:cut], stream[cut:]])
                self.assertEqual(proto.packets, packets, (eof, cut))
            for first in range(1, len(stream)):
                for second in range(first + 1, len(stream)):
                    chunks = [stream[:first], stream[first:second], stream[second:]]
                    proto = feed(connect(self.config(eof)), chunks)
                    self.assertEqual(proto.packets, packets, (eof, first, second))

    def test_strEOF(self) -> None:
        """
        A C{str} EOF (as PHP writes it) is used as bytes.
        """
        proto = connect(self.config("\r\n"))
        self.assertEqual(proto.delimiter, b"\r\n")
        feed(proto, [b"a\r\nbc\r", b"\n"])
        self.assertEqual(proto.packets, [b"a\r\n", b"bc\r\n"])

    def test_exactlyMax(self) -> None:
        """
        A packet of exactly C{package_max_length} bytes, EOF included, is
        delivered.
        """
        packet = b"x" * 98 + b"\r\n"
        self.assertFramed(self.config(b"\r\n", package_max_length=100), [b"a\r\n", packet])

    def test_overMax(self) -> None:
        """
        A packet one byte over C{package_max_length} (EOF included) is a
        framing error; packets before it are delivered, none after.
        """
        self.assertRejected(
            self.config(b"\r\n", package_max_length=100),
            [b"a\r\n", b"b\r\n"],
            b"x" * 99 + b"\r\n",
            [b"c\r\n", b"d\r\n"],
            ["package_max_length", "100"],
        )

    def test_noEOFPastMax(self) -> None:
        """
        A stream with no EOF growing past C{package_max_length} is a framing
        error; nothing after it is delivered.
        """
        self.assertRejected(
            self.config(b"\r\n", package_max_length=100),
            [b"a\r\n"],
            b"y" * 150,
            [b"c\r\n", b"z" * 150, b"d\r\n"],
            ["package_max_length", "100"],
        )


class EOFCheckTests(_FramingAssertions, SynchronousTestCase):
    """
    L{framing.EOFCheckReceiver}: everything up to the last EOF in the buffer,
    possibly several packets at once.
    """

    EOFS = EOFSplitTests.EOFS

    def config(self, eof: Any, **extra: Any) -> dict[str, Any]:
        return dict({"open_eof_check": True, "package_eof": eof}, **extra)

    def assertDeliversUpToLastEOF(
        self, config: dict[str, Any], packets: list[bytes], chunks: list[bytes]
    ) -> None:
        """
        After each chunk, everything up to the end of the last whole packet
        has been delivered, in one piece per chunk.
        """
        proto = feed(connect(config), chunks)
        self.assertEqual(proto.errors, [], config)
        self.assertEqual(proto.packets, checkDeliveries(packets, chunks), config)
        self.assertEqual(b"".join(proto.packets), b"".join(packets), config)

    def test_feeds(self) -> None:
        """
        Fed whole, the stream is one delivery; byte by byte, one packet per
        delivery; in random chunks, everything up to the last EOF each time.
        """
        for eof in self.EOFS:
            packets = eofPackets(eof, 200, seed=len(eof))
            stream = b"".join(packets)
            for how in FEEDS:
                self.assertDeliversUpToLastEOF(
                    self.config(eof), packets, chunked(stream, how, seed=len(eof))
                )
            proto = feed(connect(self.config(eof)), [stream])
            self.assertEqual(proto.packets, [stream])
            proto = feed(connect(self.config(eof)), iterbytes(stream))
            self.assertEqual(proto.packets, packets)

    def test_largeBatch(self) -> None:
        """
        10,000 packets in one C{dataReceived} are delivered whole, ending with
        the last EOF.
        """
        packets = eofPackets(b"\r\n", 10000, seed=8, maxSize=20)
        stream = b"".join(packets)
        proto = feed(connect(self.config(b"\r\n")), [stream, b"tail"])
        self.assertEqual(proto.packets, [stream])
        feed(proto, [b"\r\n"])
        self.assertEqual(proto.packets, [stream, b"tail\r\n"])

    def test_eofAcrossChunks(self) -> None:
        """
        A multi-byte EOF cut at any point between chunks is still found.
        """
        # The second payload holds pieces of the EOF but, unlike the split
        # test's, does not start with its tail: with open_eof_check an EOF
        # straddling two packets would end the buffer early (as in Swoole).
        for eof, second in (
            (b"\r\n\r\n", b"w\r\n\r"),
            (b"\x00\x01\x02\x03\x04\x05\x06\x07", b"\x05\x06\x07w\x00\x01"),
        ):
            packets = [b"hello" + eof, second + eof]
            stream = b"".join(packets)
            self.assertEqual(stream.find(eof, 6), len(stream) - len(eof))
            for cut in range(1, len(stream)):
                self.assertDeliversUpToLastEOF(
                    self.config(eof), packets, [stream[:cut], stream[cut:]]
                )
            for first in range(1, len(stream)):
                for second in range(first + 1, len(stream)):
                    self.assertDeliversUpToLastEOF(
                        self.config(eof),
                        packets,
                        [stream[:first], stream[first:second], stream[second:]],
                    )

    def test_strEOF(self) -> None:
        """
        A C{str} EOF is used as bytes.
        """
        proto = feed(connect(self.config("\r\n")), [b"a\r\nb\r", b"\nc"])
        self.assertEqual(proto.delimiter, b"\r\n")
        self.assertEqual(proto.packets, [b"a\r\n", b"b\r\n"])

    def assertCheckRejected(
        self,
        config: dict[str, Any],
        good: list[bytes],
        bad: bytes,
        after: list[bytes],
        mentions: Iterable[str],
    ) -> None:
        """
        However fed, C{good} is delivered (maybe in fewer pieces), then one
        framing error mentioning C{mentions}, then nothing.
        """
        eof = settings.normalise(config)["package_eof"]
        stream = b"".join(good) + bad + b"".join(after)
        for how in FEEDS:
            proto = feedUntilError(connect(config), chunked(stream, how))
            where = f"fed {how}"
            self.assertEqual(b"".join(proto.packets), b"".join(good), where)
            for packet in proto.packets:
                self.assertTrue(packet.endswith(eof), where)
            self.assertEqual(len(proto.errors), 1, f"{where}: {proto.errors!r}")
            for word in mentions:
                self.assertIn(word, proto.errors[0], where)

    def test_exactlyMax(self) -> None:
        """
        A packet of exactly C{package_max_length} bytes, EOF included, is
        delivered.
        """
        packet = b"x" * 98 + b"\r\n"
        for how in FEEDS:
            proto = feed(
                connect(self.config(b"\r\n", package_max_length=100)),
                chunked(packet, how),
            )
            self.assertEqual(proto.errors, [], how)
            self.assertEqual(b"".join(proto.packets), packet, how)

    def test_noEOFPastMax(self) -> None:
        """
        A stream with no EOF growing past C{package_max_length} is a framing
        error; nothing after it is delivered.
        """
        self.assertCheckRejected(
            self.config(b"\r\n", package_max_length=100),
            [b"a\r\n", b"b\r\n"],
            b"y" * 150,
            [b"c\r\n", b"z" * 150, b"d\r\n"],
            ["package_max_length", "100"],
        )

    def test_noEOFPastMaxAlone(self) -> None:
        """
        Without any EOF, 101 bytes with a limit of 100 is one framing error.
        """
        for how in FEEDS:
            proto = feed(
                connect(self.config(b"\r\n", package_max_length=100)),
                chunked(b"y" * 101, how),
            )
            self.assertEqual(proto.packets, [], how)
            self.assertEqual(len(proto.errors), 1, how)
            self.assertIn("package_max_length 100", proto.errors[0])

    def test_packetOverMax(self) -> None:
        """
        One packet (EOF included) longer than C{package_max_length} is a
        framing error even when its EOF arrives in the same chunk: it is not
        delivered.
        """
        self.assertCheckRejected(
            self.config(b"\r\n", package_max_length=100),
            [b"a\r\n", b"b\r\n"],
            b"x" * 99 + b"\r\n",
            [b"c\r\n"],
            ["package_max_length", "100"],
        )


class LengthTests(_FramingAssertions, SynchronousTestCase):
    """
    L{framing.Int32PacketReceiver} and L{framing.LengthPacketReceiver}: every
    length type, length offset and body offset Swoole allows.
    """

    def test_feeds(self) -> None:
        """
        For every layout, the stream fed whole, byte by byte and in random
        chunks gives the packets sent, headers included.
        """
        for n, layout in enumerate(allLayouts()):
            rnd = random.Random(n)
            packets = [lengthPacket(*layout, body) for body in randomBodies(rnd, 60)]
            self.assertFramed(lengthConfig(*layout), packets, seed=n)

    def test_largeBatch(self) -> None:
        """
        For every layout, 10,000 packets in one C{dataReceived} come out as
        10,000 packets.
        """
        for n, layout in enumerate(allLayouts()):
            rnd = random.Random(n)
            packets = [
                lengthPacket(*layout, body) for body in randomBodies(rnd, 10000, 20)
            ]
            self.assertFramed(lengthConfig(*layout), packets, feeds=("whole",))

    def test_standardHeader(self) -> None:
        """
        The default header is PHP's C{pack('N', strlen($body)) . $body}.
        """
        packets = [struct.pack(">I", len(b)) + b for b in (b"", b"hello", b"x" * 70000)]
        self.assertFramed({"open_length_check": True}, packets)

    def test_byteOrder(self) -> None:
        """
        C{s S l L} are read in host order, C{n N} big-endian, C{v V}
        little-endian: a length of 1 in the wrong order would be 256 or more.
        """
        body = b"b"
        for lengthType, fmt in (("s", "=h"), ("S", "=H"), ("l", "=i"), ("L", "=I"),
                                ("n", ">H"), ("N", ">I"), ("v", "<H"), ("V", "<I")):
            size = struct.calcsize(fmt)
            packet = struct.pack(fmt, 1) + body
            proto = feed(connect(lengthConfig(lengthType, 0, size)), [packet * 3])
            self.assertEqual(proto.packets, [packet] * 3, lengthType)

    def test_headerOnly(self) -> None:
        """
        With body offset 0, a length equal to the header size is a packet with
        an empty body.
        """
        for lengthType in PHP_PACK:
            for lengthOffset in LENGTH_OFFSETS:
                end = headerEnd(lengthType, lengthOffset)
                packet = lengthPacket(lengthType, lengthOffset, 0, b"", value=end)
                self.assertEqual(len(packet), end)
                self.assertFramed(
                    lengthConfig(lengthType, lengthOffset, 0), [packet, packet, packet]
                )

    def maxPacket(self, layout: tuple[str, int, int], size: int) -> bytes:
        """
        A packet of exactly C{size} bytes with C{layout}.
        """
        lengthType, lengthOffset, bodyOffset = layout
        start = bodyOffset or headerEnd(lengthType, lengthOffset)
        packet = lengthPacket(*layout, b"m" * (size - start))
        self.assertEqual(len(packet), size)
        return packet

    def test_exactlyMax(self) -> None:
        """
        A header announcing exactly C{package_max_length} bytes (header
        included) is delivered.
        """
        for layout in allLayouts():
            packet = self.maxPacket(layout, 100)
            small = lengthPacket(*layout, b"s")
            self.assertFramed(
                lengthConfig(*layout, package_max_length=100), [small, packet, small]
            )

    def test_overMax(self) -> None:
        """
        A header announcing C{package_max_length + 1} bytes is a framing error
        naming the limit; packets before it are delivered, none after.
        """
        for layout in allLayouts():
            small = lengthPacket(*layout, b"s")
            self.assertRejected(
                lengthConfig(*layout, package_max_length=100),
                [small, small],
                self.maxPacket(layout, 101),
                [small, small],
                ["package_max_length", "100"],
            )

    def test_hugeLength(self) -> None:
        """
        The largest length each type can hold is refused against a small
        limit, before its body arrives.
        """
        for layout in allLayouts():
            lengthType = layout[0]
            fmt = PHP_PACK[lengthType]
            bits = 8 * struct.calcsize(fmt)
            largest = 2 ** (bits - 1) - 1 if lengthType in SIGNED else 2**bits - 1
            small = lengthPacket(*layout, b"s")
            bad = lengthPacket(*layout, b"", value=largest)
            self.assertRejected(
                lengthConfig(*layout, package_max_length=100),
                [small],
                bad,
                [small],
                ["package_max_length", "100"],
            )

    def test_negativeLength(self) -> None:
        """
        A negative length in a signed field (c s l) is a framing error.
        """
        for layout in allLayouts():
            if layout[0] not in SIGNED:
                continue
            small = lengthPacket(*layout, b"s")
            for value in (-1, -2, -100):
                self.assertRejected(
                    lengthConfig(*layout),
                    [small],
                    lengthPacket(*layout, b"", value=value),
                    [small, small],
                    ["length"],
                )

    def test_lengthShorterThanHeader(self) -> None:
        """
        With body offset 0, a length smaller than the header is garbage: a
        framing error, not a packet nor an endless loop.
        """
        for lengthType in PHP_PACK:
            for lengthOffset in LENGTH_OFFSETS:
                end = headerEnd(lengthType, lengthOffset)
                small = lengthPacket(lengthType, lengthOffset, 0, b"s")
                for value in (0, end - 1):
                    self.assertRejected(
                        lengthConfig(lengthType, lengthOffset, 0),
                        [small],
                        lengthPacket(lengthType, lengthOffset, 0, b"", value=value),
                        [small],
                        ["length", "header"],
                    )


def _kindLengthFunc(limit: int) -> Callable[[bytes], Any]:
    """
    A C{package_length_func} for packets of a kind byte, a C{n} body length
    and the body; some kinds make it misbehave.
    """

    def lengthFunc(data: bytes) -> Any:
        kind = data[0]
        if kind == 0xFF:
            return -1
        if kind == 0xFE:
            raise ValueError("kind 0xfe is bad")
        if kind == 0xFD:
            return "3"
        if kind == 0xFC:
            return 3.0
        if kind == 0xFB:
            return None
        if kind == 0xFA:
            return limit + 1
        if kind == 0xF9:
            return 0
        if len(data) < 3:
            return 0
        return 3 + struct.unpack_from(">H", data, 1)[0]

    return lengthFunc


def kindPacket(body: bytes, kind: int = 1) -> bytes:
    return bytes([kind]) + struct.pack(">H", len(body)) + body


class LengthFuncTests(_FramingAssertions, SynchronousTestCase):
    """
    L{framing.LengthFuncReceiver}: C{package_length_func} says how long each
    packet is.
    """

    def config(self, limit: int = 2 * 1024 * 1024) -> dict[str, Any]:
        return {"package_length_func": _kindLengthFunc(limit), "package_max_length": limit}

    def test_feeds(self) -> None:
        """
        The stream fed whole, byte by byte and in random chunks gives the
        packets sent.
        """
        rnd = random.Random(5)
        packets = [kindPacket(body) for body in randomBodies(rnd, 200)]
        self.assertFramed(self.config(), packets, seed=5)

    def test_largeBatch(self) -> None:
        """
        10,000 packets in one C{dataReceived} come out as 10,000 packets.
        """
        rnd = random.Random(6)
        packets = [kindPacket(body) for body in randomBodies(rnd, 10000, 20)]
        self.assertFramed(self.config(), packets, feeds=("whole",))

    def test_exactlyMax(self) -> None:
        """
        A length of exactly C{package_max_length} is delivered.
        """
        packets = [kindPacket(b"a"), kindPacket(b"m" * 97), kindPacket(b"b")]
        self.assertEqual(len(packets[1]), 100)
        self.assertFramed(self.config(100), packets)

    def test_overMax(self) -> None:
        """
        A length of C{package_max_length + 1} is a framing error naming the
        limit.
        """
        self.assertRejected(
            self.config(100),
            [kindPacket(b"a")],
            kindPacket(b"m" * 98),
            [kindPacket(b"b")],
            ["package_max_length", "100"],
        )

    def test_returnsOverMax(self) -> None:
        """
        The function returning more than C{package_max_length} is a framing
        error naming the limit, before the data arrives.
        """
        self.assertRejected(
            self.config(100),
            [kindPacket(b"a")],
            kindPacket(b"", kind=0xFA),
            [kindPacket(b"b")],
            ["package_max_length", "100"],
        )

    def test_needMorePastMax(self) -> None:
        """
        The function answering "need more" while the buffer grows past
        C{package_max_length} is a framing error.
        """
        self.assertRejected(
            self.config(100),
            [kindPacket(b"a")],
            bytes([0xF9]) + b"w" * 150,
            [],
            ["package_max_length", "100"],
        )

    def test_minusOne(self) -> None:
        """
        The function returning -1 is a framing error saying the data was
        rejected; nothing after it is delivered.
        """
        self.assertRejected(
            self.config(),
            [kindPacket(b"a"), kindPacket(b"b")],
            kindPacket(b"bad", kind=0xFF),
            [kindPacket(b"c")],
            ["package_length_func", "-1"],
        )

    def test_raises(self) -> None:
        """
        The function raising is a framing error quoting the exception.
        """
        self.assertRejected(
            self.config(),
            [kindPacket(b"a")],
            kindPacket(b"bad", kind=0xFE),
            [kindPacket(b"c")],
            ["package_length_func", "kind 0xfe is bad"],
        )

    def test_notAnInteger(self) -> None:
        """
        The function returning a str, a float or None is a framing error
        naming what it returned.
        """
        for kind, shown in ((0xFD, "'3'"), (0xFC, "3.0"), (0xFB, "None")):
            self.assertRejected(
                self.config(),
                [kindPacket(b"a")],
                kindPacket(b"bad", kind=kind),
                [kindPacket(b"c")],
                ["package_length_func", shown],
            )


def _pausingConfigs() -> list[tuple[dict[str, Any], list[bytes]]]:
    """
    A config and three packets for each framer that can pause.
    """
    return [
        ({"open_eof_split": True, "package_eof": b"\r\n"}, [b"p1\r\n", b"p2\r\n", b"p3\r\n"]),
        (
            {"open_length_check": True},
            [struct.pack(">I", 2) + b"p" + bytes([48 + i]) for i in (1, 2, 3)],
        ),
        (
            lengthConfig("v", 2, 7),
            [lengthPacket("v", 2, 7, b"p" + bytes([48 + i])) for i in (1, 2, 3)],
        ),
        (
            {"package_length_func": _kindLengthFunc(100)},
            [kindPacket(b"p" + bytes([48 + i])) for i in (1, 2, 3)],
        ),
    ]


class PauseTests(SynchronousTestCase):
    """
    A packet handler that pauses the transport or closes the connection stops
    the delivery of further packets.
    """

    def test_pauseStopsChunk(self) -> None:
        """
        Pausing in C{packetReceived} stops the packets left in the same chunk;
        resuming delivers them.
        """

        def pauseFirst(proto: Any, packet: bytes) -> None:
            if len(proto.packets) == 1:
                proto.pauseProducing()

        for config, packets in _pausingConfigs():
            proto = feed(connect(config, pauseFirst), [b"".join(packets)])
            self.assertEqual(proto.packets, packets[:1], config)
            self.assertEqual(proto.transport.producerState, "paused")
            proto.resumeProducing()
            self.assertEqual(proto.packets, packets, config)
            self.assertEqual(proto.transport.producerState, "producing")
            self.assertEqual(proto.errors, [])

    def test_loseConnectionStopsChunk(self) -> None:
        """
        Closing the connection in C{packetReceived} stops the packets left in
        the same chunk.
        """

        def closeFirst(proto: Any, packet: bytes) -> None:
            proto.transport.loseConnection()

        for config, packets in _pausingConfigs():
            proto = feed(connect(config, closeFirst), [b"".join(packets)])
            self.assertTrue(proto.transport.disconnecting)
            self.assertEqual(proto.packets, packets[:1], config)

    def assertBufferedWhilePaused(self, config: dict[str, Any], packets: list[bytes]) -> None:
        """
        After the first packet pauses the protocol, the next chunk (as a TLS
        transport may still deliver one) is kept until C{resumeProducing}.
        """

        def pauseFirst(proto: Any, packet: bytes) -> None:
            if len(proto.packets) == 1:
                proto.pauseProducing()

        proto = feed(connect(config, pauseFirst), [packets[0]])
        self.assertEqual(proto.packets, packets[:1])
        feed(proto, [packets[1] + packets[2]])
        self.assertEqual(proto.packets, packets[:1])
        proto.resumeProducing()
        self.assertEqual(b"".join(proto.packets), b"".join(packets))
        self.assertEqual(proto.errors, [])

    def test_dataWhilePausedEOFSplit(self) -> None:
        """
        L{framing.EOFSplitReceiver} delivers nothing while paused.
        """
        self.assertBufferedWhilePaused(*_pausingConfigs()[0])

    def test_dataWhilePausedInt32(self) -> None:
        """
        L{framing.Int32PacketReceiver} delivers nothing while paused.
        """
        self.assertBufferedWhilePaused(*_pausingConfigs()[1])

    def test_dataWhilePausedLength(self) -> None:
        """
        L{framing.LengthPacketReceiver} delivers nothing while paused.
        """
        self.assertBufferedWhilePaused(*_pausingConfigs()[2])

    def test_dataWhilePausedLengthFunc(self) -> None:
        """
        L{framing.LengthFuncReceiver} delivers nothing while paused.
        """
        self.assertBufferedWhilePaused(*_pausingConfigs()[3])

    def test_dataWhilePausedEOFCheck(self) -> None:
        """
        L{framing.EOFCheckReceiver} delivers nothing while paused.
        """
        self.assertBufferedWhilePaused(
            {"open_eof_check": True}, [b"p1\r\n", b"p2\r\n", b"p3\r\n"]
        )


class StickyErrorTests(SynchronousTestCase):
    """
    After C{framingError} the framer reads nothing more: data still arriving
    (already in flight, or decrypted by TLS) is neither delivered nor
    reported again.
    """

    CASES = {
        "EOFSplit": ({"open_eof_split": True, "package_max_length": 100}, b"x" * 101 + b"\r\n", b"a\r\n"),
        "EOFCheck": ({"open_eof_check": True, "package_max_length": 100}, b"x" * 101, b"a\r\n"),
        "Int32": (
            {"open_length_check": True, "package_max_length": 100},
            struct.pack(">I", 97),
            struct.pack(">I", 1) + b"a",
        ),
        "Length": (
            lengthConfig("c", 2, 0),
            b"\x00\x00\xff",
            lengthPacket("c", 2, 0, b"a"),
        ),
        "LengthFunc": (
            {"package_length_func": _kindLengthFunc(100)},
            kindPacket(b"", kind=0xFF),
            kindPacket(b"a"),
        ),
    }

    def assertSticky(self, name: str, closes: bool = False) -> None:
        """
        The bad chunk gives one error; a good packet afterwards gives neither
        a packet nor a second error.
        """
        config, bad, good = self.CASES[name]
        proto = connect(config)
        if closes:
            record = proto.framingError

            def framingError(reason: str) -> None:
                record(reason)
                proto.transport.loseConnection()

            proto.framingError = framingError
        feed(proto, [bad])
        self.assertEqual(len(proto.errors), 1)
        self.assertEqual(proto.packets, [])
        feed(proto, [good, good])
        self.assertEqual(proto.packets, [])
        self.assertEqual(len(proto.errors), 1, proto.errors)

    def test_eofSplit(self) -> None:
        """
        L{framing.EOFSplitReceiver} reads nothing after a framing error.
        """
        self.assertSticky("EOFSplit")

    def test_eofCheck(self) -> None:
        """
        L{framing.EOFCheckReceiver} reads nothing after a framing error.
        """
        self.assertSticky("EOFCheck")

    def test_int32(self) -> None:
        """
        L{framing.Int32PacketReceiver} reads nothing after a framing error.
        """
        self.assertSticky("Int32")

    def test_length(self) -> None:
        """
        L{framing.LengthPacketReceiver} reads nothing after a framing error.
        """
        self.assertSticky("Length")

    def test_lengthFunc(self) -> None:
        """
        L{framing.LengthFuncReceiver} reads nothing after a framing error.
        """
        self.assertSticky("LengthFunc")

    def test_closingHandler(self) -> None:
        """
        Nor does any framer when its C{framingError} closes the connection,
        as a server connection does.
        """
        for name in self.CASES:
            self.assertSticky(name, closes=True)
