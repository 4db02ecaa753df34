# -*- test-case-name: tests.test_http -*-
"""
The HTTP/1.1 protocol of an L{HttpServer} port: one L{HttpConnection} per
TCP connection, parsing with httptools (llhttp, the parser uvicorn uses),
and one L{Exchange} per request.

 - Keep-alive and pipelining: requests are parsed as they come and queued;
   the handler of one runs only once the answer to the one before has been
   sent, so answers go out in order however slow an earlier (async) handler
   is.  Past C{http_pipeline_max} queued requests the connection stops
   reading until the queue drains.
 - Limits: C{package_max_length} for a body (413, also for a declared
   C{Content-Length}), C{http_max_header_size} for the request head (431),
   C{http_max_headers} headers (431), C{http_max_url_length} (414).  A
   handler that never answers gets 504 after C{http_request_timeout}.
 - Refused before any handler sees them, with the connection closed (llhttp
   itself refuses C{Content-Length} with C{Transfer-Encoding}, two
   C{Content-Length}s, obs-fold, bare LF, bad chunk sizes, space before the
   colon, non-token header names; swooletw adds what llhttp lets through):
   an upgrade with a body, C{CONNECT}, HTTP/1.1 without exactly one
   C{Host}, HTTP/1.0 with C{Transfer-Encoding}, versions other than 1.0 and
   1.1 (505).
 - Every refusal is logged with the fd and counted (C{packet_error_count});
   other connections never notice.
"""

from __future__ import annotations

import time
from collections import deque
from inspect import iscoroutine
from typing import Any

import httptools
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from swooletw.http.exchange import BadRequest, Exchange, Limits, StopParsing
from swooletw.http.forms import FormError, MultipartParser, boundaryOf
from swooletw.http.request import HttpRequest
from swooletw.http.response import SERVER_HEADER, HttpResponse, reasonPhrase
from swooletw.wire.stream import PortFactory, ServerConnection

__all__ = ["Exchange", "HttpConnection", "HttpPortFactory"]


