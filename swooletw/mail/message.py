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

L{checkSendMail} runs in the worker before the task is accepted, and
accepts only what the task can build and send as it was given; anything
else is refused naming the field:

 - Lone surrogates (U+D800 to U+DFFF, which JSON's C{"\\ud800"} escape
   can make) are refused in every field: they are not characters and
   cannot be encoded.
 - Header fields (C{subject}; C{to} and C{cc}, display names included)
   are one line of text.  Control characters (C0, TAB, CR and LF
   included; DEL; C1, U+0085 NEL included) and the line and paragraph
   separators U+2028 and U+2029 are refused rather than folded into
   something the client did not send, and cannot start a new header.
   Every other character arrives as sent: plain ASCII words are written
   as they are (an ASCII display name that needs it as a quoted string),
   anything else as RFC 2047 encoded words (UTF-8).  An encoded word is at
   most 75 characters, and a display name is split into encoded words
   only between its words (a reader, the email package's included, may
   show a space where a word is split): a display name word too long for
   one (about 45 bytes of UTF-8) is refused.  This module folds these
   headers itself at 78 columns: the email package's folder (Python 3.11)
   loses the spaces between encoded words and can fold the comma between
   two recipients into an encoded word, merging them (CPython gh-144156,
   gh-121284).
 - Bodies (C{content}, an C{html} string): CR LF, a lone CR and a lone LF
   are each a line break (a bare CR or LF is not allowed in a MIME text
   body, RFC 2046 4.1.1); the checked data holds the text with C{"\\n"}
   line breaks, and the body arrives as that text ending with a line break
   (L{bodyAsSent}).  Every other character arrives as sent: a body is
   C{7bit} only when it is printable ASCII and TAB in lines of at most 78
   characters; NUL or another control character makes it
   quoted-printable, non-ASCII text quoted-printable or base64 (UTF-8).
   Never a raw NUL or a bare CR in the message (RFC 2045 2.7, 2.8).
 - Last, the check builds the very message the task builds, serialises
   it as the mailer does and parses it back: a field that would not
   arrive as checked is refused, naming it.
