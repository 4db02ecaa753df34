# -*- test-case-name: tests.test_http_forms -*-
"""
Request forms the way Swoole's C{$request->get}, C{post}, C{cookie} and
C{files} present them.

Names follow PHP's bracket rules (C{a[]=1&a[]=2} is a list, C{a[x]=1} a
dict, nesting allowed); a container stays a list while its keys are
C{0..n-1} in order (PHP's "list"), else it is a dict with C{str} keys.
Two PHP quirks are left out on purpose: dots and spaces in names are not
turned into C{_} (a C{register_globals} relic), and an unterminated C{[}
keeps the name as sent.  Text is decoded as UTF-8 with C{errors="replace"}
(invalid bytes become U+FFFD; PHP keeps raw bytes); file contents are
never decoded.  Multipart bodies are parsed as they stream, uploads going
straight to temporary files.  Pure Python: nothing here imports Twisted.
"""

from __future__ import annotations

import os
import re
import tempfile
from typing import Any, BinaryIO
from urllib.parse import unquote_to_bytes

__all__ = [
    "FormError", "parseQuery", "parseCookies", "parseContentType", "boundaryOf",
    "MultipartParser", "UPLOAD_ERR_OK", "UPLOAD_ERR_INI_SIZE", "UPLOAD_ERR_NO_FILE",
    "UPLOAD_ERR_NO_TMP_DIR", "UPLOAD_ERR_CANT_WRITE",
]

#: PHP's C{UPLOAD_ERR_*} codes, as C{$request->files[...]["error"]}.
UPLOAD_ERR_OK = 0
UPLOAD_ERR_INI_SIZE = 1
UPLOAD_ERR_NO_FILE = 4
UPLOAD_ERR_NO_TMP_DIR = 6
UPLOAD_ERR_CANT_WRITE = 7

_INT_KEY = re.compile(r"(?:0|[1-9][0-9]{0,17})\Z")  # PHP integer keys
_PARAM = re.compile(r';\s*([^\s;=]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)', re.S)
_ESCAPED = re.compile(r'\\(["\\])')
_BOUNDARY = re.compile(r"[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]\Z")
_PADDING_MAX = 1024


class FormError(ValueError):
    """
    A form is malformed or exceeds a limit; the message names the limit.
    """


def _decode(raw: bytes | bytearray) -> str:
    return raw.decode("utf-8", "replace")


def _unquote(raw: bytes) -> str:
    """URL-decode like PHP's C{urldecode}: C{+} is a space, bad C{%} kept."""
    if b"%" in raw or b"+" in raw:
        raw = unquote_to_bytes(raw.replace(b"+", b" "))
    return _decode(raw)


def _keys(name: str, maxDepth: int) -> list[str | None] | None:
    """
    Split C{a[x][]} into C{["a", "x", None]} (C{None} appends); C{None}
    when the name is empty.  More than C{maxDepth} brackets raise.
    """
    name = name.lstrip(" ")
    start = name.find("[")
    if start < 0 or name.find("]", start) < 0:
        return [name] if name else None
    if start == 0:
        return None
    keys: list[str | None] = [name[:start]]
    while start < len(name) and name[start] == "[":
        end = name.find("]", start)
        if end < 0:
            break
        if len(keys) > maxDepth:
            raise FormError(f"{name[:40]!r} is nested deeper than {maxDepth} (maxDepth)")
        keys.append(name[start + 1 : end] or None)
        start = end + 1
    return keys


def _nextIndex(node: dict[str, Any]) -> str:
    ints = [int(k) for k in node if _INT_KEY.match(k)]
    return str(max(ints) + 1 if ints else 0)


