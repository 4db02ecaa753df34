# -*- test-case-name: tests.test_mail -*-
"""
Tutorial §14: the asynchronous mail server (C{TaskServer} + C{TaskRun}),
the default application of C{twistd -n swoole-tcp}.

Each packet is a JSON object and C{"\\r\\n"}; its C{"event"} is looked up
in the event table (L{swooletw.mail.events}), its fields are checked in the
worker, and the work is handed to a task (C{serv.task}).  Every packet
gets one JSON line back, in order: a refusal at once, the accepted reply
once the task is in the journal (C{serv.taskStored}; at once without a
C{task_store}), so that no task a client was told is accepted is lost when
a process is killed:

    {"ok": true, "task_id": 1}
    {"ok": false, "error": "missing field 'to'"}

C{send-mail} runs as an C{async def} task on the reactor, through Twisted's
SMTP client or into the Maildir outbox (L{swooletw.mail.mailer}); the
task's result (C{{"ok": ..., "error": ..., "permanent": ...}}) reaches
C{finish}, which logs it.

Add your own events for C{--app}::

    # myproject/tasks.py
    from swooletw.mail import makeServer

    def resize(serv, task_id, src_worker_id, data):   # runs in a task thread
        ...

    def makeMyServer():
        return makeServer(events={"resize-image": resize})

    twistd -n swoole-tcp --app myproject.tasks:makeMyServer --smtp ...
"""

from __future__ import annotations

import json
from collections import deque
from typing import Any, Callable, Mapping

from twisted.logger import Logger
from twisted.python.failure import Failure

from swooletw.mail.config import ConfigError, MailConfig, configFromOptions, givenMailOptions
from swooletw.mail.events import Event, EventTable, runHandler
from swooletw.mail.mailer import makeMailer
from swooletw.mail.message import InvalidPacket, buildMessage, checkSendMail, envelopeRecipients
from swooletw.api import Server

__all__ = ["TaskServer", "makeServer", "appOf", "applyMailOptions", "SEND_MAIL", "EOF", "SETTINGS"]

SEND_MAIL = "send-mail"
EOF = b"\r\n"

#: The tutorial's settings (without daemonize/log_file: twistd's flags).
SETTINGS: dict[str, Any] = {
    "worker_num": 2,
    "task_worker_num": 2,
    "max_request": 5000,
    "task_max_request": 5000,
    "open_eof_check": True,
    "package_eof": EOF,
    "open_eof_split": True,
}


