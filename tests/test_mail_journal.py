"""
The mail server with a task journal (C{task_store}), on a
L{ServerHarness}: a client is told a task is accepted only once it is on
disk, and a task the journal cannot take is refused, not silently dropped.
"""

from __future__ import annotations

import json
import os
import sqlite3
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from swooletw.mail.config import MailConfig
from swooletw.mail.taskserver import TaskServer
from swooletw.tasks.journal import Journal, TaskStore
from swooletw.testing import HarnessReactor, ServerHarness

MAIL = {"event": "send-mail", "to": "receiver@example.com", "subject": "journalled", "content": "hi"}


def packet(value: Any) -> bytes:
    return json.dumps(value).encode("utf-8") + b"\r\n"


class JournalledReplyTests(SynchronousTestCase):
    """
    Replies wait for the journal (written on the fake reactor's next turn:
    L{TaskStore.useThread} is off).
    """

    def setUp(self) -> None:
        self.patch(TaskStore, "useThread", False)
        self.maildir = os.path.abspath(self.mktemp())
        self.store = os.path.abspath(self.mktemp())
        app = TaskServer("127.0.0.1", 9501, config=MailConfig(maildir=self.maildir), reactor=HarnessReactor())
        app.server.set(worker_num=1, task_store=f"sqlite:{self.store}")
        self.app, self.serv = app, app.server
        self.harness = ServerHarness(app.server)
        self.harness.advance(0)  # the start-up claim
        self.addCleanup(lambda: self.successResultOf(self.harness.stop()))
        self.client = self.harness.connect()

    def replies(self) -> list[dict[str, Any]]:
        data = self.client.read()
        return [json.loads(line) for line in data.split(b"\r\n")[:-1]]

    def sent(self) -> list[str]:
        new = os.path.join(self.maildir, "new")
        return os.listdir(new) if os.path.isdir(new) else []

    def test_okOnceStoredInOrder(self) -> None:
        """
        The accepted reply goes out once the task is in the journal; a
        refusal that follows it in the same read waits its turn.
        """
        self.client.write(packet(MAIL) + packet({"event": "send-mail"}))
        self.assertEqual(self.replies(), [])
        self.assertEqual(self.sent(), [])
        self.harness.advance(0)
        accepted, refused = self.replies()
        self.assertEqual(accepted, {"ok": True, "task_id": 1})
        self.assertIs(refused["ok"], False)
        self.assertEqual(len(self.sent()), 1)

    def test_notStoredIsRefused(self) -> None:
        """
        When the journal cannot take the task the client is told so, the
        error is logged with the task id, and no mail is sent.
        """

        def full(rows: Any) -> None:
            raise sqlite3.OperationalError("database or disk is full")

        self.patch(self.serv.runtime.tasks.store.journal, "addMany", full)
        self.client.write(packet(MAIL))
        self.harness.advance(0)
        self.assertEqual(
            self.replies(),
            [{"ok": False, "error": "the task could not be stored: database or disk is full"}],
        )
        self.assertEqual(len(self.flushLoggedErrors(sqlite3.OperationalError)), 1)
        self.assertEqual(self.sent(), [])
        self.assertEqual(self.serv.stats()["task_failed_count"], 1)

    def test_failedTaskIsDeadLetter(self) -> None:
        """
        A task that fails after it was accepted is logged with its id,
        counted, and kept in the journal's dead letters with its data and
        error.
        """
        self.app.events.register("broken", broken)
        self.client.write(packet({"event": "broken", "image": "a.png"}))
        self.harness.advance(0)
        self.assertEqual(self.replies(), [{"ok": True, "task_id": 1}])
        self.harness.advance(0)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(self.serv.stats()["task_failed_count"], 1)
        journal = Journal(self.store)
        self.addCleanup(journal.close)
        [letter] = journal.deadLetters()
        self.assertEqual(letter.data, {"event": "broken", "image": "a.png", "fd": self.client.fd})
        self.assertEqual((letter.src, letter.error, letter.attempts), (0, "RuntimeError: no such image", 1))
        self.assertEqual(journal.count(), 0)


def broken(serv: Any, taskId: int, src: int, data: Any) -> None:
    raise RuntimeError("no such image")
