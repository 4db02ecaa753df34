# -*- test-case-name: tests.test_server -*-
"""
L{ProcessRuntime}: the server as one process runs it (the single process,
a worker, a task worker process or the master).

It owns this process's connection table, counters, running callbacks and
task workers, and answers every operation of the server
(L{swooletw.interfaces.IServerRuntime}): on a connection of this process
directly; on another process's connection through the router, when there
is one (L{swooletw.runtime.router}).
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from swooletw.interfaces import IServerRuntime
from swooletw.tasks.base import NoTaskWorkers, finishCurrentTask, threadTaskWorkerId
from swooletw.wire import toBytes
from swooletw.wire.table import ConnectionTable, ServerStats

__all__ = ["ProcessRuntime"]


def _refuse() -> bool:
    return False


@implementer(IServerRuntime)
class ProcessRuntime:
    """
    One process's runtime.

    @param serv: the server it runs.
    @param clock: this process's reactor.
    @param workerId: this process's worker id (-1 for the master).
    @param table: its connection table (default: ids from 1, no limit).
    @param router: relays operations on other processes' connections, or
        L{None} when this process is the whole server.
    @param reload: C{reload(onlyTaskWorkers) -> bool}, how this process
        asks for a reload.
    @param shutdown: C{shutdown() -> bool}, how it asks for a stop.

    @ivar counters: this process's L{ServerStats}.
    @ivar tasks: its task pool once started, or L{None}.
    @ivar udp: C{(port, protocol)} of its UDP ports.
    @ivar inflight: the Deferreds of callbacks still running.
    """

    log = Logger()
    #: a task worker process (set by its runtime)
    taskProcess = False
    #: called after each connection of this process closes (a worker
    #: checks C{max_request} there)
    closeHook: Callable[[], None] | None = None

    def __init__(
        self,
        serv: Any,
        clock: Any,
        workerId: int,
        table: ConnectionTable | None = None,
        router: Any = None,
        reload: Callable[[bool], bool] | None = None,
        shutdown: Callable[[], bool] | None = None,
        counters: ServerStats | None = None,
    ) -> None:
        self.serv = serv
        self.clock = clock
        self.workerId = workerId
        self.table = table if table is not None else ConnectionTable()
        self.counters = counters if counters is not None else ServerStats()
        self.router = router
        self.tasks: Any = None
        self.udp: list[tuple[Any, Any]] = []
        self.inflight: set[defer.Deferred[Any]] = set()
        self._reload = reload
        self._shutdown = shutdown or _refuse
        self._get = self.table.get

    # ------------------------------------------------------- connections

    def send(self, fd: int, data: Any, serverSocket: int = -1) -> bool:
        if data.__class__ is not bytes:
            data = toBytes(data)
        connection = self._get(fd)
        if connection is not None:
            if connection.gathering:
                # ServerConnection.sendData's gathering branch, inlined: a
                # reply from inside receive is the per-message path.
                unsent = connection.unsent + len(data)
                if unsent <= connection.outputLimit:
                    connection.pending.append(data)
                    connection.unsent = unsent
                    return True
            return connection.sendData(data)
        if self.router is not None and self.router.send(fd, data):
            return True
        self.counters.closed_send_count += 1
        return False

    def sendto(self, ip: str, port: int, data: Any, server_socket: int = -1) -> bool:
        for udpPort, protocol in self.udp:
            if server_socket in (-1, udpPort.index):
                return protocol.sendto(ip, port, toBytes(data))
        self.log.debug("sendto {ip}:{port}: no UDP port is listening", ip=ip, port=port)
        return False

    def close(self, fd: int, reset: bool = False) -> bool:
        connection = self._get(fd)
        if connection is not None:
            return connection.closeConnection(reset=reset)
        return self.router is not None and self.router.close(fd, reset)

    def exists(self, fd: int) -> bool:
        connection = self._get(fd)
        if connection is not None:
            return not connection.closing
        return self.router is not None and fd in self.router.directory

    def getClientInfo(self, fd: int, reactor_id: int = -1, ignore_error: bool = False) -> dict[str, Any] | bool:
        connection = self._get(fd)
        if connection is not None:
            return connection.clientInfo()
        if self.router is not None:
            info = self.router.directory.info(fd)
            if info is not None:
                return info
        return False

    def getClientList(self, start_fd: int = 0, page_size: int = 10) -> list[int]:
        size = max(1, min(page_size, 100))
        if self.router is None:
            return self.table.page(start_fd, size)
        return [fd for fd in self.connectionIds() if fd > start_fd][:size]

    def connectionIds(self) -> list[int]:
        local = list(self.table)
        if self.router is None:
            return local
        return sorted(set(local).union(self.router.directory))

    def connectionCount(self) -> int:
        others = len(self.router.directory) if self.router is not None else 0
        return len(self.table) + others

    def trackInflight(self, result: Any, done: Callable[[], None]) -> None:
        """
        Remember a running callback (a graceful stop waits for it); call
        C{done} when it finishes, or now if it already has.
        """
        if not isinstance(result, defer.Deferred) or result.called:
            done()
            return
        inflight = self.inflight
        inflight.add(result)

        def finished(value: Any) -> Any:
            inflight.discard(result)
            done()
            return value

        result.addBoth(finished)

    # ------------------------------------------------------------- stats

    def localStats(self) -> dict[str, Any]:
        """
        This process's own counters and state.
        """
        setting = self.serv.setting
        result: dict[str, Any] = self.counters.asDict()
        result["request_count"] += sum(c.requests for c in self.table.values())
        result.update(
            connection_num=len(self.table),
            session_round=self.table.lastFd,
            worker_num=setting["worker_num"],
            idle_worker_num=0 if self.inflight or self.workerId < 0 else 1,
            dispatch_count=result["request_count"],
            worker_request_count=result["request_count"],
            abort_count=result["packet_error_count"],
        )
        if self.tasks is not None:
            result.update(self.tasks.stats())
        result["task_worker_num"] = setting["task_worker_num"]
        return result

    def stats(self) -> dict[str, Any]:
        local = self.localStats()
        if self.router is None:
            return local
        return self.router.serverStats(self.workerId, local)

    # ------------------------------------------------------------- tasks

    def taskPool(self) -> Any:
        """
        This process's task pool.

        @raise NoTaskWorkers: without task workers.
        """
        if self.tasks is None:
            raise NoTaskWorkers(
                "task() needs task workers: set task_worker_num and a 'task' callback"
                if not self.serv.setting["task_worker_num"]
                else "task() is only available in a worker of a started server"
            )
        return self.tasks

    def task(self, data: Any, dst_worker_id: int = -1, callback: Callable[..., Any] | None = None) -> int | bool:
        return self.taskPool().submit(data, callback, dst=dst_worker_id)

    def taskwait(self, data: Any, timeout: float = 0.5, dst_worker_id: int = -1) -> Any:
        return self.taskPool().wait(data, timeout, dst_worker_id)

    def taskWaitMulti(self, tasks: list[Any], timeout: float = 0.5) -> Any:
        return self.taskPool().waitMulti(list(tasks), timeout)

    def taskStored(self, task_id: int) -> Any:
        return self.taskPool().stored(task_id)

    def finish(self, data: Any) -> bool:
        if finishCurrentTask(data):
            return True
        self.log.error("finish() called outside a task handler: ignored")
        return False

    def runBlocking(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self.taskProcess:
            return defer.maybeDeferred(f, *args, **kwargs)
        pool = getattr(self.tasks, "threadpool", None)
        if pool is None:
            raise NoTaskWorkers("runBlocking() needs task workers (task_worker_num)")
        from twisted.internet.threads import deferToThreadPool

        return deferToThreadPool(self.clock, pool, f, *args, **kwargs)

    # ------------------------------------------------------ the process

    def reload(self, only_reload_taskworker: bool = False) -> bool:
        if self._reload is None:
            self.log.warn(
                "reload() in a single-process server (BASE mode): nothing to replace"
            )
            return False
        return self._reload(bool(only_reload_taskworker))

    def shutdown(self) -> bool:
        return self._shutdown()

    def currentWorkerId(self) -> int:
        taskWorkerId = threadTaskWorkerId()
        return self.workerId if taskWorkerId is None else taskWorkerId

    def inTaskWorker(self) -> bool:
        return self.taskProcess or threadTaskWorkerId() is not None
