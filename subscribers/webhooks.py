"""Provider webhooks: verify each provider's own way, store raw events once, act on them.

A request that fails verification raises WebhookRefused (401: no or wrong credentials,
403: forged, stale or replayed) before anything is stored. Verified events are stored by
(provider, event id), so a provider's retry is stored and acted on once: a hard bounce or
a complaint suppresses the address, soft bounces in a row count toward a threshold, and a
provider-side unsubscribe unsubscribes from every list.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from core.addresses import normalize_email
from core.context import Context
from core.db import utcnow
from core.errors import InvalidInput, KpdigestError
from core.models import subscribers, subscriptions, webhook_events
from subscribers.ratelimit import hit
from subscribers.store import log_event, suppress

PROVIDERS = ("postmark", "sendgrid", "mailgun", "resend", "ses")


class WebhookRefused(KpdigestError):
    """Verification failed; `status` is the HTTP answer (401 or 403)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Event:
    event_id: str
    kind: str  # hard_bounce | soft_bounce | complaint | unsubscribe | delivered | subscription | other
    email: str | None
    payload: str


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput("the body is not JSON") from exc


def _secret(ctx: Context, name: str) -> str:
    value = ctx.config.secret(name, required=False)
    if not value:
        raise WebhookRefused(403, f"KPDIGEST_{name.upper()} is not set: this webhook is disabled")
    return value


def _fresh(ctx: Context, timestamp: str | int | float, max_age: int | None = None) -> None:
    try:
        ts = float(timestamp)
    except (TypeError, ValueError) as exc:
        raise WebhookRefused(403, "bad timestamp") from exc
    if abs(time.time() - ts) > (max_age or ctx.config.webhooks.max_age_seconds):
        raise WebhookRefused(403, "stale timestamp: a replayed or delayed request")


def _digest(*parts: Any) -> str:
    return hashlib.sha256("\x00".join(str(p) for p in parts).encode()).hexdigest()[:40]


# --- Postmark: HTTP basic auth over HTTPS -------------------------------------------------

POSTMARK_HARD = {"HardBounce", "BadEmailAddress", "ManuallyDeactivated", "AddressChange"}
POSTMARK_SOFT = {"SoftBounce", "Transient", "DnsError", "MailboxFull", "AutoResponder"}


def verify_postmark(ctx: Context, headers: Mapping[str, str], body: bytes, secure: bool) -> list[Event]:
    user, password = _secret(ctx, "postmark_webhook_user"), _secret(ctx, "postmark_webhook_password")
    if ctx.config.webhooks.require_https and not secure:
        raise WebhookRefused(403, "basic auth is only accepted over HTTPS")
    auth = headers.get("Authorization", "")
    expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    if not auth or not hmac.compare_digest(auth.encode(), expected.encode()):
        raise WebhookRefused(401, "wrong or missing credentials")
    data = _json(body)
    return [_postmark_event(e) for e in (data if isinstance(data, list) else [data])]


def _postmark_event(e: dict[str, Any]) -> Event:
    record = e.get("RecordType", "")
    raw = json.dumps(e, sort_keys=True)
    if record == "Bounce":
        btype = e.get("Type", "")
        kind = "hard_bounce" if btype in POSTMARK_HARD else "soft_bounce" if btype in POSTMARK_SOFT \
            else "complaint" if btype == "SpamComplaint" else "other"
        return Event(f"bounce:{e.get('ID')}", kind, e.get("Email"), raw)
    if record == "SpamComplaint":
        return Event(f"complaint:{e.get('ID')}", "complaint", e.get("Email"), raw)
    if record == "SubscriptionChange":
        reason = e.get("SuppressionReason")
        kind = "other" if not e.get("SuppressSending") else {
            "HardBounce": "hard_bounce", "SpamComplaint": "complaint"}.get(reason, "unsubscribe")
        return Event(f"change:{_digest(e.get('MessageID'), e.get('Recipient'), e.get('ChangedAt'))}",
                     kind, e.get("Recipient"), raw)
    if record == "Delivery":
        to = e.get("Recipient")
        return Event(f"delivery:{e.get('MessageID')}:{to}", "delivered", to, raw)
    return Event(f"{record or 'other'}:{_digest(raw)}", "other", e.get("Recipient") or e.get("Email"), raw)


# --- SendGrid: ECDSA (P-256, SHA-256) over timestamp + body ------------------------------

