"""
L{swooletw.runtime.channel}: the master/worker channel's framing and dispatch, over
in-memory transports (L{StringTransport} pairs and an L{iosim} pump).
"""

from __future__ import annotations

from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure

import marshal
import struct
from typing import Any

from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.test import iosim
from twisted.trial.unittest import TestCase

from swooletw.runtime.channel import Channel, ChannelFactory


def frame(payload: bytes) -> bytes:
    """
    One message on the wire: a 4-byte big-endian length, then the payload.
    """
    return struct.pack(">I", len(payload)) + payload


class Recorder:
    """
    Handlers that record every message as C{(kind, args)}.
    """

    def __init__(self, *kinds: str) -> None:
        self.messages: list[tuple[str, tuple[Any, ...]]] = []
        self.handlers = {kind: self._handler(kind) for kind in kinds}

    def _handler(self, kind: str) -> Any:
        return lambda *args: self.messages.append((kind, args))


class StringPair:
    """
    Two channels on L{StringTransport}s; L{pump} moves the bytes one end
    wrote to the other end, in chunks of C{chunkSize} (all at once by
    default).
    """

    def __init__(self, testCase: TestCase, kinds: tuple[str, ...] = ("hello", "data")) -> None:
        self.left = Recorder(*kinds)
        self.right = Recorder(*kinds)
        self.lost: list[Any] = []
        self.a = Channel(self.left.handlers, self.lost.append)
        self.b = Channel(self.right.handlers, self.lost.append)
        self.ta = StringTransport()
        self.tb = StringTransport()
        self.a.makeConnection(self.ta)
        self.b.makeConnection(self.tb)

    def pump(self, chunkSize: int | None = None) -> bytes:
        """
        Deliver what C{a} wrote to C{b}; return those bytes.
        """
        data = self.ta.value()
        self.ta.clear()
        feed(self.b, data, chunkSize)
        return data


def feed(channel: Channel, data: bytes, chunkSize: int | None = None) -> None:
    if chunkSize is None:
        channel.dataReceived(data)
        return
    for start in range(0, len(data), chunkSize):
        channel.dataReceived(data[start : start + chunkSize])


class ChannelRoundTripTests(TestCase):
    """
    Messages sent on one end arrive whole, in order, with their arguments,
    at the other end's handlers.
    """

    def test_wireFormat(self) -> None:
        """
        A message is a 4-byte big-endian length and the C{marshal} of the
        tuple C{(kind, *args)}.
        """
        pair = StringPair(self)
        pair.a.send("hello", 1, b"two")
        wire = pair.ta.value()
        (length,) = struct.unpack(">I", wire[:4])
        self.assertEqual(length, len(wire) - 4)
        # (marshal's reference flags vary with refcounts: compare decoded)
        self.assertEqual(marshal.loads(wire[4:]), ("hello", 1, b"two"))

    def test_roundTrip(self) -> None:
        """
        Every type marshal takes crosses unchanged.
        """
        pair = StringPair(self)
        args = (b"bytes", "str \u00e9", 3, -2**40, 2.5, (1, (2, 3)), [4, 5], {"k": {1: [b"v"]}}, None, True)
        pair.a.send("data", *args)
        pair.pump()
        self.assertEqual(pair.right.messages, [("data", args)])
        self.assertIsInstance(pair.right.messages[0][1][5], tuple)
        self.assertIsInstance(pair.right.messages[0][1][6], list)

    def test_noArguments(self) -> None:
        """
        A message without arguments calls its handler with none.
        """
        pair = StringPair(self)
        pair.a.send("hello")
        pair.pump()
        self.assertEqual(pair.right.messages, [("hello", ())])

    def test_severalInOneChunk(self) -> None:
        """
        Several messages read in one chunk are each delivered, in order.
        """
        pair = StringPair(self)
        for i in range(5):
            pair.a.send("data", i)
        pair.a.send("hello", "last")
        pair.pump()
        self.assertEqual(
            pair.right.messages,
            [("data", (i,)) for i in range(5)] + [("hello", ("last",))],
        )

    def test_splitAcrossChunks(self) -> None:
        """
        Messages cut anywhere, even one byte per read, are reassembled.
        """
        for chunkSize in (1, 3, 7):
            pair = StringPair(self)
            pair.a.send("data", b"x" * 10, "y")
            pair.a.send("hello", {"n": 1})
            pair.pump(chunkSize)
            self.assertEqual(
                pair.right.messages, [("data", (b"x" * 10, "y")), ("hello", ({"n": 1},))]
            )

    def test_largePayload(self) -> None:
        """
        A 5 MiB payload crosses whole, read in one chunk or in 64 KiB
        chunks, and the messages around it are intact.
        """
        big = bytes(range(256)) * (5 * 1024 * 4)
        self.assertEqual(len(big), 5 * 1024 * 1024)
        for chunkSize in (None, 65536):
            pair = StringPair(self)
            pair.a.send("hello", 1)
            pair.a.send("data", 7, big)
            pair.a.send("hello", 2)
            pair.pump(chunkSize)
            self.assertEqual([kind for kind, _ in pair.right.messages], ["hello", "data", "hello"])
            self.assertEqual(pair.right.messages[1][1][0], 7)
            self.assertTrue(pair.right.messages[1][1][1] == big)

    def test_bothDirections(self) -> None:
        """
        Both ends send and receive.
        """
        pair = StringPair(self)
        pair.b.send("hello", "from b")
        feed(pair.a, pair.tb.value())
        self.assertEqual(pair.left.messages, [("hello", ("from b",))])

    def test_iosimPair(self) -> None:
        """
        Two channels connected by L{iosim}'s loopback, as over the real
        socketpair.
        """
        left, right = Recorder("hello", "data"), Recorder("hello", "data")
        a = Channel(left.handlers, lambda reason: None)
        b = Channel(right.handlers, lambda reason: None)
        ta, tb = iosim.makeFakeServer(a), iosim.makeFakeClient(b)
        # Channel.send checks transport.connected, which tcp transports have
        # and iosim's FakeTransport does not.
        ta.connected = tb.connected = True
        pump = iosim.connect(a, ta, b, tb, greet=False)
        big = b"\x01" * (3 * 1024 * 1024)
        a.send("data", big)
        a.send("hello", "after")
        b.send("hello", "back")
        pump.flush()
        self.assertEqual(len(right.messages), 2)
        self.assertTrue(right.messages[0][1][0] == big)
        self.assertEqual(right.messages[1], ("hello", ("after",)))
        self.assertEqual(left.messages, [("hello", ("back",))])

    def test_sendWhenDisconnected(self) -> None:
        """
        A send before the channel is connected, or after its transport is
        gone, is dropped without error and says so (C{False}).
        """
        channel = Channel({}, lambda reason: None)
        self.assertIs(channel.send("hello", 1), False)
        transport = StringTransport()
        channel.makeConnection(transport)
        channel.connectionLost(Failure(ConnectionDone()))
        self.assertIs(channel.send("hello", 2), False)
        self.assertEqual(transport.value(), b"")

    def test_sendUnmarshallable(self) -> None:
        """
        An argument marshal cannot encode raises C{ValueError} and writes
        nothing.
        """
        pair = StringPair(self)
        self.assertRaises(ValueError, pair.a.send, "data", object())
        self.assertEqual(pair.ta.value(), b"")

    def test_connectionLost(self) -> None:
        """
        C{onLost} gets the reason when the channel closes.
        """
        pair = StringPair(self)
        pair.a.connectionLost("the reason")
        self.assertEqual(pair.lost, ["the reason"])

    def test_factory(self) -> None:
        """
        L{ChannelFactory} builds its one channel.
        """
        channel = Channel({}, lambda reason: None)
        self.assertIs(ChannelFactory(channel).buildProtocol(None), channel)


