"""
End-to-end tests of SMTP delivery (L{swooletw.mail.mailer.SMTPMailer}, and
the mail server in front of it) against a real SMTP server started by the
test: Twisted's own ESMTP server on 127.0.0.1, with AUTH (LOGIN, PLAIN) and
a self-signed certificate made here, for STARTTLS and implicit TLS.
"""

from __future__ import annotations

import base64
import datetime
import email
import email.policy
import ipaddress
import os
import threading
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.portal import Portal
from twisted.internet import defer, reactor, ssl
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.testing import EventLoggingObserver
from twisted.internet.threads import deferToThread
from twisted.logger import formatEvent, globalLogPublisher
from twisted.mail import smtp
from twisted.mail.imap4 import PLAINCredentials
from twisted.mail.interfaces import IMessageDelivery
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from swooletw.constants import BASE
from swooletw.mail.config import MailConfig, SMTPConfig
from swooletw.mail.events import Event
from swooletw.mail.mailer import SMTPMailer
from swooletw.mail.message import buildMessage, checkSendMail, envelopeRecipients
from swooletw.mail.taskclient import TaskClient
from swooletw.mail.taskserver import TaskServer

USER = "sender@example.com"
PASSWORD = "Sw0ole-s3cret"


def makeCertificate(directory: str) -> tuple[str, ssl.PrivateCertificate]:
    """
    A self-signed certificate for C{localhost} and C{127.0.0.1}.

    @return: the path of its PEM (the client's C{cafile}) and the server's
        L{ssl.PrivateCertificate}.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    certPEM = cert.public_bytes(serialization.Encoding.PEM)
    keyPEM = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption())
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "ca.pem")
    with open(path, "wb") as f:
        f.write(certPEM)
    return path, ssl.PrivateCertificate.loadPEM(certPEM + keyPEM)


# ------------------------------------------------------------ the server


class _Message:
    """
    One message being received; stored whole at its end.
    """

    def __init__(self, server: "TestSMTPServer") -> None:
        self.server = server
        self.lines: list[bytes] = []

    def lineReceived(self, line: bytes) -> None:
        self.lines.append(line)

    def eomReceived(self) -> defer.Deferred[None]:
        self.server.received(b"".join(line + b"\n" for line in self.lines))
        return defer.succeed(None)

    def connectionLost(self) -> None:
        self.lines = []


@implementer(IMessageDelivery)
class _Delivery:
    """
    Accepts any sender; a recipient at C{refused.example} gets a 550.
    """

    def __init__(self, server: "TestSMTPServer") -> None:
        self.server = server

    def receivedHeader(self, helo: Any, origin: Any, recipients: Any) -> None:
        return None

    def validateFrom(self, helo: Any, origin: Any) -> Any:
        self.server.senders.append(str(origin))
        return origin

    def validateTo(self, user: Any) -> Any:
        if user.dest.domain == b"refused.example":
            raise smtp.SMTPBadRcpt(user)
        self.server.recipients.append(str(user.dest))
        return lambda: _Message(self.server)


class _Realm:
    def __init__(self, server: "TestSMTPServer") -> None:
        self.server = server

    def requestAvatar(self, avatarId: Any, mind: Any, *interfaces: Any) -> Any:
        return IMessageDelivery, _Delivery(self.server), lambda: None


class _ESMTP(smtp.ESMTP):
    """
    Records each transaction's TLS and AUTH state; answers C{MAIL} with the
    next scripted code, if any.
    """

    def connectionMade(self) -> None:
        super().connectionMade()
        self.factory.server.connections.add(self)

    def connectionLost(self, reason: Any) -> None:
        super().connectionLost(reason)
        self.factory.server.lost(self)

    def ext_AUTH(self, rest: bytes) -> Any:
        self.factory.server.authAttempts.append(rest.split()[0].upper() if rest.split() else b"")
        return super().ext_AUTH(rest)

    def do_MAIL(self, rest: bytes) -> Any:
        server = self.factory.server
        secure = self.startedTLS or ISSLTransport.providedBy(self.transport)
        server.sessions.append({"tls": bool(secure), "auth": self.authenticated})
        if server.mailReplies:
            code = server.mailReplies.pop(0)
            if code:
                self.sendCode(code, b"scripted reply %d" % code)
                return None
        return super().do_MAIL(rest)


class _Factory(smtp.SMTPFactory):
    protocol = _ESMTP

    def __init__(self, server: "TestSMTPServer") -> None:
        super().__init__(server.portal)
        self.server = server
        self.domain = b"smtp.test"

    def buildProtocol(self, addr: Any) -> Any:
        p = super().buildProtocol(addr)
        p.factory = self
        p.challengers = dict(self.server.challengers)
        p.ctx = None if self.server.implicit or not self.server.offerTLS else self.server.tls
        return p


class TestSMTPServer:
    """
    An ESMTP server on 127.0.0.1 with AUTH for L{USER}/L{PASSWORD}.

    @ivar messages: the messages received, as bytes.
    @ivar sessions: per transaction: C{{"tls": ..., "auth": ...}}.
    @ivar mailReplies: codes to answer the next C{MAIL} commands with
        (C{None}: carry on).
    """

    def __init__(self, certificate: ssl.PrivateCertificate, implicit: bool = False,
                 challengers: Any = None) -> None:
        checker = InMemoryUsernamePasswordDatabaseDontUse()
        checker.addUser(USER.encode(), PASSWORD.encode())
        self.portal = Portal(_Realm(self), [checker])
        self.tls = certificate.options()
        self.implicit = implicit
        #: whether STARTTLS is offered (not with implicit TLS)
        self.offerTLS = True
        #: AUTH commands received, by mechanism
        self.authAttempts: list[bytes] = []
        self.challengers = challengers or {b"LOGIN": smtp.LOGINCredentials, b"PLAIN": PLAINCredentials}
        self.messages: list[bytes] = []
        self.senders: list[str] = []
        self.recipients: list[str] = []
        self.sessions: list[dict[str, bool]] = []
        self.mailReplies: list[int | None] = []
        self._waiting: list[tuple[int, defer.Deferred[None]]] = []
        self.connections: set[Any] = set()
        #: fire once no connection is left
        self._closedWaiters: list[defer.Deferred[None]] = []

    def listen(self) -> int:
        factory = _Factory(self)
        if self.implicit:
            self.port = reactor.listenSSL(0, factory, self.tls, interface="127.0.0.1")
        else:
            self.port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        return self.port.getHost().port

    @defer.inlineCallbacks
    def stop(self) -> Any:
        """
        Stop listening; wait (up to 5 s) for the connections to close, then
        abort what is left.
        """
        yield self.port.stopListening()
        try:
            yield self.allClosed().addTimeout(5, reactor)
        except defer.TimeoutError:
            for connection in list(self.connections):
                connection.transport.abortConnection()

    def lost(self, connection: Any) -> None:
        """
        C{connection} closed.
        """
        self.connections.discard(connection)
        if not self.connections:
            waiters, self._closedWaiters = self._closedWaiters, []
            for d in waiters:
                if not d.called:  # not timed out
                    d.callback(None)

    def allClosed(self) -> defer.Deferred[None]:
        """
        Fires once no connection is open.
        """
        if not self.connections:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._closedWaiters.append(d)
        return d

    def received(self, message: bytes) -> None:
        self.messages.append(message)
        for count, d in list(self._waiting):
            if len(self.messages) >= count:
                self._waiting.remove((count, d))
                d.callback(None)

    def waitForMessages(self, count: int) -> defer.Deferred[None]:
        """
        Fires once C{count} messages arrived (fails after 10 s).
        """
        d: defer.Deferred[None] = defer.Deferred()
        if len(self.messages) >= count:
            d.callback(None)
        else:
            self._waiting.append((count, d))
        return d.addTimeout(10, reactor)


# ----------------------------------------------------------------- tests


class _SMTPTestCase(TestCase):
    """
    Starts a L{TestSMTPServer}; captures every log event.
    """

    timeout = 20

    def setUp(self) -> None:
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.cafile, self.certificate = makeCertificate(os.path.abspath(self.mktemp()))

    def startSMTP(self, implicit: bool = False, challengers: Any = None) -> TestSMTPServer:
        server = TestSMTPServer(self.certificate, implicit, challengers)
        server.listen()
        self.addCleanup(server.stop)
        return server

    def config(self, server: TestSMTPServer, password: str = PASSWORD, cafile: str | None = "",
               **overrides: Any) -> MailConfig:
        """
        A L{MailConfig} for C{server}: STARTTLS (or TLS), AUTH, quick
        retries.
        """
        smtpConfig = SMTPConfig(
            host="127.0.0.1", port=server.port.getHost().port,
            security="tls" if server.implicit else "starttls",
            username=USER, password=password.encode(),
            cafile=self.cafile if cafile == "" else cafile, timeout=5,
        )
        settings = dict(smtp=smtpConfig, mailFrom=f"Shop <{USER}>", retries=2, retryDelay=0.05)
        settings.update(overrides)
        return MailConfig(**settings)

    def send(self, config: MailConfig, **fields: Any) -> defer.Deferred[dict[str, Any]]:
        packet = {"to": "receiver@example.com", "subject": "just a test", "content": "This is just a test."}
        packet.update(fields)
        data = checkSendMail(packet)
        message = buildMessage(data, config.mailFrom)
        return defer.ensureDeferred(SMTPMailer(config).send(message, envelopeRecipients(data), reactor, 7))

    def assertNoSecretLogged(self) -> None:
        """
        No log event shows the password, raw or in an AUTH exchange.
        """
        secrets = [PASSWORD, base64.b64encode(PASSWORD.encode()).decode(),
                   base64.b64encode(f"{USER}\0{USER}\0{PASSWORD}".encode()).decode(),
                   base64.b64encode(f"\0{USER}\0{PASSWORD}".encode()).decode()]
        text = "\n".join(formatEvent(e) + repr(e) for e in self.events)
        for secret in secrets:
            self.assertNotIn(secret, text)


class SMTPDeliveryTests(_SMTPTestCase):
    """
    L{SMTPMailer} against a real ESMTP server.
    """

    @defer.inlineCallbacks
    def test_starttlsAuthHeaders(self) -> Any:
        """
        Over STARTTLS, after AUTH, the message arrives with From, To, Cc
        and Subject; the envelope holds every recipient.
        """
        server = self.startSMTP()
        result = yield self.send(self.config(server), to=["receiver@example.com"],
                                 cc=["Boss <boss@example.com>"], subject="Grüße")
        self.assertEqual((result["ok"], result["transport"], result["attempts"]), (True, "smtp", 1))
        self.assertEqual(server.sessions, [{"tls": True, "auth": True}])
        self.assertEqual(server.senders, [USER])
        self.assertEqual(server.recipients, ["receiver@example.com", "boss@example.com"])
        # Twisted's server stores one copy per recipient.
        self.assertEqual(len(server.messages), 2)
        message = email.message_from_bytes(server.messages[0], policy=email.policy.default)
        self.assertEqual(message["From"], f"Shop <{USER}>")
        self.assertEqual(message["To"], "receiver@example.com")
        self.assertEqual(message["Cc"], "Boss <boss@example.com>")
        self.assertEqual(message["Subject"], "Grüße")
        self.assertEqual(message.get_content(), "This is just a test.\n")
        self.assertNoSecretLogged()

    @defer.inlineCallbacks
    def test_authPlainAndHTML(self) -> Any:
        """
        With only AUTH PLAIN offered, it is used; C{html: true} arrives as
        text/html.
        """
        server = self.startSMTP(challengers={b"PLAIN": PLAINCredentials})
        result = yield self.send(self.config(server), content="<p>Hi</p>", html=True)
        self.assertIs(result["ok"], True)
        message = email.message_from_bytes(server.messages[0], policy=email.policy.default)
        self.assertEqual(message.get_content_type(), "text/html")
        self.assertEqual(server.sessions, [{"tls": True, "auth": True}])
        self.assertEqual(server.authAttempts, [b"PLAIN"])
        self.assertNoSecretLogged()

    @defer.inlineCallbacks
    def test_implicitTLS(self) -> Any:
        """
        C{smtps://}: TLS from the first byte, then AUTH.
        """
        server = self.startSMTP(implicit=True)
        result = yield self.send(self.config(server))
        self.assertIs(result["ok"], True)
        self.assertEqual(server.sessions, [{"tls": True, "auth": True}])
        self.assertEqual(len(server.messages), 1)

    @defer.inlineCallbacks
    def test_temporaryFailureRetried(self) -> Any:
        """
        A 451 on the first attempt is logged and retried after the delay;
        the second attempt delivers.
        """
        server = self.startSMTP()
        server.mailReplies = [451]
        result = yield self.send(self.config(server))
        self.assertEqual((result["ok"], result["attempts"]), (True, 2))
        self.assertEqual(len(server.messages), 1)
        self.assertEqual(len(server.sessions), 2)
        warnings = [formatEvent(e) for e in self.events if "retrying in" in formatEvent(e)]
        self.assertEqual(len(warnings), 1)
        self.assertIn("451 scripted reply 451", warnings[0])

    @defer.inlineCallbacks
    def test_temporaryFailuresGiveUp(self) -> Any:
        """
        After C{retries} retries of temporary failures, it gives up:
        reported as not permanent.
        """
        server = self.startSMTP()
        server.mailReplies = [451, 452, 421]
        result = yield self.send(self.config(server, retries=2))
        self.assertEqual((result["ok"], result["permanent"], result["attempts"], result["code"]),
                         (False, False, 3, 421))
        self.assertEqual(server.messages, [])

    @defer.inlineCallbacks
    def test_permanentFailureNotRetried(self) -> Any:
        """
        A 550 is reported as permanent after one attempt, and logged.
        """
        server = self.startSMTP()
        server.mailReplies = [550]
        result = yield self.send(self.config(server))
        self.assertEqual((result["ok"], result["permanent"], result["attempts"], result["code"]),
                         (False, True, 1, 550))
        self.assertEqual(result["error"], "550 scripted reply 550")
        self.assertEqual(len(server.sessions), 1)
        self.assertIn("task 7: mail not sent: 550 scripted reply 550 (permanent failure, not retried)",
                      [formatEvent(e) for e in self.events])

    @defer.inlineCallbacks
    def test_wrongPasswordPermanent(self) -> Any:
        """
        A refused login (535) is permanent, and the password is not in the
        error or the logs.
        """
        server = self.startSMTP()
        result = yield self.send(self.config(server, password="wrong-" + PASSWORD))
        self.assertEqual((result["ok"], result["permanent"], result["code"]), (False, True, 535))
        self.assertNotIn(PASSWORD, result["error"])
        self.assertNoSecretLogged()

    @defer.inlineCallbacks
    def test_untrustedCertificatePermanent(self) -> Any:
        """
        A server certificate not trusted (no cafile: the system's roots) is
        a permanent failure: no AUTH, no retry.
        """
        server = self.startSMTP()
        result = yield self.send(self.config(server, cafile=None))
        self.assertEqual((result["ok"], result["permanent"], result["attempts"]), (False, True, 1))
        self.assertIn("TLS", result["error"])
        self.assertEqual(server.sessions, [])

    @defer.inlineCallbacks
    def test_noSTARTTLSNoPassword(self) -> Any:
        """
        A server that does not offer STARTTLS gets no AUTH (the password is
        never sent in clear) and no message: a permanent failure.
        """
        server = self.startSMTP()
        server.offerTLS = False
        result = yield self.send(self.config(server))
        self.assertEqual((result["ok"], result["permanent"]), (False, True))
        self.assertIn("TLS", result["error"])
        self.assertEqual((server.authAttempts, server.sessions), ([], []))

    @defer.inlineCallbacks
    def test_connectionRefusedRetried(self) -> Any:
        """
        A refused connection is temporary: retried, then given up.
        """
        server = self.startSMTP()
        config = self.config(server, retries=1)
        yield server.port.stopListening()
        result = yield self.send(config)
        self.assertEqual((result["ok"], result["permanent"], result["attempts"]), (False, False, 2))
        self.assertIn("Unable to connect", result["error"])

    @defer.inlineCallbacks
    def test_partlyRefusedRecipients(self) -> Any:
        """
        A refused recipient among accepted ones: sent, the refusal
        reported.
        """
        server = self.startSMTP()
        result = yield self.send(self.config(server), to=["receiver@example.com", "x@refused.example"])
        self.assertIs(result["ok"], True)
        self.assertEqual([(r["address"], r["code"]) for r in result["refused"]], [("x@refused.example", 550)])


class MailServerSMTPTests(_SMTPTestCase):
    """
    The whole path: L{TaskClient} -> the mail server (one process, real
    task threads) -> SMTP.
    """

    def startMailServer(self, config: MailConfig, events: Any = None) -> TaskServer:
        app = TaskServer("127.0.0.1", 0, config=config, events=events)
        app.server.set(worker_num=1, max_request=0, task_max_request=0)
        app.server.mode = BASE
        service = app.server.asService()
        service.privilegedStartService()
        service.startService()
        self.addCleanup(service.stopService)
        return app

    @defer.inlineCallbacks
    def test_taskClientToSMTP(self) -> Any:
        """
        C{TaskClient.sendMail} gets C{{"ok": true, "task_id": 1}} and the
        message reaches the SMTP server over STARTTLS with AUTH.
        """
        smtpServer = self.startSMTP()
        app = self.startMailServer(self.config(smtpServer))

        def talk() -> Any:
            with TaskClient("127.0.0.1", app.server.port) as client:
                return client.sendMail("receiver@example.com", "just a test", "This is just a test.")

        reply = yield deferToThread(talk)
        self.assertEqual(reply, {"ok": True, "task_id": 1})
        yield smtpServer.waitForMessages(1)
        message = email.message_from_bytes(smtpServer.messages[0], policy=email.policy.default)
        self.assertEqual(message["Subject"], "just a test")
        self.assertEqual(smtpServer.sessions, [{"tls": True, "auth": True}])
        self.assertNoSecretLogged()

    @defer.inlineCallbacks
    def test_blockingEventInTaskThread(self) -> Any:
        """
        An operator's plain (blocking) handler runs in a task thread, not
        the reactor's; its result reaches finish.
        """
        ran: defer.Deferred[str] = defer.Deferred()

        def blocking(serv: Any, taskId: int, src: int, data: Any) -> str:
            name = threading.current_thread().name
            reactor.callFromThread(ran.callback, name)
            return name

        app = self.startMailServer(MailConfig(maildir=self.mktemp()), events={"work": Event(blocking)})

        def talk() -> Any:
            with TaskClient("127.0.0.1", app.server.port) as client:
                return client.sendData({"event": "work"})

        reply = yield deferToThread(talk)
        self.assertEqual(reply, {"ok": True, "task_id": 1})
        name = yield ran.addTimeout(10, reactor)
        self.assertIn("swooletw-task", name)
