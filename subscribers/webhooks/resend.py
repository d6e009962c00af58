"""Resend: a Svix signature, HMAC-SHA256 over `id.timestamp.body` with the whsec_ secret."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping

from core.context import Context
from subscribers.webhooks.base import (
    Event,
    Provider,
    WebhookRefused,
    dump,
    fresh,
    parse_json,
    secret,
)


class Resend(Provider):
    name = "resend"
    secrets = ("resend_webhook_secret",)
    verification = "Svix: HMAC-SHA256 over `id.timestamp.body` (`svix-*` headers)"

    def verify(self, ctx: Context, headers: Mapping[str, str], body: bytes,
               secure: bool) -> list[Event]:
        value = secret(ctx, "resend_webhook_secret")
        msg_id, ts, sigs = (headers.get(h, "") for h in ("svix-id", "svix-timestamp",
                                                          "svix-signature"))
        if not (msg_id and ts and sigs):
            raise WebhookRefused(401, "missing svix headers")
        try:
            key = base64.b64decode(value.removeprefix("whsec_"))
        except binascii.Error as exc:
            raise WebhookRefused(
                403, "KPDIGEST_RESEND_WEBHOOK_SECRET is not a whsec_ secret") from exc
        signed = f"{msg_id}.{ts}.".encode() + body
        expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        given = [s.partition(",")[2] for s in sigs.split() if s.startswith("v1,")]
        if not any(hmac.compare_digest(expected, g) for g in given):
            raise WebhookRefused(403, "bad signature")
        fresh(ctx, ts)
        e = parse_json(body)
        data = e.get("data") or {}
        name = e.get("type", "")
        kind = {"email.complained": "complaint", "email.delivered": "delivered"}.get(name, "other")
        if name == "email.bounced":
            btype = (data.get("bounce") or {}).get("type", "")
            kind = "hard_bounce" if btype.lower() == "permanent" else "soft_bounce"
        if name == "contact.updated" and data.get("unsubscribed"):
            kind = "unsubscribe"
        to = data.get("to")
        email = (to[0] if isinstance(to, list) and to else to) or data.get("email")
        return [Event(msg_id, kind, email, dump(e))]


PROVIDER = Resend()
