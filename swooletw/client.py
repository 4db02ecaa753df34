# -*- test-case-name: tests.test_client -*-
"""
L{Client}: Swoole's blocking C{swoole_client} / C{Swoole\\Client}, for
ordinary scripts and web apps (no reactor involved).

    client = Client(SOCK_TCP, SOCK_SYNC)
    client.set({"open_eof_split": True, "package_eof": "\\r\\n"})
    if not client.connect("127.0.0.1", 9501):
        raise SystemExit(f"connect failed. Error: {client.errCode}")
    client.send("hello server\\r\\n")
    print(client.recv())
    client.close()

As in PHP, failures return C{False} and set C{errCode} (an C{errno} value
such as 111 ECONNREFUSED or 110 ETIMEDOUT, or a Swoole code from
L{swooletw.constants}) and C{errMsg}; only programming errors (a bad setting
or socket type) raise.  Data comes back as C{bytes} (PHP strings are bytes);
C{str} given to C{send} is sent as UTF-8.  Packets are split by the
server's framers (L{swooletw.wire.framing}), so with framing set C{recv()}
returns one whole packet, framing included, as the server's C{receive}
gets it.  What it shares with L{swooletw.asyncclient} (settings, socket
types, error state) is in L{swooletw._clientbase}.
"""

from __future__ import annotations

import errno
import socket
import time
from typing import Any

from swooletw._clientbase import (
    CLIENT_SETTINGS,
    ClientBase,
    PacketCollector,
    addressDict,
    checkClientSettings,
    firstGiven,
    framingErrorCode,
    packetCollector,
)
from swooletw.wire import toBytes
from swooletw.constants import (
    ERROR_DNSLOOKUP_RESOLVE_FAILED,
    SOCK_ASYNC,
    SOCK_SYNC,
    SOCK_TCP,
    SockType,
)
from swooletw.wire.framing import framingFor

__all__ = ["Client", "CLIENT_SETTINGS", "checkClientSettings", "PacketCollector"]


def _isTimeout(e: OSError) -> bool:
    # A socket timeout, as opposed to a kernel ETIMEDOUT on a dead peer.
    return isinstance(e, TimeoutError) and not e.errno


def _blocking(seconds: float) -> float | None:
    # Swoole: a negative (or zero) timeout waits forever.
    return seconds if seconds > 0 else None


# ------------------------------------------------------------------ client


