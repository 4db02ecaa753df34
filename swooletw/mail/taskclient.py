# -*- test-case-name: tests.test_mail_process -*-
"""
The tutorial's C{TaskClient}: a blocking client of the task server, for
ordinary scripts and web apps.

    from swooletw import TaskClient

    with TaskClient("127.0.0.1", 9501) as client:
        reply = client.sendMail("receiver@example.com", "just a test", "This is just a test.")
    if not reply["ok"]:
        raise SystemExit(reply["error"])

Unlike PHP's, it reads the server's reply: C{sendData} returns it as a
dict (C{{"ok": True, "task_id": 1}} or C{{"ok": False, "error": ...}}).
"""

from __future__ import annotations

import json
from typing import Any

from swooletw.client import Client
from swooletw.constants import SOCK_TCP

__all__ = ["TaskClient", "TaskClientError"]

EOF = b"\r\n"


class TaskClientError(Exception):
    """
    The server could not be reached, or its reply could not be read.

    @ivar errCode: the client's C{errCode} (an C{errno} value), or 0.
    """

    def __init__(self, message: str, errCode: int = 0) -> None:
        super().__init__(message)
        self.errCode = errCode


class TaskClient:
    """
    Connects on creation, as the PHP class does.

    @cvar EVENT_TYPE_SEND_MAIL: the C{send-mail} event name.
    @raise TaskClientError: when it cannot connect.
    """

    EVENT_TYPE_SEND_MAIL = "send-mail"

    def __init__(self, host: str = "127.0.0.1", port: int = 9501, timeout: float = 5.0) -> None:
        self.client = Client(SOCK_TCP)
        self.client.set({"open_eof_split": True, "package_eof": EOF})
        if not self.client.connect(host, port, timeout):
            raise TaskClientError(
                f"swoole client connect failed: {self.client.errMsg} "
                f"({host}:{port}, errCode {self.client.errCode})",
                self.client.errCode,
            )

    def sendData(self, data: dict[str, Any]) -> dict[str, Any]:
        """
        Send one packet and return the server's reply.

        @raise TaskClientError: when sending fails or no reply comes.
        """
        if self.client.send(self.togetherDataByEof(data)) is False:
            raise TaskClientError(f"send failed: {self.client.errMsg}", self.client.errCode)
        packet = self.client.recv()
        if packet is False:
            raise TaskClientError(f"no reply: {self.client.errMsg}", self.client.errCode)
        if not packet:
            raise TaskClientError("the server closed the connection without a reply")
        try:
            reply = json.loads(packet[: -len(EOF)])
        except ValueError as e:
            raise TaskClientError(f"unreadable reply {packet[:80]!r}: {e}") from e
        if not isinstance(reply, dict):
            raise TaskClientError(f"unexpected reply {packet[:80]!r}")
        return reply

    def sendMail(self, to: str | list[str], subject: str, content: str, **fields: Any) -> dict[str, Any]:
        """
        Ask for a mail (C{fields}: C{cc}, C{html}); returns the reply.
        """
        packet = {"event": self.EVENT_TYPE_SEND_MAIL, "to": to, "subject": subject, "content": content}
        packet.update(fields)
        return self.sendData(packet)

    @staticmethod
    def togetherDataByEof(data: dict[str, Any]) -> bytes:
        """
        The packet: C{json_encode($data) . "\\r\\n"} (JSON escapes every
        line break, so the marker only ends packets).

        @raise TypeError: for anything but a dict.
        """
        if not isinstance(data, dict):
            raise TypeError(f"sendData takes a dict, not {type(data).__name__}")
        return json.dumps(data).encode("utf-8") + EOF

    def close(self) -> None:
        """
        Close the connection.
        """
        if self.client.isConnected():
            self.client.close()

    def __enter__(self) -> TaskClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
