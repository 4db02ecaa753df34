# -*- test-case-name: tests.test_mail -*-
"""
The C{send-mail} packet: its fields checked, and the message built.

    {"event": "send-mail", "to": "receiver@example.com",
     "subject": "just a test", "content": "This is just a test."}

 - C{to} (required) and C{cc} (optional): one address or a list of them,
   each C{user@example.com} or C{Name <user@example.com>}; up to
   L{MAX_RECIPIENTS} in all.
 - C{subject} (required): one line, up to 998 characters.
 - C{content} (required): the text of the message.
 - C{html} (optional): C{true} if C{content} is HTML (sent as
   C{text/html}); or a string, an HTML version sent alongside the plain
   C{content} (C{multipart/alternative}).

Anything else in the packet is refused, so a misspelt field is an error
rather than silently dropped.
"""

from __future__ import annotations

import re
from email.message import EmailMessage
from email.policy import default as _defaultPolicy
from email.utils import formatdate, getaddresses, make_msgid
from typing import Any, Mapping

__all__ = [
    "InvalidPacket",
    "SEND_MAIL_FIELDS",
    "MAX_RECIPIENTS",
    "parseAddress",
    "checkSendMail",
    "buildMessage",
    "messageBytes",
    "envelopeRecipients",
]

MAX_RECIPIENTS = 100
MAX_SUBJECT = 998
SEND_MAIL_FIELDS = ("to", "subject", "content", "cc", "html")

#: Headers folded at 78 columns, "\n" line ends (the SMTP client and Maildir
#: both want them), 7-bit transfer encodings for any server.
POLICY = _defaultPolicy.clone(cte_type="7bit")

_LOCAL = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_ADDR_SPEC = re.compile(rf"^{_LOCAL}@{_LABEL}(?:\.{_LABEL})*$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class InvalidPacket(ValueError):
    """
    A packet the server refuses; the message is sent back to the client.
    """


def parseAddress(value: Any, field: str) -> str:
    """
    Check one address (C{user@example.com} or C{Name <user@example.com>}).

    @return: the address as given, stripped.
    @raise InvalidPacket: naming C{field}.
    """
    if not isinstance(value, str) or not value.strip():
        raise InvalidPacket(f"{field!r} must be an email address")
    if _CONTROL.search(value) or len(value) > 320:
        raise InvalidPacket(f"{field!r} is not an email address")
    pairs = getaddresses([value])
    if len(pairs) != 1 or not _ADDR_SPEC.fullmatch(pairs[0][1]) or len(pairs[0][1]) > 254:
        raise InvalidPacket(f"{field!r} is not an email address: {value[:80]!r}")
    return value.strip()


def _addressList(value: Any, field: str) -> list[str]:
    items = value if isinstance(value, list) else [value]
    if not items:
        raise InvalidPacket(f"{field!r} is an empty list")
    return [parseAddress(item, field) for item in items]


def _text(packet: Mapping[str, Any], field: str) -> str:
    if field not in packet:
        raise InvalidPacket(f"missing field {field!r}")
    value = packet[field]
    if not isinstance(value, str):
        raise InvalidPacket(f"{field!r} must be a string")
    return value


def checkSendMail(packet: Mapping[str, Any]) -> dict[str, Any]:
    """
    Check a C{send-mail} packet (without its C{event}).

    @return: the task data: C{to} and C{cc} as lists, C{subject},
        C{content}, C{html}.
    @raise InvalidPacket: for the first missing, unknown or bad field.
    """
    unknown = sorted(set(packet) - set(SEND_MAIL_FIELDS))
    if unknown:
        raise InvalidPacket(
            f"unknown field {unknown[0][:40]!r} (send-mail takes {', '.join(SEND_MAIL_FIELDS)})"
        )
    if "to" not in packet:
        raise InvalidPacket("missing field 'to'")
    to = _addressList(packet["to"], "to")
    cc = _addressList(packet["cc"], "cc") if packet.get("cc") not in (None, []) else []
    if len(to) + len(cc) > MAX_RECIPIENTS:
        raise InvalidPacket(f"too many recipients (at most {MAX_RECIPIENTS})")
    subject = _text(packet, "subject")
    if _CONTROL.search(subject) or len(subject) > MAX_SUBJECT:
        raise InvalidPacket(f"'subject' must be one line of at most {MAX_SUBJECT} characters")
    content = _text(packet, "content")
    html = packet.get("html", False)
    if not isinstance(html, (bool, str)):
        raise InvalidPacket("'html' must be true, false or an HTML string")
    return {"to": to, "cc": cc, "subject": subject, "content": content, "html": html}


def buildMessage(data: Mapping[str, Any], mailFrom: str) -> EmailMessage:
    """
    The message for checked task data (see L{checkSendMail}).
    """
    message = EmailMessage(policy=POLICY)
    message["From"] = mailFrom
    message["To"] = ", ".join(data["to"])
    if data["cc"]:
        message["Cc"] = ", ".join(data["cc"])
    message["Subject"] = data["subject"]
    message["Date"] = formatdate(localtime=True)
    domain = getaddresses([mailFrom])[0][1].rpartition("@")[2]
    message["Message-ID"] = make_msgid(domain=domain)
    html = data["html"]
    if html is True:
        message.set_content(data["content"], subtype="html")
    else:
        message.set_content(data["content"])
        if isinstance(html, str) and html:
            message.add_alternative(html, subtype="html")
    return message


def messageBytes(message: EmailMessage) -> bytes:
    """
    The message as bytes with "\\n" line ends.
    """
    return message.as_bytes(policy=POLICY)


def envelopeRecipients(data: Mapping[str, Any]) -> list[str]:
    """
    The bare addresses of C{to} and C{cc}, for the SMTP envelope.
    """
    return [address for _, address in getaddresses(list(data["to"]) + list(data["cc"]))]


def envelopeSender(mailFrom: str) -> str:
    """
    The bare address of the From.
    """
    return getaddresses([mailFrom])[0][1]
