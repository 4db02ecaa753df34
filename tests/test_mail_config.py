"""
Tests for L{swooletw.mail.config} and the mail options of C{twistd
swoole-tcp} (L{swooletw.tap.tcp}): where mail goes, and the password kept
off the command line and out of messages.
"""

from __future__ import annotations

import os

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from swooletw.mail.config import (
    PASSWORD_ENV,
    ConfigError,
    MailConfig,
    configFromOptions,
    parseSMTPURL,
    readPassword,
)
from swooletw.mail.events import Event
from swooletw.mail.mailer import MaildirMailer, SMTPMailer
from swooletw.mail.taskserver import TaskServer, appOf, makeServer
from swooletw.api import Server
from swooletw.tap import tcp

SECRET = "s3cret-Pa55"


def makeAppWithEvents() -> Server:
    """
    An operator's app: the mail server plus a C{ping} event, for C{--app
    tests.test_mail_config:makeAppWithEvents}.
    """
    async def ping(serv: Server, taskId: int, src: int, data: object) -> str:
        return "pong"

    return makeServer(events={"ping": Event(ping)})


def parse(*argv: str) -> tcp.Options:
    """
    Parse C{argv} as C{twistd swoole-tcp} would.
    """
    options = tcp.Options()
    options.parseOptions(list(argv))
    return options


class SMTPURLTests(SynchronousTestCase):
    """
    L{parseSMTPURL}.
    """

    def test_starttlsDefault(self) -> None:
        """
        C{smtp://user@host:587}: STARTTLS required, AUTH as that user.
        """
        config = parseSMTPURL("smtp://me@smtp.example.com:587", b"pw")
        self.assertEqual((config.host, config.port, config.security, config.username, config.password),
                         ("smtp.example.com", 587, "starttls", "me", b"pw"))

    def test_implicitTLSAndDefaultPorts(self) -> None:
        """
        C{smtps://} is implicit TLS on 465 by default; C{smtp://} defaults
        to 587.
        """
        self.assertEqual(parseSMTPURL("smtps://me@mail.example.com", b"pw").port, 465)
        self.assertEqual(parseSMTPURL("smtps://me@mail.example.com", b"pw").security, "tls")
        self.assertEqual(parseSMTPURL("smtp://relay.example.com").port, 587)

    def test_addressAsUser(self) -> None:
        """
        A user that is an address works raw or percent-encoded.
        """
        for url in ("smtp://me@example.com@smtp.example.com", "smtp://me%40example.com@smtp.example.com"):
            self.assertEqual(parseSMTPURL(url, b"pw").username, "me@example.com")

    def test_plainRelay(self) -> None:
        """
        C{starttls=0} without a user: plain SMTP; timeout and cafile read.
        """
        config = parseSMTPURL("smtp://relay.internal:25?starttls=0&timeout=7")
        self.assertEqual((config.security, config.timeout, config.username), ("none", 7.0, None))

    def test_passwordInURLRefused(self) -> None:
        """
        A password in the URL is refused, without echoing it.
        """
        error = self.assertRaises(ConfigError, parseSMTPURL, f"smtp://me:{SECRET}@smtp.example.com")
        self.assertIn(PASSWORD_ENV, str(error))
        self.assertNotIn(SECRET, str(error))

    def test_userWithoutPassword(self) -> None:
        """
        A user and no password: an error saying where the password goes.
        """
        error = self.assertRaises(ConfigError, parseSMTPURL, "smtp://me@smtp.example.com")
        self.assertIn(PASSWORD_ENV, str(error))
        self.assertIn("--smtp-password-file", str(error))

    def test_noPasswordWithoutTLS(self) -> None:
        """
        A user with C{starttls=0} is refused: no password in clear.
        """
        error = self.assertRaises(ConfigError, parseSMTPURL, "smtp://me@smtp.example.com?starttls=0", b"pw")
        self.assertIn("without TLS", str(error))

    def test_badURLs(self) -> None:
        """
        Another scheme, no host, a bad port, an unknown parameter, a bad
        starttls or timeout, a missing cafile: each refused, named.
        """
        cases = {
            "http://smtp.example.com": "smtp://",
            "smtp://": "host",
            "smtp://host:99999": "port",
            "smtp://host?verify=0": "'verify'",
            "smtp://host?starttls=yes": "starttls",
            "smtps://host?starttls=1": "starttls",
            "smtp://host?timeout=0": "timeout",
            "smtp://host?cafile=/nonexistent/ca.pem": "cafile",
        }
        for url, named in cases.items():
            error = self.assertRaises(ConfigError, parseSMTPURL, url)
            self.assertIn(named, str(error), url)

    def test_passwordNotInRepr(self) -> None:
        """
        Neither the config's repr nor its description shows the password.
        """
        config = parseSMTPURL("smtps://me@smtp.example.com", SECRET.encode())
        self.assertNotIn(SECRET, repr(config))
        self.assertNotIn(SECRET, repr(MailConfig(smtp=config)))
        self.assertEqual(config.describe(), "smtps://me@smtp.example.com:465 (TLS)")


