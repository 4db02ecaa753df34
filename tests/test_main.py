"""
Tests for L{swooletw.__main__}: C{python -m swooletw}'s options.

What C{send-mail} does with a server is tested with a real one in
L{tests.test_mail_process}; here, the options it refuses before connecting.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

from swooletw.__main__ import main
from tests.clientsupport import freePort

#: The repository root (this file is C{tests/test_main.py}).
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: A complete C{send-mail} command line but for the connection options.
MAIL = ["send-mail", "--to", "a@example.com", "--subject", "s", "--content", "c"]


class UsageErrorTests(SynchronousTestCase):
    """
    A bad option value is one line on stderr naming the option, exit status
    2, before anything connects.
    """

    def refused(self, *argv: str) -> str:
        """
        Run C{main(argv)}; check it exits with status 2 and one line on
        stderr, nothing on stdout; return the line.
        """
        stderr, stdout = io.StringIO(), io.StringIO()
        self.patch(sys, "stderr", stderr)
        self.patch(sys, "stdout", stdout)
        error = self.assertRaises(SystemExit, main, list(argv))
        self.assertEqual(error.code, 2)
        self.assertEqual(stdout.getvalue(), "")
        [line] = stderr.getvalue().splitlines()
        self.assertTrue(line.startswith("python -m swooletw send-mail: error: "), line)
        return line

    def test_portOutOfRange(self) -> None:
        """
        C{--port} must be 1 to 65535 (99999 used to raise OverflowError in
        connect()).
        """
        for port in ("99999", "65536", "0", "-1", "http", ""):
            line = self.refused(*MAIL, "--port", port)
            self.assertIn(f"argument --port: must be a port number from 1 to 65535, got {port!r}", line)

    def test_badHost(self) -> None:
        """
        C{--host} must be a name or address: not empty, no spaces or
        control characters.
        """
        for host in ("", "two words", "nul\x00"):
            line = self.refused(*MAIL, "--host", host)
            self.assertIn(f"argument --host: must be a host name or IP address, got {host!r}", line)

    def test_badTimeout(self) -> None:
        """
        C{--timeout} must be a number of seconds over 0 and at most a day
        (more overflows the socket's timeout).
        """
        for timeout in ("nan", "inf", "0", "-1", "soon", "86401", "1e300"):
            line = self.refused(*MAIL, "--timeout", timeout)
            self.assertIn(f"argument --timeout: must be a number of seconds from 0 to 86400, got {timeout!r}", line)

    def test_limitsAccepted(self) -> None:
        """
        The limits themselves pass: with nothing listening, C{send-mail}
        gets as far as connecting (exit status 3).
        """
        free = str(freePort())
        for argv in (["--port", free, "--timeout", "86400"], ["--port", free, "--timeout", "0.001"],
                     ["--host", "localhost", "--port", free]):
            stderr = io.StringIO()
            self.assertEqual(main([*MAIL, *argv], stderr=stderr), 3, stderr.getvalue())
            self.assertIn("connect failed", stderr.getvalue())

    def test_missingOption(self) -> None:
        """
        A missing required option is one line too, pointing at C{--help}.
        """
        line = self.refused("send-mail", "--to", "a@example.com")
        self.assertIn("--subject, --content", line)
        self.assertTrue(line.endswith("(see --help)"), line)

    def test_commandLine(self) -> None:
        """
        C{python -m swooletw send-mail --port 99999} as typed: no traceback,
        one line, exit status 2.
        """
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO, env.get("PYTHONPATH")]))
        result = subprocess.run(
            [sys.executable, "-m", "swooletw", *MAIL, "--port", "99999"],
            env=env, capture_output=True, text=True, timeout=30,
        )
        self.assertEqual(result.returncode, 2, result.stderr)
        self.assertEqual(
            result.stderr,
            "python -m swooletw send-mail: error: argument --port: must be a port "
            "number from 1 to 65535, got '99999' (see --help)\n",
        )
        self.assertEqual(result.stdout, "")
