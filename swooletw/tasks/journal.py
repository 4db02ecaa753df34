# -*- test-case-name: tests.test_taskstore -*-
"""
The task journal: nothing accepted is lost (where Swoole drops queued and
running tasks when a process dies).

With C{task_store = "sqlite:PATH"}, every accepted task is written to an
embedded SQLite database before it runs (L{TaskPool.stored
<swooletw.tasks.TaskPool.stored>} fires then, C{serv.taskStored(task_id)}),
and deleted when it has succeeded.  A task that failed is moved to the
C{dead_letters} table instead (L{Journal.deadLetters}): it has run, it is not
retried, and it is kept for someone to look at.  Each row names the process
that holds it.  When that process dies (killed, crashed, or the whole server
with it), its rows are released, and a live process claims them and runs
those tasks again: at least once.  A graceful stop or reload drains the
queue first, so it leaves nothing behind.

The reactor never waits on the journal.  Each process writes from one
thread of its own (L{TaskStore}) with group commit: the writer takes
everything queued, writes it in one transaction, commits, then fires the
Deferreds of that batch on the reactor.  The master, which only releases
the rows of a dead worker, tries once with a short busy timeout and tries
again later if another process holds the journal (L{releaseTasks}).

Task ids are per process (a counter); a row's key is C{"PID.TOKEN:ID"}, the
token random for each process's journal, so keys are unique across the
processes of a server and across restarts.  A task run again gets a new id
in the process that runs it; its key, data and source worker stay.

The database is in WAL mode with C{synchronous=NORMAL}: a committed task
survives the death of any process (it is in the kernel's page cache); only
a power loss may lose the last ones.
"""

from __future__ import annotations

import functools
import json
import os
import queue
import secrets
import sqlite3
import sys
import threading
import time
from contextlib import contextmanager
from itertools import groupby
from typing import Any, Callable, Iterator, NamedTuple

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

