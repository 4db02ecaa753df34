"""
Tests for L{swooletw.settings}.
"""

from __future__ import annotations

import math
import os

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from swooletw import settings
from swooletw.settings import SettingError


def port(**values: Any) -> dict[str, Any]:
    """
    The defaults with C{values} normalised on top, as a port sees them.
    """
    result = settings.defaults()
    result.update(settings.normalise(values))
    return result


class NormaliseTests(SynchronousTestCase):
    """
    L{settings.normalise} accepts values written the PHP way.
    """

    def test_bools(self) -> None:
        """
        Bool settings take C{True}/C{False} and PHP's C{1}/C{0}, as bools.
        """
        result = settings.normalise(
            {"open_eof_check": True, "open_eof_split": 1, "open_length_check": 0,
             "open_tcp_nodelay": False}
        )
        self.assertEqual(
            result,
            {"open_eof_check": True, "open_eof_split": True,
             "open_length_check": False, "open_tcp_nodelay": False},
        )
        self.assertIs(result["open_eof_split"], True)
        self.assertIs(result["open_length_check"], False)

    def test_eofStr(self) -> None:
        """
        A C{str} C{package_eof} becomes bytes.
        """
        self.assertEqual(settings.normalise({"package_eof": "\r\n"}), {"package_eof": b"\r\n"})
        self.assertIsInstance(settings.normalise({"package_eof": "\r\n"})["package_eof"], bytes)

    def test_eofBytes(self) -> None:
        """
        A bytes C{package_eof} of 1 to 8 bytes is kept.
        """
        for eof in (b"\n", b"\r\n\r\n", b"12345678"):
            self.assertEqual(settings.normalise({"package_eof": eof}), {"package_eof": eof})

    def test_ints(self) -> None:
        """
        Integer settings keep their value.
        """
        values = {"package_max_length": 65536, "package_body_offset": 0,
                  "package_length_offset": 2, "backlog": 128, "worker_num": 1}
        self.assertEqual(settings.normalise(values), values)

    def test_seconds(self) -> None:
        """
        Second settings take ints or floats and give floats.
        """
        result = settings.normalise(
            {"heartbeat_check_interval": 5, "heartbeat_idle_time": 2.5, "max_wait_time": 0}
        )
        self.assertEqual(
            result,
            {"heartbeat_check_interval": 5.0, "heartbeat_idle_time": 2.5, "max_wait_time": 0.0},
        )
        self.assertIsInstance(result["heartbeat_check_interval"], float)

    def test_lengthTypes(self) -> None:
        """
        Every PHP pack code Swoole allows is accepted.
        """
        for code in "cCsSnNlLvV":
            self.assertEqual(
                settings.normalise({"package_length_type": code}),
                {"package_length_type": code},
            )

    def test_lengthFunc(self) -> None:
        """
        C{package_length_func} takes a callable.
        """
        func = lambda data: 0  # noqa: E731
        self.assertIs(settings.normalise({"package_length_func": func})["package_length_func"], func)

    def test_maxConnection(self) -> None:
        """
        C{max_connection} is an alias stored as C{max_conn}.
        """
        self.assertEqual(settings.normalise({"max_connection": 1000}), {"max_conn": 1000})
        self.assertEqual(settings.normalise({"max_conn": 1000}), {"max_conn": 1000})

    def test_allowedProcessModel(self) -> None:
        """
        The values of the process-model settings this version can honour are
        accepted.
        """
        values = {"worker_num": 1, "task_worker_num": 0, "dispatch_mode": 2,
                  "daemonize": False, "max_request": 0}
        self.assertEqual(settings.normalise(values), values)

    def test_emptyAndPortOnly(self) -> None:
        """
        An empty dict normalises to an empty dict; port settings pass with
        C{portOnly}.
        """
        self.assertEqual(settings.normalise({}), {})
        self.assertEqual(
            settings.normalise({"open_eof_split": True, "backlog": 10}, portOnly=True),
            {"open_eof_split": True, "backlog": 10},
        )


