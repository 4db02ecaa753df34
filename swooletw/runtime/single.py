# -*- test-case-name: tests.test_service -*-
"""
Serving a server's ports in one process, as a Twisted service.

L{ServingService} binds every port in C{privilegedStartService} (so
C{twistd} binds before dropping privileges, and a port that cannot be bound
stops start-up with the reason), attaches the process's runtime to the
server, starts the task threads and heartbeats and fires the start events.
Stopping fires C{workerStop}, stops listening, lets running callbacks and
busy connections finish and closes the rest, all within C{max_wait_time},
then clears the server's timers and fires the stop events.

The single process (BASE mode) is this service as it is: master, manager
and worker 0 at once.  A worker process is a subclass
(L{swooletw.runtime.worker}) that adopts the master's sockets.
"""

from __future__ import annotations

from typing import Any, Iterator

from twisted.application.service import Service
from twisted.internet import defer
from twisted.logger import Logger

from swooletw import settings as _settings
from swooletw.constants import UDP_TYPES
from swooletw.deadline import waitAtMost
from swooletw.events import invoke
from swooletw.runtime.endpoints import bindPorts, endpointFor, listenNow, stopListening
from swooletw.runtime.local import ProcessRuntime
from swooletw.runtime.signals import stopSoon
from swooletw.wire.udp import UDPPortProtocol

__all__ = ["ServingService", "singleProcessService"]


