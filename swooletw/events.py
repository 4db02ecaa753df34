# -*- test-case-name: tests.test_events -*-
"""
Swoole's event names and how callbacks are called.

Event names are matched case-insensitively against an explicit table
(C{on("Receive", f)} and C{on("receive", f)} are the same); an unknown name
is an error naming the closest valid one.

PHP drops extra arguments silently, so a ported C{function ($serv, $fd)}
registered for C{connect} works there although Swoole passes three.  Python
does not, so L{adaptArity} gives each callback only as many positional
arguments as it accepts.

A callback may be a plain function, an C{async def}, or return a
L{Deferred}.  L{invoke} runs it and makes sure any failure, synchronous or
not, is logged with its context and never propagates into the server.
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any, Callable

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.logger import Logger

__all__ = ["EVENTS", "EventError", "canonicalEvent", "adaptArity", "invoke"]

#: Swoole's server events: lower-case name -> (canonical name, argument count).
EVENTS: dict[str, tuple[str, int]] = {
    name.lower(): (name, argc)
    for name, argc in [
        ("start", 1),
        ("shutdown", 1),
        ("beforeShutdown", 1),
        ("managerStart", 1),
        ("managerStop", 1),
        ("workerStart", 2),
        ("workerStop", 2),
        ("workerExit", 2),
        ("workerError", 5),
        ("connect", 3),
        ("receive", 4),
        ("packet", 3),
        ("close", 3),
        ("task", 4),
        ("finish", 3),
        ("pipeMessage", 3),
        ("request", 2),
    ]
}

#: Events a listening port may override (the rest belong to the server).
PORT_EVENTS = frozenset({"connect", "receive", "packet", "close", "request"})


class EventError(ValueError):
    """
    An event name Swoole does not have, or a callback that is not callable.
    """


def canonicalEvent(name: str, allowed: frozenset[str] | None = None) -> tuple[str, int]:
    """
    Look an event name up case-insensitively.

    @param allowed: lower-case names accepted here (default: all).
    @return: C{(lower-case name, argument count)}.
    @raise EventError: for a name not in the table, naming the closest one.
    """
    key = name.lower() if isinstance(name, str) else name
    valid = EVENTS if allowed is None else {k: EVENTS[k] for k in allowed}
    if key not in valid:
        names = [canonical for canonical, _ in valid.values()]
        close = difflib.get_close_matches(str(name), names, n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        where = "" if allowed is None else " on a port"
        raise EventError(f"unknown event {name!r}{where}{hint}")
    return key, valid[key][1]


def adaptArity(callback: Callable[..., Any], argc: int) -> Callable[..., Any]:
    """
    Wrap C{callback} so that it is called with at most the positional
    arguments it accepts, as PHP would.  Callbacks that take C{argc} or
    more (or C{*args}) are returned unchanged, so the common case costs
    nothing per call.

    @raise EventError: if C{callback} is not callable.
    """
    if not callable(callback):
        raise EventError(f"callback must be callable, got {callback!r}")
    try:
        parameters = inspect.signature(callback).parameters.values()
    except (TypeError, ValueError):
        return callback
    accepted = 0
    for parameter in parameters:
        if parameter.kind is parameter.VAR_POSITIONAL:
            return callback
        if parameter.kind in (parameter.POSITIONAL_ONLY, parameter.POSITIONAL_OR_KEYWORD):
            accepted += 1
    if accepted >= argc:
        return callback

    def adapted(*args: Any) -> Any:
        return callback(*args[:accepted])

    adapted.__wrapped__ = callback  # type: ignore[attr-defined]
    return adapted


_log = Logger(namespace="swooletw.events")


def invoke(callback: Callable[..., Any], args: tuple, context: str, **fields: Any) -> Any:
    """
    Call an event callback, never letting its failure escape.

    @param context: what is being called, for the log (e.g. C{"receive"}).
    @param fields: extra log fields, such as C{fd}.
    @return: the callback's result: a L{Deferred} when it was asynchronous
        (its failure already logged), otherwise the plain value; L{None}
        when it raised.
    """
    try:
        result = callback(*args)
    except Exception:
        _log.failure("{event} callback failed" + _suffix(fields), event=context, **fields)
        return None
    if result is None:
        return None
    return watch(result, context, **fields)


def watch(result: Any, context: str, **fields: Any) -> Any:
    """
    Make an asynchronous callback result (coroutine or L{Deferred}) log its
    failure; return plain values unchanged.
    """
    if inspect.iscoroutine(result):
        result = ensureDeferred(result)
    if isinstance(result, Deferred):

        def logFailure(failure: Any) -> None:
            _log.failure(
                "{event} callback failed" + _suffix(fields),
                failure,
                event=context,
                **fields,
            )

        result.addErrback(logFailure)
    return result


def _suffix(fields: dict[str, Any]) -> str:
    return "".join(f" ({name} {{{name}}})" for name in fields)
