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
 - Operations on another worker's connection (C{send}, C{close}; later
   server kinds add theirs, such as C{push}) are op codes looked up in an
   explicit table (L{OPERATIONS}, extended with L{registerOperation}).
   They are queued in order and flushed once per reactor turn as one
   message to the master, which forwards one message to each owner: a
   broadcast to every connection costs one message per worker, not one per
   connection.
 - Counters for C{stats()} ride on the workers' pings to the master.  A
   worker whose code calls C{stats()} asks the master for the others'
   counters (at most once per C{worker_ping_interval}) and adds them up with
   its own: nothing is sent to a worker that never asks.

Connection ids come from blocks the master leases to each worker process,
so they are unique for the server's whole life.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable, Iterator

from twisted.logger import Logger

__all__ = [
    "BLOCK_SIZE",
    "OP_SEND",
    "OP_CLOSE",
    "OPERATIONS",
    "registerOperation",
    "blockRange",
    "Directory",
    "WorkerRouter",
    "MasterRouter",
    "aggregateStats",
]

#: Connection ids per leased block; a worker asks for the next block when
#: half of its ids are used.
BLOCK_SIZE = 1 << 16

#: Client-info keys copied into the directory (the rest are local-only).
INFO_KEYS = ("server_port", "server_fd", "socket_type", "remote_port", "remote_ip", "connect_time")


#: Op codes of the operations relayed to another process's connection.
OP_SEND = 1
OP_CLOSE = 2


def _applySend(connection: Any, data: bytes) -> bool:
    return connection.sendData(data)


def _applyClose(connection: Any, reset: bool) -> bool:
    return connection.closeConnection(reset=reset)


#: op code -> C{apply(connection, argument)}, run in the process that owns
#: the connection.  Codes come from the channel: they are only ever looked
#: up here.
OPERATIONS: dict[int, Callable[[Any, Any], Any]] = {OP_SEND: _applySend, OP_CLOSE: _applyClose}


def registerOperation(code: int, apply: Callable[[Any, Any], Any]) -> None:
    """
    Add an operation a process may ask of another's connection (a server
    kind's C{push}, C{disconnect}).

    @raise ValueError: if C{code} is taken by another operation.
    """
    if OPERATIONS.get(code, apply) is not apply:
        raise ValueError(f"op code {code} is already {OPERATIONS[code]!r}")
    OPERATIONS[code] = apply


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


def aggregateStats(
    workerId: int,
    local: dict[str, Any],
    perWorker: dict[int, dict[str, Any]],
    taskStats: dict[str, Any],
    connections: int,
) -> dict[str, Any]:
    """
    Swoole's C{stats()} of a multi-process server, seen from process
    C{workerId} (-1: the master), whose own counters are C{local}.
    """
    everyone = dict(perWorker)
    if workerId >= 0:
        everyone[workerId] = local
    result = sumStats(everyone)
    result.update(
        start_time=local["start_time"],
        connection_num=connections,
        worker_num=local["worker_num"],
        task_worker_num=local["task_worker_num"],
        session_round=local["session_round"],
        workers=everyone,
    )
    result.update(taskStats)
    if local["task_worker_num"]:
        # Until the master's first answer: what a quiet server would say.
        result.setdefault("tasking_num", 0)
        result.setdefault("task_queue_num", 0)
        result.setdefault("task_idle_worker_num", local["task_worker_num"])
    return result


#: Relayed bytes per channel message at most (the channel's own limit is
#: larger).
BATCH_BYTES = 16 << 20
#: The largest send relayed to another process's connection.
MAX_RELAYED_SEND = 48 << 20


Batch = tuple[list, list, list]


def _opSize(op: tuple[int, int, Any]) -> int:
    argument = op[2]
    return len(argument) if isinstance(argument, bytes) else 0


