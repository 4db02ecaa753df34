"""
The seam between a server's API and the runtime that runs it.

A L{swooletw.Server} (or any server kind) holds settings, callbacks and
ports; every operation on connections, tasks and the process model goes to
the L{IServerRuntime} attached when it starts: the single process, a worker,
a task worker process or the master each provide one.  The server binds the
runtime's methods onto itself at attach time, so the facade adds no call on
the hot path.
"""

from __future__ import annotations

from zope.interface import Attribute, Interface

__all__ = ["IServerRuntime", "OPERATIONS"]


class IServerRuntime(Interface):
    """
    What a started server does, in the process it runs in.
    """

    clock = Attribute("The reactor this process runs.")

    def send(fd, data, serverSocket=-1):
        """
        Send bytes to connection C{fd}, wherever it lives; C{False} if it is
        closed or unknown (or its output buffer is full).
        """

    def sendto(ip, port, data, server_socket=-1):
        """
        Send one UDP datagram from a UDP port of this process.
        """

    def close(fd, reset=False):
        """
        Close connection C{fd}, wherever it lives.
        """

    def exists(fd):
        """
        Whether C{fd} is an open connection of the server.
        """

    def getClientInfo(fd, reactor_id=-1, ignore_error=False):
        """
        Swoole's client info of C{fd}, or C{False}.
        """

    def getClientList(start_fd=0, page_size=10):
        """
        Up to C{page_size} connection ids after C{start_fd}, in order.
        """

    def connectionIds():
        """
        Every open connection id of the server, in order.
        """

    def connectionCount():
        """
        How many connections the server has open.
        """

    def stats():
        """
        Swoole's C{stats()}.
        """

    def task(data, dst_worker_id=-1, callback=None):
        """
        Hand C{data} to a task worker; its id, or C{False} when the queue
        is full.
        """

    def taskwait(data, timeout=0.5, dst_worker_id=-1):
        """
        A Deferred with a task's result.
        """

    def taskWaitMulti(tasks, timeout=0.5):
        """
        A Deferred with C{{index: result}} of the tasks done in time.
        """

    def taskStored(task_id):
        """
        A Deferred that fires once task C{task_id} is safe in the task
        journal (at once when there is none).
        """

    def finish(data):
        """
        The result of the task running in the caller's context.
        """

    def runBlocking(f, *args, **kwargs):
        """
        Run blocking code off the reactor; a Deferred with its result.
        """

    def reload(only_reload_taskworker=False):
        """
        Replace the workers gracefully.
        """

    def shutdown():
        """
        Stop the whole server gracefully.
        """

    def currentWorkerId():
        """
        The worker id of the calling code (a task thread's own id in a task
        thread); -1 in the master.
        """

    def inTaskWorker():
        """
        Whether the calling code runs in a task worker.
        """


#: The L{Server} names bound to runtime methods at attach time: Swoole's
#: name (and its aliases) -> the L{IServerRuntime} method.
OPERATIONS: dict[str, str] = {
    "send": "send",
    "sendto": "sendto",
    "close": "close",
    "exists": "exists",
    "exist": "exists",
    "getClientInfo": "getClientInfo",
    "connection_info": "getClientInfo",
    "getClientList": "getClientList",
    "connection_list": "getClientList",
    "stats": "stats",
    "task": "task",
    "taskwait": "taskwait",
    "taskWaitMulti": "taskWaitMulti",
    "taskStored": "taskStored",
    "finish": "finish",
    "runBlocking": "runBlocking",
    "reload": "reload",
    "shutdown": "shutdown",
}
