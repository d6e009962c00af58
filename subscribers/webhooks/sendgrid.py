"""SendGrid: ECDSA (P-256, SHA-256) over the timestamp header + the raw body."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_public_key

from core.context import Context
from subscribers.webhooks import shape
from subscribers.webhooks.base import (
    Event,
    Provider,
    WebhookRefused,
    digest,
    dump,
    fresh,
    once,
    parse_json,
    secret,
)

SIG = "X-Twilio-Email-Event-Webhook-Signature"
TS = "X-Twilio-Email-Event-Webhook-Timestamp"


def _key(value: str) -> ec.EllipticCurvePublicKey:
    try:
        key = load_pem_public_key(value.encode()) if "BEGIN PUBLIC KEY" in value \
            else load_der_public_key(base64.b64decode(value))
    except (ValueError, binascii.Error, UnsupportedAlgorithm) as exc:
        raise WebhookRefused(403, "KPDIGEST_SENDGRID_WEBHOOK_PUBLIC_KEY is not a public key") \
            from exc
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise WebhookRefused(403, "KPDIGEST_SENDGRID_WEBHOOK_PUBLIC_KEY is not an ECDSA key")
    return key


class SendGrid(Provider):
    name = "sendgrid"
    secrets = ("sendgrid_webhook_public_key",)
    secret_note = " (base64 DER or PEM)"
    verification = ("ECDSA P-256/SHA-256 over timestamp + raw body "
                    "(`X-Twilio-Email-Event-Webhook-*`), verified before the body is parsed")
    replay = ("timestamp within `webhooks.max_age_seconds`; the same signature is "
              "accepted once (403 after); events stored once by `sg_event_id`")

    def verify(self, ctx: Context, headers: Mapping[str, str], body: bytes,
               secure: bool) -> list[Event]:
        key = _key(secret(ctx, "sendgrid_webhook_public_key"))
        sig, ts = headers.get(SIG, ""), headers.get(TS, "")
        if not sig or not ts:
            raise WebhookRefused(401, "missing signature headers")
        try:  # the raw body is verified before it is parsed
            key.verify(base64.b64decode(sig, validate=True), ts.encode() + body,
                       ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, binascii.Error, ValueError) as exc:
            raise WebhookRefused(403, "bad signature") from exc
        fresh(ctx, ts)
        found = [_event(e, f"body[{i}]")
                 for i, e in enumerate(shape.objects(parse_json(body), "body", single=False))]
        once(ctx, f"sendgrid:{sig}", "signature")
        return found


def _event(e: dict[str, Any], where: str) -> Event:
    name = shape.need(e, "event", where)
    email = shape.need(e, "email", where)
    kind = {"spamreport": "complaint", "unsubscribe": "unsubscribe",
            "group_unsubscribe": "unsubscribe", "delivered": "delivered"}.get(name, "other")
    if name == "bounce":
        kind = "soft_bounce" if shape.text(e, "type", where) == "blocked" else "hard_bounce"
    event_id = shape.ident(e, "sg_event_id", where) or digest(dump(e))
    return Event(event_id, kind, email, dump(e))


PROVIDER = SendGrid()