class RefusalTests(SynchronousTestCase):
    """
    L{settings.normalise} refuses what Swoole would not take, or this version
    cannot honour, with a message naming the setting.
    """

    def refused(self, values: dict[str, Any], portOnly: bool = False) -> str:
        error = self.assertRaises(SettingError, settings.normalise, values, portOnly)
        return str(error)

    def test_settingErrorIsValueError(self) -> None:
        """
        L{SettingError} is a L{ValueError}.
        """
        self.assertTrue(issubclass(SettingError, ValueError))

    def test_unknownSuggests(self) -> None:
        """
        An unknown name is refused with the closest valid name.
        """
        for typo, meant in (
            ("open_eof_spilt", "open_eof_split"),
            ("heartbeat_check_interva", "heartbeat_check_interval"),
            ("package_max_lenght", "package_max_length"),
            ("worker_number", "worker_num"),
        ):
            message = self.refused({typo: 1})
            self.assertIn(repr(typo), message)
            self.assertIn(repr(meant), message)

    def test_unknownNoSuggestion(self) -> None:
        """
        A name like no setting is refused without a suggestion.
        """
        message = self.refused({"zzzz": 1})
        self.assertIn("'zzzz'", message)
        self.assertNotIn("did you mean", message)

    def test_unknownOnPortSuggestsPortName(self) -> None:
        """
        With C{portOnly}, a misspelt port setting gets a port setting as
        suggestion.
        """
        message = self.refused({"open_eof_spilt": True}, portOnly=True)
        self.assertIn("'open_eof_split'", message)

    def test_strForInt(self) -> None:
        """
        A str where an integer is wanted is refused (PHP would cast; we do
        not guess).
        """
        message = self.refused({"package_max_length": "65536"})
        self.assertIn("'package_max_length'", message)
        self.assertIn("integer", message)

    def test_boolForInt(self) -> None:
        """
        A bool where an integer is wanted is refused.
        """
        message = self.refused({"backlog": True})
        self.assertIn("'backlog'", message)
        self.assertIn("integer", message)

    def test_floatForInt(self) -> None:
        """
        A float where an integer is wanted is refused.
        """
        message = self.refused({"package_body_offset": 4.0})
        self.assertIn("'package_body_offset'", message)
        self.assertIn("integer", message)

    def test_badBool(self) -> None:
        """
        A bool setting refuses 2, a str and None.
        """
        for value in (2, "true", None, 1.0):
            message = self.refused({"open_eof_check": value})
            self.assertIn("'open_eof_check'", message)
            self.assertIn("bool", message)

    def test_strForSeconds(self) -> None:
        """
        A str where seconds are wanted is refused.
        """
        message = self.refused({"heartbeat_idle_time": "60"})
        self.assertIn("'heartbeat_idle_time'", message)

    def test_eofWrongType(self) -> None:
        """
        A list or an int C{package_eof} is refused.
        """
        for value in ([b"\r\n"], 10):
            message = self.refused({"package_eof": value})
            self.assertIn("'package_eof'", message)
            self.assertIn("str or bytes", message)

    def test_eofTooLong(self) -> None:
        """
        A C{package_eof} of 9 bytes (also as a str) is refused.
        """
        for value in (b"123456789", "123456789", "\u00e9\u00e9\u00e9\u00e9\u00e9"):
            message = self.refused({"package_eof": value})
            self.assertIn("'package_eof'", message)
            self.assertIn("1 to 8 bytes", message)

    def test_eofEmpty(self) -> None:
        """
        An empty C{package_eof} is refused.
        """
        for value in (b"", ""):
            message = self.refused({"package_eof": value})
            self.assertIn("1 to 8 bytes", message)

    def test_badLengthType(self) -> None:
        """
        A C{package_length_type} that is not one of Swoole's codes is refused,
        listing the valid ones.
        """
        for value in ("q", "NN", "", "n ", 4, None):
            message = self.refused({"package_length_type": value})
            self.assertIn("'package_length_type'", message)
            self.assertIn("c C s S n N l L v V", message)

    def test_negativeInts(self) -> None:
        """
        Negative offsets, limits and backlogs are refused with the minimum.
        """
        for name in ("package_length_offset", "package_body_offset"):
            message = self.refused({name: -1})
            self.assertIn(repr(name), message)
            self.assertIn(">= 0", message)
        for name in ("package_max_length", "backlog", "max_conn"):
            message = self.refused({name: 0})
            self.assertIn(repr(name), message)
            self.assertIn(">= 1", message)

    def test_negativeSeconds(self) -> None:
        """
        Negative seconds are refused.
        """
        message = self.refused({"heartbeat_check_interval": -1})
        self.assertIn("'heartbeat_check_interval'", message)
        self.assertIn(">= 0", message)

    def test_notCallable(self) -> None:
        """
        A C{package_length_func} that is not callable is refused.
        """
        message = self.refused({"package_length_func": "my_func"})
        self.assertIn("'package_length_func'", message)
        self.assertIn("callable", message)

    def test_serverOnlyOnPort(self) -> None:
        """
        With C{portOnly}, a server-only name is refused as belonging to the
        server.
        """
        for name, value in (("worker_num", 1), ("daemonize", False), ("max_conn", 10)):
            message = self.refused({name: value}, portOnly=True)
            self.assertIn(repr(name), message)
            self.assertIn("belongs to the server", message)

    def test_taskWorkerMode(self) -> None:
        """
        C{task_worker_mode} is C{thread} or C{process}; anything else is
        refused, listing both.
        """
        self.assertEqual(settings.normalise({"task_worker_mode": "process"})["task_worker_mode"], "process")
        message = self.refused({"task_worker_mode": "fork"})
        self.assertIn("'task_worker_mode'", message)
        self.assertIn("'thread', 'process'", message)

    def test_dispatchMode(self) -> None:
        """
        C{dispatch_mode} 1 is refused, naming mode 2.
        """
        message = self.refused({"dispatch_mode": 1})
        self.assertIn("'dispatch_mode'", message)
        self.assertIn("mode 2", message)

    def test_daemonize(self) -> None:
        """
        C{daemonize} takes PHP's true/1 and nothing but a bool.
        """
        for value in (True, 1):
            self.assertIs(settings.normalise({"daemonize": value})["daemonize"], True)
        message = self.refused({"daemonize": "yes"})
        self.assertIn("'daemonize'", message)

    def test_firstBadNamed(self) -> None:
        """
        With good and bad settings together, the bad one is named.
        """
        message = self.refused({"backlog": 10, "package_eof": 3})
        self.assertIn("'package_eof'", message)
        self.assertNotIn("'backlog'", message)