class HttpReceiver(Protocol):
    """
    The "framer" of an HTTP connection: bytes in, requests out.  Mixed into
    L{HttpConnection} as the packet framers are into stream connections.
    """

    _failed = False
    _inMessage = False
    _headersDone = False
    _multipart: MultipartParser | None = None

    def initParser(self) -> None:
        factory = self.factory  # type: ignore[attr-defined]
        self._parser = httptools.HttpRequestParser(self)
        self._limits = factory.limits
        self._exchanges: deque[Exchange] = deque()

    def dataReceived(self, data: bytes) -> None:
        if self._failed:
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # Only reached for upgrades we answer as plain requests (the
            # connection closes after the answer): the rest is not HTTP.
            self._failed = True
        except httptools.HttpParserCallbackError as e:
            error = e.__context__
            if not isinstance(error, (BadRequest, StopParsing)):
                fd = self.fd  # type: ignore[attr-defined]
                self.log.failure("parsing a request on fd {fd}", Failure(error), fd=fd)
                error = BadRequest(500, "internal server error")
            if not self._failed:
                self.refuse(error)
        except httptools.HttpParserError as e:
            if not self._failed:
                self.refuse(BadRequest(400, f"malformed request: {e}"))
        if self._inMessage and not self._headersDone and not self._failed:
            # The read ended inside a request head.  on_header counts the
            # headers that are whole; what llhttp holds of the one being
            # received is bounded here: the read the head began in, and
            # every later read counted whole.
            if self._headStarted:
                self._headReads += len(data)
                if self._headReads > self._limits.headerSize:
                    self.refuse(BadRequest(431, "request head too large"))
            self._headStarted = True

    def bufferedBytes(self) -> int:
        """
        Whether a request is partly received (for C{package_recv_timeout}).
        """
        return 1 if self._inMessage else 0

    # ----------------------------------------------- httptools callbacks

    def on_message_begin(self) -> None:
        if self._failed or self._closing:  # type: ignore[attr-defined]
            self._failed = True
            raise StopParsing()
        self._inMessage = True
        self._headersDone = False
        self._headSize = 0
        self._headReads = 0
        self._headStarted = False
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._bodySize = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self._limits.urlLength:
            raise BadRequest(414, "request target too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        headers = self._headers
        if len(headers) >= self._limits.headerCount:
            raise BadRequest(431, "too many header fields")
        self._headSize += len(name) + len(value)
        if self._headSize > self._limits.headerSize:
            raise BadRequest(431, "request head too large")
        headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._headersDone = True
        parser = self._parser
        method = parser.get_method()
        version = parser.get_http_version()
        if version not in ("1.1", "1.0"):
            raise BadRequest(505, f"HTTP/{version} is not supported")
        if method == b"CONNECT":
            raise BadRequest(405, "CONNECT is not served")
        hosts = 0
        length = -1
        chunked = False
        expect = False
        contentType = b""
        for name, value in self._headers:
            name = name.lower()
            if name == b"host":
                hosts += 1
            elif name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = True
            elif name == b"expect" and value.lower() == b"100-continue":
                expect = True
            elif name == b"content-type":
                contentType = value
        if (version == "1.1" and hosts != 1) or hosts > 1:
            raise BadRequest(400, "a request needs exactly one Host header")
        if chunked and version == "1.0":
            raise BadRequest(400, "Transfer-Encoding in an HTTP/1.0 request")
        if parser.should_upgrade() and (length > 0 or chunked):
            raise BadRequest(400, "an upgrade request must not have a body")
        if length > self._limits.bodySize:
            raise BadRequest(413, "request body too large")
        if contentType[:19].lower() == b"multipart/form-data":
            boundary = boundaryOf(contentType)
            if boundary is None:
                raise BadRequest(400, "multipart body without a valid boundary")
            self._multipart = MultipartParser(
                boundary, self.factory.uploadDir, self.factory.uploadMaxFileSize  # type: ignore[attr-defined]
            )
        if expect and version == "1.1" and (length > 0 or chunked) and not self._exchanges:
            # sendData: after the answers of this read still gathered.
            self.sendData(b"HTTP/1.1 100 Continue\r\n\r\n")  # type: ignore[attr-defined]

    def on_body(self, body: bytes) -> None:
        self._bodySize += len(body)
        if self._bodySize > self._limits.bodySize:
            raise BadRequest(413, "request body too large")
        if self._multipart is not None:
            try:
                self._multipart.feed(body)
            except FormError as e:
                raise BadRequest(400, f"multipart body: {e}") from e
        else:
            self._body.append(body)

    def on_message_complete(self) -> None:
        self._inMessage = False
        parser = self._parser
        method = parser.get_method().decode("latin-1")
        version = parser.get_http_version()
        keepAlive = parser.should_keep_alive() and not parser.should_upgrade()
        exchange = Exchange(self, version, method == "HEAD", keepAlive)  # type: ignore[arg-type]
        post = files = None
        multipart, self._multipart = self._multipart, None
        if multipart is not None:
            try:
                post, files = multipart.close()
            except FormError as e:
                raise BadRequest(400, f"multipart body: {e}") from e
        body = b"".join(self._body) if self._body else b""
        exchange.request = HttpRequest(
            self.fd, method, self._url, version, self._headers, body, self,  # type: ignore[attr-defined]
            post or None, files or None, self.lastTime,  # type: ignore[attr-defined]
        )
        exchange.multipart = multipart
        self.requests += 1  # type: ignore[attr-defined]
        self.queueExchange(exchange)

    def dropUpload(self) -> None:
        """
        Remove the uploads of a request cut before its end.
        """
        multipart, self._multipart = self._multipart, None
        if multipart is not None:
            multipart.cleanup()


class HttpConnection(ServerConnection, HttpReceiver):
    """
    One HTTP connection: see the module docstring.
    """

    log = Logger()

    def connectionMade(self) -> None:
        super().connectionMade()
        self.initParser()

    # ------------------------------------------------------------ queue

    def queueExchange(self, exchange: Exchange) -> None:
        """
        A parsed request (or a refusal): answer it now if it is first in
        line, else once those before it are answered.
        """
        exchanges = self._exchanges
        exchanges.append(exchange)
        if len(exchanges) == 1:
            self.dispatch(exchange)
        elif len(exchanges) > self._limits.pipeline:
            self.transport.pauseProducing()

    def refuse(self, error: BadRequest) -> None:
        """
        Refuse the request being parsed: no more parsing; the refusal is
        answered in its turn and the connection closed.
        """
        self._failed = True
        self._inMessage = False
        self.dropUpload()
        self.factory.requestRefused(self, error)
        exchange = Exchange(self, "1.1", False, False)
        exchange.error = error
        self.queueExchange(exchange)

    def dispatch(self, exchange: Exchange) -> None:
        """
        Run the application for the request first in line.
        """
        factory = self.factory
        if exchange.error is not None:
            return self.answerError(exchange, exchange.error.status, exchange.error.reason)
        request = exchange.request
        response = exchange.response = HttpResponse(self.fd, exchange)
        if factory.static is not None and factory.serveStatic(request, response):
            return
        callback = factory.onRequest
        if callback is None:
            return self.answerError(exchange, 404, "no request handler", close=False)
        try:
            result = callback(request, response)
        except Exception:
            return self.failed(Failure(), exchange)
        if exchange.open and factory.requestTimeout:
            # Not answered yet: it has http_request_timeout from now (most
            # handlers answer at once and need no timer).
            exchange.timer = factory.clock.callLater(factory.requestTimeout, self.timedOut, exchange)
        if result is not None and result.__class__ is not bool:
            if iscoroutine(result):
                result = ensureDeferred(result)
            if isinstance(result, Deferred):
                result.addErrback(self.failed, exchange)
                self._running += 1
                factory.trackInflight(result, self._callbackDone)

    def failed(self, failure: Failure, exchange: Exchange) -> None:
        """
        The handler raised: log it with the request line; answer 500 if
        nothing was sent yet, else cut the connection (a half-sent answer
        cannot be repaired).
        """
        request = exchange.request
        self.log.failure(
            "request callback failed: {request} (fd {fd})", failure,
            request=f"{request.method} {request.target.decode('latin-1')} HTTP/{request.version}", fd=self.fd,
        )
        if not exchange.open:
            return
        if exchange.response is not None and exchange.response.headersSent:
            self.closeConnection(reset=True)
            return
        self.answerError(exchange, 500, "internal server error", close=False)

    def timedOut(self, exchange: Exchange) -> None:
        exchange.timer = None
        if not exchange.open:
            return
        self.factory.stats.http_timeout_count += 1
        self.log.warn(
            "request {target} on fd {fd} not answered within {seconds}s: 504",
            target=exchange.request.target, fd=self.fd, seconds=self.factory.requestTimeout,
        )
        self.failedToAnswer(exchange)

    def failedToAnswer(self, exchange: Exchange) -> None:
        if exchange.response is not None and exchange.response.headersSent:
            exchange.open = False
            self.closeConnection(reset=True)
            return
        self.answerError(exchange, 504, "the application did not answer in time", close=True)

    def answerError(self, exchange: Exchange, status: int, reason: str, close: bool = True) -> None:
        """
        Answer C{exchange} with C{status} and a short text body.
        """
        body = f"{status} {reasonPhrase(status)}: {reason}\n".encode()
        keepAlive = exchange.keepAlive and not close and exchange.error is None
        exchange.keepAlive = keepAlive
        head = (
            b"HTTP/1.1 %d %s\r\nServer: %s\r\nDate: %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Length: %d\r\nConnection: %s\r\n\r\n"
            % (status, reasonPhrase(status).encode(), SERVER_HEADER, self.factory.date(), len(body),
               b"keep-alive" if keepAlive else b"close")
        )
        if exchange.response is not None:
            exchange.response.abandon()
        self.exchangeSend(exchange, head + (b"" if exchange.head else body), last=True)

    # ---------------------------------------------------------- writing

    def exchangeSend(self, exchange: Exchange, data: bytes, last: bool) -> bool:
        """
        Write part of the answer of the first exchange in line; after the
        last part, move to the next request (or close).

        @return: C{False} if the part was refused (the connection is
            closing, or its output passed C{buffer_output_size}): the
            answer cannot be completed, and the connection is cut.
        """
        if data and not self.sendData(data):
            exchange.open = False
            self.closeConnection(reset=True)
            return False
        if last:
            self.finished(exchange)
        return True

    def finished(self, exchange: Exchange) -> None:
        exchange.close()
        exchanges = self._exchanges
        if exchanges and exchanges[0] is exchange:
            exchanges.popleft()
        if not exchange.keepAlive or (self._closeWhenIdle and not exchanges):
            self._failed = True
            self.closeConnection()
            return
        if len(exchanges) == self._limits.pipeline:
            self.transport.resumeProducing()
        if exchanges and not self._closing:
            self.dispatch(exchanges[0])

    # ------------------------------------------------------------ other

    def serverInfo(self, request: HttpRequest) -> dict[str, Any]:
        """
        Swoole's C{$request->server} for C{request}.
        """
        return self.factory.serverInfo(self, request)

    def closeWhenIdle(self) -> None:
        """
        A graceful stop: close once the requests received are answered.
        """
        if self._exchanges and not self._closing:
            self._closeWhenIdle = True
        else:
            super().closeWhenIdle()

    def connectionLost(self, reason: Any) -> None:
        for exchange in self._exchanges:
            exchange.close()
        self._exchanges.clear()
        self.dropUpload()
        super().connectionLost(reason)


class HttpPortFactory(PortFactory):
    """
    The factory of one HTTP port: L{HttpConnection}s, the C{request}
    callback, the limits, the cached C{Date} header.
    """

    def __init__(self, serv: Any, port: Any, process: Any) -> None:
        super().__init__(serv, port, process)
        settings = self.settings
        self.protocol = HttpConnection
        self.onRequest = port.getCallback("request")
        self.limits = Limits(settings)
        self.requestTimeout = settings["http_request_timeout"]
        self.compressionLevel = settings["http_compression_level"] if settings["http_compression"] else 0
        self.compressionMinLength = settings["compression_min_length"]
        self.uploadDir = settings["upload_tmp_dir"]
        self.uploadMaxFileSize = settings["upload_max_filesize"]
        self.trustedProxies = frozenset(settings["http_trusted_proxies"] or ())
        self.static = None
        if settings["enable_static_handler"] and settings["document_root"]:
            from swooletw.http.static import StaticFiles

            self.static = StaticFiles(settings["document_root"], settings["static_handler_locations"])
        self._dateSecond = -1
        self._date = b""

    def date(self) -> bytes:
        """
        The C{Date} header value, formatted once a second.
        """
        now = self.clock.seconds()
        second = int(now)
        if second != self._dateSecond:
            self._dateSecond = second
            self._date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(now)).encode()
        return self._date

    def requestRefused(self, connection: HttpConnection, error: BadRequest) -> None:
        """
        Log and count a request refused before the application.
        """
        self.stats.packet_error_count += 1
        self.log.warn(
            "refusing a request on fd {fd}: {status} {reason}",
            fd=connection.fd, status=error.status, reason=error.reason,
        )

    def serveStatic(self, request: HttpRequest, response: HttpResponse) -> bool:
        """
        Answer C{request} from the document root if it names a static
        file; C{False} to hand it to the application.
        """
        result = self.static.lookup(request.method.encode("latin-1"), request.target, request.header)
        if result is None:
            return False
        response.status(result.status)
        length = 0
        for name, value in result.headers:
            if name == "Content-Length":
                length = int(value)
            else:
                response.header(name, value, False)
        if result.path is not None and result.status in (200, 206):
            # sendfile sends no body for HEAD, with the Content-Length of GET
            response.sendfile(result.path, result.offset, length)
        else:
            response.end()
        return True

    def serverInfo(self, connection: HttpConnection, request: HttpRequest) -> dict[str, Any]:
        """
        Swoole's C{$request->server}.
        """
        transport = connection.transport
        peer = transport.getPeer()
        remoteAddr, remotePort = getattr(peer, "host", ""), getattr(peer, "port", 0)
        scheme = "http"
        if remoteAddr in self.trustedProxies:
            remoteAddr, scheme = _forwarded(request.header, remoteAddr, self.trustedProxies)
        started = request.time
        info: dict[str, Any] = {
            "request_method": request.method,
            "request_uri": request.path,
            "path_info": request.path,
            "request_time": int(started),
            "request_time_float": started,
            "server_protocol": f"HTTP/{request.version}",
            "server_port": getattr(transport.getHost(), "port", 0),
            "remote_addr": remoteAddr,
            "remote_port": remotePort,
            "master_time": int(started),
            "request_scheme": scheme,
        }
        if request.queryString:
            info["query_string"] = request.queryString
        return info


def _forwarded(header: dict[str, str], peer: str, trusted: frozenset[str]) -> tuple[str, str]:
    """
    The client's address and scheme as a trusted proxy reports them: the
    right-most C{X-Forwarded-For} entry that is not a trusted proxy, else
    C{X-Real-IP}, else the peer.
    """
    scheme = header.get("x-forwarded-proto", "http").split(",")[0].strip().lower()
    scheme = scheme if scheme in ("http", "https") else "http"
    forwarded = [part.strip() for part in header.get("x-forwarded-for", "").split(",") if part.strip()]
    for address in reversed(forwarded):
        if address not in trusted:
            return address, scheme
    realIp = header.get("x-real-ip", "").strip()
    return (realIp or peer), scheme
