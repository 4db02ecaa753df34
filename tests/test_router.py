"""
L{swooletw.runtime.router}: the connection directory, id blocks, and the batching
of operations between workers and the master, with fake channels and a
L{Clock} as the reactor (one C{clock.advance(0)} is one reactor turn).
"""

from __future__ import annotations

import marshal
from types import SimpleNamespace
from typing import Any, Callable

from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial.unittest import TestCase

from swooletw.wire.table import ConnectionTable, ServerStats
from swooletw.runtime.channel import Channel
from swooletw.runtime.router import (
    BATCH_BYTES,
    BLOCK_SIZE,
    INFO_KEYS,
    OP_CLOSE,
    OP_SEND,
    OPERATIONS,
    Directory,
    MasterRouter,
    WorkerRouter,
    blockRange,
    registerOperation,
    splitBatch,
    sumStats,
)


def info(port: int, ip: str = "127.0.0.1") -> dict[str, Any]:
    """
    Directory client info for a connection from C{ip:port}.
    """
    return {
        "server_port": 9501,
        "server_fd": 0,
        "socket_type": 1,
        "remote_port": port,
        "remote_ip": ip,
        "connect_time": 1000 + port,
    }


class FakeChannel:
    """
    Records C{send(kind, *args)}; checks that the message is marshal-able
    (what the real channel sends) and keeps it as the other end would
    decode it.  With C{deliver}, the decoded message is also handed on.
    """

    def __init__(self, deliver: Callable[..., Any] | None = None) -> None:
        self.sent: list[tuple[str, tuple[Any, ...]]] = []
        self.deliver = deliver

    def send(self, kind: str, *args: Any) -> None:
        message = marshal.loads(marshal.dumps((kind,) + args))
        self.sent.append((message[0], message[1:]))
        if self.deliver is not None:
            self.deliver(message[0], *message[1:])

    def kinds(self) -> list[str]:
        return [kind for kind, _ in self.sent]

    def batches(self) -> list[tuple[Any, ...]]:
        return [args for kind, args in self.sent if kind == "batch"]


class FakeConnection:
    """
    What the worker router needs of a L{ServerConnection}.
    """

    def __init__(self, fd: int, port: int = 40000) -> None:
        self.fd = fd
        self.port = port
        self.sent: list[bytes] = []
        self.closed: list[bool] = []

    def clientInfo(self) -> dict[str, Any]:
        return {**info(self.port), "reactor_id": 0, "last_time": 5, "close_errno": 0}

    def sendData(self, data: bytes) -> bool:
        self.sent.append(data)
        return True

    def closeConnection(self, reset: bool = False) -> bool:
        self.closed.append(reset)
        return True


def workerRouter(
    workerId: int, block: int, clock: Clock, channel: Any = None
) -> tuple[WorkerRouter, SimpleNamespace]:
    """
    A worker's router on its own table (ids from C{block}), as
    C{runWorker} wires it.
    """
    table = ConnectionTable(*blockRange(block))
    serv = SimpleNamespace(reactor=clock, table=table, counters=ServerStats())
    router = WorkerRouter(
        clock, workerId, channel if channel is not None else FakeChannel(), Directory(), table, serv.counters
    )
    table.listener = router
    return router, serv


def openConnections(serv: SimpleNamespace, count: int, port: int = 40000) -> list[FakeConnection]:
    """
    Open C{count} connections in a worker's table (the router hears of
    each).
    """
    opened = []
    for i in range(count):
        connection = FakeConnection(serv.table.allocate(), port + i)
        serv.table.add(connection)
        opened.append(connection)
    return opened


