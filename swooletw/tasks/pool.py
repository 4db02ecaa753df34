# -*- test-case-name: tests.test_tasks -*-
"""
Swoole's task workers, the thread kind: C{task()}, C{finish()},
C{taskwait()}, C{taskWaitMulti()}.

Each worker process (or the single process) has a dedicated L{ThreadPool}
of C{task_worker_num} threads (not the reactor's shared pool, which also
resolves host names).  A plain C{task} handler runs in one of those threads
through C{deferToThreadPool}, so blocking work (a mail library, a slow API)
never blocks the reactor; an C{async def} handler runs on the reactor.

 - C{task()} returns a task id at once, or C{False} when the queue already
   holds C{task_queue_max} tasks (logged and counted: never queued
   forever).  Data must be JSON-like (dict, list, str, int, float, bool,
   None) or bytes; anything else is refused at C{task()} with C{TypeError}.
 - The handler's return value, or what it passed to C{serv.finish()},
   reaches the C{callback} given to C{task()} or else the C{finish} event,
   in the worker that asked.  A handler that raises is logged with its task
   id and reaches the asker as a L{Failure}, and the pool goes on.
 - With C{task_store}, a task runs once it is in the journal
   (L{swooletw.tasks.journal}); C{serv.taskStored(task_id)} fires then, and a
   reply to a client should wait for it.
 - Inside a task thread, C{serv.worker_id} is the task worker id
   (C{worker_num} .. C{worker_num + task_worker_num - 1}) and
   C{serv.taskworker} is true; C{workerStart} fires in each task thread
   before its first task.
"""

from __future__ import annotations

import functools
import itertools
import os
import threading
import traceback
from typing import TYPE_CHECKING, Any, Callable

from twisted.internet import defer
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from swooletw.deadline import waitAtMost
from swooletw.events import invoke
from swooletw.tasks.base import (
    NoTaskWorkers,
    TaskError,
    TaskResult,
    TaskTimeout,
    checkTaskData,
    runningTask,
    setThreadTaskWorkerId,
)

if TYPE_CHECKING:  # pragma: no cover
    from swooletw.api.server import Server

__all__ = ["TaskPool", "ThreadTaskPool", "taskHandler", "isAsyncHandler"]


