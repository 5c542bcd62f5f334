"""Handing a message to the SMTP server of KASSA_SMTP_URL, with the standard library.

Each message goes over a connection of its own, in two steps the caller separates:
`open` connects (TLS from the start for `smtps://`, STARTTLS for `smtp+starttls://`),
logs in if the URL names a user, and gives the envelope (MAIL FROM, RCPT TO);
`Connection.hand_over` then sends DATA. Between the two the caller records that the
message is being handed over: until DATA the server has nothing it could deliver, so a
failure or a crash before it can safely be retried, and from DATA on it may have.

Failures are told apart by what they mean for a retry:
- `TemporaryFailure`: nothing was delivered and a later try may work: a 4xx reply, a
  refused or timed-out connection, a dropped connection before DATA, a TLS or login
  failure (a configuration the operator fixes; the messages wait for it).
- `PermanentFailure`: the server refused this message for good (a 5xx reply to the
  sender, the recipient or the data): retrying would only be refused again.
- `UnknownOutcome`: the connection broke or timed out during DATA, without a reply: the
  server may have accepted the message (RFC 5321 §4.1.1.4 and RFC 1047, the duplicate
  message problem). The caller does not send it again (`services/emails.py`).
"""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.utils import parseaddr
from typing import Protocol

from kassa.config import SmtpServer


class MailFailure(Exception):
    """Why a message did not go (one line, without the password)."""


class TemporaryFailure(MailFailure):
    pass


class PermanentFailure(MailFailure):
    pass


class UnknownOutcome(MailFailure):
    pass


def _reply(code: int, text: bytes | str) -> str:
    body = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    return f"{code} {' '.join(body.split())}"


def classify(exc: Exception) -> MailFailure:
    """A failure before DATA (connecting, TLS, login, MAIL FROM, RCPT TO): permanent for a
    5xx refusal of the sender or recipient, temporary for everything else."""
    if isinstance(exc, MailFailure):
        return exc
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        replies = list(exc.recipients.values())
        text = "; ".join(_reply(code, reply) for code, reply in replies)
        permanent = bool(replies) and all(code >= 500 for code, _ in replies)
        return (PermanentFailure if permanent else TemporaryFailure)(f"recipient refused: {text}")
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return TemporaryFailure(f"login refused: {_reply(exc.smtp_code, exc.smtp_error)}")
    if isinstance(exc, smtplib.SMTPSenderRefused):
        text = _reply(exc.smtp_code, exc.smtp_error)
        kind = PermanentFailure if exc.smtp_code >= 500 else TemporaryFailure
        return kind(f"sender refused: {text}")
    if isinstance(exc, smtplib.SMTPResponseException):
        # a 5xx to EHLO or STARTTLS is the server's setup, not this message: try later
        return TemporaryFailure(f"server replied {_reply(exc.smtp_code, exc.smtp_error)}")
    if isinstance(exc, TimeoutError):
        return TemporaryFailure("timed out")
    return TemporaryFailure(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)


class Connection(Protocol):
    def hand_over(self, message: EmailMessage) -> str:
        """Send the message (DATA); the server's reply. `UnknownOutcome` if none came."""
        ...

    def close(self) -> None: ...


class Transport(Protocol):
    def open(self, sender: str, recipient: str) -> Connection:
        """Connect and give the envelope; a `MailFailure` if the server will not take it."""
        ...


@dataclass
class SmtpConnection:
    smtp: smtplib.SMTP
    international: bool = False

    def hand_over(self, message: EmailMessage) -> str:
        flat = message.as_bytes(policy=policy.SMTPUTF8 if self.international else policy.SMTP)
        try:
            code, reply = self.smtp.data(flat)  # raises for a refused DATA, not for its end
            if code != 250:
                raise smtplib.SMTPDataError(code, reply)
        except smtplib.SMTPDataError as exc:  # a reply: the server did not take it
            text = _reply(exc.smtp_code, exc.smtp_error)
            if exc.smtp_code >= 500:
                raise PermanentFailure(f"message refused: {text}") from None
            raise TemporaryFailure(f"message deferred: {text}") from None
        except (OSError, smtplib.SMTPException) as exc:
            raise UnknownOutcome(
                f"no reply to the message ({type(exc).__name__}: {exc}); the server may have it"
            ) from None
        return _reply(code, reply)

    def close(self) -> None:
        try:
            self.smtp.quit()
        except (OSError, smtplib.SMTPException):
            self.smtp.close()


@dataclass
class SmtpTransport:
    """The server of KASSA_SMTP_URL; `timeout_s` bounds the connection and every reply."""

    server: SmtpServer
    timeout_s: float = 30.0
    context: ssl.SSLContext = field(default_factory=ssl.create_default_context)

    def _connect(self) -> smtplib.SMTP:
        server = self.server
        if server.security == "tls":
            return smtplib.SMTP_SSL(
                server.host, server.port, timeout=self.timeout_s, context=self.context
            )
        smtp = smtplib.SMTP(server.host, server.port, timeout=self.timeout_s)
        if server.security == "starttls":
            smtp.starttls(context=self.context)
        return smtp

    def open(self, sender: str, recipient: str) -> SmtpConnection:
        from_address = parseaddr(sender)[1] or sender
        international = not (from_address.isascii() and recipient.isascii())
        smtp: smtplib.SMTP | None = None
        try:
            smtp = self._connect()
            smtp.ehlo_or_helo_if_needed()
            if self.server.username is not None:
                smtp.login(self.server.username, self.server.password or "")
            options = ["SMTPUTF8", "BODY=8BITMIME"] if international else []
            code, reply = smtp.mail(from_address, options)
            if code != 250:
                raise smtplib.SMTPSenderRefused(code, reply, from_address)
            code, reply = smtp.rcpt(recipient)
            if code not in (250, 251):
                raise smtplib.SMTPRecipientsRefused({recipient: (code, reply)})
        except Exception as exc:
            if smtp is not None:
                SmtpConnection(smtp).close()
            raise classify(exc) from None
        return SmtpConnection(smtp, international)
