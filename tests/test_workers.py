"""
The multi-process model with real processes: C{tests/apps/cmdserver.py}
runs with C{worker_num} 2 on 127.0.0.1 (a free port the master binds and
prints), and these tests talk to it over real sockets, send it signals and
read what it prints.  Every process is stopped by PID in cleanup
(L{tests.workersupport.ServerProcess.stop}); every wait is bounded.

L{RecycleLimitTests} are the unit tests of C{max_request}'s jitter.
"""

from __future__ import annotations

import collections
import json
import os
import random
import signal
import socket
import time

from twisted.trial.unittest import TestCase

from swooletw.runtime.supervisor import QUICK_DEATH_SECONDS
from swooletw.runtime.worker import recycleLimit
from tests.workersupport import (
    LineClient,
    LoadLoop,
    ServerProcess,
    clientsOnBothWorkers,
    cmdline,
    identify,
    oneShot,
    processAge,
    processGone,
    waitUntil,
)

TWO = {"worker_num": 2}


class RecycleLimitTests(TestCase):
    """
    L{recycleLimit}: C{max_request} plus a random grace.
    """

    def settings(self, maxRequest: int, grace: int | None) -> tuple[int, int | None]:
        return maxRequest, grace

    def test_never(self) -> None:
        """
        C{max_request} 0 means never recycle, whatever the grace.
        """
        self.assertEqual(recycleLimit(*self.settings(0, 10), random.Random(1)), 0)
        self.assertEqual(recycleLimit(*self.settings(0, None), random.Random(1)), 0)

    def test_jitterRange(self) -> None:
        """
        The limit is C{max_request} plus 0 to C{max_request_grace}
        inclusive, and it varies (so workers do not restart together).
        """
        rng = random.Random(20)
        limits = [recycleLimit(*self.settings(20, 10), rng) for _ in range(500)]
        self.assertEqual(min(limits), 20)
        self.assertEqual(max(limits), 30)
        self.assertEqual(set(limits), set(range(20, 31)))

    def test_defaultGrace(self) -> None:
        """
        With no C{max_request_grace}, the grace is half of C{max_request}
        (Swoole's default).
        """
        rng = random.Random(7)
        limits = {recycleLimit(*self.settings(100, None), rng) for _ in range(2000)}
        self.assertEqual(min(limits), 100)
        self.assertEqual(max(limits), 150)

    def test_noGrace(self) -> None:
        """
        A grace of 0 recycles after exactly C{max_request}.
        """
        rng = random.Random(3)
        self.assertEqual({recycleLimit(*self.settings(20, 0), rng) for _ in range(50)}, {20})

    def test_seeded(self) -> None:
        """
        The jitter comes from the random generator given: the same seed
        gives the same limits.
        """
        first = [recycleLimit(*self.settings(20, 10), random.Random(99)) for _ in range(3)]
        again = [recycleLimit(*self.settings(20, 10), random.Random(99)) for _ in range(3)]
        self.assertEqual(first, again)


