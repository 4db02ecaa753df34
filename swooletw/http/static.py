"""
Swoole's static handler (C{enable_static_handler}, C{document_root},
C{static_handler_locations}) as a pure decision: which file answers a
request, with which status, headers and byte range.  No socket I/O here and
no file is opened: the HTTP layer sends C{length} bytes of C{path} from
C{offset} (e.g. with C{sendfile}).

Choices, where Swoole is silent or unsafe:
  - hostile paths (C{..}, C{.} or empty segments such as C{//}, an encoded
    slash C{%2f}, a backslash, a NUL, invalid UTF-8, no leading C{/}, a
    symlink whose real path leaves the root, a file that is not regular)
    get 404, never 403, so the answer does not reveal what exists.  The
    path is percent-decoded exactly once;
  - a missing file goes to the application (C{None}), except under
    C{static_handler_locations}, where Swoole answers 404 itself;
  - a directory goes to the application (Swoole's defaults: no
    C{http_index_files}, no C{http_autoindex});
  - a location matches whole segments (C{/static} covers C{/static/a.css},
    not C{/staticky}), case-sensitively;
  - C{If-None-Match} (weak comparison) takes precedence over
    C{If-Modified-Since} (second precision), as RFC 9110 says;
  - one byte range only: several, an invalid one, or any on an empty file
    get the whole file (200).  C{If-Range} is honoured (strong ETag or the
    exact Last-Modified date); when it does not match: 200.
"""

from __future__ import annotations

import mimetypes
import os
import re
import stat
from dataclasses import dataclass
from datetime import datetime, timezone
from email.utils import formatdate
from typing import Mapping, Sequence
from urllib.parse import unquote_to_bytes

__all__ = ["StaticFiles", "StaticResult", "httpDate", "parseHttpDate"]

_MIME = mimetypes.MimeTypes()  # the built-in table only: same answers on every host
_MIME_OVERRIDES = {
    ".js": "text/javascript",  # RFC 9239
    ".mjs": "text/javascript",
    ".woff": "font/woff",
    ".woff2": "font/woff2",
    ".md": "text/markdown",
    ".map": "application/json",
}
_ENCODED_TYPES = {
    "gzip": "application/gzip",
    "bzip2": "application/x-bzip2",
    "xz": "application/x-xz",
    "compress": "application/x-compress",
}
_MONTHS = {m: i for i, m in enumerate(
    "jan feb mar apr may jun jul aug sep oct nov dec".split(), 1)}
_FLAGS = re.IGNORECASE | re.ASCII  # ASCII digits and letters only (no Kelvin sign)
_DATE_FORMS = (
    # IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT
    (re.compile(r"[a-z]{3}, (\d\d) ([a-z]{3}) (\d{4}) (\d\d):(\d\d):(\d\d) gmt", _FLAGS), "dmyHMS"),
    # RFC 850: Sunday, 06-Nov-94 08:49:37 GMT
    (re.compile(r"[a-z]{6,9}, (\d\d)-([a-z]{3})-(\d\d) (\d\d):(\d\d):(\d\d) gmt", _FLAGS), "dmyHMS"),
    # asctime: Sun Nov  6 08:49:37 1994
    (re.compile(r"[a-z]{3} ([a-z]{3}) ([ \d]\d) (\d\d):(\d\d):(\d\d) (\d{4})", _FLAGS), "mdHMSy"),
)
_RANGE_SPEC = re.compile(r"(\d*)\s*-\s*(\d*)", re.ASCII)
_ENCODED_SLASH = re.compile(rb"%2f", re.I)
_HUGE = 10**18


def httpDate(timestamp: float) -> str:
    """An RFC 9110 IMF-fixdate (C{Sun, 06 Nov 1994 08:49:37 GMT})."""
    return formatdate(timestamp, usegmt=True)


def parseHttpDate(value: str) -> float | None:
    """
    The POSIX timestamp of an HTTP date in any of RFC 9110's three forms
    (IMF-fixdate, RFC 850, asctime), or C{None} if C{value} is not one.
    """
    text = value.strip()
    for pattern, order in _DATE_FORMS:
        match = pattern.fullmatch(text)
        if match is not None:
            return _dateFromParts(dict(zip(order, match.groups())))
    return None


