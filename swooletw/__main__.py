"""
C{python -m swooletw}: command-line tools.

    python -m swooletw send-mail --to receiver@example.com \\
        --subject "just a test" --content "This is just a test." \\
        [--cc someone@example.com] [--html] [--host 127.0.0.1] [--port 9501]

C{send-mail} asks the mail server (C{twistd -n swoole-tcp}) to send a
message and prints its reply, one JSON line.  Exit status: 0 when the
server accepted the task, 1 when it refused it (C{{"ok": false, ...}}),
2 for a usage error, 3 when the server could not be reached.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any, NoReturn, Sequence, TextIO

__all__ = ["main"]

EXIT_REFUSED = 1
EXIT_UNREACHABLE = 3


class _Parser(argparse.ArgumentParser):
    """
    An argument parser whose usage error is one line on stderr (exit status
    2), pointing at C{--help} instead of repeating the usage.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _port(text: str) -> int:
    if not (text.isdigit() and 1 <= int(text) <= 65535):
        raise argparse.ArgumentTypeError(f"must be a port number from 1 to 65535, got {text!r}")
    return int(text)


def _host(text: str) -> str:
    if not text or not text.isprintable() or any(c.isspace() for c in text):
        raise argparse.ArgumentTypeError(f"must be a host name or IP address, got {text!r}")
    return text


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    # NaN compares false with everything; past a day, sockets overflow.
    if not 0 < seconds <= 86400:
        raise argparse.ArgumentTypeError(f"must be a number of seconds from 0 to 86400, got {text!r}")
    return seconds


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m swooletw", description="swooletw command-line tools.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    mail = commands.add_parser(
        "send-mail",
        help="ask the mail server to send a message",
        description="Ask the mail server (twistd -n swoole-tcp) to send a message; print its reply.",
        epilog="Exit status: 0 accepted, 1 refused by the server, 2 usage error, 3 server unreachable.",
    )
    mail.add_argument("--to", action="append", required=True, help="recipient (repeatable)")
    mail.add_argument("--cc", action="append", default=[], help="copy to (repeatable)")
    mail.add_argument("--subject", required=True)
    mail.add_argument("--content", required=True, help="the text; '-' reads it from standard input")
    mail.add_argument("--html", action="store_true", help="the content is HTML")
    mail.add_argument("--host", type=_host, default="127.0.0.1", help="server host (default: 127.0.0.1)")
    mail.add_argument("--port", type=_port, default=9501, help="server port (default: 9501)")
    mail.add_argument("--timeout", type=_seconds, default=5.0, help="seconds to wait (default: 5)")
    return parser


def sendMail(args: argparse.Namespace, stdin: TextIO, stdout: TextIO, stderr: TextIO) -> int:
    """
    The C{send-mail} command; returns the exit status.
    """
    from swooletw.mail.taskclient import TaskClient, TaskClientError

    content = stdin.read() if args.content == "-" else args.content
    fields: dict[str, Any] = {"html": True} if args.html else {}
    if args.cc:
        fields["cc"] = args.cc
    to = args.to[0] if len(args.to) == 1 else args.to
    try:
        with TaskClient(args.host, args.port, args.timeout) as client:
            reply = client.sendMail(to, args.subject, content, **fields)
    except TaskClientError as e:
        stderr.write(f"send-mail: {e}\n")
        return EXIT_UNREACHABLE
    stdout.write(json.dumps(reply) + "\n")
    return 0 if reply.get("ok") is True else EXIT_REFUSED


def main(argv: Sequence[str] | None = None, stdin: TextIO = sys.stdin,
         stdout: TextIO = sys.stdout, stderr: TextIO = sys.stderr) -> int:
    """
    Run a command; returns the exit status (argparse exits with 2 on a
    usage error).
    """
    args = _parser().parse_args(argv)
    if args.command == "send-mail":
        return sendMail(args, stdin, stdout, stderr)
    return 2  # pragma: no cover (argparse refuses other commands)


if __name__ == "__main__":
    sys.exit(main())
