"""
swooletw: Swoole's server model for Python, on Twisted.

    import swooletw
    serv = swooletw.Server("127.0.0.1", 9501)
    serv.on("receive", lambda serv, fd, reactor_id, data: serv.send(fd, b"hello server" + data))
    serv.start()
"""

__version__ = "0.1.0"

from swooletw.constants import (  # noqa: E402
    BASE,
    PROCESS,
    SOCK_ASYNC,
    SOCK_SYNC,
    SOCK_TCP,
    SOCK_TCP6,
    SOCK_UDP,
    SOCK_UDP6,
)
from swooletw.events import EventError  # noqa: E402
from swooletw.api import Port, Server, ServerStateError  # noqa: E402
from swooletw.proctitle import set_process_name  # noqa: E402
from swooletw.settings import SettingError  # noqa: E402

__all__ = [
    "__version__",
    "Server",
    "HttpServer",
    "HttpRequest",
    "HttpResponse",
    "Port",
    "Client",
    "AsyncClient",
    "TaskClient",
    "SettingError",
    "EventError",
    "ServerStateError",
    "set_process_name",
    "SOCK_TCP",
    "SOCK_UDP",
    "SOCK_TCP6",
    "SOCK_UDP6",
    "SOCK_SYNC",
    "SOCK_ASYNC",
    "BASE",
    "PROCESS",
]


def __getattr__(name: str):
    # The clients are imported on first use, so a server does not load them.
    if name == "Client":
        from swooletw.client import Client

        return Client
    if name == "AsyncClient":
        from swooletw.asyncclient import AsyncClient

        return AsyncClient
    if name in ("HttpServer", "HttpRequest", "HttpResponse"):
        import swooletw.http

        return getattr(swooletw.http, name)
    if name == "TaskClient":
        from swooletw.mail.taskclient import TaskClient

        return TaskClient
    raise AttributeError(f"module 'swooletw' has no attribute {name!r}")
