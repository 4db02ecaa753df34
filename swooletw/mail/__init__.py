"""
The task server of tutorial §8 and §14: a TCP server that takes JSON
packets (C{"event"} + fields, ended by C{"\\r\\n"}), answers each with one
JSON line and runs the work as tasks; C{send-mail} sends mail through SMTP
or into a local Maildir.  The default application of C{twistd -n
swoole-tcp}.

 - L{swooletw.mail.taskserver}: L{TaskServer}, L{makeServer}.
 - L{swooletw.mail.events}: the event table (L{Event}).
 - L{swooletw.mail.mailer}: SMTP (with retries) and Maildir delivery.
 - L{swooletw.mail.config}: C{--smtp}, C{--maildir}, the password.
 - L{swooletw.mail.taskclient}: the blocking L{TaskClient}.

Names are imported on first use, so importing this package loads nothing.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "TaskServer", "makeServer", "Event", "EventTable", "InvalidPacket",
    "MailConfig", "TaskClient", "TaskClientError",
]

_WHERE = {
    "TaskServer": "swooletw.mail.taskserver",
    "makeServer": "swooletw.mail.taskserver",
    "Event": "swooletw.mail.events",
    "EventTable": "swooletw.mail.events",
    "InvalidPacket": "swooletw.mail.message",
    "MailConfig": "swooletw.mail.config",
    "TaskClient": "swooletw.mail.taskclient",
    "TaskClientError": "swooletw.mail.taskclient",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'swooletw.mail' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
