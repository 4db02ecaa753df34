# -*- test-case-name: tests.test_mail_smtp -*-
"""
The tutorial's C{Mailer}: send one message, through SMTP or into a
Maildir.  Both run on the reactor (the mail task is an C{async def}).

 - L{SMTPMailer} uses Twisted's ESMTP client (L{twisted.mail.smtp}):
   STARTTLS or implicit TLS, AUTH when a user is configured.  A temporary
   failure (a 4xx reply, a refused or dropped connection, a timeout) is
   retried after C{retryDelay} seconds, doubling each time, C{retries}
   times; a permanent one (a 5xx reply, a failed TLS handshake) is not.
 - L{MaildirMailer} writes each message into C{tmp/} of a Maildir
   (L{twisted.mail.maildir.initializeMaildir}) and renames it into
   C{new/}, so a reader never sees half a message.

C{send()} never raises for a delivery problem: it fires with a result
dict, C{{"ok": True, ...}} or C{{"ok": False, "error": ..., "permanent":
...}}, and logs it.  SMTP errors are described by their code and reply
only: Twisted's error text carries the session log, with the AUTH
exchange in it, and is never logged.
"""

from __future__ import annotations

import itertools
import os
import socket
import time
from email.message import EmailMessage
from io import BytesIO
from typing import Any

from twisted.internet import defer
from twisted.internet.task import deferLater
from twisted.logger import Logger

from swooletw.mail.config import ConfigError, MailConfig, SMTPConfig
from swooletw.mail.message import envelopeSender, messageBytes

__all__ = ["SMTPMailer", "MaildirMailer", "makeMailer", "classifyError", "tlsOptions"]


def makeMailer(config: MailConfig) -> Any:
    """
    The mailer C{config} asks for.
    """
    if config.smtp is None:
        return MaildirMailer(config.maildir)
    return SMTPMailer(config)


# ------------------------------------------------------------------ SMTP


def tlsOptions(smtp: SMTPConfig) -> Any:
    """
    Client TLS options verifying the server's certificate for its host
    name, against C{cafile} if given, else the system's trust store.
    """
    from twisted.internet import ssl

    trustRoot = None
    if smtp.cafile is not None:
        trustRoot = ssl.trustRootFromCertificates(_loadCertificates(smtp.cafile))
    return ssl.optionsForClientTLS(smtp.host, trustRoot=trustRoot)


def _loadCertificates(path: str) -> list[Any]:
    """
    Every certificate of a PEM file.

    @raise ConfigError: when it cannot be read or holds none.
    """
    from OpenSSL import SSL
    from twisted.internet import ssl

    marker = b"-----END CERTIFICATE-----"
    try:
        with open(path, "rb") as f:
            pem = f.read()
        blocks = [block + marker for block in pem.split(marker) if b"-----BEGIN CERTIFICATE-----" in block]
        certificates = [ssl.Certificate.loadPEM(block) for block in blocks]
    except (OSError, ValueError, SSL.Error) as e:
        raise ConfigError(f"--smtp: cafile {path!r}: cannot load it: {e}") from e
    if not certificates:
        raise ConfigError(f"--smtp: cafile {path!r} holds no PEM certificate")
    return certificates


def classifyError(error: BaseException) -> tuple[bool, str, int | None]:
    """
    Whether an SMTP failure is permanent, and how to describe it.

    @return: C{(permanent, description, code or None)}; the description
        holds the server's code and reply, never the session log.
    """
    from OpenSSL import SSL
    from twisted.mail import smtp

    if isinstance(error, smtp.SMTPClientError):
        code = error.code if error.code > 0 else None
        reply = error.resp.decode("utf-8", "replace") if isinstance(error.resp, bytes) else str(error.resp)
        reply = " ".join(reply.split())[:300]
        if isinstance(error.__cause__, SSL.Error):
            return True, f"TLS handshake with the SMTP server failed: {error.__cause__}", None
        if code is not None:
            return code >= 500, f"{code} {reply}", code
        return False, reply, None
    return False, f"{type(error).__name__}: {error}", None