def _sendgrid_key(value: str) -> Any:
    from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_public_key

    if "BEGIN PUBLIC KEY" in value:
        return load_pem_public_key(value.encode())
    return load_der_public_key(base64.b64decode(value))


def verify_sendgrid(ctx: Context, headers: Mapping[str, str], body: bytes, secure: bool) -> list[Event]:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    key = _sendgrid_key(_secret(ctx, "sendgrid_webhook_public_key"))
    sig = headers.get("X-Twilio-Email-Event-Webhook-Signature", "")
    ts = headers.get("X-Twilio-Email-Event-Webhook-Timestamp", "")
    if not sig or not ts:
        raise WebhookRefused(401, "missing signature headers")
    try:
        key.verify(base64.b64decode(sig), ts.encode() + body, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, binascii.Error, ValueError) as exc:
        raise WebhookRefused(403, "bad signature") from exc
    _fresh(ctx, ts)
    data = _json(body)
    return [_sendgrid_event(e) for e in (data if isinstance(data, list) else [data])]


def _sendgrid_event(e: dict[str, Any]) -> Event:
    name = e.get("event", "")
    kind = {"spamreport": "complaint", "unsubscribe": "unsubscribe", "group_unsubscribe": "unsubscribe",
            "delivered": "delivered"}.get(name, "other")
    if name == "bounce":
        kind = "soft_bounce" if e.get("type") == "blocked" else "hard_bounce"
    event_id = e.get("sg_event_id") or _digest(json.dumps(e, sort_keys=True))
    return Event(str(event_id), kind, e.get("email"), json.dumps(e, sort_keys=True))


# --- Mailgun: HMAC-SHA256 of timestamp + token, each token used once ---------------------

def verify_mailgun(ctx: Context, headers: Mapping[str, str], body: bytes, secure: bool) -> list[Event]:
    key = _secret(ctx, "mailgun_webhook_signing_key")
    data = _json(body)
    sig = data.get("signature") if isinstance(data, dict) else None
    if not isinstance(sig, dict) or not all(sig.get(k) for k in ("timestamp", "token", "signature")):
        raise WebhookRefused(401, "missing signature")
    signed = f"{sig['timestamp']}{sig['token']}".encode()
    expected = hmac.new(key.encode(), signed, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, str(sig["signature"])):
        raise WebhookRefused(403, "bad signature")
    _fresh(ctx, sig["timestamp"])
    # Mailgun signs the token, not the body: a token seen before is a replay.
    if not hit(ctx, f"mailgun-token:{sig['token']}", 1, 2 * ctx.config.webhooks.max_age_seconds):
        raise WebhookRefused(403, "replayed token")
    e = data.get("event-data") or {}
    name, severity = e.get("event", ""), e.get("severity", "")
    kind = {"complained": "complaint", "unsubscribed": "unsubscribe",
            "delivered": "delivered"}.get(name, "other")
    if name == "failed":
        kind = "hard_bounce" if severity == "permanent" else "soft_bounce"
    event_id = e.get("id") or _digest(sig["token"])
    return [Event(str(event_id), kind, e.get("recipient"), json.dumps(e, sort_keys=True))]


# --- Resend: Svix signature over id.timestamp.body ---------------------------------------

def verify_resend(ctx: Context, headers: Mapping[str, str], body: bytes, secure: bool) -> list[Event]:
    secret = _secret(ctx, "resend_webhook_secret")
    msg_id, ts, sigs = (headers.get(h, "") for h in ("svix-id", "svix-timestamp", "svix-signature"))
    if not (msg_id and ts and sigs):
        raise WebhookRefused(401, "missing svix headers")
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"))
    except binascii.Error as exc:
        raise WebhookRefused(403, "KPDIGEST_RESEND_WEBHOOK_SECRET is not a whsec_ secret") from exc
    signed = f"{msg_id}.{ts}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    given = [s.partition(",")[2] for s in sigs.split() if s.startswith("v1,")]
    if not any(hmac.compare_digest(expected, g) for g in given):
        raise WebhookRefused(403, "bad signature")
    _fresh(ctx, ts)
    e = _json(body)
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
    return [Event(msg_id, kind, email, json.dumps(e, sort_keys=True))]


# --- SES through SNS: RSA signature with the certificate at SigningCertURL ---------------

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


def sns_cert(ctx: Context, url: str, fetch: Callable[[str], bytes] | None = None) -> Any:
    """The signing certificate: only from an allowed https host, cached under var/sns-certs."""
    from cryptography import x509

    parts = urlsplit(url)
    if parts.scheme != "https" or not re.fullmatch(ctx.config.webhooks.ses_cert_host, parts.hostname or "") \
            or not parts.path.endswith(".pem"):
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