class TaskPool:
    """
    What both kinds of task workers share, on the asking side: ids, the
    bounded queue, the journal, results and failures, C{taskwait}.
    Subclasses say how a task runs (L{run}).

    @ivar store: the journal (a L{swooletw.tasks.journal.TaskStore}), or L{None}.
        With one, a task runs once it is on disk (L{stored}), and what it
        ends with is written there too: gone when it succeeded, a dead
        letter when it failed.
    """

    log = Logger()

    def __init__(self, serv: Server, reactor: Any, store: Any = None) -> None:
        setting = serv.setting
        self.serv = serv
        self.reactor = reactor
        self.size = setting["task_worker_num"]
        self.queueMax = setting["task_queue_max"]
        self.store = store
        self._ids = itertools.count(1)
        #: tasks on their way to the journal: who waits for them (L{stored})
        self._unstored: dict[int, tuple[defer.Deferred[None], ...]] = {}
        #: the last tasks the journal could not take, and why
        self._notStored: dict[int, Failure] = {}
        #: journal keys of tasks run again (others have the store's own)
        self._keys: dict[int, str] = {}
        self._stopped = False
        self._pid = os.getpid()
        if store is not None:
            store.start(reactor)
        self.pending = 0
        self.running = 0
        self.done = 0
        self.failed = 0
        self.refused = 0
        self._whenIdle: list[defer.Deferred[None]] = []

    def start(self) -> None:
        """
        Start running tasks.
        """

    def stop(self) -> None:
        """
        Stop (after L{drained}).
        """
        self._stopped = True
        if self.store is not None:
            self.store.close()

    def run(self, taskId: int, data: Any, src: int | None = None, dst: int = -1) -> defer.Deferred[Any]:
        """
        Run one task (on task worker C{dst} where that means something);
        fires with its result (or fails with its error).
        """
        raise NotImplementedError()

    def recover(self) -> defer.Deferred[int]:
        """
        Run again the journalled tasks that dead processes left behind, now
        and whenever more are released; their results go to the C{finish}
        event.  Fires with how many there were now.
        """
        if self.store is None:
            return defer.succeed(0)
        claimed = self.store.claim(self._pid, later=self._runAgain)
        claimed.addCallback(self._runAgain)

        def failed(reason: Failure) -> int:
            self.log.failure("could not claim the journalled tasks of dead processes", reason)
            return 0

        return claimed.addErrback(failed)

    def _runAgain(self, claimed: list[Any]) -> int:
        if self._stopped:
            # Still ours in the journal: released when this process exits.
            return 0
        for task in claimed:
            taskId = next(self._ids)
            self._keys[taskId] = task.key
            self.log.info(
                "running task {key} again as task {task_id} (its process died; attempt {attempts})",
                key=task.key, task_id=taskId, attempts=task.attempts,
            )
            self.pending += 1
            self._start(taskId, task.data, task.src, -1, None, False)
        return len(claimed)

    def drained(self, seconds: float) -> defer.Deferred[None]:
        """
        Fires when no task is queued or running and the journal has written
        what it was asked, or after C{seconds}.
        """
        if not self.pending:
            return self._journalFlushed(self.reactor.seconds() + seconds)
        idle: defer.Deferred[None] = defer.Deferred()
        self._whenIdle.append(idle)

        deadline = self.reactor.seconds() + seconds

        def waited(done: bool) -> defer.Deferred[None]:
            if not done:
                self.log.warn("{count} tasks still running after max_wait_time", count=self.pending)
            return self._journalFlushed(deadline)

        return waitAtMost(idle, seconds, self.reactor).addCallback(waited)

    def _journalFlushed(self, deadline: float) -> defer.Deferred[None]:
        """
        Fires once what the journal was asked is on disk, or at C{deadline}
        (what is not written then runs again after a restart).
        """
        if self.store is None:
            return defer.succeed(None)
        flushed = self.store.flushed()
        flushed.addTimeout(max(0.0, deadline - self.reactor.seconds()), self.reactor)

        def late(reason: Failure) -> None:
            self.log.warn("task journal not flushed within max_wait_time: {error}", error=reason.getErrorMessage())

        return flushed.addErrback(late)

    def stats(self) -> dict[str, int]:
        """
        Swoole's task counters.
        """
        return {
            "tasking_num": self.running,
            "task_queue_num": self.pending - self.running,
            "task_idle_worker_num": self.size - self.running,
            "task_done_count": self.done,
            "task_failed_count": self.failed,
            "task_refused_count": self.refused,
        }

    # ------------------------------------------------------------ submit

    def submit(
        self,
        data: Any,
        callback: Callable[..., Any] | None = None,
        always: bool = False,
        dst: int = -1,
    ) -> int | bool:
        """
        Queue a task.

        @param callback: gets C{(serv, task_id, result)} instead of the
            C{finish} event.
        @param always: deliver even a C{None} result (Swoole fires
            C{finish} only for a return value or C{finish()}).
        @param dst: the task worker id to run it (C{-1}: any).
        @return: its id, or C{False} if the queue is full.
        @raise TypeError: for data a task cannot take.
        @raise ValueError: for a C{dst} that is not a task worker id.
        """
        checkTaskData(data)
        self.checkDestination(dst)
        if self.pending >= self.queueMax:
            self.refused += 1
            self.log.warn(
                "task refused: {count} tasks queued (task_queue_max)", count=self.pending
            )
            return False
        taskId = next(self._ids)
        self.pending += 1
        if self.store is None:
            self._start(taskId, data, None, dst, callback, always)
        else:
            self._unstored[taskId] = ()
            added = functools.partial(self._added, taskId, data, dst, callback, always)
            self.store.add(self.store.key(taskId), data, self.serv.worker_id, self._pid, added)
        return taskId

    def stored(self, taskId: int) -> defer.Deferred[None]:
        """
        Fires once task C{taskId} is in the journal (so it survives the
        death of any process), or fails with the journal's error (the task
        then fails without running).  Without a journal, or for a task
        already written (or run again from the journal), it has already
        fired.  What a client is told about a task should wait for this.
        """
        waiting = self._unstored.get(taskId)
        if waiting is not None:
            stored: defer.Deferred[None] = defer.Deferred()
            self._unstored[taskId] = (*waiting, stored)
            return stored
        if taskId in self._notStored:
            return defer.fail(self._notStored[taskId])
        return defer.succeed(None)

    def _added(
        self, taskId: int, data: Any, dst: int, callback: Callable[..., Any] | None, always: bool, result: Any
    ) -> None:
        waiting = self._unstored.pop(taskId, ())
        if isinstance(result, Failure):
            self._notStored[taskId] = result
            if len(self._notStored) > 1000:
                del self._notStored[next(iter(self._notStored))]
            for stored in waiting:
                stored.errback(result)
            self._completed(result, taskId, callback, always, ran=False)
            return
        for stored in waiting:
            stored.callback(None)
        self._start(taskId, data, None, dst, callback, always)

    def _start(
        self, taskId: int, data: Any, src: int | None, dst: int, callback: Callable[..., Any] | None, always: bool
    ) -> None:
        self.run(taskId, data, src, dst).addBoth(self._completed, taskId, callback, always)

    def checkDestination(self, dst: int) -> None:
        """
        C{dst_worker_id} is C{-1} or a task worker id.

        @raise ValueError: otherwise.
        """
        first = self.serv.setting["worker_num"]
        if dst != -1 and not first <= dst < first + self.size:
            raise ValueError(
                f"dst_worker_id {dst} is not a task worker id "
                f"({first}..{first + self.size - 1}, or -1 for any)"
            )

    def _completed(
        self, result: Any, taskId: int, callback: Callable[..., Any] | None, always: bool, ran: bool = True
    ) -> None:
        self.pending -= 1
        if not self.pending:
            idle, self._whenIdle = self._whenIdle, []
            for waiter in idle:
                waiter.callback(None)
        if ran:
            self.running = max(0, self.running - 1)
            if self.store is not None:
                self._journalEnd(taskId, result)
        if isinstance(result, Failure):
            self.failed += 1
            if ran:
                self.log.failure("task {task_id} failed", result, task_id=taskId)
            else:
                self.log.failure("task {task_id} could not be journalled: it fails unrun", result, task_id=taskId)
        else:
            self.done += 1
            if result is None and not always:
                return  # Swoole: no finish without a return value or finish()
        target = callback if callback is not None else self.serv.getCallback("finish")
        if target is not None:
            invoke(target, (self.serv, taskId, result), "finish", task_id=taskId)

    def _journalEnd(self, taskId: int, result: Any) -> None:
        """
        A journalled task has run: forget it, or keep it as a dead letter.
        """
        key = self._keys.pop(taskId, None) or self.store.key(taskId)
        if isinstance(result, Failure):
            self.store.fail(key, "".join(traceback.format_exception_only(result.type, result.value)).strip())
        else:
            self.store.remove(key)

    # ------------------------------------------------------------- waits

    def wait(self, data: Any, timeout: float, dst: int = -1) -> defer.Deferred[Any]:
        """
        C{taskwait}: a Deferred with the task's result, failing with
        L{TaskTimeout} after C{timeout} seconds (the task goes on), or with
        the task's own failure.
        """
        waited: defer.Deferred[Any] = defer.Deferred()

        def done(serv: Any, taskId: int, result: Any) -> None:
            if not waited.called:
                if isinstance(result, Failure):
                    waited.errback(result)
                else:
                    waited.callback(result)

        taskId = self.submit(data, done, always=True, dst=dst)
        if taskId is False:
            return defer.fail(TaskError("task queue full (task_queue_max)"))

        def expire() -> None:
            if not waited.called:
                waited.errback(TaskTimeout(f"task {taskId} not finished after {timeout}s"))

        call = self.reactor.callLater(timeout, expire)
        waited.addBoth(lambda value: (call.cancel() if call.active() else None, value)[1])
        return waited

    def waitMulti(self, tasks: list[Any], timeout: float) -> defer.Deferred[dict[int, Any]]:
        """
        C{taskWaitMulti}: run several tasks; a Deferred with C{{index:
        result}} for those finished within C{timeout} (a failed task's
        result is its L{Failure}), as Swoole returns only the finished ones.
        """
        results: dict[int, Any] = {}

        def collect(index: int, d: defer.Deferred[Any]) -> defer.Deferred[None]:
            def keep(value: Any) -> None:
                if not (isinstance(value, Failure) and value.check(TaskTimeout)):
                    results[index] = value

            return d.addBoth(keep)

        waits = [collect(i, self.wait(data, timeout)) for i, data in enumerate(tasks)]
        return defer.gatherResults(waits).addCallback(lambda _: results)


