# -*- test-case-name: tests.test_server -*-
"""
L{Server}: Swoole's C{Swoole\\Server} API on Twisted.

    serv = Server("127.0.0.1", 9501)
    serv.set({"open_eof_split": True, "package_eof": "\\r\\n"})
    serv.on("receive", lambda serv, fd, reactor_id, data: serv.send(fd, data))
    serv.start()

A server holds settings, callbacks and ports.  Every operation (C{send},
C{close}, C{task}, C{stats}, C{reload}, ...) belongs to the runtime attached
when it starts (L{swooletw.interfaces.IServerRuntime}): its methods are
bound onto the server then, so a call costs what the runtime's own does.
Before C{start()} they answer as Swoole's do: nothing to send to, nothing
to close.

A server kind (HTTP, WebSocket) differs from L{Server} by the protocol
factory it gives each TCP port (L{Server.protocolFactory}) and its own
events and methods.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterator, Mapping, NoReturn

from twisted.logger import Logger
from zope.interface.verify import verifyObject

from swooletw import settings as _settings
from swooletw.api.port import Port, ServerStateError, checkNotStarted
from swooletw.constants import PROCESS, SOCK_TCP, Mode, SockType
from swooletw.events import EventError, adaptArity, canonicalEvent
from swooletw.interfaces import OPERATIONS, IServerRuntime
from swooletw.timer import Timers
from swooletw.wire.stream import PortFactory
from swooletw.wire.table import ServerStats

__all__ = ["Server", "Port", "ServerStateError", "EventError"]


def _noTaskWorkers() -> NoReturn:
    from swooletw.tasks import NoTaskWorkers

    raise NoTaskWorkers("task() is only available in a worker of a started server")


class _Connections:
    """
    C{serv.connections}: iterate over connection ids (every connection of
    the server, in every worker); C{len()}; C{in}.
    """

    def __init__(self, serv: Server) -> None:
        self._serv = serv

    def __iter__(self) -> Iterator[int]:
        runtime = self._serv.runtime
        return iter(runtime.connectionIds() if runtime is not None else ())

    def __len__(self) -> int:
        runtime = self._serv.runtime
        return runtime.connectionCount() if runtime is not None else 0

    def __contains__(self, fd: object) -> bool:
        return self._serv.exists(fd)  # type: ignore[arg-type]


class Server:
    """
    A Swoole-style TCP/UDP server.

    @param host: the main port's interface.
    @param port: the main port (0: any free port).
    @param mode: C{PROCESS} (a master supervises the workers, even one) or
        C{BASE} (with C{worker_num} 1 and no task worker processes: one
        process does everything).  A socket type passed here is taken as
        C{sock_type}, so C{Server(host, port, SOCK_UDP)} also works.
    @param sock_type: C{SOCK_TCP}, C{SOCK_UDP}, C{SOCK_TCP6} or C{SOCK_UDP6}.
    @param reactor: the reactor to run on (default: the global one, looked up
        when first needed).

    @ivar setting: every setting, Swoole's defaults overridden by C{set()}.
    @ivar ports: the listening ports, the main one first.
    @ivar connections: the ids of every open connection.
    @ivar runtime: the L{IServerRuntime} running this server in this
        process, once started.
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
        self._timers: Timers | None = None
        self._service: Any = None
        self.runtime: Any = None
        self.connections = _Connections(self)
        self.master_pid = self.manager_pid = self.worker_pid = os.getpid()

    # ------------------------------------------------------------ set-up

    @property
    def started(self) -> bool:
        """
        Whether a runtime runs this server in this process.
        """
        return self.runtime is not None

    @property
    def worker_id(self) -> int:
        """
        This process's worker id (-1 in the master); in a task thread, that
        task worker's id.
        """
        runtime = self.runtime
        return 0 if runtime is None else runtime.currentWorkerId()

    @property
    def taskworker(self) -> bool:
        """
        Whether the calling code runs in a task worker.
        """
        runtime = self.runtime
        return runtime is not None and runtime.inTaskWorker()

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
        checkNotStarted(self, "set()")
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
        checkNotStarted(self, "on()")
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
        checkNotStarted(self, "listen()")
        new = Port(self, host, port, sock_type)
        self.ports.append(new)
        return new

    addlistener = listen

    def listenEndpoint(self, description: str) -> Port:
        """
        Listen on a Twisted server endpoint string (C{"tcp:9501"},
        C{"ssl:443:privateKey=key.pem"}, C{"unix:/run/s.sock"}, ...).
        """
        checkNotStarted(self, "listenEndpoint()")
        new = Port(self, None, 0, SOCK_TCP, endpoint=description)
        self.ports.append(new)
        return new

    def protocolFactory(self, port: Port, process: Any) -> Any:
        """
        The factory serving the connections of one TCP port; a server kind
        gives its own.

        @param process: the runtime of this process (its clock, connection
            table, counters and worker id).
        """
        return PortFactory(self, port, process)

    def checkStartable(self) -> None:
        """
        What must hold before anything is bound or forked.

        @raise SettingError: naming the setting and what it needs.
        """
        setting = self.setting
        if setting["task_worker_num"] and self.getCallback("task") is None:
            raise _settings.SettingError(
                "setting 'task_worker_num' needs a 'task' callback: serv.on('task', f)"
            )
        if setting["task_store"] and not setting["task_worker_num"]:
            raise _settings.SettingError("setting 'task_store' needs task_worker_num > 0")
        if not self.supervised:
            for name in ("max_request", "task_max_request"):
                if setting[name]:
                    raise _settings.SettingError(
                        f"setting {name!r} needs a master to replace the worker: "
                        "use PROCESS mode (the default) or worker_num > 1"
                    )

    @property
    def supervised(self) -> bool:
        """
        Whether a master supervises worker processes (C{PROCESS} mode, or
        more than one worker, or task worker processes); else one process
        does everything (C{BASE} mode).
        """
        setting = self.setting
        taskProcesses = setting["task_worker_num"] and setting["task_worker_mode"] == "process"
        return self.mode == PROCESS or setting["worker_num"] > 1 or bool(taskProcesses)

    def asService(self) -> Any:
        """
        This server as a Twisted L{IService}, for C{twistd} and C{.tac}
        files.  The same service every time.

        @raise SettingError: if the settings and callbacks cannot start.
        """
        if self._service is None:
            from swooletw.runtime import serviceFor

            self.checkStartable()
            self._service = serviceFor(self)
        return self._service

    def start(self) -> bool:
        """
        Listen and run until stopped (SIGTERM, SIGINT or C{shutdown()}), as
        Swoole's C{start()}.

        @return: C{False} if it could not start (the reason is logged).
        """
        from swooletw.runtime import runServer

        return runServer(self)

    # ------------------------------------------------------------ the seam

    def attach(self, runtime: Any) -> None:
        """
        Run on C{runtime} from now on (called by the runtime as this process
        starts serving): its methods become this server's operations.
        """
        verifyObject(IServerRuntime, runtime)
        self.runtime = runtime
        for name, method in OPERATIONS.items():
            setattr(self, name, getattr(runtime, method))

    def detach(self) -> None:
        """
        Stop running on the attached runtime: the operations answer as
        before C{start()} again.
        """
        self.runtime = None
        for name in OPERATIONS:
            self.__dict__.pop(name, None)

    def adoptReactor(self, reactor: Any) -> None:
        """
        Run on C{reactor} from now on (a freshly forked process, a test
        harness), with none of the timers or the runtime of before.
        """
        self._reactor = reactor
        self._timers = None
        self.detach()

    # ------------------------------------- operations, before start()

    def send(self, fd: int, data: Any, serverSocket: int = -1) -> bool:
        """
        Send data to a connection.

        @return: C{False} if C{fd} is closed or unknown, or its output
            buffer is full (C{buffer_output_size}).
        """
        return False

    def sendto(self, ip: str, port: int, data: Any, server_socket: int = -1) -> bool:
        """
        Send a UDP datagram from a UDP port (the first one, or the port
        whose index is C{server_socket}).
        """
        return False

    def close(self, fd: int, reset: bool = False) -> bool:
        """
        Close a connection (its C{close} callback gets reactor id -1).

        @return: C{False} if C{fd} is closed or unknown.
        """
        return False

    def exists(self, fd: int) -> bool:
        """
        Whether C{fd} is an open connection.
        """
        return False

    exist = exists

    def getClientInfo(self, fd: int, reactor_id: int = -1, ignore_error: bool = False) -> dict[str, Any] | bool:
        """
        Swoole's client info: C{remote_ip}, C{remote_port}, C{server_port},
        C{connect_time}, C{last_time}, ...; C{False} for an unknown fd.
        """
        return False

    connection_info = getClientInfo

    def getClientList(self, start_fd: int = 0, page_size: int = 10) -> list[int]:
        """
        Up to C{page_size} (at most 100) connection ids after C{start_fd},
        in order; an empty list when there are no more.
        """
        return []

    connection_list = getClientList

    def stats(self) -> dict[str, Any]:
        """
        Swoole's C{stats()}: counters since start and the current state.
        With several workers, the counters of all of them added up and
        C{workers}, each one's own.
        """
        result: dict[str, Any] = ServerStats().asDict()
        result.update(
            connection_num=0,
            worker_num=self.setting["worker_num"],
            task_worker_num=self.setting["task_worker_num"],
            idle_worker_num=0,
        )
        return result

    def task(self, data: Any, dst_worker_id: int = -1, callback: Callable[..., Any] | None = None) -> int | bool:
        """
        Hand C{data} to a task worker; returns the task id at once, or
        C{False} when the queue is full.  The result reaches C{callback(serv,
        task_id, result)} or the C{finish} event.

        @raise NoTaskWorkers: before start, or without C{task_worker_num}.
        """
        _noTaskWorkers()

    def taskwait(self, data: Any, timeout: float = 0.5, dst_worker_id: int = -1) -> Any:
        """
        Run a task and get a Deferred with its result; it fails with
        L{TaskTimeout} after C{timeout} seconds, or with the task's error.
        """
        _noTaskWorkers()

    def taskWaitMulti(self, tasks: list[Any], timeout: float = 0.5) -> Any:
        """
        Run several tasks; a Deferred with C{{index: result}} for those done
        within C{timeout}.
        """
        _noTaskWorkers()

    def taskStored(self, task_id: int) -> Any:
        """
        A Deferred that fires once task C{task_id} is on disk in the task
        journal (C{task_store}); at once without a journal.  Acknowledge a
        task to a client only then.
        """
        _noTaskWorkers()

    def finish(self, data: Any) -> bool:
        """
        From a task handler: its result, for the asker's C{finish}.

        @return: C{False} (logged) outside a task.
        """
        self.log.error("finish() called outside a task handler: ignored")
        return False

    def runBlocking(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """
        Run blocking code off the reactor from an C{async def} task
        handler; a Deferred with C{f}'s result.
        """
        _noTaskWorkers()

    def reload(self, only_reload_taskworker: bool = False) -> bool:
        """
        Replace every worker gracefully (C{SIGUSR1}); with
        C{only_reload_taskworker}, the task workers only (C{SIGUSR2}).

        @return: C{False} when not running, in a single process (BASE mode)
            or when a reload is already running.
        """
        return False

    def shutdown(self) -> bool:
        """
        Stop the whole server gracefully (from the master or any worker).
        """
        return False

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

