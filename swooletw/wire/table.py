# -*- test-case-name: tests.test_server -*-
"""
Swoole's connection ids ("fd"s) and the counters of one process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterator

from twisted.internet.defer import Deferred, succeed

if TYPE_CHECKING:  # pragma: no cover
    from swooletw.wire.stream import ServerConnection

__all__ = ["ConnectionIdsExhausted", "ConnectionTable", "ServerStats"]


class ServerStats:
    """
    Swoole's C{stats()} counters for one process.
    """

    __slots__ = (
        "start_time",
        "accept_count",
        "close_count",
        "request_count",
        "response_count",
        "total_recv_bytes",
        "total_send_bytes",
        "packet_error_count",
        "max_conn_refused_count",
        "heartbeat_close_count",
        "output_buffer_overflow_count",
        "packet_timeout_count",
        "closed_send_count",
        "http_timeout_count",
    )

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)

    def asDict(self) -> dict[str, int]:
        """
        The counters by name.
        """
        return {name: getattr(self, name) for name in self.__slots__}


class ConnectionIdsExhausted(RuntimeError):
    """
    A worker used up its blocks of connection ids before the master sent
    another (a burst of more than half a block of connections in one round
    trip to the master).
    """


class ConnectionTable:
    """
    Connection ids and the connections they name.  Ids grow by one and are
    never reused while the server runs, as Swoole's session ids.  A
    single-process server numbers from 1 without end; a worker takes its ids
    from blocks the master leases to it, so ids are unique across workers.

    @ivar listener: told of every connection opened and closed (the worker's
        router), or L{None}.
    """

    listener: Any = None

    def __init__(self, first: int = 1, last: int | None = None) -> None:
        self._connections: dict[int, ServerConnection] = {}
        self._lastFd = first - 1
        self._blockLast = last
        self._spareBlocks: list[tuple[int, int]] = []
        self._whenEmpty: list[Deferred[None]] = []
        #: the dict lookup used by C{send}, bound once
        self.get: Callable[[int], ServerConnection | None] = self._connections.get

    def addBlock(self, first: int, last: int) -> None:
        """
        Another block of ids, used when the current one runs out.
        """
        self._spareBlocks.append((first, last))

    def remainingIds(self) -> int | None:
        """
        Ids left before the blocks run out; L{None} for no limit.
        """
        if self._blockLast is None:
            return None
        spare = sum(last - first + 1 for first, last in self._spareBlocks)
        return self._blockLast - self._lastFd + spare

    def allocate(self) -> int:
        """
        A new connection id.

        @raise ConnectionIdsExhausted: when the leased blocks are used up.
        """
        if self._blockLast is not None and self._lastFd >= self._blockLast:
            if not self._spareBlocks:
                raise ConnectionIdsExhausted("no connection ids left in this worker's blocks")
            first, self._blockLast = self._spareBlocks.pop(0)
            self._lastFd = first - 1
        self._lastFd += 1
        return self._lastFd

    @property
    def lastFd(self) -> int:
        """
        The last id handed out (Swoole's C{session_round}).
        """
        return self._lastFd

    def add(self, connection: ServerConnection) -> None:
        """
        Register a connection under its C{fd}.
        """
        self._connections[connection.fd] = connection
        if self.listener is not None:
            self.listener.opened(connection)

    def remove(self, fd: int) -> None:
        """
        Forget a connection.
        """
        if self._connections.pop(fd, None) is None:
            return
        if self.listener is not None:
            self.listener.closed(fd)
        if not self._connections and self._whenEmpty:
            waiting, self._whenEmpty = self._whenEmpty, []
            for waiter in waiting:
                waiter.callback(None)

    def whenEmpty(self) -> Deferred[None]:
        """
        A Deferred that fires once no connection is left (at once if none
        is).
        """
        if not self._connections:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._whenEmpty.append(waiter)
        return waiter

    def page(self, startFd: int, size: int) -> list[int]:
        """
        Up to C{size} ids greater than C{startFd}, in order.
        """
        result = []
        for fd in self._connections:
            if fd > startFd:
                result.append(fd)
                if len(result) == size:
                    break
        return result

    def values(self) -> list[ServerConnection]:
        """
        A snapshot of the connections.
        """
        return list(self._connections.values())

    def __iter__(self) -> Iterator[int]:
        return iter(list(self._connections))

    def __len__(self) -> int:
        return len(self._connections)

    def __contains__(self, fd: object) -> bool:
        return fd in self._connections
