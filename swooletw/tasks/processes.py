# -*- test-case-name: tests.test_taskprocs -*-
"""
Task workers as processes (C{task_worker_mode = "process"}), for CPU-bound
work: C{task_worker_num} processes forked and supervised by the master like
the workers, with ids C{worker_num .. worker_num + task_worker_num - 1},
shared by every worker.

 - A worker's C{task()} goes to the master (L{ProcessTaskPool}); the
   master's L{TaskDispatcher} hands each task to the task worker that has
   been idle longest, one at a time, and queues the rest; the result goes
   back to the asking worker's C{finish} (or callback).
 - A task worker that dies has its running task queued again (at least
   once); C{task_max_request} recycles task workers; C{SIGUSR2} reloads
   them alone, C{SIGUSR1} with the workers.
 - Results travel as JSON-like values or bytes, like task data; a handler
   that raises, or returns something else, fails that task with
   L{TaskFailed} carrying the error.
"""

from __future__ import annotations

import marshal
import traceback
from collections import deque
from typing import TYPE_CHECKING, Any, Callable

from twisted.internet import defer
from twisted.logger import Logger

from swooletw.tasks.base import TaskError, TaskResult, checkTaskData, runningTask
from swooletw.tasks.pool import TaskPool, isAsyncHandler, taskHandler

if TYPE_CHECKING:  # pragma: no cover
    from swooletw.api.server import Server

__all__ = ["TaskFailed", "ProcessTaskPool", "TaskDispatcher", "runTaskHere"]

log = Logger()


class TaskFailed(TaskError):
    """
    A task failed in a task worker process; the message is its error.
    """


class ProcessTaskPool(TaskPool):
    """
    A worker's side of the task worker processes: tasks go to the master,
    results come back.
    """

    def __init__(self, serv: Server, reactor: Any, channel: Any, store: Any = None) -> None:
        super().__init__(serv, reactor, store)
        self.channel = channel
        self._waiting: dict[int, defer.Deferred[Any]] = {}

    def handlers(self) -> dict[str, Callable[..., Any]]:
        """
        The channel messages this side handles.
        """
        return {"taskresult": self.gotResult}

    def stats(self) -> dict[str, int]:
        """
        This worker's own counts; how busy the task processes are comes
        from the master (C{stats()} adds it).
        """
        own = super().stats()
        for shared in ("tasking_num", "task_queue_num", "task_idle_worker_num"):
            del own[shared]
        return own

    def run(self, taskId: int, data: Any, src: int | None = None, dst: int = -1) -> defer.Deferred[Any]:
        src = self.serv.worker_id if src is None else src
        if self.channel.send("task", taskId, src, data, dst) is False:
            return defer.fail(TaskFailed("the master cannot be reached: task not sent"))
        waiting: defer.Deferred[Any] = defer.Deferred()
        self._waiting[taskId] = waiting
        self.running += 1
        return waiting

    def gotResult(self, taskId: int, ok: bool, result: Any) -> None:
        """
        A task worker finished one of this worker's tasks.
        """
        waiting = self._waiting.pop(taskId, None)
        if waiting is None:
            self.log.debug("result of unknown task {task_id} dropped", task_id=taskId)
        elif ok:
            waiting.callback(result)
        else:
            waiting.errback(TaskFailed(result))


