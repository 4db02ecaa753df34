"""
Tests for L{swooletw.examples} (the tutorial's programs) and the C{tap/*.tac}
files that run them.

The unit tests run each example on a L{ServerHarness} (in-memory clients,
fake clock) and read what it logs; L{TacIntegrationTests} runs each
C{.tac} under a real C{twistd -ny} on a free port of 127.0.0.1 and talks to
it with a plain socket.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
import time
from typing import Any

from twisted.internet import task
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import formatEvent, globalLogPublisher
from twisted.python.compat import iterbytes
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from swooletw import timer
from swooletw.examples import echo, packets, timers
from swooletw.examples import task as taskExample
from swooletw.testing import ServerHarness
from tests.workersupport import waitUntil

#: The repository root (this file is C{tests/test_examples.py}).
REPO = FilePath(__file__).parent().parent()


class _LoggedTestCase(SynchronousTestCase):
    """
    Captures every log event of the test; starts harnesses that are stopped
    in cleanup.
    """

    def setUp(self) -> None:
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def logged(self, namespace: str) -> list[str]:
        """
        The formatted messages logged so far in C{namespace}.
        """
        return [formatEvent(e) for e in self.events if e.get("log_namespace") == namespace]

    def loggedEvents(self, namespace: str) -> list[dict[str, Any]]:
        """
        The events logged so far in C{namespace}.
        """
        return [e for e in self.events if e.get("log_namespace") == namespace]

    def harness(self, serv: Any, workerId: int = 0) -> ServerHarness:
        """
        A started harness for C{serv} as worker C{workerId}, stopped in
        cleanup.
        """
        harness = ServerHarness(serv, workerId=workerId)
        self.addCleanup(lambda: self.successResultOf(harness.stop()))
        return harness


class EchoExampleTests(_LoggedTestCase):
    """
    L{echo}: tutorial §7.1.
    """

    NAMESPACE = "swooletw.examples.echo"

    def test_replies(self) -> None:
        """
        Each receive is answered with C{b"hello server"} + the data.
        """
        client = self.harness(echo.makeServer()).connect()
        client.write(b"Just a test.")
        self.assertEqual(client.read(), b"hello serverJust a test.")
        client.write(b"again")
        self.assertEqual(client.read(), b"hello serveragain")

    def test_connectionsSeparate(self) -> None:
        """
        Replies go to the client that sent the data only.
        """
        harness = self.harness(echo.makeServer())
        first, second = harness.connect(), harness.connect()
        second.write(b"2")
        self.assertEqual((first.read(), second.read()), (b"", b"hello server2"))

    def test_logsConnectAndClose(self) -> None:
        """
        C{connect} logs "new client connected." and C{close} logs
        "Client close.", with the fd.
        """
        client = self.harness(echo.makeServer()).connect()
        self.assertEqual(self.logged(self.NAMESPACE), [f"new client connected. (fd {client.fd})"])
        client.disconnect()
        self.assertEqual(
            self.logged(self.NAMESPACE),
            [f"new client connected. (fd {client.fd})", f"Client close. (fd {client.fd})"],
        )

    def test_mainAddress(self) -> None:
        """
        C{makeServer(host, port)} listens on that address, with the
        tutorial's two workers.
        """
        harness = self.harness(echo.makeServer("127.0.0.1", 9777))
        port, _factory, _backlog, interface = harness.reactor.tcpServers[0]
        self.assertEqual((port, interface), (9777, "127.0.0.1"))
        self.assertEqual(harness.serv.setting["worker_num"], 2)


class PacketExamplesTests(_LoggedTestCase):
    """
    L{packets}: tutorial §13, EOF check, EOF split and length framing.
    """

    NAMESPACE = "swooletw.examples.packets"
    PACKET = b"Just a test.\r\n"

    def received(self) -> list[bytes]:
        """
        The C{data} of each "Server received data" event so far.
        """
        return [e["data"] for e in self.loggedEvents(self.NAMESPACE)]

    def test_eofCheckSeveralPacketsInOneReceive(self) -> None:
        """
        With C{open_eof_check} only, three packets written at once arrive
        in one receive.
        """
        client = self.harness(packets.makeEOFCheckServer()).connect()
        client.write(self.PACKET * 3)
        self.assertEqual(self.received(), [self.PACKET * 3])
        self.assertEqual(
            self.logged(self.NAMESPACE), [f"Server received data: {self.PACKET * 3!r}"]
        )

    def test_eofCheckWaitsForMarker(self) -> None:
        """
        With C{open_eof_check}, a receive holds everything up to the last
        marker; the rest waits for its marker.
        """
        client = self.harness(packets.makeEOFCheckServer()).connect()
        client.write(self.PACKET + b"Just")
        self.assertEqual(self.received(), [self.PACKET])
        client.write(b" a test.\r\n")
        self.assertEqual(self.received(), [self.PACKET, self.PACKET])

    def test_eofSplitOnePacketPerReceive(self) -> None:
        """
        With C{open_eof_split}, three packets written at once are three
        receives.
        """
        client = self.harness(packets.makeEOFSplitServer()).connect()
        client.write(b"one\r\ntwo\r\nthree\r\n")
        self.assertEqual(self.received(), [b"one\r\n", b"two\r\n", b"three\r\n"])
        self.assertEqual(
            self.logged(self.NAMESPACE)[0], "Server received data: b'one\\r\\n'"
        )

    def test_eofSplitByteByByte(self) -> None:
        """
        With C{open_eof_split}, a packet fed one byte at a time is one
        receive.
        """
        client = self.harness(packets.makeEOFSplitServer()).connect()
        for byte in iterbytes(self.PACKET):
            client.write(byte)
        self.assertEqual(self.received(), [self.PACKET])

    def test_lengthUnpacksBody(self) -> None:
        """
        The length server logs the body of C{pack('N', len) . data}.
        """
        client = self.harness(packets.makeLengthServer()).connect()
        client.write(struct.pack(">I", 12) + b"Just a test.")
        self.assertEqual(self.logged(self.NAMESPACE), ["server received data: b'Just a test.'"])

    def test_lengthThreePacketsOneWrite(self) -> None:
        """
        Three length-prefixed packets in one write are three bodies, in
        order.
        """
        bodies = [b"Just a test.", b"second", b"x" * 300]
        client = self.harness(packets.makeLengthServer()).connect()
        client.write(b"".join(struct.pack(">I", len(body)) + body for body in bodies))
        self.assertEqual([e["body"] for e in self.loggedEvents(self.NAMESPACE)], bodies)

    def test_lengthByteByByte(self) -> None:
        """
        A length-prefixed packet fed one byte at a time is one body.
        """
        client = self.harness(packets.makeLengthServer()).connect()
        for byte in iterbytes(struct.pack(">I", 5) + b"hello"):
            client.write(byte)
        self.assertEqual([e["body"] for e in self.loggedEvents(self.NAMESPACE)], [b"hello"])

    def test_lengthOverMaxCloses(self) -> None:
        """
        A header announcing more than C{package_max_length} (81920) closes
        the connection without a receive.
        """
        client = self.harness(packets.makeLengthServer()).connect()
        client.write(struct.pack(">I", 81920 * 2) + b"x")
        self.assertTrue(client.closed)
        self.assertEqual(self.loggedEvents(self.NAMESPACE), [])


class TimerExampleTests(_LoggedTestCase):
    """
    L{timers}: tutorial §12.
    """

    NAMESPACE = "swooletw.examples.timers"

    def ticks(self) -> list[str]:
        """
        The "hello, ..." messages logged so far.
        """
        return [m for m in self.logged(self.NAMESPACE) if m.startswith("hello, ")]

    def test_workerZeroTicksFiveTimes(self) -> None:
        """
        In worker 0, C{workerStart} starts a 1 s tick that logs
        "hello, world --- i" for i 1..5, then clears itself.
        """
        harness = self.harness(timers.makeServer())
        harness.advance(0.5)
        self.assertEqual(self.ticks(), [])
        for _ in range(20):
            harness.advance(0.5)
        self.assertEqual(self.ticks(), [f"hello, world --- {i}" for i in range(1, 6)])
        self.assertEqual(len(harness.serv.timers), 0)

    def test_tickEverySecond(self) -> None:
        """
        The worker 0 tick fires once per second.
        """
        harness = self.harness(timers.makeServer())
        harness.advance(1)
        self.assertEqual(len(self.ticks()), 1)
        harness.advance(0.9)
        self.assertEqual(len(self.ticks()), 1)
        harness.advance(0.1)
        self.assertEqual(len(self.ticks()), 2)

    def test_otherWorkerNoTick(self) -> None:
        """
        In worker 1, C{workerStart} starts no timer.
        """
        serv = timers.makeServer()
        harness = self.harness(serv, workerId=1)
        self.assertEqual(len(serv.timers), 0)
        for _ in range(10):
            harness.advance(1)
        self.assertEqual(self.ticks(), [])

    def test_receiveStartsOneOff(self) -> None:
        """
        A receive starts a 3 s one-off timer that logs "only once." exactly
        once.
        """
        serv = timers.makeServer()
        harness = self.harness(serv, workerId=1)  # no tick in the way
        harness.connect().write(b"Just a test.")
        harness.advance(2.9)
        self.assertEqual(self.logged(self.NAMESPACE), [])
        harness.advance(0.1)
        self.assertEqual(self.logged(self.NAMESPACE), ["only once."])
        for _ in range(10):
            harness.advance(1)
        self.assertEqual(self.logged(self.NAMESPACE), ["only once."])
        self.assertEqual(len(serv.timers), 0)

    def test_oneOffPerReceive(self) -> None:
        """
        Two receives start two one-off timers.
        """
        serv = timers.makeServer()
        harness = self.harness(serv, workerId=1)
        client = harness.connect()
        client.write(b"a")
        harness.advance(1)
        client.write(b"b")
        harness.advance(10)
        self.assertEqual(self.logged(self.NAMESPACE), ["only once.", "only once."])

    def test_globalTickFiveTimesWithParams(self) -> None:
        """
        L{timers.startGlobalTick} ticks through L{swooletw.timer} every
        second with params C{'world'}, five times, then clears itself.
        """
        clock = task.Clock()
        saved = timer.defaultTimers._clock

        def restore() -> None:
            timer.defaultTimers.clearAll()
            timer.defaultTimers._clock = saved

        self.addCleanup(restore)
        timer.defaultTimers._clock = clock
        timerId = timers.startGlobalTick()
        self.assertTrue(timer.exists(timerId))
        clock.pump([1] * 10)
        events = self.loggedEvents(self.NAMESPACE)
        self.assertEqual([e["params"] for e in events], ["world"] * 5)
        self.assertEqual(self.ticks(), [f"hello, world --- {i}" for i in range(1, 6)])
        self.assertFalse(timer.exists(timerId))
        self.assertEqual(clock.getDelayedCalls(), [])


class TaskExampleTests(_LoggedTestCase):
    """
    L{taskExample}: tutorial §8, on a harness (the task "thread" runs at once,
    its sleep is recorded, not slept).
    """

    NAMESPACE = "swooletw.examples.task"

    def test_receiveTasksRepliesAndFinishes(self) -> None:
        """
        A receive answers "This is a message from server." and goes on; the
        task logs its start, five steps a second apart and its end; its
        result (the data) reaches finish, which logs it.
        """
        slept: list[float] = []
        serv = taskExample.makeServer(sleep=slept.append)
        client = self.harness(serv).connect()
        client.write(b"Just a test.")
        self.assertEqual(client.read(), b"This is a message from server.")
        self.assertEqual(slept, [1] * 5)
        self.assertEqual(self.logged(self.NAMESPACE), [
            "new client connected.",
            "worker received data: b'Just a test.'",
            "task start. --- from worker id: 0.",
            *[f"task runing. --- {i}" for i in range(5)],
            "task end.",
            "finish received data b'Just a test.'",
            "worker continue run.",
        ])

    def test_oneTaskWorker(self) -> None:
        """
        The tutorial's C{task_worker_num} 1; one worker process.
        """
        setting = taskExample.makeServer().setting
        self.assertEqual((setting["task_worker_num"], setting["worker_num"]), (1, 1))


# ------------------------------------------------------------ integration

_TWISTD = "import sys; sys.argv[0] = 'twistd'; from twisted.scripts.twistd import run; run()"


def _freePort() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Twistd:
    """
    One C{twistd -ny FILE} process, its output in a file.
    """

    def __init__(self, testCase: SynchronousTestCase, tac: str, tacDir: str | None = None) -> None:
        self.testCase = testCase
        self.port = _freePort()
        workdir = os.path.abspath(testCase.mktemp())
        os.makedirs(workdir)
        self.outputPath = os.path.join(workdir, "twistd.out")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO.path, env.get("PYTHONPATH")]))
        env["SWOOLETW_PORT"] = str(self.port)
        env["PYTHONUNBUFFERED"] = "1"
        tacPath = os.path.join(tacDir or REPO.child("tap").path, tac)
        self.pidFile = os.path.join(workdir, "twistd.pid")
        with open(self.outputPath, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _TWISTD, "-ny", tacPath, "--pidfile", self.pidFile],
                cwd=workdir,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        testCase.addCleanup(self.kill)

    def output(self) -> str:
        with open(self.outputPath, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def kill(self) -> None:
        """
        SIGTERM, then SIGKILL after 5 s; reap.
        """
        if self.process.poll() is not None:
            return
        os.kill(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=5)

    def connect(self, timeout: float = 10) -> socket.socket:
        """
        Connect to the server once it accepts; fail after C{timeout}.
        """
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                self.testCase.fail(f"twistd exited with {self.process.returncode}:\n{self.output()}")
            try:
                s = socket.create_connection(("127.0.0.1", self.port), timeout=1)
            except OSError:
                if time.monotonic() > deadline:
                    self.testCase.fail(f"port {self.port} not accepting after {timeout}s:\n{self.output()}")
                time.sleep(0.05)  # poll interval: try again until it listens
            else:
                s.settimeout(5)
                self.testCase.addCleanup(s.close)
                return s

    def waitForOutput(self, text: str, count: int = 1, timeout: float = 5) -> str:
        """
        Wait until C{text} appears C{count} times in the output; fail after
        C{timeout}.
        """
        deadline = time.monotonic() + timeout
        while True:
            output = self.output()
            if output.count(text) >= count:
                return output
            if time.monotonic() > deadline or self.process.poll() is not None:
                self.testCase.fail(f"{text!r} x{count} not in twistd output:\n{output}")
            time.sleep(0.05)  # poll interval

    def stopCleanly(self) -> None:
        """
        SIGTERM; check that twistd shut down gracefully within 5 s, with
        exit status 0 (the master handles SIGTERM itself, so twistd does
        not re-raise it on the way out).
        """
        os.kill(self.process.pid, signal.SIGTERM)
        status = self.process.wait(timeout=5)
        output = self.output()
        self.testCase.assertEqual(status, 0, output)
        self.testCase.assertIn("Server Shut Down.", output)
        self.testCase.assertNotIn("Traceback", output)
        self.testCase.assertNotIn("Unhandled", output)


def _recvExactly(s: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = s.recv(count - len(data))
        if not chunk:
            break
        data += chunk
    return data


class TacIntegrationTests(SynchronousTestCase):
    """
    Each C{tap/*.tac} runs under C{twistd -ny}, serves on C{SWOOLETW_PORT}
    and shuts down gracefully on SIGTERM.
    """

    def test_tacFilesCovered(self) -> None:
        """
        These tests cover every C{.tac} in C{tap/}.
        """
        tacs = sorted(p.basename() for p in REPO.child("tap").globChildren("*.tac"))
        self.assertEqual(
            tacs,
            ["echo.tac", "eof_check.tac", "eof_split.tac", "http.tac", "length.tac", "mail.tac",
             "noreload.tac", "reload.tac", "task.tac", "timers.tac"],
        )

    def reloadCase(self, tac: str) -> tuple[bytes, bytes]:
        """
        Run C{tac} from a copy of C{tap/} with C{greeting.py}; ask, change
        C{greeting.py}, reload with C{SIGUSR1}, ask again.
        """
        import shutil

        tacDir = os.path.abspath(self.mktemp())
        shutil.copytree(REPO.child("tap").path, tacDir)
        twistd = _Twistd(self, tac, tacDir)

        def ask() -> bytes:
            s = twistd.connect()
            s.sendall(b"x")
            return s.recv(100)

        before = ask()
        greeting = os.path.join(tacDir, "greeting.py")
        with open(greeting) as f:
            source = f.read()
        with open(greeting, "w") as f:
            f.write(source.replace('b"v1: "', 'b"version 2: "'))
        self.assertTrue(waitUntil(lambda: os.path.exists(twistd.pidFile), 10), twistd.output())
        with open(twistd.pidFile) as f:
            os.kill(int(f.read()), signal.SIGUSR1)
        # The master logs this once it has reaped the old worker, and starts
        # the new one right after: from now on only the new worker can
        # accept a connection (one waiting in the listen queue is served
        # when it starts).
        twistd.waitForOutput("exited for reload; starting another", timeout=10)
        twistd.waitForOutput("worker 0 started (pid", count=2)
        after = ask()
        self.assertEqual(twistd.output().count("exited for reload"), 1, twistd.output())
        return before, after

    def test_reload(self) -> None:
        """
        reload.tac (Reload.php): after SIGUSR1 the workers serve the new
        greeting.py.
        """
        self.assertEqual(self.reloadCase("reload.tac"), (b"v1: x", b"version 2: x"))

    def test_noreload(self) -> None:
        """
        noreload.tac (NoReload.php): greeting.py was imported before start,
        so the reloaded workers still serve the old code.
        """
        self.assertEqual(self.reloadCase("noreload.tac"), (b"v1: x", b"v1: x"))

    def test_echo(self) -> None:
        """
        echo.tac replies C{b"hello server"} + data.
        """
        twistd = _Twistd(self, "echo.tac")
        s = twistd.connect()
        s.sendall(b"Just a test.")
        expected = b"hello serverJust a test."
        self.assertEqual(_recvExactly(s, len(expected)), expected)
        twistd.waitForOutput("new client connected.")
        s.close()
        twistd.waitForOutput("Client close.")
        twistd.stopCleanly()

    def test_http(self) -> None:
        """
        http.tac (tutorial §15) answers every request C{hello world.} with
        status 200, keep-alive, and logs the request.
        """
        twistd = _Twistd(self, "http.tac")
        s = twistd.connect()
        request = b"GET /index?x=1 HTTP/1.1\r\nHost: swoole.example.com\r\n\r\n"
        s.sendall(request * 2)
        answers = b""
        while answers.count(b"hello world.") < 2:
            chunk = s.recv(65536)
            self.assertTrue(chunk, answers)
            answers += chunk
        self.assertTrue(answers.startswith(b"HTTP/1.1 200 OK\r\n"), answers)
        self.assertIn(b"Connection: keep-alive\r\n", answers)
        self.assertIn(b"Content-Length: 12\r\n", answers)
        twistd.waitForOutput("'request_uri': '/index'", count=2)
        s.close()
        twistd.stopCleanly()

    def test_eofCheck(self) -> None:
        """
        eof_check.tac logs every packet sent (possibly several per line).
        """
        twistd = _Twistd(self, "eof_check.tac")
        s = twistd.connect()
        s.sendall(b"Just a test.\r\n" * 3)
        output = twistd.waitForOutput("Just a test.\\r\\n", count=3)
        self.assertIn("Server received data: b'Just a test.\\r\\n", output)
        twistd.stopCleanly()

    def test_eofSplit(self) -> None:
        """
        eof_split.tac logs one line per packet.
        """
        twistd = _Twistd(self, "eof_split.tac")
        s = twistd.connect()
        s.sendall(b"Just a test.\r\n" * 3)
        line = "Server received data: b'Just a test.\\r\\n'"
        twistd.waitForOutput(line, count=3)
        twistd.stopCleanly()
        # twistd has exited: anything extra would be in its output now.
        self.assertEqual(twistd.output().count(line), 3)

    def test_length(self) -> None:
        """
        length.tac logs the body of C{pack('N', len) . data}.
        """
        twistd = _Twistd(self, "length.tac")
        s = twistd.connect()
        s.sendall(struct.pack(">I", 12) + b"Just a test." + struct.pack(">I", 6) + b"second")
        twistd.waitForOutput("server received data: b'Just a test.'")
        twistd.waitForOutput("server received data: b'second'")
        twistd.stopCleanly()

    def test_timers(self) -> None:
        """
        timers.tac runs both ticks (worker 0's and the global one): two
        "hello, world --- 1" lines after about a second.
        """
        twistd = _Twistd(self, "timers.tac")
        s = twistd.connect()
        s.sendall(b"Just a test.")
        twistd.waitForOutput("hello, world --- 1", count=2, timeout=5)
        twistd.stopCleanly()

    def test_task(self) -> None:
        """
        task.tac replies at once, while its task works five seconds in a
        task thread and finish then logs the data.
        """
        twistd = _Twistd(self, "task.tac")
        s = twistd.connect()
        s.sendall(b"Just a test.")
        expected = b"This is a message from server."
        self.assertEqual(_recvExactly(s, len(expected)), expected)
        output = twistd.waitForOutput("task runing. --- 0", timeout=5)
        self.assertIn("worker continue run.", output)
        self.assertNotIn("finish received data", output)
        output = twistd.waitForOutput("finish received data b'Just a test.'", timeout=10)
        self.assertIn("task end.", output)
        twistd.stopCleanly()

    def test_mail(self) -> None:
        """
        mail.tac answers a send-mail packet with its task id and writes
        the message into ./outbox/new of its working directory.
        """
        import email
        import email.policy
        import json

        twistd = _Twistd(self, "mail.tac")
        s = twistd.connect()
        s.sendall(json.dumps({"event": "send-mail", "to": "receiver@example.com",
                              "subject": "just a test", "content": "This just a test."}).encode() + b"\r\n")
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = s.recv(1024)
            self.assertTrue(chunk, reply)
            reply += chunk
        self.assertIs(json.loads(reply)["ok"], True)
        outbox = os.path.join(os.path.dirname(twistd.outputPath), "outbox", "new")
        delivered = waitUntil(lambda: os.path.isdir(outbox) and os.listdir(outbox), 10)
        self.assertTrue(delivered, twistd.output())
        [name] = os.listdir(outbox)
        with open(os.path.join(outbox, name), "rb") as f:
            message = email.message_from_binary_file(f, policy=email.policy.default)
        self.assertEqual((message["To"], message["Subject"]), ("receiver@example.com", "just a test"))
        twistd.stopCleanly()
