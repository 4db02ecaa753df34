"""
Unit tests for L{swooletw.http}: L{HttpServer} on the memory reactor of
L{swooletw.testing.ServerHarness}, in-memory connections, no sockets and no
real time.  Real sockets and curl are in tests/test_http_real.py.
"""

from __future__ import annotations

import io
import os

from twisted.internet.defer import Deferred
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

import swooletw
import swooletw.http.connection
from swooletw import EventError, HttpRequest, HttpResponse, HttpServer
from swooletw.testing import HarnessReactor, ServerHarness


def httpServer(onRequest=None, **settings) -> HttpServer:
    serv = HttpServer("127.0.0.1", 9501, reactor=HarnessReactor())
    serv.set(dict({"worker_num": 1}, **settings))
    if onRequest is not None:
        serv.on("request", onRequest)
    return serv


def hello(request, response) -> None:
    response.end("hello")


def roundTrip(onRequest, data: bytes | None = None, **settings) -> tuple[bytes, object]:
    """
    What a new server with C{onRequest} sends back for C{data} (a GET of
    C{/} by default) on a new connection, and the connection.
    """
    harness = ServerHarness(httpServer(onRequest, **settings))
    client = harness.connect()
    client.write(get("/") if data is None else data)
    harness.advance(0)
    return client.read(), client


