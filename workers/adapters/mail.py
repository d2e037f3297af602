"""Sending one email: a MIME message built with the stdlib, through Amazon SES or SMTP.

Both backends send the same raw message (SES's SendRawEmail), so what a recipient gets does not
depend on the backend. Each raises PermanentError when the mail can never go (SES rejects it,
an SMTP server answers 5xx) and TransientError when it may go later (throttling, 5xx from SES,
an SMTP 4xx, a server that does not answer). Neither reason names an email address: servers
quote the recipient (or the sender) in their refusals, and reasons end up in logs and in the
DLQ's ``workers.error``, which are read widely; the address's domain is kept.
"""

from __future__ import annotations

import re
import smtplib
import ssl
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from functools import wraps
from typing import Any, Callable, Protocol, TypeVar

from workers.adapters import tracing
from workers.adapters.aws import AWS_ERRORS, classify
from workers.core.errors import HandlerError, PermanentError, TransientError
from workers.core.settings import SMTP_TIMEOUT_SECONDS, Settings

# SES's error codes that say this mail can never go: SES refused its content or an address
# (MessageRejected also covers an unverified sender, which needs an operator, then a replay).
SES_PERMANENT_CODES = frozenset({"MessageRejected", "InvalidParameterValue",
                                 "MailFromDomainNotVerified", "ValidationError"})
# An address as servers quote it in a reply: a local part (no space, bracket or quote), an @
# and a dotted domain. Loose on purpose: masking a little too much costs nothing.
_ADDRESS = re.compile(r"[^\s<>()\[\],;:\"'@]+@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)")

F = TypeVar("F", bound=Callable[..., Any])


def redact_addresses(text: str) -> str:
    """``text`` with every email address's local part masked: ``***@example.com``."""
    return _ADDRESS.sub(r"***@\1", text)


def no_addresses(send: F) -> F:
    """The send's permanent and transient errors, their reasons without email addresses."""
    @wraps(send)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return send(*args, **kwargs)
        except HandlerError as exc:
            exc.reason = redact_addresses(exc.reason)
            exc.args = (exc.reason,)
            raise
    return wrapper  # type: ignore[return-value]


class Mailer(Protocol):
    def send(self, message: EmailMessage) -> str:
        """Sends ``message``; returns the backend's id for it."""


def build_message(sender: str, to: str, subject: str, text: str | None,
                  html: str | None) -> EmailMessage:
    """A plain, HTML, or multipart/alternative (text first, as RFC 2046 orders) message."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient(to)
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(domain=parseaddr(sender)[1].rpartition("@")[2] or None)
    if text is not None:
        message.set_content(text)
        if html is not None:
            message.add_alternative(html, subtype="html")
    elif html is not None:
        message.set_content(html, subtype="html")
    return message


def recipient(to: str) -> str:
    """``to`` as one plain address, or PermanentError: never a list, a name or a header."""
    try:
        address = Address(addr_spec=to)
    except (ValueError, IndexError) as exc:
        raise PermanentError(f"invalid recipient address: {redact_addresses(str(exc))}") from None
    if address.addr_spec != to or not address.domain:
        raise PermanentError("invalid recipient address")
    return to


class SESMailer:
    def __init__(self, ses: Any):
        self.ses = ses

    @no_addresses
    def send(self, message: EmailMessage) -> str:
        try:
            response = self.ses.send_raw_email(
                Source=message["From"], Destinations=[message["To"]],
                RawMessage={"Data": message.as_bytes()})
        except AWS_ERRORS as exc:
            raise classify("ses", exc, SES_PERMANENT_CODES) from None
        return response["MessageId"]


class SMTPMailer:
    """One connection per message: simple, and a relay that went away costs one message a retry."""

    def __init__(self, host: str, port: int, user: str | None = None,
                 password: str | None = None, starttls: bool = True,
                 timeout: float = SMTP_TIMEOUT_SECONDS):
        self.host, self.port, self.starttls, self.timeout = host, port, starttls, timeout
        self._user, self._password = user, password

    @classmethod
    def from_settings(cls, settings: Settings) -> "SMTPMailer":
        return cls(settings.smtp_host, settings.smtp_port, settings.smtp_user,
                   settings.smtp_password, settings.smtp_starttls)

    def __repr__(self) -> str:  # the password stays out of every repr and traceback
        return f"SMTPMailer({self.host}:{self.port}, starttls={self.starttls})"

    def send(self, message: EmailMessage) -> str:
        # OpenTelemetry instruments no SMTP client: this span is ours (tracing on).
        with tracing.client_span("smtp send", {"server.address": self.host,
                                               "server.port": self.port}):
            return self._send(message)

    @no_addresses
    def _send(self, message: EmailMessage) -> str:
        try:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        except smtplib.SMTPConnectError as exc:  # a server refusing connections: come back
            raise TransientError(f"smtp connect refused: {exc.smtp_code}") from None
        except (smtplib.SMTPException, OSError) as exc:
            raise TransientError(f"smtp unreachable: {type(exc).__name__}: {exc}") from None
        try:
            self._submit(smtp, message)
        finally:
            quit_quietly(smtp)
        return message["Message-ID"]

    def _submit(self, smtp: smtplib.SMTP, message: EmailMessage) -> None:
        """Up to the server's 250 for DATA: from then on the mail is the server's, sent."""
        try:
            if self.starttls:
                smtp.starttls(context=ssl.create_default_context())
            if self._user:
                smtp.login(self._user, self._password or "")
            smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:  # our one recipient, refused
            code, reply = next(iter(exc.recipients.values()))
            raise smtp_reply_error(code, reply) from None
        except smtplib.SMTPAuthenticationError as exc:  # a 5xx, but the operator's to fix
            raise TransientError(f"smtp login refused ({exc.smtp_code})") from None
        except smtplib.SMTPResponseException as exc:  # sender or data refused, and others
            raise smtp_reply_error(exc.smtp_code, exc.smtp_error) from None
        except (smtplib.SMTPException, OSError) as exc:  # refused, reset, timed out, no TLS
            raise TransientError(f"smtp unreachable: {type(exc).__name__}: {exc}") from None


def quit_quietly(smtp: smtplib.SMTP) -> None:
    """QUIT, whatever the answer: it ends the session, and once DATA was accepted a 421 or a
    dropped connection here must not turn a sent mail into a failed one (and a resend)."""
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        smtp.close()


def smtp_reply_error(code: int, reply: bytes | str) -> PermanentError | TransientError:
    """RFC 5321: a 5xx reply is permanent, a 4xx one transient."""
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    reason = f"smtp {code}: {text}"
    return PermanentError(reason) if 500 <= code < 600 else TransientError(reason)
