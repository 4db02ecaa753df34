# -*- test-case-name: tests.test_mail_config -*-
"""
Where the mail server sends mail: an SMTP server, or a local Maildir.

    smtp://user@smtp.example.com:587            STARTTLS (required), AUTH
    smtp://relay.internal:25?starttls=0         plain SMTP, no AUTH
    smtps://user@smtp.example.com:465           implicit TLS, AUTH

Query parameters: C{starttls=0|1} (C{smtp://} only; default 1),
C{cafile=PATH} (PEM certificates to trust instead of the system's),
C{timeout=SECONDS} (connecting and each server reply; default 30).

The password never comes from the URL (which is on the command line, hence
in C{ps} and shell history): it is read from the file named by
C{--smtp-password-file}, else from C{$SWOOLETW_SMTP_PASSWORD}.  A password
is never sent without TLS, and no error message or log line shows it.

Without an SMTP server, mail goes to the Maildir C{outbox} relative to the
working directory, where any mail reader (C{mutt -f outbox}) opens it.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from typing import Any, Mapping
from urllib.parse import parse_qsl, unquote, urlsplit

from twisted.logger import Logger

from swooletw.mail.message import DEFAULT_FROM, InvalidPacket, parseAddress

__all__ = [
    "ConfigError",
    "SMTPConfig",
    "MailConfig",
    "DEFAULT_MAILDIR",
    "PASSWORD_ENV",
    "MAIL_OPTIONS",
    "parseSMTPURL",
    "readPassword",
    "configFromOptions",
    "givenMailOptions",
]

DEFAULT_MAILDIR = "outbox"
PASSWORD_ENV = "SWOOLETW_SMTP_PASSWORD"

_log = Logger(namespace="swooletw.mail.config")

#: the C{twistd swoole-tcp} options of the mail app (C{usage.Options}
#: optParameters); their defaults are L{MailConfig}'s
MAIL_OPTIONS: list[list[Any]] = [
    ["smtp", None, None,
     "Send mail through this SMTP server: smtp://user@host:587 (STARTTLS, "
     "required) or smtps://user@host:465 (implicit TLS); query: starttls=0, "
     "cafile=PATH, timeout=SECONDS. The password is read from "
     f"${PASSWORD_ENV} or --smtp-password-file, never from the URL. "
     "Without --smtp, mail goes to the Maildir (--maildir)."],
    ["smtp-password-file", None, None,
     f"File holding the SMTP password (instead of ${PASSWORD_ENV})."],
    ["mail-from", None, None,
     f"From address (default: the SMTP user if it is an address, else {DEFAULT_FROM})."],
    ["maildir", None, None,
     f"Maildir outbox used without --smtp, relative to the working directory "
     f"(default: ./{DEFAULT_MAILDIR}); each message is a file in its new/."],
    ["smtp-retries", None, None,
     "Retries after a temporary SMTP failure (4xx, connection error); default 5.", int],
    ["smtp-retry-delay", None, None,
     "Seconds before the first retry, doubling each time; default 5.", float],
]

_OPTION_NAMES = [option[0] for option in MAIL_OPTIONS]


class ConfigError(ValueError):
    """
    A bad mail setting; the message never holds the password.
    """


@dataclass(frozen=True)
class SMTPConfig:
    """
    One SMTP server.

    @ivar security: C{"starttls"} (required), C{"tls"} (implicit) or
        C{"none"}.
    @ivar password: bytes, or L{None} without a username; not in C{repr}.
    @ivar cafile: PEM certificates to trust, or L{None} for the system's.
    """

    host: str
    port: int
    security: str = "starttls"
    username: str | None = None
    password: bytes | None = field(default=None, repr=False)
    cafile: str | None = None
    timeout: float = 30.0

    def describe(self) -> str:
        """
        The server, for logs: never the password.
        """
        scheme = "smtps" if self.security == "tls" else "smtp"
        user = f"{self.username}@" if self.username else ""
        mode = {"tls": "TLS", "starttls": "STARTTLS", "none": "no TLS"}[self.security]
        return f"{scheme}://{user}{self.host}:{self.port} ({mode})"


@dataclass(frozen=True)
class MailConfig:
    """
    The mail app's settings.

    @ivar smtp: the SMTP server, or L{None} to write to L{maildir}.
    @ivar maildir: the Maildir outbox, relative to the working directory.
    @ivar mailFrom: the From address and envelope sender.
    @ivar retries: retries after a temporary SMTP failure.
    @ivar retryDelay: seconds before the first retry (doubling, up to
        L{maxRetryDelay}).
    """

    smtp: SMTPConfig | None = None
    maildir: str = DEFAULT_MAILDIR
    mailFrom: str = DEFAULT_FROM
    retries: int = 5
    retryDelay: float = 5.0
    maxRetryDelay: float = 600.0

    def describe(self) -> str:
        """
        Where mail goes, for logs.
        """
        if self.smtp is None:
            return f"the Maildir {os.path.abspath(self.maildir)} (no --smtp)"
        return f"SMTP {self.smtp.describe()}"


# ---------------------------------------------------------------- parsing

_SCHEMES = {"smtp": 587, "smtps": 465}
_QUERY = ("starttls", "cafile", "timeout")
_HOST = re.compile(r"^[A-Za-z0-9.:\[\]-]+$")


def parseSMTPURL(url: str, password: bytes | None = None) -> SMTPConfig:
    """
    Parse C{smtp://[user@]host[:port][?query]} or C{smtps://...}.

    @param password: the password, for a URL with a user.
    @raise ConfigError: naming what is wrong (never echoing a password).
    """
    parts = urlsplit(url)
    if parts.scheme not in _SCHEMES:
        raise ConfigError(f"--smtp: the URL must start with smtp:// or smtps://, not {parts.scheme + '://'!r}")
    if parts.password is not None:
        raise ConfigError(
            f"--smtp: no password in the URL; use ${PASSWORD_ENV} or --smtp-password-file"
        )
    host = parts.hostname
    if not host or not _HOST.match(host):
        raise ConfigError("--smtp: the URL names no valid host")
    try:
        port = parts.port or _SCHEMES[parts.scheme]
    except ValueError as e:
        raise ConfigError(f"--smtp: bad port: {e}") from e
    query = _parseQuery(parts.query)
    security = _security(parts.scheme, query)
    username = unquote(parts.username) if parts.username else None
    return _checked(SMTPConfig(
        host=host, port=port, security=security, username=username,
        password=password if username else None,
        cafile=query.get("cafile"), timeout=_timeout(query),
    ))


def _parseQuery(query: str) -> dict[str, str]:
    values = dict(parse_qsl(query, keep_blank_values=True))
    for name in values:
        if name not in _QUERY:
            raise ConfigError(f"--smtp: unknown parameter {name!r} (known: {', '.join(_QUERY)})")
    return values


def _security(scheme: str, query: Mapping[str, str]) -> str:
    if scheme == "smtps":
        if "starttls" in query:
            raise ConfigError("--smtp: starttls applies to smtp://; smtps:// is TLS from the start")
        return "tls"
    flag = query.get("starttls", "1")
    if flag not in ("0", "1"):
        raise ConfigError(f"--smtp: starttls must be 0 or 1, not {flag!r}")
    return "starttls" if flag == "1" else "none"


def _timeout(query: Mapping[str, str]) -> float:
    raw = query.get("timeout", "30")
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise ConfigError(f"--smtp: timeout must be a positive number of seconds, not {raw!r}")
    return value


def _checked(config: SMTPConfig) -> SMTPConfig:
    if config.username and config.password is None:
        raise ConfigError(
            f"--smtp names user {config.username!r} but there is no password: "
            f"set ${PASSWORD_ENV} or --smtp-password-file"
        )
    if config.username and config.security == "none":
        raise ConfigError("--smtp: a password is never sent without TLS; drop starttls=0 or use smtps://")
    if config.cafile is not None and not os.path.isfile(config.cafile):
        raise ConfigError(f"--smtp: cafile {config.cafile!r} is not a file")
    return config


def readPassword(passwordFile: str | None, environ: Mapping[str, str]) -> bytes | None:
    """
    The SMTP password: the file's content (without its final newline), else
    C{$SWOOLETW_SMTP_PASSWORD}, else L{None}.

    @raise ConfigError: when the file cannot be read.
    """
    if passwordFile is not None:
        try:
            with open(passwordFile, "rb") as f:
                secret = f.read()
            mode = os.stat(passwordFile).st_mode
        except OSError as e:
            raise ConfigError(f"--smtp-password-file {passwordFile!r}: {e.strerror}") from e
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            _log.warn("{path} is readable by other users: chmod 600 it", path=passwordFile)
        return secret.rstrip(b"\r\n")
    value = environ.get(PASSWORD_ENV)
    return value.encode("utf-8") if value else None


def givenMailOptions(options: Mapping[str, Any]) -> list[str]:
    """
    The names of the mail options given on the command line.
    """
    return [name for name in _OPTION_NAMES if options.get(name) is not None]


def configFromOptions(
    options: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> MailConfig:
    """
    A L{MailConfig} from parsed L{MAIL_OPTIONS} (missing ones take the
    defaults).

    @param environ: where C{$SWOOLETW_SMTP_PASSWORD} is looked up (default:
        C{os.environ}).
    @raise ConfigError: for any bad value.
    """
    environ = os.environ if environ is None else environ
    smtp = None
    if options.get("smtp") is not None:
        password = readPassword(options.get("smtp-password-file"), environ)
        smtp = parseSMTPURL(options["smtp"], password)
    elif options.get("smtp-password-file") is not None:
        raise ConfigError("--smtp-password-file needs --smtp")
    mailFrom = options.get("mail-from") or _defaultFrom(smtp)
    try:
        parseAddress(mailFrom, "--mail-from")
    except InvalidPacket as e:
        raise ConfigError(str(e)) from e
    return MailConfig(
        smtp=smtp,
        maildir=options.get("maildir") or DEFAULT_MAILDIR,
        mailFrom=mailFrom,
        retries=_nonNegative(options.get("smtp-retries"), "--smtp-retries", 5),
        retryDelay=_nonNegative(options.get("smtp-retry-delay"), "--smtp-retry-delay", 5.0),
    )


def _defaultFrom(smtp: SMTPConfig | None) -> str:
    if smtp is not None and smtp.username and "@" in smtp.username:
        return smtp.username
    return DEFAULT_FROM


def _nonNegative(value: Any, name: str, default: Any) -> Any:
    if value is None:
        return default
    if value < 0:
        raise ConfigError(f"{name} must not be negative, got {value!r}")
    return value
