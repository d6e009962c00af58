"""The one list of transports: what each is called, what it needs, where its code is.

Adding a transport is one module in `pipeline/deliver/transports/` (defining `TRANSPORT`)
plus one line here. The settings' validation, `kpdigest transports`, the `[transport.X]`
tables and the table in docs/sending.md all read this list (a test holds them to it).
Kept in core, as names only, so validating settings never imports a provider's code.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TransportSpec:
    name: str
    summary: str
    secret: str = ""  # the KPDIGEST_* variable holding its credential, if any
    where: str = ""  # its module, when not pipeline/deliver/transports/<name>.py (a plug-in)

    @property
    def module(self) -> str:
        return self.where or f"pipeline.deliver.transports.{self.name}"


TRANSPORTS: dict[str, TransportSpec] = {s.name: s for s in (
    TransportSpec("outbox", "one .eml file per recipient in a folder (the default)"),
    TransportSpec("smtp", "any SMTP server, connections kept open", "KPDIGEST_SMTP_PASSWORD"),
    TransportSpec("postmark", "Postmark's batch API", "KPDIGEST_POSTMARK_TOKEN"),
    TransportSpec("sendgrid", "SendGrid's v3 mail send", "KPDIGEST_SENDGRID_API_KEY"),
    TransportSpec("mailgun", "Mailgun's messages API", "KPDIGEST_MAILGUN_API_KEY"),
    TransportSpec("resend", "Resend's batch API with idempotency keys", "KPDIGEST_RESEND_API_KEY"),
    TransportSpec("ses", "Amazon SES v2 raw MIME (pip install kpdigest[ses])"),
)}
