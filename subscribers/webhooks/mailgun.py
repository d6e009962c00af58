"""Mailgun: HMAC-SHA256 of timestamp + token inside the body; each token is accepted once."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from core.context import Context
from subscribers.ratelimit import hit
from subscribers.webhooks.base import (
    Event,
    Provider,
    WebhookRefused,
    digest,
    dump,
    fresh,
    parse_json,
    secret,
)


class Mailgun(Provider):
    name = "mailgun"
    secrets = ("mailgun_webhook_signing_key",)
    verification = "HMAC-SHA256 of timestamp + token; each token accepted once"

    def verify(self, ctx: Context, headers: Mapping[str, str], body: bytes,
               secure: bool) -> list[Event]:
        key = secret(ctx, "mailgun_webhook_signing_key")
        data = parse_json(body)
        sig = data.get("signature") if isinstance(data, dict) else None
        if not isinstance(sig, dict) or not all(sig.get(k) for k in ("timestamp", "token",
                                                                      "signature")):
            raise WebhookRefused(401, "missing signature")
        signed = f"{sig['timestamp']}{sig['token']}".encode()
        expected = hmac.new(key.encode(), signed, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, str(sig["signature"])):
            raise WebhookRefused(403, "bad signature")
        fresh(ctx, sig["timestamp"])
        # Mailgun signs the token, not the body: a token seen before is a replay.
        window = 2 * ctx.config.webhooks.max_age_seconds
        if not hit(ctx, f"mailgun-token:{sig['token']}", 1, window):
            raise WebhookRefused(403, "replayed token")
        e = data.get("event-data") or {}
        name, severity = e.get("event", ""), e.get("severity", "")
        kind = {"complained": "complaint", "unsubscribed": "unsubscribe",
                "delivered": "delivered"}.get(name, "other")
        if name == "failed":
            kind = "hard_bounce" if severity == "permanent" else "soft_bounce"
        event_id = e.get("id") or digest(sig["token"])
        return [Event(str(event_id), kind, e.get("recipient"), dump(e))]


PROVIDER = Mailgun()
