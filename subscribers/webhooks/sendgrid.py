"""SendGrid: ECDSA (P-256, SHA-256) over the timestamp header + the raw body."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_public_key

from core.context import Context
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

SIG = "X-Twilio-Email-Event-Webhook-Signature"
TS = "X-Twilio-Email-Event-Webhook-Timestamp"


def _key(value: str) -> Any:
    if "BEGIN PUBLIC KEY" in value:
        return load_pem_public_key(value.encode())
    return load_der_public_key(base64.b64decode(value))


class SendGrid(Provider):
    name = "sendgrid"
    secrets = ("sendgrid_webhook_public_key",)
    verification = "ECDSA P-256/SHA-256 over timestamp + body (`X-Twilio-Email-Event-Webhook-*`)"

    def verify(self, ctx: Context, headers: Mapping[str, str], body: bytes,
               secure: bool) -> list[Event]:
        key = _key(secret(ctx, "sendgrid_webhook_public_key"))
        sig, ts = headers.get(SIG, ""), headers.get(TS, "")
        if not sig or not ts:
            raise WebhookRefused(401, "missing signature headers")
        try:
            key.verify(base64.b64decode(sig), ts.encode() + body, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, binascii.Error, ValueError) as exc:
            raise WebhookRefused(403, "bad signature") from exc
        fresh(ctx, ts)
        data = parse_json(body)
        return [_event(e) for e in (data if isinstance(data, list) else [data])]


def _event(e: dict[str, Any]) -> Event:
    name = e.get("event", "")
    kind = {"spamreport": "complaint", "unsubscribe": "unsubscribe",
            "group_unsubscribe": "unsubscribe", "delivered": "delivered"}.get(name, "other")
    if name == "bounce":
        kind = "soft_bounce" if e.get("type") == "blocked" else "hard_bounce"
    event_id = e.get("sg_event_id") or digest(json.dumps(e, sort_keys=True))
    return Event(str(event_id), kind, e.get("email"), dump(e))


PROVIDER = SendGrid()