class ThreadTaskPool(TaskPool):
    """
    The task workers of one process, as threads.

    @ivar threadpool: the dedicated L{ThreadPool} (or a stand-in with
        C{callInThreadWithCallback}, C{start} and C{stop}, for tests).
    """

    def __init__(self, serv: Server, reactor: Any, threadpool: Any = None, store: Any = None) -> None:
        super().__init__(serv, reactor, store)
        self.threadpool = threadpool or ThreadPool(self.size, self.size, name="swooletw-task")
        self._taskWorkerIds = itertools.count(serv.setting["worker_num"])
        self._idsLock = threading.Lock()
        #: each task thread's own task worker id
        self._threadIds = threading.local()

    def start(self) -> None:
        """
        Start the threads.
        """
        self.threadpool.start()

    def stop(self) -> None:
        """
        Stop the threads (after L{drained}: this joins them).
        """
        self.threadpool.stop()
        super().stop()

    def run(self, taskId: int, data: Any, src: int | None = None, dst: int = -1) -> defer.Deferred[Any]:
        """
        Run the C{task} handler for one task: on the reactor for an
        C{async def}, else in a task thread (threads are interchangeable:
        C{dst} only has to name one).  Fires with the task's result.
        """
        handler = taskHandler(self.serv)
        if src is None:
            src = self.serv.worker_id
        if isAsyncHandler(handler):
            self.running += 1
            return defer.ensureDeferred(self._runAsync(handler, taskId, src, data))
        return deferToThreadPool(self.reactor, self.threadpool, self._runInThread, handler, taskId, src, data)

    async def _runAsync(self, handler: Any, taskId: int, src: int, data: Any) -> Any:
        # Its own coroutine, so its own copy of the context: finish() in
        # here belongs to this task even across awaits.
        task = TaskResult()
        runningTask.set(task)
        return task.result(await handler(self.serv, taskId, src, data))

    def _runInThread(self, handler: Any, taskId: int, src: int, data: Any) -> Any:
        self.reactor.callFromThread(self._started)
        local = self._threadIds
        first = getattr(local, "taskWorkerId", None) is None
        if first:
            with self._idsLock:
                local.taskWorkerId = next(self._taskWorkerIds)
        # The task worker identity holds while task code runs (a stand-in
        # pool may run it in the reactor's own thread).
        setThreadTaskWorkerId(local.taskWorkerId)
        task = TaskResult()
        token = runningTask.set(task)
        try:
            if first:
                self._fireWorkerStart(local.taskWorkerId)
            return task.result(handler(self.serv, taskId, src, data))
        finally:
            runningTask.reset(token)
            setThreadTaskWorkerId(None)

    def _fireWorkerStart(self, taskWorkerId: int) -> None:
        callback = self.serv.getCallback("workerStart")
        if callback is not None:
            try:
                callback(self.serv, taskWorkerId)
            except Exception:
                self.log.failure("workerStart failed in task worker {id}", id=taskWorkerId)

    def _started(self) -> None:
        self.running += 1



def isAsyncHandler(handler: Any) -> bool:
    """
    Whether C{handler} (or what it wraps) is an C{async def}.
    """
    import inspect

    target = getattr(handler, "__wrapped__", handler)
    return inspect.iscoroutinefunction(target)


def taskHandler(serv: Any) -> Callable[..., Any]:
    """
    The server's C{task} callback.

    @raise NoTaskWorkers: if it has none.
    """
    handler = serv.getCallback("task")
    if handler is None:
        raise NoTaskWorkers("no 'task' callback registered")
    return handler
