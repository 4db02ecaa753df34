"""
Servers and helpers for the blocking client's tests (L{tests.test_client},
L{tests.test_client_framing}, L{tests.test_client_udp}).

The servers here are plain Python sockets served from a thread on
127.0.0.1 with a random port, so these tests do not depend on the swooletw
server.  Packets are built with C{struct} the way PHP's C{pack()} builds
them, independently of the library's own tables.
"""

from __future__ import annotations

import socket
import struct
import sys
import threading
import time
from typing import Any, Callable, Iterable

from swooletw.client import Client
from swooletw.constants import SOCK_TCP

_HOST = "<" if sys.byteorder == "little" else ">"
#: PHP pack() codes as struct formats, written out independently.
PHP_PACK = {"c": "<b", "C": "<B", "n": ">H", "N": ">I", "v": "<H", "V": "<I", "S": _HOST + "H", "l": _HOST + "i"}


def pack(lengthType: str, lengthOffset: int, bodyOffset: int, body: bytes) -> bytes:
    """
    A length-framed packet: filler bytes, the length field at
    C{lengthOffset}, filler up to C{bodyOffset}, then C{body}; the length
    field holds the packet's size minus C{bodyOffset} (Swoole's rule).
    """
    fmt = PHP_PACK[lengthType]
    headerEnd = lengthOffset + struct.calcsize(fmt)
    padding = b"\xee" * max(0, bodyOffset - headerEnd)
    size = headerEnd + len(padding) + len(body)
    return b"\xab" * lengthOffset + struct.pack(fmt, size - bodyOffset) + padding + body


# -------------------------------------------------------------- servers


def waitForClose(conn: socket.socket, stopping: threading.Event) -> None:
    """
    Read and drop everything until the client closes or the test ends.
    """
    conn.settimeout(0.05)
    while not stopping.is_set():
        try:
            if not conn.recv(65536):
                return
        except socket.timeout:
            continue
        except OSError:
            return


def echo(conn: socket.socket, stopping: threading.Event) -> None:
    """
    Send back whatever arrives.
    """
    conn.settimeout(0.05)
    while not stopping.is_set():
        try:
            data = conn.recv(65536)
        except socket.timeout:
            continue
        if not data:
            return
        conn.sendall(data)


def sends(
    chunks: Iterable[bytes], delay: float = 0.0, then: Any = waitForClose, eventTimeout: float = 5.0
) -> Callable:
    """
    A handler that sends C{chunks} one C{send} each, C{delay} seconds apart,
    then runs C{then} (by default: waits for the client to close).

    A L{threading.Event} among the chunks means: wait until the test sets
    it, or at most C{eventTimeout} seconds (so a test that fails before
    setting it does not hang).
    """

    def handler(conn: socket.socket, stopping: threading.Event) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for chunk in chunks:
            if isinstance(chunk, threading.Event):
                chunk.wait(eventTimeout)
                continue
            conn.sendall(chunk)
            if delay:
                # Paces the chunks (so they tend to arrive in separate
                # reads); no test depends on how they are split.
                time.sleep(delay)
        if then is not None:
            then(conn, stopping)

    return handler


def byteByByte(data: bytes) -> list[bytes]:
    """
    C{data} cut into one-byte sends.
    """
    return [data[i : i + 1] for i in range(len(data))]


class ThreadedSocket:
    """
    A socket bound to 127.0.0.1 with a random port, served from a thread:
    C{serveOnce()} runs until L{stop}; a socket timeout just loops again.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.stopping = threading.Event()
        self.sock = sock
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def serveOnce(self) -> None:
        """
        Serve one connection or datagram.
        """
        raise NotImplementedError()

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                self.serveOnce()
            except socket.timeout:
                continue

    def stop(self) -> None:
        """
        Stop serving, join the thread and close the socket.
        """
        self.stopping.set()
        self.thread.join(5)
        self.sock.close()


class ThreadedServer(ThreadedSocket):
    """
    A plain-Python TCP server that runs C{handler(conn, stopping)} for each
    connection in turn, on one thread.
    """

    def __init__(self, handler: Callable) -> None:
        self.handler = handler
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        super().__init__(listener)

    def serveOnce(self) -> None:
        """
        Accept one connection and run the handler on it.
        """
        conn, _ = self.sock.accept()
        with conn:
            try:
                self.handler(conn, self.stopping)
            except OSError:
                pass


def freePort() -> int:
    """
    A port on 127.0.0.1 with nothing listening on it.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ClientTestMixin:
    """
    Servers and clients that are stopped and closed after each test.
    """

    def serve(self, handler: Callable) -> ThreadedServer:
        """
        A L{ThreadedServer} running C{handler}.
        """
        server = ThreadedServer(handler)
        self.addCleanup(server.stop)
        return server

    def client(self, settings: dict | None = None, sockType: int = SOCK_TCP) -> Client:
        """
        A new L{Client} with C{settings}.
        """
        client = Client(sockType)
        if settings:
            client.set(settings)
        self.addCleanup(client.close)
        return client

    def connected(self, handler: Callable, settings: dict | None = None, timeout: float = 2.0) -> Client:
        """
        A L{Client} with C{settings} connected to a new server running
        C{handler}, with C{timeout} as C{connect}'s.
        """
        server = self.serve(handler)
        client = self.client(settings)
        self.assertTrue(client.connect("127.0.0.1", server.port, timeout), client.errMsg)
        return client
