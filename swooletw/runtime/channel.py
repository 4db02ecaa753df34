# -*- test-case-name: tests.test_channel -*-
"""
The channel between the master and one worker: a socketpair carrying
messages framed by a 4-byte length (L{Int32PacketReceiver}), each a tuple
C{(kind, *arguments)} encoded with C{marshal}.

Both ends are the same program (the worker is forked from the master), so
C{marshal}'s plain types (bytes, str, int, float, tuples, lists, dicts) are
all that crosses, and it is the cheapest codec the standard library has.
What a message does is looked up in an explicit table of handlers; an
unknown kind is logged and dropped.  AMP was the other candidate; its 64 KiB
limit per value would have meant chunking every large C{send()}.
"""

from __future__ import annotations

import marshal
import struct
from typing import Any, Callable

from twisted.internet.protocol import Factory
from twisted.logger import Logger

from swooletw.wire.framing import Int32PacketReceiver

__all__ = ["Channel", "ChannelFactory"]

_HEADER = struct.Struct(">I")


class Channel(Int32PacketReceiver):
    """
    One end of a master/worker channel.

    @ivar handlers: message kind -> callable taking the message's arguments.
    @ivar onLost: called with the reason when the channel closes.
    """

    log = Logger()
    #: the largest message, in bytes (the routers split their batches
    #: well below it)
    MAX_LENGTH = 64 << 20

    def __init__(self, handlers: dict[str, Callable[..., Any]], onLost: Callable[[Any], None]) -> None:
        self.handlers = handlers
        self.onLost = onLost

    def send(self, kind: str, *args: Any) -> bool:
        """
        Send one message.

        @return: C{False} (logged) if the channel is closed or the message
            is over L{MAX_LENGTH}.
        @raise ValueError: if an argument is not of a type C{marshal} takes.
        """
        if not self._connected:
            return False
        payload = marshal.dumps((kind,) + args)
        if len(payload) + 4 > self.MAX_LENGTH:
            self.log.error(
                "channel message {kind!r} of {size} bytes is over the limit of {limit}: dropped",
                kind=kind, size=len(payload), limit=self.MAX_LENGTH,
            )
            return False
        self.transport.writeSequence([_HEADER.pack(len(payload)), payload])
        return True

    @property
    def reachable(self) -> bool:
        """
        Whether the other end can still be reached.
        """
        return self._connected

    _connected = False

    def connectionMade(self) -> None:
        self._connected = True

    def packetReceived(self, packet: bytes) -> None:
        try:
            message = marshal.loads(memoryview(packet)[4:])
            kind, args = message[0], message[1:]
        except (EOFError, ValueError, TypeError, IndexError, KeyError):
            self.log.error("undecodable channel message of {size} bytes", size=len(packet))
            return
        if not isinstance(kind, str):
            self.log.error("channel message with a kind that is not a name: {kind!r}", kind=kind)
            return
        handler = self.handlers.get(kind)
        if handler is None:
            self.log.warn("unknown channel message {kind!r} dropped", kind=kind)
            return
        try:
            handler(*args)
        except Exception:
            self.log.failure("channel message {kind!r} failed", kind=kind)

    def framingError(self, reason: str) -> None:
        self.log.error("channel framing broken: {reason}", reason=reason)
        self.transport.loseConnection()

    def connectionLost(self, reason: Any) -> None:
        self._connected = False
        self.onLost(reason)


class ChannelFactory(Factory):
    """
    Builds the single L{Channel} of an adopted socketpair end.
    """

    noisy = False

    def __init__(self, channel: Channel) -> None:
        self.channel = channel

    def buildProtocol(self, addr: Any) -> Channel:
        return self.channel