class SMTPMailer:
    """
    Send through one SMTP server, with retries.

    @ivar attempts: SMTP sessions opened so far (for tests and stats).
    """

    log = Logger()

    def __init__(self, config: MailConfig) -> None:
        if config.smtp is None:
            raise ValueError("SMTPMailer needs config.smtp")
        self.config = config
        self.smtp: SMTPConfig = config.smtp
        self.attempts = 0
        self._tls = None if self.smtp.security == "none" else tlsOptions(self.smtp)

    def describe(self) -> str:
        """
        Where mail goes, for logs.
        """
        return self.smtp.describe()

    async def send(self, message: EmailMessage, recipients: list[str], reactor: Any, taskId: Any = None) -> dict[str, Any]:
        """
        Send C{message} to C{recipients} (bare addresses), retrying
        temporary failures.

        @return: the result dict (see the module docstring).
        """
        payload = messageBytes(message)
        delay = self.config.retryDelay
        attempt = 0
        while True:
            attempt += 1
            try:
                _, addresses = await self.attempt(payload, recipients, reactor)
            except Exception as e:
                permanent, error, code = classifyError(e)
                if permanent or attempt > self.config.retries:
                    return self._failed(taskId, attempt, error, code, permanent)
                self.log.warn(
                    "SMTP attempt {attempt} for task {task_id} failed ({error}); retrying in {delay}s",
                    attempt=attempt, task_id=taskId, error=error, delay=delay,
                )
                await deferLater(reactor, delay, lambda: None)
                delay = min(delay * 2, self.config.maxRetryDelay)
            else:
                return self._sent(taskId, attempt, recipients, addresses)

    def attempt(self, payload: bytes, recipients: list[str], reactor: Any) -> defer.Deferred[Any]:
        """
        One SMTP session; fires with C{(accepted count, [(address, code,
        reply)])} or fails with an L{SMTPClientError}.
        """
        self.attempts += 1
        config = self.smtp
        result: defer.Deferred[Any] = defer.Deferred()
        factory = _senderFactory(
            config.username.encode("utf-8") if config.username else None,
            config.password,
            envelopeSender(self.config.mailFrom),
            recipients,
            BytesIO(payload),
            result,
            retries=0,
            timeout=config.timeout,
            contextFactory=self._tls,
            heloFallback=config.security == "none" and not config.username,
            requireAuthentication=bool(config.username),
            requireTransportSecurity=config.security != "none",
            # starttls=0: no TLS at all, not even opportunistic.
            hostname=None if config.security == "none" else config.host,
        )
        if config.security == "tls":
            reactor.connectSSL(config.host, config.port, factory, self._tls, timeout=config.timeout)
        else:
            reactor.connectTCP(config.host, config.port, factory, timeout=config.timeout)
        # Done once the connection is closed too, so that nothing of the
        # session outlives the task.
        return result.addBoth(lambda outcome: factory.closed.addCallback(lambda _: outcome))

    def _sent(self, taskId: Any, attempts: int, recipients: list[str], addresses: Any) -> dict[str, Any]:
        refused = [
            {"address": _text(address), "code": code, "reply": _text(reply)[:300]}
            for address, code, reply in addresses
            if not 200 <= code < 300
        ]
        if refused:
            self.log.warn("task {task_id}: the SMTP server refused {refused}", task_id=taskId, refused=refused)
        self.log.info(
            "task {task_id}: mail sent to {recipients} via {server} (attempt {attempts})",
            task_id=taskId, recipients=recipients, server=self.describe(), attempts=attempts,
        )
        return {"ok": True, "transport": "smtp", "attempts": attempts, "refused": refused}

    def _failed(self, taskId: Any, attempts: int, error: str, code: int | None, permanent: bool) -> dict[str, Any]:
        why = "permanent failure, not retried" if permanent else f"gave up after {attempts} attempts"
        self.log.error(
            "task {task_id}: mail not sent: {error} ({why})", task_id=taskId, error=error, why=why
        )
        return {
            "ok": False, "transport": "smtp", "attempts": attempts, "error": error,
            "code": code, "permanent": permanent,
        }