class TaskServer:
    """
    The mail server: a L{Server} with the tutorial's settings and an event
    table holding C{send-mail} and the caller's events.

    @ivar events: the L{EventTable}.
    @ivar config: the L{MailConfig} (change it with L{configure}).
    @ivar mailer: what sends mail (L{swooletw.mail.mailer}).
    """

    log = Logger()

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 9501,
        *,
        config: MailConfig | None = None,
        events: Mapping[str, Event | Callable[..., Any]] | None = None,
        reactor: Any = None,
    ) -> None:
        self.configure(config or MailConfig())
        # The check builds the message the task will send, with the From of
        # the configuration in use.
        self.events = EventTable({
            SEND_MAIL: Event(self.sendMail, lambda packet: checkSendMail(packet, self.config.mailFrom)),
        })
        for name, event in (events or {}).items():
            self.events.register(name, event)
        #: per connection, the replies not sent yet: (reply, its
        #: taskStored Deferred, or None for a refusal)
        self._replies: dict[int, deque[tuple[dict[str, Any], Any]]] = {}
        self._serv = serv = Server(host, port, reactor=reactor)
        serv.set(SETTINGS)
        serv.on("Start", self.onStart)
        serv.on("Receive", self.onReceive)
        serv.on("Task", self.onTask)
        serv.on("Finish", self.onFinish)

    @property
    def server(self) -> Server:
        """
        The configured L{Server}.
        """
        return self._serv

    def start(self) -> bool:
        """
        Run until stopped, as the tutorial's C{$reload->start()}.
        """
        return self._serv.start()

    def configure(self, config: MailConfig) -> None:
        """
        Use C{config} from now on (a new mailer).
        """
        self.config = config
        self.mailer = makeMailer(config)

    # ------------------------------------------------------------ events

    def onStart(self, serv: Server) -> None:
        """
        Say where mail goes and which events there are.
        """
        self.log.info(
            "mail server: mail goes to {where}; events: {events}",
            where=self.mailer.describe(), events=", ".join(self.events.names()),
        )

    def onReceive(self, serv: Server, fd: int, fromId: int, data: bytes) -> None:
        """
        Check the packet, hand it to a task, reply with one JSON line once
        the task is on disk (after the replies to earlier packets).
        """
        reply = self.accept(serv, fd, data)
        stored = serv.taskStored(reply["task_id"]) if reply["ok"] else None
        self._replies.setdefault(fd, deque()).append((reply, stored))
        if stored is None:
            self.sendReplies(serv, fd)
        else:
            stored.addErrback(self.notStored, fd, reply).addBoth(lambda _: self.sendReplies(serv, fd))

    def notStored(self, reason: Failure, fd: int, reply: dict[str, Any]) -> None:
        """
        The journal could not take an accepted task (which then fails
        without running): the reply says so.
        """
        taskId = reply.pop("task_id")
        self.log.error(
            "fd {fd}: task {task_id} could not be journalled: {error}",
            fd=fd, task_id=taskId, error=reason.getErrorMessage(),
        )
        reply.update(ok=False, error=f"the task could not be stored: {reason.getErrorMessage()}")

    def sendReplies(self, serv: Server, fd: int) -> None:
        """
        Send the replies to C{fd} that are ready, in order.
        """
        waiting = self._replies.get(fd)
        while waiting and (waiting[0][1] is None or waiting[0][1].called):
            reply, _ = waiting.popleft()
            serv.send(fd, json.dumps(reply).encode("utf-8") + EOF)
        if not waiting:
            self._replies.pop(fd, None)

    def accept(self, serv: Server, fd: int, data: bytes) -> dict[str, Any]:
        """
        The reply to one packet: C{{"ok": true, "task_id": N}} once its
        task is queued, else C{{"ok": false, "error": ...}}.
        """
        try:
            name, event, packet = self.unpack(data)
            taskData = dict(event.check(packet) if event.check is not None else packet)
        except InvalidPacket as e:
            return self.refuse(fd, str(e))
        except Exception:
            self.log.failure("fd {fd}: checking the packet failed", fd=fd)
            return self.refuse(fd, "internal error while checking the packet")
        taskData.update(event=name, fd=fd)
        return self.queue(serv, fd, name, taskData)

    def unpack(self, data: bytes) -> tuple[str, Event, dict[str, Any]]:
        """
        The tutorial's C{unpack()}: the JSON object of a packet, its event
        name and L{Event}, and its other fields.

        @raise InvalidPacket: for anything but a JSON object naming a
            registered event.
        """
        text = data[: -len(EOF)] if data.endswith(EOF) else data
        if not text.strip():
            raise InvalidPacket("empty packet: send a JSON object followed by \\r\\n")
        try:
            packet = json.loads(text)
        except UnicodeDecodeError:
            raise InvalidPacket("malformed JSON: not UTF-8") from None
        except (ValueError, RecursionError) as e:
            raise InvalidPacket(f"malformed JSON: {e}") from None
        if not isinstance(packet, dict):
            raise InvalidPacket("a packet must be a JSON object")
        if "event" not in packet:
            raise InvalidPacket("missing 'event'")
        name = packet.pop("event")
        if not isinstance(name, str):
            raise InvalidPacket("'event' must be a string")
        event = self.events.get(name)
        if event is None:
            raise InvalidPacket(f"unknown event {name[:64]!r} (known: {', '.join(self.events.names())})")
        return name, event, packet

    def queue(self, serv: Server, fd: int, name: str, taskData: dict[str, Any]) -> dict[str, Any]:
        """
        C{serv.task(data)}: the accepted reply, or a refusal when the queue
        is full.
        """
        from swooletw.tasks import TaskError

        try:
            taskId = serv.task(taskData)
        except (TaskError, TypeError) as e:
            self.log.error("fd {fd}: cannot queue a {event} task: {error}", fd=fd, event=name, error=str(e))
            return self.refuse(fd, f"cannot queue the task: {e}")
        if taskId is False:
            return self.refuse(fd, "task queue full (task_queue_max): try again later")
        return {"ok": True, "task_id": taskId}

    def refuse(self, fd: int, error: str) -> dict[str, Any]:
        """
        A refusal, logged.
        """
        self.log.info("fd {fd}: packet refused: {error}", fd=fd, error=error)
        return {"ok": False, "error": error}

    async def onTask(self, serv: Server, taskId: int, srcWorkerId: int, data: Any) -> Any:
        """
        The tutorial's C{TaskRun::task}: run the event's handler.
        """
        name = data.get("event") if isinstance(data, dict) else None
        event = self.events.get(name)
        if event is None:
            raise LookupError(f"task {taskId}: no event {name!r} in the table")
        return await runHandler(serv, event.handler, taskId, srcWorkerId, data)

    def onFinish(self, serv: Server, taskId: int, result: Any) -> None:
        """
        The tutorial's C{TaskRun::finish}: log how the task ended.
        """
        if isinstance(result, Failure):
            self.log.warn("task {task_id} failed: {error}", task_id=taskId, error=result.getErrorMessage())
        elif isinstance(result, dict) and result.get("ok") is False:
            self.log.warn("task {task_id} failed: {error}", task_id=taskId, error=result.get("error"))
        else:
            self.log.info("task {task_id} finished: {result}", task_id=taskId, result=result)

    # -------------------------------------------------------- send-mail

    async def sendMail(self, serv: Server, taskId: int, srcWorkerId: int, data: dict[str, Any]) -> dict[str, Any]:
        """
        The C{send-mail} event (the tutorial's C{Mailer::send}): build the
        message and send it.

        @return: the mailer's result, with C{event}, C{task_id} and C{to}.
        """
        message = buildMessage(data, self.config.mailFrom)
        result = await self.mailer.send(message, envelopeRecipients(data), serv.reactor, taskId)
        return {"event": SEND_MAIL, "task_id": taskId, "to": data["to"], **result}


def makeServer(
    host: str = "127.0.0.1",
    port: int = 9501,
    *,
    config: MailConfig | None = None,
    events: Mapping[str, Event | Callable[..., Any]] | None = None,
) -> Server:
    """
    The mail server (the default app of C{twistd swoole-tcp}), with
    C{events} added to C{send-mail}.
    """
    return TaskServer(host, port, config=config, events=events).server


def appOf(serv: Server) -> TaskServer | None:
    """
    The L{TaskServer} behind C{serv}, or L{None} if it is another app.
    """
    owner = getattr(serv.getCallback("receive"), "__self__", None)
    return owner if isinstance(owner, TaskServer) and owner.server is serv else None


def applyMailOptions(serv: Server, options: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> None:
    """
    Configure the mail app of C{serv} from C{twistd} options.

    @raise ConfigError: for a bad value, or mail options given for an app
        that is not a mail server.
    """
    app = appOf(serv)
    if app is None:
        given = givenMailOptions(options)
        if given:
            raise ConfigError(f"--{given[0]} applies to the mail app (swooletw.mail); this --app is not one")
        return
    app.configure(configFromOptions(options, environ))
