"""
Stopping a supervised server as systemd and a terminal do: C{SIGTERM} or
C{SIGINT} to the whole process group (master, workers and task worker
processes at once).  A graceful stop is silent apart from its info lines and
exits 0, under twistd too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from twisted.trial.unittest import TestCase

from tests.workersupport import processGone, waitUntil

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_TWISTD = "import sys; sys.argv[0] = 'twistd'; from twisted.scripts.twistd import run; run()"


class ProcessGroupSignalTests(TestCase):
    """
    The default app (2 workers, 2 task worker processes) under
    C{twistd -n}, signalled as a process group.
    """

    def startTwistd(self) -> tuple[subprocess.Popen[bytes], str]:
        workdir = os.path.abspath(self.mktemp())
        os.makedirs(workdir)
        logPath = os.path.join(workdir, "out.log")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO, env.get("PYTHONPATH")]))
        env["PYTHONUNBUFFERED"] = "1"
        with open(logPath, "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-c", _TWISTD, "-n", "--pidfile=", "swoole-tcp",
                 "--listen", "tcp:0:interface=127.0.0.1",
                 "--setting", "task_worker_mode=process"],
                cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )

        def stop() -> None:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)

        self.addCleanup(stop)
        read = lambda: open(logPath).read()  # noqa: E731
        # Ready: both workers adopted the port, both task workers started.
        ready = waitUntil(
            lambda: read().count("PortFactory starting") == 2 and read().count("worker 3 started") == 1,
            15, 0.05,
        )
        self.assertTrue(ready, read())
        return proc, logPath

    def stopsQuietly(self, signum: int) -> None:
        proc, logPath = self.startTwistd()
        os.killpg(proc.pid, signum)
        status = proc.wait(15)
        output = open(logPath).read()
        self.assertEqual(status, 0, output)
        for bad in ("Traceback", "ReactorNotRunning", "#critical", "#error"):
            self.assertNotIn(bad, output)
        self.assertTrue(waitUntil(lambda: processGone(proc.pid), 5))

    def test_sigtermToGroup(self) -> None:
        """
        C{SIGTERM} to the process group: exit status 0, no traceback, no
        error line.
        """
        self.stopsQuietly(signal.SIGTERM)

    def test_sigintToGroup(self) -> None:
        """
        C{SIGINT} to the process group (Ctrl-C): the same.
        """
        self.stopsQuietly(signal.SIGINT)