def verify_ses(ctx: Context, headers: Mapping[str, str], body: bytes, secure: bool) -> list[Event]:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    msg = _json(body)
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
    _fresh(ctx, _iso_ts(msg.get("Timestamp", "")), ctx.config.webhooks.sns_max_age_seconds)
    if msg["Type"] != "Notification":
        return [Event(msg["MessageId"], "subscription", None, json.dumps(msg, sort_keys=True))]
    return _ses_events(msg)


def _iso_ts(value: str) -> float:
    from datetime import datetime

    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError as exc:
        raise WebhookRefused(403, "bad timestamp") from exc


def _ses_events(msg: dict[str, Any]) -> list[Event]:
    inner = _json(msg["Message"].encode())
    name = inner.get("notificationType") or inner.get("eventType") or ""
    raw = json.dumps(inner, sort_keys=True)
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


VERIFIERS: dict[str, Callable[[Context, Mapping[str, str], bytes, bool], list[Event]]] = {
    "postmark": verify_postmark, "sendgrid": verify_sendgrid, "mailgun": verify_mailgun,
    "resend": verify_resend, "ses": verify_ses,
}


def receive(ctx: Context, provider: str, headers: Mapping[str, str], body: bytes,
            secure: bool) -> dict[str, int]:
    """Verify, store once, act. Counts of new and duplicate events."""
    verifier = VERIFIERS.get(provider)
    if verifier is None:
        raise WebhookRefused(403, f"unknown provider {provider!r}")
    counts = {"stored": 0, "duplicates": 0}
    for event in verifier(ctx, headers, body, secure):
        counts["stored" if store_and_apply(ctx, provider, event) else "duplicates"] += 1
    return counts


def store_and_apply(ctx: Context, provider: str, event: Event) -> bool:
    """Store the raw event and act on it in one transaction; False if it was seen before."""
    try:
        email = normalize_email(event.email) if event.email else None
    except InvalidInput:
        email = None
    try:
        with ctx.engine.begin() as conn:
            conn.execute(insert(webhook_events).values(
                provider=provider, event_id=event.event_id[:200], kind=event.kind, email=email,
                payload=event.payload, received_at=utcnow()))
            if email:
                _apply(ctx, conn, provider, event.kind, email)
    except IntegrityError:
        return False
    return True


def _apply(ctx: Context, conn: Connection, provider: str, kind: str, email: str) -> None:
    sid = conn.execute(select(subscribers.c.id).where(subscribers.c.email == email)).scalar()
    now = utcnow()
    detail = {"provider": provider}
    if kind in ("hard_bounce", "complaint", "unsubscribe"):
        reason = {"hard_bounce": "bounced", "complaint": "complained", "unsubscribe": "unsubscribed"}[kind]
        suppress(conn, email, reason, f"{provider} webhook")
        if sid:
            conn.execute(update(subscriptions).where(subscriptions.c.subscriber_id == sid,
                                                     subscriptions.c.status != "unsubscribed")
                         .values(status="unsubscribed", unsubscribed_at=now, updated_at=now))
            log_event(conn, sid, reason, detail, actor=f"webhook:{provider}")
    elif kind == "soft_bounce" and sid:
        conn.execute(update(subscribers).where(subscribers.c.id == sid)
                     .values(soft_bounces=subscribers.c.soft_bounces + 1))
        n = conn.execute(select(subscribers.c.soft_bounces).where(subscribers.c.id == sid)).scalar_one()
        log_event(conn, sid, "soft_bounce", {**detail, "count": n}, actor=f"webhook:{provider}")
        if n >= ctx.config.webhooks.soft_bounce_threshold:
            suppress(conn, email, "bounced", f"{n} soft bounces in a row")
            log_event(conn, sid, "bounced", {**detail, "soft_bounces": n}, actor=f"webhook:{provider}")
    elif kind == "delivered" and sid:
        conn.execute(update(subscribers).where(subscribers.c.id == sid, subscribers.c.soft_bounces > 0)
                     .values(soft_bounces=0))


def trusted_cert_path(ctx: Context, url: str) -> Path:
    """Where a pinned SNS certificate for `url` is looked up (operators may pre-seed it)."""
    return ctx.config.var_dir / "sns-certs" / (hashlib.sha256(url.encode()).hexdigest() + ".pem")
