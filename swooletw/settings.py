# -*- test-case-name: tests.test_settings -*-
"""
Swoole's settings: names, defaults, types and checks.

L{Server.set} and L{Port.set} take a dict written the way PHP code writes
Swoole's array (C{'open_eof_check' => true} becomes C{"open_eof_check": True})
or keyword arguments.  Every value is checked here; an unknown name, a value
of the wrong type or out of range raises L{SettingError} naming the setting
and, for unknown names, the closest valid one.  Pure Python: nothing here imports Twisted.
"""

from __future__ import annotations

import difflib
import math
import os
import resource
import struct
from dataclasses import dataclass
from typing import Any, Callable, Mapping

__all__ = [
    "SettingError",
    "LENGTH_TYPES",
    "PORT_SETTINGS",
    "normalise",
    "mergeArgs",
    "defaults",
    "checkFraming",
    "lengthStruct",
    "heartbeatTimes",
]


class SettingError(ValueError):
    """
    A setting has an unknown name, a value of the wrong type, or a value that
    this version cannot honour.  The message names the setting.
    """


#: PHP C{pack()} codes accepted by C{package_length_type}, as C{struct}
#: formats.  C{s S l L} are host byte order in Swoole, like PHP's pack.
LENGTH_TYPES: dict[str, str] = {
    "c": "=b",
    "C": "=B",
    "s": "=h",
    "S": "=H",
    "n": ">H",
    "N": ">I",
    "l": "=i",
    "L": "=I",
    "v": "<H",
    "V": "<I",
}


def lengthStruct(lengthType: str) -> struct.Struct:
    """
    The compiled C{struct} for a C{package_length_type} code.
    """
    return struct.Struct(LENGTH_TYPES[lengthType])


def _defaultMaxConn() -> int:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return 100000
    return min(soft, 100000)


# ---------------------------------------------------------------- coercers
# Each takes (name, value) and returns the normalised value or raises.


def _typeName(value: object) -> str:
    return type(value).__name__


def _bool(name: str, value: Any) -> bool:
    # PHP code writes true/false, and sometimes 1/0.
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise SettingError(
        f"setting {name!r} must be a bool (true/false), got {_typeName(value)} {value!r}"
    )


def _range(minimum: float, maximum: float | None) -> str:
    return f">= {minimum}" if maximum is None else f"between {minimum} and {maximum}"