"""

from __future__ import annotations

import re
import unicodedata
from email import message_from_bytes
from email.charset import Charset
from email.message import EmailMessage
from email.policy import EmailPolicy, default as _defaultPolicy
from email.utils import formatdate, getaddresses, make_msgid
from typing import Any, Mapping, Sequence

#: The From address when none is configured.
DEFAULT_FROM = "swooletw@localhost"

__all__ = [
    "InvalidPacket",
    "SEND_MAIL_FIELDS",
    "MAX_RECIPIENTS",
    "parseAddress",
    "checkSendMail",
    "buildMessage",
    "messageBytes",
    "bodyAsSent",
    "envelopeRecipients",
]

MAX_RECIPIENTS = 100
MAX_SUBJECT = 998
SEND_MAIL_FIELDS = ("to", "subject", "content", "cc", "html")

#: Headers folded at 78 columns, "\n" line ends (the SMTP client and Maildir
#: both want them), 7-bit transfer encodings for any server.
POLICY = _defaultPolicy.clone(cte_type="7bit")

#: RFC 5322 2.1.1: lines SHOULD be at most 78 characters (MUST: 998).
_FOLD_AT = 78
#: The longest piece (a word or an encoded word) of the subject, so that
#: "Subject: " and one piece fit in 78 columns.
_PIECE = 66
#: RFC 2047 2: an encoded word is at most 75 characters.
_EW_MAX = 75
_UTF8 = Charset("utf-8")

_LOCAL = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_ADDR_SPEC = re.compile(rf"^{_LOCAL}@{_LABEL}(?:\.{_LABEL})*$")
_ATOMS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?: [A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_WORDS = re.compile(r"[!-~]+(?: [!-~]+)*")

#: Not in a header field: C0 controls (TAB, CR, LF included), DEL, C1
#: controls (NEL included), U+2028, U+2029, lone surrogates.
_NOT_IN_HEADER = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_SURROGATE = re.compile("[\ud800-\udfff]")
#: What str.splitlines() breaks at: each would end a header line.
_BREAKS = frozenset("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
_NAMES = {
    "\x00": "NUL", "\t": "TAB", "\n": "LF", "\x0b": "VT", "\x0c": "FF", "\r": "CR",
    "\x7f": "DEL", "\x85": "NEL",
}
#: ASCII that keeps a body out of 7bit: controls other than TAB and LF.
_BODY_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f]")
_LINE_BREAK = re.compile(r"\r\n?")


class InvalidPacket(ValueError):
    """
    A packet the server refuses; the message is sent back to the client.
    """


def _checkText(value: str, field: str, header: bool) -> None:
    """
    Refuse lone surrogates, and in a header field the characters of
    L{_NOT_IN_HEADER}, naming C{field}, the character and where it is.
    """
    found = (_NOT_IN_HEADER if header else _SURROGATE).search(value)
    if found is None:
        return
    char = found.group()
    name = _NAMES.get(char) or unicodedata.name(char, "")
    what = f"U+{ord(char):04X}" + (f" ({name})" if name else "")
    if _SURROGATE.match(char):
        why = "a lone surrogate is not a character (send a pair for one outside the BMP)"
    elif char in _BREAKS:
        why = "a header field is one line"
    else:
        why = "a header field holds no control characters"
    raise InvalidPacket(f"{field!r} holds {what} at character {found.start()}: {why}")


def _splitAddress(value: str) -> tuple[str, str]:
    """
    The display name and the bare address of one checked address.
    """
    return getaddresses([value])[0]


def parseAddress(value: Any, field: str) -> str:
    """
    Check one address (C{user@example.com} or C{Name <user@example.com>}).

    @return: the address as given, stripped.
    @raise InvalidPacket: naming C{field}.
    """
    if not isinstance(value, str) or not value.strip():
        raise InvalidPacket(f"{field!r} must be an email address")
    _checkText(value, field, header=True)
    if len(value) > 320:
        raise InvalidPacket(f"{field!r} is not an email address")
    pairs = getaddresses([value])
    if len(pairs) != 1 or not _ADDR_SPEC.fullmatch(pairs[0][1]) or len(pairs[0][1]) > 254:
        raise InvalidPacket(f"{field!r} is not an email address: {value[:80]!r}")
    _addressPieces(value, field)
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


def _lineBreaks(text: str) -> str:
    """
    C{text} with each CR LF and lone CR made a LF.
    """
    return _LINE_BREAK.sub("\n", text)


def _samePhrase(name: str, address: str) -> tuple[str, str]:
    """
    A display name and address, each run of white space in the name made
    one space, as RFC 5322 (3.2.2) reads a phrase: what L{checkSendMail}
    compares.  The email package (3.11) reads a display name's white space
    loosely: the space between two encoded words as text (RFC 2047 6.2:
    it is not; L{buildMessage} puts one there only in a run of words too
    long for one encoded word), and a space followed by other white space
    (U+00A0, U+3000) as one space.
    """
    return " ".join(name.split()), address


def bodyAsSent(text: str) -> str:
    """
    The text a body built from checked C{text} arrives as: "\\n" line
    breaks, ending with one.
    """
    text = _lineBreaks(text)
    return text if text.endswith("\n") else text + "\n"


def checkSendMail(packet: Mapping[str, Any], mailFrom: str = DEFAULT_FROM) -> dict[str, Any]:
    """
    Check a C{send-mail} packet (without its C{event}), then build the
    message from it with C{mailFrom} and check it arrives as given (see the
    module docstring).

    @return: the task data: C{to} and C{cc} as lists, C{subject},
        C{content} and an C{html} string with "\\n" line breaks, C{html}.
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
    _checkText(subject, "subject", header=True)
    if len(subject) > MAX_SUBJECT:
        raise InvalidPacket(f"'subject' must be one line of at most {MAX_SUBJECT} characters")
    content = _text(packet, "content")
    _checkText(content, "content", header=False)
    html = packet.get("html", False)
    if not isinstance(html, (bool, str)):
        raise InvalidPacket("'html' must be true, false or an HTML string")
    if isinstance(html, str):
        _checkText(html, "html", header=False)
        html = _lineBreaks(html)
    data = {"to": to, "cc": cc, "subject": subject, "content": _lineBreaks(content), "html": html}
    _checkArrives(data, mailFrom)
    return data