class RangeTests(SynchronousTestCase):
    """
    Numbers are range-checked: the message names the setting and the allowed
    range.
    """

    #: Every setting given in seconds.
    SECONDS = ("heartbeat_check_interval", "heartbeat_idle_time", "max_wait_time",
               "worker_timeout", "worker_ping_interval")

    def refused(self, name: str, value: Any) -> str:
        error = self.assertRaises(SettingError, settings.normalise, {name: value})
        message = str(error)
        self.assertIn(repr(name), message)
        return message

    def test_secondsNotFinite(self) -> None:
        """
        NaN and infinities are refused for every seconds setting, saying
        the value must be finite and >= 0.
        """
        for name in self.SECONDS:
            for value in (math.nan, math.inf, -math.inf, 10**400):
                message = self.refused(name, value)
                self.assertIn("finite", message)
                self.assertIn(">= 0", message)

    def test_secondsNegative(self) -> None:
        """
        Negative seconds are refused for every seconds setting.
        """
        for name in self.SECONDS:
            self.assertIn(">= 0", self.refused(name, -0.5))

    def test_intervalsTooShort(self) -> None:
        """
        Timer periods shorter than 1 ms (Swoole's shortest timer) would spin
        the reactor: refused.  The heartbeat settings take 0 for off; the
        ping interval has no off.
        """
        for name in ("heartbeat_check_interval", "heartbeat_idle_time"):
            self.assertIn("0 (off) or >= 0.001", self.refused(name, 1e-9))
            self.assertEqual(settings.normalise({name: 0}), {name: 0.0})
            self.assertEqual(settings.normalise({name: 0.001}), {name: 0.001})
        for value in (0, 1e-9):
            message = self.refused("worker_ping_interval", value)
            self.assertIn(">= 0.001", message)
            self.assertNotIn("off", message)

    def test_processCounts(self) -> None:
        """
        C{worker_num} is 1 to 1000 per CPU and C{task_worker_num} 0 to 1000
        per CPU (Swoole's caps).
        """
        cap = (os.cpu_count() or 1) * 1000
        self.assertIn(f"between 1 and {cap}", self.refused("worker_num", 0))
        self.assertIn(f"between 1 and {cap}", self.refused("worker_num", cap + 1))
        self.assertIn(f"between 0 and {cap}", self.refused("task_worker_num", -1))
        self.assertIn(f"between 0 and {cap}", self.refused("task_worker_num", cap + 1))
        self.assertEqual(settings.normalise({"worker_num": cap, "task_worker_num": cap}),
                         {"worker_num": cap, "task_worker_num": cap})

    def test_otherInts(self) -> None:
        """
        The other integer settings have their minimum (and C{log_level}
        Swoole's 0 to 6).
        """
        for name, low in (("max_conn", 1), ("max_connection", 1), ("package_max_length", 1),
                          ("backlog", 1), ("max_request", 0), ("task_max_request", 0),
                          ("task_queue_max", 1), ("max_request_grace", 0), ("reactor_num", 1),
                          ("package_length_offset", 0), ("package_body_offset", 0)):
            self.assertIn(f">= {low}", self.refused(name, low - 1))
        self.assertIn("between 0 and 6", self.refused("log_level", 7))
        self.assertEqual(settings.normalise({"log_level": 6}), {"log_level": 6})

    def test_serverSetRefuses(self) -> None:
        """
        L{Server.set} and L{Port.set} refuse NaN seconds, and the setting
        keeps its value.
        """
        from swooletw.api import Server

        serv = Server("127.0.0.1", 0)
        self.assertRaises(SettingError, serv.set, {"heartbeat_check_interval": math.nan})
        self.assertRaises(SettingError, serv.set, max_wait_time=math.inf)
        self.assertRaises(SettingError, serv.ports[0].set, {"heartbeat_idle_time": math.nan})
        self.assertEqual(serv.setting["heartbeat_check_interval"], 0.0)
        self.assertEqual(serv.setting["max_wait_time"], 3.0)


