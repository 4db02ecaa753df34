"""
Helpers for L{tests.test_workers}: run a multi-process server script from
C{tests/apps/} as a real process tree, parse what it prints, talk to it over
real sockets on 127.0.0.1.

Every process started here is stopped by its PID in the test's cleanup
(C{SIGTERM}, then C{SIGKILL}), the master and every worker it logged, and
every wait is bounded.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any, Callable

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APPS = os.path.join(REPO, "tests", "apps")


def processGone(pid: int) -> bool:
    """
    Whether C{pid} no longer runs: no such process, or a zombie (a worker
    orphaned by a killed master is reparented to an init that may never
    reap it).
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            # "pid (comm) state ...": comm may hold spaces and parentheses
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")


def cmdline(pid: int) -> str:
    """
    C{/proc/PID/cmdline} as text, NULs as spaces, stripped.
    """
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().replace(b"\0", b" ").decode(errors="replace").strip()


def processAge(pid: int) -> float:
    """
    How long process C{pid} has been running, in seconds, as the kernel
    counts it (C{/proc/PID/stat}'s start time against C{/proc/uptime}); 0
    if it is gone.
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
    except (OSError, IndexError, ValueError):
        return 0.0
    # fields[0] is the state (field 3); the start time is field 22.
    return uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK")


def waitUntil(predicate: Callable[[], Any], timeout: float, interval: float = 0.01) -> Any:
    """
    Poll C{predicate} until it returns something true or C{timeout}
    seconds pass; return its last result.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result or time.monotonic() >= deadline:
            return result
        time.sleep(interval)  # poll interval


class ServerProcess:
    """
    A server script from C{tests/apps/} run with C{sys.executable},
    C{PYTHONPATH} the repository, its cwd a fresh temporary directory, its
    stdout and stderr one log file.

    @ivar port: the port it listens on (it binds port 0 and prints it).
    @ivar masterPid: the master's pid.
    """

    def __init__(self, testCase: Any, config: dict[str, Any], script: str = "cmdserver.py") -> None:
        self.testCase = testCase
        self.directory = os.path.abspath(testCase.mktemp())
        os.makedirs(self.directory)
        self.logPath = os.path.join(self.directory, "server.log")
        self._logFile = open(self.logPath, "wb")
        env = dict(os.environ)
        env["PYTHONPATH"] = REPO
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(APPS, script), json.dumps(config)],
            cwd=self.directory,
            stdin=subprocess.DEVNULL,
            stdout=self._logFile,
            stderr=subprocess.STDOUT,
            env=env,
        )
        testCase.addCleanup(self.stop)
        match = self.waitFor(r"^PORT (\d+) MASTER (\d+)$", timeout=10)
        self.port = int(match.group(1))
        self.masterPid = int(match.group(2))
        self.testCase.assertEqual(self.masterPid, self.proc.pid)

    # ------------------------------------------------------------- output

    def log(self) -> str:
        """
        Everything printed so far.
        """
        with open(self.logPath, "rb") as f:
            return f.read().decode(errors="replace")

    def lines(self, pattern: str) -> list[re.Match[str]]:
        """
        Every match of C{pattern} (a regex, line by line) in the output.
        """
        return list(re.finditer(pattern, self.log(), re.MULTILINE))

    def waitFor(self, pattern: str, count: int = 1, timeout: float = 5.0) -> re.Match[str]:
        """
        Wait for the C{count}th match of C{pattern} in the output; fail the
        test with the output if it does not come in time.
        """
        found = waitUntil(lambda: len(self.lines(pattern)) >= count, timeout)
        if not found:
            self.testCase.fail(
                f"no {count} line(s) matching {pattern!r} after {timeout}s; output:\n{self.log()}"
            )
        return self.lines(pattern)[count - 1]

    def workerStarts(self) -> list[tuple[int, int]]:
        """
        (worker id, pid) of every C{workerStart} that completed, in order.
        """
        return [(int(m.group(1)), int(m.group(2))) for m in self.lines(r"^WORKERSTART (\d+) (\d+)$")]

    def workerPids(self) -> dict[int, int]:
        """
        The current pid of each worker id (its last C{workerStart}).
        """
        return dict(self.workerStarts())

    def waitForWorkers(self, count: int = 2, timeout: float = 5.0) -> dict[int, int]:
        """
        Wait until C{count} distinct worker ids have run C{workerStart}.
        """
        ok = waitUntil(lambda: len(self.workerPids()) >= count, timeout)
        if not ok:
            self.testCase.fail(f"{count} workers did not start in {timeout}s; output:\n{self.log()}")
        return self.workerPids()

    def forkedPids(self) -> list[int]:
        """
        Every worker pid the master logged as started.
        """
        return [int(m.group(1)) for m in self.lines(r"worker \d+ started \(pid (\d+)\)")]

    def position(self, pattern: str, count: int = 1) -> int:
        """
        Where in the output the C{count}th match of C{pattern} starts (for
        order-of-events assertions: the file's order is the order of the
        writes); fails the test if there is no such match.
        """
        found = self.lines(pattern)
        if len(found) < count:
            self.testCase.fail(f"no {count} line(s) matching {pattern!r}; output:\n{self.log()}")
        return found[count - 1].start()

    def errors(self) -> list[str]:
        """
        Lines that look like a failure: tracebacks and critical log events.
        """
        return [
            line for line in self.log().splitlines()
            if "Traceback" in line or "#critical" in line or "Unhandled" in line
        ]

    # ------------------------------------------------------------ control

    def signal(self, signum: int) -> None:
        os.kill(self.masterPid, signum)

    def stopGracefully(self, timeout: float = 10.0) -> int | None:
        """
        C{SIGTERM} to the master; its exit status, or L{None} if it still
        runs after C{timeout}.  Once it has exited, everything the server
        was going to print is in the output: check that something did not
        happen after this.
        """
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
        return self.wait(timeout)

    def wait(self, timeout: float) -> int | None:
        """
        The master's exit status, or L{None} if it still runs after
        C{timeout}.
        """
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        """
        Stop the master and every worker it logged, by PID: C{SIGTERM},
        then C{SIGKILL} after a bounded wait.
        """
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            if self.wait(5) is None:
                self.proc.kill()
                self.wait(5)
        workers = set(self.forkedPids()) | {pid for _, pid in self.workerStarts()}
        alive = [pid for pid in workers if not processGone(pid) and _isOurs(pid)]
        for pid in alive:
            _signal(pid, signal.SIGTERM)
        alive = [pid for pid in alive if not waitUntil(lambda p=pid: processGone(p), 2)]
        for pid in alive:
            _signal(pid, signal.SIGKILL)
        self._logFile.close()