def _checkArrives(data: Mapping[str, Any], mailFrom: str) -> None:
    """
    Build and serialise the message of checked C{data} as the task will,
    parse it back, and refuse (naming the field) what would not arrive as
    given.  With the rules of L{checkSendMail} this finds nothing: it is
    the guarantee that an accepted packet is never lost or changed by the
    email package.
    """
    try:
        raw = messageBytes(buildMessage(data, mailFrom))
    except InvalidPacket:
        raise
    except (ValueError, UnicodeError) as e:
        raise InvalidPacket(f"the message cannot be built: {e}") from None
    if not raw.isascii() or b"\0" in raw or b"\r" in raw or max(map(len, raw.split(b"\n"))) > 998:
        raise InvalidPacket("the message cannot be encoded safely")
    parsed = message_from_bytes(raw, policy=_defaultPolicy)
    if parsed["Subject"] != data["subject"]:
        raise InvalidPacket("'subject' cannot be sent intact")
    for field, header in (("to", "To"), ("cc", "Cc")):
        got = [(a.display_name, a.addr_spec) for a in parsed[header].addresses] if data[field] else []
        if [_samePhrase(*pair) for pair in got] != [_samePhrase(*_splitAddress(v)) for v in data[field]]:
            raise InvalidPacket(f"{field!r} cannot be sent intact")
    html = data["html"]
    bodies = [("html" if html is True else "content", data["content"])]
    if isinstance(html, str) and html:
        bodies.append(("html", html))
    parts = list(parsed.iter_parts()) if parsed.is_multipart() else [parsed]
    for (field, text), part in zip(bodies, parts):
        if part.get_content() != bodyAsSent(text):
            raise InvalidPacket(f"{field!r} cannot be sent intact")


class _FoldedHeader(str):
    """
    A header value folded by this module: to the email package it is a
    header object (it has C{name} and C{fold}; see
    L{EmailPolicy.header_store_parse}), which its folder leaves alone; as a
    string it is the value as given.
    """

    name: str

    def __new__(cls, name: str, value: str, pieces: Sequence[str]) -> _FoldedHeader:
        self = super().__new__(cls, value)
        self.name = name
        self._pieces = tuple(pieces)
        return self

    def fold(self, *, policy: EmailPolicy) -> str:
        """
        C{Name: piece piece}, a piece moved to a continuation line where
        the line would pass 78 columns.
        """
        lines = [f"{self.name}:"]
        for index, piece in enumerate(self._pieces):
            if index and len(lines[-1]) + 1 + len(piece) > _FOLD_AT:
                lines.append(" " + piece)
            else:
                lines[-1] += " " + piece
        return policy.linesep.join(lines) + policy.linesep


def _encodedWord(text: str) -> str:
    """
    C{text} as one RFC 2047 encoded word (UTF-8, Q or B, whichever is
    shorter; Q encodes all but letters, digits and C{-!*+/}, so the word
    may stand in a display name too).
    """
    return _UTF8.header_encode(text)


def _encodedWords(text: str, longest: int, splitWords: bool) -> list[str] | None:
    """
    C{text} as encoded words of at most C{longest} characters, split after
    a space (which stays in the word before: white space between two
    encoded words is not text); inside a word only where one word does not
    fit, at a character, if C{splitWords}, else L{None}.
    """
    pieces: list[str] = []
    current = ""
    for chunk in re.findall(r" +|[^ ]+ *", text):
        if len(_encodedWord(current + chunk)) <= longest:
            current += chunk
            continue
        if current:
            pieces.append(_encodedWord(current))
            current = ""
        if len(_encodedWord(chunk)) <= longest:
            current = chunk
            continue
        if not splitWords:
            return None
        for char in chunk:
            if current and len(_encodedWord(current + char)) > longest:
                pieces.append(_encodedWord(current))
                current = ""
            current += char
    if current:
        pieces.append(_encodedWord(current))
    return pieces


def _textPieces(text: str) -> list[str]:
    """
    The subject: its words when it is printable ASCII words with single
    spaces, none looking like an encoded word (C{=?}) and none too long for
    a line; else all of it as encoded words.
    """
    words = text.split(" ")
    if _WORDS.fullmatch(text) and "=?" not in text and max(map(len, words)) <= _PIECE:
        return words
    return _encodedWords(text, _PIECE, splitWords=True) or []


