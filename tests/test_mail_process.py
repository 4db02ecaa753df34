"""
The mail server as users run it: C{twistd -n swoole-tcp} with no
application arguments (the default: the mail server, two workers, two task
workers each, the Maildir C{./outbox}) in a real process started from a
temporary working directory, on a free port of 127.0.0.1; talked to by a
PHP-style raw socket client, L{TaskClient} and C{python -m swooletw
send-mail}.
"""

from __future__ import annotations

import email
import email.policy
import json
import os
import re
import signal
import socket
import subprocess
import sys

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from swooletw.mail.config import PASSWORD_ENV
from swooletw.mail.taskclient import TaskClient, TaskClientError
from tests.test_mail_hostile import HOSTILE, checkArrived, checkRefused
from tests.workersupport import waitUntil

#: The repository root (this file is C{tests/test_mail_process.py}).
REPO = FilePath(__file__).parent().parent()

_TWISTD = "import sys; sys.argv[0] = 'twistd'; from twisted.scripts.twistd import run; run()"


def freePort() -> int:
    """
    A port of 127.0.0.1 free right now.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cleanEnvironment() -> dict[str, str]:
    """
    This environment, with the checkout importable and no SMTP password.
    """
    env = {k: v for k, v in os.environ.items() if k != PASSWORD_ENV}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO.path, env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


class _Twistd:
    """
    C{twistd -n swoole-tcp --listen tcp:PORT:interface=127.0.0.1} (nothing
    else: the default application) running in C{workdir}, stopped by its
    PID in cleanup.
    """

    def __init__(self, testCase: SynchronousTestCase, *args: str, workdir: str | None = None) -> None:
        self.testCase = testCase
        if workdir is None:
            workdir = os.path.abspath(testCase.mktemp())
            os.makedirs(workdir)
        self.workdir = workdir
        self.port = freePort()
        self.outputPath = os.path.join(self.workdir, f"twistd-{self.port}.out")
        with open(self.outputPath, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _TWISTD, "-n", "--pidfile=", "swoole-tcp",
                 "--listen", f"tcp:{self.port}:interface=127.0.0.1", *args],
                cwd=self.workdir, env=cleanEnvironment(), stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        testCase.addCleanup(self.kill)
        self.waitForPort()

    def kill(self) -> None:
        """
        SIGKILL to every process of the server if still running (the tests
        stop it with SIGTERM); reap.
        """
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def waitForPort(self, timeout: float = 15) -> None:
        """
        Wait until the server accepts a connection (or has exited: fail).
        """

        def accepting() -> bool:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return False

        ready = waitUntil(lambda: self.process.poll() is not None or accepting(), timeout, 0.05)
        if not ready or self.process.poll() is not None:
            self.testCase.fail(f"twistd not accepting on {self.port}:\n{self.output()}")

    def output(self) -> str:
        with open(self.outputPath, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self) -> str:
        """
        SIGTERM; check a graceful stop within 10 s; return the output.
        """
        os.kill(self.process.pid, signal.SIGTERM)
        status = self.process.wait(timeout=10)
        output = self.output()
        # The master handles SIGTERM itself: a graceful stop exits 0.
        self.testCase.assertEqual(status, 0, output)
        self.testCase.assertIn("Server Shut Down.", output)
        self.testCase.assertNotIn("Traceback", output)
        return output


def waitForMail(
    testCase: SynchronousTestCase, twistd: _Twistd, subject: str, count: int = 1, timeout: float = 10
) -> list[email.message.EmailMessage]:
    """
    Wait until C{count} messages with C{subject} are in C{./outbox/new} of
    C{twistd}'s working directory; parse them.
    """
    new = os.path.join(twistd.workdir, "outbox", "new")
    found: list[email.message.EmailMessage] = []

    def arrived() -> bool:
        found.clear()
        for name in sorted(os.listdir(new)) if os.path.isdir(new) else []:
            with open(os.path.join(new, name), "rb") as f:
                message = email.message_from_binary_file(f, policy=email.policy.default)
            if message["Subject"] == subject:
                found.append(message)
        return len(found) >= count

    waitUntil(arrived, timeout, 0.05)
    testCase.assertEqual(len(found), count, twistd.output())
    return list(found)


class DefaultAppProcessTests(SynchronousTestCase):
    """
    The default application in a real C{twistd} (two workers): one server
    for the steps of L{test_defaultApp}, which would each cost a start.
    """

    def test_defaultApp(self) -> None:
        """
        The PHP-style client, L{TaskClient} and the command line are served;
        every message lands in C{./outbox/new} of the working directory;
        SIGTERM stops it gracefully.
        """
        self.twistd = _Twistd(self)
        self.checkPHPStyleClient()
        self.checkTaskClient()
        self.checkCommandLine()
        self.checkHostilePackets()
        output = self.twistd.stop()
        self.assertIn(f"mail goes to the Maildir {os.path.join(self.twistd.workdir, 'outbox')}", output)
        self.assertNotRegex(output, r"task \d+ failed")

    def outbox(self, subject: str, count: int = 1, timeout: float = 10) -> list[email.message.EmailMessage]:
        """
        Wait until C{count} messages with C{subject} are in
        C{./outbox/new} of the server's working directory; parse them.
        """
        return waitForMail(self, self.twistd, subject, count, timeout)

    def checkHostilePackets(self) -> None:
        """
        The hostile packets of L{tests.test_mail_hostile} on one
        connection: each reply is a refusal naming the field, or C{ok} and
        the message arrives intact in C{./outbox/new}.
        """
        packets = [case.packet(f"hostile{i}@example.com") for i, case in enumerate(HOSTILE)]
        with socket.create_connection(("127.0.0.1", self.twistd.port), timeout=10) as s:
            s.sendall(b"".join(json.dumps(p).encode("utf-8") + b"\r\n" for p in packets))
            received = b""
            while received.count(b"\r\n") < len(packets):
                chunk = s.recv(65536)
                self.assertTrue(chunk, f"connection closed after {received!r}")
                received += chunk
        replies = [json.loads(line) for line in received.split(b"\r\n")[:-1]]
        accepted = {}
        for i, (case, reply) in enumerate(zip(HOSTILE, replies)):
            if case.refused is None:
                self.assertEqual((reply["ok"], type(reply.get("task_id"))), (True, int), case.name)
                accepted[f"hostile{i}@example.com"] = i
            else:
                self.assertIs(reply["ok"], False, case.name)
                checkRefused(self, case, reply["error"])
        for marker, raw in self.arrived(set(accepted)).items():
            i = accepted[marker]
            checkArrived(self, HOSTILE[i], packets[i], raw)

    def arrived(self, markers: set[str], timeout: float = 10) -> dict[str, bytes]:
        """
        Wait until a message for each of C{markers} (its last Cc) is in
        C{./outbox/new}; their bytes by marker.
        """
        new = os.path.join(self.twistd.workdir, "outbox", "new")
        found: dict[str, bytes] = {}

        def allArrived() -> bool:
            found.clear()
            for name in os.listdir(new):
                with open(os.path.join(new, name), "rb") as f:
                    raw = f.read()
                cc = email.message_from_bytes(raw, policy=email.policy.default)["Cc"]
                if cc is not None and cc.addresses[-1].addr_spec in markers:
                    found[cc.addresses[-1].addr_spec] = raw
            return len(found) == len(markers)

        waitUntil(allArrived, timeout, 0.05)
        self.assertEqual(sorted(found), sorted(markers), self.twistd.output())
        return dict(found)

    def checkPHPStyleClient(self) -> None:
        """
        The tutorial's client: three packets in one write, never reading
        the replies, closing at once; three messages arrive.
        """
        packet = json.dumps({"event": "send-mail", "to": "receiver@example.com",
                             "subject": "php style", "content": "This just a test."}).encode() + b"\r\n"
        with socket.create_connection(("127.0.0.1", self.twistd.port), timeout=5) as s:
            s.sendall(packet * 3)
        messages = self.outbox("php style", count=3)
        self.assertEqual({m["To"] for m in messages}, {"receiver@example.com"})
        self.assertEqual(messages[0].get_content(), "This just a test.\n")

    def checkTaskClient(self) -> None:
        """
        L{TaskClient.sendMail} gets C{{"ok": true, "task_id": N}}; an
        address that is not one gets C{{"ok": false}} with the reason.
        """
        with TaskClient("127.0.0.1", self.twistd.port) as client:
            reply = client.sendMail("receiver@example.com", "task client", "hello", cc=["cc@example.com"])
            refused = client.sendMail("nobody", "x", "y")
        self.assertIs(reply["ok"], True)
        self.assertIsInstance(reply["task_id"], int)
        self.assertEqual(refused, {"ok": False, "error": "'to' is not an email address: 'nobody'"})
        [message] = self.outbox("task client")
        self.assertEqual(message["Cc"], "cc@example.com")
        self.assertEqual(message["From"], "swooletw@localhost")

    def checkCommandLine(self) -> None:
        """
        C{python -m swooletw send-mail}: the accepted reply printed, exit
        0, the HTML message arrives as text/html; a refused one: exit 1.
        """
        result = cli("--to", "receiver@example.com", "--subject", "from the cli",
                     "--content", "<p>hi</p>", "--html", port=self.twistd.port)
        self.assertEqual(result.returncode, 0, result.stderr)
        reply = json.loads(result.stdout)
        self.assertEqual((reply["ok"], type(reply["task_id"])), (True, int))
        [message] = self.outbox("from the cli")
        self.assertEqual(message.get_content_type(), "text/html")
        refused = cli("--to", "not-an-address", "--subject", "s", "--content", "c", port=self.twistd.port)
        self.assertEqual(refused.returncode, 1)
        self.assertIs(json.loads(refused.stdout)["ok"], False)


class JournalProcessTests(SynchronousTestCase):
    """
    The mail server with C{--setting task_store=sqlite:PATH}: what a client
    was told is accepted survives C{kill -9}.
    """

    def test_acceptedMailSurvivesKill(self) -> None:
        """
        The client gets C{{"ok": true}}; its task is sending through an SMTP
        server that never answers when C{kill -9} hits both workers: the
        master releases the task and a new worker runs it again (it
        connects again).  Then C{kill -9} of every process of the server;
        after a restart with the Maildir the mail arrives.
        """
        smtp = socket.create_server(("127.0.0.1", 0))
        self.addCleanup(smtp.close)
        smtp.settimeout(15)
        store = "task_store=sqlite:" + os.path.abspath(self.mktemp())
        url = f"smtp://127.0.0.1:{smtp.getsockname()[1]}?starttls=0&timeout=60"
        first = self.twistd = _Twistd(self, "--setting", store, "--smtp", url)
        with TaskClient("127.0.0.1", first.port) as client:
            reply = client.sendMail("receiver@example.com", "survives kill -9", "hello")
        self.assertIs(reply["ok"], True, first.output())
        connections = [smtp.accept()[0]]  # the task is running
        self.addCleanup(lambda: [c.close() for c in connections])
        workers = [int(pid) for pid in re.findall(r"worker \d started \(pid (\d+)\)", first.output())]
        self.assertEqual(len(workers), 2, first.output())
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        connections.append(smtp.accept()[0])  # run again by a new worker
        first.kill()

        self.twistd = _Twistd(self, "--setting", store, workdir=first.workdir)
        [message] = waitForMail(self, self.twistd, "survives kill -9")
        self.assertEqual(message.get_content(), "hello\n")
        self.assertIn("will run again", self.twistd.output())
        self.twistd.stop()


def cli(*argv: str, port: int) -> subprocess.CompletedProcess[str]:
    """
    Run C{python -m swooletw send-mail ARGV --port PORT}.
    """
    return subprocess.run(
        [sys.executable, "-m", "swooletw", "send-mail", *argv, "--port", str(port)],
        env=cleanEnvironment(), capture_output=True, text=True, timeout=30,
    )


class UnreachableTests(SynchronousTestCase):
    """
    The clients when no server listens.
    """

    def test_cliUnreachable(self) -> None:
        """
        C{send-mail} to a port with no server: a message on stderr, exit
        status 3, nothing on stdout.
        """
        result = cli("--to", "a@example.com", "--subject", "s", "--content", "c", port=freePort())
        self.assertEqual(result.returncode, 3)
        self.assertIn("connect failed", result.stderr)
        self.assertEqual(result.stdout, "")

    def test_cliUsage(self) -> None:
        """
        A missing required option: exit status 2, named.
        """
        result = cli("--to", "a@example.com", port=freePort())
        self.assertEqual(result.returncode, 2)
        self.assertIn("--subject", result.stderr)

    def test_taskClientUnreachable(self) -> None:
        """
        L{TaskClient} raises L{TaskClientError} when it cannot connect, as
        the PHP class throws.
        """
        error = self.assertRaises(TaskClientError, TaskClient, "127.0.0.1", freePort(), 2)
        self.assertIn("connect failed", str(error))
        self.assertEqual(error.errCode, 111)