def _int(minimum: int = 0, maximum: int | None = None) -> Callable[[str, Any], int]:
    def check(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SettingError(
                f"setting {name!r} must be an integer, got {_typeName(value)} {value!r}"
            )
        if value < minimum or (maximum is not None and value > maximum):
            raise SettingError(
                f"setting {name!r} must be {_range(minimum, maximum)}, got {value!r}"
            )
        return value

    return check


def _seconds(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SettingError(
            f"setting {name!r} must be a number of seconds, got {_typeName(value)} {value!r}"
        )
    try:
        seconds = float(value)
    except OverflowError:  # an int too large for a float
        seconds = math.inf
    # NaN compares false with everything, so test what is allowed.
    if not (math.isfinite(seconds) and seconds >= 0):
        raise SettingError(
            f"setting {name!r} must be a finite number of seconds >= 0, got {value!r}"
        )
    return seconds


#: The shortest period a timer-driven setting may have (Swoole's
#: C{SW_TIMER_MIN_SEC}); anything shorter would spin the reactor.
_MIN_INTERVAL = 0.001


def _interval(off: bool) -> Callable[[str, Any], float]:
    """
    Seconds between timer runs: at least C{_MIN_INTERVAL}, or 0 for "off"
    when C{off} is true.
    """

    def check(name: str, value: Any) -> float:
        seconds = _seconds(name, value)
        if seconds < _MIN_INTERVAL and not (off and seconds == 0):
            allowed = f"0 (off) or >= {_MIN_INTERVAL}" if off else f">= {_MIN_INTERVAL}"
            raise SettingError(f"setting {name!r} must be {allowed} seconds, got {value!r}")
        return seconds

    return check


def _intOrNone(name: str, value: Any) -> int | None:
    return None if value is None else _int(0)(name, value)


def _eof(name: str, value: Any) -> bytes:
    if isinstance(value, str):
        value = value.encode("utf-8")
    if not isinstance(value, (bytes, bytearray)):
        raise SettingError(
            f"setting {name!r} must be str or bytes, got {_typeName(value)} {value!r}"
        )
    if not 1 <= len(value) <= 8:
        raise SettingError(
            f"setting {name!r} must be 1 to 8 bytes long, got {len(value)} bytes"
        )
    return bytes(value)


def _lengthType(name: str, value: Any) -> str:
    if not isinstance(value, str) or value not in LENGTH_TYPES:
        raise SettingError(
            f"setting {name!r} must be one of {' '.join(LENGTH_TYPES)} "
            f"(PHP pack codes), got {value!r}"
        )
    return value


def _choice(*choices: str) -> Callable[[str, Any], str]:
    def check(name: str, value: Any) -> str:
        if value not in choices:
            raise SettingError(
                f"setting {name!r} must be one of {', '.join(map(repr, choices))}, got {value!r}"
            )
        return value

    return check


def _storeOrNone(name: str, value: Any) -> Any:
    if value is None:
        return None
    scheme, sep, path = value.partition(":") if isinstance(value, str) else ("", "", "")
    if scheme != "sqlite" or not sep or not path:
        raise SettingError(f"setting {name!r} must be 'sqlite:PATH', got {value!r}")
    return value


def _callableOrNone(name: str, value: Any) -> Any:
    if value is not None and not callable(value):
        raise SettingError(
            f"setting {name!r} must be a callable, got {_typeName(value)} {value!r}"
        )
    return value


def _pathOrNone(name: str, value: Any) -> Any:
    if value is not None and not isinstance(value, str):
        raise SettingError(
            f"setting {name!r} must be a path (str), got {_typeName(value)} {value!r}"
        )
    return value


def _strListOrNone(name: str, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(item, str) for item in value):
        raise SettingError(
            f"setting {name!r} must be a list of strings, got {_typeName(value)} {value!r}"
        )
    return list(value)


def _onlyDefault(reason: str, check: Callable[[str, Any], Any], allowed: Any):
    """
    A setting whose name Swoole has and whose check passes, but of which this
    version can honour only C{allowed}; anything else is refused with
    C{reason}, never silently ignored.
    """

    def refuse(name: str, value: Any) -> Any:
        value = check(name, value)
        ok = value in allowed if isinstance(allowed, (set, frozenset)) else value == allowed
        if not ok:
            raise SettingError(f"setting {name!r} = {value!r} is refused: {reason}")
        return value

    return refuse


def _accepted(check: Callable[[str, Any], Any]) -> Callable[[str, Any], Any]:
    """
    A Swoole setting that is checked and kept in C{serv.setting} but has no
    effect here (documented in README: there are no reactor threads or
    coroutines to tune).
    """
    return check


#: Swoole's cap on C{worker_num} and C{task_worker_num}: 1000 per CPU.
_MAX_PROCESSES = (os.cpu_count() or 1) * 1000


@dataclass(frozen=True)
class _Spec:
    check: Callable[[str, Any], Any]
    default: Any
    perPort: bool = False


_SPECS: dict[str, _Spec] = {
    # process model
    "worker_num": _Spec(_int(1, _MAX_PROCESSES), os.cpu_count() or 1),
    "reactor_num": _Spec(_accepted(_int(1)), 1),
    "max_request": _Spec(_int(0), 0),
    "max_request_grace": _Spec(_intOrNone, None),
    "worker_timeout": _Spec(_seconds, 30.0),
    "worker_ping_interval": _Spec(_interval(off=False), 1.0),
    "task_worker_num": _Spec(_int(0, _MAX_PROCESSES), 0),
    "task_worker_mode": _Spec(_choice("thread", "process"), "thread"),
    "task_queue_max": _Spec(_int(1), 65536),
    "task_store": _Spec(_storeOrNone, None),
    "task_max_request": _Spec(_int(0), 0),
    "daemonize": _Spec(_bool, False),
    "log_file": _Spec(_pathOrNone, None),
    "pid_file": _Spec(_pathOrNone, None),
    "log_level": _Spec(_accepted(_int(0, 6)), 0),
    "max_wait_time": _Spec(_seconds, 3.0),
    "reload_async": _Spec(_bool, True),
    "dispatch_mode": _Spec(
        _onlyDefault(
            "connections always belong to the worker that accepted them "
            "(Swoole's mode 2); other dispatch modes are not implemented",
            _int(1),
            2,
        ),
        2,
    ),
    "enable_coroutine": _Spec(_accepted(_bool), True),
    "max_conn": _Spec(_int(1), None),
    "max_connection": _Spec(_int(1), None),
    # per port: connections and framing
    "backlog": _Spec(_int(1), 512, perPort=True),
    "open_tcp_nodelay": _Spec(_bool, False, perPort=True),
    "heartbeat_check_interval": _Spec(_interval(off=True), 0.0, perPort=True),
    "heartbeat_idle_time": _Spec(_interval(off=True), 0.0, perPort=True),
    "open_eof_check": _Spec(_bool, False, perPort=True),
    "open_eof_split": _Spec(_bool, False, perPort=True),
    "package_eof": _Spec(_eof, b"\r\n", perPort=True),
    "open_length_check": _Spec(_bool, False, perPort=True),
    "package_length_type": _Spec(_lengthType, "N", perPort=True),
    "package_length_offset": _Spec(_int(0), 0, perPort=True),
    "package_body_offset": _Spec(_int(0), 4, perPort=True),
    "package_length_func": _Spec(_callableOrNone, None, perPort=True),
    "package_max_length": _Spec(_int(1), 2 * 1024 * 1024, perPort=True),
    "buffer_output_size": _Spec(_int(1), 2 * 1024 * 1024, perPort=True),
    # not Swoole's: seconds a packet may take to arrive whole, 0 for no limit
    "package_recv_timeout": _Spec(_seconds, 0.0, perPort=True),
    "ssl_cert_file": _Spec(_pathOrNone, None, perPort=True),
    "ssl_key_file": _Spec(_pathOrNone, None, perPort=True),
    # per port: HTTP (on for the ports of an HttpServer)
    "open_http_protocol": _Spec(_bool, False, perPort=True),
    "http_request_timeout": _Spec(_seconds, 60.0, perPort=True),
    "http_max_header_size": _Spec(_int(1024), 16 * 1024, perPort=True),
    "http_max_headers": _Spec(_int(1), 100, perPort=True),
    "http_max_url_length": _Spec(_int(16), 8 * 1024, perPort=True),
    "http_pipeline_max": _Spec(_int(1), 16, perPort=True),
    "http_compression": _Spec(_bool, False, perPort=True),
    "http_compression_level": _Spec(_int(1, 9), 1, perPort=True),
    "compression_min_length": _Spec(_int(0), 20, perPort=True),
    "enable_static_handler": _Spec(_bool, False, perPort=True),
    "document_root": _Spec(_pathOrNone, None, perPort=True),
    "static_handler_locations": _Spec(_strListOrNone, None, perPort=True),
    "upload_tmp_dir": _Spec(_pathOrNone, None, perPort=True),
    "upload_max_filesize": _Spec(_intOrNone, None, perPort=True),
    "http_trusted_proxies": _Spec(_strListOrNone, None, perPort=True),
}

#: Names that may be set on a L{Port} (and on the server, as the default for
#: every port).
PORT_SETTINGS = frozenset(name for name, spec in _SPECS.items() if spec.perPort)


def defaults() -> dict[str, Any]:
    """
    Swoole's defaults for every setting this version knows.
    """
    values = {name: spec.default for name, spec in _SPECS.items()}
    values["max_conn"] = _defaultMaxConn()
    del values["max_connection"]
    return values


def _unknown(name: object, valid: frozenset[str] | dict[str, Any]) -> SettingError:
    if not isinstance(name, str):
        return SettingError(f"setting names are strings, got {name!r}")
    close = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return SettingError(f"unknown setting {name!r}{hint}")


def normalise(values: Mapping[str, Any], portOnly: bool = False) -> dict[str, Any]:
    """
    Check every setting in C{values} and return them normalised (C{str} EOF
    markers as bytes, seconds as floats, C{max_connection} as C{max_conn}).

    @param portOnly: accept only the names a listening port can take.
    @raise SettingError: on the first bad name or value, naming it.
    """
    valid = PORT_SETTINGS if portOnly else _SPECS
    result: dict[str, Any] = {}
    for name, value in values.items():
        if name not in valid:
            if not portOnly or name not in _SPECS:
                raise _unknown(name, valid)
            raise SettingError(
                f"setting {name!r} belongs to the server, not to one port; "
                "set it with serv.set()"
            )
        key = "max_conn" if name == "max_connection" else name
        result[key] = _SPECS[name].check(name, value)
    return result


def mergeArgs(values: Mapping[str, Any] | None, keywords: dict[str, Any]) -> dict[str, Any]:
    """
    Merge C{set(dict)} and C{set(**keywords)} arguments, keywords last.

    @raise SettingError: if C{values} is not a mapping.
    """
    if values is not None and not isinstance(values, Mapping):
        raise SettingError(f"set() takes a dict of settings, got {_typeName(values)}")
    return {**(values or {}), **keywords}


def checkFraming(port: Mapping[str, Any]) -> None:
    """
    Check the framing settings of one port taken together.

    @raise SettingError: when they contradict each other.
    """
    eof = port["open_eof_check"] or port["open_eof_split"]
    length = port["open_length_check"] or port["package_length_func"] is not None
    if eof and length:
        raise SettingError(
            "settings 'open_eof_check'/'open_eof_split' and 'open_length_check' "
            "are exclusive: a port has one framing"
        )
    if port["open_length_check"] and port["package_length_func"] is None:
        headerEnd = port["package_length_offset"] + lengthStruct(
            port["package_length_type"]
        ).size
        if headerEnd > port["package_max_length"]:
            raise SettingError(
                "setting 'package_max_length' must leave room for the length "
                f"field, which ends at byte {headerEnd}"
            )
    if bool(port["ssl_cert_file"]) != bool(port["ssl_key_file"]):
        raise SettingError(
            "settings 'ssl_cert_file' and 'ssl_key_file' go together; set both"
        )


def heartbeatTimes(port: Mapping[str, Any]) -> tuple[float, float]:
    """
    The heartbeat sweep interval and idle limit of a port, in seconds, as
    Swoole derives them: the idle limit defaults to twice the interval, and
    with only the idle limit set the sweep runs at half of it.  C{(0, 0)}
    means no heartbeat.
    """
    interval = port["heartbeat_check_interval"]
    idle = port["heartbeat_idle_time"]
    if not interval and not idle:
        return 0.0, 0.0
    if not idle:
        idle = 2 * interval
    if not interval:
        interval = idle / 2
    return interval, idle
