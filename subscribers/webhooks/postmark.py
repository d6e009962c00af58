"""Postmark: HTTP basic auth, accepted only over HTTPS (the credentials travel in clear)."""

from __future__ import annotations

import base64
import hmac
from collections.abc import Mapping
from typing import Any

from core.context import Context
from subscribers.webhooks.base import (
    Event,
    Provider,
    WebhookRefused,
    digest,
    dump,
    parse_json,
    secret,
)

HARD = {"HardBounce", "BadEmailAddress", "ManuallyDeactivated", "AddressChange"}
SOFT = {"SoftBounce", "Transient", "DnsError", "MailboxFull", "AutoResponder"}


class Postmark(Provider):
    name = "postmark"
    secrets = ("postmark_webhook_user", "postmark_webhook_password")
    verification = "HTTP basic auth, refused over plain http (`webhooks.require_https`)"

    def verify(self, ctx: Context, headers: Mapping[str, str], body: bytes,
               secure: bool) -> list[Event]:
        user = secret(ctx, "postmark_webhook_user")
        password = secret(ctx, "postmark_webhook_password")
        if ctx.config.webhooks.require_https and not secure:
            raise WebhookRefused(403, "basic auth is only accepted over HTTPS")
        auth = headers.get("Authorization", "")
        expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        if not auth or not hmac.compare_digest(auth.encode(), expected.encode()):
            raise WebhookRefused(401, "wrong or missing credentials")
        data = parse_json(body)
        return [_event(e) for e in (data if isinstance(data, list) else [data])]


def _event(e: dict[str, Any]) -> Event:
    record = e.get("RecordType", "")
    raw = dump(e)
    if record == "Bounce":
        btype = e.get("Type", "")
        kind = "hard_bounce" if btype in HARD else "soft_bounce" if btype in SOFT \
            else "complaint" if btype == "SpamComplaint" else "other"
        return Event(f"bounce:{e.get('ID')}", kind, e.get("Email"), raw)
    if record == "SpamComplaint":
        return Event(f"complaint:{e.get('ID')}", "complaint", e.get("Email"), raw)
    if record == "SubscriptionChange":
        reason = e.get("SuppressionReason")
        kind = "other" if not e.get("SuppressSending") else {
            "HardBounce": "hard_bounce", "SpamComplaint": "complaint"}.get(reason, "unsubscribe")
        key = digest(e.get("MessageID"), e.get("Recipient"), e.get("ChangedAt"))
        return Event(f"change:{key}", kind, e.get("Recipient"), raw)
    if record == "Delivery":
        to = e.get("Recipient")
        return Event(f"delivery:{e.get('MessageID')}:{to}", "delivered", to, raw)
    return Event(f"{record or 'other'}:{digest(raw)}", "other",
                 e.get("Recipient") or e.get("Email"), raw)


PROVIDER = Postmark()