class Client(ClientBase):
    """
    A blocking TCP or UDP client with Swoole's C{swoole_client} API:
    C{errCode}, C{errMsg}, C{type}, C{setting} and C{set()} as
    L{ClientBase} has them.
    """

    def __init__(self, sock_type: int = SOCK_TCP, is_sync: int = SOCK_SYNC) -> None:
        """
        @param sock_type: C{SOCK_TCP}, C{SOCK_UDP}, C{SOCK_TCP6} or C{SOCK_UDP6}.
        @param is_sync: C{SOCK_SYNC}, as PHP writes it; C{SOCK_ASYNC} is
            refused with a pointer to L{swooletw.asyncclient.AsyncClient}.
        @raise ValueError: for anything else.
        """
        if is_sync == SOCK_ASYNC:
            raise ValueError(
                "SOCK_ASYNC: Client is blocking; for an asynchronous client "
                "use swooletw.asyncclient.AsyncClient"
            )
        if is_sync != SOCK_SYNC:
            raise ValueError(f"the second argument must be SOCK_SYNC, got {is_sync!r}")
        super().__init__(sock_type)
        self._sock: socket.socket | None = None
        self._collector: Any = None
        self._pendingError: tuple[int, str] | None = None
        self._peer: Any = None
        self._lastPeer: Any = None
        self._readTimeout: float | None = None
        self._writeTimeout: float | None = None

    # -------------------------------------------------------- timeouts

    def _timeouts(self, timeout: float | None) -> float:
        # The most specific wins: connect()'s argument for connecting, the
        # read/write settings for reading/writing, then "timeout", then 0.5.
        s = self._settings
        base = firstGiven(timeout, s["timeout"], 0.5)
        self._readTimeout = _blocking(firstGiven(s["read_timeout"], base))
        self._writeTimeout = _blocking(firstGiven(s["write_timeout"], base))
        return firstGiven(timeout, s["connect_timeout"], base)

    # ---------------------------------------------------------- errors

    def _failFrom(self, e: OSError) -> bool:
        if isinstance(e, socket.gaierror):
            return self._fail(ERROR_DNSLOOKUP_RESOLVE_FAILED, f"DNS lookup failed: {e.strerror}")
        if _isTimeout(e):
            return self._fail(errno.ETIMEDOUT)
        return self._fail(e.errno or errno.EIO, e.strerror or str(e))

    # --------------------------------------------------------- connect

    def connect(self, host: str, port: int, timeout: float | None = None, flag: int = 0) -> bool:
        """
        Connect (TCP), or choose the default peer (UDP).

        @param timeout: seconds for connecting and, as in Swoole, for each
            later C{send} and C{recv}; zero or negative waits forever.
            C{None}: C{set()}'s C{connect_timeout} (for connecting) or
            C{timeout}, else Swoole's 0.5.  C{set()}'s C{read_timeout} and
            C{write_timeout}, when given, win for reading and writing.
        @param flag: UDP only: 1 also connects the socket, so datagrams
            from other peers are dropped (Swoole's C{udp_connect}).
        @return: C{True}, or C{False} with C{errCode} set (C{EISCONN} if
            already connected).
        """
        if self._sock is not None:
            return self._fail(errno.EISCONN)
        connectTimeout = _blocking(self._timeouts(timeout))
        self._collector = None
        self._pendingError = None
        self._lastPeer = None
        if self._datagram:
            return self._connectUDP(host, port, flag)
        return self._connectTCP(host, port, connectTimeout)

    def _family(self) -> int:
        if self.type in (SockType.SOCK_TCP6, SockType.SOCK_UDP6):
            return socket.AF_INET6
        return socket.AF_INET

    def _connectTCP(self, host: str, port: int, timeout: float | None) -> bool:
        sock = socket.socket(self._family(), socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect((host, port))
            if self._settings["open_tcp_nodelay"]:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as e:
            sock.close()
            return self._failFrom(e)
        self._sock = sock
        self._collector = packetCollector(framingFor(self._settings))
        return True

    def _newDatagramSocket(self) -> socket.socket:
        family = self._family()
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", 0))
        return sock

    def _resolve(self, host: str, port: int) -> Any:
        infos = socket.getaddrinfo(host, port, self._family(), socket.SOCK_DGRAM)
        return infos[0][4]

    def _connectUDP(self, host: str, port: int, flag: int) -> bool:
        try:
            peer = self._resolve(host, port)
            sock = self._newDatagramSocket()
        except OSError as e:
            return self._failFrom(e)
        if flag:
            try:
                sock.connect(peer)
            except OSError as e:
                sock.close()
                return self._failFrom(e)
        self._sock, self._peer = sock, peer
        return True

    # ------------------------------------------------------------ send

    def send(self, data: str | bytes, flag: int = 0) -> int | bool:
        """
        Send all of C{data} (to the default peer, for UDP).

        @param flag: C{send(2)} flags, as PHP's second argument.
        @return: the number of bytes sent, or C{False} with C{errCode} set.
        """
        payload = toBytes(data)
        sock = self._sock
        if sock is None:
            return self._notConnected()
        if not payload:
            return self._fail(errno.EINVAL, "data to send is empty")
        try:
            sock.settimeout(self._writeTimeout)
            if self._datagram:
                return sock.sendto(payload, flag, self._peer)
            sock.sendall(payload, flag)
        except OSError as e:
            return self._failFrom(e)
        return len(payload)

    def sendto(self, ip: str, port: int, data: str | bytes) -> bool:
        """
        UDP only: send one datagram to C{ip}:C{port}, connected or not.

        @return: C{True}, or C{False} with C{errCode} set.
        """
        if not self._datagram:
            return self._fail(errno.EPROTOTYPE, "sendto() is for SOCK_UDP and SOCK_UDP6 clients")
        payload = toBytes(data)
        try:
            if self._sock is None:
                self._timeouts(None)
                self._sock = self._newDatagramSocket()
            self._sock.settimeout(self._writeTimeout)
            self._sock.sendto(payload, self._resolve(ip, port))
        except OSError as e:
            return self._failFrom(e)
        return True

    # ------------------------------------------------------------ recv

    def recv(self, size: int = 65535, flags: int = 0) -> bytes | bool:
        """
        Receive, blocking up to the read timeout.

        With framing set, return exactly one whole packet, framing included
        (C{size} and C{flags} are then ignored, as in Swoole).  Without,
        return what one read gives, at most C{size} bytes (C{flags} are
        C{recv(2)}'s).  For UDP, return one datagram.

        @return: the data; C{b""} when the peer closed the connection (the
            client is then closed); C{False} with C{errCode} set on a
            timeout (the connection stays usable and a partial packet is
            kept) or on any other error, including a framing violation
            (which closes the connection).
        """
        collector = self._collector
        if collector is not None and collector.packets:
            return collector.packets.popleft()
        if self._pendingError is not None:
            code, message = self._pendingError
            self._pendingError = None
            return self._fail(code, message)
        if self._sock is None:
            return self._notConnected()
        deadline = self._deadline()
        if self._datagram:
            return self._recvDatagram(size, flags, deadline)
        if collector is not None:
            return self._recvPacket(collector, deadline)
        return self._recvRaw(size, flags, deadline)

    def _deadline(self) -> float | None:
        if self._readTimeout is None:
            return None
        return time.monotonic() + self._readTimeout

    def _arm(self, deadline: float | None) -> bool:
        # Set the socket timeout to what is left; False when none is left.
        if deadline is None:
            self._sock.settimeout(None)
            return True
        left = deadline - time.monotonic()
        if left <= 0:
            self._fail(errno.ETIMEDOUT)
            return False
        self._sock.settimeout(left)
        return True

    def _read(self, size: int, flags: int, deadline: float | None) -> bytes | None:
        """
        One read; C{None} on error (C{errCode} set, the connection closed
        unless it was a timeout).
        """
        if not self._arm(deadline):
            return None
        try:
            return self._sock.recv(size, flags)
        except OSError as e:
            self._failFrom(e)
            if not _isTimeout(e):
                self._drop()
            return None

    def _recvRaw(self, size: int, flags: int, deadline: float | None) -> bytes | bool:
        data = self._read(size, flags, deadline)
        if data is None:
            return False
        if not data:
            self._drop()
        return data

    def _recvPacket(self, collector: Any, deadline: float | None) -> bytes | bool:
        while not collector.packets:
            chunk = self._read(65536, 0, deadline)
            if chunk is None:
                return False
            if not chunk:
                self._drop()
                return b""
            collector.dataReceived(chunk)
            if collector.error is not None:
                self._drop()
                code = framingErrorCode(collector.framingErrorTooLarge)
                self._pendingError = (code, collector.error)
                return self.recv()
        return collector.packets.popleft()

    def _recvDatagram(self, size: int, flags: int, deadline: float | None) -> bytes | bool:
        if not self._arm(deadline):
            return False
        try:
            data, self._lastPeer = self._sock.recvfrom(size, flags)
        except OSError as e:
            return self._failFrom(e)
        return data

    # ----------------------------------------------------------- state

    def _drop(self) -> None:
        # Close the socket but keep packets already split for recv().
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def close(self, force: bool = False) -> bool:
        """
        Close the connection (C{force} is accepted for PHP's signature).

        @return: C{True}, or C{False} (C{errCode} set) if not connected.
        """
        if self._sock is None:
            return self._notConnected()
        self._drop()
        self._collector = None
        self._pendingError = None
        self._peer = self._lastPeer = None
        return True

    def isConnected(self) -> bool:
        """
        @return: whether the socket is open (a peer's close, seen by
            C{recv}, or a failed read closes it).
        """
        return self._sock is not None

    def getsockname(self) -> dict[str, Any] | bool:
        """
        @return: the local address as C{{'host': ..., 'port': ...}}, or
            C{False} if not connected.
        """
        if self._sock is None:
            return self._notConnected()
        return addressDict(self._sock.getsockname())

    def getpeername(self) -> dict[str, Any] | bool:
        """
        @return: the peer's address as C{{'host': ..., 'port': ...}} (for
            UDP: the sender of the last datagram received, as Swoole, else
            the default peer), or C{False} if not connected.
        """
        if self._sock is None:
            return self._notConnected()
        if self._datagram:
            peer = self._lastPeer or self._peer
            return addressDict(peer) if peer else self._notConnected()
        try:
            return addressDict(self._sock.getpeername())
        except OSError as e:
            return self._failFrom(e)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._sock is not None:
            self.close()
