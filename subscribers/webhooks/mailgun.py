"""Mailgun: HMAC-SHA256 of timestamp + token inside the body; each token is accepted once."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from core.context import Context
from subscribers.ratelimit import hit
from subscribers.webhooks import shape
from subscribers.webhooks.base import (
    Event,
    Malformed,
    Provider,
    WebhookRefused,
    digest,
    dump,
    fresh,
    parse_json,
    same,
    secret,
)

MAX_TOKEN = 128  # Mailgun's tokens are 50 characters
FIELDS = ("timestamp", "token", "signature")


class Mailgun(Provider):
    name = "mailgun"
    secrets = ("mailgun_webhook_signing_key",)
    verification = ("HMAC-SHA256 of timestamp + token (inside the JSON, so the body is "
                    "parsed first, within bounds)")
    replay = ("timestamp within `webhooks.max_age_seconds`; each token accepted once "
              "(403 after: Mailgun signs the token, not the body); events stored once "
              "by `event-data.id`")

    def verify(self, ctx: Context, headers: Mapping[str, str], body: bytes,
               secure: bool) -> list[Event]:
        key = secret(ctx, "mailgun_webhook_signing_key")
        data = parse_json(body)  # the signature is inside the body: bounded parse first
        sig = data.get("signature") if isinstance(data, dict) else None
        if not isinstance(sig, dict) or not all(sig.get(k) for k in FIELDS):
            raise WebhookRefused(401, "missing signature")
        stamp = shape.ident(sig, "timestamp", "signature")
        token = shape.need(sig, "token", "signature")
        given = shape.need(sig, "signature", "signature")
        if len(token) > MAX_TOKEN:
            raise Malformed("signature.token: too long")
        signed = f"{stamp}{token}".encode()
        expected = hmac.new(key.encode(), signed, hashlib.sha256).hexdigest()
        if not same(expected, given):
            raise WebhookRefused(403, "bad signature")
        fresh(ctx, stamp or "")
        e = shape.opt_obj(data, "event-data", "body")
        name = shape.text(e, "event", "event-data") or ""
        severity = shape.text(e, "severity", "event-data") or ""
        email = shape.text(e, "recipient", "event-data")
        event_id = shape.ident(e, "id", "event-data") or digest(token)
        # Mailgun signs the token, not the body: a token seen before is a replay.
        window = 2 * ctx.config.webhooks.max_age_seconds
        if not hit(ctx, f"mailgun-token:{token}", 1, window):
            raise WebhookRefused(403, "replayed token")
        kind = {"complained": "complaint", "unsubscribed": "unsubscribe",
                "delivered": "delivered"}.get(name, "other")
        if name == "failed":
            kind = "hard_bounce" if severity == "permanent" else "soft_bounce"
        return [Event(event_id, kind, email, dump(e))]


PROVIDER = Mailgun()
