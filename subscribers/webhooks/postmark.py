"""Postmark: HTTP basic auth, accepted only over HTTPS (the credentials travel in clear)."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

from core.context import Context
from subscribers.webhooks import shape
from subscribers.webhooks.base import (
    Event,
    Malformed,
    Provider,
    WebhookRefused,
    digest,
    dump,
    parse_json,
    same,
    secret,
)

HARD = {"HardBounce", "BadEmailAddress", "ManuallyDeactivated", "AddressChange"}
SOFT = {"SoftBounce", "Transient", "DnsError", "MailboxFull", "AutoResponder"}


class Postmark(Provider):
    name = "postmark"
    secrets = ("postmark_webhook_user", "postmark_webhook_password")
    verification = ("HTTP basic auth, refused over plain http (`webhooks.require_https`)")
    replay = ("none in the request (basic auth); each event is stored once by its ID, "
              "so a replay is answered 200 as a duplicate and changes nothing")

    def verify(self, ctx: Context, headers: Mapping[str, str], body: bytes,
               secure: bool) -> list[Event]:
        user = secret(ctx, "postmark_webhook_user")
        password = secret(ctx, "postmark_webhook_password")
        if ctx.config.webhooks.require_https and not secure:
            raise WebhookRefused(403, "basic auth is only accepted over HTTPS")
        auth = headers.get("Authorization", "")
        expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        if not auth or not same(expected, auth):
            raise WebhookRefused(401, "wrong or missing credentials")
        return [_event(e, f"body[{i}]")
                for i, e in enumerate(shape.objects(parse_json(body), "body"))]


def _event(e: dict[str, Any], where: str) -> Event:
    record = shape.text(e, "RecordType", where) or ""
    raw = dump(e)
    if record in ("Bounce", "SpamComplaint"):
        event_id, email = shape.ident(e, "ID", where), shape.need(e, "Email", where)
        if event_id is None:
            raise Malformed(f"{where}.ID: missing")
        btype = shape.text(e, "Type", where) or ""
        kind = "complaint" if record == "SpamComplaint" or btype == "SpamComplaint" \
            else "hard_bounce" if btype in HARD else "soft_bounce" if btype in SOFT else "other"
        prefix = "bounce" if record == "Bounce" else "complaint"
        return Event(f"{prefix}:{event_id}", kind, email, raw)
    if record == "SubscriptionChange":
        to = shape.need(e, "Recipient", where)
        reason = shape.text(e, "SuppressionReason", where)
        kind = "other" if not shape.flag(e, "SuppressSending", where) else {
            "HardBounce": "hard_bounce", "SpamComplaint": "complaint"}.get(reason or "",
                                                                           "unsubscribe")
        key = digest(shape.text(e, "MessageID", where), to, shape.text(e, "ChangedAt", where))
        return Event(f"change:{key}", kind, to, raw)
    if record == "Delivery":
        to = shape.need(e, "Recipient", where)
        return Event(f"delivery:{shape.need(e, 'MessageID', where)}:{to}", "delivered", to, raw)
    return Event(f"{record or 'other'}:{digest(raw)}", "other", None, raw)


PROVIDER = Postmark()
