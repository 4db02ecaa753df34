# -*- test-case-name: tests.test_tap -*-
"""
C{twistd swoole-tcp}: run a swooletw L{Server}.

    twistd -n swoole-tcp                                  # the mail server
    twistd -n swoole-tcp --smtp smtps://me@smtp.example.com  # ... through SMTP
    twistd -n swoole-tcp --app myproject.server:serv      # yours
    twistd -n swoole-tcp --listen tcp:9502 --eof '\\r\\n' --setting max_conn=1000

Options become Swoole settings; a bad one stops start-up with a message
naming it, before anything is bound.
"""

from __future__ import annotations

import codecs
import inspect
import json
from typing import Any

from twisted.python import reflect, usage

from swooletw.constants import UDP_TYPES
from swooletw.events import EventError
from swooletw.mail.config import MAIL_OPTIONS
from swooletw.api import Server
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

    def opt_listen(self, description: str) -> None:
        """
        A Twisted endpoint string to listen on (repeatable; default
        tcp:9501:interface=127.0.0.1).  Replaces the app's own address.
        """
        self["listen"].append(description)

    def opt_setting(self, pair: str) -> None:
        """
        name=value: any Swoole setting (repeatable); the value is read as
        JSON when it parses (true, 2, 0.5), else as a string.
        """
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            raise usage.UsageError(f"--setting takes name=value, got {pair!r}")
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
        except (SettingError, EventError, ValueError) as e:
            raise usage.UsageError(str(e)) from e
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
_TWISTD_FLAGS = {"daemonize": "leave out -n", "log_file": "--logfile", "pid_file": "--pidfile"}


def refuseStartOnlySettings(serv: Server) -> None:
    """
    Under twistd, daemonizing, the log file and the pid file are twistd's
    flags; an app that sets them is told so rather than ignored.

    @raise ValueError: naming the setting and the flag to use.
    """
    for name, flag in _TWISTD_FLAGS.items():
        if serv.setting[name]:
            raise ValueError(
                f"setting {name!r} applies to Server.start(); under twistd use {flag}"
            )


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


def makeService(options: Options) -> Any:
    """
    The server of the parsed options, as a Twisted service.
    """
    return options["server"].asService()
