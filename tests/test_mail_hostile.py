"""
The hostile packets of a trial of the default app: each C{send-mail}
packet is either refused, naming the field, or accepted and then arrives
intact (parsed back with the email package: subject, body, recipients).
Nothing is accepted and then lost.

L{HOSTILE} is checked at the unit level (L{checkSendMail}, then the
message the task builds), on the in-process L{ServerHarness} with the
Maildir outbox, and against a real C{twistd} by
L{tests.test_mail_process}.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
from dataclasses import dataclass, field
from email.utils import getaddresses
from typing import Any

from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from swooletw.mail.config import MailConfig
from swooletw.mail.message import (
    InvalidPacket,
    bodyAsSent,
    buildMessage,
    checkSendMail,
    envelopeRecipients,
    messageBytes,
)
from swooletw.mail.taskserver import TaskServer
from swooletw.testing import HarnessReactor, ServerHarness

MAIL = {"to": "receiver@example.com", "subject": "just a test", "content": "This is just a test."}

#: The headers of a message built from a packet without C{cc}/C{html}.
HEADERS = ["From", "To", "Subject", "Date", "Message-ID", "MIME-Version",
           "Content-Type", "Content-Transfer-Encoding"]


@dataclass(frozen=True)
class Case:
    """
    One hostile packet: L{MAIL} with C{change}; refused naming
    C{refused}, or (L{None}) accepted and arriving as given.
    """

    name: str
    change: dict[str, Any]
    refused: str | None = None
    #: for an accepted one: the Content-Transfer-Encodings the body may use
    encodings: tuple[str, ...] = field(default=("7bit", "quoted-printable", "base64"))

    def packet(self, marker: str | None = None) -> dict[str, Any]:
        """
        The packet (with C{event}); C{marker} (an address) as its C{cc},
        to find its message in an outbox.
        """
        packet = {"event": "send-mail", **MAIL, **self.change}
        if marker is not None and "cc" not in self.change:
            packet["cc"] = marker
        return packet


LONG_WORDS = " ".join(f"w{i:03}" for i in range(199))            # 994 characters
LONG_MIXED = " ".join(["Grüße aus Köln", "und", "liebe Grüße"] * 24)  # encoded words, folded

HOSTILE = [
    # The 13 kinds of the trial.
    Case("subject U+2028", {"subject": "line one\u2028line two"}, refused="subject"),
    Case("subject U+0085", {"subject": "line one\x85line two"}, refused="subject"),
    Case("subject U+2029", {"subject": "para one\u2029para two"}, refused="subject"),
    Case("lone surrogate in subject", {"subject": "bad \ud800 subject"}, refused="subject"),
    Case("lone surrogate in content", {"content": "bad \ud800 content"}, refused="content"),
    Case("lone surrogate in a display name", {"to": "Bad \ud800 Name <bad@example.com>"}, refused="to"),
    Case("NUL in content", {"content": "before\x00after\n"}, encodings=("quoted-printable", "base64")),
    Case("CR LF injection in subject", {"subject": "hi\r\nBcc: victim@example.com"}, refused="subject"),
    Case("very long subject", {"subject": LONG_WORDS}),
    Case("non-ASCII display name", {"to": "Zoë Ünïcødé <zoe@example.com>"}),
    Case("emoji in subject", {"subject": "Party 🎉 time 👍🏽 👩\u200d💻"}),
    Case("lone CR in content", {"content": "line one\rline two\r\nline three\n"}),
    Case("empty subject", {"subject": ""}),
    # More of the same classes.
    Case("LF injection in subject", {"subject": "hi\nBcc: victim@example.com"}, refused="subject"),
    Case("lone CR in subject", {"subject": "hi\rthere"}, refused="subject"),
    Case("TAB in subject", {"subject": "a\tb"}, refused="subject"),
    Case("C1 control in subject", {"subject": "a\x9bb"}, refused="subject"),
    Case("DEL in subject", {"subject": "a\x7fb"}, refused="subject"),
    Case("U+2028 in a display name", {"to": "Line\u2028Break <lb@example.com>"}, refused="to"),
    Case("CR LF injection in to", {"to": "a@example.com\r\nBcc: victim@example.com"}, refused="to"),
    Case("lone surrogate in cc", {"cc": ["ok@example.com", "Bad \udfff <b@example.com>"]}, refused="cc"),
    Case("lone surrogate in html", {"html": "<p>\ud800</p>"}, refused="html"),
    Case("display name word too long to encode", {"to": "株式会社エヌ・ティ・ティ・データ株式会社 <a@example.com>"},
         refused="to"),
    Case("long non-ASCII subject with spaces", {"subject": LONG_MIXED}),
    Case("long word in subject", {"subject": "x" * 300}),
    Case("subject with leading, trailing and double spaces", {"subject": "  two  spaces  "}),
    Case("subject that looks like an encoded word", {"subject": "=?utf-8?q?Bcc:_victim?="}),
    Case("subject with NBSP and U+3000", {"subject": "a\xa0b\u3000c"}),
    Case("content with U+2028, NEL, VT, ESC and C1",
         {"content": "a\u2028b\x85c\x0bd\x1be\x9bf\n"}, encodings=("quoted-printable", "base64")),
    Case("content with control characters only ASCII", {"content": "bell\x07 and escape\x1b[0m\n"},
         encodings=("quoted-printable",)),
    Case("content with a long line", {"content": "y" * 5000}),
    Case("non-ASCII recipients, folded", {"to": [
        f"Jean Grüße Müller {i} <u{i}@example.com>" if i % 2 else f"Köln 日本 Dupont {i} <u{i}@example.com>"
        for i in range(12)
    ]}),
    Case("display names needing quotes", {"to": ['"Doe, John" <john@example.com>', '"a\\"b" <ab@example.com>',
                                                 '"Zoë, Dr." <zd@example.com>']}),
    Case("html with NUL", {"content": "plain", "html": "<p>a\x00b</p>"}),
]


def recipients(value: Any) -> list[tuple[str, str]]:
    """
    The (display name, address) pairs a C{to}/C{cc} value names.
    """
    return [getaddresses([item])[0] for item in (value if isinstance(value, list) else [value])]


def checkArrived(test: SynchronousTestCase, case: Case, packet: dict[str, Any], raw: bytes) -> None:
    """
    C{raw} (a message file) is the message of C{packet}, intact, and safe
    on any transport.
    """
    test.assertTrue(raw.isascii(), case.name)
    test.assertNotIn(b"\0", raw, case.name)
    test.assertNotIn(b"\r", raw, case.name)
    head, _, _ = raw.partition(b"\n\n")
    test.assertLessEqual(max(map(len, raw.split(b"\n"))), 998, case.name)
    test.assertLessEqual(max(map(len, head.split(b"\n"))), 78, case.name)
    message = email.message_from_bytes(raw, policy=email.policy.default)
    expected = list(HEADERS)
    if "cc" in packet:
        expected.insert(2, "Cc")
    if packet.get("html"):
        expected.remove("Content-Transfer-Encoding")  # a multipart: in each part
    test.assertEqual(sorted(message.keys()), sorted(expected), case.name)
    test.assertEqual(message["Subject"], packet["subject"], case.name)
    test.assertEqual([(a.display_name, a.addr_spec) for a in message["To"].addresses],
                     recipients(packet["to"]), case.name)
    if "cc" in packet:
        test.assertEqual([(a.display_name, a.addr_spec) for a in message["Cc"].addresses],
                         recipients(packet["cc"]), case.name)
    html = packet.get("html", False)
    parts = list(message.iter_parts()) if html else [message]
    test.assertEqual(parts[0].get_content(), bodyAsSent(packet["content"]), case.name)
    test.assertIn(parts[0]["Content-Transfer-Encoding"], case.encodings, case.name)
    if html:
        test.assertEqual(parts[1].get_content(), bodyAsSent(html), case.name)
        test.assertNotEqual(parts[1]["Content-Transfer-Encoding"], "7bit", case.name)


def checkRefused(test: SynchronousTestCase, case: Case, error: str) -> None:
    """
    C{error} names the field C{case} is refused for.
    """
    test.assertIn(f"{case.refused!r}", error, case.name)


class UnitTests(SynchronousTestCase):
    """
    L{checkSendMail} and the message the task builds from its data.
    """

    def test_hostile(self) -> None:
        """
        Each hostile packet is refused naming the field, or its checked
        data makes the message that arrives as given.
        """
        for case in HOSTILE:
            packet = case.packet()
            del packet["event"]
            try:
                data = checkSendMail(packet, "Swoole Mailer <mailer@example.com>")
            except InvalidPacket as e:
                self.assertIsNotNone(case.refused, f"{case.name}: refused: {e}")
                checkRefused(self, case, str(e))
                continue
            self.assertIsNone(case.refused, f"{case.name}: accepted")
            raw = messageBytes(buildMessage(data, "Swoole Mailer <mailer@example.com>"))
            checkArrived(self, case, packet, raw)
            self.assertEqual(envelopeRecipients(data), [address for _, address in recipients(packet["to"])])

    def test_refusalSaysWhat(self) -> None:
        """
        A refusal names the field, the character (as U+XXXX) and where it
        is, and why.
        """
        def error(**change: Any) -> str:
            return str(self.assertRaises(InvalidPacket, checkSendMail, {**MAIL, **change}))

        self.assertEqual(error(subject="ab\u2028c"),
                         "'subject' holds U+2028 (LINE SEPARATOR) at character 2: a header field is one line")
        self.assertEqual(error(subject="x\x85"), "'subject' holds U+0085 (NEL) at character 1: a header field is one line")
        self.assertEqual(error(subject="a\x9b"),
                         "'subject' holds U+009B at character 1: a header field holds no control characters")
        self.assertEqual(
            error(content="\udc80"),
            "'content' holds U+DC80 at character 0: a lone surrogate is not a character"
            " (send a pair for one outside the BMP)",
        )
        self.assertIn("the display name's word", error(to="日本語日本語日本語日本語日本語日本語 <a@example.com>"))

    def test_lineBreaksNormalised(self) -> None:
        """
        CR LF and a lone CR in content are line breaks: the task data holds
        "\\n" line breaks.
        """
        data = checkSendMail({**MAIL, "content": "a\r\nb\rc\nd", "html": "<p>\r\n</p>\r"})
        self.assertEqual((data["content"], data["html"]), ("a\nb\nc\nd", "<p>\n</p>\n"))

    def test_fromOfTheConfiguration(self) -> None:
        """
        The check builds the message with the From it is given: a display
        name that needs encoding is fine.
        """
        data = checkSendMail(MAIL, "Zoë's Mailer <mailer@example.com>")
        raw = messageBytes(buildMessage(data, "Zoë's Mailer <mailer@example.com>"))
        message = email.message_from_bytes(raw, policy=email.policy.default)
        self.assertEqual(message["From"].addresses[0].display_name, "Zoë's Mailer")


class HarnessTests(SynchronousTestCase):
    """
    The hostile packets through a L{TaskServer} on a L{ServerHarness}: every
    reply is a refusal naming the field, or an accepted task whose message
    is in the Maildir outbox, intact.
    """

    def test_hostile(self) -> None:
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        maildir = os.path.abspath(self.mktemp())
        app = TaskServer("127.0.0.1", 9501, config=MailConfig(maildir=maildir), reactor=HarnessReactor())
        app.server.set({"worker_num": 1})
        harness = ServerHarness(app.server)
        self.addCleanup(lambda: self.successResultOf(harness.stop()))
        client = harness.connect()
        packets = [case.packet(f"case{i}@example.com") for i, case in enumerate(HOSTILE)]
        client.write(b"".join(json.dumps(p).encode("utf-8") + b"\r\n" for p in packets))
        replies = [json.loads(line) for line in client.read().split(b"\r\n")[:-1]]
        self.assertEqual(len(replies), len(HOSTILE))

        new = os.path.join(maildir, "new")
        arrived = {}
        for name in os.listdir(new):
            with open(os.path.join(new, name), "rb") as f:
                raw = f.read()
            cc = email.message_from_bytes(raw, policy=email.policy.default)["Cc"]
            arrived[cc.addresses[-1].addr_spec] = raw
        accepted = 0
        for i, (case, packet, reply) in enumerate(zip(HOSTILE, packets, replies)):
            if case.refused is not None:
                self.assertIs(reply["ok"], False, case.name)
                checkRefused(self, case, reply["error"])
                continue
            self.assertEqual(reply, {"ok": True, "task_id": accepted + 1}, case.name)
            accepted += 1
            checkArrived(self, case, packet, arrived.pop(f"case{i}@example.com"))
        self.assertEqual(arrived, {})
        self.assertEqual([e for e in events if e["log_level"] >= LogLevel.warn], [])