class BlockTests(TestCase):
    """
    Blocks of connection ids.
    """

    def test_blockRange(self) -> None:
        """
        Block 0 is ids 1 to C{BLOCK_SIZE}; blocks follow each other with no
        gap and no overlap.
        """
        self.assertEqual(blockRange(0), (1, BLOCK_SIZE))
        self.assertEqual(blockRange(1), (BLOCK_SIZE + 1, 2 * BLOCK_SIZE))
        for block in range(50):
            first, last = blockRange(block)
            self.assertEqual(last - first + 1, BLOCK_SIZE)
            self.assertEqual(blockRange(block + 1)[0], last + 1)

    def test_leasesUnique(self) -> None:
        """
        The master never leases a block twice, so ids from different
        worker processes (and successive processes of one worker id) never
        collide.
        """
        master = MasterRouter(Clock())
        blocks = [master.leaseBlock() for _ in range(200)]
        self.assertEqual(len(set(blocks)), 200)
        ranges = sorted(blockRange(block) for block in blocks)
        for (_, last), (first, _) in zip(ranges, ranges[1:]):
            self.assertLess(last, first)

    def test_needBlockHandler(self) -> None:
        """
        A worker's C{needblock} gets it a fresh block on its own channel.
        """
        master = MasterRouter(Clock())
        channels = {0: FakeChannel(), 1: FakeChannel()}
        taken = {master.leaseBlock(), master.leaseBlock()}
        for workerId, channel in channels.items():
            master.attach(workerId, channel)
        master.handlersFor(1)["needblock"]()
        self.assertEqual(channels[0].sent, [])
        [(kind, (block,))] = channels[1].sent
        self.assertEqual(kind, "block")
        self.assertNotIn(block, taken)


class DirectoryTests(TestCase):
    """
    L{Directory}: connection id -> owner and client info.
    """

    def test_addOwnerInfo(self) -> None:
        """
        An added fd has its owner and Swoole's client info, completed with
        C{last_time}, C{reactor_id} (the owner) and C{close_errno}.
        """
        directory = Directory()
        directory.add(7, 1, info(40007))
        self.assertEqual(directory.owner(7), 1)
        self.assertIn(7, directory)
        self.assertEqual(len(directory), 1)
        self.assertEqual(
            directory.info(7),
            {**info(40007), "last_time": 1000 + 40007, "reactor_id": 1, "close_errno": 0},
        )

    def test_infoIsACopy(self) -> None:
        """
        Changing the returned info does not change the directory.
        """
        directory = Directory()
        directory.add(7, 1, info(40007))
        directory.info(7)["remote_ip"] = "10.0.0.1"
        self.assertEqual(directory.info(7)["remote_ip"], "127.0.0.1")

    def test_unknown(self) -> None:
        """
        An unknown fd has no owner and no info; removing it is harmless.
        """
        directory = Directory()
        self.assertIsNone(directory.owner(3))
        self.assertIsNone(directory.info(3))
        self.assertNotIn(3, directory)
        directory.remove(3)
        self.assertEqual(len(directory), 0)

    def test_remove(self) -> None:
        """
        A removed fd is gone.
        """
        directory = Directory()
        directory.add(7, 1, info(1))
        directory.add(8, 1, info(2))
        directory.remove(7)
        self.assertNotIn(7, directory)
        self.assertIsNone(directory.owner(7))
        self.assertEqual(list(directory), [8])

    def test_ownedBy(self) -> None:
        """
        C{ownedBy} lists one worker's fds only.
        """
        directory = Directory()
        for fd, owner in [(1, 0), (2, 1), (3, 0), (65537, 1), (65538, 2)]:
            directory.add(fd, owner, info(fd))
        self.assertEqual(sorted(directory.ownedBy(0)), [1, 3])
        self.assertEqual(sorted(directory.ownedBy(1)), [2, 65537])
        self.assertEqual(directory.ownedBy(5), [])

    def test_iterateWhileRemoving(self) -> None:
        """
        Iterating is over a snapshot: fds may be removed meanwhile.
        """
        directory = Directory()
        for fd in range(1, 6):
            directory.add(fd, 0, info(fd))
        for fd in directory:
            directory.remove(fd)
        self.assertEqual(len(directory), 0)


