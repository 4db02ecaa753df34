"""asyncio echo server (asyncio.Protocol, bytearray buffer).

--framing eof:    packets end with b"\\r\\n"; each packet (delimiter included)
                  is written back with transport.write().
--framing length: 4-byte big-endian body length + body; each packet (header
                  included) is written back with transport.write().
--uvloop:         use uvloop's event loop (exit status 3 if not importable).

The default loop on Linux is the selector loop over epoll. Listens on
127.0.0.1 only. Prints "ready" once listening.
"""
import argparse
import asyncio
import struct
import sys

MAX = 1 << 20
_unpack_len = struct.Struct("!I").unpack_from


class EofEcho(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
        self.buf = bytearray()

    def data_received(self, data):
        buf = self.buf
        buf += data
        write = self.transport.write
        start = 0
        while True:
            i = buf.find(b"\r\n", start)
            if i < 0:
                break
            write(buf[start:i + 2])
            start = i + 2
        if start:
            del buf[:start]
        if len(buf) > MAX:
            self.transport.close()


class LengthEcho(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
        self.buf = bytearray()

    def data_received(self, data):
        buf = self.buf
        buf += data
        write = self.transport.write
        pos = 0
        n = len(buf)
        while n - pos >= 4:
            (blen,) = _unpack_len(buf, pos)
            if blen > MAX:
                self.transport.close()
                return
            end = pos + 4 + blen
            if end > n:
                break
            write(buf[pos:end])
            pos = end
        if pos:
            del buf[:pos]


async def serve(port, framing):
    loop = asyncio.get_running_loop()
    proto = EofEcho if framing == "eof" else LengthEcho
    server = await loop.create_server(proto, "127.0.0.1", port, backlog=1024)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--framing", choices=("eof", "length"), default="eof")
    ap.add_argument("--uvloop", action="store_true")
    args = ap.parse_args()
    if args.uvloop:
        try:
            import uvloop
        except ImportError:
            print("uvloop is not importable", file=sys.stderr)
            return 3
        uvloop.install()
    try:
        asyncio.run(serve(args.port, args.framing))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