class TaskDispatcher:
    """
    The master's side: the queue of tasks and the idle task workers.

    @param send: C{send(worker_id, kind, *args)} on a process's channel;
        returns C{False} if that process is gone.
    """

    log = Logger()

    def __init__(self, send: Callable[..., bool]) -> None:
        self.send = send
        #: (worker to answer, task id, source worker id, data), for any
        #: task worker
        self.queue: deque[tuple[int, int, int, Any]] = deque()
        #: the same, for one task worker (Swoole's dst_worker_id)
        self.targeted: dict[int, deque[tuple[int, int, int, Any]]] = {}
        self.idle: deque[int] = deque()
        self.running: dict[int, tuple[int, int, int, Any]] = {}
        #: task workers asked to stop: no new task until their successor
        #: reports ready
        self.retiring: set[int] = set()

    def submitted(self, replyTo: int, taskId: int, src: int, data: Any, dst: int = -1) -> None:
        """
        Worker C{replyTo} asked for a task (C{src} is the worker that first
        asked: another one for a task run again after its death), for task
        worker C{dst} or any (-1).
        """
        task = (replyTo, taskId, src, data)
        if dst == -1:
            self.queue.append(task)
        else:
            self.targeted.setdefault(dst, deque()).append(task)
        self.dispatch()

    def ready(self, taskWorkerId: int, started: bool = False) -> None:
        """
        A task worker is idle (C{started}: a new process for that id).
        """
        if started:
            self.retiring.discard(taskWorkerId)
        if taskWorkerId not in self.idle and taskWorkerId not in self.retiring:
            self.idle.append(taskWorkerId)
        self.dispatch()

    def retire(self, taskWorkerId: int) -> None:
        """
        A task worker is being stopped (reload, recycling): give it no more.
        """
        self.retiring.add(taskWorkerId)
        while taskWorkerId in self.idle:
            self.idle.remove(taskWorkerId)

    def done(self, taskWorkerId: int, taskId: int, ok: bool, result: Any) -> None:
        """
        A task worker finished a task: the result to its asker.
        """
        task = self.running.pop(taskWorkerId, None)
        if task is not None:
            replyTo = task[0]
            if not self.send(replyTo, "taskresult", taskId, ok, result):
                self.log.info(
                    "task {task_id} finished, but worker {worker} that asked is gone",
                    task_id=taskId, worker=replyTo,
                )
        self.ready(taskWorkerId)

    def lost(self, taskWorkerId: int) -> None:
        """
        A task worker died: its running task is queued again, first.
        """
        while taskWorkerId in self.idle:
            self.idle.remove(taskWorkerId)
        task = self.running.pop(taskWorkerId, None)
        if task is not None:
            self.log.warn(
                "task {task_id} was running in task worker {id}, which died: running it again",
                task_id=task[1], id=taskWorkerId,
            )
            self.queue.appendleft(task)
            self.dispatch()

    def dispatch(self) -> None:
        """
        Hand queued tasks to idle task workers, longest idle first: a task
        for that task worker before one for any.
        """
        for taskWorkerId in list(self.idle):
            mine = self.targeted.get(taskWorkerId)
            queue = mine if mine else self.queue
            if not queue:
                continue
            task = queue.popleft()
            replyTo, taskId, src, data = task
            if self.send(taskWorkerId, "runtask", taskId, src, data):
                self.idle.remove(taskWorkerId)
                self.running[taskWorkerId] = task
            else:
                queue.appendleft(task)

    def stats(self) -> dict[str, int]:
        """
        Swoole's task counters, as the master sees them.
        """
        return {
            "tasking_num": len(self.running),
            "task_queue_num": len(self.queue) + sum(map(len, self.targeted.values())),
            "task_idle_worker_num": len(self.idle),
        }


async def runTaskHere(serv: Any, taskId: int, src: int, data: Any) -> tuple[bool, Any]:
    """
    Run one task in this task worker process: C{(True, result)}, or
    C{(False, error text)} when the handler raised or its result cannot
    travel back (JSON-like values and bytes only).
    """
    task = TaskResult()
    runningTask.set(task)
    try:
        handler = taskHandler(serv)
        result = handler(serv, taskId, src, data)
        if isAsyncHandler(handler) or isinstance(result, defer.Deferred):
            result = await result
        result = task.result(result)
        checkTaskData(result, "result")
        marshal.dumps(result)
    except Exception as e:
        log.failure("task {task_id} failed", task_id=taskId)
        return False, "".join(traceback.format_exception_only(type(e), e)).strip()
    return True, result
