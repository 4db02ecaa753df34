"""
L{swooletw.HttpServer} on real sockets: a server in this process on trial's
reactor (BASE mode, one worker), with raw Twisted clients and C{curl} run
as a child process (asynchronously: the server shares this reactor).
"""

from __future__ import annotations

import hashlib
import os
import shutil

from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase

import swooletw.http.connection
from swooletw import HttpServer
from swooletw.http.forms import MultipartParser
from swooletw.http.static import httpDate
from tests.test_http import parseAnswers
from tests.test_integration import RealServerMixin

CURL = shutil.which("curl")


class HttpRealMixin(RealServerMixin):
    def startHttp(self, onRequest, **settings) -> HttpServer:
        serv = HttpServer("127.0.0.1", 0)
        if settings:
            serv.set(**settings)
        serv.on("request", onRequest)
        return self.startServer(serv)

    def url(self, serv: HttpServer, path: str = "/") -> str:
        return f"http://127.0.0.1:{serv.port}{path}"

    def curl(self, *args: str) -> Deferred[tuple[bytes, bytes]]:
        """
        Run curl; fires with C{(stdout, stderr)}, failing the test if curl
        exits non-zero.
        """
        if CURL is None:
            raise self.skipTest("curl is not installed (apt-get install -y curl)")

        def check(result: tuple[bytes, bytes, int]) -> tuple[bytes, bytes]:
            out, err, code = result
            self.assertEqual(code, 0, f"curl {' '.join(args)}: {err.decode(errors='replace')}")
            return out, err

        d = getProcessOutputAndValue(CURL, ["-sS", "--max-time", "10", *args], env=os.environ)
        return d.addCallback(check)

    def headAndBody(self, out: bytes) -> tuple[int, dict[str, str], bytes]:
        """
        curl -i output: the last response's status, headers, body.
        """
        answers = parseAnswers(out)
        final = [a for a in answers if a.status >= 200][-1]
        return final.status, dict(final.headers), final.body


class TcpNextToHttpTests(HttpRealMixin, TestCase):
    """
    Point 1: a plain TCP port from listen() works next to the HTTP port.
    """

    @inlineCallbacks
    def test_tcpPortNextToHttp(self):
        """The TCP port runs its receive callback; the HTTP port answers curl."""
        serv = HttpServer("127.0.0.1", 0)
        serv.on("request", lambda request, response: response.end("from http"))
        tcp = serv.listen("127.0.0.1", 0)
        tcp.set({"open_eof_split": True, "package_eof": "\n"})
        tcp.on("receive", lambda serv, fd, reactorId, data: serv.send(fd, b"tcp:" + data))
        self.startServer(serv)
        client = yield self.connect(tcp.port)
        self.disconnectAtEnd(client)
        client.transport.write(b"ping\n")
        self.assertEqual((yield client.waitFor(9)), b"tcp:ping\n")
        out, _ = yield self.curl(self.url(serv))
        self.assertEqual(out, b"from http")


