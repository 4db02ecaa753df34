# -*- test-case-name: tests.test_directwrite -*-
"""
The direct write path: the one place that reads Twisted's C{tcp.Connection}
internals.

Twisted's C{transport.write} only queues bytes and asks the reactor to tell
it when the socket is writable, so a reply costs two epoll changes and a
loop turn.  When nothing is queued before them, L{writeDirect} sends the
bytes straight to the socket and queues only what the kernel did not take,
through C{transport.write}, so the order holds.

It relies on four attributes of C{twisted.internet.tcp.Connection}
(L{REQUIRED}); L{canWriteDirectly} checks them for each transport, so a
transport without them (TLS, a test double, a future Twisted that renamed
them) gets plain C{transport.write}.  C{tests.test_directwrite} fails loudly
if the installed Twisted no longer has them.
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable

from twisted.internet import tcp
from twisted.internet.abstract import FileDescriptor

__all__ = ["REQUIRED", "canWriteDirectly", "queuedBytes", "writeDirect", "writerFor"]

#: The C{tcp.Connection} attributes the direct path reads.
REQUIRED = ("_tempDataLen", "dataBuffer", "offset", "socket")


def canWriteDirectly(transport: Any) -> bool:
    """
    Whether C{transport} is a plain TCP socket transport exposing what the
    direct path reads.
    """
    return isinstance(transport, tcp.Connection) and all(
        hasattr(transport, name) for name in REQUIRED
    )


def queuedBytes(transport: Any) -> int:
    """
    What C{transport} holds unsent: exact for a plain TCP connection; for
    any other, Twisted's high-water mark (it only says it passed it).
    """
    if canWriteDirectly(transport):
        return len(transport.dataBuffer) - transport.offset + transport._tempDataLen
    return FileDescriptor.bufferSize


def writeDirect(transport: Any, data: bytes) -> None:
    """
    Write C{data} to the socket now if nothing is queued before it; queue
    the rest (or all of it) with C{transport.write}.
    """
    if (
        transport._tempDataLen
        or len(transport.dataBuffer) > transport.offset
        or transport.disconnecting
        or not transport.connected
    ):
        # Earlier bytes are queued (or the transport is closing): keep the
        # order and let Twisted write when the socket is writable.
        transport.write(data)
        return
    try:
        sent = transport.socket.send(data)
    except (BlockingIOError, InterruptedError):
        sent = 0
    except OSError:
        # Queue it so Twisted's own writer meets the error and closes the
        # connection the usual way.
        transport.write(data)
        return
    if sent < len(data):
        transport.write(data[sent:])


def writerFor(transport: Any) -> Callable[[bytes], None]:
    """
    The fastest correct C{write(data)} for C{transport}.
    """
    if canWriteDirectly(transport):
        return partial(writeDirect, transport)
    return transport.write
