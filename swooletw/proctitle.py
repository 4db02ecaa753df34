# -*- test-case-name: tests.test_proctitle -*-
"""
Process titles: L{set_process_name}, Swoole's C{swoole_set_process_name},
so that the tutorial's code ports line by line::

    serv.on("ManagerStart", lambda serv: swooletw.set_process_name("server-process: manager"))

A leaf module: it imports nothing from swooletw.
"""

from __future__ import annotations

import setproctitle

__all__ = ["set_process_name"]


def set_process_name(name: str) -> None:
    """
    Set the title of this process, as C{ps}, C{top} and C{/proc/PID/cmdline}
    show it (Swoole's C{swoole_set_process_name}).  Workers and task workers
    start with a title naming their role (C{swooletw: worker 0}); a title
    set in C{workerStart} replaces it for that process.

    @param name: the new title.
    @raise TypeError: if C{name} is not a C{str}.
    """
    if not isinstance(name, str):
        raise TypeError(f"set_process_name() takes a str, got {type(name).__name__}")
    setproctitle.setproctitle(name)