def get(target: str = "/", *headers: str, version: str = "1.1") -> bytes:
    lines = [f"GET {target} HTTP/{version}"]
    if version == "1.1":
        lines.append("Host: example.com")
    lines.extend(headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def post(body: bytes, contentType: str = "application/x-www-form-urlencoded", target: str = "/") -> bytes:
    return (
        f"POST {target} HTTP/1.1\r\nHost: example.com\r\nContent-Type: {contentType}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def multipart(boundary: str, fields: dict[str, str], files: dict[str, tuple[str, str, bytes]]) -> bytes:
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, (filename, kind, data) in files.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            f"Content-Type: {kind}\r\n\r\n".encode() + data + b"\r\n"
        )
    return b"".join(parts) + f"--{boundary}--\r\n".encode()


class Answer:
    """
    One parsed response: C{status}, C{reason}, C{version}, C{headers}
    (C{(lower-case name, value)} in order), C{body} (de-chunked), C{chunks}
    (the chunk sizes, terminator included, for a chunked body).
    """

    def __init__(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        self.version, status, self.reason = (lines[0].split(" ", 2) + [""])[:3]
        self.status = int(status)
        self.headers = []
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers.append((name.lower(), value.strip()))
        self.body = b""
        self.chunks: list[int] | None = None

    def header(self, name: str) -> str | None:
        values = [value for key, value in self.headers if key == name.lower()]
        assert len(values) <= 1, f"{name} appears {len(values)} times"
        return values[0] if values else None

    def headerList(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name.lower()]

    def __repr__(self) -> str:
        return f"<Answer {self.status} {self.headers} {self.body[:60]!r}>"


def parseAnswers(data: bytes, head: bool = False) -> list[Answer]:
    """
    The responses in C{data}, strictly: a chunked body must be well framed
    and end with its 0 chunk; a body without length runs to the end.

    @param head: the responses answer HEAD requests (no bodies).
    """
    answers = []
    while data:
        end = data.index(b"\r\n\r\n")
        answer = Answer(data[:end])
        data = data[end + 4:]
        answers.append(answer)
        if head or answer.status < 200 or answer.status in (204, 304):
            continue
        if answer.header("transfer-encoding") == "chunked":
            answer.chunks = []
            while True:
                eol = data.index(b"\r\n")
                size = int(data[:eol], 16)
                answer.chunks.append(size)
                chunk, trailer = data[eol + 2:eol + 2 + size], data[eol + 2 + size:eol + 4 + size]
                assert trailer == b"\r\n", f"chunk not followed by CRLF: {data[:80]!r}"
                data = data[eol + 4 + size:]
                answer.body += chunk
                if size == 0:
                    break
        elif answer.header("content-length") is not None:
            length = int(answer.header("content-length"))
            answer.body, data = data[:length], data[length:]
        else:
            answer.body, data = data, b""
    return answers


def only(data: bytes, head: bool = False) -> Answer:
    answers = parseAnswers(data, head)
    assert len(answers) == 1, answers
    return answers[0]


class LogCapture:
    """
    The log events of a test, by level.
    """

    def __init__(self, testCase: SynchronousTestCase) -> None:
        self.events = EventLoggingObserver.createWithCleanup(testCase, globalLogPublisher)

    def at(self, level: LogLevel) -> list[dict]:
        return [event for event in self.events if event["log_level"] == level]

    def failures(self) -> list[dict]:
        return [event for event in self.events if "log_failure" in event]

    def text(self, event: dict) -> str:
        return formatEvent(event)


# ----------------------------------------------------------------- point 1


class RequestEventTests(SynchronousTestCase):
    """
    The C{request} event: sync, C{async def} and Deferred handlers;
    C{connect}/C{receive} are not HTTP events.
    """

    def test_requestEvent(self) -> None:
        """The handler gets an HttpRequest and an HttpResponse; end() answers 200."""
        seen = []

        def onRequest(request, response):
            seen.append((type(request), type(response)))
            response.end("<h1>Hello Swoole</h1>")

        client = ServerHarness(httpServer(onRequest)).connect()
        client.write(get("/"))
        answer = only(client.read())
        self.assertEqual((answer.status, answer.body), (200, b"<h1>Hello Swoole</h1>"))
        self.assertEqual(seen, [(HttpRequest, HttpResponse)])
        self.assertIs(swooletw.HttpResponse, HttpResponse)
        self.assertFalse(client.closed)

    def test_asyncDefHandler(self) -> None:
        """An async def handler answers once what it awaits has fired."""
        waiting: Deferred[str] = Deferred()

        async def onRequest(request, response):
            text = await waiting
            response.end(text)

        client = ServerHarness(httpServer(onRequest)).connect()
        client.write(get("/"))
        self.assertEqual(client.read(), b"")
        waiting.callback("later")
        self.assertEqual(only(client.read()).body, b"later")

    def test_deferredHandler(self) -> None:
        """A handler returning a Deferred is tracked and may answer when it fires."""
        waiting: Deferred[None] = Deferred()

        def onRequest(request, response):
            return waiting.addCallback(lambda _: response.end("done"))

        harness = ServerHarness(httpServer(onRequest))
        client = harness.connect()
        client.write(get("/"))
        self.assertEqual(client.read(), b"")
        self.assertEqual(len(harness.runtime.inflight), 1)
        waiting.callback(None)
        self.assertEqual(only(client.read()).body, b"done")
        self.assertEqual(len(harness.runtime.inflight), 0)

    def test_connectAndReceiveRefused(self) -> None:
        """on('connect') and on('Receive') raise EventError naming 'request'."""
        serv = HttpServer("127.0.0.1", 9501)
        for event in ("connect", "Receive"):
            e = self.assertRaises(EventError, serv.on, event, lambda *args: None)
            self.assertIn("'request'", str(e))
        self.assertTrue(serv.on("close", lambda *args: None))
        self.assertTrue(serv.on("request", hello))

    def test_tcpPortNextToHttp(self) -> None:
        """A port from listen() with its own set() speaks plain TCP with its receive."""
        serv = httpServer(hello)
        tcp = serv.listen("127.0.0.1", 0)
        tcp.set(open_eof_split=True)
        tcp.on("receive", lambda serv, fd, reactorId, data: serv.send(fd, b"tcp:" + data))
        harness = ServerHarness(serv)
        plain, web = harness.connect(1), harness.connect(0)
        plain.write(b"ping\r\n")
        self.assertEqual(plain.read(), b"tcp:ping\r\n")
        web.write(get("/"))
        self.assertEqual(only(web.read()).body, b"hello")


# ----------------------------------------------------------------- point 2


class RequestTests(SynchronousTestCase):
    """
    The request's fields, with Swoole's names.
    """

    def capture(self, data: bytes, **settings) -> tuple[HttpRequest, ServerHarness, object]:
        seen = []

        def onRequest(request, response):
            seen.append(request)
            request.server  # built during the request
            response.end("ok")

        harness = ServerHarness(httpServer(onRequest, **settings))
        harness.advance(1_700_000_000.25)
        client = harness.connect()
        client.write(data)
        self.assertEqual(len(seen), 1, client.read())
        return seen[0], harness, client

    def test_fields(self) -> None:
        """fd, lower-case headers, server (with query_string), get, cookie."""
        request, harness, client = self.capture(
            get("/path/x?a=1&b[]=2&b[]=3", "X-Custom-Header: Value", "Cookie: sid=abc%20d; theme=dark")
        )
        self.assertEqual(request.fd, client.fd)
        self.assertEqual(request.header, {"host": "example.com", "x-custom-header": "Value",
                                          "cookie": "sid=abc%20d; theme=dark"})
        self.assertEqual(request.server, {
            "request_method": "GET",
            "request_uri": "/path/x",
            "path_info": "/path/x",
            "query_string": "a=1&b[]=2&b[]=3",
            "server_protocol": "HTTP/1.1",
            "server_port": 9501,
            "remote_addr": "127.0.0.1",
            "remote_port": client.transport.getPeer().port,
            "request_time": 1_700_000_000,
            "request_time_float": 1_700_000_000.25,
            "master_time": 1_700_000_000,
            "request_scheme": "http",
        })
        self.assertEqual(request.get, {"a": "1", "b": ["2", "3"]})
        self.assertEqual(request.cookie, {"sid": "abc d", "theme": "dark"})
        self.assertEqual(request.getMethod(), "GET")
        self.assertIsNone(request.post)
        self.assertIsNone(request.files)
        self.assertEqual(request.rawContent(), b"")

    def test_absentPartsAreNone(self) -> None:
        """No query string: no query_string key, get/post/cookie/files None."""
        request, _, _ = self.capture(get("/"))
        self.assertNotIn("query_string", request.server)
        self.assertEqual((request.get, request.post, request.cookie, request.files), (None,) * 4)

    def test_requestTimeIsArrival(self) -> None:
        """request_time is when the request arrived, even when handled after a slower one."""
        first: Deferred[None] = Deferred()
        times = {}

        def onRequest(request, response):
            times[request.server["request_uri"]] = request.server["request_time"]
            if request.server["request_uri"] == "/slow":
                return first.addCallback(lambda _: response.end())
            response.end()

        harness = ServerHarness(httpServer(onRequest))
        client = harness.connect()
        harness.advance(10)
        client.write(get("/slow"))
        harness.advance(10)
        client.write(get("/fast"))
        harness.advance(10)
        first.callback(None)
        self.assertEqual(times, {"/slow": 10, "/fast": 20})
        self.assertEqual(len(parseAnswers(client.read())), 2)

    def test_urlencodedPost(self) -> None:
        """A urlencoded body fills post; rawContent/getContent/getData give it whole."""
        body = b"name=J%C3%B6rg&tags[]=a&tags[]=b"
        request, _, _ = self.capture(post(body, target="/form"))
        self.assertEqual(request.post, {"name": "Jörg", "tags": ["a", "b"]})
        self.assertEqual(request.getMethod(), "POST")
        self.assertEqual(request.rawContent(), body)
        self.assertEqual(request.getContent(), body)
        self.assertIsNone(request.files)
        data = request.getData()
        self.assertTrue(data.startswith(b"POST /form HTTP/1.1\r\n"), data)
        self.assertTrue(data.endswith(b"\r\n\r\n" + body), data)
        self.assertIn(b"Content-Type: application/x-www-form-urlencoded\r\n", data)

    def test_getDataAsReceived(self) -> None:
        """getData() is the request as received, header names in their case."""
        raw = post(b"a=1")
        request, _, _ = self.capture(raw)
        self.assertEqual(request.getData(), raw)

    def test_otherBodyNotParsed(self) -> None:
        """A JSON body is in rawContent() only."""
        request, _, _ = self.capture(post(b'{"a": 1}', "application/json"))
        self.assertIsNone(request.post)
        self.assertEqual(request.rawContent(), b'{"a": 1}')

    def test_multipart(self) -> None:
        """Fields in post, uploads in files (temp file during the handler, removed after)."""
        tmp = os.path.abspath(self.mktemp())
        os.makedirs(tmp)
        during = {}
        waiting: Deferred[None] = Deferred()

        def onRequest(request, response):
            during["post"], during["files"] = request.post, request.files
            path = request.files["upload"]["tmp_name"]
            with open(path, "rb") as f:
                during["content"] = f.read()
            return waiting.addCallback(lambda _: response.end("stored"))

        payload = bytes(range(256)) * 40
        body = multipart("XyZ", {"title": "a file", "n": "2"},
                         {"upload": ("data.bin", "application/octet-stream", payload)})
        harness = ServerHarness(httpServer(onRequest, upload_tmp_dir=tmp))
        client = harness.connect()
        client.write(post(body, "multipart/form-data; boundary=XyZ", "/up"))
        self.assertEqual(during["post"], {"title": "a file", "n": "2"})
        meta = during["files"]["upload"]
        self.assertEqual(
            {key: meta[key] for key in ("name", "type", "size", "error")},
            {"name": "data.bin", "type": "application/octet-stream", "size": len(payload), "error": 0},
        )
        self.assertEqual(during["content"], payload)
        self.assertEqual(os.path.dirname(meta["tmp_name"]), tmp)
        # The handler is still running: the file stays.
        self.assertTrue(os.path.exists(meta["tmp_name"]))
        waiting.callback(None)
        self.assertEqual(only(client.read()).body, b"stored")
        self.assertFalse(os.path.exists(meta["tmp_name"]))
        self.assertEqual(os.listdir(tmp), [])

    def test_multipartFieldsOnly(self) -> None:
        """A multipart body without uploads: post set, files None (and the reverse)."""
        request, _, _ = self.capture(post(multipart("b", {"x": "1"}, {}), "multipart/form-data; boundary=b"))
        self.assertEqual((request.post, request.files), ({"x": "1"}, None))
        tmp = self.mktemp()
        os.makedirs(tmp)
        body = multipart("b", {}, {"f": ("a.txt", "text/plain", b"abc")})
        request, _, _ = self.capture(post(body, "multipart/form-data; boundary=b"), upload_tmp_dir=tmp)
        self.assertIsNone(request.post)
        self.assertEqual(request.files["f"]["size"], 3)

    def test_uploadRemovedWhenRefusedOrDropped(self) -> None:
        """An upload cut by the body limit or a disconnect leaves no temporary file."""
        tmp = self.mktemp()
        os.makedirs(tmp)
        harness = ServerHarness(httpServer(hello, upload_tmp_dir=tmp, package_max_length=4096))
        head = (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n")
        part = b'--b\r\nContent-Disposition: form-data; name="f"; filename="a"\r\n\r\n' + b"x" * 1000
        chunk = b"%x\r\n%s\r\n" % (len(part), part)
        dropped, refused = harness.connect(), harness.connect()
        for client in (dropped, refused):
            client.write(head + chunk)
        self.assertEqual(len(os.listdir(tmp)), 2)
        dropped.disconnect()
        refused.write(b"%x\r\n%s\r\n" % (4000, b"y" * 4000))
        self.assertEqual(only(refused.read()).status, 413)
        self.assertTrue(refused.closed)
        self.assertEqual(os.listdir(tmp), [])


# ----------------------------------------------------------------- point 3


class ResponseTests(SynchronousTestCase):
    """
    The response: head, body, streaming, files, redirects, detaching.
    """

    def test_defaultHeaders(self) -> None:
        """Server, Date, Content-Type text/html, Content-Length, Connection, in Swoole's way."""
        data, _ = roundTrip(hello)
        answer = only(data)
        self.assertEqual((answer.version, answer.status, answer.reason), ("HTTP/1.1", 200, "OK"))
        self.assertEqual(answer.header("server"), "swoole-http-server")
        self.assertRegex(answer.header("date"), r"^[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT$")
        self.assertEqual(answer.header("content-type"), "text/html")
        self.assertEqual(answer.header("content-length"), "5")
        self.assertEqual(answer.header("connection"), "keep-alive")
        self.assertIsNone(answer.header("transfer-encoding"))

    def test_statusAndHeaders(self) -> None:
        """status(code, reason), header() formats names, setHeader() too; None removes."""

        def onRequest(request, response):
            response.status(418)
            response.status(299, "Custom Reason")
            response.header("x-request-id", 42)
            response.setHeader("content-type", "application/json")
            response.header("X-Raw_name", "v", False)
            response.header("X-Gone", "v")
            response.header("X-Gone", None)
            response.end("{}")

        data, _ = roundTrip(onRequest)
        parsed = only(data)
        self.assertEqual((parsed.status, parsed.reason), (299, "Custom Reason"))
        self.assertIn(b"\r\nX-Request-Id: 42\r\n", data)
        self.assertIn(b"\r\nX-Raw_name: v\r\n", data)
        self.assertEqual(parsed.header("content-type"), "application/json")
        self.assertIsNone(parsed.header("x-gone"))

    def test_headerInjectionRefused(self) -> None:
        """CR/LF in a header is a ValueError in the handler: 500, no injected header."""
        def onRequest(request, response):
            response.header("X-A", "v\r\nSet-Cookie: evil=1")

        data, _ = roundTrip(onRequest)
        self.assertEqual(only(data).status, 500)
        self.assertNotIn(b"evil", data)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)

    def test_cookies(self) -> None:
        """cookie() with every attribute (URL-encoded value), rawcookie() as given, deletion."""

        def onRequest(request, response):
            response.cookie("session", "a b;c", 1_700_003_600, "/app", "example.com", True, True, "Strict", "High")
            response.rawcookie("raw", "a%20b", path="")
            response.setCookie("gone")
            response.end()

        harness = ServerHarness(httpServer(onRequest))
        harness.advance(1_700_000_000)
        client = harness.connect()
        client.write(get("/"))
        cookies = only(client.read()).headerList("set-cookie")
        self.assertEqual(cookies, [
            "session=a%20b%3Bc; expires=Tue, 14 Nov 2023 23:13:20 GMT; Max-Age=3600; path=/app; "
            "domain=example.com; SameSite=Strict; Priority=High; secure; HttpOnly",
            "raw=a%20b",
            "gone=deleted; expires=Thu, 01 Jan 1970 00:00:01 GMT; Max-Age=0; path=/",
        ])

    def test_chunkedStreaming(self) -> None:
        """write() sends the head and each chunk at once, chunked; end() sends the 0 chunk."""
        responses = []
        harness = ServerHarness(httpServer(lambda request, response: responses.append(response)))
        client = harness.connect()
        client.write(get("/"))
        response = responses[0]
        self.assertTrue(response.write("hello "))
        data = client.read()
        self.assertTrue(data.endswith(b"\r\n\r\n6\r\nhello \r\n"), data)
        self.assertIn(b"\r\nTransfer-Encoding: chunked\r\n", data)
        self.assertNotIn(b"Content-Length", data)
        self.assertTrue(response.write(b"world"))
        self.assertEqual(client.read(), b"5\r\nworld\r\n")
        self.assertTrue(response.write(b""))  # an empty write sends nothing (it would end the body)
        self.assertEqual(client.read(), b"")
        self.assertTrue(response.end("!"))
        self.assertEqual(client.read(), b"1\r\n!\r\n0\r\n\r\n")
        self.assertFalse(client.closed)
        client.write(get("/"))
        responses[1].end("next")
        self.assertEqual(only(client.read()).body, b"next")

    def test_streamingHttp10(self) -> None:
        """On HTTP/1.0, write() is not chunked: the body ends with the connection."""

        def onRequest(request, response):
            response.write("a")
            response.write("b")
            response.end("c")

        data, client = roundTrip(onRequest, get("/", version="1.0"))
        answer = only(data)
        self.assertEqual((answer.version, answer.body), ("HTTP/1.0", b"abc"))
        self.assertIsNone(answer.header("transfer-encoding"))
        self.assertIsNone(answer.header("content-length"))
        self.assertEqual(answer.header("connection"), "close")
        self.assertTrue(client.closed)

    def test_endAfterEnd(self) -> None:
        """A second end() or a write after end() returns False, with exactly one warning."""
        results = []
        log = LogCapture(self)

        def onRequest(request, response):
            results.append(response.end("one"))
            results.append(response.end("two"))
            results.append(response.write("three"))
            results.append(response.isWritable())

        data, _ = roundTrip(onRequest)
        self.assertEqual(results, [True, False, False, False])
        self.assertEqual(only(data).body, b"one")
        warnings = [e for e in log.at(LogLevel.warn) if "after the response ended" in log.text(e)]
        self.assertEqual(len(warnings), 1)

    def test_redirect(self) -> None:
        """redirect(url) answers 302 with Location; redirect(url, 301) too."""
        data, _ = roundTrip(lambda request, response: response.redirect("/elsewhere"))
        answer = only(data)
        self.assertEqual((answer.status, answer.header("location"), answer.body), (302, "/elsewhere", b""))
        data, _ = roundTrip(lambda request, response: response.redirect("https://x/", 301))
        self.assertEqual((only(data).status, only(data).header("location")), (301, "https://x/"))

    def test_isWritable(self) -> None:
        """isWritable() is True until end() and after the client left."""
        states = []
        responses = []

        def onRequest(request, response):
            states.append(response.isWritable())
            responses.append(response)

        harness = ServerHarness(httpServer(onRequest))
        client = harness.connect()
        client.write(get("/"))
        client.disconnect()
        states.append(responses[0].isWritable())
        self.assertEqual(states, [True, False])
        self.assertFalse(responses[0].end("late"))

    def test_sendfile(self) -> None:
        """sendfile(path, offset, length) sends that part of the file with a Content-Type."""
        path = self.mktemp() + ".txt"
        with open(path, "wb") as f:
            f.write(b"0123456789" * 100_000)

        data, _ = roundTrip(lambda request, response: response.sendfile(path, 5, 300_000))
        answer = only(data)
        self.assertEqual(answer.header("content-length"), "300000")
        self.assertEqual(answer.header("content-type"), "text/plain")
        self.assertEqual(answer.body, (b"0123456789" * 30_001)[5:300_005])
        data, _ = roundTrip(lambda request, response: response.sendfile(path))
        self.assertEqual(len(only(data).body), 1_000_000)

    def test_sendfileMissing(self) -> None:
        """sendfile of a missing file or past its end returns False; the response stays open."""
        results = []

        def onRequest(request, response):
            results.append(response.sendfile("/nonexistent/file"))
            results.append(response.sendfile(__file__, 10**9))
            response.status(404)
            response.end("missing")

        data, _ = roundTrip(onRequest)
        self.assertEqual(results, [False, False])
        self.assertEqual(only(data).status, 404)

    def test_sendfileWaitsForSlowPeer(self) -> None:
        """While the transport's buffer is past its high-water mark, sendfile waits; nothing is refused."""
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(os.urandom(3 * 1024 * 1024))
        harness = ServerHarness(httpServer(lambda request, response: response.sendfile(path)))
        client = harness.connect()
        client.write(get("/"))
        watch = client.transport.producer  # what the transport tells when its buffer is full
        watch.pauseProducing()
        sent = len(client.transport.value())
        harness.advance(1)
        self.assertEqual(len(client.transport.value()), sent)
        watch.resumeProducing()
        for _ in range(20):
            harness.advance(0.01)
        answer = only(client.read())
        with open(path, "rb") as f:
            self.assertEqual(answer.body, f.read())
        self.assertEqual(harness.serv.stats()["output_buffer_overflow_count"], 0)
        self.assertFalse(client.closed)

    def test_endOverOutputBuffer(self) -> None:
        """end() or write() of more than buffer_output_size returns False with a warning; the response stays usable."""
        log = LogCapture(self)
        results = []

        def onRequest(request, response):
            results.append(response.end(b"x" * 4097))
            results.append(response.write(b"x" * 4097))
            results.append(response.isWritable())
            results.append(response.end(b"y" * 3000))

        data, client = roundTrip(onRequest, buffer_output_size=4096)
        self.assertEqual(results, [False, False, True, True])
        self.assertEqual(only(data).body, b"y" * 3000)
        warnings = [e for e in log.at(LogLevel.warn) if "buffer_output_size" in log.text(e)]
        self.assertEqual([e["fd"] for e in warnings], [client.fd] * 2)
        self.assertFalse(client.closed)

    def test_streamAtOutputBuffer(self) -> None:
        """Outside a read, write() and end() of exactly buffer_output_size bytes pass, framing included."""
        results = []
        gate: Deferred[None] = Deferred()

        def onRequest(request, response):
            return gate.addCallback(lambda _: results.extend([response.write(b"z" * 4096), response.end(b"w" * 4096)]))

        harness = ServerHarness(httpServer(onRequest, buffer_output_size=4096))
        client = harness.connect()
        client.write(get("/"))
        gate.callback(None)
        self.assertEqual(results, [True, True])
        answer = only(client.read())
        self.assertEqual((answer.body, answer.chunks), (b"z" * 4096 + b"w" * 4096, [4096, 4096, 0]))
        self.assertFalse(client.closed)

    def test_detachAnsweredFromTimer(self) -> None:
        """detach() then HttpResponse.create(fd) answers from a timer."""
        serv = None

        def onRequest(request, response):
            self.assertTrue(response.detach())
            self.assertFalse(response.isWritable())
            serv.after(1000, lambda timerId: HttpResponse.create(request.fd).end("from a timer"))

        serv = httpServer(onRequest)
        harness = ServerHarness(serv)
        client = harness.connect()
        client.write(get("/"))
        self.assertEqual(client.read(), b"")
        harness.advance(1)
        self.assertEqual(only(client.read()).body, b"from a timer")
        self.assertIs(HttpResponse.create(client.fd), False)

    def test_detachAnsweredFromTask(self) -> None:
        """A task's finish answers the detached response."""
        serv = httpServer(task_worker_num=1)

        def onRequest(request, response):
            response.detach()
            serv.task({"fd": request.fd, "name": request.get["name"]})

        def onFinish(serv, taskId, data):
            response = HttpResponse.create(data["fd"])
            response.header("X-Task", str(taskId))
            response.end("hello " + data["name"])

        serv.on("request", onRequest)
        serv.on("task", lambda serv, taskId, src, data: {"fd": data["fd"], "name": data["name"].upper()})
        serv.on("finish", onFinish)
        client = ServerHarness(serv).connect()
        client.write(get("/?name=ann"))
        answer = only(client.read())
        self.assertEqual((answer.body, answer.header("x-task")), (b"hello ANN", "1"))

    def test_createUnknownFd(self) -> None:
        """create() of an fd with no detached response is False; so after the client left."""
        responses = []

        def onRequest(request, response):
            response.detach()
            responses.append(response)

        harness = ServerHarness(httpServer(onRequest))
        self.assertIs(HttpResponse.create(12345), False)
        client = harness.connect()
        client.write(get("/"))
        client.disconnect()
        self.assertIs(HttpResponse.create(client.fd), False)

    def test_handlerRaises(self) -> None:
        """A raising handler: 500, a log line with the request line and the fd; the connection goes on."""
        log = LogCapture(self)

        def onRequest(request, response):
            if request.server["request_uri"] == "/boom":
                raise ValueError("bad handler")
            response.end("fine")

        harness = ServerHarness(httpServer(onRequest))
        client = harness.connect()
        client.write(get("/boom?x=1"))
        answer = only(client.read())
        self.assertEqual(answer.status, 500)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        [failure] = log.failures()
        text = log.text(failure)
        self.assertIn("GET /boom?x=1 HTTP/1.1", text)
        self.assertIn(f"fd {client.fd}", text)
        client.write(get("/"))
        self.assertEqual(only(client.read()).body, b"fine")

    def test_asyncHandlerFails(self) -> None:
        """An async handler failing: 500 and one log line with the request line and fd."""
        log = LogCapture(self)

        async def onRequest(request, response):
            raise KeyError("gone")

        data, client = roundTrip(onRequest, get("/async"))
        self.assertEqual(only(data).status, 500)
        self.assertEqual(len(self.flushLoggedErrors(KeyError)), 1)
        [failure] = log.failures()
        self.assertIn("GET /async HTTP/1.1", log.text(failure))
        self.assertIn(f"fd {client.fd}", log.text(failure))

    def test_handlerRaisesAfterWrite(self) -> None:
        """A handler raising after write() cannot get a 500: the connection is cut."""

        def onRequest(request, response):
            response.write("partial")
            raise ValueError("midway")

        data, client = roundTrip(onRequest)
        self.assertTrue(client.closed)
        self.assertNotIn(b" 500 ", data)
        self.flushLoggedErrors(ValueError)

    def test_neverAnswered(self) -> None:
        """A handler that never answers gets 504 after http_request_timeout, then a close."""
        log = LogCapture(self)
        responses = []
        harness = ServerHarness(httpServer(lambda request, response: responses.append(response),
                                           http_request_timeout=5))
        client = harness.connect()
        client.write(get("/hang"))
        harness.advance(4.9)
        self.assertEqual(client.read(), b"")
        self.assertFalse(client.closed)
        harness.advance(0.2)
        self.assertEqual(only(client.read()).status, 504)
        self.assertTrue(client.closed)
        self.assertEqual(harness.serv.stats()["http_timeout_count"], 1)
        self.assertTrue([e for e in log.at(LogLevel.warn) if e.get("fd") == client.fd])
        self.assertFalse(responses[0].end("too late"))


# ----------------------------------------------------------------- point 4


class ProtocolTests(SynchronousTestCase):
    """
    HTTP/1.1: keep-alive, pipelining, bodies, 100-continue, HEAD, 1.0.
    """

    def test_keepAlive(self) -> None:
        """Several requests, one connection."""
        harness = ServerHarness(httpServer(hello))
        client = harness.connect()
        for _ in range(3):
            client.write(get("/"))
            self.assertEqual(only(client.read()).body, b"hello")
        self.assertFalse(client.closed)
        self.assertEqual(harness.serv.stats()["accept_count"], 1)

    def test_connectionClose(self) -> None:
        """Connection: close from the client: answered with close, then closed."""
        data, client = roundTrip(hello, get("/", "Connection: close"))
        self.assertEqual(only(data).header("connection"), "close")
        self.assertTrue(client.closed)

    def test_handlerAsksClose(self) -> None:
        """header('Connection', 'close') from the handler closes after the answer."""

        def onRequest(request, response):
            response.header("Connection", "close")
            response.end()

        data, client = roundTrip(onRequest)
        self.assertEqual(only(data).header("connection"), "close")
        self.assertTrue(client.closed)

    def test_pipelinedSlowFirst(self) -> None:
        """Pipelined requests are answered in order, even when the first is slower."""
        slow: Deferred[None] = Deferred()
        order = []

        def onRequest(request, response):
            order.append(request.server["request_uri"])
            if request.server["request_uri"] == "/slow":
                return slow.addCallback(lambda _: response.end("first"))
            response.end(request.server["request_uri"])

        client = ServerHarness(httpServer(onRequest)).connect()
        client.write(get("/slow") + get("/b") + get("/c"))
        self.assertEqual(client.read(), b"")
        self.assertEqual(order, ["/slow"])
        slow.callback(None)
        self.assertEqual([a.body for a in parseAnswers(client.read())], [b"first", b"/b", b"/c"])
        self.assertEqual(order, ["/slow", "/b", "/c"])

    def test_pipelinedSameRead(self) -> None:
        """Synchronous answers to requests in one read go out in one write, in order."""
        harness = ServerHarness(httpServer(lambda request, response: response.end(request.server["request_uri"])))
        client = harness.connect()
        writes = []

        class CountingIO(io.BytesIO):
            def write(self, data):
                writes.append(data)
                return super().write(data)

        client.transport.io = CountingIO()
        client.write(b"".join(get(f"/{i}") for i in range(5)))
        self.assertEqual([a.body for a in parseAnswers(client.read())], [f"/{i}".encode() for i in range(5)])
        self.assertEqual(len(writes), 1)

    def test_bodies(self) -> None:
        """Content-Length and chunked bodies (with extensions and trailers) arrive whole."""
        bodies = []

        def onRequest(request, response):
            bodies.append(request.rawContent())
            response.end()

        client = ServerHarness(httpServer(onRequest)).connect()
        client.write(post(b"x" * 10, "text/plain"))
        client.write(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        client.write(b"5;ext=1\r\nhello\r\n")
        client.write(b"6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n")
        self.assertEqual(bodies, [b"x" * 10, b"hello world"])
        self.assertEqual(len(parseAnswers(client.read())), 2)

    def test_bodyTrickled(self) -> None:
        """A body arriving a byte at a time is still one request."""
        bodies = []

        def onRequest(request, response):
            bodies.append(request.post)
            response.end()

        client = ServerHarness(httpServer(onRequest)).connect()
        for byte in post(b"a=1&b=2"):
            client.write(bytes([byte]))
        self.assertEqual(bodies, [{"a": "1", "b": "2"}])

    def test_expectContinue(self) -> None:
        """Expect: 100-continue gets 100 Continue, then the answer once the body came."""
        client = ServerHarness(httpServer(lambda req, resp: resp.end(req.rawContent()))).connect()
        client.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        self.assertEqual(client.read(), b"HTTP/1.1 100 Continue\r\n\r\n")
        client.write(b"hello")
        self.assertEqual(only(client.read()).body, b"hello")

    def test_expectContinueAfterPipelined(self) -> None:
        """The 100 Continue follows the answer to a request before it in the same read."""
        client = ServerHarness(httpServer(lambda req, resp: resp.end("ok"))).connect()
        client.write(get("/") + b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        data = client.read()
        self.assertTrue(data.endswith(b"\r\n\r\nokHTTP/1.1 100 Continue\r\n\r\n"), data)

    def test_expectContinueTooLarge(self) -> None:
        """Expect with a body over the limit: 413, never 100."""
        client = ServerHarness(httpServer(hello, package_max_length=100)).connect()
        client.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\nExpect: 100-continue\r\n\r\n")
        self.assertEqual(only(client.read()).status, 413)

    def test_head(self) -> None:
        """HEAD: the GET headers (Content-Length included), no body, for end(), write() and sendfile()."""
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b"z" * 1000)

        def onRequest(request, response):
            uri = request.server["request_uri"]
            if uri == "/end":
                response.end("twelve bytes")
            elif uri == "/write":
                response.write("streamed")
                response.end()
            else:
                response.sendfile(path)

        harness = ServerHarness(httpServer(onRequest))
        client = harness.connect()
        for uri in ("/end", "/write", "/file"):
            client.write(get(uri))
            harness.advance(0)
            full = only(client.read())
            client.write(get(uri).replace(b"GET", b"HEAD", 1))
            harness.advance(0)
            data = client.read()
            head = only(data, head=True)
            self.assertTrue(data.endswith(b"\r\n\r\n"), data)
            self.assertEqual(head.headers, full.headers)
        self.assertFalse(client.closed)
        client.write(get("/end"))
        self.assertEqual(only(client.read()).body, b"twelve bytes")

    def test_http10(self) -> None:
        """HTTP/1.0: closed after the answer; with Connection: keep-alive, kept."""
        harness = ServerHarness(httpServer(hello))
        client = harness.connect()
        client.write(get("/", version="1.0"))
        answer = only(client.read())
        self.assertEqual((answer.version, answer.header("connection")), ("HTTP/1.0", "close"))
        self.assertTrue(client.closed)
        client = harness.connect()
        client.write(get("/", "Connection: keep-alive", version="1.0"))
        self.assertEqual(only(client.read()).header("connection"), "keep-alive")
        client.write(get("/", version="1.0"))
        self.assertEqual(only(client.read()).body, b"hello")
        self.assertTrue(client.closed)

    def test_nothingDispatchedAfterClose(self) -> None:
        """Requests pipelined after one whose answer closes the connection never reach the handler."""
        seen = []
        serv = None

        def onRequest(request, response):
            seen.append(request.target)
            if request.target == b"/close":
                response.header("Connection", "close")
            elif request.target == b"/kill":
                serv.close(request.fd)
                return
            response.end()

        serv = httpServer(onRequest)
        harness = ServerHarness(serv)
        for first in (get("/close"), get("/kill"), get("/", version="1.0")):
            seen.clear()
            client = harness.connect()
            client.write(first + get("/after") + get("/after"))
            self.assertTrue(client.closed)
            self.assertEqual(len(seen), 1, seen)
        self.assertEqual(harness.serv.stats()["packet_error_count"], 0)

    def test_internalErrorIs500(self) -> None:
        """An exception of swooletw's own while parsing: 500, logged with its traceback, closed."""
        log = LogCapture(self)

        def broken(*args, **kwargs):
            raise RuntimeError("internal")

        self.patch(swooletw.http.connection, "HttpRequest", broken)
        client = ServerHarness(httpServer(hello)).connect()
        client.write(get("/"))
        self.assertEqual(only(client.read()).status, 500)
        self.assertTrue(client.closed)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual([e.get("fd") for e in log.failures()], [client.fd])

    def test_gracefulStop(self) -> None:
        """A stop closes idle connections at once and a busy one once its (detached) request is answered."""
        harness = ServerHarness(httpServer(lambda request, response: response.detach()))
        idle, busy = harness.connect(), harness.connect()
        idle.write(get("/"))
        HttpResponse.create(idle.fd).end("first")
        busy.write(get("/"))
        stopped = harness.stop(settle=False)
        self.assertTrue(idle.closed)
        self.assertFalse(busy.closed)
        HttpResponse.create(busy.fd).end("bye")
        self.assertEqual(only(busy.read()).body, b"bye")
        self.assertTrue(busy.closed)
        harness.advance(0.1)
        self.successResultOf(stopped)

    def test_pipelineMax(self) -> None:
        """Past http_pipeline_max queued requests reading pauses, and resumes as they drain."""
        gates = []

        def onRequest(request, response):
            gate: Deferred[None] = Deferred()
            gates.append(gate)
            return gate.addCallback(lambda _: response.end())

        client = ServerHarness(httpServer(onRequest, http_pipeline_max=2)).connect()
        for _ in range(2):
            client.write(get("/"))
        self.assertEqual(client.transport.producerState, "producing")
        client.write(get("/"))
        self.assertEqual(client.transport.producerState, "paused")
        gates[0].callback(None)
        self.assertEqual(client.transport.producerState, "producing")
        gates[1].callback(None)
        gates[2].callback(None)
        self.assertEqual(len(parseAnswers(client.read())), 3)

    def test_bigHeadInPieces(self) -> None:
        """A head within the limit is accepted however it is split into reads."""
        uris = []

        def onRequest(request, response):
            uris.append(request.header.get("x-big"))
            response.end()

        client = ServerHarness(httpServer(onRequest, http_max_header_size=16384)).connect()
        data = get("/", "X-Pad: " + "p" * 6000, "X-Big: " + "b" * 6000) + post(b"x" * 20000, "text/plain")
        for start in range(0, len(data), 4000):
            client.write(data[start:start + 4000])
        self.assertEqual(uris, ["b" * 6000, None])
        self.assertEqual([a.status for a in parseAnswers(client.read())], [200, 200])

    def test_slowHandlerNotARecvTimeout(self) -> None:
        """package_recv_timeout bounds a request's arrival, not its handler."""
        gate: Deferred[None] = Deferred()
        harness = ServerHarness(httpServer(lambda req, resp: gate.addCallback(lambda _: resp.end("late")),
                                           package_recv_timeout=2))
        client = harness.connect()
        client.write(get("/"))
        harness.advance(5)
        self.assertFalse(client.closed)
        gate.callback(None)
        self.assertEqual(only(client.read()).body, b"late")

    def test_trickledRequestDropped(self) -> None:
        """A request whose head or body trickles for longer than package_recv_timeout is dropped."""
        log = LogCapture(self)
        seen = []
        harness = ServerHarness(httpServer(lambda req, resp: (seen.append(req), resp.end()),
                                           package_recv_timeout=2))
        slowHead, slowBody = harness.connect(), harness.connect()
        head, body = get("/", "X-Pad: " + "p" * 100), post(b"x" * 100, "text/plain")
        slowBody.write(body[:-100])
        for i in range(10):
            slowHead.write(head[i:i + 1])
            slowBody.write(b"x")
            harness.advance(0.5)
        self.assertTrue(slowHead.closed)
        self.assertTrue(slowBody.closed)
        self.assertEqual(seen, [])
        self.assertEqual(harness.serv.stats()["packet_timeout_count"], 2)
        self.assertEqual({e.get("fd") for e in log.at(LogLevel.warn)}, {slowHead.fd, slowBody.fd})
        fresh = harness.connect()
        fresh.write(get("/"))
        self.assertEqual(only(fresh.read()).status, 200)
        harness.advance(5)
        self.assertFalse(fresh.closed)  # an idle keep-alive connection is not a trickle


# ----------------------------------------------------------- limits and bad input


SMUGGLING = {
    "CL then TE": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "TE then CL": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
    "two CLs": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    "equal CLs": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
    "CL list": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\nhello",
    "obs-fold": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n",
    "bare LF": b"GET / HTTP/1.1\nHost: x\n\n",
    "bare LF in a header": b"GET / HTTP/1.1\r\nHost: x\nX-A: 1\r\n\r\n",
    "bad chunk size": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    "chunk size overflow": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                           b"10000000000000000\r\nhello\r\n0\r\n\r\n",
    "TE not chunked": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nhello",
    "TE xchunked": b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
    "space before colon": b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
    "non-ASCII header name": b"GET / HTTP/1.1\r\nHost: x\r\nX-\xc3\xa9: 1\r\n\r\n",
    "upgrade with a body": b"POST / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: websocket\r\n"
                           b"Content-Length: 36\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
    "h2c upgrade chunked": b"POST / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n"
                           b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "CONNECT": b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
    "HTTP/2.0": b"GET / HTTP/2.0\r\nHost: x\r\n\r\n",
    "no Host": b"GET / HTTP/1.1\r\n\r\n",
    "two Hosts": b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
    "HTTP/1.0 with TE": b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "no request line": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    "garbage line": b"GARBAGE\r\n\r\n",
    "no version": b"GET /\r\nHost: x\r\n\r\n",  # HTTP/0.9 to llhttp
    "lowercase method": b"get / HTTP/1.1\r\nHost: x\r\n\r\n",
    "bad protocol": b"GET / HTTX/1.1\r\nHost: x\r\n\r\n",
    "trailing junk": b"GET / HTTP/1.1 extra\r\nHost: x\r\n\r\n",
    "space in target": b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n",
    "NUL in a value": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
    "CTL in a value": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n",
    "DEL in a name": b"GET / HTTP/1.1\r\nHost: x\r\nX\x7fA: 1\r\n\r\n",
    "empty header name": b"GET / HTTP/1.1\r\nHost: x\r\n: v\r\n\r\n",
    "negative CL": b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
}

STATUS = {"CONNECT": 405, "HTTP/2.0": 505, "no version": 505}


class BadInputTests(SynchronousTestCase):
    """
    Smuggling and malformed requests: the right 4xx/5xx and a close, never a
    request handed to the application, counted and logged with the fd; other
    connections never notice.
    """

    def setUp(self) -> None:
        self.log = LogCapture(self)
        self.seen: list[bytes] = []

        def onRequest(request, response):
            self.seen.append(request.target)
            response.end("app")

        self.harness = ServerHarness(httpServer(onRequest, package_max_length=64 * 1024))
        self.other = self.harness.connect()
        # another connection, mid-request, when the bad one arrives
        self.other.write(get("/other")[:20])

    def refused(self, status: int, writes: list[bytes] | bytes) -> object:
        """
        Send C{writes} on a new connection: answered C{status}, closed,
        counted, logged with the fd, no request dispatched.
        """
        errors = self.harness.serv.stats()["packet_error_count"]
        client = self.harness.connect()
        for data in [writes] if isinstance(writes, bytes) else writes:
            if client.closed:
                break
            client.write(data)
        answer = only(client.read())
        self.assertEqual(answer.status, status, answer)
        self.assertEqual(answer.header("connection"), "close")
        self.assertTrue(client.closed)
        self.assertEqual(self.seen, [])
        self.assertEqual(self.harness.serv.stats()["packet_error_count"], errors + 1)
        logged = [e for e in self.log.at(LogLevel.warn) if e.get("fd") == client.fd]
        self.assertEqual(len(logged), 1, logged)
        self.assertEqual(self.log.failures(), [])
        return client

    def tearDown(self) -> None:
        # the other connection never noticed
        self.other.write(get("/other")[20:])
        answer = only(self.other.read())
        self.assertEqual((answer.status, answer.body), (200, b"app"))
        self.assertFalse(self.other.closed)

    def test_smuggling(self) -> None:
        """Every smuggling vector and malformed request: 400 (405, 505) and a close."""
        for name, data in SMUGGLING.items():
            with self.subTest(name):
                self.refused(STATUS.get(name, 400), data)
                # the same bytes trickled in
                self.refused(STATUS.get(name, 400), [data[i:i + 7] for i in range(0, len(data), 7)])

    def test_nothingAfterARefusal(self) -> None:
        """A request pipelined after a refused one is never parsed."""
        self.refused(400, SMUGGLING["two Hosts"] + get("/after"))
        self.refused(400, SMUGGLING["upgrade with a body"] + get("/after"))

    def test_validRequestBeforeABadOne(self) -> None:
        """A good request before a bad one in the same read is answered first, then 400 and close."""
        client = self.harness.connect()
        client.write(get("/good") + SMUGGLING["obs-fold"])
        answers = parseAnswers(client.read())
        self.assertEqual([a.status for a in answers], [200, 400])
        self.assertTrue(client.closed)
        self.assertEqual(self.seen, [b"/good"])
        self.seen.clear()

    def test_hugeContentLength(self) -> None:
        """A 3 GiB Content-Length: 413 at once, before any body."""
        self.refused(413, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3221225472\r\n\r\n")

    def test_endlessChunkedBody(self) -> None:
        """An endless chunked body: 413 once past package_max_length."""
        chunk = b"%x\r\n%s\r\n" % (1000, b"x" * 1000)
        writes = [b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"] + [chunk] * 100
        client = self.refused(413, writes)
        # stopped within one chunk of the limit
        self.assertLess(self.harness.serv.stats()["total_recv_bytes"], 66 * 1024 + 2000)
        self.assertTrue(client.closed)

    def test_bodyOverLimitAtOnce(self) -> None:
        """A Content-Length of the limit + 1: 413."""
        self.refused(413, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 65537\r\n\r\n")

    def test_tooManyHeaders(self) -> None:
        """10,000 headers: 431."""
        headers = b"".join(b"X-H%d: v\r\n" % i for i in range(10_000))
        self.refused(431, b"GET / HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
        self.refused(431, [b"GET / HTTP/1.1\r\nHost: x\r\n"] + [b"X-H%d: v\r\n" % i for i in range(10_000)])

    def test_headTooLarge(self) -> None:
        """A 1 MiB header value, at once or in pieces: 431."""
        self.refused(431, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"v" * (1 << 20) + b"\r\n\r\n")
        self.refused(431, [b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: "] + [b"v" * 4096] * 256)

    def test_longUrl(self) -> None:
        """A 1 MiB URL: 414."""
        self.refused(414, b"GET /" + b"a" * (1 << 20) + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        self.refused(414, [b"GET /"] + [b"a" * 1024] * 1024)