def _insert(node: Any, keys: list[str | None], value: Any) -> Any:
    """
    Set C{value} at path C{keys} under C{node} (a C{None} key appends);
    return C{node}, or the dict it became if a key ended its being a list.
    """
    key = keys[0]
    if isinstance(node, list):
        slot: Any = len(node) if key is None else int(key) if _INT_KEY.match(key) else None
        if slot is None or slot > len(node):
            node = {str(i): v for i, v in enumerate(node)}
    if isinstance(node, dict):
        slot = _nextIndex(node) if key is None else key
        child = node.get(slot)
    else:
        child = node[slot] if slot < len(node) else None
    if len(keys) > 1:
        if not isinstance(child, (list, dict)):
            child = [] if keys[1] in (None, "0") else {}
        value = _insert(child, keys[1:], value)
    if isinstance(node, list) and slot == len(node):
        node.append(value)
    else:
        node[slot] = value
    return node


def parseQuery(raw: bytes, maxFields: int = 1000, maxDepth: int = 8) -> dict[str, Any]:
    """
    Parse C{a=1&b[]=2} as PHP's C{parse_str} (Swoole's C{$request->get} and
    urlencoded C{post}): the last of repeated names wins, a name without
    C{=} is C{""}, names and values are URL-decoded.

    @raise FormError: more than C{maxFields} fields (PHP's
        C{max_input_vars}) or a name nested deeper than C{maxDepth} (PHP's
        C{max_input_nesting_level}).
    """
    result: dict[str, Any] = {}
    count = 0
    for pair in raw.split(b"&"):
        if not pair:
            continue
        count += 1
        if count > maxFields:
            raise FormError(f"more than {maxFields} fields (maxFields)")
        name, _, value = pair.partition(b"=")
        keys = _keys(_unquote(name), maxDepth)
        if keys is not None:
            _insert(result, keys, _unquote(value))
    return result


def parseCookies(header: bytes, maxCookies: int = 1000) -> dict[str, str]:
    """
    Parse a C{Cookie} header (C{a=1; b=2}) as PHP fills C{$_COOKIE}: the
    first of repeated names wins (RFC 6265 lists the most specific path
    first; Swoole's own parser lets the last win), values are
    percent-decoded without turning C{+} into a space, names are kept as
    sent (no brackets), a name without C{=} is C{""}, pairs with an empty
    name are skipped.  Cookies past C{maxCookies} are ignored, as PHP does.
    """
    cookies: dict[str, str] = {}
    count = 0
    for pair in header.split(b";"):
        name, sep, value = pair.partition(b"=")
        name = name.lstrip()
        if not name:
            continue
        count += 1
        if count > maxCookies:
            break
        key = _decode(name)
        if key not in cookies:
            cookies[key] = _decode(unquote_to_bytes(value)) if b"%" in value else _decode(value)
    return cookies


def parseContentType(value: bytes) -> tuple[str, dict[str, str]]:
    """
    Split a C{Content-Type} (or C{Content-Disposition}) value into its
    lower-case media type and its parameters (lower-case names; quoted
    values unquoted, C{\\"} and C{\\\\} unescaped; the first of repeated
    names wins; malformed parameters skipped).
    """
    text = _decode(value)
    kind, _, rest = text.partition(";")
    params: dict[str, str] = {}
    for match in _PARAM.finditer(";" + rest):
        name, raw = match.group(1).lower(), match.group(2)
        if raw.startswith('"') and raw.endswith('"') and len(raw) > 1:
            raw = _ESCAPED.sub(r"\1", raw[1:-1])
        else:
            raw = raw.strip()
        params.setdefault(name, raw)
    return kind.strip().lower(), params


def boundaryOf(contentType: bytes) -> bytes | None:
    """
    The C{boundary} parameter of a C{Content-Type} value, quoted or not;
    C{None} if it is missing or not a valid RFC 2046 boundary (1 to 70
    characters of its alphabet, not ending in a space).  The media type is
    not checked.
    """
    boundary = parseContentType(contentType)[1].get("boundary")
    if boundary is None or not _BOUNDARY.match(boundary):
        return None
    return boundary.encode("ascii")


def _parseHeaders(block: bytes) -> dict[str, bytes]:
    headers: dict[str, bytes] = {}
    for line in block.split(b"\r\n"):
        name, sep, value = line.partition(b":")
        if not sep or not name.strip():
            raise FormError(f"malformed part header {line[:40]!r}")
        headers.setdefault(name.strip().lower().decode("latin-1"), value.strip())
    return headers


