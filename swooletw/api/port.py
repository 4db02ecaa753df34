# -*- test-case-name: tests.test_server -*-
"""
L{Port}: one listening address of a server (Swoole's C{Server\\Port}).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Mapping

from swooletw import settings as _settings
from swooletw.constants import SOCK_TCP, SockType
from swooletw.events import PORT_EVENTS, adaptArity, canonicalEvent

if TYPE_CHECKING:  # pragma: no cover
    from swooletw.api.server import Server

__all__ = ["Port", "ServerStateError"]


class ServerStateError(RuntimeError):
    """
    A call that Swoole allows only before (or only after) C{start()}.
    """


def checkNotStarted(serv: Server, what: str) -> None:
    """
    @raise ServerStateError: if C{serv} has started.
    """
    if serv.started:
        raise ServerStateError(f"{what} is not allowed after the server has started")


class Port:
    """
    One listening address of a server: its own framing and heartbeat
    settings and its own C{connect}, C{receive}, C{close} and C{packet}
    callbacks, falling back to the server's.

    @ivar host: the interface, or L{None} for an endpoint string.
    @ivar port: the port number; after listening on port 0, the real one.
    @ivar type: a L{SockType}.
    @ivar endpoint: a Twisted endpoint string, or L{None}.
    @ivar index: the position in C{serv.ports} (Swoole's C{server_socket}).
    @ivar setting: what was set on this port.
    """

    def __init__(
        self,
        server: Server,
        host: str | None,
        port: int,
        sockType: SockType = SOCK_TCP,
        endpoint: str | None = None,
    ) -> None:
        self.server = server
        self.host = host
        self.port = port
        self.type = SockType(sockType)
        self.endpoint = endpoint
        self.index = len(server.ports)
        self.setting: dict[str, Any] = {}
        self._callbacks: dict[str, Callable[..., Any]] = {}

    def set(self, values: Mapping[str, Any] | None = None, **keywords: Any) -> None:
        """
        Set this port's settings (framing, heartbeat, TLS, ...).

        @raise SettingError: naming the first bad setting.
        """
        checkNotStarted(self.server, "set()")
        merged = _settings.mergeArgs(values, keywords)
        normalised = _settings.normalise(merged, portOnly=True)
        _settings.checkFraming(self.effectiveSettings(portSetting={**self.setting, **normalised}))
        self.setting.update(normalised)

    def on(self, event: str, callback: Callable[..., Any]) -> bool:
        """
        Register this port's callback for C{connect}, C{receive},
        C{close} or C{packet}.
        """
        checkNotStarted(self.server, "on()")
        key, argc = canonicalEvent(event, PORT_EVENTS)
        self._callbacks[key] = adaptArity(callback, argc)
        return True

    def getCallback(self, event: str) -> Callable[..., Any] | None:
        """
        The callback this port runs for C{event}: its own, else the
        server's.
        """
        key, _ = canonicalEvent(event)
        callback = self._callbacks.get(key)
        if callback is None:
            callback = self.server.getCallback(key)
        return callback

    def effectiveSettings(
        self,
        serverSetting: Mapping[str, Any] | None = None,
        portSetting: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """
        Every per-port setting, as Swoole decides them: a port that never
        called C{set()} inherits the server's; one that did starts from
        Swoole's defaults plus what it set.

        @param serverSetting: the server's settings to assume (default: the
            current ones).
        @param portSetting: this port's own settings to assume (default:
            the current ones).
        """
        own = self.setting if portSetting is None else portSetting
        if own:
            base: Mapping[str, Any] = _settings.defaults()
        else:
            base = self.server.setting if serverSetting is None else serverSetting
        merged = {name: base[name] for name in _settings.PORT_SETTINGS}
        merged.update(own)
        return merged

    @property
    def connections(self) -> list[int]:
        """
        The ids of this port's connections.
        """
        serv = self.server
        result = []
        for fd in serv.connections:
            info = serv.getClientInfo(fd)
            if info and info["server_fd"] == self.index:
                result.append(fd)
        return result

    def __repr__(self) -> str:
        where = self.endpoint or f"{self.host}:{self.port}"
        return f"<Port {self.index} {self.type.name} {where}>"
