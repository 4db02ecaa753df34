# -*- test-case-name: tests.test_http_response -*-
"""
L{HttpResponse}: Swoole's C{Http\\Response}.

C{status}, C{header}, C{cookie} set what the head will say; C{end(body)}
sends head and body in one write (C{Content-Length}); C{write(chunk)}
streams (C{Transfer-Encoding: chunked}, or until close for HTTP/1.0) and
C{end()} finishes; C{sendfile} sends a file; C{redirect} answers 3xx.
Defaults as Swoole sends them: C{Server}, C{Date}, C{Content-Type:
text/html}, C{Content-Length} or chunked, C{Connection}.  A second C{end()}
or a write after it returns C{False} with one warning.

The response writes through its exchange (L{swooletw.http.connection}),
which keeps the answers of pipelined requests in order.
"""

from __future__ import annotations

import os
from http import HTTPStatus
from typing import Any
from urllib.parse import quote

from twisted.logger import Logger

from swooletw.http.compress import Compressor, chooseEncoding, shouldCompress
from swooletw.wire import toBytes

__all__ = ["HttpResponse", "reasonPhrase", "SERVER_HEADER"]

SERVER_HEADER = b"swoole-http-server"

#: fd -> the exchange of a detached response of this process, until
#: C{HttpResponse.create(fd)} takes it or the connection closes
DETACHED: dict[int, Any] = {}

_REASONS = {status.value: status.phrase for status in HTTPStatus}
_REASONS.update({418: "I'm a teapot"})


def reasonPhrase(code: int) -> str:
    """
    The standard reason phrase of C{code} (C{"Unknown"} for none).
    """
    return _REASONS.get(code, "Unknown")


def _headerBytes(value: Any, what: str) -> bytes:
    data = value.encode("latin-1") if isinstance(value, str) else toBytes(value)
    if b"\r" in data or b"\n" in data or b"\0" in data:
        raise ValueError(f"{what} {data!r} holds CR, LF or NUL")
    return data


