"""
Server.start() with daemonize, log_file and pid_file, as a real process.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

from twisted.trial.unittest import TestCase

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = """
import sys
import swooletw

serv = swooletw.Server("127.0.0.1", int(sys.argv[1]))
serv.set({{"worker_num": {workers}, "daemonize": True,
          "log_file": sys.argv[2], "pid_file": sys.argv[3]}})
serv.on("WorkerStart", lambda serv, workerId: print("worker started", workerId, flush=True))
serv.on("Receive", lambda serv, fd, fromId, data: serv.send(fd, b"daemon:" + data))
serv.start()
"""


def freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def waitFor(predicate, timeout: float = 10.0) -> bool:
    """
    Poll C{predicate} (a real condition: a file, a reply, a pid) until it
    holds or C{timeout} seconds pass.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)  # poll interval
    return False


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class DaemonizeTests(TestCase):
    """
    daemonize detaches, log_file gets the logs and the output, pid_file
    holds the master's pid and goes away on a clean stop.
    """

    def run_daemon(self, workers: int) -> None:
        tmp = tempfile.mkdtemp()
        script = os.path.join(tmp, "server.py")
        with open(script, "w") as f:
            f.write(SCRIPT.format(workers=workers))
        port = freePort()
        logFile = os.path.join(tmp, "server.log")
        pidFile = os.path.join(tmp, "server.pid")
        env = dict(os.environ, PYTHONPATH=REPO)
        started = subprocess.run(
            [sys.executable, script, str(port), logFile, pidFile],
            cwd=tmp, env=env, timeout=20, capture_output=True,
        )
        self.assertEqual(started.returncode, 0, started.stderr)
        self.assertTrue(waitFor(lambda: os.path.exists(pidFile) and os.path.getsize(pidFile)))
        with open(pidFile) as f:
            pid = int(f.read())

        def stop() -> None:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)

        self.addCleanup(stop)
        self.assertTrue(alive(pid))
        self.assertNotEqual(os.getsid(pid), os.getsid(0))

        def answered() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    s.sendall(b"x")
                    return s.recv(100) == b"daemon:x"
            except OSError:
                return False

        self.assertTrue(waitFor(answered))
        os.kill(pid, signal.SIGTERM)
        self.assertTrue(waitFor(lambda: not alive(pid), 10))
        self.assertFalse(os.path.exists(pidFile))
        with open(logFile) as f:
            log = f.read()
        self.assertIn("worker started 0", log)
        self.assertIn("Main loop terminated", log)

    def test_singleProcess(self) -> None:
        """worker_num 1: detached, answering, logging to log_file, pid file removed at stop."""
        self.run_daemon(1)

    def test_master(self) -> None:
        """worker_num 2: the same, with the master's pid in pid_file."""
        self.run_daemon(2)
