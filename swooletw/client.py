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
server's framers (L{swooletw.framing}), so with framing set C{recv()}
returns one whole packet, framing included, as the server's C{receive}
gets it.  The helpers here are shared with L{swooletw.asyncclient}.
"""

from __future__ import annotations

import difflib
import errno
import os
import socket
import time
from collections import deque
from typing import Any, Mapping

from swooletw import settings as _settings
from swooletw.constants import (
    ERROR_CLIENT_NO_CONNECTION,
    ERROR_DNSLOOKUP_RESOLVE_FAILED,
    ERROR_PACKAGE_LENGTH_TOO_LARGE,
    ERROR_PACKAGE_MALFORMED_DATA,
    KEEP,
    SOCK_ASYNC,
    SOCK_SYNC,
    SOCK_TCP,
    SSL,
    UDP_TYPES,
    SockType,
)
from swooletw.framing import Framing, RawReceiver, framingFor
from swooletw.settings import SettingError

__all__ = ["Client", "CLIENT_SETTINGS", "checkClientSettings", "PacketCollector"]

#: Swoole's client timeouts (seconds; zero or negative: wait forever).
TIMEOUT_SETTINGS = ("timeout", "connect_timeout", "read_timeout", "write_timeout")

#: Port settings a client refuses, and why.
_REFUSED = {
    "backlog": "a client does not listen",
    "heartbeat_check_interval": "heartbeats are swept by servers, not clients",
    "heartbeat_idle_time": "heartbeats are swept by servers, not clients",
    "ssl_cert_file": "TLS clients are not available in this version",
    "ssl_key_file": "TLS clients are not available in this version",
}

#: Every name the clients' C{set} takes: a port's framing settings,
#: C{open_tcp_nodelay} and the timeouts.
CLIENT_SETTINGS = frozenset((_settings.PORT_SETTINGS - _REFUSED.keys()) | set(TIMEOUT_SETTINGS))

_FRAMED = ("open_eof_check", "open_eof_split", "open_length_check", "package_length_func")
_TYPES = "SOCK_TCP, SOCK_UDP, SOCK_TCP6 or SOCK_UDP6"


def clientDefaults() -> dict[str, Any]:
    """
    Swoole's defaults for every port setting, and no timeout override.
    """
    values = _settings.defaults()
    result = {name: values[name] for name in _settings.PORT_SETTINGS}
    result.update(dict.fromkeys(TIMEOUT_SETTINGS))
    return result


def _timeout(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SettingError(
            f"setting {name!r} must be a number of seconds, got {type(value).__name__} {value!r}"
        )
    return float(value)


def _refusal(name: object) -> SettingError:
    if name in _REFUSED:
        return SettingError(f"setting {name!r} is not a client setting: {_REFUSED[name]}")
    if not isinstance(name, str):
        return SettingError(f"setting names are strings, got {name!r}")
    if name in _settings.defaults() or name == "max_connection":
        return SettingError(f"setting {name!r} belongs to servers; a client does not take it")
    close = difflib.get_close_matches(name, sorted(CLIENT_SETTINGS), n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return SettingError(f"unknown client setting {name!r}{hint}")


def checkClientSettings(values: Mapping[str, Any]) -> dict[str, Any]:
    """
    Check client settings one by one.

    @param values: names and values, as PHP's array.
    @return: the values normalised (EOF markers as C{bytes}, seconds as
        C{float}).
    @raise SettingError: naming the first unknown, server-only or bad one.
    """
    port: dict[str, Any] = {}
    result: dict[str, Any] = {}
    for name, value in values.items():
        if name in TIMEOUT_SETTINGS:
            result[name] = _timeout(name, value)
        elif name in CLIENT_SETTINGS:
            port[name] = value
        else:
            raise _refusal(name)
    result.update(_settings.normalise(port, portOnly=True))
    return result


def mergeSettingArgs(values: Mapping[str, Any] | None, keywords: dict[str, Any]) -> dict[str, Any]:
    """
    Merge C{set(dict)} and C{set(**keywords)} arguments.

    @raise SettingError: if C{values} is not a mapping.
    """
    if values is not None and not isinstance(values, Mapping):
        raise SettingError(f"set() takes a dict of settings, got {type(values).__name__}")
    return {**(values or {}), **keywords}


def applySettings(current: dict[str, Any], values: Mapping[str, Any], datagram: bool) -> dict[str, Any]:
    """
    Merge values checked by L{checkClientSettings} over C{current} (left
    untouched) and check them together.

    @param datagram: for UDP, where a datagram is one packet: refuse framing.
    @return: the new full settings.
    @raise SettingError: on contradictory framing, or framing for UDP.
    """
    merged = {**current, **values}
    _settings.checkFraming(merged)
    for name in _FRAMED if datagram else ():
        if merged[name]:
            raise SettingError(
                f"setting {name!r} applies to TCP clients; a UDP datagram is already one packet"
            )
    return merged


def parseSockType(sockType: Any) -> SockType:
    """
    Check a C{swoole_client} socket type.

    @raise ValueError: for an unknown type or the C{SSL}/C{KEEP} flags.
    """
    if isinstance(sockType, bool) or not isinstance(sockType, int):
        raise ValueError(f"socket type must be {_TYPES}, got {sockType!r}")
    if sockType & SSL:
        raise ValueError("SWOOLE_SSL: TLS clients are not available in this version")
    if sockType & KEEP:
        raise ValueError("SWOOLE_KEEP: no persistent connections; keep and reuse the client")
    try:
        return SockType(sockType)
    except ValueError:
        raise ValueError(f"socket type must be {_TYPES}, got {sockType!r}") from None


def framingErrorCode(reason: str) -> int:
    """
    Swoole's code for a framer's C{framingError} reason: over the limit, or
    otherwise malformed.
    """
    if "package_max_length" in reason:
        return ERROR_PACKAGE_LENGTH_TOO_LARGE
    return ERROR_PACKAGE_MALFORMED_DATA


def toBytes(data: Any) -> bytes:
    """
    C{str} as UTF-8, bytes-like objects as C{bytes}.

    @raise TypeError: for anything else.
    """
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"data must be str or bytes, got {type(data).__name__}")


def addressDict(address: Any) -> dict[str, Any]:
    """
    A socket address as Swoole gives it: C{{'host': ..., 'port': ...}}.
    """
    return {"host": address[0], "port": address[1]}


class _StandInTransport:
    # All a framer looks at on its transport.
    disconnecting = False


class PacketCollector:
    """
    Mixin for a framer class of L{swooletw.framing} that queues the whole
    packets for blocking reads.

    @ivar packets: packets not yet returned, oldest first.
    @ivar error: the framing error's reason, or L{None}.
    """

    def __init__(self) -> None:
        self.packets: deque[bytes] = deque()
        self.error: str | None = None
        self.transport = _StandInTransport()

    def packetReceived(self, packet: bytes) -> None:
        """
        Queue one whole packet.
        """
        self.packets.append(packet)

    def framingError(self, reason: str) -> None:
        """
        Record why the framing broke; nothing after it is read.
        """
        self.error = reason
        self.transport.disconnecting = True


_collectorClasses: dict[type, type] = {}


def packetCollector(framing: Framing) -> Any:
    """
    A L{PacketCollector} for C{framing}, fed with C{dataReceived(chunk)}, or
    L{None} without framing (each read is then a packet).
    """
    framer = framing.framer
    if framer is RawReceiver:
        return None
    cls = _collectorClasses.get(framer)
    if cls is None:
        cls = type(f"Collecting{framer.__name__}", (PacketCollector, framer), {})
        _collectorClasses[framer] = cls
    collector = cls()
    framing.apply(collector)
    return collector


def _isTimeout(e: OSError) -> bool:
    # A socket timeout, as opposed to a kernel ETIMEDOUT on a dead peer.
    return isinstance(e, TimeoutError) and not e.errno


def firstGiven(*values: float | None) -> float:
    """
    The first of C{values} that is not L{None}, as a float.
    """
    return next(float(value) for value in values if value is not None)


def _blocking(seconds: float) -> float | None:
    # Swoole: a negative (or zero) timeout waits forever.
    return seconds if seconds > 0 else None


# ------------------------------------------------------------------ client


class Client:
    """
    A blocking TCP or UDP client with Swoole's C{swoole_client} API.

    @ivar errCode: the last error: an C{errno} value or a Swoole code.
    @ivar errMsg: the last error, in words.
    @ivar type: the L{SockType}.
    @ivar setting: what was given to L{set}, normalised.
    """

    errCode = 0
    errMsg = ""

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
        self.type = parseSockType(sock_type)
        self.setting: dict[str, Any] = {}
        self._settings = clientDefaults()
        self._datagram = self.type in UDP_TYPES
        self._sock: socket.socket | None = None
        self._collector: Any = None
        self._pendingError: tuple[int, str] | None = None
        self._peer: Any = None
        self._lastPeer: Any = None
        self._readTimeout: float | None = None
        self._writeTimeout: float | None = None

    # -------------------------------------------------------- settings

    def set(self, settings: Mapping[str, Any] | None = None, **keywords: Any) -> None:
        """
        Set framing and timeouts, as a dict (PHP's array) or keywords.

        Takes the framing settings a server port takes (C{open_eof_check},
        C{open_eof_split}, C{package_eof}, C{open_length_check},
        C{package_length_type}, C{package_length_offset},
        C{package_body_offset}, C{package_length_func},
        C{package_max_length}), C{open_tcp_nodelay}, and Swoole's client
        timeouts C{timeout}, C{connect_timeout}, C{read_timeout},
        C{write_timeout}.  Port settings that make no sense for a client
        (C{backlog}, the heartbeat, the TLS files) and server settings are
        refused.  Settings take effect at the next L{connect}.

        @raise SettingError: naming the bad setting; nothing is changed.
        """
        values = checkClientSettings(mergeSettingArgs(settings, keywords))
        self._settings = applySettings(self._settings, values, self._datagram)
        self.setting.update(values)

    def _timeouts(self, timeout: float | None) -> float:
        # The most specific wins: connect()'s argument for connecting, the
        # read/write settings for reading/writing, then "timeout", then 0.5.
        s = self._settings
        base = firstGiven(timeout, s["timeout"], 0.5)
        self._readTimeout = _blocking(firstGiven(s["read_timeout"], base))
        self._writeTimeout = _blocking(firstGiven(s["write_timeout"], base))
        return firstGiven(timeout, s["connect_timeout"], base)

    # ---------------------------------------------------------- errors

    def _fail(self, code: int, message: str | None = None) -> bool:
        self.errCode = code
        self.errMsg = message if message is not None else os.strerror(code)
        return False

    def _failFrom(self, e: OSError) -> bool:
        if isinstance(e, socket.gaierror):
            return self._fail(ERROR_DNSLOOKUP_RESOLVE_FAILED, f"DNS lookup failed: {e.strerror}")
        if _isTimeout(e):
            return self._fail(errno.ETIMEDOUT)
        return self._fail(e.errno or errno.EIO, e.strerror or str(e))

    def _notConnected(self) -> bool:
        return self._fail(ERROR_CLIENT_NO_CONNECTION, "client is not connected to server")

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
                self._pendingError = (framingErrorCode(collector.error), collector.error)
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
