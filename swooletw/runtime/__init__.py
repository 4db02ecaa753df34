"""
The runtime: how a server runs once started.  In BASE mode with one worker,
one process does everything (L{single}); otherwise a master binds the ports
and supervises worker and task worker processes (L{master},
L{supervisor}, L{worker}, L{taskworker}), which reach each other's
connections through the router (L{router}) over their channels
(L{channel}).  Each process answers the server's operations through its
L{local.ProcessRuntime}.
"""

from __future__ import annotations

from typing import Any

from swooletw.runtime.daemon import runServer

__all__ = ["serviceFor", "runServer"]


def serviceFor(serv: Any) -> Any:
    """
    The Twisted service that runs C{serv}: a master with worker processes
    when it is supervised (C{PROCESS} mode, several workers or task worker
    processes), else the single process.
    """
    if serv.supervised:
        from swooletw.runtime.master import MasterService

        return MasterService(serv)
    from swooletw.runtime.single import singleProcessService

    return singleProcessService(serv)
