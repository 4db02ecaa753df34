"""
Tests for L{swooletw.tap.tcp}: the options of C{twistd swoole-tcp} and the
service they make.

The unit tests parse options with L{tcp.Options} and start the resulting
service on a L{MemoryReactorClock}; L{PluginServiceIntegrationTests} starts
it on the real reactor, on C{tcp:0:interface=127.0.0.1}, and talks to it
over a real socket.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from typing import Any

from twisted.internet import defer
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase, TestCase

from swooletw.api import Server
from swooletw.constants import BASE
from swooletw.tap import tcp
from swooletw.testing import ServerHarness
from tests.clientsupport import freePort

# ----------------------------------------------------- apps for --app tests

#: The tutorial's echo server, with no framing of its own (the default app,
#: the mail server, has EOF framing).
ECHO_APP = "swooletw.examples.echo:makeServer"

#: A configured server at module level, for C{--app tests.test_tap:testServer}.
testServer = Server("127.0.0.1", 9600)
testServer.set({"max_conn": 7, "worker_num": 1})


def makeTestServer() -> Server:
    """
    A fresh server on 127.0.0.1:9601 replying C{b"test:"} + data, for
    C{--app tests.test_tap:makeTestServer}.
    """
    serv = Server("127.0.0.1", 9601)
    serv.set({"max_conn": 8, "worker_num": 1})
    serv.on("Receive", lambda serv, fd, fromId, data: serv.send(fd, b"test:" + data))
    return serv


def makeNotAServer() -> object:
    """
    A callable returning something that is not a server.
    """
    return {"host": "127.0.0.1"}


def makeServerWithArguments(host: str, port: int) -> Server:
    """
    A factory that cannot be called without arguments.
    """
    return Server(host, port)


def makeUDPServer() -> Server:
    """
    A server whose main port is UDP.
    """
    from swooletw.constants import SOCK_UDP

    return Server("127.0.0.1", 9602, sock_type=SOCK_UDP)


#: The repository root (this file is C{tests/test_tap.py}).
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse(*argv: str) -> tcp.Options:
    """
    Parse C{argv} as C{twistd swoole-tcp} would.
    """
    options = tcp.Options()
    options.parseOptions(list(argv))
    return options


def startOnMemoryReactor(testCase: SynchronousTestCase, options: tcp.Options) -> tuple[Any, MemoryReactorClock]:
    """
    Give the parsed server a L{MemoryReactorClock}, make the service with
    L{tcp.makeService} and start it; it is stopped in cleanup.
    """
    reactor = MemoryReactorClock()
    # One process on a memory reactor: the master, which forks, is tested
    # with real processes in tests/test_workers.py.
    options["server"].set(worker_num=1, max_request=0, task_max_request=0)
    options["server"].mode = BASE
    options["server"].adoptReactor(reactor)
    service = tcp.makeService(options)
    service.privilegedStartService()
    service.startService()

    def stop() -> None:
        stopped = service.stopService()
        reactor.advance(0)
        testCase.successResultOf(stopped)

    testCase.addCleanup(stop)
    return service, reactor


class OptionsDefaultsTests(SynchronousTestCase):
    """
    L{tcp.Options} with no arguments: the tutorial's mail task server (§14)
    on C{tcp:9501:interface=127.0.0.1}.
    """

    def test_defaultApp(self) -> None:
        """
        The default C{--app} is the mail server's C{makeServer}.
        """
        from swooletw.mail.taskserver import TaskServer, appOf

        options = parse()
        self.assertEqual(options["app"], "swooletw.mail.taskserver:makeServer")
        self.assertIsInstance(options["server"], Server)
        self.assertIsInstance(appOf(options["server"]), TaskServer)

    def test_defaultListenIsMainPortEndpoint(self) -> None:
        """
        With no C{--listen}, the main port listens on the endpoint
        C{tcp:9501:interface=127.0.0.1} and there is no other port.
        """
        serv = parse()["server"]
        self.assertEqual(len(serv.ports), 1)
        self.assertEqual(serv.ports[0].endpoint, "tcp:9501:interface=127.0.0.1")

    def test_defaultServiceListensOn9501Loopback(self) -> None:
        """
        The default service listens on port 9501 of 127.0.0.1 only.
        """
        _, reactor = startOnMemoryReactor(self, parse())
        self.assertEqual(len(reactor.tcpServers), 1)
        port, _factory, _backlog, interface = reactor.tcpServers[0]
        self.assertEqual((port, interface), (9501, "127.0.0.1"))

    def test_defaultAppRepliesJSON(self) -> None:
        """
        The default app answers each packet with one JSON line.
        """
        serv = parse()["server"]
        serv.set(worker_num=1)
        harness = ServerHarness(serv)
        self.addCleanup(lambda: self.successResultOf(harness.stop()))
        client = harness.connect()
        client.write(b'{"event": "nope"}\r\n')
        self.assertEqual(client.read(), b'{"ok": false, "error": "unknown event \'nope\' (known: send-mail)"}\r\n')

    def test_defaultSettings(self) -> None:
        """
        With no options: the tutorial's EOF split on C{\\r\\n}, two workers
        and two task workers.
        """
        setting = parse()["server"].setting
        self.assertEqual((setting["worker_num"], setting["task_worker_num"]), (2, 2))
        self.assertTrue(setting["open_eof_split"])
        self.assertEqual(setting["package_eof"], b"\r\n")
        self.assertFalse(setting["open_length_check"])

    def test_onlyTheDefaultAppSaysSo(self) -> None:
        """
        No example module but the default app's calls itself the default
        application of C{twistd swoole-tcp}.
        """
        import swooletw.examples

        defaultModule = tcp.DEFAULT_APP.split(":")[0]
        examples = os.path.dirname(swooletw.examples.__file__)
        for name in sorted(os.listdir(examples)):
            module = f"swooletw.examples.{name[:-3]}"
            if name.endswith(".py") and module != defaultModule:
                with open(os.path.join(examples, name), encoding="utf-8") as f:
                    self.assertNotIn("default application", " ".join(f.read().split()), module)


class ListenOptionTests(SynchronousTestCase):
    """
    C{--listen}: repeatable endpoint strings; the first replaces the main
    port's address, the others are added as ports.
    """

    def test_firstListenReplacesMainAddress(self) -> None:
        """
        One C{--listen} becomes the main port's endpoint; no port is added.
        """
        serv = parse("--listen", "tcp:9502:interface=127.0.0.1")["server"]
        self.assertEqual(len(serv.ports), 1)
        self.assertEqual(serv.ports[0].endpoint, "tcp:9502:interface=127.0.0.1")

    def test_moreListensAddPorts(self) -> None:
        """
        A second and third C{--listen} add ports, in order, after the main one.
        """
        serv = parse(
            "--listen", "tcp:9502:interface=127.0.0.1",
            "--listen", "tcp:9503:interface=127.0.0.1",
            "--listen", "tcp:9504",
        )["server"]
        self.assertEqual(
            [port.endpoint for port in serv.ports],
            ["tcp:9502:interface=127.0.0.1", "tcp:9503:interface=127.0.0.1", "tcp:9504"],
        )
        self.assertEqual([port.index for port in serv.ports], [0, 1, 2])

    def test_everyListenIsListenedOn(self) -> None:
        """
        Starting the service listens on every C{--listen} address, with its
        port and interface.
        """
        options = parse(
            "--listen", "tcp:9502:interface=127.0.0.1",
            "--listen", "tcp:9503:interface=127.0.0.1",
        )
        _, reactor = startOnMemoryReactor(self, options)
        self.assertEqual(
            [(port, interface) for port, _f, _b, interface in reactor.tcpServers],
            [(9502, "127.0.0.1"), (9503, "127.0.0.1")],
        )

    def test_listenBacklogFromEndpointString(self) -> None:
        """
        Endpoint parameters (here C{backlog}) reach the listen call.
        """
        options = parse("--listen", "tcp:9505:interface=127.0.0.1:backlog=7")
        _, reactor = startOnMemoryReactor(self, options)
        self.assertEqual(reactor.tcpServers[0][2], 7)

    def refusedListen(self, description: str) -> str:
        """
        Parse C{--listen description}; return the usage error's message.
        """
        return str(self.assertRaises(usage.UsageError, parse, "--listen", description))

    def test_unknownEndpointType(self) -> None:
        """
        C{--listen garbage} is a usage error naming the option, the string
        and the problem.
        """
        self.assertEqual(
            self.refusedListen("garbage"),
            "--listen 'garbage': Unknown endpoint type: 'garbage'",
        )

    def test_invalidPort(self) -> None:
        """
        A port that is not a number from 0 to 65535 (as a first field or
        C{port=}) is a usage error saying so; so is a missing port.
        """
        for description, port in (("tcp:notaport", "notaport"), ("tcp:99999", "99999"),
                                  ("tcp6:-1", "-1"), ("ssl:port=x:privateKey=k.pem", "x")):
            self.assertEqual(
                self.refusedListen(description),
                f"--listen {description!r}: invalid port {port!r} (0 to 65535)",
            )
        self.assertEqual(
            self.refusedListen("tcp:interface=127.0.0.1"),
            "--listen 'tcp:interface=127.0.0.1': no port given",
        )

    def test_udpRefused(self) -> None:
        """
        C{--listen udp:9502} is refused, saying how UDP ports are set up.
        """
        message = self.refusedListen("udp:9502")
        self.assertTrue(message.startswith("--listen 'udp:9502': "), message)
        self.assertIn("serv.listen(host, port, SOCK_UDP)", message)

    def test_otherEndpointErrors(self) -> None:
        """
        Whatever else Twisted's endpoint parser refuses (an unknown
        parameter, a missing TLS key file) is a usage error naming the
        option and the string.
        """
        self.assertIn("'foo'", self.refusedListen("tcp:9502:foo=bar"))
        missing = os.path.abspath(self.mktemp())
        message = self.refusedListen(f"ssl:9502:privateKey={missing}")
        self.assertTrue(message.startswith(f"--listen 'ssl:9502:privateKey={missing}': "), message)
        self.assertIn(missing, message)

    def test_nothingBoundWhileParsing(self) -> None:
        """
        Checking C{--listen} binds nothing: the port stays free.
        """
        port = freePort()
        parse("--listen", f"tcp:{port}:interface=127.0.0.1")
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))

    def test_listenOnUDPAppIsUsageError(self) -> None:
        """
        C{--listen} on an app whose main port is UDP is a usage error.
        """
        error = self.assertRaises(
            usage.UsageError, parse, "--app", "tests.test_tap:makeUDPServer",
            "--listen", "tcp:9502",
        )
        self.assertIn("UDP", str(error))


class FramingOptionTests(SynchronousTestCase):
    """
    C{--eof}, C{--length-type} and the other setting options.
    """

    def test_eofEscapes(self) -> None:
        """
        C{--eof '\\r\\n'} (backslash escapes as typed in a shell) turns on
        C{open_eof_split} with C{package_eof} C{b"\\r\\n"}.
        """
        setting = parse("--eof", "\\r\\n")["server"].setting
        self.assertIs(setting["open_eof_split"], True)
        self.assertEqual(setting["package_eof"], b"\r\n")

    def test_eofTooLong(self) -> None:
        """
        An EOF marker longer than 8 bytes is a usage error naming
        C{package_eof}.
        """
        error = self.assertRaises(usage.UsageError, parse, "--eof", "0123456789")
        self.assertIn("package_eof", str(error))

    def test_lengthType(self) -> None:
        """
        C{--length-type n} turns on C{open_length_check} with
        C{package_length_type} C{"n"}.
        """
        setting = parse("--app", ECHO_APP, "--length-type", "n")["server"].setting
        self.assertIs(setting["open_length_check"], True)
        self.assertEqual(setting["package_length_type"], "n")
        self.assertFalse(setting["open_eof_split"])

    def test_lengthOffsets(self) -> None:
        """
        C{--length-offset}, C{--body-offset} and C{--max-length} set their
        settings as integers.
        """
        setting = parse(
            "--app", ECHO_APP, "--length-type", "N", "--length-offset", "2",
            "--body-offset", "6", "--max-length", "4096",
        )["server"].setting
        self.assertEqual(
            (setting["package_length_offset"], setting["package_body_offset"],
             setting["package_max_length"]),
            (2, 6, 4096),
        )

    def test_badLengthType(self) -> None:
        """
        An unknown length type is a usage error naming
        C{package_length_type}.
        """
        error = self.assertRaises(usage.UsageError, parse, "--length-type", "x")
        self.assertIn("package_length_type", str(error))

    def test_eofAndLengthExclusive(self) -> None:
        """
        C{--eof} with C{--length-type} is a usage error: a port has one
        framing.
        """
        error = self.assertRaises(
            usage.UsageError, parse, "--eof", "\\n", "--length-type", "N"
        )
        self.assertIn("open_length_check", str(error))

    def test_heartbeatAndMaxConn(self) -> None:
        """
        C{--heartbeat-interval}, C{--heartbeat-idle} and C{--max-conn} set
        their settings.
        """
        setting = parse(
            "--heartbeat-interval", "5", "--heartbeat-idle", "12", "--max-conn", "3"
        )["server"].setting
        self.assertEqual(setting["heartbeat_check_interval"], 5)
        self.assertEqual(setting["heartbeat_idle_time"], 12)
        self.assertEqual(setting["max_conn"], 3)

    def test_workerNum(self) -> None:
        """
        C{--worker-num 2} sets C{worker_num}; the server then runs as a
        master (L{MasterService}).
        """
        from swooletw.runtime.master import MasterService

        options = parse("--worker-num", "2")
        self.assertEqual(options["server"].setting["worker_num"], 2)
        self.assertIsInstance(options["server"].asService(), MasterService)

    def test_workerNumOne(self) -> None:
        """
        C{--worker-num 1} is accepted.
        """
        self.assertEqual(parse("--worker-num", "1")["server"].setting["worker_num"], 1)


class SettingOptionTests(SynchronousTestCase):
    """
    C{--setting name=value}: values read as JSON when they parse.
    """

    def test_integer(self) -> None:
        """
        C{max_conn=10} sets the integer 10.
        """
        value = parse("--setting", "max_conn=10")["server"].setting["max_conn"]
        self.assertEqual(value, 10)
        self.assertIs(type(value), int)

    def test_boolean(self) -> None:
        """
        C{open_tcp_nodelay=true} sets C{True}.
        """
        value = parse("--setting", "open_tcp_nodelay=true")["server"].setting["open_tcp_nodelay"]
        self.assertIs(value, True)

    def test_booleanFalse(self) -> None:
        """
        C{open_tcp_nodelay=false} sets C{False}.
        """
        value = parse("--setting", "open_tcp_nodelay=false")["server"].setting["open_tcp_nodelay"]
        self.assertIs(value, False)

    def test_plainString(self) -> None:
        """
        A value that is not JSON is taken as a string: C{package_eof=xy}.
        """
        setting = parse("--setting", "package_eof=xy", "--setting", "open_eof_check=true")["server"].setting
        self.assertEqual(setting["package_eof"], b"xy")
        self.assertIs(setting["open_eof_check"], True)

    def test_jsonString(self) -> None:
        """
        A JSON string value is decoded: C{package_eof="ab"} is C{b"ab"}.
        """
        setting = parse("--setting", 'package_eof="ab"')["server"].setting
        self.assertEqual(setting["package_eof"], b"ab")

    def test_repeatable(self) -> None:
        """
        Several C{--setting} options all apply.
        """
        setting = parse(
            "--setting", "max_conn=10", "--setting", "open_tcp_nodelay=true"
        )["server"].setting
        self.assertEqual((setting["max_conn"], setting["open_tcp_nodelay"]), (10, True))

    def test_settingOverridesOption(self) -> None:
        """
        C{--setting} is applied after the named options: it wins.
        """
        setting = parse("--max-conn", "5", "--setting", "max_conn=6")["server"].setting
        self.assertEqual(setting["max_conn"], 6)

    def test_unknownNameSuggestsClosest(self) -> None:
        """
        An unknown name is a usage error naming it and suggesting the
        closest valid setting.
        """
        error = self.assertRaises(usage.UsageError, parse, "--setting", "max_con=10")
        message = str(error)
        self.assertIn("'max_con'", message)
        self.assertIn("did you mean 'max_conn'", message)

    def test_wrongType(self) -> None:
        """
        A value of the wrong type is a usage error naming the setting.
        """
        error = self.assertRaises(usage.UsageError, parse, "--setting", 'max_conn="ten"')
        self.assertIn("max_conn", str(error))

    def test_notANumberIsUsageError(self) -> None:
        """
        C{NaN} and C{Infinity} (which JSON parsing reads as floats) and
        negative seconds are usage errors naming the setting, as is
        C{--heartbeat-interval nan}.
        """
        for value in ("NaN", "Infinity", "-1"):
            error = self.assertRaises(
                usage.UsageError, parse, "--setting", f"heartbeat_check_interval={value}"
            )
            self.assertIn("'heartbeat_check_interval'", str(error))
        error = self.assertRaises(usage.UsageError, parse, "--heartbeat-interval", "nan")
        self.assertIn("'heartbeat_check_interval'", str(error))

    def test_noEquals(self) -> None:
        """
        C{--setting} without C{=} is a usage error quoting the argument.
        """
        error = self.assertRaises(usage.UsageError, parse, "--setting", "max_conn")
        self.assertIn("name=value", str(error))
        self.assertIn("max_conn", str(error))

    def test_emptyName(self) -> None:
        """
        C{--setting =1} is a usage error.
        """
        self.assertRaises(usage.UsageError, parse, "--setting", "=1")


class AppOptionTests(SynchronousTestCase):
    """
    C{--app package.module:attr}: a server, or a callable returning one.
    """

    def test_serverInstance(self) -> None:
        """
        C{--app} naming a L{Server} instance uses that very server.
        """
        options = parse("--app", "tests.test_tap:testServer")
        self.assertIs(options["server"], testServer)
        self.assertEqual(options["server"].setting["max_conn"], 7)

    def test_callable(self) -> None:
        """
        C{--app} naming a callable uses the server it returns.
        """
        serv = parse("--app", "tests.test_tap:makeTestServer")["server"]
        self.assertIsInstance(serv, Server)
        self.assertIsNot(serv, testServer)
        self.assertEqual(serv.setting["max_conn"], 8)

    def test_ownAddressKeptWithoutListen(self) -> None:
        """
        An app's own address is kept when no C{--listen} is given (the
        default C{tcp:9501} applies only to the default app).
        """
        options = parse("--app", "tests.test_tap:makeTestServer")
        self.assertIsNone(options["server"].ports[0].endpoint)
        _, reactor = startOnMemoryReactor(self, options)
        port, _factory, _backlog, interface = reactor.tcpServers[0]
        self.assertEqual((port, interface), (9601, "127.0.0.1"))

    def test_listenReplacesAppAddress(self) -> None:
        """
        C{--listen} replaces an app's own address.
        """
        options = parse("--app", "tests.test_tap:makeTestServer", "--listen", "tcp:9606:interface=127.0.0.1")
        _, reactor = startOnMemoryReactor(self, options)
        self.assertEqual([(p, i) for p, _f, _b, i in reactor.tcpServers], [(9606, "127.0.0.1")])

    def test_appCallbacksKept(self) -> None:
        """
        The app's callbacks run: the test app replies C{b"test:"} + data.
        """
        harness = ServerHarness(parse("--app", "tests.test_tap:makeTestServer")["server"])
        self.addCleanup(lambda: self.successResultOf(harness.stop()))
        client = harness.connect()
        client.write(b"x")
        self.assertEqual(client.read(), b"test:x")

    def test_httpServerApp(self) -> None:
        """
        C{--app} runs an L{HttpServer} exactly as a L{Server}: the tutorial's
        §15 app, listening where C{--listen} says, answers HTTP.
        """
        from swooletw import HttpServer

        options = parse("--app", "swooletw.examples.http:makeServer", "--listen", "tcp:8123:interface=127.0.0.1")
        serv = options["server"]
        self.assertIsInstance(serv, HttpServer)
        self.assertEqual(serv.ports[0].endpoint, "tcp:8123:interface=127.0.0.1")
        harness = ServerHarness(serv)
        self.addCleanup(lambda: self.successResultOf(harness.stop()))
        client = harness.connect()
        client.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(client.read().endswith(b"\r\n\r\nhello world."))

    def test_optionsApplyToApp(self) -> None:
        """
        Options are applied on top of the app's own settings.
        """
        setting = parse("--app", "tests.test_tap:makeTestServer", "--eof", "\\n")["server"].setting
        self.assertEqual(setting["package_eof"], b"\n")
        self.assertEqual(setting["max_conn"], 8)

    def test_missingModule(self) -> None:
        """
        C{--app} naming a module that does not exist is a usage error
        quoting the C{--app} value.
        """
        error = self.assertRaises(usage.UsageError, parse, "--app", "no_such_module_xyz:serv")
        self.assertIn("no_such_module_xyz:serv", str(error))

    def test_missingAttribute(self) -> None:
        """
        C{--app} naming a missing attribute is a usage error quoting the
        C{--app} value.
        """
        error = self.assertRaises(usage.UsageError, parse, "--app", "tests.test_tap:noSuchServer")
        self.assertIn("tests.test_tap:noSuchServer", str(error))

    def test_notAServer(self) -> None:
        """
        C{--app} naming something that is not a server nor callable is a
        usage error saying what it is.
        """
        error = self.assertRaises(usage.UsageError, parse, "--app", "tests.test_tap:__doc__")
        message = str(error)
        self.assertIn("tests.test_tap:__doc__", message)
        self.assertIn("not a swooletw.Server", message)

    def test_callableReturningNotAServer(self) -> None:
        """
        C{--app} naming a callable that returns something else is a usage
        error naming the type returned.
        """
        error = self.assertRaises(usage.UsageError, parse, "--app", "tests.test_tap:makeNotAServer")
        self.assertIn("dict", str(error))
        self.assertIn("not a swooletw.Server", str(error))

    def test_callableNeedingArguments(self) -> None:
        """
        C{--app} naming a callable that cannot be called without arguments
        is a usage error that names the C{--app} value.
        """
        error = self.assertRaises(
            usage.UsageError, parse, "--app", "tests.test_tap:makeServerWithArguments"
        )
        self.assertIn("tests.test_tap:makeServerWithArguments", str(error))


class MakeServiceTests(SynchronousTestCase):
    """
    L{tcp.makeService}: the parsed server's own service, in a
    L{tcp.TapService}.
    """

    def test_holdsTheServersService(self) -> None:
        """
        The service is a L{tcp.TapService} whose only child is the server's
        C{asService()}.
        """
        options = parse()
        service = tcp.makeService(options)
        self.assertIsInstance(service, tcp.TapService)
        self.assertEqual(list(service), [options["server"].asService()])

    def test_portInUseIsStartError(self) -> None:
        """
        When a port cannot be bound, starting raises L{tcp.StartError}: a
        L{SystemExit} (status 1, no traceback) that is also an
        L{Exception} (so twistd's clean-up runs), whose message names the
        endpoint and the reason and points at C{--listen}.
        """
        with socket.socket() as held:
            held.bind(("127.0.0.1", 0))
            held.listen()
            description = f"tcp:{held.getsockname()[1]}:interface=127.0.0.1"
            service = tcp.makeService(parse("--worker-num", "1", "--listen", description))
            error = self.assertRaises(tcp.StartError, service.privilegedStartService)
        self.assertIsInstance(error, SystemExit)
        self.assertIsInstance(error, Exception)
        message = str(error)
        self.assertTrue(message.startswith(f"swoole-tcp: cannot listen on {description}: "), message)
        self.assertIn("in use", message)
        self.assertTrue(message.endswith("(--listen sets the address)"), message)

    def test_startFiresWorkerStartAndListens(self) -> None:
        """
        Starting the service listens and marks it running; stopping stops
        listening.
        """
        options = parse("--listen", "tcp:0:interface=127.0.0.1")
        service, reactor = startOnMemoryReactor(self, options)
        self.assertTrue(service.running)
        self.assertEqual([(p, i) for p, _f, _b, i in reactor.tcpServers], [(0, "127.0.0.1")])

    def test_stopStopsRunning(self) -> None:
        """
        Stopping the service ends with it not running.
        """
        reactor = MemoryReactorClock()
        options = parse("--worker-num", "1", "--setting", "max_request=0", "--setting", "task_max_request=0")
        options["server"].mode = BASE
        options["server"].adoptReactor(reactor)
        service = tcp.makeService(options)
        service.privilegedStartService()
        service.startService()
        stopped = service.stopService()
        reactor.advance(0)
        self.successResultOf(stopped)
        self.assertFalse(service.running)


class _Collect(Protocol):
    """
    Send C{data} on connect; hang up once C{expected} bytes came back;
    C{done} fires with what was received when the connection is lost.
    """

    def __init__(self, data: bytes, expected: int) -> None:
        self.data = data
        self.expected = expected
        self.received = b""
        self.done: defer.Deferred[bytes] = defer.Deferred()

    def connectionMade(self) -> None:
        self.transport.write(self.data)

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if len(self.received) >= self.expected:
            self.transport.loseConnection()

    def connectionLost(self, reason: Any) -> None:
        self.done.callback(self.received)


class PluginServiceIntegrationTests(TestCase):
    """
    The plugin's service parsed from options and started on C{tcp:0} on the
    real reactor, talked to over a real socket.
    """

    timeout = 15

    def startParsed(self, *argv: str) -> tuple[Server, Any]:
        """
        Parse, make and start the service on the global reactor; stop it in
        cleanup.
        """
        # One process: this runs inside trial, which must not fork.
        options = parse("--worker-num", "1", *argv)
        service = tcp.makeService(options)
        service.privilegedStartService()
        service.startService()
        self.addCleanup(service.stopService)
        return options["server"], service

    def test_echoOverRealSocket(self) -> None:
        """
        The echo app on C{--listen tcp:0:interface=127.0.0.1} replies
        C{b"hello server"} + data to a real TCP client.
        """
        from twisted.internet import reactor

        serv, _service = self.startParsed(
            "--app", ECHO_APP, "--listen", "tcp:0:interface=127.0.0.1"
        )
        self.assertEqual(serv.ports[0].host, "127.0.0.1")
        self.assertNotEqual(serv.port, 0)
        expected = b"hello server" + b"ping"
        protocol = _Collect(b"ping", len(expected))
        connected = connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", serv.port, timeout=5), protocol)
        connected.addCallback(lambda _: protocol.done)
        connected.addCallback(self.assertEqual, expected)
        return connected

    def test_boundPortReported(self) -> None:
        """
        After listening on C{tcp:0}, the main port's C{port} attribute is
        the port actually bound (as documented on L{Port}).
        """
        serv, _service = self.startParsed("--listen", "tcp:0:interface=127.0.0.1")
        bound = serv.asService()._listening[0].getHost().port
        self.assertEqual(serv.ports[0].port, bound)


class StartOnlySettingTests(SynchronousTestCase):
    """
    daemonize, log_file and pid_file belong to Server.start(); under twistd
    they are refused with the twistd flag to use.
    """

    def test_refusedWithTheFlag(self) -> None:
        """Each start()-only setting is a usage error naming twistd's flag."""
        for setting, flag in [("daemonize=true", "-n"), ("log_file=\"s.log\"", "--logfile"),
                              ("pid_file=\"s.pid\"", "--pidfile")]:
            error = self.assertRaises(usage.UsageError, parse, "--setting", setting)
            self.assertIn(setting.split("=")[0], str(error))
            self.assertIn(flag, str(error))

    def test_messagesRead(self) -> None:
        """
        Each refusal is a sentence saying what to do instead.
        """
        for setting, advice in [
            ("daemonize=true", "daemonize by leaving out -n"),
            ('log_file="s.log"', "set the log file with --logfile"),
            ('pid_file="s.pid"', "set the pid file with --pidfile"),
        ]:
            name = setting.split("=")[0]
            error = self.assertRaises(usage.UsageError, parse, "--setting", setting)
            self.assertEqual(
                str(error), f"setting {name!r} applies to Server.start(); under twistd, {advice}"
            )


class UsageTests(SynchronousTestCase):
    """
    The help twistd prints with a usage error: all of it for a mistyped
    option, a pointer to it after a bad value (whose message is the line
    that matters).
    """

    def test_fullHelpByDefault(self) -> None:
        """
        Before any error, C{getUsage} is the options' help.
        """
        usageText = tcp.Options().getUsage()
        self.assertIn("--listen", usageText)
        self.assertIn("--setting", usageText)

    def test_pointerAfterBadValue(self) -> None:
        """
        After a refused C{--listen}, C{--setting} or setting value,
        C{getUsage} is one line pointing at C{--help}.
        """
        for argv in (["--listen", "garbage"], ["--setting", "max_conn"],
                     ["--setting", "heartbeat_check_interval=NaN"]):
            options = tcp.Options()
            self.assertRaises(usage.UsageError, options.parseOptions, argv)
            self.assertEqual(options.getUsage(), "Run 'twistd swoole-tcp --help' for the options.")


_TWISTD = "import sys; sys.argv[0] = 'twistd'; from twisted.scripts.twistd import run; run()"


class TwistdErrorTests(SynchronousTestCase):
    """
    C{twistd -n swoole-tcp} run for real with a bad C{--listen} or a port in
    use: no traceback, one line saying what is wrong, exit status 1.
    """

    def twistd(self, *argv: str) -> tuple[int, list[str], str]:
        """
        Run C{twistd -n swoole-tcp argv} in a fresh directory (default pid
        file); return its exit status, output lines and directory.
        """
        workdir = os.path.abspath(self.mktemp())
        os.makedirs(workdir)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO, env.get("PYTHONPATH")]))
        result = subprocess.run(
            [sys.executable, "-c", _TWISTD, "-n", "swoole-tcp", *argv],
            cwd=workdir, env=env, capture_output=True, text=True, timeout=60,
        )
        lines = (result.stdout + result.stderr).splitlines()
        self.assertNotIn("Traceback", "\n".join(lines))
        return result.returncode, lines, workdir

    def assertUsageError(self, description: str, expected: str) -> None:
        """
        C{--listen description} exits with status 1 after three lines:
        twistd's synopsis, the pointer to C{--help}, and C{expected}.
        """
        status, lines, _ = self.twistd("--listen", description)
        self.assertEqual(status, 1, lines)
        self.assertEqual(
            lines,
            ["Usage: twistd [options]", "Run 'twistd swoole-tcp --help' for the options.",
             f"twistd -n: --listen {description!r}: {expected}"],
        )

    def test_garbage(self) -> None:
        """
        C{--listen garbage}.
        """
        self.assertUsageError("garbage", "Unknown endpoint type: 'garbage'")

    def test_notAPort(self) -> None:
        """
        C{--listen tcp:notaport}.
        """
        self.assertUsageError("tcp:notaport", "invalid port 'notaport' (0 to 65535)")

    def test_udp(self) -> None:
        """
        C{--listen udp:9502}.
        """
        self.assertUsageError(
            "udp:9502",
            "--listen takes stream endpoints; UDP ports are set up by the app "
            "with serv.listen(host, port, SOCK_UDP)",
        )

    def test_portInUse(self) -> None:
        """
        A C{--listen} port already in use: after twistd's two start-up lines,
        one line naming the endpoint and the reason; exit status 1; the pid
        file is removed.
        """
        with socket.socket() as held:
            held.bind(("127.0.0.1", 0))
            held.listen()
            description = f"tcp:{held.getsockname()[1]}:interface=127.0.0.1"
            status, lines, workdir = self.twistd("--listen", description)
        self.assertEqual(status, 1, lines)
        self.assertEqual(len(lines), 3, lines)
        self.assertIn("starting up", lines[0])
        self.assertIn("reactor class", lines[1])
        self.assertIn(f"swoole-tcp: cannot listen on {description}: ", lines[2])
        self.assertIn("Address already in use", lines[2])
        self.assertFalse(os.path.exists(os.path.join(workdir, "twistd.pid")))