class DefaultsTests(SynchronousTestCase):
    """
    L{settings.defaults} has Swoole's defaults.
    """

    def test_framing(self) -> None:
        """
        Framing defaults: no framing, EOF CRLF, length N at offset 0, body
        offset 4, 2 MiB limit.
        """
        values = settings.defaults()
        self.assertEqual(values["package_max_length"], 2 * 1024 * 1024)
        self.assertEqual(values["package_body_offset"], 4)
        self.assertEqual(values["package_length_offset"], 0)
        self.assertEqual(values["package_length_type"], "N")
        self.assertEqual(values["package_eof"], b"\r\n")
        self.assertIsNone(values["package_length_func"])
        for name in ("open_eof_check", "open_eof_split", "open_length_check"):
            self.assertIs(values[name], False, name)

    def test_server(self) -> None:
        """
        Server defaults: backlog 512, heartbeat off, max_wait_time 3,
        dispatch_mode 2, a worker per CPU, no task workers, not daemonized.
        """
        values = settings.defaults()
        self.assertEqual(values["backlog"], 512)
        self.assertEqual(values["heartbeat_check_interval"], 0)
        self.assertEqual(values["heartbeat_idle_time"], 0)
        self.assertEqual(values["max_wait_time"], 3)
        self.assertEqual(values["dispatch_mode"], 2)
        self.assertEqual(values["worker_num"], os.cpu_count())
        self.assertEqual(values["task_worker_num"], 0)
        self.assertIs(values["daemonize"], False)
        self.assertIs(values["reload_async"], True)
        self.assertIsNone(values["ssl_cert_file"])

    def test_maxConn(self) -> None:
        """
        C{max_conn} is set (from C{ulimit -n}, capped at 100,000) and
        C{max_connection} is not a separate key.
        """
        values = settings.defaults()
        self.assertIsInstance(values["max_conn"], int)
        self.assertTrue(1 <= values["max_conn"] <= 100000, values["max_conn"])
        self.assertNotIn("max_connection", values)

    def test_fresh(self) -> None:
        """
        Each call returns a new dict.
        """
        first = settings.defaults()
        first["backlog"] = 1
        self.assertEqual(settings.defaults()["backlog"], 512)

    def test_defaultsPassChecks(self) -> None:
        """
        The defaults pass their own checks.
        """
        values = settings.defaults()
        settings.checkFraming(values)
        portValues = {k: v for k, v in values.items() if k in settings.PORT_SETTINGS}
        self.assertEqual(settings.normalise(portValues, portOnly=True), portValues)

    def test_portSettings(self) -> None:
        """
        C{PORT_SETTINGS} holds the framing and connection names, not the
        process-model ones.
        """
        for name in ("open_eof_split", "package_max_length", "backlog",
                     "heartbeat_idle_time", "ssl_key_file"):
            self.assertIn(name, settings.PORT_SETTINGS)
        for name in ("worker_num", "daemonize", "max_conn", "dispatch_mode"):
            self.assertNotIn(name, settings.PORT_SETTINGS)