def splitBatch(batch: Batch) -> list[Batch]:
    """
    A batch C{(opened, closed, ops)} as one or more in the same order, each
    carrying at most L{BATCH_BYTES} of relayed data (a single larger
    operation travels alone).
    """
    opened, closed, ops = batch
    if sum(map(_opSize, ops)) <= BATCH_BYTES:
        return [batch]
    parts: list[Batch] = [(opened, closed, [])]
    size = 0
    for op in ops:
        opSize = _opSize(op)
        if size and size + opSize > BATCH_BYTES:
            parts.append(([], [], []))
            size = 0
        parts[-1][2].append(op)
        size += opSize
    return parts


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

    def __init__(
        self,
        clock: Any,
        workerId: int,
        channel: Any,
        directory: Directory,
        table: Any,
        counters: Any,
        pingInterval: float = 1.0,
    ) -> None:
        self.clock = clock
        self.table = table
        self.counters = counters
        self.pingInterval = pingInterval
        self.workerId = workerId
        self.channel = channel
        self.directory = directory
        self.stats: dict[int, dict[str, Any]] = {}
        #: the task worker processes' state, as the master sees it
        self.taskStats: dict[str, Any] = {}
        self._opened: list[tuple[int, dict[str, Any]]] = []
        self._closed: list[int] = []
        self._ops: list[tuple[int, int, Any]] = []
        self._batcher = _Batcher(clock, self.flush)
        self._askedForBlock = False
        self._statsAskedAt: float | None = None

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
        remaining = self.table.remainingIds()
        if remaining is not None and remaining < BLOCK_SIZE // 2 and not self._askedForBlock:
            self._askedForBlock = True
            self.channel.send("needblock")

    def closed(self, fd: int) -> None:
        self._closed.append(fd)
        self._batcher.schedule()

    def gotBlock(self, block: int) -> None:
        self.table.addBlock(*blockRange(block))
        self._askedForBlock = False

    def gotStats(self, perWorker: dict[int, dict[str, Any]], taskStats: dict[str, Any]) -> None:
        self.stats = perWorker
        self.taskStats = taskStats

    def serverStats(self, workerId: int, local: dict[str, Any]) -> dict[str, Any]:
        """
        C{stats()} of the whole server: C{local} (this process's) added to
        the others' as the master last sent them; asks for fresh ones when
        those are older than C{worker_ping_interval}.
        """
        now = self.clock.seconds()
        if self._statsAskedAt is None or now - self._statsAskedAt >= self.pingInterval:
            self._statsAskedAt = now
            self.channel.send("wantstats")
        return aggregateStats(workerId, local, self.stats, self.taskStats, len(self.directory) + len(self.table))

    # operations on other workers' connections
    def relay(self, code: int, fd: int, argument: Any) -> bool:
        """
        Queue operation C{code} on another process's connection C{fd}.

        @return: C{False} if no process has C{fd}.
        """
        if fd not in self.directory:
            return False
        self._ops.append((code, fd, argument))
        self._batcher.schedule()
        return True

    def send(self, fd: int, data: bytes) -> bool:
        return len(data) <= MAX_RELAYED_SEND and self.relay(OP_SEND, fd, data)

    def close(self, fd: int, reset: bool) -> bool:
        return self.relay(OP_CLOSE, fd, reset)

    def flush(self) -> None:
        """
        Send what was queued this turn as one message.
        """
        if not (self._opened or self._closed or self._ops):
            return
        batch = (self._opened, self._closed, self._ops)
        self._opened, self._closed, self._ops = [], [], []
        for part in splitBatch(batch):
            self.channel.send("batch", *part)

    def received(self, opened: list, closed: list, ops: list) -> None:
        """
        The master's batch: directory changes, and operations on this
        worker's own connections asked for by others, in order.
        """
        for fd, owner, info in opened:
            self.directory.add(fd, owner, info)
        for fd in closed:
            self.directory.remove(fd)
        table = self.table
        for code, fd, argument in ops:
            apply = OPERATIONS.get(code)
            connection = table.get(fd)
            if apply is None:
                self.log.error("unknown relayed operation {code!r} dropped", code=code)
            elif connection is None:
                if code == OP_SEND:
                    self.counters.closed_send_count += 1
            else:
                apply(connection, argument)


class MasterRouter:
    """
    The master's side: the whole directory, the block leases, and the
    forwarding of batches between workers.
    """

    log = Logger()

    def __init__(self, reactor: Any, taskStats: Callable[[], dict[str, Any]] | None = None) -> None:
        self.directory = Directory()
        self.stats: dict[int, dict[str, Any]] = {}
        self.taskStats = taskStats or dict
        self._nextBlock = 0
        self._channels: dict[int, Any] = {}
        self._out: dict[int, Batch] = defaultdict(lambda: ([], [], []))
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
            "wantstats": lambda: self._channels[workerId].send("allstats", self.stats, self.taskStats()),
        }

    def received(self, source: int, opened: list, closed: list, ops: list) -> None:
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
        for code, fd, argument in ops:
            self.relay(code, fd, argument)
        self._batcher.schedule()

    def relay(self, code: int, fd: int, argument: Any) -> bool:
        """
        Queue operation C{code} for the worker that owns C{fd}.

        @return: C{False} if no worker has C{fd}.
        """
        owner = self.directory.owner(fd)
        if owner is None or owner not in self._channels:
            return False
        self._out[owner][2].append((code, fd, argument))
        self._batcher.schedule()
        return True

    def send(self, fd: int, data: bytes) -> bool:
        """
        Queue a send for the worker that owns C{fd} (from the master's own
        code: its C{start} callback, its timers).
        """
        return self.relay(OP_SEND, fd, data)

    def close(self, fd: int, reset: bool) -> bool:
        """
        Queue a close for the worker that owns C{fd}.
        """
        return self.relay(OP_CLOSE, fd, reset)

    def flush(self) -> None:
        """
        One message per worker with everything queued for it.
        """
        out, self._out = self._out, defaultdict(lambda: ([], [], []))
        for workerId, batch in out.items():
            channel = self._channels.get(workerId)
            if channel is not None and any(batch):
                for part in splitBatch(batch):
                    channel.send("batch", *part)

    def gotStats(self, workerId: int, stats: dict[str, Any]) -> None:
        """
        A worker's counters, from its ping.
        """
        self.stats[workerId] = stats

    def serverStats(self, workerId: int, local: dict[str, Any]) -> dict[str, Any]:
        """
        C{stats()} in the master: every worker's counters (as of its last
        ping) added up, and the task worker processes' state.
        """
        return aggregateStats(workerId, local, self.stats, self.taskStats(), len(self.directory))