class ServingService(Service):
    """
    Serves a server's ports in this process; see the module docstring.

    @ivar runtime: this process's L{ProcessRuntime}.
    """

    log = Logger()
    #: the task workers' thread pool; L{None} for a dedicated ThreadPool
    #: (tests put a synchronous stand-in here)
    taskThreadPool: Any = None

    def __init__(self, serv: Any, runtime: ProcessRuntime) -> None:
        self.serv = serv
        self.runtime = runtime
        self.setName("swooletw")
        self._factories: list[Any] = []
        self._listening: list[Any] = []
        self._bound = False

    # ---------------------------------------------------------- listening

    def privilegedStartService(self) -> None:
        """
        Bind every port now; raise L{ListenError} if one cannot be bound.
        """
        super().privilegedStartService()
        self._bindAll()

    def _bindAll(self) -> None:
        if not self._bound:
            self._listening = bindPorts(self.serv.ports, self.bindPort)
            self._bound = True

    def bindPort(self, port: Any, settings: dict[str, Any]) -> Any:
        """
        Listen on one port of the server.
        """
        clock = self.runtime.clock
        if port.type in UDP_TYPES:
            return clock.listenUDP(port.port, self.udpProtocol(port), interface=port.host)
        return listenNow(endpointFor(clock, port, settings), self.tcpFactory(port))

    def udpProtocol(self, port: Any) -> UDPPortProtocol:
        """
        The protocol of a UDP port, registered with the runtime.
        """
        protocol = UDPPortProtocol(self.serv, port, self.runtime.counters)
        self.runtime.udp.append((port, protocol))
        return protocol

    def tcpFactory(self, port: Any) -> Any:
        """
        The server kind's factory for a TCP port.
        """
        factory = self.serv.protocolFactory(port, self.runtime)
        self._factories.append(factory)
        return factory

    def factoryFor(self, port: Any) -> Any:
        """
        The factory listening for a TCP port.

        @raise LookupError: if the port is not a listening TCP port.
        """
        for factory in self._factories:
            if factory.port is port:
                return factory
        raise LookupError(f"{port!r} is not a listening TCP port")

    def udpProtocols(self) -> Iterator[tuple[Any, UDPPortProtocol]]:
        """
        The listening UDP ports and their protocols.
        """
        return iter(self.runtime.udp)

    # ---------------------------------------------------------- lifecycle

    def startService(self) -> None:
        """
        Bind (if not done yet), attach the runtime, start task workers and
        heartbeats, fire the start events.
        """
        self._bindAll()
        super().startService()
        runtime = self.runtime
        runtime.counters.start_time = int(runtime.clock.seconds())
        self.serv.attach(runtime)
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
        self.fire("workerStop", self.runtime.workerId)
        stopped = stopListening(self._listening)
        self._bound = False
        for factory in self._factories:
            factory.stopHeartbeat()
        # One max_wait_time for the whole stop: running callbacks, then busy
        # connections, then tasks.
        clock = self.runtime.clock
        deadline = clock.seconds() + self.serv.setting["max_wait_time"]
        left = lambda: deadline - clock.seconds()  # noqa: E731
        closed = self._drainInflight(left())
        closed.addCallback(lambda _: self._closeConnections(left()))
        closed.addCallback(lambda _: self._stopTasks(left()))
        done = defer.gatherResults([stopped, closed], consumeErrors=True)
        done.addErrback(lambda f: self.log.failure("error while stopping", f))
        done.addBoth(lambda _: self._finish())
        return done

    def startTasks(self) -> None:
        """
        Start this process's task threads, if C{task_worker_num} asks.
        """
        if not self.serv.setting["task_worker_num"] or self.runtime.tasks is not None:
            return
        store = self.openTaskStore()
        if store is not None:
            store.release()  # one process is the whole server: all are ours
        self.startThreadTasks(store)

    def startThreadTasks(self, store: Any) -> None:
        """
        Start the task threads of this process, journalling to C{store}
        (or L{None}), and run again what dead processes left there.
        """
        from swooletw.tasks.pool import ThreadTaskPool

        runtime = self.runtime
        runtime.tasks = ThreadTaskPool(self.serv, runtime.clock, self.taskThreadPool, store)
        runtime.tasks.start()
        runtime.tasks.recover()

    def openTaskStore(self) -> Any:
        """
        This process's connection to the task journal, if C{task_store} is
        set.
        """
        if not self.serv.setting["task_store"]:
            return None
        from swooletw.tasks.journal import TaskStore, parseStore

        return TaskStore(parseStore(self.serv.setting["task_store"]))

    def _stopTasks(self, seconds: float) -> defer.Deferred[None]:
        tasks = self.runtime.tasks
        if tasks is None:
            return defer.succeed(None)

        def stop(_: Any) -> None:
            tasks.stop()
            self.runtime.tasks = None

        return tasks.drained(seconds).addCallback(stop)

    def fireStartEvents(self) -> None:
        """
        One process is master, manager and worker 0: C{start},
        C{managerStart}, C{workerStart(serv, 0)}.
        """
        self.fire("start")
        self.fire("managerStart")
        self.fire("workerStart", self.runtime.workerId)

    def fireStopEvents(self) -> None:
        """
        C{managerStop} and C{shutdown}, after the connections are closed.
        """
        self.fire("managerStop")
        self.fire("shutdown")

    def fire(self, event: str, *args: Any) -> None:
        """
        Run the server's callback for C{event}, if any, with C{(serv,
        *args)}; its failure is logged.
        """
        callback = self.serv.getCallback(event)
        if callback is not None:
            invoke(callback, (self.serv,) + args, event)

    def _drainInflight(self, seconds: float) -> defer.Deferred[None]:
        """
        Wait for the receive callbacks still running, C{seconds} at most.
        """
        inflight = list(self.runtime.inflight)
        if not inflight:
            return defer.succeed(None)
        self.log.info("waiting for {count} callbacks still running", count=len(inflight))

        def waited(done: bool) -> None:
            if not done:
                self.log.warn("callbacks still running after max_wait_time")

        allDone = defer.DeferredList(inflight, consumeErrors=True)
        return waitAtMost(allDone, seconds, self.runtime.clock).addCallback(waited)

    def _closeConnections(self, seconds: float) -> defer.Deferred[None]:
        """
        Close every connection once it is idle: at once for most; a
        connection that has not sent its first packet yet, holds part of
        one, or has a callback running gets to finish that first.  What is
        still open after C{seconds} is reset.
        """
        table = self.runtime.table
        for connection in table.values():
            connection.closeWhenIdle()

        def waited(done: bool) -> None:
            if not done:
                self.log.warn(
                    "{count} connections still busy after max_wait_time {seconds}s; "
                    "resetting them",
                    count=len(table),
                    seconds=self.serv.setting["max_wait_time"],
                )
                for connection in table.values():
                    connection.closeConnection(reset=True)

        return waitAtMost(table.whenEmpty(), seconds, self.runtime.clock).addCallback(waited)

    def _finish(self) -> None:
        self.serv.timers.clearAll()
        self.fireStopEvents()


def singleProcessService(serv: Any) -> ServingService:
    """
    The whole server in this one process (BASE mode with one worker).
    """
    clock = serv.reactor
    return ServingService(serv, ProcessRuntime(serv, clock, 0, shutdown=lambda: stopSoon(clock)))
