"""twisted.web hello world: a leaf Resource answering b"Hello World" to every request.

Site + Resource over twisted.web's HTTPChannel (its own pure-Python HTTP/1.1
parser), epoll reactor, one process. The access log is off (Site.log is a
no-op) as for the other servers of the HTTP bench: with Twisted's default the
Site formats a line per request into the legacy log. Twisted adds its own
`Server`, `Date` and `Content-Type: text/html` headers.

Usage: python3 twisted_http.py --host 127.0.0.1 --port N
Prints "ready" once listening.
"""
import argparse
import sys

from twisted.internet import epollreactor

epollreactor.install()

from twisted.internet import reactor  # noqa: E402
from twisted.web import resource, server  # noqa: E402

BODY = b"Hello World"


class Hello(resource.Resource):
    isLeaf = True

    def render(self, request):
        return BODY


class QuietSite(server.Site):
    def log(self, request):
        pass


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    reactor.listenTCP(args.port, QuietSite(Hello()), backlog=1024, interface=args.host)
    print("ready", flush=True)
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
