# -*- test-case-name: tests.test_http -*-
"""
One request and its answer on an HTTP connection (L{Exchange}), what an
answer refused before the application carries (L{BadRequest}), a file
streamed as a body (L{FilePump}), and a port's request limits
(L{Limits}).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, BinaryIO

from swooletw.http.forms import MultipartParser
from swooletw.http.request import HttpRequest
from swooletw.http.response import DETACHED, HttpResponse

if TYPE_CHECKING:  # pragma: no cover
    from swooletw.http.connection import HttpConnection

__all__ = ["BadRequest", "StopParsing", "Exchange", "FilePump", "Limits"]


class BadRequest(Exception):
    """
    A request refused before the application sees it: C{status} and the
    reason sent back.
    """

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class StopParsing(Exception):
    """
    Raised into the parser to stop it: the connection is closing and the
    bytes after the last request must not become requests.
    """


class Exchange:
    """
    One request and its answer on a connection: what the response writes
    through.

    @ivar open: whether the answer may still be written.
    @ivar keepAlive: whether the connection stays open after the answer.
    """

    __slots__ = (
        "connection", "request", "response", "version", "versionBytes", "head",
        "keepAlive", "open", "timer", "error", "multipart",
    )

    def __init__(self, connection: HttpConnection, version: str, head: bool, keepAlive: bool) -> None:
        self.connection = connection
        self.version = version
        self.versionBytes = b"1.1" if version == "1.1" else b"1.0"
        self.head = head
        self.keepAlive = keepAlive
        self.open = True
        self.timer: Any = None
        self.request: HttpRequest | None = None
        self.response: HttpResponse | None = None
        self.error: BadRequest | None = None
        #: the upload parser whose temporary files go with the request
        self.multipart: MultipartParser | None = None

    def close(self) -> None:
        """
        The answer is complete (or cannot be): stop its timer, remove its
        uploads.
        """
        self.open = False
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        if self.multipart is not None:
            self.multipart.cleanup()
        fd = self.connection.fd
        if DETACHED.get(fd) is self:
            del DETACHED[fd]

    # What the response asks of its exchange.
    def send(self, data: bytes, last: bool) -> bool:
        return self.open and self.connection.exchangeSend(self, data, last)

    def sendFile(self, file: BinaryIO, length: int) -> None:
        FilePump(self.connection, self, file, length).pump()

    def date(self) -> bytes:
        return self.connection.factory.date()

    def now(self) -> float:
        return self.connection.factory.clock.seconds()

    @property
    def outputLimit(self) -> int:
        return self.connection.factory.outputLimit

    @property
    def compressionLevel(self) -> int:
        return self.connection.factory.compressionLevel

    @property
    def compressionMinLength(self) -> int:
        return self.connection.factory.compressionMinLength

    def acceptEncoding(self) -> str | None:
        request = self.request
        return None if request is None else request.header.get("accept-encoding")


class FilePump:
    """
    Streams C{length} bytes of an open file, from where it is, into a
    connection: at most L{CHUNK} bytes per reactor turn, waiting while the
    transport's buffer is past its high-water mark; then finishes the
    exchange.
    """

    CHUNK = 256 * 1024

    def __init__(self, connection: HttpConnection, exchange: Exchange, file: BinaryIO, length: int) -> None:
        self.connection = connection
        self.exchange = exchange
        self.file = file
        self.left = length

    def pump(self) -> None:
        connection, exchange = self.connection, self.exchange
        if not exchange.open or connection.closing:
            self.file.close()
            return
        drained = connection.whenDrained()
        if not drained.called:
            # The peer reads slower than we read the file: wait for it.
            drained.addCallback(lambda _: self.pump())
            return
        if exchange.head or self.left <= 0:
            self.file.close()
            connection.finished(exchange)
            return
        chunk = self.file.read(min(self.CHUNK, connection.factory.outputLimit, self.left))
        if not chunk or not connection.exchangeSend(exchange, chunk, last=False):
            # Refused (the connection is cut), or the file shrank: the
            # Content-Length sent cannot be kept.
            self.file.close()
            connection.closeConnection(reset=True)
            return
        self.left -= len(chunk)
        connection.factory.clock.callLater(0, self.pump)


class Limits:
    """
    The request limits of a port, from its settings.
    """

    __slots__ = ("headerSize", "headerCount", "urlLength", "bodySize", "pipeline")

    def __init__(self, settings: dict[str, Any]) -> None:
        self.headerSize = settings["http_max_header_size"]
        self.headerCount = settings["http_max_headers"]
        self.urlLength = settings["http_max_url_length"]
        self.bodySize = settings["package_max_length"]
        self.pipeline = settings["http_pipeline_max"]