def _isOurs(pid: int) -> bool:
    try:
        return "swooletw" in cmdline(pid) or "cmdserver" in cmdline(pid)
    except OSError:
        return False


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


# ---------------------------------------------------------------- clients


class LineClient:
    """
    A blocking client of the line protocol of C{tests/apps/cmdserver.py}.
    """

    def __init__(self, port: int, timeout: float = 5.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buffer = b""

    def request(self, command: str, timeout: float = 5.0) -> str:
        """
        Send one command and return the next line that is not a relayed
        C{MSG}.
        """
        self.sock.sendall(command.encode() + b"\n")
        while True:
            line = self.readLine(timeout)
            if not line.startswith("MSG "):
                return line

    def readLine(self, timeout: float = 5.0) -> str:
        """
        The next line, without its newline.

        @raise EOFError: if the server closed the connection first.
        @raise socket.timeout: if nothing came in C{timeout} seconds.
        """
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise socket.timeout(f"no line in {timeout}s (have {self.buffer!r})")
            self.sock.settimeout(remaining)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(f"connection closed (have {self.buffer!r})")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode()

    def readEOF(self, timeout: float = 5.0) -> bytes:
        """
        Read until the server closes the connection; return what came.
        """
        data = self.buffer
        self.buffer = b""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise socket.timeout(f"no EOF in {timeout}s")
            self.sock.settimeout(remaining)
            chunk = self.sock.recv(65536)
            if not chunk:
                return data
            data += chunk

    @property
    def localPort(self) -> int:
        return self.sock.getsockname()[1]

    def close(self) -> None:
        self.sock.close()


def oneShot(port: int, command: str, timeout: float = 3.0) -> str:
    """
    A new connection for one command (the tutorial's PHP TaskClient):
    connect, send, read the reply, close.
    """
    client = LineClient(port, timeout)
    try:
        return client.request(command, timeout)
    finally:
        client.close()


def identify(reply: str) -> tuple[int, int, int]:
    """
    (worker id, pid, fd) from an C{ID} reply.
    """
    word, workerId, pid, fd = reply.split()
    assert word == "ID", reply
    return int(workerId), int(pid), int(fd)


class LoadLoop:
    """
    A thread sending C{command} on a new connection per request until
    stopped, recording every reply and every error with the time
    (C{time.monotonic()}) its request was started: a request started after
    the test saw an event happen is served after that event.

    @ivar replies: (start time, reply) of each request answered, in order.
    @ivar failures: (start time, error) of each request that failed.
    """

    def __init__(self, port: int, command: str, pause: float = 0.005, timeout: float = 3.0) -> None:
        self.port = port
        self.command = command
        self.pause = pause
        self.timeout = timeout
        self.replies: list[tuple[float, str]] = []
        self.failures: list[tuple[float, str]] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> LoadLoop:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stopping.is_set():
            startedAt = time.monotonic()
            try:
                reply = oneShot(self.port, self.command, self.timeout)
            except Exception as e:
                self.failures.append((startedAt, f"{type(e).__name__}: {e}"))
            else:
                self.replies.append((startedAt, reply))
            if self.pause:
                time.sleep(self.pause)  # paces the requests

    def repliesSince(self, since: float) -> list[str]:
        """
        The replies to requests started after C{since}.
        """
        return [reply for startedAt, reply in list(self.replies) if startedAt > since]

    def waitForReplies(self, count: int, since: float = 0.0, timeout: float = 10.0) -> list[str]:
        """
        Wait until C{count} requests started after C{since} were answered;
        their replies.  Fails (AssertionError) after C{timeout}.
        """
        if not waitUntil(lambda: len(self.repliesSince(since)) >= count, timeout):
            got = len(self.repliesSince(since))
            raise AssertionError(f"{got} of {count} replies in {timeout}s; failures: {self.failures[-3:]}")
        return self.repliesSince(since)

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(self.timeout + 2)


def clientsOnBothWorkers(testCase: Any, port: int, tries: int = 60) -> dict[int, tuple[LineClient, int, int]]:
    """
    Open connections until one is served by worker 0 and one by worker 1;
    the others are closed.  Returns worker id -> (client, pid, fd).
    """
    found: dict[int, tuple[LineClient, int, int]] = {}
    for _ in range(tries):
        client = LineClient(port)
        workerId, pid, fd = identify(client.request("id"))
        if workerId in found:
            client.close()
        else:
            found[workerId] = (client, pid, fd)
            testCase.addCleanup(client.close)
        if len(found) == 2:
            return found
    testCase.fail(f"{tries} connections did not reach both workers: {sorted(found)}")
    raise AssertionError  # not reached