class HttpResponse:
    """
    The answer to one request.

    @ivar fd: the connection id.
    """

    log = Logger()

    def __init__(self, fd: int, exchange: Any) -> None:
        self.fd = fd
        self._exchange = exchange
        self._status = 200
        self._reason: bytes | None = None
        #: lower-case name -> (name as given, value)
        self._headers: dict[bytes, tuple[bytes, bytes]] = {}
        self._cookies: list[bytes] = []
        self._started = False
        self._ended = False
        self._detached = False
        self._warned = False
        self._chunked = False
        self._compressor: Compressor | None = None

    @classmethod
    def create(cls, fd: int, server: Any = None) -> HttpResponse | bool:
        """
        The response of a detached request on connection C{fd} of this
        process (Swoole's C{Response::create}), to answer it from
        elsewhere; C{False} if there is none.

        @param server: accepted for ported code (Swoole's first argument
            may be the server); the fd is enough.
        """
        exchange = DETACHED.pop(fd, None)
        if exchange is None or not exchange.open:
            return False
        response = cls(fd, exchange)
        exchange.response = response
        return response

    # ---------------------------------------------------------- the head

    def status(self, code: int, reason: str | None = None) -> bool:
        """
        Set the status code (and reason phrase).
        """
        if self._started or not 100 <= int(code) <= 999:
            return self._refuse("status()")
        self._status = int(code)
        self._reason = None if reason is None else _headerBytes(reason, "reason")
        return True

    setStatusCode = status

    def header(self, name: str, value: Any, format: bool = True) -> bool:
        """
        Set a response header (replacing one of the same name; C{None}
        removes it).

        @raise ValueError: for CR, LF or NUL in the name or value.
        """
        if self._started:
            return self._refuse("header()")
        key = _headerBytes(name, "header name")
        lower = key.lower()
        if value is None:
            self._headers.pop(lower, None)
            return True
        if format:
            key = b"-".join(part.capitalize() for part in lower.split(b"-"))
        self._headers[lower] = (key, _headerBytes(str(value) if isinstance(value, (int, float)) else value, "header value"))
        return True

    setHeader = header

    def cookie(
        self,
        name: str,
        value: str = "",
        expires: int = 0,
        path: str = "/",
        domain: str = "",
        secure: bool = False,
        httponly: bool = False,
        samesite: str = "",
        priority: str = "",
        *,
        _raw: bool = False,
    ) -> bool:
        """
        Add a C{Set-Cookie} header; C{value} is URL-encoded (see
        L{rawcookie}).
        """
        if self._started:
            return self._refuse("cookie()")
        encoded = value if _raw else quote(str(value), safe="")
        parts = [f"{name}={encoded}" if value != "" else f"{name}=deleted"]
        if value == "":
            parts.append("expires=Thu, 01 Jan 1970 00:00:01 GMT; Max-Age=0")
        elif expires:
            from swooletw.http.static import httpDate

            parts.append(f"expires={httpDate(expires)}")
            parts.append(f"Max-Age={max(0, int(expires - self._exchange.now()))}")
        for attribute, given in (("path", path), ("domain", domain), ("SameSite", samesite), ("Priority", priority)):
            if given:
                parts.append(f"{attribute}={given}")
        if secure:
            parts.append("secure")
        if httponly:
            parts.append("HttpOnly")
        self._cookies.append(_headerBytes("; ".join(parts), "cookie"))
        return True

    setCookie = cookie

    def rawcookie(self, name: str, value: str = "", *args: Any, **kwargs: Any) -> bool:
        """
        L{cookie} without URL-encoding the value.
        """
        return self.cookie(name, value, *args, _raw=True, **kwargs)

    setRawCookie = rawcookie

    # ---------------------------------------------------------- the body

    def write(self, data: Any) -> bool:
        """
        Send part of the body now (chunked streaming).

        @return: C{False} if the response has ended, or C{data} is longer
            than C{buffer_output_size}.
        """
        if not self.isWritable():
            return self._refuse("write()")
        chunk = toBytes(data)
        if self._tooLarge("write()", chunk):
            return False
        data = b""
        if not self._started:
            self._chunked = self._exchange.version == "1.1"
            if not self._chunked:
                self._exchange.keepAlive = False  # HTTP/1.0: the body ends at close
            self._startCompression(None)
            data = self._head(None)
        if self._compressor is not None:
            chunk = self._compressor.compress(chunk) + self._compressor.syncFlush()
        if chunk and not self._exchange.head:
            data += self._frame(chunk)
        return self._send(data, last=False)

    def end(self, data: Any = b"") -> bool:
        """
        Finish the response, with C{data} as (the rest of) its body.

        @return: C{False} if the response has ended, or C{data} is longer
            than C{buffer_output_size}.
        """
        if not self.isWritable():
            return self._refuse("end()")
        body = data if data.__class__ is bytes else toBytes(data)
        if self._tooLarge("end()", body):
            return False
        self._ended = True
        exchange = self._exchange
        if self._started:
            tail = b""
            if self._compressor is not None:
                body = self._compressor.compress(body) + self._compressor.flush()
            if body and not exchange.head:
                tail = self._frame(body)
            if self._chunked and not exchange.head:
                tail += b"0\r\n\r\n"
            return self._send(tail, last=True)
        body = self._startCompression(body)
        head = self._head(len(body))
        return self._send(head if exchange.head else head + body, last=True)

    def sendfile(self, path: str, offset: int = 0, length: int = 0) -> bool:
        """
        Send a file (or C{length} bytes of it from C{offset}) as the body.
        """
        if self._started or not self.isWritable():
            return self._refuse("sendfile()")
        try:
            file = open(path, "rb")
        except OSError as e:
            self.log.warn("sendfile({path!r}) on fd {fd}: {error}", path=path, fd=self.fd, error=e)
            return False
        size = os.fstat(file.fileno()).st_size
        length = length or max(0, size - offset)
        if offset < 0 or offset + length > size:
            file.close()
            self.log.warn("sendfile({path!r}) on fd {fd}: range outside the file", path=path, fd=self.fd)
            return False
        if b"content-type" not in self._headers:
            import mimetypes

            self.header("Content-Type", mimetypes.guess_type(path)[0] or "application/octet-stream")
        self._ended = True
        if not self._exchange.send(self._head(length), last=False):
            file.close()
            return False
        file.seek(offset)
        self._exchange.sendFile(file, length)
        return True

    def redirect(self, url: str, code: int = 302) -> bool:
        """
        Answer with a redirect to C{url}.
        """
        return self.status(code) and self.header("Location", url) and self.end()

    @property
    def headersSent(self) -> bool:
        """
        Whether the status line and headers have gone out.
        """
        return self._started

    def abandon(self) -> None:
        """
        The server answers in this response's place (an error): any later
        call on it is refused.
        """
        self._ended = True

    def isWritable(self) -> bool:
        """
        Whether this response can still be written to.
        """
        return not self._ended and not self._detached and self._exchange.open

    def detach(self) -> bool:
        """
        Leave this response unanswered here; answer it later through
        C{HttpResponse.create(fd)} (from a task's C{finish}, a timer, ...).
        """
        if self._started or self._ended or self._detached:
            return False
        self._detached = True
        DETACHED[self.fd] = self._exchange
        return True

    # ---------------------------------------------------------- internal

    def _send(self, data: bytes, last: bool) -> bool:
        # In pieces of at most what one send may carry (a body within
        # buffer_output_size plus its head or chunk framing may pass it).
        exchange = self._exchange
        limit = exchange.outputLimit
        if len(data) <= limit:
            return exchange.send(data, last)
        for start in range(0, len(data), limit):
            if not exchange.send(data[start:start + limit], last and start + limit >= len(data)):
                return False
        return True

    def _tooLarge(self, what: str, data: bytes) -> bool:
        limit = self._exchange.outputLimit
        if len(data) <= limit:
            return False
        self.log.warn(
            "{what} of {size} bytes on fd {fd} refused: over buffer_output_size ({limit}); "
            "send it in pieces with write() or from a file with sendfile()",
            what=what, size=len(data), fd=self.fd, limit=limit,
        )
        return True

    def _refuse(self, what: str) -> bool:
        if not self._warned:
            self._warned = True
            self.log.warn("{what} on fd {fd} after the response ended: ignored", what=what, fd=self.fd)
        return False

    def _startCompression(self, body: bytes | None) -> bytes | None:
        exchange = self._exchange
        level = exchange.compressionLevel
        if not level or b"content-encoding" in self._headers:
            return body
        contentType = self._headers.get(b"content-type", (b"", b"text/html"))[1].decode("latin-1")
        length = exchange.compressionMinLength if body is None else len(body)
        if not shouldCompress(contentType, length, exchange.compressionMinLength):
            return body
        encoding = chooseEncoding(exchange.acceptEncoding())
        if encoding is None:
            return body
        self._headers[b"content-encoding"] = (b"Content-Encoding", encoding.encode())
        self._headers[b"vary"] = (b"Vary", b"Accept-Encoding")
        compressor = Compressor(encoding, level)
        if body is None:
            self._compressor = compressor
            return None
        return compressor.compress(body) + compressor.flush()

    def _frame(self, chunk: bytes) -> bytes:
        if self._chunked:
            return b"%x\r\n%s\r\n" % (len(chunk), chunk)
        return chunk

    def _head(self, length: int | None) -> bytes:
        self._started = True
        exchange = self._exchange
        status = self._status
        headers = self._headers
        out = [_statusLine(exchange.versionBytes, status, self._reason)]
        if headers:
            connection = headers.pop(b"connection", None)
            if connection is not None and connection[1].lower() == b"close":
                exchange.keepAlive = False
            headers.pop(b"content-length", None)
            headers.pop(b"transfer-encoding", None)
            if b"server" not in headers:
                out.append(_SERVER_LINE)
            if b"date" not in headers:
                out.append(b"Date: %s\r\n" % exchange.date())
            if b"content-type" not in headers:
                out.append(_DEFAULT_TYPE_LINE)
            out.extend(b"%s: %s\r\n" % pair for pair in headers.values())
        else:
            out.append(b"%sDate: %s\r\n%s" % (_SERVER_LINE, exchange.date(), _DEFAULT_TYPE_LINE))
        out.extend(b"Set-Cookie: %s\r\n" % cookie for cookie in self._cookies)
        out.append(b"Connection: keep-alive\r\n" if exchange.keepAlive else b"Connection: close\r\n")
        if length is not None:
            if status >= 200 and status != 204 and status != 304:
                out.append(b"Content-Length: %d\r\n\r\n" % length)
            else:
                out.append(b"\r\n")
        elif self._chunked:
            out.append(b"Transfer-Encoding: chunked\r\n\r\n")
        else:
            out.append(b"\r\n")
        return b"".join(out)


_SERVER_LINE = b"Server: " + SERVER_HEADER + b"\r\n"
_DEFAULT_TYPE_LINE = b"Content-Type: text/html\r\n"
_STATUS_LINES: dict[tuple[bytes, int], bytes] = {}


def _statusLine(version: bytes, status: int, reason: bytes | None) -> bytes:
    """
    C{HTTP/1.1 200 OK\\r\\n}, the standard ones made once.
    """
    if reason is not None:
        return b"HTTP/%s %d %s\r\n" % (version, status, reason)
    line = _STATUS_LINES.get((version, status))
    if line is None:
        line = _STATUS_LINES[version, status] = b"HTTP/%s %d %s\r\n" % (
            version, status, reasonPhrase(status).encode("latin-1")
        )
    return line
