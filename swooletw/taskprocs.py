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
import os
import random
import traceback
from collections import deque
from typing import TYPE_CHECKING, Any, Callable

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from swooletw.channel import Channel
from swooletw.tasks import TaskError, TaskPool, _Finish, _isAsync, checkTaskData

if TYPE_CHECKING:  # pragma: no cover
    from swooletw.server import Server

__all__ = ["TaskFailed", "ProcessTaskPool", "TaskDispatcher", "runTaskWorker"]


class TaskFailed(TaskError):
    """
    A task failed in a task worker process; the message is its error.
    """


class ProcessTaskPool(TaskPool):
    """
    A worker's side of the task worker processes: tasks go to the master,
    results come back.
    """

    def __init__(self, serv: Server, reactor: Any, channel: Channel, store: Any = None) -> None:
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
        waiting: defer.Deferred[Any] = defer.Deferred()
        self._waiting[taskId] = waiting
        self.running += 1
        self.channel.send("task", taskId, self.serv.worker_id if src is None else src, data, dst)
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


class TaskWorkerService(Service):
    """
    Runs in a task worker process: one task at a time, from the master.
    """

    log = Logger()

    def __init__(self, serv: Server, channel: Channel) -> None:
        self.serv = serv
        self.channel = channel
        self.exitCode = 0
        self.handled = 0
        limit = serv.setting["task_max_request"]
        grace = limit // 2
        self.recycleAt = limit + (random.randint(0, grace) if grace else 0) if limit else 0
        self._current: defer.Deferred[None] | None = None
        self._stopping = False
        self._ping: LoopingCall | None = None

    def startService(self) -> None:
        super().startService()
        serv = self.serv
        callback = serv.getCallback("workerStart")
        if callback is not None:
            try:
                callback(serv, serv.worker_id)
            except Exception:
                self.log.failure("workerStart failed in task worker {id}", id=serv.worker_id)
                self.exitCode = 4
                _stop(serv.reactor)
                return
        self._ping = LoopingCall(lambda: self.channel.send("ping", serv._localStats()))
        self._ping.clock = serv.reactor
        self._ping.start(serv.setting["worker_ping_interval"], now=True)
        self.channel.send("ready", os.getpid())

    def runTask(self, taskId: int, src: int, data: Any) -> None:
        """
        Run one task and report it to the master.
        """
        self._current = defer.ensureDeferred(self._run(taskId, src, data))

    async def _run(self, taskId: int, src: int, data: Any) -> None:
        serv = self.serv
        finish = _Finish()
        serv._local.finish = finish
        serv._currentFinish(finish)
        try:
            handler = serv._taskHandler()
            result = handler(serv, taskId, src, data)
            if _isAsync(handler) or isinstance(result, defer.Deferred):
                result = await result
            if finish.called:
                result = finish.value
            checkTaskData(result, "result")
            ok, value = True, result
        except Exception as e:
            self.log.failure("task {task_id} failed", task_id=taskId)
            ok, value = False, "".join(traceback.format_exception_only(type(e), e)).strip()
        else:
            try:
                marshal.dumps(value)
            except ValueError as e:
                ok, value = False, f"task result cannot travel: {e}"
        finally:
            serv._local.finish = None
            serv._currentFinish(None)
        self.handled += 1
        self._current = None
        recycle = self.recycleAt and self.handled >= self.recycleAt and not self._stopping
        if recycle:
            # Before "taskdone", so the master gives this process no more.
            self.channel.send("recycling")
        self.channel.send("taskdone", taskId, ok, value)
        if recycle:
            _stop(serv.reactor)

    def stopService(self) -> defer.Deferred[None]:
        """
        Finish the running task (within C{max_wait_time}), then
        C{workerStop}.
        """
        super().stopService()
        self._stopping = True
        if self._ping is not None and self._ping.running:
            self._ping.stop()
        current = self._current or defer.succeed(None)
        waited: defer.Deferred[None] = defer.Deferred()
        reactor = self.serv.reactor
        timeout = reactor.callLater(self.serv.setting["max_wait_time"], lambda: waited.called or waited.callback(None))

        def finished(_: Any) -> None:
            if timeout.active():
                timeout.cancel()
            if not waited.called:
                waited.callback(None)

        current.addBoth(finished)

        def stopped(_: Any) -> defer.Deferred[None]:
            callback = self.serv.getCallback("workerStop")
            if callback is not None:
                try:
                    callback(self.serv, self.serv.worker_id)
                except Exception:
                    self.log.failure("workerStop failed in task worker {id}", id=self.serv.worker_id)
            return self._closeChannel()

        return waited.addCallback(stopped)

    def _closeChannel(self) -> defer.Deferred[None]:
        """
        Close the channel once what was written to it (the last result,
        "recycling") has reached the master; at most C{max_wait_time}.
        """
        closed: defer.Deferred[None] = defer.Deferred()
        if not self.channel._connected:
            return defer.succeed(None)
        reactor = self.serv.reactor
        timeout = reactor.callLater(
            self.serv.setting["max_wait_time"], lambda: closed.called or closed.callback(None)
        )

        def lost(reason: Any) -> None:
            if timeout.active():
                timeout.cancel()
            if not closed.called:
                closed.callback(None)

        self.channel.onLost = lost
        self.channel.transport.loseConnection()
        return closed


def _stop(reactor: Any) -> None:
    from swooletw.worker import stopReactor

    stopReactor(reactor)


def runTaskWorker(serv: Server, workerId: int, channelFd: int, masterPid: int, directory: Any) -> int:
    """
    The whole life of a forked task worker process; returns its exit
    status.
    """
    from swooletw.connection import ConnectionTable
    from swooletw.router import WorkerRouter
    from swooletw.worker import adoptChannel, becomeChild

    reactor = becomeChild(serv, workerId, f"swooletw: task worker {workerId}", masterPid, [channelFd])
    serv._taskProcess = True
    serv._taskDispatcher = None  # the master's, inherited by the fork
    channel = Channel({}, lambda reason: _stop(reactor))
    serv._table = ConnectionTable(1, 0)
    serv._connection = serv._table.get
    router = WorkerRouter(serv, workerId, channel, directory)
    serv._router = router
    service = TaskWorkerService(serv, channel)
    serv._service = service
    channel.handlers.update(router.handlers())
    channel.handlers["runtask"] = service.runTask
    channel.handlers["stop"] = lambda: _stop(reactor)
    adoptChannel(reactor, channelFd, channel)
    reactor.callWhenRunning(service.startService)
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)
    reactor.run()
    return service.exitCode
