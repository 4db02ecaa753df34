# -*- test-case-name: tests.test_tap -*-
"""
C{twistd swoole-tcp}: run a swooletw L{Server}.

    twistd -n swoole-tcp                                  # the mail server
    twistd -n swoole-tcp --smtp smtps://me@smtp.example.com  # ... through SMTP
    twistd -n swoole-tcp --app myproject.server:serv      # yours
    twistd -n swoole-tcp --listen tcp:9502 --eof '\\r\\n' --setting max_conn=1000

Options become Swoole settings; a bad one, or a C{--listen} string that
does not parse, stops start-up with a usage error naming it, before anything
is bound.  A port that cannot be bound (in use, no permission) ends start-up
with one line and exit status 1 (L{TapService}).
"""

from __future__ import annotations

import codecs
import inspect
import json
from typing import Any

from twisted.application.service import MultiService
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError
from twisted.internet.testing import MemoryReactor
from twisted.python import reflect, usage

from swooletw.constants import UDP_TYPES
from swooletw.events import EventError
from swooletw.mail.config import MAIL_OPTIONS
from swooletw.api import Server
from swooletw.runtime.endpoints import ListenError
from swooletw.settings import SettingError

DEFAULT_LISTEN = "tcp:9501:interface=127.0.0.1"
DEFAULT_APP = "swooletw.mail.taskserver:makeServer"

#: option name -> the setting it sets
_SETTING_OPTIONS = {
    "worker-num": "worker_num",
    "max-conn": "max_conn",
    "length-type": "package_length_type",
    "length-offset": "package_length_offset",
    "body-offset": "package_body_offset",
    "max-length": "package_max_length",
    "heartbeat-interval": "heartbeat_check_interval",
    "heartbeat-idle": "heartbeat_idle_time",
}


