# -*- test-case-name: tests.test_framing -*-
"""
Swoole's packet framing as Twisted protocols.

Each framer turns a byte stream into whole packets and hands each one to
C{self.packetReceived(packet)}, exactly as Swoole hands it to C{receive}: with
its EOF marker or its length header included.  Input that breaks the framing
(a packet over C{package_max_length}, a negative or impossible length, a
C{package_length_func} that says the data is bad) goes to
C{self.framingError(reason)} and nothing after it is read.

The framers are protocol classes meant to be combined with a class that
provides C{packetReceived} and C{framingError}: the server connection in
L{swooletw.wire.stream} and the clients in L{swooletw.client} both use them,
so both sides split packets with the same code.

 - L{RawReceiver}: no framing, every chunk read is one packet.
 - L{EOFCheckReceiver}: C{open_eof_check}: everything up to the last EOF in
   the buffer, possibly several packets at once (Swoole's cheap mode).
 - L{EOFSplitReceiver}: C{open_eof_split}: one packet per EOF; built on
   L{LineReceiver} (C{delimiter}, C{MAX_LENGTH}, pausing), with a splitter
   that walks the buffer by offset instead of copying it per line.
 - L{Int32PacketReceiver}: C{open_length_check} with Swoole's standard
   header (C{N}, offset 0, body offset 4); built on L{Int32StringReceiver}.
 - L{LengthPacketReceiver}: the general length header, any
   C{package_length_type}, C{package_length_offset} and
   C{package_body_offset}; the generalisation of L{IntNStringReceiver}.
 - L{LengthFuncReceiver}: C{package_length_func}.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.protocols.basic import Int32StringReceiver, IntNStringReceiver, LineReceiver

from swooletw.settings import lengthStruct

__all__ = [
    "RawReceiver",
    "EOFCheckReceiver",
    "EOFSplitReceiver",
    "Int32PacketReceiver",
    "LengthPacketReceiver",
    "LengthFuncReceiver",
    "Framing",
    "framingFor",
]


class _Framer:
    """
    What every framer needs from the class it is combined with.
    """

    def packetReceived(self, packet: bytes) -> None:
        """
        One whole packet, framing included.
        """
        raise NotImplementedError()

    def framingError(self, reason: str) -> None:
        """
        The peer broke the framing; C{reason} says how, with the limit.
        """
        raise NotImplementedError()

    _failed = False

    def bufferedBytes(self) -> int:
        """
        Bytes received that are not yet a whole packet.
        """
        return len(getattr(self, "_buffer", b"")) + len(getattr(self, "_unprocessed", b""))
    #: Whether the last framing error was a packet over
    #: C{package_max_length} (else the data was malformed).
    framingErrorTooLarge = False
    #: The exception behind the last framing error, when user code
    #: (C{package_length_func}) raised one, with its traceback.
    framingErrorFailure: Failure | None = None

    def _fail(self, reason: str, *, tooLarge: bool, failure: Failure | None = None) -> None:
        self._failed = True
        self.framingErrorTooLarge = tooLarge
        self.framingErrorFailure = failure
        self.framingError(reason)


class RawReceiver(_Framer, Protocol):
    """
    No framing: each chunk read from the socket is one packet (Swoole with
    no protocol option set).
    """

    paused = False

    def dataReceived(self, data: bytes) -> None:
        self.packetReceived(data)


class EOFCheckReceiver(_Framer, LineReceiver):
    """
    C{open_eof_check}: hands over everything up to and including the last
    EOF marker in the buffer, which may be several packets, as Swoole does.
    Bytes after the last marker wait for more data.
    """

    _buffer = b""

    def dataReceived(self, data: bytes) -> None:
        if self._failed:
            return
        buf = self._buffer + data if self._buffer else data
        if self.paused:
            self._buffer = buf
            return
        eof = self.delimiter
        end = buf.rfind(eof)
        if end < 0:
            self._buffer = buf
            if len(buf) > self.MAX_LENGTH:
                self._buffer = b""
                self._fail(
                    f"no EOF within {len(buf)} bytes, over package_max_length "
                    f"{self.MAX_LENGTH}",
                    tooLarge=True,
                )
            return
        end += len(eof)
        maxLength = self.MAX_LENGTH
        start = 0
        while start < end:
            if end - start <= maxLength:
                cut = end
            else:
                cut = buf.rfind(eof, start, start + maxLength)
                if cut < 0:
                    self._buffer = b""
                    self._fail(
                        f"packet of more than {maxLength} bytes, over "
                        f"package_max_length {maxLength}",
                        tooLarge=True,
                    )
                    return
                cut += len(eof)
            self.packetReceived(buf[start:cut] if start or cut < len(buf) else buf)
            start = cut
            if self.paused or self.transport.disconnecting:
                break
        self._buffer = buf[start:]
        if start == end and len(self._buffer) > maxLength:
            self._buffer = b""
            self._fail(
                f"no EOF within {len(buf) - end} bytes, over package_max_length "
                f"{maxLength}",
                tooLarge=True,
            )


class EOFSplitReceiver(_Framer, LineReceiver):
    """
    C{open_eof_split}: one packet per EOF marker, the marker included.
    C{MAX_LENGTH} is C{package_max_length} and counts the marker.
    """

    _buffer = b""

    def dataReceived(self, data: bytes) -> None:
        if self._failed:
            return
        buf = self._buffer + data if self._buffer else data
        if self.paused:
            self._buffer = buf
            return
        eof = self.delimiter
        eofLength = len(eof)
        maxLength = self.MAX_LENGTH
        find = buf.find
        total = len(buf)
        deliver = self.packetReceived
        transport = self.transport
        start = 0
        end = find(eof)
        while end >= 0:
            end += eofLength
            if end - start > maxLength:
                self._buffer = b""
                self._fail(
                    f"packet of {end - start} bytes is over package_max_length {maxLength}",
                    tooLarge=True,
                )
                return
            deliver(buf[start:end] if start or end < total else buf)
            start = end
            if self.paused or transport.disconnecting:
                break
            end = find(eof, start)
        rest = buf[start:] if start else buf
        if len(rest) > maxLength:
            self._buffer = b""
            self._fail(
                f"no EOF within {len(rest)} bytes, over package_max_length {maxLength}",
                tooLarge=True,
            )
            return
        self._buffer = rest


class Int32PacketReceiver(_Framer, Int32StringReceiver):
    """
    C{open_length_check} with the standard header: a 4-byte big-endian body
    length at offset 0, body at offset 4 (PHP C{pack('N', strlen($body))}).
    C{MAX_LENGTH} is C{package_max_length} and counts the header.
    """

    _unprocessed = b""
    _unpackLength = lengthStruct("N").unpack_from

    def dataReceived(self, data: bytes) -> None:
        if self._failed:
            return
        buf = self._unprocessed + data if self._unprocessed else data
        if self.paused:
            self._unprocessed = buf
            return
        total = len(buf)
        maxLength = self.MAX_LENGTH
        unpack = self._unpackLength
        deliver = self.packetReceived
        transport = self.transport
        start = 0
        while total - start >= 4:
            end = start + 4 + unpack(buf, start)[0]
            if end - start > maxLength:
                self._unprocessed = b""
                self._fail(
                    f"length header announces {end - start} bytes, over "
                    f"package_max_length {maxLength}",
                    tooLarge=True,
                )
                return
            if end > total:
                break
            deliver(buf[start:end] if start or end < total else buf)
            start = end
            if self.paused or transport.disconnecting:
                break
        self._unprocessed = buf[start:] if start else buf


class LengthPacketReceiver(_Framer, IntNStringReceiver):
    """
    C{open_length_check} with any header: the length field of type
    C{lengthType} at C{lengthOffset}; the packet is C{bodyOffset + length}
    bytes long (Swoole's rule: body offset 0 means the length counts the
    header too).  A length that is negative or shorter than the header is
    garbage and closes the connection.
    """

    _unprocessed = b""
    lengthOffset = 0
    bodyOffset = 4
    lengthType = "N"

    def configureLength(self, lengthType: str, lengthOffset: int, bodyOffset: int) -> None:
        """
        Set the header layout (done once per connection by the factory).
        """
        self.lengthType = lengthType
        self.lengthOffset = lengthOffset
        self.bodyOffset = bodyOffset
        fmt = lengthStruct(lengthType)
        self.structFormat = fmt.format
        self.prefixLength = fmt.size
        self._unpackLength = fmt.unpack_from

    def dataReceived(self, data: bytes) -> None:
        if self._failed:
            return
        buf = self._unprocessed + data if self._unprocessed else data
        if self.paused:
            self._unprocessed = buf
            return
        total = len(buf)
        maxLength = self.MAX_LENGTH
        unpack = self._unpackLength
        lengthOffset = self.lengthOffset
        bodyOffset = self.bodyOffset
        headerEnd = lengthOffset + self.prefixLength
        deliver = self.packetReceived
        transport = self.transport
        start = 0
        while total - start >= headerEnd:
            size = bodyOffset + unpack(buf, start + lengthOffset)[0]
            if size < headerEnd or size < bodyOffset:
                self._unprocessed = b""
                self._fail(
                    f"bad length field: packet of {size} bytes cannot hold its "
                    f"{max(headerEnd, bodyOffset)}-byte header",
                    tooLarge=False,
                )
                return
            if size > maxLength:
                self._unprocessed = b""
                self._fail(
                    f"length header announces {size} bytes, over "
                    f"package_max_length {maxLength}",
                    tooLarge=True,
                )
                return
            end = start + size
            if end > total:
                break
            deliver(buf[start:end] if start or end < total else buf)
            start = end
            if self.paused or transport.disconnecting:
                break
        self._unprocessed = buf[start:] if start else buf


class LengthFuncReceiver(_Framer, IntNStringReceiver):
    """
    C{package_length_func}: the function gets the buffered bytes and
    returns the whole packet's length, C{0} for "need more data" or a
    negative number for "bad data" (which closes the connection).
    """

    _unprocessed = b""
    lengthFunc: Callable[[bytes], int]

    def dataReceived(self, data: bytes) -> None:
        if self._failed:
            return
        buf = self._unprocessed + data if self._unprocessed else data
        if self.paused:
            self._unprocessed = buf
            return
        maxLength = self.MAX_LENGTH
        while buf:
            try:
                size = self.lengthFunc(buf)
            except Exception as e:
                self._unprocessed = b""
                self._fail(f"package_length_func raised {e!r}", tooLarge=False, failure=Failure())
                return
            if isinstance(size, bool) or not isinstance(size, int):
                self._unprocessed = b""
                self._fail(
                    f"package_length_func returned {size!r}, not an integer",
                    tooLarge=False,
                )
                return
            if size < 0:
                self._unprocessed = b""
                self._fail(f"package_length_func rejected the data ({size})", tooLarge=False)
                return
            if size > maxLength or (size == 0 and len(buf) > maxLength):
                self._unprocessed = b""
                self._fail(
                    f"packet of {size or len(buf)} bytes is over package_max_length "
                    f"{maxLength}",
                    tooLarge=True,
                )
                return
            if size == 0 or size > len(buf):
                break
            self.packetReceived(buf[:size])
            buf = buf[size:]
            if self.paused or self.transport.disconnecting:
                break
        self._unprocessed = buf


class Framing:
    """
    The framing of one port (or client), computed once from its settings:
    which framer class to use and what each new protocol is given.

    @ivar framer: one of the framer classes of this module.
    @ivar attributes: instance attributes to set on each new protocol.
    @ivar layout: C{(length type, length offset, body offset)} for
        L{LengthPacketReceiver}, else L{None}.
    """

    def __init__(
        self,
        framer: type,
        attributes: dict[str, Any],
        layout: tuple[str, int, int] | None = None,
    ) -> None:
        self.framer = framer
        self.attributes = attributes
        self.layout = layout

    def apply(self, protocol: Any) -> None:
        """
        Configure a new protocol instance for this framing.
        """
        # setattr, not __dict__.update: on CPython 3.11 a materialised
        # instance __dict__ stops the interpreter from specialising the
        # protocol's attribute accesses (a quarter of the in-process cost
        # of a small echoed packet).
        for name, value in self.attributes.items():
            setattr(protocol, name, value)
        if self.layout is not None:
            protocol.configureLength(*self.layout)


def framingFor(settings: Mapping[str, Any]) -> Framing:
    """
    Choose the framer for a port's (already validated) settings.
    """
    maxLength = {"MAX_LENGTH": settings["package_max_length"]}
    if settings["package_length_func"] is not None:
        return Framing(
            LengthFuncReceiver,
            dict(maxLength, lengthFunc=settings["package_length_func"]),
        )
    if settings["open_length_check"]:
        layout = (
            settings["package_length_type"],
            settings["package_length_offset"],
            settings["package_body_offset"],
        )
        if layout == ("N", 0, 4):
            return Framing(Int32PacketReceiver, maxLength)
        return Framing(LengthPacketReceiver, maxLength, layout)
    eof = dict(maxLength, delimiter=settings["package_eof"])
    if settings["open_eof_split"]:
        return Framing(EOFSplitReceiver, eof)
    if settings["open_eof_check"]:
        return Framing(EOFCheckReceiver, eof)
    return Framing(RawReceiver, {})