_senderFactoryClass: Any = None


def _senderFactory(*args: Any, **kwargs: Any) -> Any:
    """
    An L{ESMTPSenderFactory} whose C{closed} Deferred fires when its
    connection is closed or failed (L{twisted.mail.smtp} is imported here,
    on first use: it imports the global reactor).
    """
    global _senderFactoryClass
    if _senderFactoryClass is None:
        from twisted.mail import smtp

        class SenderFactory(smtp.ESMTPSenderFactory):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                self.closed: defer.Deferred[None] = defer.Deferred()

            def clientConnectionFailed(self, connector: Any, reason: Any) -> None:
                super().clientConnectionFailed(connector, reason)
                self._closed()

            def clientConnectionLost(self, connector: Any, reason: Any) -> None:
                super().clientConnectionLost(connector, reason)
                self._closed()

            def _closed(self) -> None:
                if not self.closed.called:
                    self.closed.callback(None)

        _senderFactoryClass = SenderFactory
    return _senderFactoryClass(*args, **kwargs)


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


# --------------------------------------------------------------- Maildir


class MaildirMailer:
    """
    Deliver into a local Maildir (created on first use).

    @ivar path: the Maildir, as configured (relative paths are relative to
        the working directory at delivery).
    """

    log = Logger()
    _counter = itertools.count(1)

    def __init__(self, path: str) -> None:
        self.path = path

    def describe(self) -> str:
        """
        Where mail goes, for logs.
        """
        return f"the Maildir {os.path.abspath(self.path)}"

    async def send(self, message: EmailMessage, recipients: list[str], reactor: Any, taskId: Any = None) -> dict[str, Any]:
        """
        Write C{message} as one file in C{new/}.

        @return: C{{"ok": True, "transport": "maildir", "path": ...}}, or
            C{{"ok": False, ...}} when the file cannot be written.
        """
        try:
            path = self.deliver(messageBytes(message))
        except OSError as e:
            self.log.error(
                "task {task_id}: cannot write to the Maildir {maildir}: {error}",
                task_id=taskId, maildir=os.path.abspath(self.path), error=e.strerror,
            )
            return {"ok": False, "transport": "maildir", "error": f"Maildir: {e.strerror}", "permanent": True}
        self.log.info("task {task_id}: mail for {recipients} written to {path}",
                      task_id=taskId, recipients=recipients, path=path)
        return {"ok": True, "transport": "maildir", "path": path}

    def deliver(self, payload: bytes, now: float | None = None) -> str:
        """
        Write C{payload} into C{tmp/}, then rename it into C{new/}.

        @return: the message file's absolute path.
        """
        root = os.path.abspath(self.path)
        self.ensure(root)
        name = self.uniqueName(now)
        tmp = os.path.join(root, "tmp", name)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(payload)
                f.flush()
                os.fsync(f.fileno())
            final = os.path.join(root, "new", name)
            os.rename(tmp, final)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return final

    @staticmethod
    def ensure(root: str) -> None:
        """
        Create the Maildir unless it exists (another worker may be creating
        it at the same time).
        """
        if os.path.isdir(os.path.join(root, "new")):
            return
        from twisted.mail.maildir import initializeMaildir

        try:
            initializeMaildir(root)
        except FileExistsError:
            pass
        for sub in ("new", "cur", "tmp"):
            os.makedirs(os.path.join(root, sub), mode=0o700, exist_ok=True)

    @classmethod
    def uniqueName(cls, now: float | None = None) -> str:
        """
        A Maildir file name: time, microseconds, this process, a counter and
        the host name, unique across processes and workers.
        """
        now = time.time() if now is None else now
        host = socket.gethostname().replace("/", "\\057").replace(":", "\\072")
        micro = int((now - int(now)) * 1_000_000)
        return f"{int(now)}.M{micro}P{os.getpid()}Q{next(cls._counter)}.{host}"
