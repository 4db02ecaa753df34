# -*- test-case-name: tests.test_service -*-
"""
The lifecycle of a L{Server} as a Twisted service.

L{ServerService} binds every port in C{privilegedStartService} (so C{twistd}
binds before dropping privileges, and a port that cannot be bound stops
start-up with the reason), then fires Swoole's C{start}, C{managerStart} and
C{workerStart(serv, 0)}, and runs each port's heartbeat.  Stopping fires
C{workerStop}, stops listening, closes every connection (their C{close}
callbacks run), waits at most C{max_wait_time} for them, clears the
server's timers and fires C{managerStop} and C{shutdown}.

L{runServer} is C{Server.start()}: the service on the reactor, run until
stopped.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any, Iterator

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.endpoints import (
    SSL4ServerEndpoint,
    TCP4ServerEndpoint,
    TCP6ServerEndpoint,
    serverFromString,
)
from twisted.logger import Logger
from twisted.python.failure import Failure

from swooletw import settings as _settings
from swooletw.connection import PortFactory, UDPPortProtocol
from swooletw.constants import SOCK_TCP6, UDP_TYPES
from swooletw.events import invoke

if TYPE_CHECKING:  # pragma: no cover
    from swooletw.server import Port, Server

__all__ = ["ServerService", "runServer", "ListenError"]


class ListenError(Exception):
    """
    A port could not be bound.
    """


def _tlsContext(certFile: str, keyFile: str) -> Any:
    from twisted.internet import ssl

    with open(certFile, "rb") as cert, open(keyFile, "rb") as key:
        pem = cert.read() + b"\n" + key.read()
    return ssl.PrivateCertificate.loadPEM(pem).options()


def endpointFor(reactor: Any, port: Port, settings: dict[str, Any]) -> Any:
    """
    The server endpoint of a TCP port: its endpoint string, or TCP, TCP6 or
    TLS (C{ssl_cert_file}) on its host and port with its C{backlog}.
    """
    if port.endpoint is not None:
        return serverFromString(reactor, port.endpoint)
    backlog = settings["backlog"]
    if settings["ssl_cert_file"]:
        context = _tlsContext(settings["ssl_cert_file"], settings["ssl_key_file"])
        return SSL4ServerEndpoint(reactor, port.port, context, backlog, port.host)
    if port.type == SOCK_TCP6 or ":" in port.host:
        return TCP6ServerEndpoint(reactor, port.port, backlog, port.host)
    return TCP4ServerEndpoint(reactor, port.port, backlog, port.host)


def listenNow(endpoint: Any, factory: Any) -> Any:
    """
    Listen and return the listening port at once.  The stock endpoints
    listen synchronously; taking the result now makes a bind error raise
    here instead of sitting in a Deferred nobody waits on.

    @raise ListenError: if the endpoint did not listen synchronously.
    """
    listened: list[Any] = []
    endpoint.listen(factory).addBoth(listened.append)
    if not listened:
        raise ListenError("the endpoint did not listen synchronously")
    if isinstance(listened[0], Failure):
        listened[0].raiseException()
    return listened[0]


class ServerService(Service):
    """
    Runs a L{Server}: see the module docstring.
    """

    log = Logger()

    def __init__(self, serv: Server) -> None:
        self.serv = serv
        self.setName("swooletw")
        self._factories: list[PortFactory] = []
        self._udp: list[tuple[Port, UDPPortProtocol]] = []
        self._listening: list[Any] = []
        self._bound = False

    # ---------------------------------------------------------- listening

    def privilegedStartService(self) -> None:
        """
        Bind every port now; raise L{ListenError} if one cannot be bound.
        """
        super().privilegedStartService()
        if not self._bound:
            self._bindAll()

    def _bindAll(self) -> None:
        serv = self.serv
        reactor = serv.reactor
        for port in serv.ports:
            settings = port.effectiveSettings()
            _settings.checkFraming(settings)
            try:
                listening = self._bind(reactor, port, settings)
            except Exception as e:
                self._stopListening()
                where = port.endpoint or f"{port.host}:{port.port}"
                raise ListenError(f"cannot listen on {where}: {e}") from e
            self._listening.append(listening)
            address = listening.getHost()
            port.port = getattr(address, "port", port.port)
            if port.endpoint is not None:
                port.host = getattr(address, "host", port.host)
        self._bound = True

    def _bind(self, reactor: Any, port: Port, settings: dict[str, Any]) -> Any:
        if port.type in UDP_TYPES:
            protocol = UDPPortProtocol(self.serv, port)
            self._udp.append((port, protocol))
            return reactor.listenUDP(port.port, protocol, interface=port.host)
        factory = PortFactory(self.serv, port, reactor)
        self._factories.append(factory)
        return listenNow(endpointFor(reactor, port, settings), factory)

    def factoryFor(self, port: Port) -> PortFactory:
        """
        The factory listening for a TCP port.

        @raise LookupError: if the port is not a listening TCP port.
        """
        for factory in self._factories:
            if factory.port is port:
                return factory
        raise LookupError(f"{port!r} is not a listening TCP port")

    def udpProtocols(self) -> Iterator[tuple[Port, UDPPortProtocol]]:
        """
        The listening UDP ports and their protocols.
        """
        return iter(self._udp)

    # ---------------------------------------------------------- lifecycle

    def startService(self) -> None:
        """
        Bind (if not done yet), start heartbeats, fire the start events.
        """
        if not self._bound:
            self._bindAll()
        super().startService()
        self.serv._stats.start_time = int(self.serv.reactor.seconds())
        self.startTasks()
        for factory in self._factories:
            interval, idle = _settings.heartbeatTimes(factory.settings)
            if interval:
                factory.startHeartbeat(interval, idle)
        self.fireStartEvents()

    def stopService(self) -> defer.Deferred[None]:
        """
        Stop gracefully; the Deferred fires when everything is closed (or
        C{max_wait_time} has passed).
        """
        super().stopService()
        self._fire("workerStop", self.serv.worker_id)
        stopped = self._stopListening()
        for factory in self._factories:
            factory.stopHeartbeat()
        # One max_wait_time for the whole stop: running callbacks, then busy
        # connections.
        deadline = self.serv.reactor.seconds() + self.serv.setting["max_wait_time"]
        closed = self._drainInflight(deadline)
        closed.addCallback(lambda _: self._closeConnections(deadline))
        closed.addCallback(lambda _: self._stopTasks(deadline))
        done = defer.gatherResults([stopped, closed], consumeErrors=True)
        done.addErrback(lambda f: self.log.failure("error while stopping", f))
        done.addBoth(lambda _: self._finish())
        return done

    #: the task workers' thread pool; L{None} for a dedicated ThreadPool
    #: (tests put a synchronous stand-in here)
    taskThreadPool: Any = None

    def startTasks(self) -> None:
        """
        Start this process's task workers, if C{task_worker_num} asks.
        """
        serv = self.serv
        setting = serv.setting
        if not setting["task_worker_num"]:
            if setting["task_store"]:
                raise _settings.SettingError("setting 'task_store' needs task_worker_num > 0")
            return
        if serv._tasks is not None:
            return
        if serv.getCallback("task") is None:
            raise _settings.SettingError(
                "setting 'task_worker_num' needs a 'task' callback: serv.on('task', f)"
            )
        from swooletw.tasks import ThreadTaskPool

        store = self.openTaskStore()
        serv._tasks = ThreadTaskPool(serv, serv.reactor, self.taskThreadPool, store)
        serv._tasks.start()
        serv._tasks.recover()

    def openTaskStore(self) -> Any:
        """
        This process's connection to the task journal, if C{task_store} is
        set.  A single process is the whole server: every task left in the
        journal belonged to a run that died, so it takes them all.
        """
        if not self.serv.setting["task_store"]:
            return None
        from swooletw.taskstore import TaskStore, parseStore

        store = TaskStore(parseStore(self.serv.setting["task_store"]))
        store.release()
        return store

    def _stopTasks(self, deadline: float) -> defer.Deferred[None]:
        tasks = self.serv._tasks
        if tasks is None:
            return defer.succeed(None)

        def stop(_: Any) -> None:
            tasks.stop()
            self.serv._tasks = None

        return tasks.drained(deadline).addCallback(stop)

    def fireStartEvents(self) -> None:
        """
        One process is master, manager and worker 0: C{start},
        C{managerStart}, C{workerStart(serv, 0)}.
        """
        self._fire("start")
        self._fire("managerStart")
        self._fire("workerStart", self.serv.worker_id)

    def fireStopEvents(self) -> None:
        """
        C{managerStop} and C{shutdown}, after the connections are closed.
        """
        self._fire("managerStop")
        self._fire("shutdown")

    def _fire(self, event: str, *args: Any) -> None:
        callback = self.serv.getCallback(event)
        if callback is not None:
            invoke(callback, (self.serv,) + args, event)

    def _stopListening(self) -> defer.Deferred[Any]:
        listening, self._listening = self._listening, []
        self._bound = False
        return defer.gatherResults(
            [defer.maybeDeferred(port.stopListening) for port in listening],
            consumeErrors=True,
        )

    def _drainInflight(self, deadline: float) -> defer.Deferred[None]:
        """
        Wait for the receive callbacks still running, until C{deadline} at
        most.
        """
        inflight = list(self.serv._inflight)
        if not inflight:
            return defer.succeed(None)
        self.log.info(
            "waiting for {count} callbacks still running", count=len(inflight)
        )
        # Give up waiting after max_wait_time without cancelling the
        # callbacks' own Deferreds.
        waited: defer.Deferred[None] = defer.Deferred()
        reactor = self.serv.reactor

        def giveUp() -> None:
            self.log.warn("callbacks still running after max_wait_time")
            waited.callback(None)

        timeout = reactor.callLater(max(0.0, deadline - reactor.seconds()), giveUp)

        def finished(_: Any) -> None:
            if timeout.active():
                timeout.cancel()
                waited.callback(None)

        defer.DeferredList(inflight, consumeErrors=True).addCallback(finished)
        return waited

    def _closeConnections(self, deadline: float) -> defer.Deferred[None]:
        """
        Close every connection once it is idle: at once for most; a
        connection that has not sent its first packet yet, holds part of
        one, or has a callback running gets to finish that first.  What is
        still open at C{deadline} (C{max_wait_time} after the stop began) is
        reset.
        """
        table = self.serv._table
        for connection in table.values():
            connection.closeWhenIdle()
        if not len(table):
            return defer.succeed(None)
        reactor = self.serv.reactor
        waited: defer.Deferred[None] = defer.Deferred()
        maxWait = self.serv.setting["max_wait_time"]

        def check() -> None:
            if not len(table) or reactor.seconds() >= deadline:
                if len(table):
                    self.log.warn(
                        "{count} connections still busy after max_wait_time "
                        "{seconds}s; resetting them",
                        count=len(table),
                        seconds=maxWait,
                    )
                    for connection in table.values():
                        connection.closeConnection(reset=True)
                waited.callback(None)
            else:
                reactor.callLater(0.01, check)

        reactor.callLater(0, check)
        return waited

    def _finish(self) -> None:
        self.serv.timers.clearAll()
        self.fireStopEvents()


def _beginLogging(stream: Any) -> None:
    from twisted.logger import globalLogBeginner, textFileLogObserver

    if getattr(globalLogBeginner, "_temporaryObserver", True) is None:
        # logging was already begun by the caller (twistd, a test, an app)
        return
    globalLogBeginner.beginLoggingTo([textFileLogObserver(stream)], redirectStandardIO=False)


def daemonize(logFile: str | None) -> None:
    """
    Detach from the terminal (fork, setsid, fork); standard output and
    error go to C{logFile} (or nowhere), as Swoole's C{daemonize}.  The
    original process exits 0.
    """
    if os.fork() > 0:
        os._exit(0)
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    null = os.open(os.devnull, os.O_RDWR)
    out = os.open(logFile, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644) if logFile else null
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)


def _writePidFile(path: str, reactor: Any) -> None:
    with open(path, "w") as f:
        f.write(f"{os.getpid()}\n")

    def remove() -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass

    reactor.addSystemEventTrigger("after", "shutdown", remove)


def runServer(serv: Server) -> bool:
    """
    C{Server.start()}: bind, detach if C{daemonize}, write C{pid_file}, run
    the reactor until it stops, stop the service gracefully on the way out.
    Logs go to C{log_file} if set (when daemonized, so does standard
    output), else to standard output.

    @return: C{False} if a port could not be bound (logged).
    """
    settings = serv.setting
    logFile = settings["log_file"]
    if settings["daemonize"] or not logFile:
        _beginLogging(sys.stdout)
    else:
        _beginLogging(open(logFile, "a"))
    service = serv.asService()
    try:
        service.privilegedStartService()
    except Exception as e:
        ServerService.log.error("server not started: {error}", error=e)
        return False
    if settings["daemonize"]:
        daemonize(logFile)
    reactor = serv.reactor
    if settings["pid_file"]:
        _writePidFile(settings["pid_file"], reactor)
    reactor.callWhenRunning(service.startService)
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.run()
    return True