def _dateFromParts(parts: dict[str, str]) -> float | None:
    year = int(parts["y"])
    if year < 100:  # RFC 850's two-digit year
        year += 2000 if year < 70 else 1900
    try:
        return datetime(year, _MONTHS[parts["m"].lower()], int(parts["d"]), int(parts["H"]),
                        int(parts["M"]), min(int(parts["S"]), 59), tzinfo=timezone.utc).timestamp()
    except (KeyError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class StaticResult:
    """
    How to answer a static request: C{status}, the response C{headers}
    (C{(name, value)} strings), the real file C{path} (C{None} for 404),
    and the C{length} bytes from C{offset} to send as the body (0 for 304,
    404, 416 and HEAD; C{Content-Length} still tells what GET would send).
    """

    status: int
    headers: list[tuple[str, str]]
    path: str | None
    offset: int = 0
    length: int = 0
    head: bool = False


class _Refused(Exception):
    """A hostile or unservable path: 404."""


class _Missing(Exception):
    """No such file: the application's, or 404 under locations."""


class _Pass(Exception):
    """A directory: the application's."""


class StaticFiles:
    """
    The files under C{documentRoot}, served for the URL path prefixes in
    C{locations} (Swoole's C{static_handler_locations}; C{None} or empty:
    every path).
    """

    def __init__(self, documentRoot: str, locations: Sequence[str] | None = None) -> None:
        if not isinstance(documentRoot, str) or not os.path.isdir(documentRoot):
            raise ValueError(f"document_root {documentRoot!r} is not an existing directory")
        self.documentRoot = os.path.realpath(documentRoot)
        self.locations = tuple(_checkLocation(each) for each in locations or ())

    def lookup(self, method: bytes, rawPath: bytes,
               headers: Mapping[str, str]) -> StaticResult | None:
        """
        The static answer to a request for C{rawPath} (the request target,
        query included or not), or C{None} to hand it to the application.
        """
        if method not in (b"GET", b"HEAD"):
            return None
        head = method == b"HEAD"
        raw = rawPath.split(b"?", 1)[0].split(b"#", 1)[0]
        decoded = unquote_to_bytes(raw)
        if self.locations and not self._located(decoded):
            return None
        try:
            name, real, info = self._resolve(raw, decoded)
        except _Pass:
            return None
        except _Missing:
            return _notFound(head) if self.locations else None
        except _Refused:
            return _notFound(head)
        return _answer(name, real, info, headers, head)

    def _located(self, decoded: bytes) -> bool:
        for location in self.locations:
            prefix = location.rstrip("/").encode("utf-8")
            if decoded == prefix or decoded.startswith(prefix + b"/"):
                return True
        return False

    def _resolve(self, raw: bytes, decoded: bytes) -> tuple[str, str, os.stat_result]:
        segments, wantsDirectory = _segments(raw, decoded)
        candidate = os.path.join(self.documentRoot, *segments)
        real, info = self._stat(candidate)
        if stat.S_ISDIR(info.st_mode):
            raise _Pass()
        if wantsDirectory:
            raise _Missing()
        if not stat.S_ISREG(info.st_mode):
            raise _Refused()
        return candidate, real, info

    def _stat(self, candidate: str) -> tuple[str, os.stat_result]:
        real = os.path.realpath(candidate)
        if os.path.commonpath([real, self.documentRoot]) != self.documentRoot:
            raise _Refused()
        try:
            return real, os.stat(real)
        except (FileNotFoundError, NotADirectoryError):
            raise _Missing() from None
        except (OSError, ValueError):
            raise _Refused() from None


def _checkLocation(location: str) -> str:
    if not isinstance(location, str) or not location.startswith("/"):
        raise ValueError(f"static_handler_locations entry {location!r} must start with '/'")
    return location


def _segments(raw: bytes, decoded: bytes) -> tuple[list[str], bool]:
    """The path's segments, and whether it ends with C{/}; L{_Refused} if hostile."""
    if (not decoded.startswith(b"/") or _ENCODED_SLASH.search(raw)
            or b"\0" in decoded or b"\\" in decoded):
        raise _Refused()
    try:
        text = decoded.decode("utf-8")
    except UnicodeDecodeError:
        raise _Refused() from None
    segments = text[1:].split("/")
    wantsDirectory = segments[-1] == ""
    if wantsDirectory:
        segments.pop()
    if any(segment in ("", ".", "..") for segment in segments):
        raise _Refused()
    return segments, wantsDirectory


def _notFound(head: bool) -> StaticResult:
    return StaticResult(404, [("Content-Length", "0")], None, 0, 0, head)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """C{name} (lower-case) from C{headers}, whatever the case of their names."""
    value = headers.get(name)
    if value is None:
        for key, each in headers.items():
            if key.lower() == name:
                return each
    return value


def _contentType(name: str) -> str:
    suffix = os.path.splitext(name)[1].lower()
    kind = _MIME_OVERRIDES.get(suffix)
    if kind is None:
        kind, encoding = _MIME.guess_type(name, strict=False)
        if encoding is not None:
            kind = _ENCODED_TYPES.get(encoding, "application/octet-stream")
    kind = kind or "application/octet-stream"
    return kind + "; charset=utf-8" if kind.startswith("text/") else kind


def _answer(name: str, real: str, info: os.stat_result,
            headers: Mapping[str, str], head: bool) -> StaticResult:
    size, mtime = info.st_size, int(info.st_mtime)
    etag = f'"{info.st_mtime_ns:x}-{size:x}"'
    validators = [("Last-Modified", httpDate(mtime)), ("ETag", etag)]
    if _notModified(headers, mtime, etag):
        return StaticResult(304, validators, real, 0, 0, head)
    common = [("Content-Type", _contentType(name))] + validators + [("Accept-Ranges", "bytes")]
    wanted = _header(headers, "range")
    span = None
    if wanted is not None and _ifRangeHolds(_header(headers, "if-range"), mtime, etag):
        span = _parseRange(wanted, size)
    if span is None:
        return _body(200, common, real, 0, size, head)
    if span == (-1, -1):
        extra = [("Content-Range", f"bytes */{size}"), ("Content-Length", "0")]
        return StaticResult(416, validators + [("Accept-Ranges", "bytes")] + extra, real, 0, 0, head)
    offset, length = span
    common.append(("Content-Range", f"bytes {offset}-{offset + length - 1}/{size}"))
    return _body(206, common, real, offset, length, head)


def _body(status: int, headers: list[tuple[str, str]], real: str,
          offset: int, length: int, head: bool) -> StaticResult:
    headers = headers + [("Content-Length", str(length))]
    return StaticResult(status, headers, real, offset, 0 if head else length, head)


def _notModified(headers: Mapping[str, str], mtime: int, etag: str) -> bool:
    noneMatch = _header(headers, "if-none-match")
    if noneMatch is not None:  # weak comparison
        tags = (each.strip() for each in noneMatch.split(","))
        return any(tag == "*" or tag.removeprefix("W/") == etag for tag in tags)
    since = _header(headers, "if-modified-since")
    when = parseHttpDate(since) if since is not None else None
    return when is not None and mtime <= when


def _ifRangeHolds(value: str | None, mtime: int, etag: str) -> bool:
    if value is None:
        return True
    value = value.strip()
    if value.startswith('"'):
        return value == etag
    when = parseHttpDate(value)
    return when is not None and int(when) == mtime


def _parseRange(value: str, size: int) -> tuple[int, int] | None:
    """
    C{(offset, length)} for one satisfiable byte range, C{(-1, -1)} if it is
    unsatisfiable, C{None} to ignore the header (invalid, several ranges,
    other unit, empty file).
    """
    unit, _, ranges = value.partition("=")
    specs = [each.strip() for each in ranges.split(",") if each.strip()]
    if unit.strip().lower() != "bytes" or len(specs) != 1 or size == 0:
        return None
    match = _RANGE_SPEC.fullmatch(specs[0])
    if match is None:
        return None
    first, last = (_number(each) for each in match.groups())
    if first is None and last is None:
        return None
    if first is None:  # bytes=-n: the last n bytes
        if last == 0:
            return (-1, -1)
        length = min(last, size)
        return (size - length, length)
    if last is not None and last < first:
        return None
    if first >= size:
        return (-1, -1)
    end = size - 1 if last is None else min(last, size - 1)
    return (first, end - first + 1)


def _number(digits: str) -> int | None:
    if not digits:
        return None
    return _HUGE if len(digits) > 18 else int(digits)
