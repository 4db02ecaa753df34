# -*- test-case-name: tests.test_taskstore -*-
"""
The task journal: nothing accepted is lost (where Swoole drops queued and
running tasks when a process dies).

With C{task_store = "sqlite:PATH"}, every accepted task is written to an
embedded SQLite database before C{task()} returns its id, and deleted when
it has finished (succeeded or failed: a task that raises has run).  Each row
names the process that holds it.  When that process dies (killed, crashed,
or the whole server with it), its rows are released, and the next process to
start its task workers claims every released row and runs those tasks again:
at least once.  A graceful stop or reload drains the queue first, so it
leaves nothing behind.

The database is in WAL mode with C{synchronous=NORMAL}: a committed task
survives the death of any process (it is in the kernel's page cache); only
a power loss may lose the last ones.
"""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

__all__ = ["TaskStore", "parseStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    data BLOB NOT NULL,
    src_worker INTEGER NOT NULL,
    owner INTEGER,
    created REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 1
)
"""


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


class TaskStore:
    """
    One process's connection to the journal (open it after forking).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None, timeout=30, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(_SCHEMA)

    def close(self) -> None:
        """
        Close this connection.
        """
        self.db.close()

    def add(self, data: Any, srcWorker: int, owner: int) -> int:
        """
        Journal an accepted task held by process C{owner}; its id.
        """
        kind, raw = _encode(data)
        cursor = self.db.execute(
            "INSERT INTO tasks (kind, data, src_worker, owner, created) VALUES (?, ?, ?, ?, ?)",
            (kind, raw, srcWorker, owner, time.time()),
        )
        return int(cursor.lastrowid)

    def remove(self, taskId: int) -> None:
        """
        The task has run: forget it.
        """
        self.db.execute("DELETE FROM tasks WHERE id = ?", (taskId,))

    def release(self, owner: int | None = None) -> int:
        """
        Hand back the tasks of a dead process (every task, without
        C{owner}: the server is starting); how many.
        """
        if owner is None:
            cursor = self.db.execute("UPDATE tasks SET owner = NULL WHERE owner IS NOT NULL")
        else:
            cursor = self.db.execute("UPDATE tasks SET owner = NULL WHERE owner = ?", (owner,))
        return cursor.rowcount

    def claim(self, owner: int) -> list[tuple[int, int, Any]]:
        """
        Take every released task for process C{owner}.

        @return: C{(task id, source worker id, data)} for each, oldest first.
        """
        with self.db:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.execute(
                "UPDATE tasks SET owner = ?, attempts = attempts + 1 WHERE owner IS NULL", (owner,)
            )
            rows = self.db.execute(
                "SELECT id, src_worker, kind, data FROM tasks WHERE owner = ? ORDER BY id", (owner,)
            ).fetchall()
        return [(taskId, src, _decode(kind, raw)) for taskId, src, kind, raw in rows]

    def count(self) -> int:
        """
        Tasks in the journal.
        """
        return int(self.db.execute("SELECT COUNT(*) FROM tasks").fetchone()[0])
