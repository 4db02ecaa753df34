"""A plain Twisted protocol parsing HTTP/1.1 with httptools (llhttp, the C parser
uvicorn uses) and answering "Hello World" to every request.

This is the parser measurement of issue 8: twisted.web's HTTPChannel against
httptools inside a plain Twisted protocol, same reactor (epoll), same process
model. Per request it does what a minimal real server has to: collect the URL
and the headers (a list of (name, value) bytes pairs), and answer with
`Content-Length`, keeping the connection alive as the request asks (HTTP/1.1
by default, HTTP/1.0 with `Connection: keep-alive`); requests pipelined on a
connection are answered in order. `Date` is rebuilt once a second (as uvicorn
does), so the response carries the same kind of headers as the others. A
parse error answers 400 and closes the connection.

Usage: python3 httptools_twisted.py --host 127.0.0.1 --port N
Prints "ready" once listening.
"""
import argparse
import sys
from email.utils import formatdate

from twisted.internet import epollreactor

epollreactor.install()

import httptools  # noqa: E402
from twisted.internet import protocol, reactor, task  # noqa: E402

BODY = b"Hello World"
_HEAD = b"Server: httptools-twisted\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n" % len(BODY)
RESP = {}  # (keep_alive, http_1_0) -> full response bytes, rebuilt every second


def _rebuild():
    date = b"Date: " + formatdate(usegmt=True).encode() + b"\r\n"
    RESP[True, False] = b"HTTP/1.1 200 OK\r\n" + date + _HEAD + b"\r\n" + BODY
    RESP[False, False] = (b"HTTP/1.1 200 OK\r\n" + date + _HEAD + b"Connection: close\r\n\r\n"
                          + BODY)
    RESP[True, True] = (b"HTTP/1.1 200 OK\r\n" + date + _HEAD + b"Connection: keep-alive\r\n\r\n"
                        + BODY)
    RESP[False, True] = RESP[False, False]


BAD_REQUEST = (b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n"
               b"Connection: close\r\n\r\nBad Request")


class HttptoolsHello(protocol.Protocol):
    __slots__ = ("parser", "url", "headers", "closing")

    def connectionMade(self):
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.headers = []
        self.closing = False

    # httptools callbacks -------------------------------------------------
    def on_message_begin(self):
        self.url = b""
        self.headers = []

    def on_url(self, url):
        self.url += url

    def on_header(self, name, value):
        self.headers.append((name, value))

    def on_message_complete(self):
        if self.closing:
            return
        keep = self.parser.should_keep_alive()
        self.transport.write(RESP[keep, self.parser.get_http_version() == "1.0"])
        if not keep:
            self.closing = True
            self.transport.loseConnection()

    # Twisted -------------------------------------------------------------
    def dataReceived(self, data):
        if self.closing:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._bad()
        except httptools.HttpParserError:
            self._bad()

    def _bad(self):
        if not self.closing:
            self.closing = True
            self.transport.write(BAD_REQUEST)
            self.transport.loseConnection()


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    _rebuild()
    task.LoopingCall(_rebuild).start(1.0, now=False)
    reactor.listenTCP(args.port, protocol.Factory.forProtocol(HttptoolsHello), backlog=1024,
                      interface=args.host)
    print("ready", flush=True)
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
