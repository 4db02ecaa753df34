# -*- test-case-name: tests.test_http_request -*-
"""
L{HttpRequest}: Swoole's C{Http\\Request}, built by the connection for each
request and parsed lazily.

A handler that only answers pays for none of the parsing: C{header},
C{get}, C{post}, C{cookie} and C{server} are built on first access, from
the raw byte pairs the parser handed over.  Absent parts are L{None}, as in
Swoole (C{get} without a query string, C{post} without a form body,
C{cookie} without a Cookie header, C{files} without uploads).
"""

from __future__ import annotations

from typing import Any

from swooletw.http.forms import parseCookies, parseQuery

__all__ = ["HttpRequest"]

#: form bodies parsed into C{post}
URLENCODED = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data"


class HttpRequest:
    """
    One HTTP request.

    @ivar fd: the connection id.
    @ivar method: the method, as sent (C{"GET"}).
    @ivar target: the raw request target (path and query).
    @ivar version: C{"1.1"} or C{"1.0"}.
    @ivar rawHeaders: C{(name, value)} byte pairs as received.
    @ivar time: when the request arrived (the reactor's seconds).
    @ivar files: Swoole's C{$request->files}, or L{None}.
    """

    __slots__ = (
        "fd",
        "method",
        "target",
        "version",
        "rawHeaders",
        "files",
        "time",
        "_body",
        "_post",
        "_connection",
        "_header",
        "_server",
        "_get",
        "_cookie",
    )

    def __init__(
        self,
        fd: int,
        method: str,
        target: bytes,
        version: str,
        rawHeaders: list[tuple[bytes, bytes]],
        body: bytes,
        connection: Any,
        post: dict[str, Any] | None = None,
        files: dict[str, Any] | None = None,
        time: float = 0.0,
    ) -> None:
        self.fd = fd
        self.method = method
        self.target = target
        self.version = version
        self.rawHeaders = rawHeaders
        self._body = body
        self._connection = connection
        self._post = post
        self.files = files
        self.time = time
        self._header: dict[str, str] | None = None
        self._server: dict[str, Any] | None = None
        self._get: Any = False
        self._cookie: Any = False

    # ------------------------------------------------------------- parts

    @property
    def header(self) -> dict[str, str]:
        """
        The request headers by lower-case name; a repeated header's values
        joined with C{", "}.
        """
        header = self._header
        if header is None:
            header = {}
            for name, value in self.rawHeaders:
                key = name.decode("latin-1").lower()
                text = value.decode("latin-1")
                header[key] = f"{header[key]}, {text}" if key in header else text
            self._header = header
        return header

    @property
    def server(self) -> dict[str, Any]:
        """
        Swoole's C{$request->server}: C{request_method}, C{request_uri},
        C{path_info}, C{query_string} (when there is one),
        C{server_protocol}, C{server_port}, C{remote_addr},
        C{remote_port}, C{request_time}, C{request_time_float},
        C{master_time}.
        """
        if self._server is None:
            self._server = self._connection.serverInfo(self)
        return self._server

    @property
    def get(self) -> dict[str, Any] | None:
        """
        The query string's fields (PHP's C{$_GET}), or L{None}.
        """
        if self._get is False:
            path, sep, query = self.target.partition(b"?")
            self._get = parseQuery(query) if sep and query else None
        return self._get

    @property
    def post(self) -> dict[str, Any] | None:
        """
        The fields of a urlencoded or multipart body (PHP's C{$_POST}), or
        L{None}.
        """
        if self._post is None and self._body and self.contentType() == URLENCODED:
            self._post = parseQuery(self._body)
        return self._post

    @property
    def cookie(self) -> dict[str, str] | None:
        """
        The Cookie header's cookies (PHP's C{$_COOKIE}), or L{None}.
        """
        if self._cookie is False:
            raw = [value for name, value in self.rawHeaders if name.lower() == b"cookie"]
            self._cookie = parseCookies(b"; ".join(raw)) if raw else None
        return self._cookie

    @property
    def path(self) -> str:
        """
        The path of the target, percent-encoded as sent.
        """
        return self.target.partition(b"?")[0].decode("latin-1")

    @property
    def queryString(self) -> str:
        """
        The query string as sent (without C{?}), or C{""}.
        """
        return self.target.partition(b"?")[2].decode("latin-1")

    def contentType(self) -> str:
        """
        The media type of the body, lower-cased, without parameters.
        """
        for name, value in self.rawHeaders:
            if name.lower() == b"content-type":
                return value.split(b";", 1)[0].strip().lower().decode("latin-1")
        return ""

    # ----------------------------------------------------------- methods

    def rawContent(self) -> bytes:
        """
        The request body as received (C{b""} for none; for a multipart
        upload, the files are in C{files} instead).
        """
        return self._body

    getContent = rawContent

    def getMethod(self) -> str:
        """
        The request method.
        """
        return self.method

    def getData(self) -> bytes:
        """
        The whole request as received: request line, headers and body.
        """
        lines = [f"{self.method} ".encode("latin-1") + self.target + f" HTTP/{self.version}".encode("latin-1")]
        lines.extend(name + b": " + value for name, value in self.rawHeaders)
        return b"\r\n".join(lines) + b"\r\n\r\n" + self._body

    def __repr__(self) -> str:
        return f"<HttpRequest fd={self.fd} {self.method} {self.target!r}>"