class ProtocolRealTests(HttpRealMixin, TestCase):
    """
    Keep-alive, pipelining, request bodies, HTTP/1.0, sendfile.
    """

    @inlineCallbacks
    def test_keepAliveReuse(self):
        """curl fetching two URLs reuses one connection."""
        serv = self.startHttp(lambda request, response: response.end(request.server["request_uri"]))
        out, err = yield self.curl("-v", self.url(serv, "/a"), self.url(serv, "/b"))
        self.assertEqual(out, b"/a/b")
        self.assertRegex(err.decode(), r"Re-?using existing connection")
        self.assertEqual(serv.stats()["accept_count"], 1)

    @inlineCallbacks
    def test_http10(self):
        """curl --http1.0: answered HTTP/1.0 with Connection: close."""
        serv = self.startHttp(lambda request, response: response.end(request.server["server_protocol"]))
        out, _ = yield self.curl("-i", "--http1.0", self.url(serv))
        status, headers, body = self.headAndBody(out)
        self.assertEqual((status, headers["connection"], body), (200, "close", b"HTTP/1.0"))
        self.assertTrue(out.startswith(b"HTTP/1.0 200 OK\r\n"))

    @inlineCallbacks
    def test_pipelining(self):
        """Three requests in one write on a raw socket, the first slower: answers in order."""
        gate: Deferred[None] = Deferred()
        entered: Deferred[None] = Deferred()

        def onRequest(request, response):
            uri = request.server["request_uri"]
            if uri == "/slow":
                entered.callback(None)
                return gate.addCallback(lambda _: response.end("slow"))
            response.end(uri)

        serv = self.startHttp(onRequest)
        client = yield self.connect(serv.port)
        self.disconnectAtEnd(client)
        client.transport.write(b"".join(
            f"GET {uri} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for uri in ("/slow", "/b", "/c")
        ))
        yield entered
        gate.callback(None)
        while not client.data.endswith(b"\r\n\r\n/c"):
            yield client.waitFor(len(client.data) + 1)
        self.assertEqual([a.body for a in parseAnswers(client.data)], [b"slow", b"/b", b"/c"])

    @inlineCallbacks
    def test_chunkedRequest(self):
        """curl -H 'Transfer-Encoding: chunked': the body arrives whole."""
        seen = []

        def onRequest(request, response):
            seen.append(request.rawContent())
            response.end(hashlib.sha256(request.rawContent()).hexdigest())

        serv = self.startHttp(onRequest)
        path = self.mktemp()
        payload = os.urandom(300_000)
        with open(path, "wb") as f:
            f.write(payload)
        out, err = yield self.curl("-v", "-H", "Transfer-Encoding: chunked", "-H", "Content-Type: text/plain",
                                   "--data-binary", "@" + path, self.url(serv))
        self.assertIn(b"> Transfer-Encoding: chunked", err)
        self.assertEqual(out.decode(), hashlib.sha256(payload).hexdigest())
        self.assertEqual(seen, [payload])

    @inlineCallbacks
    def test_sendfile(self):
        """sendfile of a 5 MiB file, whole and a part, arrives byte for byte."""
        path = self.mktemp()
        payload = os.urandom(5 * 1024 * 1024 + 17)
        with open(path, "wb") as f:
            f.write(payload)

        def onRequest(request, response):
            if request.get:
                response.sendfile(path, int(request.get["offset"]), int(request.get["length"]))
            else:
                response.sendfile(path)

        serv = self.startHttp(onRequest)
        whole, part = self.mktemp(), self.mktemp()
        yield self.curl("-o", whole, self.url(serv), "-o", part, self.url(serv, "/?offset=1000&length=3000000"))
        with open(whole, "rb") as f:
            self.assertEqual(f.read(), payload)
        with open(part, "rb") as f:
            self.assertEqual(f.read(), payload[1000:3_001_000])
        self.assertEqual(serv.stats()["accept_count"], 1)

    @inlineCallbacks
    def test_multipartUpload(self):
        """A 10 MiB curl -F upload: streamed to a temp file (bounded buffering), removed after."""
        tmp = os.path.abspath(self.mktemp())
        os.makedirs(tmp)
        buffered = []

        class Watched(MultipartParser):
            def feed(self, chunk):
                super().feed(chunk)
                buffered.append(self.buffered)

        self.patch(swooletw.http.connection, "MultipartParser", Watched)
        seen = {}

        def onRequest(request, response):
            meta = request.files["upload"]
            with open(meta["tmp_name"], "rb") as f:
                seen["sha"] = hashlib.sha256(f.read()).hexdigest()
            seen.update(meta=meta, post=request.post, raw=len(request.rawContent()), files=os.listdir(tmp))
            response.end("stored")

        serv = self.startHttp(onRequest, upload_tmp_dir=tmp, package_max_length=16 << 20)
        path = self.mktemp()
        payload = os.urandom(10 << 20)
        with open(path, "wb") as f:
            f.write(payload)
        out, err = yield self.curl("-v", "-F", "title=ten", "-F", f"upload=@{path};type=application/x-test",
                                   self.url(serv, "/upload"))
        self.assertEqual(out, b"stored")
        self.assertIn(b"HTTP/1.1 100 Continue", err)
        meta = seen["meta"]
        self.assertEqual((meta["size"], meta["type"], meta["error"]), (10 << 20, "application/x-test", 0))
        self.assertEqual(meta["name"], os.path.basename(path))
        self.assertEqual(seen["sha"], hashlib.sha256(payload).hexdigest())
        self.assertEqual(seen["post"], {"title": "ten"})
        self.assertEqual(seen["raw"], 0)  # the body is not kept in memory
        self.assertEqual(seen["files"], [os.path.basename(meta["tmp_name"])])
        self.assertEqual(os.listdir(tmp), [])
        self.assertGreater(len(buffered), 10)
        self.assertLess(max(buffered), 256 * 1024)


