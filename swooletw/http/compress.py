"""
Swoole's C{http_compression}: choosing a content coding from
C{Accept-Encoding} and compressing a response body, whole or streamed.

Choices:
  - gzip and deflate only (the stdlib's zlib); Swoole's C{br} and C{zstd}
    need libraries swooletw does not depend on;
  - "deflate" is the zlib-wrapped format RFC 9110 names, not the raw
    deflate stream Swoole sends (which some clients reject);
  - q-values are honoured (Swoole takes the first coding it knows), and
    the server's order of preference breaks ties;
  - levels are clamped as Swoole does: 0 means 1, above 9 means 9, a
    negative level means zlib's default (6);
  - a body is compressed when it is at least C{compression_min_length}
    bytes long (Swoole's test is C{length < min_length}: do not compress).
The HTTP layer adds C{Content-Encoding} and C{Vary: Accept-Encoding}, and
leaves alone responses already encoded, 206 ranges and files sent with
C{sendfile} (Swoole does not compress those either).
"""

from __future__ import annotations

import re
import zlib
from typing import Sequence

__all__ = [
    "DEFAULT_COMPRESSION_LEVEL",
    "DEFAULT_COMPRESSION_MIN_LENGTH",
    "ENCODINGS",
    "Compressor",
    "chooseEncoding",
    "clampLevel",
    "compressBody",
    "compressible",
    "shouldCompress",
]

DEFAULT_COMPRESSION_MIN_LENGTH = 20
"""Swoole's C{compression_min_length} (alias C{http_compression_min_length}) default, in bytes."""

DEFAULT_COMPRESSION_LEVEL = 1
"""Swoole's C{http_compression_level} default (1 fastest .. 9 smallest)."""

ENCODINGS = ("gzip", "deflate")
"""The codings offered, in the server's order of preference."""

_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}
_ALIASES = {"x-gzip": "gzip"}  # RFC 9110 section 8.4.1.3
_QVALUE = re.compile(r"0(\.\d{0,3})?|1(\.0{0,3})?", re.ASCII)
_COMPRESSIBLE = frozenset({
    "application/json",
    "application/javascript",
    "application/x-javascript",
    "application/ecmascript",
    "application/xml",
    "application/wasm",
    "application/x-www-form-urlencoded",
    "application/vnd.ms-fontobject",
    "font/ttf",
    "font/otf",
    "image/bmp",
    "image/x-icon",
    "image/vnd.microsoft.icon",
})
_NOT_COMPRESSIBLE = frozenset({"text/event-stream"})  # streamed: compression would buffer it


def chooseEncoding(acceptEncoding: str | None,
                   offered: Sequence[str] = ENCODINGS) -> str | None:
    """
    The coding of C{offered} the client prefers, by its C{Accept-Encoding}
    q-values (C{q=0} refuses, C{*} stands for codings not named), or C{None}
    to send the body as it is: no header, none acceptable, or C{identity}
    (named, or through C{*}) weighted above every offered coding.  Ties go
    to C{offered}'s order, before identity.
    """
    if acceptEncoding is None:
        return None
    weights = _parseAcceptEncoding(acceptEncoding)
    anyOther = weights.get("*")
    # identity competes only when named, or through "*": "gzip;q=0.5" still asks for gzip
    identity = weights.get("identity", 0.0 if anyOther is None else anyOther)
    best, bestWeight = None, 0.0
    for coding in offered:
        weight = weights.get(coding, 0.0 if anyOther is None else anyOther)
        if weight > bestWeight:
            best, bestWeight = coding, weight
    return best if best is not None and bestWeight >= identity else None


def _parseAcceptEncoding(value: str) -> dict[str, float]:
    """Coding name (lower-case) to q-value; elements with a bad q are dropped."""
    weights: dict[str, float] = {}
    for element in value.split(","):
        name, *params = (part.strip() for part in element.split(";"))
        name = _ALIASES.get(name.lower(), name.lower())
        weight = _qValue(params)
        if name and weight is not None:
            weights[name] = max(weight, weights.get(name, 0.0))
    return weights


def _qValue(params: list[str]) -> float | None:
    weight = 1.0
    for param in params:
        key, _, raw = param.partition("=")
        if key.strip().lower() == "q":
            if _QVALUE.fullmatch(raw.strip()) is None:
                return None
            weight = float(raw)
    return weight


def compressible(contentType: str | None) -> bool:
    """
    Whether a body of this C{Content-Type} gains from compression: text,
    JSON, JavaScript, XML and SVG do; images, audio, video, fonts in
    WOFF and archives are compressed already.
    """
    if not contentType:
        return False
    media = contentType.split(";", 1)[0].strip().lower()
    if media in _NOT_COMPRESSIBLE:
        return False
    return (media.startswith("text/") or media in _COMPRESSIBLE
            or media.endswith(("+json", "+xml")))


def shouldCompress(contentType: str | None, length: int,
                   minLength: int = DEFAULT_COMPRESSION_MIN_LENGTH) -> bool:
    """Whether a body of C{length} bytes and this type is worth compressing."""
    return length >= minLength and compressible(contentType)


def clampLevel(level: int) -> int:
    """Swoole's reading of C{http_compression_level}: 1..9, negative = 6."""
    level = int(level)
    if level < 0:
        return 6
    return min(max(level, 1), 9)


class Compressor:
    """
    A streaming compressor for one response body: C{compress} each chunk,
    then C{flush} once for the end of the stream.  Concatenated, the outputs
    are one gzip member (C{"gzip"}) or one zlib stream (C{"deflate"}).
    """

    def __init__(self, encoding: str, level: int = DEFAULT_COMPRESSION_LEVEL) -> None:
        if encoding not in _WBITS:
            raise ValueError(f"unknown content coding {encoding!r}; expected one of {ENCODINGS}")
        self.encoding = encoding
        self.level = clampLevel(level)
        self._zlib = zlib.compressobj(self.level, zlib.DEFLATED, _WBITS[encoding])
        self._finished = False

    def compress(self, chunk: bytes) -> bytes:
        """Compressed bytes ready so far (often none: zlib buffers)."""
        self._checkOpen()
        return self._zlib.compress(chunk)

    def syncFlush(self) -> bytes:
        """Everything given so far, decodable by the client now (Z_SYNC_FLUSH)."""
        self._checkOpen()
        return self._zlib.flush(zlib.Z_SYNC_FLUSH)

    def flush(self) -> bytes:
        """The end of the stream; later calls return C{b""}."""
        if self._finished:
            return b""
        self._finished = True
        return self._zlib.flush(zlib.Z_FINISH)

    def _checkOpen(self) -> None:
        if self._finished:
            raise ValueError("Compressor already flushed")


def compressBody(body: bytes, encoding: str, level: int = DEFAULT_COMPRESSION_LEVEL) -> bytes:
    """A whole body compressed at once, as C{Response.end(body)} needs."""
    compressor = Compressor(encoding, level)
    return compressor.compress(body) + compressor.flush()