class SumStatsTests(TestCase):
    """
    L{sumStats}.
    """

    def test_sum(self) -> None:
        """
        Numeric counters are added up; C{start_time}, booleans, strings and
        nested values are not.
        """
        perWorker = {
            0: {"accept_count": 2, "request_count": 10, "start_time": 100, "ratio": 0.5, "flag": True, "name": "a", "nested": {"x": 1}},
            1: {"accept_count": 3, "request_count": 5, "start_time": 200, "ratio": 0.25},
        }
        self.assertEqual(sumStats(perWorker), {"accept_count": 5, "request_count": 15, "ratio": 0.75})

    def test_empty(self) -> None:
        """
        No workers, nothing to add.
        """
        self.assertEqual(sumStats({}), {})

    def test_keyInSomeWorkersOnly(self) -> None:
        """
        A counter only some workers report is summed over those.
        """
        self.assertEqual(sumStats({0: {"a": 1}, 1: {"b": 2}, 2: {"a": 3}}), {"a": 4, "b": 2})


class MasterRouterTests(TestCase):
    """
    L{MasterRouter}: the whole directory and the forwarding between
    workers.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.master = MasterRouter(self.clock)
        self.channels = {workerId: FakeChannel() for workerId in range(3)}
        for workerId, channel in self.channels.items():
            self.master.attach(workerId, channel)

    def populate(self) -> None:
        """
        Worker 0 owns fds 1 and 2, worker 1 owns 65537-65539, worker 2 owns
        131073; all of it known to every worker already.
        """
        for fd, owner in [(1, 0), (2, 0), (65537, 1), (65538, 1), (65539, 1), (131073, 2)]:
            self.master.directory.add(fd, owner, info(fd))

    def test_openedTellsTheOthers(self) -> None:
        """
        A worker's new connections enter the directory and go, in one
        message each, to every other worker (with their owner), not back to
        it.
        """
        self.master.received(0, [(1, info(1)), (2, info(2))], [], [])
        self.assertEqual(self.master.directory.owner(2), 0)
        self.assertEqual(self.channels[1].sent, [], "nothing before the end of the turn")
        self.clock.advance(0)
        self.assertEqual(self.channels[0].sent, [])
        for other in (1, 2):
            [batch] = self.channels[other].batches()
            self.assertEqual(len(self.channels[other].sent), 1)
            self.assertEqual(batch[0], [(1, 0, info(1)), (2, 0, info(2))])

    def test_closedTellsTheOthers(self) -> None:
        """
        Closed connections leave the directory and the other workers hear
        of it.
        """
        self.populate()
        self.master.received(1, [], [65537, 65538], [])
        self.clock.advance(0)
        self.assertEqual(sorted(self.master.directory.ownedBy(1)), [65539])
        self.assertEqual(self.channels[1].sent, [])
        for other in (0, 2):
            [batch] = self.channels[other].batches()
            self.assertEqual(batch[1], [65537, 65538])

    def test_relayGroupedByOwner(self) -> None:
        """
        Relayed sends and closes go to the worker owning each fd: one
        message per owner, with that owner's operations only, in order;
        nothing goes back to the source or to an uninvolved worker.
        """
        self.populate()
        ops = [
            (OP_SEND, 65537, b"a"), (OP_SEND, 131073, b"b"), (OP_CLOSE, 131073, False),
            (OP_SEND, 65538, b"c"), (OP_CLOSE, 65539, True), (OP_SEND, 65537, b"d"),
        ]
        self.master.received(0, [], [], ops)
        self.clock.advance(0)
        self.assertEqual(self.channels[0].sent, [])
        [one] = self.channels[1].batches()
        self.assertEqual(one, ([], [], [(OP_SEND, 65537, b"a"), (OP_SEND, 65538, b"c"), (OP_CLOSE, 65539, True), (OP_SEND, 65537, b"d")]))
        [two] = self.channels[2].batches()
        self.assertEqual(two, ([], [], [(OP_SEND, 131073, b"b"), (OP_CLOSE, 131073, False)]))

    def test_relayToUnknownDropped(self) -> None:
        """
        A relayed operation on an fd no worker owns (closed meanwhile) is
        dropped, with no log line per fd.
        """
        self.populate()
        with capturedLogs() as events:
            self.assertFalse(self.master.send(999, b"x"))
            self.assertFalse(self.master.close(999, False))
            self.master.received(0, [], [], [(OP_SEND, 999, b"y"), (OP_CLOSE, 999, False)])
            self.clock.advance(0)
        for channel in self.channels.values():
            self.assertEqual(channel.sent, [])
        # Counted by the process that asked, not logged per fd.
        self.assertEqual([formatEvent(e) for e in events], [])

    def test_manySendsOneMessagePerOwner(self) -> None:
        """
        N sends in one reactor turn make one channel message per owning
        worker; the next turn's sends make new messages.
        """
        self.populate()
        for i in range(100):
            self.assertTrue(self.master.send(65537 + i % 3, b"%d" % i))
            self.assertTrue(self.master.send(131073, b"x"))
        self.assertEqual([c.sent for c in self.channels.values()], [[], [], []])
        self.clock.advance(0)
        self.assertEqual([len(c.sent) for c in self.channels.values()], [0, 1, 1])
        self.assertEqual(len(self.channels[1].batches()[0][2]), 100)
        self.assertEqual(len(self.channels[2].batches()[0][2]), 100)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.master.send(65537, b"next turn")
        self.clock.advance(0)
        self.assertEqual([len(c.sent) for c in self.channels.values()], [0, 2, 1])

    def test_detachForgetsDeadWorker(self) -> None:
        """
        A dead worker's fds leave the directory, its stats go, the other
        workers are told its fds closed (one message each), and operations
        on its fds are dropped.
        """
        self.populate()
        self.master.gotStats(1, {"accept_count": 3})
        self.master.detach(1)
        self.assertEqual(self.master.directory.ownedBy(1), [])
        self.assertEqual(sorted(self.master.directory), [1, 2, 131073])
        self.assertNotIn(1, self.master.stats)
        self.clock.advance(0)
        self.assertEqual(self.channels[1].sent, [])
        for other in (0, 2):
            [batch] = self.channels[other].batches()
            self.assertEqual(len(self.channels[other].sent), 1)
            self.assertEqual(sorted(batch[1]), [65537, 65538, 65539])
        self.assertFalse(self.master.send(65537, b"x"))

    def test_detachWithoutConnections(self) -> None:
        """
        A dead worker that had no connections costs no message.
        """
        self.master.detach(2)
        self.clock.advance(0)
        self.assertEqual([c.sent for c in self.channels.values()], [[], [], []])

    def test_newProcessForWorkerId(self) -> None:
        """
        After a worker id's process is replaced (detach, attach), relays to
        the new process's connections go to its new channel.
        """
        self.populate()
        self.master.detach(1)
        fresh = FakeChannel()
        self.master.attach(1, fresh)
        self.master.received(1, [(196609, info(5))], [], [])
        self.master.received(0, [], [], [(OP_SEND, 196609, b"hi")])
        self.clock.advance(0)
        self.assertEqual(fresh.batches(), [([], [], [(OP_SEND, 196609, b"hi")])])

    def test_statsOnDemand(self) -> None:
        """
        Pings send nothing back; a worker that asks ("wantstats") gets the
        counters of all workers, and only that worker.
        """
        master = MasterRouter(self.clock, lambda: {"tasking_num": 1})
        for workerId, channel in self.channels.items():
            master.attach(workerId, channel)
        master.gotStats(0, {"accept_count": 1})
        master.gotStats(2, {"accept_count": 4})
        self.assertEqual([c.sent for c in self.channels.values()], [[]] * len(self.channels))
        master.handlersFor(2)["wantstats"]()
        self.assertEqual(
            self.channels[2].sent,
            [("allstats", ({0: {"accept_count": 1}, 2: {"accept_count": 4}}, {"tasking_num": 1}))],
        )
        self.assertEqual(self.channels[0].sent, [])


class WorkerRouterTests(TestCase):
    """
    L{WorkerRouter}: a worker's side.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.channel = FakeChannel()
        self.router, self.serv = workerRouter(0, 0, self.clock, self.channel)
        for fd in (65537, 65538, 65539):
            self.router.directory.add(fd, 1, info(fd))

    def test_openedAndClosedReported(self) -> None:
        """
        The worker's opens (with the directory's client info) and closes
        reach the master in one message at the end of the turn.
        """
        first, second = openConnections(self.serv, 2)
        self.serv.table.remove(first.fd)
        self.assertEqual(self.channel.sent, [])
        self.clock.advance(0)
        [batch] = self.channel.batches()
        self.assertEqual(len(self.channel.sent), 1)
        opened, closed, ops = batch
        self.assertEqual([fd for fd, _ in opened], [1, 2])
        self.assertEqual(set(opened[0][1]), set(INFO_KEYS))
        self.assertEqual(opened[1][1]["remote_port"], second.port)
        self.assertEqual((closed, ops), ([1], []))

    def test_manySendsOneMessage(self) -> None:
        """
        N sends and closes to other workers' connections in one turn, and
        this turn's opens, make one message to the master.
        """
        openConnections(self.serv, 3)
        for i in range(100):
            self.assertTrue(self.router.send(65537 + i % 3, b"%d" % i))
        self.assertTrue(self.router.close(65539, True))
        self.assertEqual(self.channel.sent, [])
        self.clock.advance(0)
        self.assertEqual(self.channel.kinds(), ["batch"])
        opened, closed, ops = self.channel.batches()[0]
        self.assertEqual(len(opened), 3)
        self.assertEqual(ops, [(OP_SEND, 65537 + i % 3, b"%d" % i) for i in range(100)] + [(OP_CLOSE, 65539, True)])
        self.clock.advance(0)
        self.assertEqual(len(self.channel.sent), 1, "nothing new, nothing sent")

    def test_sendToUnknownFd(self) -> None:
        """
        A send or close to an fd in no worker's directory is C{False},
        logged at debug level, and sends nothing.
        """
        with capturedLogs() as events:
            self.assertFalse(self.router.send(424242, b"x"))
            self.assertFalse(self.router.close(424242, False))
        self.clock.advance(0)
        self.assertEqual(self.channel.sent, [])
        # Counted by the runtime (closed_send_count), not logged per fd.
        self.assertEqual([formatEvent(e) for e in events], [])

    def test_receivedDirectoryChanges(self) -> None:
        """
        The master's batch adds and removes other workers' fds.
        """
        self.router.received([(131073, 2, info(9))], [65537], [])
        self.assertEqual(self.router.directory.owner(131073), 2)
        self.assertNotIn(65537, self.router.directory)

    def test_receivedOperations(self) -> None:
        """
        Relayed sends and closes reach this worker's own connections.
        """
        first, second = openConnections(self.serv, 2)
        self.router.received(
            [], [], [(OP_SEND, first.fd, b"a"), (OP_SEND, second.fd, b"b"), (OP_SEND, first.fd, b"c"), (OP_CLOSE, second.fd, True)]
        )
        self.assertEqual(first.sent, [b"a", b"c"])
        self.assertEqual(second.sent, [b"b"])
        self.assertEqual(second.closed, [True])
        self.assertEqual(first.closed, [])

    def test_unknownOpCodeDropped(self) -> None:
        """
        An op code not in the table is logged and dropped; the operations
        around it still apply.
        """
        [connection] = openConnections(self.serv, 1)
        with capturedLogs() as events:
            self.router.received([], [], [(99, connection.fd, b"x"), (OP_SEND, connection.fd, b"ok")])
        self.assertEqual(connection.sent, [b"ok"])
        self.assertEqual(len([e for e in events if e["log_level"] == LogLevel.error]), 1)

    def test_registeredOperation(self) -> None:
        """
        A server kind adds an operation with L{registerOperation}; it is
        relayed like C{send} and applied to the owner's connection.
        """
        [connection] = openConnections(self.serv, 1)
        registerOperation(77, lambda conn, arg: conn.sent.append(b"pushed " + arg))
        self.addCleanup(OPERATIONS.pop, 77)
        self.assertRaises(ValueError, registerOperation, OP_SEND, lambda conn, arg: None)
        self.router.received([], [], [(77, connection.fd, b"hi")])
        self.assertEqual(connection.sent, [b"pushed hi"])
        self.assertTrue(self.router.relay(77, 65537, b"x"))

    def test_relayedToClosedFdDropped(self) -> None:
        """
        A relayed send or close to a connection that closed meanwhile is
        dropped and counted, with no log line.
        """
        [connection] = openConnections(self.serv, 1)
        self.serv.table.remove(connection.fd)
        with capturedLogs() as events:
            self.router.received([], [], [(OP_SEND, connection.fd, b"late"), (OP_CLOSE, connection.fd, False)])
        self.assertEqual(connection.sent, [])
        self.assertEqual(connection.closed, [])
        self.assertEqual(self.serv.counters.closed_send_count, 1)
        self.assertEqual([formatEvent(e) for e in events], [])

    def test_asksForBlockWhenHalfUsed(self) -> None:
        """
        The worker asks the master for another block once fewer than half
        of its ids are left, once, and uses the block it gets when its own
        runs out.
        """
        table = self.serv.table
        for _ in range(BLOCK_SIZE // 2 - 1):
            table.allocate()
        openConnections(self.serv, 1)
        self.assertEqual(table.remainingIds(), BLOCK_SIZE // 2)
        self.assertNotIn("needblock", self.channel.kinds())
        openConnections(self.serv, 1)
        self.assertEqual(table.remainingIds(), BLOCK_SIZE // 2 - 1)
        self.assertEqual(self.channel.kinds().count("needblock"), 1)
        openConnections(self.serv, 5)
        self.assertEqual(self.channel.kinds().count("needblock"), 1, "asked once")

        self.router.gotBlock(7)
        self.assertEqual(table.remainingIds(), BLOCK_SIZE // 2 - 6 + BLOCK_SIZE)
        while table.lastFd < BLOCK_SIZE:
            table.allocate()
        self.assertEqual(table.allocate(), blockRange(7)[0])
        # Half of the new block used: ask again.
        while table.remainingIds() > BLOCK_SIZE // 2:
            table.allocate()
        openConnections(self.serv, 1)
        self.assertEqual(self.channel.kinds().count("needblock"), 2)

    def test_gotStats(self) -> None:
        """
        The master's table of all workers' counters is kept for
        C{stats()}.
        """
        self.router.gotStats({0: {"a": 1}, 1: {"a": 2}}, {"task_idle_worker_num": 2})
        self.assertEqual(self.router.stats, {0: {"a": 1}, 1: {"a": 2}})
        self.assertEqual(self.router.taskStats, {"task_idle_worker_num": 2})
        self.assertEqual(sorted(self.router.handlers()), ["allstats", "batch", "block"])

    def test_statsAskedAtMostOncePerPing(self) -> None:
        """
        C{stats()} asks the master for the others' counters, then not again
        until C{worker_ping_interval} has passed.
        """
        local = {"start_time": 0, "worker_num": 2, "task_worker_num": 0, "session_round": 0, "accept_count": 3}
        self.router.gotStats({1: {"accept_count": 4}}, {})
        self.assertEqual(self.router.serverStats(0, local)["accept_count"], 7)
        self.router.serverStats(0, local)
        self.assertEqual(self.channel.sent.count(("wantstats", ())), 1)
        self.clock.advance(1)
        self.router.serverStats(0, local)
        self.assertEqual(self.channel.sent.count(("wantstats", ())), 2)


class WiredRoutersTests(TestCase):
    """
    Two workers' routers and the master's, wired through marshalling fake
    channels as the real processes are.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.master = MasterRouter(self.clock)
        self.workers: dict[int, tuple[WorkerRouter, SimpleNamespace]] = {}
        self.up: dict[int, FakeChannel] = {}
        self.down: dict[int, FakeChannel] = {}
        for workerId in (0, 1):
            handlers = self.master.handlersFor(workerId)
            up = FakeChannel(lambda kind, *args, h=handlers: h[kind](*args))
            router, serv = workerRouter(workerId, self.master.leaseBlock(), self.clock, up)
            workerHandlers = router.handlers()
            down = FakeChannel(lambda kind, *args, h=workerHandlers: h[kind](*args))
            self.master.attach(workerId, down)
            self.workers[workerId] = (router, serv)
            self.up[workerId], self.down[workerId] = up, down

    def turns(self, count: int = 3) -> None:
        for _ in range(count):
            self.clock.advance(0)

    def test_broadcastOneMessagePerWorker(self) -> None:
        """
        Worker 1 sends to each of worker 0's 50 connections: one message up
        to the master, one down to worker 0, and every connection gets its
        data.
        """
        router0, serv0 = self.workers[0]
        router1, serv1 = self.workers[1]
        remote = openConnections(serv0, 50)
        local = openConnections(serv1, 2)
        self.turns()
        self.assertEqual(sorted(router1.directory), [c.fd for c in remote])
        self.assertEqual(sorted(router0.directory), [c.fd for c in local])
        for channel in list(self.up.values()) + list(self.down.values()):
            del channel.sent[:]

        for fd in list(router1.directory):
            self.assertTrue(router1.send(fd, b"broadcast"))
        self.turns()
        self.assertEqual(len(self.up[1].sent), 1)
        self.assertEqual(len(self.down[0].sent), 1)
        self.assertEqual(self.up[0].sent, [])
        self.assertEqual(self.down[1].sent, [])
        self.assertEqual([c.sent for c in remote], [[b"broadcast"]] * 50)

    def test_idsUniqueAcrossWorkers(self) -> None:
        """
        Two workers' tables hand out ids from different blocks.
        """
        fds0 = {c.fd for c in openConnections(self.workers[0][1], 100)}
        fds1 = {c.fd for c in openConnections(self.workers[1][1], 100)}
        self.assertEqual(fds0 & fds1, set())

    def test_deadWorkerForgotten(self) -> None:
        """
        When a worker dies, the survivor's directory loses its connections.
        """
        openConnections(self.workers[0][1], 4)
        self.turns()
        self.assertEqual(len(self.workers[1][0].directory), 4)
        self.master.detach(0)
        self.turns()
        self.assertEqual(len(self.workers[1][0].directory), 0)


class SplitBatchTests(TestCase):
    """
    L{splitBatch}: a batch over L{BATCH_BYTES} of relayed data travels as
    several channel messages, in order, each under the channel's limit.
    """

    def test_smallBatchWhole(self) -> None:
        batch = ([(1, {})], [2], [(OP_SEND, 3, b"x"), (OP_CLOSE, 3, False)])
        self.assertEqual(splitBatch(batch), [batch])

    def test_largeBatchSplitInOrder(self) -> None:
        chunk = b"x" * (BATCH_BYTES // 3 + 1)
        ops = [(OP_SEND, fd, chunk) for fd in range(1, 8)] + [(OP_CLOSE, 7, False)]
        parts = splitBatch(([(1, {})], [2], ops))
        self.assertGreater(len(parts), 1)
        self.assertEqual(parts[0][:2], ([(1, {})], [2]))
        self.assertEqual([op for part in parts for op in part[2]], ops)
        for part in parts:
            self.assertLessEqual(sum(len(op[2]) for op in part[2] if op[0] == OP_SEND), BATCH_BYTES)
            self.assertLess(len(marshal.dumps(("batch",) + part)), Channel.MAX_LENGTH)
