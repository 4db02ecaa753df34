# -*- test-case-name: tests.test_tasks -*-
"""
What every kind of task worker shares: the errors, what task data may be,
and which task the calling code runs (for C{serv.finish()} and
C{serv.worker_id} in a task thread).

The running task is a context variable: each task thread sets it around
its task, and each C{async def} handler runs as its own coroutine with its
own copy of the context, so two handlers that C{await} and then call
C{finish()} each finish their own task.
"""

from __future__ import annotations

import threading
from contextvars import ContextVar
from typing import Any

__all__ = [
    "TaskError",
    "NoTaskWorkers",
    "TaskTimeout",
    "checkTaskData",
    "TaskResult",
    "runningTask",
    "finishCurrentTask",
    "threadTaskWorkerId",
]


class TaskError(Exception):
    """
    Base of the task errors.
    """


class NoTaskWorkers(TaskError):
    """
    C{task()} on a server without C{task_worker_num}.
    """


class TaskTimeout(TaskError):
    """
    C{taskwait()} gave up waiting; the task itself goes on.
    """


_SCALARS = (str, int, float, bool, type(None))


def checkTaskData(data: Any, path: str = "data") -> None:
    """
    Refuse what cannot travel as a task: anything but JSON-like values and
    bytes.

    @raise TypeError: naming where in C{data} the bad value is.
    """
    # Exact types: a subclass (an IntEnum, an OrderedDict) would not survive
    # the trip to a task worker process, so no kind takes it.
    kind = type(data)
    if kind is bytes or kind in _SCALARS:
        return
    if kind is list or kind is tuple:
        for index, item in enumerate(data):
            checkTaskData(item, f"{path}[{index}]")
        return
    if kind is dict:
        for key, value in data.items():
            if type(key) is not str:
                raise TypeError(f"task {path} has a key that is not a str: {key!r}")
            checkTaskData(value, f"{path}[{key!r}]")
        return
    raise TypeError(
        f"task {path} is a {type(data).__name__}; tasks take JSON-like values or bytes"
    )


class TaskResult:
    """
    What a running task passed to C{serv.finish()}.
    """

    called = False
    value: Any = None

    def result(self, returned: Any) -> Any:
        """
        The task's result: what it passed to C{finish()}, else what it
        returned.
        """
        return self.value if self.called else returned


#: The task the calling code runs, if any.
runningTask: ContextVar[TaskResult | None] = ContextVar("swooletw_running_task", default=None)


def finishCurrentTask(data: Any) -> bool:
    """
    C{serv.finish(data)}: the result of the task the caller runs.

    @return: C{False} outside a task.
    """
    task = runningTask.get()
    if task is None:
        return False
    task.called = True
    task.value = data
    return True


_threadIdentity = threading.local()


def threadTaskWorkerId() -> int | None:
    """
    The task worker id of the calling task thread, or L{None}.
    """
    return getattr(_threadIdentity, "taskWorkerId", None)


def setThreadTaskWorkerId(taskWorkerId: int | None) -> None:
    """
    Make the calling thread task worker C{taskWorkerId} (L{None}: none).
    """
    _threadIdentity.taskWorkerId = taskWorkerId
