"""
The wire layer: bytes per connection.  Framing (L{framing}), the stream
protocol and port factory (L{stream}), UDP ports (L{udp}), the connection
table and counters (L{table}), and the direct write path (L{directwrite}).
"""

from __future__ import annotations

from typing import Any

__all__ = ["toBytes"]


def toBytes(data: Any) -> bytes:
    """
    What C{send} accepts, as bytes: PHP strings are bytes; a C{str} is sent
    as UTF-8.

    @raise TypeError: for anything else.
    """
    if isinstance(data, bytes):
        return data
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"can only send str or bytes, not {type(data).__name__}")