def _namePieces(name: str, field: str) -> list[str]:
    """
    A display name: as it is when it is ASCII atoms, a quoted string when
    it is other ASCII; else its ASCII atoms as they are and each run of
    other words as encoded words, split only between words (a reader, the
    email package's included, may show a space where a word is split).

    @raise InvalidPacket: for a word too long for one encoded word.
    """
    if name.isascii() and "=?" not in name:
        if _ATOMS.fullmatch(name):
            return name.split(" ")
        return ['"' + re.sub(r'(["\\])', r"\\\1", name) + '"']
    pieces: list[str] = []
    run: list[str] = []

    def flush() -> None:
        if run:
            words = _encodedWords(" ".join(run), _EW_MAX, splitWords=False)
            if words is None:
                longest = max(run, key=lambda w: len(_encodedWord(w)))
                raise InvalidPacket(
                    f"{field!r}: the display name's word {longest[:20]!r} is too long for an "
                    f"encoded word (RFC 2047: {_EW_MAX} characters, about 45 bytes of UTF-8)"
                )
            pieces.extend(words)
            run.clear()

    for word in name.split(" "):
        if _ATOMS.fullmatch(word) and "=?" not in word:
            flush()
            pieces.append(word)
        else:
            run.append(word)
    flush()
    return pieces


def _addressPieces(value: str, field: str) -> list[str]:
    """
    One checked address: its display name (L{_namePieces}), then
    C{<address>}; or the bare address.
    """
    name, address = _splitAddress(value)
    if not name:
        return [address]
    return _namePieces(name, field) + [f"<{address}>"]


def _addressHeader(name: str, values: Sequence[str], field: str) -> _FoldedHeader:
    pieces: list[str] = []
    for index, value in enumerate(values):
        address = _addressPieces(value, field)
        if index < len(values) - 1:
            address[-1] += ","
        pieces += address
    return _FoldedHeader(name, ", ".join(values), pieces)


def _transferEncoding(text: str) -> str | None:
    """
    Quoted-printable for ASCII text holding NUL or another control
    character (the email package would send it 7bit); else L{None}, the
    email package's choice (7bit for printable ASCII in short lines,
    quoted-printable or base64 otherwise).
    """
    return "quoted-printable" if text.isascii() and _BODY_CONTROL.search(text) else None


def buildMessage(data: Mapping[str, Any], mailFrom: str) -> EmailMessage:
    """
    The message for checked task data (see L{checkSendMail}).
    """
    message = EmailMessage(policy=POLICY)
    message["From"] = _addressHeader("From", [mailFrom], "mail-from")
    message["To"] = _addressHeader("To", data["to"], "to")
    if data["cc"]:
        message["Cc"] = _addressHeader("Cc", data["cc"], "cc")
    message["Subject"] = _FoldedHeader("Subject", data["subject"], _textPieces(data["subject"]))
    message["Date"] = formatdate(localtime=True)
    domain = _splitAddress(mailFrom)[1].rpartition("@")[2]
    message["Message-ID"] = make_msgid(domain=domain)
    content = _lineBreaks(data["content"])
    html = data["html"]
    if html is True:
        message.set_content(content, subtype="html", cte=_transferEncoding(content))
    else:
        message.set_content(content, cte=_transferEncoding(content))
        if isinstance(html, str) and html:
            html = _lineBreaks(html)
            message.add_alternative(html, subtype="html", cte=_transferEncoding(html))
    return message


def messageBytes(message: EmailMessage) -> bytes:
    """
    The message as bytes with "\\n" line ends.
    """
    return message.as_bytes(policy=POLICY)


def envelopeRecipients(data: Mapping[str, Any]) -> list[str]:
    """
    The bare addresses of C{to} and C{cc}, for the SMTP envelope: the
    addresses the headers name (each parsed on its own, as
    L{buildMessage} does).
    """
    return [_splitAddress(value)[1] for value in [*data["to"], *data["cc"]]]


def envelopeSender(mailFrom: str) -> str:
    """
    The bare address of the From.
    """
    return _splitAddress(mailFrom)[1]