class ChannelErrorTests(TestCase):
    """
    Bad messages are logged and dropped; the channel goes on.
    """

    def deliverLogged(self, channel: Channel, data: bytes) -> list[dict[str, Any]]:
        with capturedLogs() as events:
            channel.dataReceived(data)
        return list(events)

    def test_unknownKind(self) -> None:
        """
        A message of a kind with no handler is logged with its kind and
        dropped; the next message is delivered.
        """
        pair = StringPair(self)
        pair.a.send("nosuchkind", 1)
        pair.a.send("hello", 2)
        events = self.deliverLogged(pair.b, pair.ta.value())
        self.assertEqual(pair.right.messages, [("hello", (2,))])
        warnings = [e for e in events if e["log_level"] == LogLevel.warn]
        self.assertEqual(len(warnings), 1)
        self.assertIn("'nosuchkind'", formatEvent(warnings[0]))
        self.assertIn("dropped", formatEvent(warnings[0]))

    def test_undecodablePayload(self) -> None:
        """
        A payload that is not marshal data, or not a message tuple, is
        logged as undecodable with its size; later messages still arrive.
        """
        pair = StringPair(self)
        bad = [b"\xff\xfe garbage", b"", marshal.dumps(5), marshal.dumps(()), marshal.dumps({})]
        data = b"".join(frame(payload) for payload in bad) + frame(marshal.dumps(("hello", "ok")))
        events = self.deliverLogged(pair.b, data)
        self.assertEqual(pair.right.messages, [("hello", ("ok",))])
        errors = [formatEvent(e) for e in events if e["log_level"] == LogLevel.error]
        self.assertEqual(len(errors), len(bad), errors)
        self.assertIn(f"undecodable channel message of {4 + len(bad[0])} bytes", errors[0])

    def test_kindNotAString(self) -> None:
        """
        A decodable tuple whose kind is not a string (here an unhashable
        list) is logged and dropped like any bad message: it does not raise
        out of C{dataReceived} (which would drop the whole channel).
        """
        pair = StringPair(self)
        data = frame(marshal.dumps(([1], 2))) + frame(marshal.dumps(("hello", "ok")))
        events = self.deliverLogged(pair.b, data)
        self.assertEqual(pair.right.messages, [("hello", ("ok",))])
        self.assertTrue(any(e["log_level"] in (LogLevel.warn, LogLevel.error) for e in events))

    def test_handlerFails(self) -> None:
        """
        A handler that raises is logged with the message kind; the channel
        keeps delivering.
        """
        delivered = []

        def fails(*args: Any) -> None:
            raise ZeroDivisionError("handler bug")

        channel = Channel({"bad": fails, "good": delivered.append}, lambda reason: None)
        channel.makeConnection(StringTransport())
        data = frame(marshal.dumps(("bad", 1))) + frame(marshal.dumps(("good", 2)))
        events = self.deliverLogged(channel, data)
        self.assertEqual(delivered, [2])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertTrue(any("'bad'" in formatEvent(e) for e in events))

    def test_hugeLengthBreaksFraming(self) -> None:
        """
        A length header over C{MAX_LENGTH} (1 GiB) is a broken channel:
        logged, and the connection closed.
        """
        pair = StringPair(self)
        events = self.deliverLogged(pair.b, struct.pack(">I", (1 << 30) + 1) + b"x")
        self.assertTrue(pair.tb.disconnecting)
        self.assertEqual(pair.right.messages, [])
        errors = [formatEvent(e) for e in events if e["log_level"] == LogLevel.error]
        self.assertEqual(len(errors), 1)
        self.assertIn("channel framing broken", errors[0])
