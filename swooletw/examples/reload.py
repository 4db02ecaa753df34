# -*- test-case-name: tests.test_examples -*-
"""
Tutorial §11: graceful reload, C{Reload.php} against C{NoReload.php}.

Both servers answer each packet with C{Test().run(data)} from a module of
the user's (the tutorial's C{Test.php}; here any module with a C{Test}
class, by default C{greeting} next to the C{.tac} files).  Edit that
module, send C{SIGUSR1} to the master (C{kill -USR1 <master pid>}), and:

 - L{ReloadServer} imports it in C{workerStart}: the new workers load the
   new code;
 - L{NoReloadServer} imports it before C{start()}: the workers are forked
   from a master that already holds the old code, so nothing changes until
   the whole server restarts.

As in the tutorial, each runs one worker: in PROCESS mode (the default) a
master supervises it, so there is something to reload.
"""

from __future__ import annotations

import importlib
from typing import Any

from swooletw.api import Server

DEFAULT_MODULE = "greeting"


class _TestServer:
    """
    What both tutorial classes share: a one-worker server answering with
    C{Test().run(data)}.
    """

    _test: Any = None

    def __init__(self, host: str, port: int) -> None:
        self._serv = Server(host, port)
        self._serv.set({"worker_num": 1})
        self._serv.on("Receive", self.onReceive)

    def onReceive(self, serv: Server, fd: int, fromId: int, data: bytes) -> None:
        """Answer with the module's C{Test().run(data)}."""
        serv.send(fd, self._test.run(data))

    @property
    def server(self) -> Server:
        """The configured server."""
        return self._serv

    def start(self) -> bool:
        """Run until stopped."""
        return self._serv.start()


class NoReloadServer(_TestServer):
    """
    C{NoReload.php}: the module is imported when the server is built.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 9501, module: str = DEFAULT_MODULE) -> None:
        self._test = importlib.import_module(module).Test()
        super().__init__(host, port)


class ReloadServer(_TestServer):
    """
    C{Reload.php}: the module is imported in C{workerStart}, in each worker.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 9501, module: str = DEFAULT_MODULE) -> None:
        super().__init__(host, port)
        self._module = module
        self._serv.on("WorkerStart", self.onWorkerStart)

    def onWorkerStart(self, serv: Server, workerId: int) -> None:
        """C{require_once("Test.php"); $this->_test = new Test;}"""
        self._test = importlib.import_module(self._module).Test()
