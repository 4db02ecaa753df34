# -*- test-case-name: tests.test_router -*-
"""
Any worker reaching any connection (Swoole's PROCESS-mode behaviour).

A connection's own traffic never leaves the worker that accepted it.  Only
operations on another worker's connection go through the master:

 - Every worker keeps a copy of the server's connection directory (id ->
   owning worker and the connection's client info), so C{exists},
   C{connections}, C{getClientList} and C{getClientInfo} answer at once.
   Workers report their opens and closes to the master, which passes them
   on to the others.
 - C{send} and C{close} on another worker's connection are queued and
   flushed once per reactor turn as one message to the master, which
   forwards one message to each owner: a broadcast to every connection costs
   one message per worker, not one per connection.
 - Counters for C{stats()} ride on the workers' pings; the master hands the
   whole table back to every worker, so C{stats()} in any process adds up
   all workers (as of their last ping, at most C{worker_ping_interval} old).

Connection ids come from blocks the master leases to each worker process,
so they are unique for the server's whole life.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable, Iterator

from twisted.logger import Logger

__all__ = ["BLOCK_SIZE", "blockRange", "Directory", "WorkerRouter", "MasterRouter"]

#: Connection ids per leased block; a worker asks for the next block when
#: half of its ids are used.
BLOCK_SIZE = 1 << 16

#: Client-info keys copied into the directory (the rest are local-only).
INFO_KEYS = ("server_port", "server_fd", "socket_type", "remote_port", "remote_ip", "connect_time")


def blockRange(block: int) -> tuple[int, int]:
    """
    The first and last connection id of a block.
    """
    return block * BLOCK_SIZE + 1, (block + 1) * BLOCK_SIZE


class Directory:
    """
    Connection id -> (owning worker id, client info), for the connections
    of other processes.
    """

    def __init__(self) -> None:
        self.entries: dict[int, tuple[int, dict[str, Any]]] = {}

    def add(self, fd: int, workerId: int, info: dict[str, Any]) -> None:
        self.entries[fd] = (workerId, info)

    def remove(self, fd: int) -> None:
        self.entries.pop(fd, None)

    def owner(self, fd: int) -> int | None:
        entry = self.entries.get(fd)
        return None if entry is None else entry[0]

    def info(self, fd: int) -> dict[str, Any] | None:
        entry = self.entries.get(fd)
        if entry is None:
            return None
        info = dict(entry[1])
        info["last_time"] = info["connect_time"]
        info["reactor_id"] = entry[0]
        info["close_errno"] = 0
        return info

    def ownedBy(self, workerId: int) -> list[int]:
        return [fd for fd, (owner, _) in self.entries.items() if owner == workerId]

    def __contains__(self, fd: object) -> bool:
        return fd in self.entries

    def __iter__(self) -> Iterator[int]:
        return iter(list(self.entries))

    def __len__(self) -> int:
        return len(self.entries)


def sumStats(perWorker: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """
    Add up the numeric counters of several workers.
    """
    total: dict[str, Any] = {}
    for stats in perWorker.values():
        for key, value in stats.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "start_time":
                total[key] = total.get(key, 0) + value
    return total


class _Batcher:
    """
    Collects outgoing operations and flushes them once per reactor turn.
    """

    def __init__(self, reactor: Any, flush: Callable[[], None]) -> None:
        self._reactor = reactor
        self._flush = flush
        self._scheduled: Any = None

    def schedule(self) -> None:
        if self._scheduled is None:
            self._scheduled = self._reactor.callLater(0, self._run)

    def _run(self) -> None:
        self._scheduled = None
        self._flush()


class WorkerRouter:
    """
    The worker's side: listens to its connection table, keeps the
    directory of the other workers' connections, relays operations on them.
    """

    log = Logger()

    def __init__(self, serv: Any, workerId: int, channel: Any, directory: Directory) -> None:
        self.serv = serv
        self.workerId = workerId
        self.channel = channel
        self.directory = directory
        self.stats: dict[int, dict[str, Any]] = {}
        #: the task worker processes' state, as the master sees it
        self.taskStats: dict[str, Any] = {}
        self._opened: list[tuple[int, dict[str, Any]]] = []
        self._closed: list[int] = []
        self._relay: list[tuple[int, bytes]] = []
        self._closes: list[tuple[int, bool]] = []
        self._batcher = _Batcher(serv.reactor, self.flush)
        self._askedForBlock = False

    def handlers(self) -> dict[str, Callable[..., Any]]:
        """
        The channel messages this side handles.
        """
        return {"batch": self.received, "block": self.gotBlock, "allstats": self.gotStats}

    # table listener
    def opened(self, connection: Any) -> None:
        info = connection.clientInfo()
        self._opened.append((connection.fd, {key: info[key] for key in INFO_KEYS}))
        self._batcher.schedule()
        remaining = self.serv._table.remainingIds()
        if remaining is not None and remaining < BLOCK_SIZE // 2 and not self._askedForBlock:
            self._askedForBlock = True
            self.channel.send("needblock")

    def closed(self, fd: int) -> None:
        self._closed.append(fd)
        self._batcher.schedule()

    def gotBlock(self, block: int) -> None:
        self.serv._table.addBlock(*blockRange(block))
        self._askedForBlock = False

    def gotStats(self, perWorker: dict[int, dict[str, Any]], taskStats: dict[str, Any]) -> None:
        self.stats = perWorker
        self.taskStats = taskStats

    # operations on other workers' connections
    def send(self, fd: int, data: bytes) -> bool:
        if fd not in self.directory:
            self.log.debug("send to unknown or closed fd {fd} dropped", fd=fd)
            return False
        self._relay.append((fd, data))
        self._batcher.schedule()
        return True

    def close(self, fd: int, reset: bool) -> bool:
        if fd not in self.directory:
            return False
        self._closes.append((fd, reset))
        self._batcher.schedule()
        return True

    def flush(self) -> None:
        """
        Send what was queued this turn as one message.
        """
        if not (self._opened or self._closed or self._relay or self._closes):
            return
        batch = (self._opened, self._closed, self._relay, self._closes)
        self._opened, self._closed, self._relay, self._closes = [], [], [], []
        self.channel.send("batch", *batch)

    def received(self, opened: list, closed: list, deliver: list, closes: list) -> None:
        """
        The master's batch: directory changes, and operations on this
        worker's own connections asked for by others.
        """
        for fd, owner, info in opened:
            self.directory.add(fd, owner, info)
        for fd in closed:
            self.directory.remove(fd)
        table = self.serv._table
        for fd, data in deliver:
            connection = table.get(fd)
            if connection is None:
                self.log.debug("relayed send to closed fd {fd} dropped", fd=fd)
            else:
                connection.sendData(data)
        for fd, reset in closes:
            connection = table.get(fd)
            if connection is not None:
                connection.closeConnection(reset=reset)


class MasterRouter:
    """
    The master's side: the whole directory, the block leases, and the
    forwarding of batches between workers.
    """

    log = Logger()

    def __init__(self, reactor: Any) -> None:
        self.directory = Directory()
        self.stats: dict[int, dict[str, Any]] = {}
        self._nextBlock = 0
        self._channels: dict[int, Any] = {}
        self._out: dict[int, tuple[list, list, list, list]] = defaultdict(lambda: ([], [], [], []))
        self._batcher = _Batcher(reactor, self.flush)

    def leaseBlock(self) -> int:
        """
        A block of connection ids no process has had.
        """
        block = self._nextBlock
        self._nextBlock += 1
        return block

    def attach(self, workerId: int, channel: Any) -> None:
        """
        A new worker process for C{workerId} (its directory came with the
        fork; changes from now on reach it through C{channel}).
        """
        self._channels[workerId] = channel

    def detach(self, workerId: int) -> None:
        """
        The worker process died: its connections are gone.
        """
        self._channels.pop(workerId, None)
        self.stats.pop(workerId, None)
        gone = self.directory.ownedBy(workerId)
        for fd in gone:
            self.directory.remove(fd)
        for other in self._channels:
            self._out[other][1].extend(gone)
        if gone:
            self._batcher.schedule()

    def handlersFor(self, workerId: int) -> dict[str, Callable[..., Any]]:
        """
        The channel messages handled for one worker.
        """
        return {
            "batch": lambda *batch: self.received(workerId, *batch),
            "needblock": lambda: self._channels[workerId].send("block", self.leaseBlock()),
        }

    def received(self, source: int, opened: list, closed: list, relay: list, closes: list) -> None:
        """
        A worker's batch: update the directory, tell the others, forward
        operations to the owners.
        """
        for fd, info in opened:
            self.directory.add(fd, source, info)
        for fd in closed:
            self.directory.remove(fd)
        for other in self._channels:
            if other != source:
                out = self._out[other]
                out[0].extend((fd, source, info) for fd, info in opened)
                out[1].extend(closed)
        for fd, data in relay:
            self.send(fd, data)
        for fd, reset in closes:
            self.close(fd, reset)
        self._batcher.schedule()

    def send(self, fd: int, data: bytes) -> bool:
        """
        Queue a send for the worker that owns C{fd}.
        """
        owner = self.directory.owner(fd)
        if owner is None or owner not in self._channels:
            self.log.debug("send to unknown or closed fd {fd} dropped", fd=fd)
            return False
        self._out[owner][2].append((fd, data))
        self._batcher.schedule()
        return True

    def close(self, fd: int, reset: bool) -> bool:
        """
        Queue a close for the worker that owns C{fd}.
        """
        owner = self.directory.owner(fd)
        if owner is None or owner not in self._channels:
            return False
        self._out[owner][3].append((fd, reset))
        self._batcher.schedule()
        return True

    def flush(self) -> None:
        """
        One message per worker with everything queued for it.
        """
        out, self._out = self._out, defaultdict(lambda: ([], [], [], []))
        for workerId, batch in out.items():
            channel = self._channels.get(workerId)
            if channel is not None and any(batch):
                channel.send("batch", *batch)

    def gotStats(self, workerId: int, stats: dict[str, Any]) -> None:
        """
        A worker's counters, from its ping.
        """
        self.stats[workerId] = stats

    def shareStats(self, taskStats: dict[str, Any] | None = None) -> None:
        """
        Give every worker the counters of all (and the task worker
        processes' state, if there are any).
        """
        for channel in self._channels.values():
            channel.send("allstats", self.stats, taskStats or {})
