"""Resend: a Svix signature, HMAC-SHA256 over `id.timestamp.body` with the whsec_ secret."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

from core.context import Context
from subscribers.webhooks import shape
from subscribers.webhooks.base import (
    Event,
    Provider,
    WebhookRefused,
    dump,
    fresh,
    once,
    parse_json,
    same,
    secret,
)


class Resend(Provider):
    name = "resend"
    secrets = ("resend_webhook_secret",)
    secret_note = " (`whsec_...`)"
    verification = ("Svix: HMAC-SHA256 over `id.timestamp.body` (`svix-*` headers), "
                    "verified before the body is parsed")
    replay = ("timestamp within `webhooks.max_age_seconds`; the same signed request "
              "is accepted once (403 after; Svix signs each retry anew); events "
              "stored once by `svix-id`")

    def verify(self, ctx: Context, headers: Mapping[str, str], body: bytes,
               secure: bool) -> list[Event]:
        value = secret(ctx, "resend_webhook_secret")
        msg_id, ts, sigs = (headers.get(h, "") for h in ("svix-id", "svix-timestamp",
                                                          "svix-signature"))
        if not (msg_id and ts and sigs):
            raise WebhookRefused(401, "missing svix headers")
        try:
            key = base64.b64decode(value.removeprefix("whsec_"), validate=True)
        except binascii.Error as exc:
            raise WebhookRefused(
                403, "KPDIGEST_RESEND_WEBHOOK_SECRET is not a whsec_ secret") from exc
        signed = f"{msg_id}.{ts}.".encode("utf-8", "replace") + body
        expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        given = [s.partition(",")[2] for s in sigs.split() if s.startswith("v1,")]
        if not any(same(expected, g) for g in given):  # the raw body, before parsing
            raise WebhookRefused(403, "bad signature")
        fresh(ctx, ts)
        event = _event(msg_id, shape.obj(parse_json(body), "body"))
        once(ctx, f"resend:{msg_id}.{ts}", "request")
        return [event]


def _event(msg_id: str, e: dict[str, Any]) -> Event:
    data = shape.opt_obj(e, "data", "body")
    name = shape.text(e, "type", "body") or ""
    kind = {"email.complained": "complaint", "email.delivered": "delivered"}.get(name, "other")
    if name == "email.bounced":
        btype = shape.text(shape.opt_obj(data, "bounce", "data"), "type", "data.bounce") or ""
        kind = "hard_bounce" if btype.lower() == "permanent" else "soft_bounce"
    if name == "contact.updated" and shape.flag(data, "unsubscribed", "data"):
        kind = "unsubscribe"
    to = shape.texts(data, "to", "data")
    email = to[0] if to else shape.text(data, "email", "data")
    return Event(msg_id[:200], kind, email, dump(e))


PROVIDER = Resend()