class Options(usage.Options):
    """
    Command-line options of C{twistd swoole-tcp}.
    """

    synopsis = "[options]"
    longdesc = (
        "Runs a Swoole-style TCP server. With no --app, the tutorial's mail "
        "task server on 127.0.0.1:9501: JSON packets ended by \\r\\n, e.g. "
        '{"event": "send-mail", "to": ..., "subject": ..., "content": ...}, '
        "each answered with one JSON line. Mail goes through --smtp, or with no "
        "--smtp into the Maildir ./outbox (relative to the working directory; "
        "see --maildir). The --smtp options also configure an --app built with "
        "swooletw.mail.makeServer."
    )
    optParameters = [
        ["app", "a", DEFAULT_APP,
         "package.module:attr: a configured swooletw.Server, or a callable returning one."],
        ["worker-num", None, None, "Worker processes (worker_num).", int],
        ["max-conn", None, None, "Maximum connections (max_conn).", int],
        ["eof", None, None,
         "EOF framing: one packet per marker (open_eof_split + package_eof); "
         "backslash escapes allowed, e.g. '\\r\\n'."],
        ["length-type", None, None,
         "Length framing: package_length_type (c C s S n N l L v V); turns on open_length_check."],
        ["length-offset", None, None, "package_length_offset.", int],
        ["body-offset", None, None, "package_body_offset.", int],
        ["max-length", None, None, "package_max_length in bytes.", int],
        ["heartbeat-interval", None, None, "heartbeat_check_interval in seconds.", float],
        ["heartbeat-idle", None, None, "heartbeat_idle_time in seconds.", float],
        *MAIL_OPTIONS,
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []
        self["settings"] = {}
        self._badValue = False

    def getUsage(self, width: int | None = None) -> str:
        """
        The options' help; after a bad value only a pointer to it, so that
        twistd's usage error ends in the one line that names the problem.
        """
        if self._badValue:
            return "Run 'twistd swoole-tcp --help' for the options."
        return super().getUsage(width)

    def _refuse(self, error: Exception) -> usage.UsageError:
        self._badValue = True
        return usage.UsageError(str(error))

    def opt_listen(self, description: str) -> None:
        """
        A Twisted endpoint string to listen on (repeatable; default
        tcp:9501:interface=127.0.0.1).  Replaces the app's own address.
        """
        try:
            checkEndpoint(description)
        except ValueError as e:
            raise self._refuse(e) from e
        self["listen"].append(description)

    def opt_setting(self, pair: str) -> None:
        """
        name=value: any Swoole setting (repeatable); the value is read as
        JSON when it parses (true, 2, 0.5), else as a string.
        """
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            raise self._refuse(ValueError(f"--setting takes name=value, got {pair!r}"))
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        self["settings"][name.strip()] = value

    def postOptions(self) -> None:
        """
        Load the app and apply every setting; errors become usage errors.
        """
        try:
            serv = loadServer(self["app"])
            serv.set(self._settings())
            if self["listen"]:
                useEndpoints(serv, self["listen"])
            elif self["app"] == DEFAULT_APP:
                useEndpoints(serv, [DEFAULT_LISTEN])
            refuseStartOnlySettings(serv)
            applyMailOptions(serv, self)
            serv.checkStartable()
        except (SettingError, EventError, ValueError) as e:
            raise self._refuse(e) from e
        self["server"] = serv

    def _settings(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for option, name in _SETTING_OPTIONS.items():
            if self[option] is not None:
                values[name] = self[option]
        if self["eof"] is not None:
            eof = codecs.decode(self["eof"], "unicode_escape")
            values.update(open_eof_split=True, package_eof=eof)
        if self["length-type"] is not None:
            values["open_length_check"] = True
        values.update(self["settings"])
        return values


def applyMailOptions(serv: Server, options: Options) -> None:
    """
    Configure the mail app (the default, or an C{--app} built with
    L{swooletw.mail.makeServer}) from the mail options.

    @raise ValueError: for a bad value, or mail options with another app.
    """
    from swooletw.mail.taskserver import applyMailOptions as apply

    apply(serv, options)


def loadServer(spec: str) -> Server:
    """
    Resolve C{package.module:attr} to a L{Server}: the object itself, or
    what calling it returns.

    @raise ValueError: when it names nothing, or not a server.
    """
    path = spec.replace(":", ".")
    try:
        obj = reflect.namedAny(path)
    except (reflect.ModuleNotFound, reflect.ObjectNotFound, AttributeError, ValueError) as e:
        raise ValueError(f"--app {spec!r}: {e}") from e
    if not isinstance(obj, Server) and callable(obj):
        try:
            inspect.signature(obj).bind()
        except TypeError as e:
            raise ValueError(f"--app {spec!r} must be callable without arguments: {e}") from e
        except ValueError:
            pass  # no signature to check (a builtin): just call it
        obj = obj()
    if not isinstance(obj, Server):
        raise ValueError(
            f"--app {spec!r} is a {type(obj).__name__}, not a swooletw.Server "
            "or a callable returning one"
        )
    return obj


#: settings of Server.start() that twistd does with its own flags
_TWISTD_FLAGS = {
    "daemonize": "daemonize by leaving out -n",
    "log_file": "set the log file with --logfile",
    "pid_file": "set the pid file with --pidfile",
}


def refuseStartOnlySettings(serv: Server) -> None:
    """
    Under twistd, daemonizing, the log file and the pid file are twistd's
    flags; an app that sets them is told so rather than ignored.

    @raise ValueError: naming the setting and the flag to use.
    """
    for name, flag in _TWISTD_FLAGS.items():
        if serv.setting[name]:
            raise ValueError(
                f"setting {name!r} applies to Server.start(); under twistd, {flag}"
            )


#: Endpoint types whose first field (or C{port=}) is a TCP port number.
_PORT_TYPES = ("tcp", "tcp6", "ssl")


def checkEndpoint(description: str) -> None:
    """
    Parse a C{--listen} endpoint string without binding anything.

    @raise ValueError: naming the option, the string and the problem.
    """
    where = f"--listen {description!r}"
    kind, _, rest = description.partition(":")
    kind = kind.strip().lower()
    if kind == "udp":
        raise ValueError(
            f"{where}: --listen takes stream endpoints; UDP ports are set up by "
            "the app with serv.listen(host, port, SOCK_UDP)"
        )
    if kind in _PORT_TYPES:
        fields = rest.split(":")
        named = [f[len("port="):] for f in fields if f.startswith("port=")]
        port = named[0] if named else fields[0]
        if "=" in port:
            raise ValueError(f"{where}: no port given")
        if not (port.isdigit() and int(port) <= 65535):
            raise ValueError(f"{where}: invalid port {port!r} (0 to 65535)")
    try:
        serverFromString(MemoryReactor(), description)
    except IndexError as e:  # systemd: with no socket at that index
        raise ValueError(f"{where}: no socket was passed at that index") from e
    except (ValueError, TypeError, OSError) as e:
        raise ValueError(f"{where}: {e}") from e


def useEndpoints(serv: Server, descriptions: list[str]) -> None:
    """
    Listen on these endpoint strings instead of the server's own main
    address (its other ports stay).
    """
    if serv.ports[0].type in UDP_TYPES:
        raise ValueError("--listen takes stream endpoints; this app's main port is UDP")
    serv.ports[0].endpoint = descriptions[0]
    for description in descriptions[1:]:
        serv.listenEndpoint(description)


class StartError(SystemExit, Exception):
    """
    The server cannot start; the message says why.

    A L{SystemExit}, so that Python exits with status 1 and prints just the
    message; an L{Exception} too, so that twistd's clean-up for a failed
    start runs on the way out (it removes the pid file and, when
    daemonizing, reports the message to the waiting parent).
    """


class TapService(MultiService):
    """
    The server's service as twistd runs it: a port that cannot be bound
    (or a setting refused at start) ends start-up with one line and exit
    status 1 instead of a traceback.
    """

    def privilegedStartService(self) -> None:
        """
        Bind the server's ports.

        @raise StartError: when one cannot be bound.
        """
        try:
            super().privilegedStartService()
        except (ListenError, SettingError) as e:
            hint = " (--listen sets the address)" if isinstance(e.__cause__, CannotListenError) else ""
            raise StartError(f"swoole-tcp: {e}{hint}") from None


def makeService(options: Options) -> TapService:
    """
    The server of the parsed options, as a Twisted service: its
    C{asService()} in a L{TapService}.
    """
    service = TapService()
    options["server"].asService().setServiceParent(service)
    return service
