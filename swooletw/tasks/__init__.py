"""
Swoole's task workers: C{task()}, C{finish()}, C{taskwait()},
C{taskWaitMulti()}, as threads of each worker (L{pool}) or as processes
shared by all workers (L{processes}), with an optional journal so nothing
accepted is lost (L{journal}).
"""

from swooletw.tasks.base import NoTaskWorkers, TaskError, TaskTimeout, checkTaskData
from swooletw.tasks.pool import TaskPool, ThreadTaskPool
from swooletw.tasks.processes import ProcessTaskPool, TaskDispatcher, TaskFailed

__all__ = [
    "TaskError",
    "NoTaskWorkers",
    "TaskTimeout",
    "TaskFailed",
    "checkTaskData",
    "TaskPool",
    "ThreadTaskPool",
    "ProcessTaskPool",
    "TaskDispatcher",
]