__all__ = [
    "Claimed",
    "DeadLetter",
    "Journal",
    "JournalClosed",
    "TaskStore",
    "parseStore",
    "releaseTasks",
]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    key TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    data BLOB NOT NULL,
    src_worker INTEGER NOT NULL,
    owner INTEGER,
    created REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 1
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tasks_released ON tasks (created) WHERE owner IS NULL;
CREATE TABLE IF NOT EXISTS dead_letters (
    key TEXT NOT NULL,
    kind TEXT NOT NULL,
    data BLOB NOT NULL,
    src_worker INTEGER NOT NULL,
    error TEXT NOT NULL,
    failed REAL NOT NULL,
    attempts INTEGER NOT NULL
);
"""

#: the journal of earlier versions (an AUTOINCREMENT id), moved over on open
_OLD_LAYOUT = """
ALTER TABLE tasks RENAME TO tasks_v1;
{schema}
INSERT INTO tasks SELECT 'v1:' || id, kind, data, src_worker, owner, created, attempts FROM tasks_v1 ORDER BY id;
DROP TABLE tasks_v1;
"""


_INSERT = "INSERT INTO tasks (key, kind, data, src_worker, owner, created) VALUES {}", "(?, ?, ?, ?, ?, ?)"
_DELETE = "DELETE FROM tasks WHERE key IN ({})", "?"


@functools.lru_cache(maxsize=32)
def _statement(form: tuple[str, str], count: int) -> str:
    """
    C{form}'s statement for C{count} rows at once.
    """
    sql, row = form
    return sql.format(", ".join([row] * count))


def _pieces(rows: list[Any], most: int = 128) -> Iterator[list[Any]]:
    """
    C{rows} in pieces of at most C{most}, each a power of two: many rows in
    one statement, so the writer thread takes the GIL back once per piece
    (not twice per row, as C{executemany} does, each time waiting for the
    reactor thread to let go), and few statements to prepare.
    """
    start = 0
    while start < len(rows):
        size = min(most, 1 << (len(rows) - start).bit_length() - 1)
        yield rows[start : start + size]
        start += size


def parseStore(value: str) -> str:
    """
    The database path of a C{task_store} setting (C{"sqlite:PATH"}).

    @raise ValueError: for any other form.
    """
    scheme, sep, path = value.partition(":")
    if scheme != "sqlite" or not sep or not path:
        raise ValueError(f"task_store must be 'sqlite:PATH', got {value!r}")
    return path


def _encode(data: Any) -> tuple[str, bytes]:
    if isinstance(data, bytes):
        return "bytes", data
    return "json", json.dumps(data).encode("utf-8")


def _decode(kind: str, raw: bytes) -> Any:
    return bytes(raw) if kind == "bytes" else json.loads(raw)


class Claimed(NamedTuple):
    """
    A released task, taken to run again.
    """

    key: str
    src: int
    data: Any
    attempts: int


class DeadLetter(NamedTuple):
    """
    A task that failed after it was accepted.

    @ivar failed: when (seconds since the epoch).
    @ivar attempts: how many times it was started (more than 1: its
        process died while it ran).
    """

    key: str
    data: Any
    src: int
    error: str
    failed: float
    attempts: int


class JournalClosed(Exception):
    """
    A write asked of a L{TaskStore} after L{TaskStore.close}.
    """


class Journal:
    """
    One synchronous connection to the journal: what the writer thread of a
    L{TaskStore} runs, and what a script may use to look (L{count},
    L{deadLetters}).  Each method is one transaction, or part of the one
    L{transaction} has open.

    @param timeout: how long to wait for another process's write lock.
    """

    def __init__(self, path: str, timeout: float = 30.0) -> None:
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None, timeout=timeout, check_same_thread=False)
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            names = {row[0] for row in self.db.execute("SELECT name FROM sqlite_master")}
            columns = {row[1] for row in self.db.execute("PRAGMA table_info(tasks)")}
            if "id" in columns:
                script = _OLD_LAYOUT.format(schema=_SCHEMA)
            elif not {"tasks", "tasks_released", "dead_letters"} <= names:
                script = _SCHEMA
            else:
                script = ""
            if script:
                with self.transaction():
                    for statement in filter(str.strip, script.split(";")):
                        self.db.execute(statement)
        except BaseException:
            self.db.close()
            raise

    def close(self) -> None:
        """
        Close this connection.
        """
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """
        One write transaction around what runs inside (taking the write
        lock first); inside one already, nothing more.
        """
        if self.db.in_transaction:
            yield
            return
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.rollback()
            raise
        self.db.commit()

    def add(self, key: str, data: Any, srcWorker: int, owner: int) -> None:
        """
        Journal an accepted task held by process C{owner}.
        """
        self.addMany([(key, *_encode(data), srcWorker, owner, time.time())])

    def addMany(self, rows: list[tuple[str, str, bytes, int, int, float]]) -> None:
        """
        Journal tasks: C{(key, kind, encoded data, source worker, owner,
        created)} each.
        """
        with self.transaction():
            for piece in _pieces(rows):
                self.db.execute(_statement(_INSERT, len(piece)), [value for row in piece for value in row])

    def remove(self, key: str) -> None:
        """
        The task has run: forget it.
        """
        self.removeMany([(key,)])

    def removeMany(self, keys: list[tuple[str]]) -> None:
        """
        Forget tasks (each key a 1-tuple).
        """
        with self.transaction():
            for piece in _pieces(keys):
                self.db.execute(_statement(_DELETE, len(piece)), [key for (key,) in piece])

    def fail(self, key: str, error: str) -> None:
        """
        The task ran and failed with C{error}: move it to the dead letters.
        """
        with self.transaction():
            self.db.execute(
                "INSERT INTO dead_letters (key, kind, data, src_worker, error, failed, attempts)"
                " SELECT key, kind, data, src_worker, ?, ?, attempts FROM tasks WHERE key = ?",
                (error, time.time(), key),
            )
            self.db.execute("DELETE FROM tasks WHERE key = ?", (key,))

    def release(self, owner: int | None = None) -> int:
        """
        Hand back the tasks of dead process C{owner} (every task, without
        C{owner}: the server is starting); how many.
        """
        with self.transaction():
            if owner is None:
                cursor = self.db.execute("UPDATE tasks SET owner = NULL WHERE owner IS NOT NULL")
            else:
                cursor = self.db.execute("UPDATE tasks SET owner = NULL WHERE owner = ?", (owner,))
        return cursor.rowcount

    def claim(self, owner: int) -> list[Claimed]:
        """
        Take every released task for process C{owner}, oldest first.
        """
        with self.transaction():
            rows = self.db.execute(
                "SELECT key, src_worker, kind, data, attempts FROM tasks WHERE owner IS NULL ORDER BY created"
            ).fetchall()
            if rows:
                self.db.execute(
                    "UPDATE tasks SET owner = ?, attempts = attempts + 1 WHERE owner IS NULL", (owner,)
                )
        return [Claimed(key, src, _decode(kind, raw), attempts + 1) for key, src, kind, raw, attempts in rows]

    def count(self) -> int:
        """
        Tasks in the journal (waiting or running).
        """
        return int(self.db.execute("SELECT COUNT(*) FROM tasks").fetchone()[0])

    def deadLetters(self, limit: int = 100) -> list[DeadLetter]:
        """
        The C{limit} tasks that failed last, newest first.
        """
        rows = self.db.execute(
            "SELECT key, kind, data, src_worker, error, failed, attempts FROM dead_letters"
            " ORDER BY rowid DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [
            DeadLetter(key, _decode(kind, raw), src, error, failed, attempts)
            for key, kind, raw, src, error, failed, attempts in rows
        ]


#: a L{TaskStore} operation: the L{Journal} method, its arguments, what to
#: call with its result (or a Failure) on the reactor
_Op = tuple[str, tuple[Any, ...], "Callable[[Any], Any] | None"]

#: operations written many rows at once
_MANY = {"add": "addMany", "remove": "removeMany"}


class TaskStore:
    """
    One process's journal, for its task pool (open it after forking).

    Every operation is queued for one writer thread and answered on the
    reactor once its batch is committed (or with the batch's error: all or
    nothing).  Operations run in the order they were asked.

    @cvar useThread: with C{False}, batches are written on the reactor at
        the end of its turn instead (for tests on a fake clock).
    @cvar claimEvery: after L{claim} with C{later}, how often (seconds) the
        writer looks for tasks released since.
    @cvar switchInterval: the longest interpreter switch interval (seconds,
        C{sys.setswitchinterval}) while the writer thread runs.
    @ivar token: this journal's part of its task keys.
    """

    log = Logger()
    useThread = True
    claimEvery = 1.0
    switchInterval = 0.001

    def __init__(self, path: str) -> None:
        self.path = path
        self.journal = Journal(path)
        self.token = f"{os.getpid()}.{secrets.token_hex(3)}"
        #: what was asked in this turn of the reactor, handed to the writer
        #: at its end
        self._outbox: list[_Op] = []
        self._handing: Any = None
        self._queue: queue.SimpleQueue[list[_Op]] = queue.SimpleQueue()
        self._reactor: Any = None
        self._closed = False
        #: (owner, later): keep claiming for that process (writer's own)
        self._watch: tuple[int, Callable[[list[Claimed]], Any]] | None = None
        self._lastClaim = 0.0

    def start(self, reactor: Any) -> None:
        """
        Start writing (what was asked before is written now), firing
        results on C{reactor}.
        """
        if self._reactor is not None:
            return
        self._reactor = reactor
        if self.useThread:
            # The writer takes the GIL back after each SQLite call; with the
            # default 5 ms switch interval a busy reactor makes it wait that
            # long each time, which is what a task's acknowledgement waits for.
            sys.setswitchinterval(min(sys.getswitchinterval(), self.switchInterval))
            threading.Thread(target=self._loop, name="swooletw-journal", daemon=True).start()
        if self._outbox:
            self._handOver()

    def key(self, taskId: int) -> str:
        """
        The journal key of this process's task C{taskId}.
        """
        return f"{self.token}:{taskId}"

    def add(self, key: str, data: Any, srcWorker: int, owner: int, then: Callable[[Any], Any]) -> None:
        """
        Journal an accepted task held by process C{owner}; C{then(None)}
        once it is on disk, or C{then(failure)}, on the reactor (a callback,
        not a Deferred: this is once per task).
        """
        if self._closed:
            then(Failure(JournalClosed(f"the task journal {self.path} is closed")))
        else:
            self._put(("add", (key, *_encode(data), srcWorker, owner, time.time()), then))

    def remove(self, key: str) -> None:
        """
        The task has run: forget it (a write that fails is logged).
        """
        self._tell("remove", key)

    def fail(self, key: str, error: str) -> None:
        """
        The task failed: keep it as a dead letter, with C{error} (a write
        that fails is logged).
        """
        self._tell("fail", key, error)

    def release(self, owner: int | None = None) -> defer.Deferred[int]:
        """
        Hand back the tasks of dead process C{owner} (all, without it);
        fires with how many.
        """
        return self._ask("release", owner)

    def claim(self, owner: int, later: Callable[[list[Claimed]], Any] | None = None) -> defer.Deferred[list[Claimed]]:
        """
        Take every released task for process C{owner}; fires with them
        (L{Claimed}, oldest first).

        @param later: keep claiming: tasks released afterwards (a process
            died) are taken within L{claimEvery} seconds and passed to
            C{later} on the reactor.
        """
        return self._ask("claim", owner, later)

    def count(self) -> defer.Deferred[int]:
        """
        Fires with the number of tasks in the journal.
        """
        return self._ask("count")

    def deadLetters(self, limit: int = 100) -> defer.Deferred[list[DeadLetter]]:
        """
        Fires with the C{limit} tasks that failed last (L{DeadLetter}),
        newest first.
        """
        return self._ask("deadLetters", limit)

    def flushed(self) -> defer.Deferred[None]:
        """
        Fires once everything asked so far is committed.
        """
        return self._ask("flush")

    def close(self) -> None:
        """
        Write what is queued, then close (without waiting for it: a write
        cut short by the process's exit leaves tasks to run again).
        """
        if not self._closed:
            self._closed = True
            if self._reactor is None:
                self.journal.close()
            else:
                self._outbox.append(("close", (), None))
                self._handOver()

    # ------------------------------------------------------------ writer

    def _ask(self, name: str, *args: Any) -> defer.Deferred[Any]:
        if self._closed:
            return defer.fail(JournalClosed(f"the task journal {self.path} is closed"))
        done: defer.Deferred[Any] = defer.Deferred()
        self._put((name, args, done.callback))  # a Failure runs the errbacks
        return done

    def _tell(self, name: str, key: str, *args: Any) -> None:
        if self._closed:
            self.log.warn("task {key} not written ({op}): the journal is closed; it runs again", key=key, op=name)
        else:
            self._put((name, (key, *args), None))

    def _put(self, op: _Op) -> None:
        self._outbox.append(op)
        if self._handing is None and self._reactor is not None:
            self._handing = self._reactor.callLater(0, self._handOver)

    def _handOver(self) -> None:
        """
        Give the writer what this turn of the reactor asked, at once: one
        wake-up of the writer thread per turn, not per operation.
        """
        if self._handing is not None and self._handing.active():
            self._handing.cancel()
        self._handing = None
        batch, self._outbox = self._outbox, []
        if not batch:
            return
        if self.useThread:
            self._queue.put(batch)
        else:
            self._write(batch)

    def _loop(self) -> None:
        while True:
            try:
                batch = self._queue.get(timeout=self.claimEvery if self._watch else None)
            except queue.Empty:
                batch = []
            while True:
                try:
                    batch += self._queue.get_nowait()
                except queue.Empty:
                    break
            if not self._write(batch):
                return

    def _write(self, batch: list[_Op]) -> bool:
        """
        Write one batch in one transaction and hand the results to the
        reactor; C{False} once closed.
        """
        due = self._watch is not None and time.monotonic() - self._lastClaim >= self.claimEvery
        if not batch and not due:
            return True
        results: list[Any] = []
        claimed: list[Claimed] = []
        journal = self.journal
        closing = any(name == "close" for name, _, _ in batch)
        try:
            with journal.transaction():
                for name, ops in groupby(batch, key=lambda op: op[0]):
                    if name in _MANY:
                        ops = list(ops)
                        getattr(journal, _MANY[name])([args for _, args, _ in ops])
                        results.extend([None] * len(ops))
                    else:
                        results.extend(self._run(name, args) for _, args, _ in ops)
                if due and self._watch is not None:
                    claimed = self._claim(self._watch[0])
        except Exception:
            results = [Failure()] * len(batch)
            claimed = []
        if closing:
            journal.close()
        later = self._watch[1] if self._watch is not None and claimed else None
        self._reactor.callFromThread(self._fire, batch, results, later, claimed)
        return not closing

    def _run(self, name: str, args: tuple[Any, ...]) -> Any:
        if name in ("flush", "close"):
            return None
        if name == "claim":
            owner, later = args
            if later is not None:
                self._watch = (owner, later)
            return self._claim(owner)
        return getattr(self.journal, name)(*args)

    def _claim(self, owner: int) -> list[Claimed]:
        self._lastClaim = time.monotonic()
        return self.journal.claim(owner)

    def _fire(
        self,
        batch: list[_Op],
        results: list[Any],
        later: Callable[[list[Claimed]], Any] | None,
        claimed: list[Claimed],
    ) -> None:
        for (name, args, done), result in zip(batch, results):
            if done is not None:
                done(result)
            elif isinstance(result, Failure) and name != "close":
                self.log.failure("task {key}: the journal could not {op} it", result, key=args[0], op=name)
        if later is not None:
            try:
                later(claimed)
            except Exception:
                self.log.failure("running the tasks claimed from the journal failed")


def releaseTasks(path: str, reactor: Any, owner: int | None = None, timeout: float = 0.01, retry: float = 0.1) -> int:
    """
    Hand back the tasks of dead process C{owner} (all, without it) from the
    master's reactor, which must not wait on another process's write lock:
    one try with a busy timeout of C{timeout} seconds; if the journal is
    busy, try again every C{retry} seconds (logged when done).  The journal
    is opened for this alone, so that no SQLite connection is inherited by
    a forked worker.

    @return: how many were released now (0 when it will be later).
    """

    def attempt() -> int | None:
        try:
            journal = Journal(path, timeout=timeout)
            try:
                return journal.release(owner)
            finally:
                journal.close()
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) and "busy" not in str(e):
                raise
            return None

    def later() -> None:
        count = attempt()
        if count is None:
            reactor.callLater(retry, later)
        elif count:
            TaskStore.log.warn(
                "{count} tasks of process {owner} released (the journal was busy); they will run again",
                count=count, owner=owner if owner is not None else "(all)",
            )

    count = attempt()
    if count is None:
        reactor.callLater(retry, later)
        return 0
    return count