_PREAMBLE, _DELIMITED, _HEADERS, _BODY, _DONE = range(5)


class MultipartParser:
    """
    A streaming C{multipart/form-data} parser: L{feed} it the body in chunks
    split anywhere, then L{close} it for C{(fields, files)} as Swoole's
    C{$request->post} and C{$request->files}.  File parts are written to
    temporary files as they arrive; L{cleanup} removes them.

    C{files[name]} is C{{"name", "type", "tmp_name", "error", "size"}}; for
    a bracketed name each key holds the brackets, as PHP's C{$_FILES} does
    (C{files["f"]["name"][0]} for C{f[]}).  C{error} is 0, 1 (over
    C{maxFileSize}: file removed, size 0), 4 (empty filename), 6 (no
    temporary file) or 7 (write failed).  Malformed input or a limit passed
    raises L{FormError} after removing the files; later calls raise too.
    """

    def __init__(
        self,
        boundary: bytes,
        tempDir: str | None = None,
        maxFileSize: int | None = None,
        maxParts: int = 1000,
        maxFieldSize: int = 1 << 20,
        maxHeaderSize: int = 16 << 10,
        maxDepth: int = 8,
    ) -> None:
        if not 1 <= len(boundary) <= 70:
            raise FormError(f"boundary of {len(boundary)} bytes (1 to 70 allowed)")
        self._delim = b"\r\n--" + boundary
        self._buf = bytearray(b"\r\n")  # so a boundary on the first line matches
        self._state = _PREAMBLE
        self._tempDir, self._maxFileSize, self._maxParts = tempDir, maxFileSize, maxParts
        self._maxFieldSize, self._maxHeaderSize = maxFieldSize, maxHeaderSize
        self._maxDepth = maxDepth
        self._parts = 0
        self._paths: list[str] = []
        self._fields: dict[str, Any] = {}
        self._files: dict[str, Any] = {}
        self._failed = False
        # The current part: its name's keys (None: skipped), and its data
        # (a field) or its metadata and file (an upload).
        self._keys: list[str | None] | None = None
        self._data: bytearray | None = None
        self._meta: dict[str, Any] | None = None
        self._fh: BinaryIO | None = None

    @property
    def buffered(self) -> int:
        """How many bytes the parser holds between calls (file data excluded)."""
        return len(self._buf)

    def feed(self, chunk: bytes) -> None:
        """
        Parse the next C{chunk} of the body; raise L{FormError} if it is
        malformed or passes a limit.
        """
        if self._failed:
            raise FormError("multipart parser already failed")
        if self._state == _DONE:
            return
        self._buf += chunk
        steps = (self._preamble, self._delimited, self._headers, self._body)
        try:
            while self._state != _DONE and steps[self._state]():
                pass
        except Exception:
            self._fail()
            raise
        if self._state == _DONE:
            self._buf.clear()  # the epilogue is ignored

    def close(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """
        End the body and return C{(fields, files)}; raise L{FormError} if
        the closing boundary never came.
        """
        if self._failed:
            raise FormError("multipart parser already failed")
        if self._state != _DONE:
            self._fail()
            raise FormError("multipart body ended before its closing boundary")
        return self._fields, self._files

    def cleanup(self) -> None:
        """Remove every temporary file this parser created (idempotent)."""
        self._closeFile()
        for path in self._paths:
            _unlink(path)
        self._paths.clear()

    def _fail(self) -> None:
        self._failed = True
        self.cleanup()

    def _preamble(self) -> bool:
        found = self._buf.find(self._delim)
        if found < 0:
            del self._buf[: max(0, len(self._buf) - len(self._delim) + 1)]
            return False
        del self._buf[: found + len(self._delim)]
        self._state = _DELIMITED
        return True

    def _delimited(self) -> bool:
        buf = self._buf
        if len(buf) < 2:
            return False
        if buf[:2] == b"--":
            self._state = _DONE
            return False
        eol = buf.find(b"\r\n")
        padding = buf if eol < 0 else buf[:eol]
        if padding.rstrip(b"\r").strip(b" \t") or len(padding) > _PADDING_MAX:
            raise FormError("boundary followed by something other than a line end")
        if eol < 0:
            return False
        del buf[: eol + 2]
        self._parts += 1
        if self._parts > self._maxParts:
            raise FormError(f"more than {self._maxParts} parts (maxParts)")
        self._state = _HEADERS
        return True

    def _headers(self) -> bool:
        buf = self._buf
        if buf[:2] == b"\r\n":
            raise FormError("part without a Content-Disposition header")
        end = buf.find(b"\r\n\r\n")
        if end > self._maxHeaderSize or (end < 0 and len(buf) > self._maxHeaderSize):
            raise FormError(f"part headers over {self._maxHeaderSize} bytes (maxHeaderSize)")
        if end < 0:
            return False
        headers = _parseHeaders(bytes(buf[:end]))
        del buf[: end + 4]
        self._startPart(headers)
        self._state = _BODY
        return True

    def _body(self) -> bool:
        buf = self._buf
        found = buf.find(self._delim)
        if found < 0:
            keep = len(buf) - len(self._delim) + 1  # a delimiter's possible start
            if keep > 0:
                self._write(buf[:keep])
                del buf[:keep]
            return False
        self._write(buf[:found])
        del buf[: found + len(self._delim)]
        self._endPart()
        self._state = _DELIMITED
        return True

    def _startPart(self, headers: dict[str, bytes]) -> None:
        disposition = headers.get("content-disposition")
        if disposition is None:
            raise FormError("part without a Content-Disposition header")
        params = parseContentType(disposition)[1]
        self._keys = _keys(params.get("name", ""), self._maxDepth)
        if self._keys is None:
            return
        filename = params.get("filename")
        if filename is None:
            self._data = bytearray()
            return
        self._meta = {"name": filename, "type": "", "tmp_name": "", "error": UPLOAD_ERR_NO_FILE, "size": 0}
        if not filename:
            return
        self._meta["type"] = _decode(headers.get("content-type", b""))
        try:
            fd, path = tempfile.mkstemp(prefix="swooletw-upload-", dir=self._tempDir)
        except OSError:
            self._meta["error"] = UPLOAD_ERR_NO_TMP_DIR
            return
        self._paths.append(path)
        self._fh = os.fdopen(fd, "wb")
        self._meta.update(tmp_name=path, error=UPLOAD_ERR_OK)

    def _write(self, data: bytearray) -> None:
        if self._data is not None:
            if len(self._data) + len(data) > self._maxFieldSize:
                raise FormError(f"field over {self._maxFieldSize} bytes (maxFieldSize)")
            self._data += data
        elif self._fh is not None and self._meta is not None and data:
            size = self._meta["size"] + len(data)
            if self._maxFileSize is not None and size > self._maxFileSize:
                return self._dropFile(UPLOAD_ERR_INI_SIZE)
            try:
                self._fh.write(data)
            except OSError:
                return self._dropFile(UPLOAD_ERR_CANT_WRITE)
            self._meta["size"] = size

    def _closeFile(self) -> bool:
        """Close the current file, if any; C{False} if that failed."""
        fh, self._fh = self._fh, None
        try:
            if fh is not None:
                fh.close()
        except OSError:
            return False
        return True

    def _dropFile(self, error: int) -> None:
        assert self._meta is not None
        self._closeFile()
        path = self._meta["tmp_name"]
        _unlink(path)
        self._paths.remove(path)
        self._meta.update(tmp_name="", error=error, size=0)

    def _endPart(self) -> None:
        keys, data, meta = self._keys, self._data, self._meta
        if meta is not None and not self._closeFile():
            self._dropFile(UPLOAD_ERR_CANT_WRITE)
        self._keys = self._data = self._meta = None
        if keys is None:
            return
        if data is not None:
            _insert(self._fields, keys, _decode(data))
        elif meta is not None and len(keys) == 1:
            _insert(self._files, keys, meta)
        elif meta is not None:
            for field, value in meta.items():
                _insert(self._files, [keys[0], field, *keys[1:]], value)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
