"""SES through SNS: an RSA signature made with the certificate at `SigningCertURL`.

The signature is inside the JSON, so the body is parsed first (within bounds) and the
envelope's fields are checked to be text before anything is verified. The certificate
comes only from the cache (`sns_certs`); nothing is fetched while a request waits.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from core.context import Context
from subscribers.webhooks import shape
from subscribers.webhooks.base import (
    Event,
    Provider,
    WebhookRefused,
    dump,
    fresh,
    parse_json,
)
from subscribers.webhooks.sns_certs import cached_cert, trusted_cert_path

__all__ = ["PROVIDER", "sns_string_to_sign", "trusted_cert_path"]

SNS_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token",
                                 "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token",
                                "TopicArn", "Type"),
}
REQUIRED = ("Type", "MessageId", "Message", "Timestamp", "TopicArn", "Signature",
            "SigningCertURL", "SignatureVersion")


def sns_string_to_sign(msg: dict[str, Any]) -> bytes:
    fields = SNS_FIELDS.get(msg.get("Type")) if isinstance(msg.get("Type"), str) else None
    if not fields:
        raise WebhookRefused(403, "unknown SNS message type")
    return "".join(f"{k}\n{msg[k]}\n" for k in fields if msg.get(k) is not None).encode()


def _envelope(msg: Any) -> dict[str, str]:
    """The SNS message's fields, each checked to be text (the signature covers them)."""
    msg = shape.obj(msg, "body")
    if not msg.get("Signature") or not msg.get("SigningCertURL"):
        raise WebhookRefused(401, "missing SNS signature")
    fields = {k: shape.need(msg, k, "body") for k in REQUIRED}
    for k in ("Subject", "SubscribeURL", "Token"):
        value = shape.text(msg, k, "body")
        if value is not None:
            fields[k] = value
    if fields["Type"] not in SNS_FIELDS:
        raise WebhookRefused(403, "unknown SNS message type")
    return fields


class Ses(Provider):
    name = "ses"
    verification = ("SNS message signature (v1 SHA1, v2 SHA256) with the certificate at "
                    "`SigningCertURL` (https, host matching `webhooks.ses_cert_host`, "
                    "`.pem`, no port or query), taken only from `var/sns-certs/`; optional "
                    "`webhooks.ses_topic_arns`")
    replay = ("`Timestamp` within `webhooks.sns_max_age_seconds`; SNS retries resend "
              "the same message, stored once by `MessageId` (a replay is a duplicate: "
              "200, no change)")

    def verify(self, ctx: Context, headers: Mapping[str, str], body: bytes,
               secure: bool) -> list[Event]:
        msg = _envelope(parse_json(body))
        allowed = ctx.config.webhooks.ses_topic_arns
        if allowed and msg["TopicArn"] not in allowed:
            raise WebhookRefused(403, "unexpected TopicArn")
        algo = {"1": hashes.SHA1(), "2": hashes.SHA256()}.get(msg["SignatureVersion"])
        if algo is None:
            raise WebhookRefused(403, "unknown SignatureVersion")
        key = cached_cert(ctx, msg["SigningCertURL"]).public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise WebhookRefused(403, "the signing certificate has no RSA key")
        try:
            key.verify(base64.b64decode(msg["Signature"], validate=True),
                       sns_string_to_sign(msg), padding.PKCS1v15(), algo)
        except (InvalidSignature, binascii.Error, ValueError) as exc:
            raise WebhookRefused(403, "bad signature") from exc
        fresh(ctx, _iso_ts(msg["Timestamp"]), ctx.config.webhooks.sns_max_age_seconds)
        if msg["Type"] != "Notification":
            return [Event(msg["MessageId"], "subscription", None, dump(msg))]
        return _events(msg["MessageId"], shape.obj(parse_json(msg["Message"]), "Message"))


def _iso_ts(value: str) -> float:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except (ValueError, OverflowError) as exc:
        raise WebhookRefused(403, "bad timestamp") from exc


def _addresses(d: dict[str, Any], key: str, where: str) -> list[str | None]:
    found = shape.objects(d.get(key) or [], f"{where}.{key}", single=False)
    return [shape.text(r, "emailAddress", f"{where}.{key}[{i}]") for i, r in enumerate(found)]


def _events(message_id: str, inner: dict[str, Any]) -> list[Event]:
    name = shape.text(inner, "notificationType", "Message") \
        or shape.text(inner, "eventType", "Message") or ""
    raw = dump(inner)
    people: list[str | None]
    if name == "Bounce":
        b = shape.opt_obj(inner, "bounce", "Message")
        kind = "hard_bounce" if shape.text(b, "bounceType", "bounce") == "Permanent" \
            else "soft_bounce"
        people = _addresses(b, "bouncedRecipients", "bounce")
    elif name == "Complaint":
        kind = "complaint"
        people = _addresses(shape.opt_obj(inner, "complaint", "Message"),
                            "complainedRecipients", "complaint")
    elif name == "Delivery":
        kind = "delivered"
        people = list(shape.texts(shape.opt_obj(inner, "delivery", "Message"), "recipients",
                                  "delivery"))
    else:
        kind, people = "other", [None]
    return [Event(f"{message_id}:{i}", kind, p, raw) for i, p in enumerate(people or [None])]


PROVIDER = Ses()
