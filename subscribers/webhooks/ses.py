"""SES through SNS: an RSA signature made with the certificate at `SigningCertURL`."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from core.context import Context
from subscribers.webhooks.base import Event, Provider, WebhookRefused, dump, fresh, parse_json

SNS_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token",
                                 "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token",
                                "TopicArn", "Type"),
}


def sns_string_to_sign(msg: dict[str, Any]) -> bytes:
    fields = SNS_FIELDS.get(msg.get("Type", ""))
    if not fields:
        raise WebhookRefused(403, "unknown SNS message type")
    return "".join(f"{k}\n{msg[k]}\n" for k in fields if msg.get(k) is not None).encode()


def trusted_cert_path(ctx: Context, url: str) -> Path:
    """Where a pinned SNS certificate for `url` is looked up (operators may pre-seed it)."""
    name = hashlib.sha256(url.encode()).hexdigest() + ".pem"
    return ctx.config.var_dir / "sns-certs" / name


def sns_cert(ctx: Context, url: str, fetch: Callable[[str], bytes] | None = None) -> Any:
    """The signing certificate: only from an allowed https host, cached under var/sns-certs."""
    parts = urlsplit(url)
    host_ok = re.fullmatch(ctx.config.webhooks.ses_cert_host, parts.hostname or "")
    if parts.scheme != "https" or not host_ok or not parts.path.endswith(".pem"):
        raise WebhookRefused(403, f"untrusted SigningCertURL {url!r}")
    cache = trusted_cert_path(ctx, url)
    if not cache.exists():
        pem = (fetch or _fetch_cert)(url)
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_bytes(pem)
    return x509.load_pem_x509_certificate(cache.read_bytes())


def _fetch_cert(url: str) -> bytes:
    import requests

    resp = requests.get(url, timeout=5, allow_redirects=False)
    resp.raise_for_status()
    return resp.content


class Ses(Provider):
    name = "ses"
    verification = ("SNS message signature (v1 SHA1, v2 SHA256) with the certificate at "
                    "`SigningCertURL`, whose host must match `webhooks.ses_cert_host`")

    def verify(self, ctx: Context, headers: Mapping[str, str], body: bytes,
               secure: bool) -> list[Event]:
        msg = parse_json(body)
        if not isinstance(msg, dict) or not msg.get("Signature") or not msg.get("SigningCertURL"):
            raise WebhookRefused(401, "missing SNS signature")
        allowed = ctx.config.webhooks.ses_topic_arns
        if allowed and msg.get("TopicArn") not in allowed:
            raise WebhookRefused(403, "unexpected TopicArn")
        algo = {"1": hashes.SHA1(), "2": hashes.SHA256()}.get(str(msg.get("SignatureVersion")))
        if algo is None:
            raise WebhookRefused(403, "unknown SignatureVersion")
        try:
            cert = sns_cert(ctx, msg["SigningCertURL"])
            cert.public_key().verify(base64.b64decode(msg["Signature"]), sns_string_to_sign(msg),
                                     padding.PKCS1v15(), algo)
        except (InvalidSignature, binascii.Error, ValueError) as exc:
            raise WebhookRefused(403, "bad signature") from exc
        fresh(ctx, _iso_ts(msg.get("Timestamp", "")), ctx.config.webhooks.sns_max_age_seconds)
        if msg["Type"] != "Notification":
            return [Event(msg["MessageId"], "subscription", None, dump(msg))]
        return _events(msg)


def _iso_ts(value: str) -> float:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError as exc:
        raise WebhookRefused(403, "bad timestamp") from exc


def _events(msg: dict[str, Any]) -> list[Event]:
    inner = parse_json(msg["Message"].encode())
    name = inner.get("notificationType") or inner.get("eventType") or ""
    raw = dump(inner)
    if name == "Bounce":
        b = inner.get("bounce") or {}
        kind = "hard_bounce" if b.get("bounceType") == "Permanent" else "soft_bounce"
        people = [r.get("emailAddress") for r in b.get("bouncedRecipients") or []]
    elif name == "Complaint":
        kind = "complaint"
        found = (inner.get("complaint") or {}).get("complainedRecipients") or []
        people = [r.get("emailAddress") for r in found]
    elif name == "Delivery":
        kind = "delivered"
        people = (inner.get("delivery") or {}).get("recipients") or []
    else:
        kind, people = "other", [None]
    return [Event(f"{msg['MessageId']}:{i}", kind, p, raw) for i, p in enumerate(people or [None])]


PROVIDER = Ses()
