# -*- test-case-name: tests.test_server -*-
"""
The stream protocol of a server's TCP ports: L{ServerConnection} (one
connection, combined with a framer from L{swooletw.wire.framing}) and
L{PortFactory} (one listening port: ids, callbacks, heartbeat).

Replies sent to a connection while its own data is being handled are
gathered and written once when the read event ends, through
L{swooletw.wire.directwrite}: one C{send()} for all the packets of a read.

Each connection's unsent output is bounded by C{buffer_output_size}: the
transport tells the connection (as a streaming producer) when its buffer
passes Twisted's high-water mark and when it has drained, and in between the
connection counts the bytes itself.  Replies gathered during a read count
too, so a connection never holds more than the limit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import Factory
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from swooletw.events import invoke, watch
from swooletw.wire import framing
from swooletw.wire.directwrite import queuedBytes, writerFor
from swooletw.wire.table import ConnectionIdsExhausted, ConnectionTable, ServerStats

if TYPE_CHECKING:  # pragma: no cover
    from swooletw.api.port import Port

__all__ = ["ServerConnection", "PortFactory"]


class _OutputWatch:
    """
    Registered with a connection's transport as a streaming producer, only
    to hear when the transport's buffer passes its high-water mark
    (C{pauseProducing}) and when it has drained (C{resumeProducing}).
    """

    __slots__ = ("connection",)

    def __init__(self, connection: ServerConnection) -> None:
        self.connection = connection

    def pauseProducing(self) -> None:
        # Twisted calls this on every write while its buffer is full.
        connection = self.connection
        if not connection._outputPaused:
            connection._outputPaused = True
            connection.unsent = max(connection.unsent, queuedBytes(connection.transport))

    def resumeProducing(self) -> None:
        self.connection.outputDrained()

    def stopProducing(self) -> None:
        pass


class ServerConnection:
    """
    The server side of one TCP connection; combined with a framer from
    L{swooletw.wire.framing}, which calls L{packetReceived} per whole packet.

    @ivar fd: the connection id.
    @ivar connectTime: when it connected (the reactor's seconds: since the
        epoch on a real reactor).
    @ivar lastTime: when data last arrived, for C{getClientInfo} and the
        heartbeat.
    """

    log = Logger()
    factory: PortFactory
    transport: Any
    fd = 0
    connectTime = 0.0
    lastTime = 0.0
    #: packets received on this connection (added to the server's
    #: C{request_count} when it closes)
    requests = 0
    #: while this connection's own read event runs, unless its transport
    #: is backed up: replies are gathered in C{pending} and written
    #: together when the read ends
    gathering = False
    #: whether the transport has paused us (its buffer passed its
    #: high-water mark) and not yet resumed us (it has drained)
    _outputPaused = False
    #: unsent bytes as counted: 0 unless paused; then what the transport
    #: held when it paused us, plus what was written since
    unsent = 0
    #: C{buffer_output_size}; -1 once closing, so that sendData's one
    #: compare also refuses sends to a closing connection
    outputLimit = -1
    _warnedFull = False
    #: C{package_recv_timeout}: 0, or the seconds a packet may take to
    #: arrive whole from its first byte
    _packetTimeout = 0.0
    #: when the packet partly received began (the read with its first
    #: byte), and how many packets had arrived before it
    _packetStart: float | None = None
    _packetsBefore = 0
    _packetTimer: Any = None
    _closing = False
    #: an orderly close is waiting for the peer to read what is queued
    _closingInOrder = False
    _closedByServer = False
    _closeWhenIdle = False
    _running = 0

    @property
    def closing(self) -> bool:
        """
        Whether the connection is closing or closed.
        """
        return self._closing

    def whenDrained(self) -> Deferred[None]:
        """
        A Deferred that fires once the transport's buffer is below its
        high-water mark (at once if it is), or the connection is lost: when
        a producer of much output (a file) may write again.
        """
        if not self._outputPaused:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._drainWaiters.append(waiter)
        return waiter

    def outputDrained(self) -> None:
        """
        The transport has written its buffer out (below its mark).
        """
        self._outputPaused = False
        self.unsent = 0
        waiters, self._drainWaiters = self._drainWaiters, []
        for waiter in waiters:
            waiter.callback(None)

    def connectionMade(self) -> None:
        factory = self.factory
        # What the per-packet path needs, one attribute away.
        self._serv = factory.serv
        self._onReceive = factory.onReceive
        self._reactorId = factory.reactorId
        self._now = factory.clock.seconds
        self._stats = factory.stats
        self.pending: list[bytes] = []
        self._drainWaiters: list[Deferred[None]] = []
        self._write = writerFor(self.transport)
        # Instance attributes (not class defaults) are the cheaper to read.
        self._outputPaused = False
        self.unsent = 0
        self.outputLimit = factory.outputLimit
        self._packetTimeout = factory.packetTimeout
        self.transport.registerProducer(_OutputWatch(self), True)
        factory.connectionOpened(self)

    def dataReceived(self, data: bytes) -> None:
        self.lastTime = self._now()
        self._stats.total_recv_bytes += len(data)
        self.gathering = not self._outputPaused
        try:
            super().dataReceived(data)  # type: ignore[misc]  # the framer
        finally:
            self.gathering = False
            if self.pending:
                self._flush()
            if self._closeWhenIdle:
                self.closeWhenIdle()
            if self._packetTimeout:
                self._timePacket()

    def _timePacket(self) -> None:
        # After a read: start the clock of a packet whose first byte came in
        # it, forget it once no partial packet is left.  One timer at most,
        # set again when it fires early rather than moved on every read.
        if self._closing or not self.bufferedBytes():
            self._packetStart = None
        elif self._packetStart is None or self.requests != self._packetsBefore:
            self._packetStart = self.lastTime
            self._packetsBefore = self.requests
            if self._packetTimer is None:
                self._packetTimer = self.factory.clock.callLater(self._packetTimeout, self._packetDue)

    def _packetDue(self) -> None:
        self._packetTimer = None
        if self._packetStart is None or self._closing:
            return
        due = self._packetStart + self._packetTimeout
        now = self._now()
        if now < due:
            self._packetTimer = self.factory.clock.callLater(due - now, self._packetDue)
            return
        self.factory.packetTimedOut(self)
        self.closeConnection(reset=True, byServer=False)

    def packetReceived(self, packet: bytes) -> None:
        """
        One whole packet: count it and run the C{receive} callback.
        """
        self.requests += 1
        callback = self._onReceive
        if callback is None:
            return
        try:
            result = callback(self._serv, self.fd, self._reactorId, packet)
        except Exception:
            self.factory.callbackFailed("receive", self.fd)
            return
        # send() returns a bool, which handlers often pass on: skip those.
        if result is not None and result.__class__ is not bool:
            self._running += 1
            self.factory.trackInflight(watch(result, "receive", fd=self.fd), self._callbackDone)

    def _callbackDone(self) -> None:
        self._running -= 1
        if self._closeWhenIdle:
            self.closeWhenIdle()

    def closeWhenIdle(self) -> None:
        """
        Close now if the connection is idle; otherwise once its first
        packet, its partial packet or its running callback is done (a
        graceful stop).
        """
        busy = self.requests == 0 or self._running or self.bufferedBytes()
        if busy and not self._closing:
            self._closeWhenIdle = True
        else:
            self.closeConnection(byServer=True)

    def framingError(self, reason: str) -> None:
        """
        The peer broke the framing: abort this connection only.
        """
        self.factory.framingError(self, reason)
        self.closeConnection(reset=True, byServer=False)

    def sendData(self, data: bytes) -> bool:
        """
        Send bytes to the peer (Swoole's C{send} for this connection).

        @return: C{False} if the connection is closing, or if C{data} would
            take its unsent bytes past C{buffer_output_size} (then nothing
            of C{data} is sent; what was accepted before still is).
        """
        unsent = self.unsent + len(data)
        if unsent > self.outputLimit:
            return self._refuse()
        if self.gathering:
            self.pending.append(data)
            self.unsent = unsent
            return True
        if self._outputPaused:
            self.unsent = unsent
        stats = self._stats
        stats.response_count += 1
        stats.total_send_bytes += len(data)
        self._write(data)
        return True

    def _refuse(self) -> bool:
        if not self._closing:
            self.factory.outputBufferFull(self)
        return False

    def closeConnection(self, reset: bool = False, byServer: bool = True) -> bool:
        """
        Close after the data already sent; with C{reset}, at once, dropping
        what is queued (a close for idleness or a limit does this: an
        orderly close would wait for a peer that may never read).  A reset
        also ends an orderly close still waiting.

        @return: C{False} if it was already closing (and not reset now).
        """
        if self._closing:
            if not (reset and self._closingInOrder):
                return False
            self._closingInOrder = False
            self.transport.abortConnection()
            return True
        self._closing = True
        self.outputLimit = -1
        self._closedByServer = byServer
        if reset:
            self.pending.clear()
            self.transport.abortConnection()
            return True
        if self.pending:
            self._flush()
        # A paused producer would keep an orderly close waiting.
        self.transport.unregisterProducer()
        self._closingInOrder = True
        self.transport.loseConnection()
        return True

    def connectionLost(self, reason: Any) -> None:
        self._closing = True
        self._closingInOrder = False
        self.outputLimit = -1
        if self._packetTimer is not None:
            self._packetTimer.cancel()
            self._packetTimer = None
        self.factory.connectionClosed(self, self._closedByServer)
        # Whoever waits to write more learns the connection is gone.
        self.outputDrained()

    def clientInfo(self) -> dict[str, Any]:
        """
        Swoole's C{getClientInfo()} array for this connection.
        """
        peer = self.transport.getPeer()
        host = self.transport.getHost()
        return {
            "server_port": getattr(host, "port", 0),
            "server_fd": self.factory.port.index,
            "socket_type": int(self.factory.port.type),
            "remote_port": getattr(peer, "port", 0),
            "remote_ip": getattr(peer, "host", ""),
            "reactor_id": self.factory.reactorId,
            "connect_time": int(self.connectTime),
            "last_time": int(self.lastTime),
            "last_recv_time": self.lastTime,
            "close_errno": 0,
        }

    def _flush(self) -> None:
        pending = self.pending
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        stats = self._stats
        stats.response_count += len(pending)
        stats.total_send_bytes += len(data)
        pending.clear()
        self._write(data)
        if not self._outputPaused:
            # Written, or queued in the transport below its high-water mark.
            self.unsent = 0


class RawConnection(ServerConnection, framing.RawReceiver):
    """A connection with no framing."""


class EOFCheckConnection(ServerConnection, framing.EOFCheckReceiver):
    """A connection with C{open_eof_check}."""


class EOFSplitConnection(ServerConnection, framing.EOFSplitReceiver):
    """A connection with C{open_eof_split}."""


class Int32PacketConnection(ServerConnection, framing.Int32PacketReceiver):
    """A connection with the standard C{N}/0/4 length header."""


class LengthPacketConnection(ServerConnection, framing.LengthPacketReceiver):
    """A connection with any other length header."""


class LengthFuncConnection(ServerConnection, framing.LengthFuncReceiver):
    """A connection framed by C{package_length_func}."""


_CONNECTION_CLASSES: dict[type, type] = {
    framing.RawReceiver: RawConnection,
    framing.EOFCheckReceiver: EOFCheckConnection,
    framing.EOFSplitReceiver: EOFSplitConnection,
    framing.Int32PacketReceiver: Int32PacketConnection,
    framing.LengthPacketReceiver: LengthPacketConnection,
    framing.LengthFuncReceiver: LengthFuncConnection,
}


class PortFactory(Factory):
    """
    The factory of one listening TCP port: builds connections with the
    port's framing, registers them in the server's table, runs the port's
    (or the server's) callbacks and the port's heartbeat.

    @ivar serv: the L{Server} passed to callbacks.
    @ivar port: the L{Port} this factory listens for.
    """

    log = Logger()
    noisy = False

    def __init__(self, serv: Any, port: Port, process: Any) -> None:
        self.serv = serv
        self.port = port
        self.clock = process.clock
        #: Swoole's reactor id: here, the worker serving the connection
        self.reactorId = max(process.workerId, 0)
        self.table: ConnectionTable = process.table
        self.stats: ServerStats = process.counters
        self.trackInflight = process.trackInflight
        self.closeHook = process.closeHook
        self.maxConn: int = serv.setting["max_conn"]
        self.settings = port.effectiveSettings()
        self.outputLimit: int = self.settings["buffer_output_size"]
        self.packetTimeout: float = self.settings["package_recv_timeout"]
        self.framing = framing.framingFor(self.settings)
        self.protocol = _CONNECTION_CLASSES[self.framing.framer]
        self.onConnect = port.getCallback("connect")
        self.onReceive = port.getCallback("receive")
        self.onClose = port.getCallback("close")
        self.connections: dict[int, ServerConnection] = {}
        self._heartbeat: LoopingCall | None = None

    def buildProtocol(self, addr: Any) -> Any:
        if len(self.table) >= self.maxConn:
            self.stats.max_conn_refused_count += 1
            self.log.warn(
                "refused a connection from {peer}: max_conn {limit} reached",
                peer=addr,
                limit=self.maxConn,
            )
            return None
        connection = self.protocol()
        connection.factory = self
        self.framing.apply(connection)
        return connection

    def connectionOpened(self, connection: ServerConnection) -> None:
        """
        A new connection: give it an id, register it, fire C{connect}.
        """
        try:
            fd = self.table.allocate()
        except ConnectionIdsExhausted as e:
            self.log.error("closing a new connection: {error}", error=e)
            connection.transport.abortConnection()
            return
        connection.fd = fd
        connection.connectTime = connection.lastTime = self.clock.seconds()
        if self.settings["open_tcp_nodelay"]:
            connection.transport.setTcpNoDelay(True)
        self.table.add(connection)
        self.connections[fd] = connection
        self.stats.accept_count += 1
        if self.onConnect is not None:
            invoke(self.onConnect, (self.serv, fd, self.reactorId), "connect", fd=fd)

    def connectionClosed(self, connection: ServerConnection, byServer: bool) -> None:
        """
        A connection ended: forget it and fire C{close} (with reactor id -1
        when the server closed it, as Swoole does).
        """
        fd = connection.fd
        if self.connections.pop(fd, None) is None:
            return
        self.table.remove(fd)
        self.stats.close_count += 1
        self.stats.request_count += connection.requests
        if self.onClose is not None:
            reactorId = -1 if byServer else self.reactorId
            invoke(self.onClose, (self.serv, fd, reactorId), "close", fd=fd)
        if self.closeHook is not None:
            self.closeHook()

    def framingError(self, connection: ServerConnection, reason: str) -> None:
        """
        Log and count a framing violation on one connection, with the
        traceback when C{package_length_func} raised.
        """
        self.stats.packet_error_count += 1
        failure = connection.framingErrorFailure
        if failure is not None:
            self.log.failure(
                "closing fd {fd} on port {port}: {reason}",
                failure,
                fd=connection.fd,
                port=self.port.port,
                reason=reason,
            )
            return
        self.log.warn(
            "closing fd {fd} on port {port}: {reason}",
            fd=connection.fd,
            port=self.port.port,
            reason=reason,
        )

    def packetTimedOut(self, connection: ServerConnection) -> None:
        """
        Log and count a connection whose packet did not arrive whole within
        C{package_recv_timeout}.
        """
        self.stats.packet_timeout_count += 1
        self.log.warn(
            "closing fd {fd} on port {port}: {reason}",
            fd=connection.fd,
            port=self.port.port,
            reason=f"packet not whole {self.packetTimeout}s after its first byte "
            f"({connection.bufferedBytes()} bytes received), over package_recv_timeout",
        )

    def outputBufferFull(self, connection: ServerConnection) -> None:
        """
        Count a send refused for C{buffer_output_size}; warn once per
        connection.
        """
        self.stats.output_buffer_overflow_count += 1
        if not connection._warnedFull:
            connection._warnedFull = True
            self.log.warn(
                "fd {fd} on port {port}: send() refused, output buffer full "
                "(buffer_output_size {limit} bytes); later refusals on this "
                "connection are only counted (output_buffer_overflow_count)",
                fd=connection.fd,
                port=self.port.port,
                limit=self.outputLimit,
            )

    def callbackFailed(self, event: str, fd: int) -> None:
        """
        Log the exception being handled, raised by an event callback.
        """
        self.log.failure("{event} callback failed (fd {fd})", event=event, fd=fd)

    def startHeartbeat(self, interval: float, idle: float) -> None:
        """
        Sweep every C{interval} seconds, closing connections with no data
        for C{idle} seconds.
        """
        self._idle = idle
        self._heartbeat = LoopingCall(self.sweep)
        self._heartbeat.clock = self.clock
        self._heartbeat.start(interval, now=False)

    def stopHeartbeat(self) -> None:
        """
        Stop the sweep.
        """
        if self._heartbeat is not None and self._heartbeat.running:
            self._heartbeat.stop()
        self._heartbeat = None

    def sweep(self) -> None:
        """
        Abort every connection idle for longer than the heartbeat allows.
        """
        deadline = self.clock.seconds() - self._idle
        for connection in list(self.connections.values()):
            if connection.lastTime <= deadline and not connection._closing:
                self.stats.heartbeat_close_count += 1
                self.log.info(
                    "closing fd {fd}: no data for {idle} seconds (heartbeat)",
                    fd=connection.fd,
                    idle=self._idle,
                )
                connection.closeConnection(reset=True, byServer=False)
