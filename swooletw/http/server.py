# -*- test-case-name: tests.test_http -*-
"""
L{HttpServer}: Swoole's C{Swoole\\Http\\Server}.

    serv = HttpServer("127.0.0.1", 9501)
    serv.on("request", lambda request, response: response.end("<h1>Hello Swoole</h1>"))
    serv.start()

A server kind on the same seam as L{swooletw.Server}: workers, task
workers, timers, reload, stats and C{listen()} of more TCP/UDP ports with
their own callbacks all apply.  Its ports speak HTTP (C{open_http_protocol},
on for every port that does not C{set()} its own settings, as in Swoole);
their event is C{request(request, response)}, and Swoole's C{connect} and
C{receive} are not HTTP events.
"""

from __future__ import annotations

from typing import Any, Callable

from swooletw.api.server import Server
from swooletw.events import EventError, canonicalEvent
from swooletw.http.connection import HttpPortFactory

__all__ = ["HttpServer"]


class HttpServer(Server):
    """
    An HTTP/1.1 server with Swoole's request/response API.
    """

    #: events a plain TCP server has and an HTTP port does not
    NOT_HTTP = frozenset({"connect", "receive"})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.setting["open_http_protocol"] = True

    def on(self, event: str, callback: Callable[..., Any]) -> bool:
        """
        Register a callback; C{request(request, response)} is the HTTP
        event.

        @raise EventError: for C{connect} or C{receive}, naming C{request}.
        """
        key, _ = canonicalEvent(event)
        if key in self.NOT_HTTP:
            raise EventError(
                f"an HttpServer has no {event!r} event: HTTP requests go to "
                "serv.on('request', f) (a TCP port from serv.listen() takes 'receive')"
            )
        return super().on(event, callback)

    def protocolFactory(self, port: Any, process: Any) -> Any:
        """
        HTTP for a port with C{open_http_protocol}, else the stream
        protocol of a plain TCP port.
        """
        if port.effectiveSettings()["open_http_protocol"]:
            return HttpPortFactory(self, port, process)
        return super().protocolFactory(port, process)
