"""
Tests for the mail task server's protocol (L{swooletw.mail.taskserver},
L{swooletw.mail.events}, L{swooletw.mail.message}) on a L{ServerHarness}:
in-memory clients, a synchronous stand-in for the task threads, the
Maildir outbox in a temporary directory.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import threading
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from swooletw.mail.config import MailConfig
from swooletw.mail.events import Event, EventTable
from swooletw.mail.message import InvalidPacket, buildMessage, checkSendMail
from swooletw.mail.taskserver import TaskServer, appOf
from swooletw.api import Server
from swooletw.testing import HarnessReactor, ServerHarness

MAIL = {"event": "send-mail", "to": "receiver@example.com", "subject": "just a test",
        "content": "This is just a test."}


def packet(value: Any) -> bytes:
    """
    C{json_encode($data) . "\\r\\n"}.
    """
    return json.dumps(value).encode("utf-8") + b"\r\n"


class _HarnessTestCase(SynchronousTestCase):
    """
    A mail server on a harness, its outbox under the test's temp dir.
    """

    def setUp(self) -> None:
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.maildir = os.path.abspath(self.mktemp())

    def start(self, events: Any = None, **settings: Any) -> tuple[TaskServer, Any]:
        """
        Start a L{TaskServer} (one process) and connect a client.
        """
        app = TaskServer("127.0.0.1", 9501, config=MailConfig(maildir=self.maildir),
                         events=events, reactor=HarnessReactor())
        app.server.set(dict({"worker_num": 1}, **settings))
        harness = ServerHarness(app.server)
        self.addCleanup(lambda: self.successResultOf(harness.stop()))
        return app, harness.connect()

    def replies(self, client: Any) -> list[dict[str, Any]]:
        """
        The JSON lines the server sent since the last call.
        """
        data = client.read()
        self.assertTrue(data.endswith(b"\r\n"), data)
        return [json.loads(line) for line in data.split(b"\r\n")[:-1]]

    def logged(self) -> list[str]:
        return [formatEvent(e) for e in self.events]

    def outbox(self) -> list[email.message.EmailMessage]:
        """
        The messages in the outbox's C{new/}, parsed.
        """
        new = os.path.join(self.maildir, "new")
        messages = []
        for name in sorted(os.listdir(new)):
            with open(os.path.join(new, name), "rb") as f:
                messages.append(email.message_from_binary_file(f, policy=email.policy.default))
        return messages


class ReplyTests(_HarnessTestCase):
    """
    Every packet gets one JSON line back.
    """

    def test_accepted(self) -> None:
        """
        A valid send-mail packet is answered C{{"ok": true, "task_id": 1}}
        and the message lands in the outbox's new/.
        """
        _, client = self.start()
        client.write(packet(MAIL))
        self.assertEqual(self.replies(client), [{"ok": True, "task_id": 1}])
        [message] = self.outbox()
        self.assertEqual(message["To"], "receiver@example.com")
        self.assertEqual(message["Subject"], "just a test")
        self.assertEqual(message.get_content(), "This is just a test.\n")
        self.assertEqual(os.listdir(os.path.join(self.maildir, "tmp")), [])

    def test_taskIdsCount(self) -> None:
        """
        Three packets in one write: three replies, task ids 1, 2, 3.
        """
        _, client = self.start()
        client.write(packet(MAIL) * 3)
        self.assertEqual([r["task_id"] for r in self.replies(client)], [1, 2, 3])
        self.assertEqual(len(self.outbox()), 3)

    def test_malformedJSON(self) -> None:
        """
        Malformed JSON is refused, saying so; the connection stays usable.
        """
        _, client = self.start()
        client.write(b'{"event": "send-mail", \r\n')
        [reply] = self.replies(client)
        self.assertIs(reply["ok"], False)
        self.assertIn("malformed JSON", reply["error"])
        client.write(packet(MAIL))
        self.assertEqual(self.replies(client), [{"ok": True, "task_id": 1}])

    def test_notUTF8(self) -> None:
        """
        Bytes that are not UTF-8 are malformed JSON.
        """
        _, client = self.start()
        client.write(b'{"event": "\xff"}\r\n')
        self.assertEqual(self.replies(client), [{"ok": False, "error": "malformed JSON: not UTF-8"}])

    def test_notAnObject(self) -> None:
        """
        JSON that is not an object (a list, a string, nesting too deep) is
        refused.
        """
        _, client = self.start()
        client.write(packet([MAIL]) + packet("send-mail") + b"[" * 100000 + b"\r\n")
        replies = self.replies(client)
        self.assertEqual([r["ok"] for r in replies], [False] * 3)
        self.assertEqual(replies[0]["error"], "a packet must be a JSON object")
        self.assertIn("malformed JSON", replies[2]["error"])

    def test_emptyPacket(self) -> None:
        """
        A bare C{\\r\\n} is refused.
        """
        _, client = self.start()
        client.write(b"\r\n")
        [reply] = self.replies(client)
        self.assertIn("empty packet", reply["error"])

    def test_missingEvent(self) -> None:
        """
        A packet without C{event} is refused with "missing 'event'".
        """
        _, client = self.start()
        client.write(packet({"to": "a@example.com"}))
        self.assertEqual(self.replies(client), [{"ok": False, "error": "missing 'event'"}])

    def test_eventNotString(self) -> None:
        """
        A non-string C{event} is refused.
        """
        _, client = self.start()
        client.write(packet({"event": ["send-mail"]}))
        self.assertEqual(self.replies(client), [{"ok": False, "error": "'event' must be a string"}])

    def test_unknownEvent(self) -> None:
        """
        An event that is not in the table is refused, naming it and the
        known ones; a method name of the server is not an event.
        """
        _, client = self.start()
        client.write(packet({"event": "nope"}) + packet({"event": "onReceive"}) + packet({"event": "__init__"}))
        replies = self.replies(client)
        self.assertEqual(replies[0], {"ok": False, "error": "unknown event 'nope' (known: send-mail)"})
        self.assertEqual([r["ok"] for r in replies], [False] * 3)
        self.assertFalse(os.path.exists(self.maildir))

    def test_missingFields(self) -> None:
        """
        Each missing required field is named.
        """
        _, client = self.start()
        for field in ("to", "subject", "content"):
            client.write(packet({k: v for k, v in MAIL.items() if k != field}))
            self.assertEqual(self.replies(client), [{"ok": False, "error": f"missing field {field!r}"}])
        self.assertFalse(os.path.exists(self.maildir))

    def test_invalidFields(self) -> None:
        """
        A C{to} that is not an address, a header injection in C{to} or
        C{subject}, a non-string content, an unknown field: refused.
        """
        _, client = self.start()
        bad = [
            {"to": "not an address"},
            {"to": "a@example.com\r\nBcc: victim@example.com"},
            {"to": "a@example.com, b@example.com"},
            {"to": []},
            {"cc": ["ok@example.com", "@example.com"]},
            {"subject": "x\nBcc: victim@example.com"},
            {"content": 42},
            {"html": 1},
            {"from": "boss@example.com"},
        ]
        errors = []
        for change in bad:
            client.write(packet({**MAIL, **change}))
            [reply] = self.replies(client)
            self.assertIs(reply["ok"], False, change)
            errors.append(reply["error"])
        self.assertEqual(errors[0], "'to' is not an email address: 'not an address'")
        self.assertEqual(errors[-1], "unknown field 'from' (send-mail takes to, subject, content, cc, html)")
        self.assertFalse(os.path.exists(self.maildir))

    def test_queueFull(self) -> None:
        """
        With C{task_queue_max} tasks running, the next packet is refused
        (C{serv.task} returned C{False}); once one finishes, accepted again.
        """
        gate: Deferred[None] = Deferred()

        async def slow(serv: Server, taskId: int, src: int, data: Any) -> str:
            await gate
            return "done"

        _, client = self.start(events={"slow": slow}, task_queue_max=2)
        client.write(packet({"event": "slow"}) * 2 + packet(MAIL))
        replies = self.replies(client)
        self.assertEqual(replies[:2], [{"ok": True, "task_id": 1}, {"ok": True, "task_id": 2}])
        self.assertEqual(replies[2], {"ok": False, "error": "task queue full (task_queue_max): try again later"})
        gate.callback(None)
        client.write(packet(MAIL))
        self.assertEqual(self.replies(client), [{"ok": True, "task_id": 3}])

    def test_noTaskWorkers(self) -> None:
        """
        With C{task_worker_num} 0 (set by the operator) a packet is refused
        with the reason, not dropped.
        """
        _, client = self.start(task_worker_num=0)
        client.write(packet(MAIL))
        [reply] = self.replies(client)
        self.assertIs(reply["ok"], False)
        self.assertIn("task_worker_num", reply["error"])


class SendMailTaskTests(_HarnessTestCase):
    """
    The send-mail task: the message built, the result reaching finish.
    """

    def test_headersAndCc(self) -> None:
        """
        From is the configured address; To and Cc list every recipient;
        Date and Message-ID are set.
        """
        _, client = self.start()
        client.write(packet({**MAIL, "to": ["Zoë <a@example.com>", "b@example.com"], "cc": "c@example.com"}))
        self.assertIs(self.replies(client)[0]["ok"], True)
        [message] = self.outbox()
        self.assertEqual(message["From"], "swooletw@localhost")
        self.assertEqual(message["To"], "Zoë <a@example.com>, b@example.com")
        self.assertEqual(message["Cc"], "c@example.com")
        self.assertTrue(message["Date"])
        self.assertTrue(message["Message-ID"].endswith("@localhost>"))

    def test_htmlTrue(self) -> None:
        """
        C{"html": true} sends the content as text/html.
        """
        _, client = self.start()
        client.write(packet({**MAIL, "content": "<p>Hi</p>", "html": True}))
        [message] = self.outbox()
        self.assertEqual(message.get_content_type(), "text/html")
        self.assertEqual(message.get_content(), "<p>Hi</p>\n")

    def test_htmlAlternative(self) -> None:
        """
        An HTML string is sent alongside the plain content.
        """
        _, client = self.start()
        client.write(packet({**MAIL, "html": "<p>This is <b>just</b> a test.</p>"}))
        [message] = self.outbox()
        self.assertEqual(message.get_content_type(), "multipart/alternative")
        parts = [p.get_content_type() for p in message.iter_parts()]
        self.assertEqual(parts, ["text/plain", "text/html"])

    def test_finishLogsResult(self) -> None:
        """
        The task's result (ok, the Maildir path) reaches finish, which logs
        it with the task id.
        """
        _, client = self.start()
        client.write(packet(MAIL))
        finished = [e for e in self.events if e.get("log_format", "").startswith("task {task_id} finished")]
        self.assertEqual(len(finished), 1)
        result = finished[0]["result"]
        self.assertEqual((result["ok"], result["transport"], result["task_id"]), (True, "maildir", 1))
        self.assertTrue(result["path"].startswith(os.path.join(self.maildir, "new")))

    def test_unwritableMaildirReported(self) -> None:
        """
        A Maildir that cannot be written is reported by the task's result
        (ok false), logged, not raised.
        """
        with open(self.maildir, "w") as f:
            f.write("a file, not a directory")
        _, client = self.start()
        client.write(packet(MAIL))
        self.assertEqual(self.replies(client), [{"ok": True, "task_id": 1}])
        failed = [e for e in self.events if e.get("log_format", "").startswith("task {task_id} failed")]
        self.assertEqual(len(failed), 1)
        self.assertIn("Maildir", failed[0]["error"])

    def test_startLogsWhereMailGoes(self) -> None:
        """
        At start the server logs the Maildir (absolute) and the events.
        """
        self.start()
        self.assertIn(f"mail server: mail goes to the Maildir {self.maildir}; events: send-mail", self.logged())


class CustomEventTests(_HarnessTestCase):
    """
    The operator's events, added through the table.
    """

    def test_blockingHandlerInTaskThread(self) -> None:
        """
        A plain handler runs through the task thread pool with Swoole's
        arguments; the data carries the checked fields, C{event} and C{fd};
        its result reaches finish.
        """
        seen = []

        def resize(serv: Server, taskId: int, src: int, data: Any) -> dict[str, Any]:
            seen.append((taskId, src, data, threading.current_thread() is threading.main_thread()))
            return {"ok": True, "size": data["size"] * 2}

        def check(fields: dict[str, Any]) -> dict[str, Any]:
            if not isinstance(fields.get("size"), int):
                raise InvalidPacket("'size' must be an integer")
            return {"size": fields["size"]}

        _, client = self.start(events={"resize": Event(resize, check)})
        client.write(packet({"event": "resize", "size": 21}) + packet({"event": "resize", "size": "x"}))
        self.assertEqual(self.replies(client), [
            {"ok": True, "task_id": 1}, {"ok": False, "error": "'size' must be an integer"},
        ])
        self.assertEqual(seen, [(1, 0, {"size": 21, "event": "resize", "fd": client.fd}, True)])
        finished = [e["result"] for e in self.events if "result" in e]
        self.assertEqual(finished, [{"ok": True, "size": 42}])

    def test_failingHandler(self) -> None:
        """
        A handler that raises fails its task: logged, finish told; the
        server goes on.
        """
        def broken(serv: Server, taskId: int, src: int, data: Any) -> None:
            raise RuntimeError("no such image")

        _, client = self.start(events={"broken": broken})
        client.write(packet({"event": "broken"}) + packet(MAIL))
        self.assertEqual([r["ok"] for r in self.replies(client)], [True, True])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertIn("task 1 failed: no such image", self.logged())
        self.assertEqual(len(self.outbox()), 1)

    def test_checkCrashIsInternalError(self) -> None:
        """
        A check that crashes (a bug) is logged; the client is told of an
        internal error, without details.
        """
        def check(fields: dict[str, Any]) -> dict[str, Any]:
            raise KeyError("oops")

        _, client = self.start(events={"x": Event(lambda *a: None, check)})
        client.write(packet({"event": "x"}))
        self.assertEqual(self.replies(client), [{"ok": False, "error": "internal error while checking the packet"}])
        self.assertEqual(len(self.flushLoggedErrors(KeyError)), 1)


class EventTableTests(SynchronousTestCase):
    """
    L{EventTable}: explicit names only.
    """

    def test_registerAndGet(self) -> None:
        """
        A registered name is found; any other value, including non-strings,
        is not.
        """
        table = EventTable({"ping": lambda *a: "pong"})
        self.assertIsInstance(table.get("ping"), Event)
        self.assertIsNone(table.get("get"))
        self.assertIsNone(table.get(["ping"]))
        self.assertEqual(table.names(), ["ping"])

    def test_duplicateRefused(self) -> None:
        """
        Registering a name twice is an error unless C{replace}.
        """
        table = EventTable({"send-mail": lambda *a: None})
        self.assertRaises(ValueError, table.register, "send-mail", lambda *a: None)
        handler = lambda *a: 1  # noqa: E731
        self.assertIs(table.register("send-mail", handler, replace=True).handler, handler)

    def test_badNamesAndHandlers(self) -> None:
        """
        Names with spaces or control characters, empty or too long, and
        handlers that are not callable are refused.
        """
        table = EventTable()
        for name in ("", "a b", "x\n", "a" * 65, 3):
            self.assertRaises(ValueError, table.register, name, lambda *a: None)
        self.assertRaises(ValueError, table.register, "ok", "not callable")

    def test_appOf(self) -> None:
        """
        L{appOf} finds the L{TaskServer} of its server, and nothing for
        another server.
        """
        app = TaskServer(reactor=HarnessReactor())
        self.assertIs(appOf(app.server), app)
        self.assertIsNone(appOf(Server("127.0.0.1", 0)))

    def test_tutorialSettings(self) -> None:
        """
        The server has the tutorial's settings: two workers, two task
        workers, EOF split on C{\\r\\n}.
        """
        setting = TaskServer(reactor=HarnessReactor()).server.setting
        self.assertEqual(
            (setting["worker_num"], setting["task_worker_num"], setting["open_eof_split"],
             setting["package_eof"], setting["max_request"], setting["task_max_request"]),
            (2, 2, True, b"\r\n", 5000, 5000),
        )


class MessageTests(SynchronousTestCase):
    """
    L{checkSendMail} and L{buildMessage} directly.
    """

    def test_checkedData(self) -> None:
        """
        C{to}/C{cc} become lists; C{html} defaults to false.
        """
        data = checkSendMail({"to": "a@example.com", "subject": "s", "content": "c"})
        self.assertEqual(data, {"to": ["a@example.com"], "cc": [], "subject": "s", "content": "c", "html": False})

    def test_tooManyRecipients(self) -> None:
        """
        More than 100 recipients are refused.
        """
        to = [f"u{i}@example.com" for i in range(101)]
        error = self.assertRaises(InvalidPacket, checkSendMail, {"to": to, "subject": "s", "content": "c"})
        self.assertIn("too many recipients", str(error))

    def test_nonAsciiEncoded(self) -> None:
        """
        Non-ASCII subject and content are encoded for any server (7-bit).
        """
        data = checkSendMail({"to": "a@example.com", "subject": "Grüße", "content": "Grüße aus Köln"})
        raw = buildMessage(data, "sender@example.com").as_bytes()
        self.assertTrue(all(b < 128 for b in raw))
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        self.assertEqual(parsed["Subject"], "Grüße")
        self.assertEqual(parsed.get_content(), "Grüße aus Köln\n")
