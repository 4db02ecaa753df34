# -*- test-case-name: tests.test_server -*-
"""
L{Server}: Swoole's C{Swoole\\Server} API on Twisted.

    serv = Server("127.0.0.1", 9501)
    serv.set({"open_eof_split": True, "package_eof": "\\r\\n"})
    serv.on("receive", lambda serv, fd, reactor_id, data: serv.send(fd, data))
    serv.start()

C{start()} blocks and runs the reactor, as in PHP; C{asService()} gives the
same server as a Twisted service for C{twistd} and C{.tac} files.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Callable, Iterator, Mapping

from twisted.logger import Logger

from swooletw import settings as _settings
from swooletw.connection import ConnectionTable, ServerStats, toBytes
from swooletw.constants import PROCESS, SOCK_TCP, Mode, SockType
from swooletw.events import PORT_EVENTS, EventError, adaptArity, canonicalEvent
from swooletw.timer import Timers

__all__ = ["Server", "Port", "ServerStateError"]


class ServerStateError(RuntimeError):
    """
    A call that Swoole allows only before (or only after) C{start()}.
    """


class Port:
    """
    One listening address of a server (Swoole's C{Server\\Port}): its own
    framing and heartbeat settings and its own C{connect}, C{receive},
    C{close} and C{packet} callbacks, falling back to the server's.

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
        self._server = server
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
        self._server._checkNotStarted("set()")
        merged = _settings.mergeArgs(values, keywords)
        normalised = _settings.normalise(merged, portOnly=True)
        _settings.checkFraming(self.effectiveSettings(portSetting={**self.setting, **normalised}))
        self.setting.update(normalised)

    def on(self, event: str, callback: Callable[..., Any]) -> bool:
        """
        Register this port's callback for C{connect}, C{receive},
        C{close} or C{packet}.
        """
        self._server._checkNotStarted("on()")
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
            callback = self._server._callbacks.get(key)
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
            base = self._server.setting if serverSetting is None else serverSetting
        merged = {name: base[name] for name in _settings.PORT_SETTINGS}
        merged.update(own)
        return merged

    @property
    def connections(self) -> list[int]:
        """
        The ids of this port's connections.
        """
        return [
            fd for fd in self._server.connections
            if self._server._portOf(fd) is self
        ]

    def __repr__(self) -> str:
        where = self.endpoint or f"{self.host}:{self.port}"
        return f"<Port {self.index} {self.type.name} {where}>"


class _Connections:
    """
    C{serv.connections}: iterate over connection ids (every connection of
    the server, in every worker); C{len()}; C{in}.
    """

    def __init__(self, serv: Server) -> None:
        self._serv = serv

    def __iter__(self) -> Iterator[int]:
        return iter(self._serv._allFds())

    def __len__(self) -> int:
        router = self._serv._router
        return len(self._serv._table) + (len(router.directory) if router is not None else 0)

    def __contains__(self, fd: object) -> bool:
        return self._serv.exists(fd)  # type: ignore[arg-type]


class Server:
    """
    A Swoole-style TCP/UDP server.

    @param host: the main port's interface.
    @param port: the main port (0: any free port).
    @param mode: C{PROCESS} or C{BASE}, as Swoole's third argument; kept for
        ported code.  A socket type passed here is taken as C{sock_type},
        so C{Server(host, port, SOCK_UDP)} also works.
    @param sock_type: C{SOCK_TCP}, C{SOCK_UDP}, C{SOCK_TCP6} or C{SOCK_UDP6}.
    @param reactor: the reactor to run on (default: the global one, looked up
        when first needed).

    @ivar setting: every setting, Swoole's defaults overridden by C{set()}.
    @ivar ports: the listening ports, the main one first.
    @ivar connections: the ids of every open connection.
    """

    log = Logger()

    def __init__(
        self,
        host: str = "0.0.0.0",
        port: int = 0,
        mode: Mode | SockType = PROCESS,
        sock_type: SockType = SOCK_TCP,
        *,
        reactor: Any = None,
    ) -> None:
        if isinstance(mode, SockType):
            mode, sock_type = PROCESS, mode
        self.mode = Mode(mode)
        self.host = host
        self.type = SockType(sock_type)
        self.setting: dict[str, Any] = _settings.defaults()
        self.ports: list[Port] = []
        self.ports.append(Port(self, host, port, self.type))
        self._callbacks: dict[str, Callable[..., Any]] = {}
        self._reactor = reactor
        self._table = ConnectionTable()
        self._connection = self._table.get
        self._stats = ServerStats()
        self._timers: Timers | None = None
        self._service: Any = None
        #: routes operations on other processes' connections (multi-process)
        self._router: Any = None
        #: receive callbacks still running (their Deferreds); a graceful
        #: stop waits for them
        self._inflight: set[Any] = set()
        self.connections = _Connections(self)
        self.master_pid = self.manager_pid = self.worker_pid = os.getpid()
        #: per-thread identity: a task thread is a task worker
        self._local = threading.local()
        self._workerId = 0
        #: the task workers of this process (a ThreadTaskPool), once started
        self._tasks: Any = None

    # ------------------------------------------------------------ set-up

    @property
    def worker_id(self) -> int:
        """
        This process's worker id (-1 in the master); in a task thread, that
        task worker's id.
        """
        return getattr(self._local, "taskWorkerId", None) or self._workerId

    @worker_id.setter
    def worker_id(self, value: int) -> None:
        self._workerId = value

    _taskProcess = False

    @property
    def taskworker(self) -> bool:
        """
        Whether the calling code runs in a task worker.
        """
        return self._taskProcess or getattr(self._local, "taskWorkerId", None) is not None

    @property
    def port(self) -> int:
        """
        The main port's number; after listening on port 0, the real one.
        """
        return self.ports[0].port

    @property
    def reactor(self) -> Any:
        """
        The reactor this server runs on.
        """
        if self._reactor is None:
            from twisted.internet import reactor

            self._reactor = reactor
        return self._reactor

    def set(self, values: Mapping[str, Any] | None = None, **keywords: Any) -> None:
        """
        Swoole's C{set()}: a dict as PHP's array, or keyword arguments.
        Per-port settings set here are every port's default.

        @raise SettingError: naming the first bad setting and, for an
            unknown name, the closest valid one.
        """
        self._checkNotStarted("set()")
        normalised = _settings.normalise(_settings.mergeArgs(values, keywords))
        candidate = {**self.setting, **normalised}
        for port in self.ports:
            _settings.checkFraming(port.effectiveSettings(serverSetting=candidate))
        self.setting = candidate

    def on(self, event: str, callback: Callable[..., Any]) -> bool:
        """
        Register the callback for a Swoole event (case-insensitive):
        C{start}, C{shutdown}, C{workerStart}, C{workerStop}, C{connect},
        C{receive}, C{close}, C{packet}, ...

        @raise EventError: for an unknown event, naming the closest one.
        """
        self._checkNotStarted("on()")
        key, argc = canonicalEvent(event)
        self._callbacks[key] = adaptArity(callback, argc)
        return True

    def getCallback(self, event: str) -> Callable[..., Any] | None:
        """
        The callback registered for C{event}, or L{None}.
        """
        return self._callbacks.get(canonicalEvent(event)[0])

    def listen(self, host: str, port: int, sock_type: SockType = SOCK_TCP) -> Port:
        """
        Listen on one more address; the returned L{Port} takes its own
        C{set()} and C{on()}.
        """
        self._checkNotStarted("listen()")
        new = Port(self, host, port, sock_type)
        self.ports.append(new)
        return new

    addlistener = listen

    def listenEndpoint(self, description: str) -> Port:
        """
        Listen on a Twisted server endpoint string (C{"tcp:9501"},
        C{"ssl:443:privateKey=key.pem"}, C{"unix:/run/s.sock"}, ...).
        """
        self._checkNotStarted("listenEndpoint()")
        new = Port(self, None, 0, SOCK_TCP, endpoint=description)
        self.ports.append(new)
        return new

    def asService(self) -> Any:
        """
        This server as a Twisted L{IService}, for C{twistd} and C{.tac}
        files.  The same service every time.
        """
        if self._service is None:
            taskProcesses = self.setting["task_worker_num"] and self.setting["task_worker_mode"] == "process"
            if self.setting["worker_num"] > 1 or taskProcesses:
                from swooletw.master import MasterService

                self._service = MasterService(self)
            else:
                from swooletw.service import ServerService

                self._service = ServerService(self)
        return self._service

    def start(self) -> bool:
        """
        Listen and run until stopped (SIGTERM, SIGINT or C{shutdown()}), as
        Swoole's C{start()}.

        @return: C{False} if it could not listen (the reason is logged).
        """
        from swooletw.service import runServer

        return runServer(self)

    def shutdown(self) -> bool:
        """
        Stop the whole server gracefully (from the master or any worker):
        C{workerStop}, connections closed, C{shutdown}.
        """
        if self._service is None or not self._service.running:
            return False
        channel = getattr(self._service, "channel", None)
        if channel is not None:  # a worker: the master stops everything
            channel.send("shutdown")
        else:
            self.reactor.callLater(0, self.reactor.stop)
        return True

    def reload(self, only_reload_taskworker: bool = False) -> bool:
        """
        Replace every worker gracefully (C{SIGUSR1}); with
        C{only_reload_taskworker}, the task workers only (C{SIGUSR2}).
        Code imported in C{workerStart} is fresh afterwards.

        @return: C{False} in a single-process server (nothing to replace)
            or when a reload is already running.
        """
        service = self._service
        if service is None or not service.running:
            return False
        channel = getattr(service, "channel", None)
        if channel is not None:  # a worker: ask the master
            channel.send("reload", bool(only_reload_taskworker))
            return True
        reload = getattr(service, "reload", None)
        if reload is None:
            self.log.info("reload() in a single-process server (worker_num 1): nothing to do")
            return False
        return reload(only_reload_taskworker)

    def _becomeWorker(self, workerId: int, reactor: Any) -> None:
        """
        In a freshly forked worker: its id and pid, its own reactor, and no
        timers or counters inherited from the master.
        """
        from swooletw import timer

        self.worker_id = workerId
        self.worker_pid = os.getpid()
        self._reactor = reactor
        self._timers = None
        self._stats = ServerStats()
        timer.defaultTimers._clock = None
        timer.defaultTimers.clearAll()

    # ------------------------------------------------------- connections

    def send(self, fd: int, data: Any, serverSocket: int = -1) -> bool:
        """
        Send data to a connection.

        @return: C{False} (logged at debug) if C{fd} is closed or unknown.
        """
        connection = self._connection(fd)
        if data.__class__ is not bytes:
            data = toBytes(data)
        if connection is None:
            if self._router is not None:
                return self._router.send(fd, data)
            self.log.debug("send to unknown or closed fd {fd} dropped", fd=fd)
            return False
        if connection._reading and not connection._closing:
            # The hot path (a reply from inside receive), inlined.
            connection._pending.append(data)
            return True
        return connection.sendData(data)

    def sendto(self, ip: str, port: int, data: Any, server_socket: int = -1) -> bool:
        """
        Send a UDP datagram from a UDP port (the first one, or the port
        whose index is C{server_socket}).
        """
        for candidate in self._udpProtocols(server_socket):
            return candidate.sendto(ip, port, toBytes(data))
        self.log.debug("sendto {ip}:{port}: no UDP port is listening", ip=ip, port=port)
        return False

    def close(self, fd: int, reset: bool = False) -> bool:
        """
        Close a connection (its C{close} callback gets reactor id -1).

        @return: C{False} if C{fd} is closed or unknown.
        """
        connection = self._table.get(fd)
        if connection is None:
            if self._router is not None:
                return self._router.close(fd, reset)
            self.log.debug("close of unknown or closed fd {fd} ignored", fd=fd)
            return False
        return connection.closeConnection(reset=reset)

    def exists(self, fd: int) -> bool:
        """
        Whether C{fd} is an open connection.
        """
        connection = self._table.get(fd)
        if connection is None:
            return self._router is not None and fd in self._router.directory
        return not connection._closing

    exist = exists

    def getClientInfo(self, fd: int, reactor_id: int = -1, ignore_error: bool = False) -> dict[str, Any] | bool:
        """
        Swoole's client info: C{remote_ip}, C{remote_port}, C{server_port},
        C{connect_time}, C{last_time}, ...; C{False} for an unknown fd.
        """
        connection = self._table.get(fd)
        if connection is not None:
            return connection.clientInfo()
        if self._router is not None:
            info = self._router.directory.info(fd)
            if info is not None:
                return info
        return False

    connection_info = getClientInfo

    def getClientList(self, start_fd: int = 0, page_size: int = 10) -> list[int]:
        """
        Up to C{page_size} (at most 100) connection ids after C{start_fd},
        in order; an empty list when there are no more.
        """
        size = max(1, min(page_size, 100))
        if self._router is None:
            return self._table.page(start_fd, size)
        return [fd for fd in self._allFds() if fd > start_fd][:size]

    connection_list = getClientList

    def stats(self) -> dict[str, Any]:
        """
        Swoole's C{stats()}: counters since start and the current state.
        With several workers, the counters of all of them added up (the
        others' as of their last ping) and C{workers}, each one's own.
        """
        local = self._localStats()
        if self._router is None:
            return local
        from swooletw.router import sumStats

        perWorker = dict(self._router.stats)
        if self.worker_id >= 0:
            perWorker[self.worker_id] = local
        result = sumStats(perWorker)
        result.update(
            start_time=local["start_time"],
            connection_num=len(self.connections),
            worker_num=self.setting["worker_num"],
            task_worker_num=self.setting["task_worker_num"],
            session_round=local["session_round"],
            workers=perWorker,
        )
        result.update(getattr(self._router, "taskStats", None) or {})
        if self._taskDispatcher is not None:  # the master
            result.update(self._taskDispatcher.stats())
        return result

    def _localStats(self) -> dict[str, Any]:
        """
        This process's own counters.
        """
        result: dict[str, Any] = self._stats.asDict()
        result["request_count"] += sum(c.requests for c in self._table.values())
        result.update(
            connection_num=len(self._table),
            session_round=self._table.lastFd,
            worker_num=self.setting["worker_num"],
            task_worker_num=self.setting["task_worker_num"],
            idle_worker_num=self.setting["worker_num"],
            dispatch_count=result["request_count"],
            worker_request_count=result["request_count"],
            abort_count=result["packet_error_count"],
        )
        tasks = self._tasks if self._tasks is not None else self._taskDispatcher
        if tasks is not None:
            result.update(tasks.stats())
        result["task_worker_num"] = self.setting["task_worker_num"]
        return result

    # ------------------------------------------------------------- tasks

    def task(self, data: Any, dst_worker_id: int = -1, callback: Callable[..., Any] | None = None) -> int | bool:
        """
        Hand C{data} to a task worker; returns the task id at once, or
        C{False} when the queue is full.  The result reaches C{callback(serv,
        task_id, result)} or the C{finish} event.

        With task worker processes, C{dst_worker_id} picks the one to run
        it (it waits for that one); task threads are interchangeable.

        @raise NoTaskWorkers: without C{task_worker_num}.
        @raise TypeError: for data that is not JSON-like or bytes.
        @raise ValueError: for a C{dst_worker_id} that is not a task worker.
        """
        return self._taskPool().submit(data, callback, dst=dst_worker_id)

    def taskStored(self, task_id: int) -> Any:
        """
        A Deferred that fires once task C{task_id} is in the C{task_store}
        journal (at once without one); reply to a client after it.
        """
        return self._taskPool().stored(task_id)

    def taskwait(self, data: Any, timeout: float = 0.5, dst_worker_id: int = -1) -> Any:
        """
        Run a task and get a Deferred with its result; it fails with
        L{TaskTimeout} after C{timeout} seconds, or with the task's error.
        """
        return self._taskPool().wait(data, timeout, dst_worker_id)

    def taskWaitMulti(self, tasks: list[Any], timeout: float = 0.5) -> Any:
        """
        Run several tasks; a Deferred with C{{index: result}} for those done
        within C{timeout}.
        """
        return self._taskPool().waitMulti(list(tasks), timeout)

    def finish(self, data: Any) -> bool:
        """
        From a task handler: its result, for the asker's C{finish}.

        @return: C{False} (logged) outside a task.
        """
        finish = getattr(self._local, "finish", None) or self._asyncFinish
        if finish is None:
            self.log.error("finish() called outside a task handler: ignored")
            return False
        finish.called = True
        finish.value = data
        return True

    def runBlocking(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """
        Run blocking code off the reactor from an C{async def} task
        handler: in one of the task threads (thread kind), or right here in
        a task worker process, which has nothing else to do.

        @return: a Deferred with C{f}'s result.
        @raise NoTaskWorkers: where there are no task threads to use.
        """
        from twisted.internet import defer
        from twisted.internet.threads import deferToThreadPool

        if self._taskProcess:
            return defer.maybeDeferred(f, *args, **kwargs)
        pool = getattr(self._tasks, "threadpool", None)
        if pool is None:
            from swooletw.tasks import NoTaskWorkers

            raise NoTaskWorkers("runBlocking() needs task workers (task_worker_num)")
        return deferToThreadPool(self.reactor, pool, f, *args, **kwargs)

    _asyncFinish: Any = None
    #: the master's dispatcher of task worker processes
    _taskDispatcher: Any = None

    def _currentFinish(self, finish: Any) -> None:
        self._asyncFinish = finish

    def _taskPool(self) -> Any:
        if self._tasks is None:
            from swooletw.tasks import NoTaskWorkers

            raise NoTaskWorkers(
                "task() needs task workers: set task_worker_num and a 'task' callback"
                if not self.setting["task_worker_num"]
                else "task() is only available in a worker of a started server"
            )
        return self._tasks

    def _taskHandler(self) -> Callable[..., Any]:
        handler = self.getCallback("task")
        if handler is None:
            raise RuntimeError("no 'task' callback registered")
        return handler

    def _fireInTaskThread(self, event: str, *args: Any) -> None:
        callback = self.getCallback(event)
        if callback is not None:
            try:
                callback(self, *args)
            except Exception:
                self.log.failure("{event} failed in a task worker", event=event)

    # ------------------------------------------------------------ timers

    @property
    def timers(self) -> Timers:
        """
        This server's timers (cleared when it stops).
        """
        if self._timers is None:
            self._timers = Timers(self._reactor)
        return self._timers

    def tick(self, ms: float, callback: Callable[..., Any], *params: Any) -> int:
        """
        Call C{callback(timer_id, *params)} every C{ms} milliseconds.
        """
        return self.timers.tick(ms, callback, *params)

    def after(self, ms: float, callback: Callable[..., Any], *params: Any) -> int:
        """
        Call C{callback(timer_id, *params)} once after C{ms} milliseconds.
        """
        return self.timers.after(ms, callback, *params)

    def clearTimer(self, timer_id: int) -> bool:
        """
        Stop a timer made with L{tick} or L{after}.
        """
        return self.timers.clear(timer_id)

    # ---------------------------------------------------------- internal

    def _trackInflight(self, result: Any, done: Callable[[], None]) -> None:
        """
        Remember a running callback (a graceful stop waits for it); call
        C{done} when it finishes, or now if it already has.
        """
        from twisted.internet.defer import Deferred

        if not isinstance(result, Deferred) or result.called:
            done()
            return
        inflight = self._inflight
        inflight.add(result)

        def finished(value: Any) -> Any:
            inflight.discard(result)
            done()
            return value

        result.addBoth(finished)

    def _allFds(self) -> list[int]:
        local = list(self._table)
        if self._router is None:
            return local
        return sorted(set(local).union(self._router.directory))

    def _checkNotStarted(self, what: str) -> None:
        if self._service is not None and self._service.running:
            raise ServerStateError(f"{what} is not allowed after the server has started")

    def _portOf(self, fd: int) -> Port | None:
        connection = self._table.get(fd)
        return None if connection is None else connection.factory.port

    def _udpProtocols(self, index: int) -> Iterator[Any]:
        if self._service is None:
            return
        for port, protocol in self._service.udpProtocols():
            if index in (-1, port.index):
                yield protocol


__all__ += ["EventError"]
