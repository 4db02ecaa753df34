# -*- test-case-name: tests.test_client,tests.test_asyncclient -*-
"""
What the blocking L{swooletw.client.Client} and the asynchronous
L{swooletw.asyncclient.AsyncClient} share: their settings and socket types,
Swoole's error state, address dicts, the framing error codes, and the
packet collector the blocking client splits packets with.
"""

from __future__ import annotations

import difflib
import os
from collections import deque
from typing import Any, Mapping

from swooletw import settings as _settings
from swooletw.constants import (
    ERROR_CLIENT_NO_CONNECTION,
    ERROR_PACKAGE_LENGTH_TOO_LARGE,
    ERROR_PACKAGE_MALFORMED_DATA,
    KEEP,
    SSL,
    UDP_TYPES,
    SockType,
)
from swooletw.wire.framing import Framing, RawReceiver
from swooletw.settings import SettingError

__all__ = [
    "ClientBase",
    "CLIENT_SETTINGS",
    "TIMEOUT_SETTINGS",
    "checkClientSettings",
    "applySettings",
    "clientDefaults",
    "parseSockType",
    "framingErrorCode",
    "addressDict",
    "firstGiven",
    "PacketCollector",
    "packetCollector",
]

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


# ---------------------------------------------------------------- settings


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


def firstGiven(*values: float | None) -> float:
    """
    The first of C{values} that is not L{None}, as a float.
    """
    return next(float(value) for value in values if value is not None)


# ------------------------------------------------------------ what clients say


def framingErrorCode(tooLarge: bool) -> int:
    """
    Swoole's code for a framer's error: C{ERROR_PACKAGE_LENGTH_TOO_LARGE} for
    a packet over C{package_max_length} (the framer's
    C{framingErrorTooLarge}), else C{ERROR_PACKAGE_MALFORMED_DATA}.
    """
    return ERROR_PACKAGE_LENGTH_TOO_LARGE if tooLarge else ERROR_PACKAGE_MALFORMED_DATA


def addressDict(address: Any) -> dict[str, Any]:
    """
    A socket address as Swoole gives it: C{{'host': ..., 'port': ...}}.
    """
    return {"host": address[0], "port": address[1]}


class ClientBase:
    """
    The socket type, settings and error state of a client.

    @ivar errCode: the last error: an C{errno} value or a Swoole code.
    @ivar errMsg: the last error, in words.
    @ivar type: the L{SockType}.
    @ivar setting: what was given to L{set}, normalised.
    """

    errCode = 0
    errMsg = ""

    def __init__(self, sockType: Any) -> None:
        """
        @raise ValueError: if C{sockType} is not a socket type.
        """
        self.type = parseSockType(sockType)
        self.setting: dict[str, Any] = {}
        self._settings = clientDefaults()
        self._datagram = self.type in UDP_TYPES

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
        refused.  Settings take effect at the next C{connect}.

        @raise SettingError: naming the bad setting; nothing is changed.
        """
        values = checkClientSettings(_settings.mergeArgs(settings, keywords))
        self._settings = applySettings(self._settings, values, self._datagram)
        self.setting.update(values)

    def _fail(self, code: int, message: str | None = None) -> bool:
        # Record an error as PHP's client does; False, for returning.
        self.errCode = code
        self.errMsg = message if message is not None else os.strerror(code)
        return False

    def _notConnected(self) -> bool:
        return self._fail(ERROR_CLIENT_NO_CONNECTION, "client is not connected to server")


# ------------------------------------------------------------- packet collector


class _StandInTransport:
    # All a framer looks at on its transport.
    disconnecting = False


class PacketCollector:
    """
    Mixin for a framer class of L{swooletw.wire.framing} that queues the whole
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