class WorkerProcessTests(TestCase):
    """
    A master and two forked workers, as real processes.
    """

    def start(self, config: dict | None = None, **settings: object) -> ServerProcess:
        """
        C{cmdserver.py} with C{worker_num} 2 and C{settings}; C{config}
        adds keys of its own (C{announce_connect}, ...).
        """
        return ServerProcess(self, {**(config or {}), "settings": {**TWO, **settings}})

    def assertNoErrors(self, server: ServerProcess) -> None:
        """
        Stop the server gracefully (it must exit 0), then check that it
        never printed a traceback or a critical error: once it has exited
        there is nothing more to come.
        """
        self.assertEqual(server.stopGracefully(), 0, server.log())
        self.assertEqual(server.errors(), [], server.log())

    # ------------------------------------------------------------ serving

    def test_bothWorkersServe(self) -> None:
        """
        With C{worker_num} 2, over 200 short connections both workers
        reply (each with its own C{worker_id} and pid), and connection ids
        are unique across the workers.
        """
        server = self.start()
        pids = server.waitForWorkers(2)
        self.assertEqual(sorted(pids), [0, 1])
        self.assertNotEqual(pids[0], pids[1])
        seen: collections.Counter[int] = collections.Counter()
        fds = []
        for _ in range(200):
            workerId, pid, fd = identify(oneShot(server.port, "id"))
            self.assertEqual(pid, pids[workerId])
            seen[workerId] += 1
            fds.append(fd)
        self.assertEqual(sorted(seen), [0, 1], seen)
        self.assertEqual(len(set(fds)), 200)
        self.assertNoErrors(server)

    def test_processTitles(self) -> None:
        """
        C{ps} shows each process's role: C{swooletw: master},
        C{swooletw: worker 0}, C{swooletw: worker 1}.
        """
        server = self.start()
        pids = server.waitForWorkers(2)
        self.assertTrue(cmdline(server.masterPid).startswith("swooletw: master"), cmdline(server.masterPid))
        for workerId, pid in pids.items():
            title = cmdline(pid)
            self.assertTrue(title.startswith(f"swooletw: worker {workerId}"), title)
            self.assertEqual(os.stat(f"/proc/{pid}").st_uid, os.getuid())

    # ------------------------------------------------------- supervision

    def test_killedWorkerReplaced(self) -> None:
        """
        C{kill -9} of a worker under load: a replacement with the same
        worker id is started at once (no back-off: the victim had lived
        past the quick-death threshold) and serves, a client of the other
        worker keeps getting replies all along, and C{workerError} fires in
        the master with signal 9 before the replacement starts.
        """
        server = self.start()
        pids = server.waitForWorkers(2)
        clients = clientsOnBothWorkers(self, server.port)
        pinned = clients[0][0]
        load = LoadLoop(server.port, "id").start()
        self.addCleanup(load.stop)
        victim = pids[1]
        # Past the master's quick-death threshold, so no back-off: the
        # kernel's count of the victim's age is at most the master's (which
        # starts counting before the fork).
        old = waitUntil(lambda: processAge(victim) > QUICK_DEATH_SECONDS + 0.1, 10)
        self.assertTrue(old, f"worker 1 (pid {victim}) is not running:\n{server.log()}")
        killedAt = time.monotonic()
        os.kill(victim, signal.SIGKILL)

        def replacementServing() -> bool:
            # Only a request started after the kill can reach a new worker 1.
            return any(
                identify(reply)[0] == 1 and identify(reply)[1] != victim
                for reply in load.repliesSince(killedAt)
            )

        # Any error of the pinned client (timeout, EOF) fails the test.
        pinnedReplies = [identify(pinned.request("id", timeout=5))]
        deadline = time.monotonic() + 10
        while not replacementServing() and time.monotonic() < deadline:
            pinnedReplies.append(identify(pinned.request("id", timeout=5)))
            time.sleep(0.02)  # paces the pinned client's requests
        self.assertTrue(replacementServing(), f"no reply from a new worker 1:\n{server.log()}")
        # ... and the pinned client is still served after the replacement.
        pinnedReplies += [identify(pinned.request("id", timeout=5)) for _ in range(5)]
        load.stop()
        # (A load request in flight on the killed worker may fail: no check.)
        self.assertEqual({(w, p) for w, p, _ in pinnedReplies}, {(0, pids[0])})
        error = server.waitFor(rf"^WORKERERROR 1 {victim} (-?\d+) (\d+)$")
        self.assertEqual(error.group(2), "9")
        self.assertEqual(error.group(1), "0")
        replacement = server.workerPids()[1]
        self.assertNotEqual(replacement, victim)
        self.assertEqual(server.workerPids()[0], pids[0])
        # The order of events: the death is reported, then the replacement
        # starts, with no back-off between (that warning would be logged
        # before the replacement is started).
        self.assertLess(
            server.position(rf"^WORKERERROR 1 {victim} "),
            server.position(rf"worker 1 started \(pid {replacement}\)"),
        )
        self.assertLess(
            server.position(rf"worker 1 started \(pid {replacement}\)"),
            server.position(rf"^WORKERSTART 1 {replacement}$"),
        )
        self.assertEqual(server.lines(r"worker 1 keeps dying"), [], server.log())
        self.assertNoErrors(server)

    def test_killedMasterTakesWorkers(self) -> None:
        """
        C{kill -9} of the master: its workers notice and exit, none is left
        behind.
        """
        server = self.start()
        pids = list(server.waitForWorkers(2).values())
        self.assertFalse(any(processGone(pid) for pid in pids))
        server.signal(signal.SIGKILL)
        self.assertEqual(server.wait(5), -signal.SIGKILL)
        gone = waitUntil(lambda: all(processGone(pid) for pid in pids), 10)
        self.assertTrue(gone, f"workers still running after the master died: {pids}")

    def test_sigtermWaitsForSlowCallback(self) -> None:
        """
        C{SIGTERM} while an asynchronous receive callback runs: the worker
        starts stopping (C{workerStop}) while the callback still runs, the
        client still gets its reply, then EOF, and the master exits 0 after
        C{shutdown}.
        """
        # The callback runs until the test releases it: a max_wait_time the
        # test cannot overrun on a loaded machine.
        server = self.start(max_wait_time=60)
        server.waitForWorkers(2)
        release = os.path.abspath(self.mktemp())
        self.addCleanup(lambda: open(release, "w").close())
        client = LineClient(server.port)
        self.addCleanup(client.close)
        workerId, pid, fd = identify(client.request("id"))
        client.sock.sendall(f"slow {release}\n".encode())
        server.waitFor(rf"^SLOWSTART {workerId} {fd}$")
        server.signal(signal.SIGTERM)
        # The worker is stopping, and its callback has not ended: the stop
        # has to wait for it.
        server.waitFor(rf"^WORKERSTOP {workerId} {pid}$")
        self.assertEqual(server.lines(r"^SLOWEND "), [])
        open(release, "w").close()
        self.assertEqual(client.readLine(timeout=5), f"SLOW done {workerId}")
        self.assertEqual(client.readEOF(timeout=5), b"")
        self.assertEqual(server.wait(10), 0, server.log())
        # In order: the stop began, the callback ended, the server shut down.
        stopping = server.position(rf"^WORKERSTOP {workerId} {pid}$")
        ended = server.position(rf"^SLOWEND {workerId} {fd}$")
        self.assertLess(stopping, ended)
        self.assertLess(ended, server.position(r"^SHUTDOWN$"))
        self.assertEqual(len(server.lines(r"^WORKERSTOP ")), 2)
        self.assertNoErrors(server)

    # ------------------------------------------------------------- reload

    def writeModule(self, directory: str, name: str, value: str, stamp: float) -> None:
        path = os.path.join(directory, name + ".py")
        with open(path, "w") as f:
            f.write(f"def value():\n    return {value!r}\n")
        # Same size as before: make sure the mtime says it changed.
        os.utime(path, (stamp, stamp))

    def reloadUnderLoad(self, reloadAsync: bool) -> tuple[ServerProcess, LoadLoop]:
        """
        SIGUSR1 while a client opens a new connection per request (50
        answered before, all through the reload, 50 after): every worker
        is replaced, the module imported in C{workerStart} changes, the one
        imported before C{start()} does not (tutorial §11, Reload.php and
        NoReload.php).  The caller checks the order of events, then
        L{assertNoFailedRequests}.
        """
        modules = os.path.abspath(self.mktemp())
        os.makedirs(modules)
        now = time.time()
        self.writeModule(modules, "fresh_code", "fresh1", now - 100)
        self.writeModule(modules, "stale_code", "stale1", now - 100)
        server = ServerProcess(
            self,
            {
                "settings": {**TWO, "reload_async": reloadAsync},
                "path": [modules],
                "fresh_module": "fresh_code",
                "stale_module": "stale_code",
            },
        )
        before = server.waitForWorkers(2)
        self.assertEqual(oneShot(server.port, "code"), "CODE fresh1 stale1")
        load = LoadLoop(server.port, "code").start()
        self.addCleanup(load.stop)
        self.assertEqual(set(load.waitForReplies(50)), {"CODE fresh1 stale1"})
        self.writeModule(modules, "fresh_code", "fresh2", now)
        self.writeModule(modules, "stale_code", "stale2", now)
        server.signal(signal.SIGUSR1)
        for workerId, pid in before.items():
            server.waitFor(rf"worker {workerId} \(pid {pid}\) exited for reload", timeout=10)
        allNew = waitUntil(
            lambda: len(server.workerPids()) == 2
            and all(pid not in before.values() for pid in server.workerPids().values()),
            10,
        )
        self.assertTrue(allNew, server.log())
        # Every old worker has exited and both new ones have started: a
        # request started from now on can only reach new code.
        allNewAt = time.monotonic()
        self.assertEqual(set(load.waitForReplies(50, since=allNewAt)), {"CODE fresh2 stale1"})
        load.stop()

        after = server.workerPids()
        self.assertEqual(sorted(after), [0, 1])
        self.assertFalse(set(after.values()) & set(before.values()), (before, after))
        replies = [reply for _, reply in load.replies]
        self.assertEqual(replies[0], "CODE fresh1 stale1")
        self.assertEqual(set(replies), {"CODE fresh1 stale1", "CODE fresh2 stale1"})
        self.assertEqual(set(load.repliesSince(allNewAt)), {"CODE fresh2 stale1"})
        self.assertEqual(oneShot(server.port, "code"), "CODE fresh2 stale1")
        self.assertNoErrors(server)
        return server, load

    def assertNoFailedRequests(self, load: LoadLoop) -> None:
        """
        No connection refused, no request without its reply.
        """
        self.assertEqual(load.failures, [], f"{len(load.replies)} requests succeeded")

    def events(self, server: ServerProcess, before: dict[int, int]) -> list[tuple[str, int, int]]:
        """
        In output order: the old workers' C{workerStop} and the new
        workers' C{workerStart}, as (kind, worker id, pid).
        """
        found = []
        for match in server.lines(r"^(WORKERSTOP|WORKERSTART) (\d+) (\d+)$"):
            kind, workerId, pid = match.group(1), int(match.group(2)), int(match.group(3))
            old = pid in before.values()
            if (kind == "WORKERSTOP") == old:
                found.append((kind, workerId, pid))
        return found

    def test_reloadAsync(self) -> None:
        """
        With C{reload_async}, every worker is asked to stop at once: both
        old workers run C{workerStop} before a new one starts.
        """
        server, load = self.reloadUnderLoad(True)
        old = {int(m.group(1)): int(m.group(2)) for m in server.lines(r"worker (\d+) \(pid (\d+)\) exited for reload")}
        kinds = [kind for kind, _, _ in self.events(server, old)]
        self.assertEqual(kinds, ["WORKERSTOP", "WORKERSTOP", "WORKERSTART", "WORKERSTART"], server.log())
        self.assertNoFailedRequests(load)

    def test_reloadOneAtATime(self) -> None:
        """
        Without C{reload_async}, workers are replaced one at a time: worker
        1 is asked to stop only after worker 0's successor started.
        """
        server, load = self.reloadUnderLoad(False)
        old = {int(m.group(1)): int(m.group(2)) for m in server.lines(r"worker (\d+) \(pid (\d+)\) exited for reload")}
        self.assertEqual(sorted(old), [0, 1])
        order = [(kind, workerId) for kind, workerId, _ in self.events(server, old)]
        self.assertEqual(
            order,
            [("WORKERSTOP", 0), ("WORKERSTART", 0), ("WORKERSTOP", 1), ("WORKERSTART", 1)],
            server.log(),
        )
        exits = [m.start() for m in server.lines(r"exited for reload")]
        starts = server.lines(r"^WORKERSTART 0 (\d+)$")
        self.assertLess(exits[0], starts[-1].start())
        self.assertLess(starts[-1].start(), exits[1])
        self.assertNoFailedRequests(load)

    def test_reloadServesJustAcceptedConnection(self) -> None:
        """
        A connection accepted just before a reload, whose request arrives
        while its worker is stopping gracefully, still gets its reply (the
        deterministic form of the race that makes a new-connection-per-
        request client see EOF instead of a reply during a reload or a
        C{max_request} recycle).
        """
        server = self.start({"announce_connect": True})
        before = server.waitForWorkers(2)
        client = LineClient(server.port)
        self.addCleanup(client.close)
        # Accepted by a worker (its connect callback ran), no request yet.
        accepted = server.waitFor(rf"^CONNECT (\d+) (\d+) (\d+) {client.localPort}$")
        server.signal(signal.SIGUSR1)
        for workerId, pid in before.items():
            server.waitFor(rf"^WORKERSTOP {workerId} {pid}$", timeout=5)
        try:
            reply = client.request("id", timeout=5)
        except (EOFError, ConnectionResetError) as e:
            self.fail(f"the graceful stop closed a connection before its first request: {e!r}")
        workerId, pid, fd = identify(reply)
        self.assertEqual((workerId, pid, fd), tuple(int(accepted.group(i)) for i in (1, 2, 3)))
        self.assertEqual(pid, before[workerId])

    # -------------------------------------------------------- max_request

    def test_moduleLevelReactorInWorkers(self) -> None:
        """
        User code that did C{from twisted.internet import reactor} before
        C{start()} holds the master's reactor object; in each forked worker
        it drives that worker's own reactor.
        """
        server = self.start()
        server.waitForWorkers(2)
        clients = clientsOnBothWorkers(self, server.port)
        for workerId, (client, _, _) in clients.items():
            self.assertEqual(client.request("later"), f"LATER {workerId}")
        self.assertNoErrors(server)

    def test_idleWorkerNum(self) -> None:
        """
        C{stats()["idle_worker_num"]} counts workers, not settings: 2 idle
        workers of 2.
        """
        server = self.start()
        server.waitForWorkers(2)
        client = LineClient(server.port)
        self.addCleanup(client.close)

        def idle() -> int:
            return json.loads(client.request("stats").split(" ", 1)[1])["idle_worker_num"]

        self.assertTrue(waitUntil(lambda: idle() == 2, 5, 0.05), idle())

    def test_oneWorkerSupervisedInProcessMode(self) -> None:
        """
        The tutorial's §10 settings: in PROCESS mode (the default) even one
        worker has a master, so C{max_request} 3 recycles it every 3 to 4
        requests (as Swoole does), and each request is served.
        """
        server = self.start(worker_num=1, max_request=3)
        server.waitForWorkers(1)
        for _ in range(12):
            self.assertTrue(oneShot(server.port, "id").startswith("ID 0 "))
        self.assertTrue(waitUntil(lambda: len(server.workerStarts()) >= 3, 5), server.log())
        counts = [int(m.group(1)) for m in server.lines(r"handled (\d+) requests \(max_request\): recycling")]
        self.assertTrue(counts and all(3 <= count <= 4 for count in counts), counts)
        self.assertNoErrors(server)

    def test_maxRequestRecycles(self) -> None:
        """
        C{max_request} 20 with a grace of 10: over ~200 requests each
        worker is replaced at least once, never before 20 requests, at
        varying counts, and no request fails.
        """
        server = self.start(max_request=20, max_request_grace=10)
        first = server.waitForWorkers(2)
        failures = []
        for _ in range(200):
            try:
                oneShot(server.port, "id")
            except Exception as e:
                failures.append(repr(e))
            time.sleep(0.004)  # paces the requests
        changed = waitUntil(
            lambda: all(
                any(w == workerId and p != pid for w, p in server.workerStarts())
                for workerId, pid in first.items()
            ),
            3,
        )
        self.assertTrue(changed, server.log())
        counts = [int(m.group(1)) for m in server.lines(r"handled (\d+) requests \(max_request\): recycling")]
        recycled = server.lines(r"worker (\d+) \(pid \d+\) exited for max_request")
        self.assertEqual({m.group(1) for m in recycled}, {"0", "1"})
        self.assertGreaterEqual(len(counts), 3)
        self.assertGreaterEqual(min(counts), 20)
        self.assertGreater(len(set(counts)), 1, counts)
        self.assertEqual(failures, [])
        self.assertNoErrors(server)  # stops it: the output is complete
        self.assertEqual(server.lines(r"^WORKERERROR"), [])

    # -------------------------------------------------- across workers

    def waitForDirectory(self, client: LineClient, fds: set[int]) -> list[int]:
        """
        Ask C{client}'s worker for C{serv.connections} until every fd of
        C{fds} is in it (the directory is replicated through the master).
        """
        listed: list[int] = []

        def complete() -> bool:
            listed[:] = [int(fd) for fd in client.request("list").split()[1:]]
            return fds <= set(listed)

        self.assertTrue(waitUntil(complete, 3, 0.02), (sorted(fds), listed))
        return listed

    def test_operationsAcrossWorkers(self) -> None:
        """
        From a connection on one worker: C{connections} lists the fds of
        both workers, and C{exists}, C{getClientInfo}, C{send} and C{close}
        reach a connection of the other worker.
        """
        server = self.start()
        server.waitForWorkers(2)
        clients = clientsOnBothWorkers(self, server.port)
        (asker, _, askerFd), (other, _, otherFd) = clients[0], clients[1]
        extra = [LineClient(server.port) for _ in range(4)]
        for client in extra:
            self.addCleanup(client.close)
        extraFds = {identify(client.request("id"))[2] for client in extra}
        allFds = {askerFd, otherFd} | extraFds
        self.assertEqual(len(allFds), 6, "connection ids are unique across workers")

        listed = self.waitForDirectory(asker, allFds)
        self.assertEqual(set(listed), allFds)
        self.assertEqual(listed, sorted(listed))
        self.assertEqual(waitUntil(lambda: set(other.request("list").split()[1:]) == {str(fd) for fd in allFds}, 3), True)

        self.assertEqual(asker.request(f"exists {otherFd}"), "RESULT True")
        self.assertEqual(asker.request("exists 999999999"), "RESULT False")
        info = json.loads(asker.request(f"info {otherFd}").split(" ", 1)[1])
        self.assertEqual(info["remote_ip"], "127.0.0.1")
        self.assertEqual(info["remote_port"], other.localPort)
        self.assertEqual(info["server_port"], server.port)
        own = json.loads(other.request(f"info {otherFd}").split(" ", 1)[1])
        for key in ("remote_ip", "remote_port", "server_port", "server_fd", "socket_type", "connect_time"):
            self.assertEqual(info[key], own[key], key)

        self.assertEqual(asker.request(f"send {otherFd} across"), "RESULT True")
        self.assertEqual(other.readLine(timeout=3), "MSG across")

        self.assertEqual(asker.request(f"close {otherFd}"), "RESULT True")
        self.assertEqual(other.readEOF(timeout=3), b"")
        gone = waitUntil(lambda: asker.request(f"exists {otherFd}") == "RESULT False", 3, 0.02)
        self.assertTrue(gone)
        self.assertNotIn(str(otherFd), asker.request("list").split())
        self.assertNoErrors(server)

    def test_broadcast(self) -> None:
        """
        A broadcast from one worker reaches every connection of both
        workers.
        """
        server = self.start()
        server.waitForWorkers(2)
        clients = clientsOnBothWorkers(self, server.port)
        sender = clients[0][0]
        everyone = [client for client, _, _ in clients.values()]
        fds = {fd for _, _, fd in clients.values()}
        for _ in range(6):
            client = LineClient(server.port)
            self.addCleanup(client.close)
            fds.add(identify(client.request("id"))[2])
            everyone.append(client)
        self.assertEqual(len(fds), 8)
        self.waitForDirectory(sender, fds)
        sender.sock.sendall(b"broadcast hello\n")
        self.assertEqual(sender.readLine(3), "MSG hello")
        self.assertEqual(sender.readLine(3), "BROADCAST 8")
        for client in everyone:
            if client is not sender:
                self.assertEqual(client.readLine(3), "MSG hello")
        self.assertNoErrors(server)

    def test_statsAddUp(self) -> None:
        """
        C{stats()} in a worker adds up both workers' counters (the other's
        as of its last ping) and lists each worker.
        """
        server = self.start(worker_ping_interval=0.2)
        server.waitForWorkers(2)
        seen: collections.Counter[int] = collections.Counter()
        for _ in range(40):
            seen[identify(oneShot(server.port, "id"))[0]] += 1
        self.assertEqual(sorted(seen), [0, 1])
        asker = LineClient(server.port)
        self.addCleanup(asker.close)
        askerWorker = identify(asker.request("id"))[0]
        seen[askerWorker] += 1
        asked = [1]
        stats: dict = {}

        def current() -> bool:
            asked[0] += 1
            stats.update(json.loads(asker.request("stats").split(" ", 1)[1]))
            return (
                stats["accept_count"] == 41
                and stats["close_count"] == 40
                and stats["request_count"] == 40 + asked[0]
            )

        self.assertTrue(waitUntil(current, 3, 0.05), stats)
        self.assertEqual(sorted(stats["workers"]), ["0", "1"])
        for workerId in (0, 1):
            self.assertEqual(stats["workers"][str(workerId)]["accept_count"], seen[workerId])
        self.assertEqual(stats["worker_num"], 2)
        self.assertEqual(stats["connection_num"], 1)

    # -------------------------------------------------------------- faults

    def test_failingWorkerStart(self) -> None:
        """
        Worker 1 raises in C{workerStart} on its first 3 starts: it is
        restarted with growing back-off and the error logged, while worker
        0 serves every request; then worker 1 serves too, and only from
        the process whose start succeeded.
        """
        counter = os.path.abspath(self.mktemp())
        server = ServerProcess(
            self,
            {
                "settings": TWO,
                "fail_start": {"worker": 1, "times": 3, "counter": counter},
                "announce_connect": True,
            },
        )
        load = LoadLoop(server.port, "id").start()
        self.addCleanup(load.stop)
        started = server.waitFor(r"^WORKERSTART 1 (\d+)$", timeout=15)
        startedAt = time.monotonic()
        pid1 = int(started.group(1))
        served1 = waitUntil(lambda: any(identify(r)[0] == 1 for r in load.repliesSince(startedAt)), 10)
        load.stop()
        self.assertTrue(served1, "worker 1 never served")
        self.assertEqual(load.failures, [])
        # Worker 1 answered only from the process whose start succeeded.
        byWorker = {(identify(reply)[0], identify(reply)[1]) for _, reply in load.replies}
        self.assertEqual(byWorker, {(0, server.workerPids()[0]), (1, pid1)})
        # Worker 0 accepted connections while worker 1 kept failing: in the
        # output between the first failed start and the good one.
        firstFailure = server.position(r"^FAILSTART 1 \d+ 1$")
        goodStart = started.start()
        during = [m for m in server.lines(r"^CONNECT 0 ") if firstFailure < m.start() < goodStart]
        self.assertNotEqual(during, [], server.log())
        self.assertEqual([m for m in server.lines(r"^CONNECT 1 ") if m.start() < goodStart], [])

        self.assertEqual(len(server.lines(r"^FAILSTART 1 \d+ \d$")), 3)
        self.assertEqual(len(server.lines(r"workerStart failed in worker 1")), 3)
        self.assertEqual(len(server.lines(r"RuntimeError: workerStart failure number \d")), 3)
        errors = server.lines(r"^WORKERERROR 1 (\d+) (-?\d+) (\d+)$")
        self.assertEqual([(m.group(2), m.group(3)) for m in errors], [("4", "0")] * 3)
        delays = [float(m.group(1)) for m in server.lines(r"worker 1 keeps dying; restarting it in ([\d.]+)s")]
        self.assertEqual(len(delays), 3)
        self.assertEqual(delays, sorted(delays))
        self.assertLess(delays[0], delays[-1])
        self.assertEqual(server.workerPids()[1], pid1)
        self.assertEqual(server.stopGracefully(), 0, server.log())
        self.assertEqual(server.lines(r"^WORKERERROR 0 "), [])
        self.assertEqual(len(server.lines(r"^FAILSTART ")), 3)

    def test_hungWorkerReplaced(self) -> None:
        """
        A worker whose receive callback blocks for 30 s stops pinging; with
        C{worker_timeout} 2 the master kills it and starts a new one, which
        serves, while the other worker keeps serving all along.
        """
        server = self.start(worker_timeout=2)
        pids = server.waitForWorkers(2)
        clients = clientsOnBothWorkers(self, server.port)
        pinned, hung = clients[0][0], clients[1][0]
        hung.sock.sendall(b"hang\n")
        server.waitFor(rf"^HANG 1 {pids[1]}$", timeout=5)
        killLine = rf"worker 1 \(pid {pids[1]}\) sent no ping for 2(\.0)?s: killing it"
        # Any error of the pinned client (timeout, EOF) fails the test.
        whileHung = []
        replies = []
        deadline = time.monotonic() + 15
        while pids[1] in server.workerPids().values() and time.monotonic() < deadline:
            replies.append(identify(pinned.request("id", timeout=5)))
            if not server.lines(killLine):
                # Answered before the master decided to kill worker 1.
                whileHung.append(replies[-1])
            time.sleep(0.05)  # paces the pinned client's requests
        self.assertNotIn(pids[1], server.workerPids().values(), server.log())
        replies.append(identify(pinned.request("id", timeout=5)))
        self.assertEqual({(w, p) for w, p, _ in replies}, {(0, pids[0])})
        self.assertNotEqual(whileHung, [], "worker 0 served nothing while worker 1 hung")
        error = server.waitFor(rf"^WORKERERROR 1 {pids[1]} (-?\d+) (\d+)$")
        self.assertEqual(error.group(2), "9")
        replacement = server.workerPids()[1]
        # Hung, then killed by the watchdog, then replaced.
        died = server.position(rf"^WORKERERROR 1 {pids[1]} ")
        self.assertLess(server.position(rf"^HANG 1 {pids[1]}$"), server.position(killLine))
        self.assertLess(server.position(killLine), died)
        self.assertLess(died, server.position(rf"^WORKERSTART 1 {replacement}$"))
        with self.assertRaises((EOFError, ConnectionResetError)):
            hung.readLine(timeout=5)
        probe = [identify(oneShot(server.port, "id")) for _ in range(40)]
        self.assertIn((1, replacement), {(w, p) for w, p, _ in probe})
        # Only the hung worker was killed.
        self.assertEqual(server.stopGracefully(), 0, server.log())
        self.assertEqual(server.lines(r"worker 0 \(pid \d+\) sent no ping"), [])
        self.assertEqual(server.lines(r"^WORKERERROR 0 "), [])

    def test_relayedSendToClosedConnection(self) -> None:
        """
        A send to a connection of the other worker that has just closed is
        dropped: C{False} or a silent drop, counted in C{stats()}
        (C{closed_send_count}), no error, and the sender's connection keeps
        working.
        """
        server = self.start()
        server.waitForWorkers(2)
        clients = clientsOnBothWorkers(self, server.port)
        (sender, _, senderFd), (other, _, otherFd) = clients[0], clients[1]
        self.waitForDirectory(sender, {senderFd, otherFd})
        other.close()
        first = sender.request(f"send {otherFd} late")
        self.assertIn(first, ("RESULT True", "RESULT False"))
        gone = waitUntil(lambda: sender.request(f"exists {otherFd}") == "RESULT False", 3, 0.02)
        self.assertTrue(gone)
        self.assertEqual(sender.request(f"send {otherFd} later"), "RESULT False")
        self.assertEqual(sender.request(f"close {otherFd}"), "RESULT False")
        self.assertEqual(identify(sender.request("id"))[2], senderFd)

        def counted() -> bool:
            stats = json.loads(sender.request("stats").split(" ", 1)[1])
            return stats["closed_send_count"] >= 1

        self.assertTrue(waitUntil(counted, 3, 0.05))
        self.assertNoErrors(server)


try:
    socket.socket(socket.AF_INET).close()
    os.stat("/proc/self/cmdline")
except OSError:  # pragma: no cover
    WorkerProcessTests.skip = "needs TCP sockets on 127.0.0.1 and /proc"
