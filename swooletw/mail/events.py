# -*- test-case-name: tests.test_mail -*-
"""
The task server's event table: which C{"event"} a client may name, how its
packet is checked and what runs it.

A packet names its event; the name is looked up in an explicit table
(never as an attribute or method name), so a client can run only what was
registered.

    def resize(serv, task_id, src_worker_id, data):   # blocking: a task thread
        ...
        return {"ok": True}

    async def ping(serv, task_id, src_worker_id, data):  # on the reactor
        return {"ok": True}

    def checkResize(packet):            # in the worker, before the task
        if not isinstance(packet.get("url"), str):
            raise InvalidPacket("'url' must be a string")
        return {"url": packet["url"]}

    makeServer(events={"resize": Event(resize, checkResize), "ping": ping})
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping

from twisted.internet import defer

__all__ = ["Event", "EventTable", "runHandler"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")


@dataclass(frozen=True)
class Event:
    """
    One event of the table.

    @ivar handler: C{handler(serv, task_id, src_worker_id, data)}, run as a
        task; its return value is the task's result (for C{finish}).  An
        C{async def} runs on the reactor; a plain function in a task thread
        (blocking is fine there).
    @ivar check: C{check(packet)} runs in the worker that received the
        packet (given the packet without C{"event"}) and returns the task
        data as a dict, or raises L{swooletw.mail.message.InvalidPacket}
        whose message is sent back.  L{None}: the packet as it is.  The
        client is told C{ok} once the check passes, so whatever in the
        packet could make the handler fail belongs here (the C{send-mail}
        check builds the very message the task will send).
    """

    handler: Callable[..., Any]
    check: Callable[[dict[str, Any]], dict[str, Any]] | None = None


class EventTable:
    """
    Event names to L{Event}s.
    """

    def __init__(self, events: Mapping[str, Event | Callable[..., Any]] | None = None) -> None:
        self._events: dict[str, Event] = {}
        for name, event in (events or {}).items():
            self.register(name, event)

    def register(
        self,
        name: str,
        handler: Event | Callable[..., Any],
        check: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        replace: bool = False,
    ) -> Event:
        """
        Add an event: an L{Event}, or a handler (and its C{check}).

        @param replace: allow replacing an event already registered.
        @raise ValueError: for a bad name, a name already taken (without
            C{replace}) or a handler that is not callable.
        """
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ValueError(f"bad event name {name!r}: letters, digits, '_.:-', at most 64")
        if name in self._events and not replace:
            raise ValueError(f"event {name!r} is already registered")
        event = handler if isinstance(handler, Event) else Event(handler, check)
        if not callable(event.handler) or (event.check is not None and not callable(event.check)):
            raise ValueError(f"event {name!r}: handler and check must be callable")
        self._events[name] = event
        return event

    def get(self, name: Any) -> Event | None:
        """
        The event called C{name}, or L{None}.
        """
        return self._events.get(name) if isinstance(name, str) else None

    def names(self) -> list[str]:
        """
        The registered names, sorted.
        """
        return sorted(self._events)

    def __contains__(self, name: object) -> bool:
        return name in self._events

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._events)


def runHandler(serv: Any, handler: Callable[..., Any], *args: Any) -> defer.Deferred[Any]:
    """
    Run an event handler from the (C{async def}) task handler: an C{async
    def} on the reactor, a plain function in one of this process's task
    threads (or the reactor's thread pool where there are none).
    """
    if inspect.iscoroutinefunction(handler):
        return defer.ensureDeferred(handler(serv, *args))
    return serv.runBlocking(handler, serv, *args)
