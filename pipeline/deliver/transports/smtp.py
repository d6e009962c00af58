"""SMTP: smtplib with STARTTLS or TLS and login, connections kept open and reused, up to
`connections` of them in parallel (one per batch in flight).

Each recipient gets their own message (built from the variant's MIME template) in its
own SMTP transaction, so the server's reply is that recipient's outcome: 2xx sent, 5xx
failed, 4xx retried later. If the connection drops during a message, that message is
`unknown` (the server may have queued it) and the rest of the batch was never handed
over, so it goes back to the queue.
"""

from __future__ import annotations

import queue
import re
import smtplib
import socket
import ssl
import threading
from email.message import EmailMessage
from email.utils import getaddresses, parseaddr
from typing import Any, ClassVar

from core.config import Config
from core.errors import AccountError, ConfigError, TransportError
from pipeline.compose.message import Recipient
from pipeline.compose.prepare import PreparedVariant
from pipeline.deliver.transports.base import Outcome, RetryBatch, Transport

SECURITY = ("none", "starttls", "tls")


class SmtpTransport(Transport):
    name: ClassVar[str] = "smtp"
    max_batch: ClassVar[int] = 50
    recipient_variables: ClassVar[bool] = False
    idempotent: ClassVar[bool] = False
    rate_limit_signal: ClassVar[str] = "4xx replies (421/450/451/452) per message or connection"

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        o = self.options
        self.host = str(o.get("host", "127.0.0.1"))
        self.port = int(o.get("port", 587))
        self.security = str(o.get("security", "starttls"))
        if self.security not in SECURITY:
            raise ConfigError(f"transport.smtp.security: {self.security!r} is not one of "
                              f"{', '.join(SECURITY)}")
        self.username = str(o.get("username", ""))
        self.timeout = float(o.get("timeout", 60.0))
        self.size = max(1, int(o.get("connections", 4)))
        self.verify = bool(o.get("verify_tls", True))
        self._idle: queue.LifoQueue[smtplib.SMTP] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(self.size)
        self.envelope_from = cfg.sender.from_email

    def _tls(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        if not self.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def connect(self) -> smtplib.SMTP:
        """A new, logged-in connection; RetryBatch if the server cannot be reached."""
        try:
            if self.security == "tls":
                conn: smtplib.SMTP = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout,
                                                      context=self._tls())
            else:
                conn = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
                if self.security == "starttls":
                    conn.starttls(context=self._tls())
            if self.username:
                conn.login(self.username, self.cfg.secret("smtp_password") or "")
        except smtplib.SMTPAuthenticationError as exc:
            raise AccountError(f"transport.smtp: login refused for {self.username!r}: {exc}") from exc
        except (socket.gaierror, ConnectionRefusedError, ssl.SSLError) as exc:
            raise AccountError(f"smtp: cannot reach {self.host}:{self.port} "
                               f"({type(exc).__name__}: {exc}): check transport.smtp") from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise RetryBatch(f"smtp: cannot connect to {self.host}:{self.port}: {exc}") from exc
        return conn

    def _take(self) -> smtplib.SMTP:
        try:
            conn = self._idle.get_nowait()
        except queue.Empty:
            return self.connect()
        try:
            if conn.noop()[0] == 250:
                return conn
        except (OSError, smtplib.SMTPException):
            pass
        _quit(conn)
        return self.connect()

    def send_batch(self, variant: PreparedVariant, recipients: list[Recipient],
                   batch_key: str) -> list[Outcome]:
        with self._slots:
            conn = self._take()
            out: list[Outcome] = []
            for i, r in enumerate(recipients):
                outcome, alive = self._one(conn, variant, r)
                if outcome.error and ACCOUNT_REFUSAL.search(outcome.error):
                    self._idle.put(conn)
                    raise _account_error(outcome.error, out)
                out.append(outcome)
                if not alive:
                    _quit(conn)
                    out += [Outcome(x.delivery_id, "retry", error="smtp: connection lost before this message")
                            for x in recipients[i + 1:]]
                    return out
            self._idle.put(conn)
            return out

    def _one(self, conn: smtplib.SMTP, variant: PreparedVariant, r: Recipient) -> tuple[Outcome, bool]:
        data = self.raw_message(variant, r)
        mid = variant.mime.header_values(r)["message_id"]
        try:
            conn.sendmail(self.envelope_from, [r.email], data)
        except smtplib.SMTPRecipientsRefused as exc:
            code, msg = next(iter(exc.recipients.values()))
            return _reply(r, code, msg), True
        except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
            return _reply(r, exc.smtp_code, exc.smtp_error), True
        except (OSError, smtplib.SMTPException) as exc:
            why = f"smtp: connection lost during the message: {exc}"
            return Outcome(r.delivery_id, "unknown", error=why), False
        return Outcome(r.delivery_id, "sent", provider_message_id=mid), True

    def send_single(self, message: EmailMessage) -> str:
        with self._slots:
            conn = self._take()
            try:
                _send_single(conn, message, self.raw_single(message) if self.cfg.dkim.enabled else None)
            except (OSError, smtplib.SMTPException) as exc:
                _quit(conn)
                raise TransportError(f"smtp: {exc}") from exc
            self._idle.put(conn)
        return str(message.get("Message-ID", ""))

    def close(self) -> None:
        while True:
            try:
                _quit(self._idle.get_nowait())
            except queue.Empty:
                return


def _reply(r: Recipient, code: int, msg: Any) -> Outcome:
    text = msg.decode("utf-8", "replace") if isinstance(msg, bytes) else str(msg)
    why = f"smtp {code}: {text}"
    return Outcome(r.delivery_id, "retry" if 400 <= code < 500 else "failed", error=why)


# Refusals about our sending setup, not the recipient: DMARC/SPF/DKIM (5.7.26), Outlook's
# authentication level (5.7.515), a reverse-DNS (PTR) failure (5.7.25), a policy 5.7.1.
ACCOUNT_REFUSAL = re.compile(r"\b5\.7\.(?:26|515|25)\b|\b5\.7\.1\b.*\bpolic", re.I | re.S)


def _account_error(reason: str, done: list[Outcome]) -> AccountError:
    """Stops the issue; the recipients answered before it are recorded, the rest released."""
    exc = AccountError(f"{reason} (the server refuses our sending setup: check SPF, DKIM, "
                       "DMARC and reverse DNS)")
    exc.outcomes = done  # type: ignore[attr-defined]
    return exc
def _send_single(conn: smtplib.SMTP, message: EmailMessage, signed: bytes | None) -> None:
    """smtplib's send_message, or for a DKIM-signed message its bytes to the same envelope."""
    if signed is None:
        conn.send_message(message)
        return
    to = [a for _, a in getaddresses(message.get_all("To", []) + message.get_all("Cc", []))]
    sender = parseaddr(str(message["From"]))[1]
    options = ["SMTPUTF8"] if not all(a.isascii() for a in [sender, *to]) else []
    conn.sendmail(sender, to, signed, mail_options=options)


def _quit(conn: smtplib.SMTP) -> None:
    try:
        conn.quit()
    except (OSError, smtplib.SMTPException):
        conn.close()


TRANSPORT = SmtpTransport
