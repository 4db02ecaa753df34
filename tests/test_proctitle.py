"""
Tests for L{swooletw.proctitle}: C{swooletw.set_process_name}, the
counterpart of Swoole's C{swoole_set_process_name}.
"""

from __future__ import annotations

import os

import setproctitle
from twisted.trial.unittest import SkipTest, SynchronousTestCase

import swooletw
from swooletw.proctitle import set_process_name


class SetProcessNameTests(SynchronousTestCase):
    """
    L{set_process_name} sets this process's title; each test puts the
    original title back.
    """

    def setUp(self) -> None:
        self.addCleanup(setproctitle.setproctitle, setproctitle.getproctitle())

    def test_exported(self) -> None:
        """
        C{swooletw.set_process_name} is the function, listed in
        C{swooletw.__all__}, as the tutorial's code calls it.
        """
        self.assertIs(swooletw.set_process_name, set_process_name)
        self.assertIn("set_process_name", swooletw.__all__)

    def test_setsTitle(self) -> None:
        """
        The title becomes the name given, as the tutorial's §9 sets it.
        """
        set_process_name("server-process: worker")
        self.assertEqual(setproctitle.getproctitle(), "server-process: worker")
        set_process_name("server-process: task")
        self.assertEqual(setproctitle.getproctitle(), "server-process: task")

    def test_psSeesIt(self) -> None:
        """
        On Linux, C{/proc/PID/cmdline} (what C{ps} shows) has the new title.
        """
        cmdline = f"/proc/{os.getpid()}/cmdline"
        if not os.path.exists(cmdline):
            raise SkipTest("no /proc")
        set_process_name("server-process: master")
        with open(cmdline, "rb") as f:
            self.assertEqual(f.read().split(b"\0")[0], b"server-process: master")

    def test_notAString(self) -> None:
        """
        A name that is not a C{str} is a L{TypeError} naming the type.
        """
        before = setproctitle.getproctitle()
        error = self.assertRaises(TypeError, set_process_name, b"bytes")
        self.assertIn("bytes", str(error))
        self.assertEqual(setproctitle.getproctitle(), before)
