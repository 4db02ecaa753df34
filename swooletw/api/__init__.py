"""
The API users program against: L{Server} and L{Port} (and, on top, the
other server kinds).  They hold settings, callbacks and ports; what they do
once started belongs to the runtime (L{swooletw.interfaces}).
"""

from swooletw.api.port import Port, ServerStateError
from swooletw.api.server import Server

__all__ = ["Server", "Port", "ServerStateError"]