class PasswordTests(SynchronousTestCase):
    """
    L{readPassword}: a file first, else the environment.
    """

    def test_fromEnvironment(self) -> None:
        """
        C{$SWOOLETW_SMTP_PASSWORD}, as bytes.
        """
        self.assertEqual(readPassword(None, {PASSWORD_ENV: SECRET}), SECRET.encode())
        self.assertIsNone(readPassword(None, {}))

    def test_fromFile(self) -> None:
        """
        The file's content without its final newline wins over the
        environment.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(SECRET + "\n")
        os.chmod(path, 0o600)
        self.assertEqual(readPassword(path, {PASSWORD_ENV: "other"}), SECRET.encode())

    def test_missingFile(self) -> None:
        """
        A file that cannot be read is an error naming it.
        """
        error = self.assertRaises(ConfigError, readPassword, "/nonexistent/pw", {})
        self.assertIn("/nonexistent/pw", str(error))


class OptionsTests(SynchronousTestCase):
    """
    The mail options of C{twistd swoole-tcp}.
    """

    def setUp(self) -> None:
        # Whatever the environment running the tests holds, no password.
        self.patch(os, "environ", {k: v for k, v in os.environ.items() if k != PASSWORD_ENV})

    def test_defaultIsMailAppWithMaildir(self) -> None:
        """
        With no arguments: the mail app on C{tcp:9501:interface=127.0.0.1},
        mail into the Maildir C{outbox} relative to the working directory.
        """
        serv = parse()["server"]
        app = appOf(serv)
        self.assertIsInstance(app, TaskServer)
        self.assertEqual(serv.ports[0].endpoint, "tcp:9501:interface=127.0.0.1")
        self.assertIsInstance(app.mailer, MaildirMailer)
        self.assertEqual(app.mailer.path, "outbox")
        self.assertEqual(app.config, MailConfig())
        self.assertIn("./outbox", tcp.Options.longdesc)

    def test_smtpOptions(self) -> None:
        """
        C{--smtp}, C{--mail-from}, C{--smtp-retries}, C{--smtp-retry-delay}
        and the password file configure an SMTP mailer.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(SECRET)
        os.chmod(path, 0o600)
        options = parse("--smtp", "smtp://me@127.0.0.1:2525", "--smtp-password-file", path,
                        "--mail-from", "Shop <shop@example.com>", "--smtp-retries", "2",
                        "--smtp-retry-delay", "0.5")
        app = appOf(options["server"])
        self.assertIsInstance(app.mailer, SMTPMailer)
        config = app.config
        self.assertEqual((config.smtp.port, config.smtp.password, config.mailFrom, config.retries, config.retryDelay),
                         (2525, SECRET.encode(), "Shop <shop@example.com>", 2, 0.5))

    def test_passwordFromEnvironment(self) -> None:
        """
        Without a file, the password comes from the environment.
        """
        config = configFromOptions({"smtp": "smtps://me@example.com@smtp.example.com"}, {PASSWORD_ENV: SECRET})
        self.assertEqual(config.smtp.password, SECRET.encode())
        self.assertEqual(config.mailFrom, "me@example.com")

    def test_maildirOption(self) -> None:
        """
        C{--maildir} changes the outbox.
        """
        app = appOf(parse("--maildir", "/var/spool/swooletw")["server"])
        self.assertEqual(app.mailer.path, "/var/spool/swooletw")

    def test_badValuesAreUsageErrors(self) -> None:
        """
        A bad URL, a user without password, a bad From, a negative retry
        count: usage errors that never show the password.
        """
        for argv in (["--smtp", f"smtp://me:{SECRET}@host"], ["--smtp", "smtp://me@host"],
                     ["--mail-from", "nobody"], ["--smtp-retries", "-1"],
                     ["--smtp-password-file", "/nonexistent"]):
            error = self.assertRaises(usage.UsageError, parse, *argv)
            self.assertNotIn(SECRET, str(error))

    def test_mailOptionsNeedMailApp(self) -> None:
        """
        Mail options with an C{--app} that is not a mail server are a usage
        error.
        """
        error = self.assertRaises(usage.UsageError, parse, "--app", "swooletw.examples.echo:makeServer",
                                  "--maildir", "x")
        self.assertIn("--maildir applies to the mail app", str(error))

    def test_appWithEventsGetsOptions(self) -> None:
        """
        An C{--app} built with L{makeServer} and its own events takes the
        mail options, and keeps its events.
        """
        options = parse("--app", "tests.test_mail_config:makeAppWithEvents", "--maildir", "mine")
        app = appOf(options["server"])
        self.assertEqual(app.events.names(), ["ping", "send-mail"])
        self.assertEqual(app.mailer.path, "mine")


class CAFileTests(SynchronousTestCase):
    """
    C{cafile=}: loaded when the options are parsed.
    """

    def test_notPEM(self) -> None:
        """
        A cafile with no certificate in it is a usage error naming it.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("not a certificate\n")
        self.patch(os, "environ", {PASSWORD_ENV: SECRET})
        error = self.assertRaises(usage.UsageError, parse, "--smtp", f"smtps://me@127.0.0.1?cafile={path}")
        self.assertIn("holds no PEM certificate", str(error))
        self.assertNotIn(SECRET, str(error))