class ExtrasRealTests(HttpRealMixin, TestCase):
    """
    http_compression and the static handler, through curl.
    """

    @inlineCallbacks
    def test_compressed(self):
        """--compressed with http_compression: gzip on the wire, the body intact."""
        text = ("<p>" + "swoole on twisted " * 500 + "</p>").encode()
        serv = self.startHttp(lambda request, response: response.end(text), http_compression=True)
        headers = self.mktemp()
        out, _ = yield self.curl("--compressed", "-D", headers, self.url(serv))
        self.assertEqual(out, text)
        with open(headers, "rb") as f:
            answer = parseAnswers(f.read(), head=True)[0]
        self.assertEqual(answer.header("content-encoding"), "gzip")
        self.assertLess(int(answer.header("content-length")), len(text) // 10)
        plain, _ = yield self.curl(self.url(serv))
        self.assertEqual(plain, text)

    def makeRoot(self) -> tuple[str, str]:
        base = os.path.realpath(self.mktemp())
        root, outside = os.path.join(base, "root"), os.path.join(base, "outside")
        os.makedirs(root)
        os.makedirs(outside)
        files = {"index.html": b"<h1>index</h1>", "style.css": b"body{color:red}", "a.txt": b"0123456789" * 10,
                 "img.png": b"\x89PNG\r\n\x1a\n" + b"\0" * 100}
        for name, data in files.items():
            with open(os.path.join(root, name), "wb") as f:
                f.write(data)
            os.utime(os.path.join(root, name), (1_700_000_000, 1_700_000_000))
        with open(os.path.join(outside, "secret.txt"), "wb") as f:
            f.write(b"SECRET")
        return root, outside

    @inlineCallbacks
    def test_staticFiles(self):
        """MIME types, 304 on If-Modified-Since, 206 for a Range, HEAD's Content-Length."""
        root, _ = self.makeRoot()
        serv = self.startHttp(lambda request, response: response.end("app"),
                              enable_static_handler=True, document_root=root)
        out, _ = yield self.curl("-i", self.url(serv, "/style.css"))
        status, headers, body = self.headAndBody(out)
        self.assertEqual((status, headers["content-type"], body), (200, "text/css; charset=utf-8", b"body{color:red}"))
        self.assertEqual(headers["last-modified"], httpDate(1_700_000_000))
        out, _ = yield self.curl("-i", self.url(serv, "/img.png"))
        self.assertEqual(self.headAndBody(out)[1]["content-type"], "image/png")
        out, _ = yield self.curl("-i", "-H", f"If-Modified-Since: {httpDate(1_700_000_000)}", self.url(serv, "/a.txt"))
        status, headers, body = self.headAndBody(out)
        self.assertEqual((status, body), (304, b""))
        out, _ = yield self.curl("-i", "-r", "10-19", self.url(serv, "/a.txt"))
        status, headers, body = self.headAndBody(out)
        self.assertEqual((status, headers["content-range"], body), (206, "bytes 10-19/100", b"0123456789"))
        out, _ = yield self.curl("-I", self.url(serv, "/a.txt"))
        [head] = parseAnswers(out, head=True)
        self.assertEqual((head.status, head.header("content-length")), (200, "100"))
        out, _ = yield self.curl(self.url(serv, "/not-a-file"))
        self.assertEqual(out, b"app")

    @inlineCallbacks
    def test_pathTraversal(self):
        """/../, %2e%2e and friends never reach a file outside the root."""
        root, _ = self.makeRoot()
        serv = self.startHttp(lambda request, response: response.end("app"),
                              enable_static_handler=True, document_root=root)
        for path in ("/../outside/secret.txt", "/%2e%2e/outside/secret.txt", "/%2E%2E/outside/secret.txt",
                     "/a/../../outside/secret.txt", "/..%2foutside/secret.txt", "/%2e%2e%2foutside%2fsecret.txt",
                     "/index.html%00.txt"):
            out, _ = yield self.curl("-i", "--path-as-is", self.url(serv, path))
            status, _, body = self.headAndBody(out)
            self.assertNotIn(b"SECRET", out, path)
            self.assertIn(status, (400, 404), path)