class CheckFramingTests(SynchronousTestCase):
    """
    L{settings.checkFraming} refuses framing settings that contradict each
    other.
    """

    def test_ok(self) -> None:
        """
        One framing at a time passes.
        """
        settings.checkFraming(port(open_eof_check=True))
        settings.checkFraming(port(open_eof_split=True))
        settings.checkFraming(port(open_length_check=True))
        settings.checkFraming(port(package_length_func=lambda data: 0))
        settings.checkFraming(port(ssl_cert_file="c.pem", ssl_key_file="k.pem"))

    def test_eofAndLength(self) -> None:
        """
        EOF framing with length framing is refused (Swoole issue 535).
        """
        for eof in ("open_eof_check", "open_eof_split"):
            error = self.assertRaises(
                SettingError,
                settings.checkFraming,
                port(**{eof: True, "open_length_check": True}),
            )
            self.assertIn("exclusive", str(error))
            self.assertIn("open_length_check", str(error))

    def test_eofAndLengthFunc(self) -> None:
        """
        EOF framing with a C{package_length_func} is refused.
        """
        self.assertRaises(
            SettingError,
            settings.checkFraming,
            port(open_eof_split=True, package_length_func=lambda data: 0),
        )

    def test_headerOverLimit(self) -> None:
        """
        A length field ending past C{package_max_length} is refused.
        """
        error = self.assertRaises(
            SettingError,
            settings.checkFraming,
            port(open_length_check=True, package_length_offset=8, package_max_length=10),
        )
        self.assertIn("package_max_length", str(error))
        self.assertIn("12", str(error))
        settings.checkFraming(
            port(open_length_check=True, package_length_offset=6, package_max_length=10)
        )

    def test_sslHalf(self) -> None:
        """
        A certificate without a key, or a key without a certificate, is
        refused.
        """
        for half in ({"ssl_cert_file": "c.pem"}, {"ssl_key_file": "k.pem"}):
            error = self.assertRaises(SettingError, settings.checkFraming, port(**half))
            self.assertIn("ssl_cert_file", str(error))
            self.assertIn("ssl_key_file", str(error))


class HeartbeatTimesTests(SynchronousTestCase):
    """
    L{settings.heartbeatTimes} derives the interval and idle time as Swoole
    does.
    """

    def test_off(self) -> None:
        """
        Neither set: no heartbeat.
        """
        self.assertEqual(settings.heartbeatTimes(port()), (0.0, 0.0))

    def test_intervalOnly(self) -> None:
        """
        Only the interval: idle time is twice the interval.
        """
        self.assertEqual(
            settings.heartbeatTimes(port(heartbeat_check_interval=5)), (5.0, 10.0)
        )

    def test_idleOnly(self) -> None:
        """
        Only the idle time: the interval is half of it.
        """
        self.assertEqual(
            settings.heartbeatTimes(port(heartbeat_idle_time=60)), (30.0, 60.0)
        )

    def test_both(self) -> None:
        """
        Both set: both kept as given.
        """
        self.assertEqual(
            settings.heartbeatTimes(
                port(heartbeat_check_interval=3, heartbeat_idle_time=7)
            ),
            (3.0, 7.0),
        )


class LengthStructTests(SynchronousTestCase):
    """
    L{settings.lengthStruct} gives PHP pack()'s sizes and byte orders.
    """

    def test_sizes(self) -> None:
        """
        c C are 1 byte, s S n v 2 bytes, l L N V 4 bytes.
        """
        sizes = {code: settings.lengthStruct(code).size for code in "cCsSnNlLvV"}
        self.assertEqual(
            sizes,
            {"c": 1, "C": 1, "s": 2, "S": 2, "n": 2, "v": 2,
             "l": 4, "L": 4, "N": 4, "V": 4},
        )

    def test_orders(self) -> None:
        """
        n N are big-endian, v V little-endian, c s l signed.
        """
        self.assertEqual(settings.lengthStruct("n").unpack(b"\x01\x02"), (0x0102,))
        self.assertEqual(settings.lengthStruct("v").unpack(b"\x01\x02"), (0x0201,))
        self.assertEqual(settings.lengthStruct("N").unpack(b"\x00\x00\x01\x02"), (0x0102,))
        self.assertEqual(settings.lengthStruct("V").unpack(b"\x01\x02\x00\x00"), (0x0201,))
        self.assertEqual(settings.lengthStruct("c").unpack(b"\xff"), (-1,))
        self.assertEqual(settings.lengthStruct("s").unpack(b"\xff\xff"), (-1,))
        self.assertEqual(settings.lengthStruct("l").unpack(b"\xff\xff\xff\xff"), (-1,))
        self.assertEqual(settings.lengthStruct("C").unpack(b"\xff"), (255,))


class NameTypeTests(SynchronousTestCase):
    """
    Setting names must be strings.
    """

    def test_nonStringName(self) -> None:
        """
        A non-str key is refused with a message saying names are strings.
        """
        error = self.assertRaises(SettingError, settings.normalise, {1: True})
        self.assertIn("setting names are strings", str(error))

    def test_bytearrayEOF(self) -> None:
        """
        A bytearray C{package_eof} becomes bytes.
        """
        result = settings.normalise({"package_eof": bytearray(b"\r\n")})
        self.assertEqual(result, {"package_eof": b"\r\n"})
        self.assertIs(type(result["package_eof"]), bytes)
