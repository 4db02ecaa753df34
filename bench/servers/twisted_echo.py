"""Bare Twisted echo server (epoll reactor).

--framing eof:    LineReceiver, delimiter b"\\r\\n", lineReceived -> sendLine(line)
--framing length: Int32StringReceiver, stringReceived -> sendString(s)

Listens on 127.0.0.1 only. Prints "ready" once listening.
"""
import argparse
import sys

from twisted.internet import epollreactor

epollreactor.install()

from twisted.internet import protocol, reactor  # noqa: E402
from twisted.protocols.basic import Int32StringReceiver, LineReceiver  # noqa: E402

MAX = 1 << 20


class LineEcho(LineReceiver):
    delimiter = b"\r\n"
    MAX_LENGTH = MAX

    def lineReceived(self, line):
        self.sendLine(line)


class Int32Echo(Int32StringReceiver):
    MAX_LENGTH = MAX

    def stringReceived(self, string):
        self.sendString(string)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--framing", choices=("eof", "length"), default="eof")
    ap.add_argument("--nodelay", action="store_true",
                    help="set TCP_NODELAY on accepted sockets (Twisted does not by default)")
    args = ap.parse_args()

    proto = LineEcho if args.framing == "eof" else Int32Echo
    if args.nodelay:
        base = proto

        class proto(base):  # noqa: N801
            def connectionMade(self):
                self.transport.setTcpNoDelay(True)
                base.connectionMade(self)

    factory = protocol.Factory.forProtocol(proto)
    reactor.listenTCP(args.port, factory, backlog=1024, interface="127.0.0.1")
    print("ready", flush=True)
    reactor.run()


if __name__ == "__main__":
    sys.exit(main())
