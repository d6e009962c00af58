"""Provider webhooks with real signatures made by keys the tests generate: good requests act
once, forged, stale and replayed ones are refused with 401/403 and change nothing."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import time
import uuid

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from sqlalchemy import func, select

from core.models import events, subscribers, subscriptions, suppressions, webhook_events
from subscribers.store import add_subscriber
from subscribers.webhooks.ses import sns_string_to_sign, trusted_cert_path
from tests.test_web_helpers import make_app

PEOPLE = ("hard@example.com", "soft@example.com", "spam@example.com", "leave@example.com")


@pytest.fixture
def client(ctx):
    return make_app(ctx).test_client()


@pytest.fixture
def people(ctx):
    return {addr: add_subscriber(ctx, addr) for addr in PEOPLE}


def _suppressed(ctx) -> dict[str, str]:
    with ctx.engine.connect() as conn:
        return dict(conn.execute(select(suppressions.c.email, suppressions.c.reason)).all())


def _stored(ctx) -> int:
    with ctx.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(webhook_events)).scalar_one()


def _soft(ctx, addr) -> int:
    with ctx.engine.connect() as conn:
        return conn.execute(select(subscribers.c.soft_bounces).where(subscribers.c.email == addr)).scalar()


# --- Postmark ---------------------------------------------------------------------------------

def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_postmark_basic_auth_over_https(ctx, client, people, monkeypatch):
    bounce = json.dumps({"RecordType": "Bounce", "ID": 4242, "Type": "HardBounce",
                         "Email": "Hard@Example.com"})
    url = "/webhooks/postmark"
    assert client.post(url, data=bounce, base_url="https://localhost").status_code == 403  # not configured
    monkeypatch.setenv("KPDIGEST_POSTMARK_WEBHOOK_USER", "pm")
    monkeypatch.setenv("KPDIGEST_POSTMARK_WEBHOOK_PASSWORD", "s3cret")
    assert client.post(url, data=bounce, base_url="https://localhost").status_code == 401
    wrong = client.post(url, data=bounce, headers=_basic("pm", "guess"), base_url="https://localhost")
    assert wrong.status_code == 401
    plain = client.post(url, data=bounce, headers=_basic("pm", "s3cret"))  # http: credentials exposed
    assert plain.status_code == 403 and _stored(ctx) == 0 and _suppressed(ctx) == {}
    ok = client.post(url, data=bounce, headers=_basic("pm", "s3cret"), base_url="https://localhost")
    assert ok.status_code == 200 and ok.json["stored"] == 1
    again = client.post(url, data=bounce, headers=_basic("pm", "s3cret"), base_url="https://localhost")
    assert again.status_code == 200 and again.json["duplicates"] == 1 and _stored(ctx) == 1
    assert _suppressed(ctx) == {"hard@example.com": "bounced"}
    change = json.dumps({"RecordType": "SubscriptionChange", "MessageID": "m1",
                         "Recipient": "leave@example.com",
                         "SuppressSending": True, "SuppressionReason": "ManualSuppression",
                         "ChangedAt": "2026-11-27T08:00:00Z"})
    client.post(url, data=change, headers=_basic("pm", "s3cret"), base_url="https://localhost")
    assert _suppressed(ctx)["leave@example.com"] == "unsubscribed"
    with ctx.engine.connect() as conn:
        statuses = set(conn.execute(select(subscriptions.c.status).where(
            subscriptions.c.subscriber_id.in_([people["hard@example.com"], people["leave@example.com"]])))
            .scalars())
    assert statuses == {"unsubscribed"}


# --- SendGrid ---------------------------------------------------------------------------------

@pytest.fixture
def sendgrid_key(monkeypatch):
    key = ec.generate_private_key(ec.SECP256R1())
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    monkeypatch.setenv("KPDIGEST_SENDGRID_WEBHOOK_PUBLIC_KEY", base64.b64encode(der).decode())
    return key


def _sendgrid(key, body: bytes, ts: int | None = None) -> dict[str, str]:
    stamp = str(ts or int(time.time()))
    sig = key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {"X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(sig).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": stamp, "Content-Type": "application/json"}


def test_sendgrid_ecdsa(ctx, client, people, sendgrid_key):
    batch = json.dumps([
        {"email": "hard@example.com", "event": "bounce", "type": "bounce", "sg_event_id": "e1"},
        {"email": "soft@example.com", "event": "bounce", "type": "blocked", "sg_event_id": "e2"},
        {"email": "spam@example.com", "event": "spamreport", "sg_event_id": "e3"},
        {"email": "leave@example.com", "event": "unsubscribe", "sg_event_id": "e4"},
        {"email": "soft@example.com", "event": "open", "sg_event_id": "e5"},
    ]).encode()
    tampered = batch.replace(b"soft@", b"hard@")
    signed = _sendgrid(sendgrid_key, batch)
    assert client.post("/webhooks/sendgrid", data=tampered, headers=signed).status_code == 403
    stale = _sendgrid(sendgrid_key, batch, int(time.time()) - 3600)
    assert client.post("/webhooks/sendgrid", data=batch, headers=stale).status_code == 403
    assert client.post("/webhooks/sendgrid", data=batch).status_code == 401
    other = ec.generate_private_key(ec.SECP256R1())
    assert client.post("/webhooks/sendgrid", data=batch, headers=_sendgrid(other, batch)).status_code == 403
    assert _stored(ctx) == 0 and _suppressed(ctx) == {}
    ok = client.post("/webhooks/sendgrid", data=batch, headers=_sendgrid(sendgrid_key, batch))
    assert ok.status_code == 200 and ok.json["stored"] == 5
    assert _suppressed(ctx) == {"hard@example.com": "bounced", "spam@example.com": "complained",
                                "leave@example.com": "unsubscribed"}
    assert _soft(ctx, "soft@example.com") == 1
    client.post("/webhooks/sendgrid", data=batch, headers=_sendgrid(sendgrid_key, batch))  # provider retry
    assert _soft(ctx, "soft@example.com") == 1 and _stored(ctx) == 5


# --- Mailgun ----------------------------------------------------------------------------------

def _mailgun(event: dict, key: str = "mg-key", ts: int | None = None, token: str | None = None) -> str:
    stamp, tok = str(ts or int(time.time())), token or uuid.uuid4().hex
    sig = hmac.new(key.encode(), (stamp + tok).encode(), hashlib.sha256).hexdigest()
    return json.dumps({"signature": {"timestamp": stamp, "token": tok, "signature": sig},
                       "event-data": event})


def test_mailgun_hmac_and_token_replay(ctx, client, people, monkeypatch):
    monkeypatch.setenv("KPDIGEST_MAILGUN_WEBHOOK_SIGNING_KEY", "mg-key")
    failed = {"id": "mg1", "event": "failed", "severity": "permanent", "recipient": "hard@example.com"}
    post = lambda body: client.post("/webhooks/mailgun", data=body, content_type="application/json")  # noqa: E731
    assert post(_mailgun(failed, key="wrong")).status_code == 403
    assert post(_mailgun(failed, ts=int(time.time()) - 900)).status_code == 403
    assert post(json.dumps({"event-data": failed})).status_code == 401
    assert _stored(ctx) == 0
    body = _mailgun(failed, token="t" * 50)
    assert post(body).status_code == 200
    # The same signed token with other event data: Mailgun signs only timestamp+token.
    forged = json.loads(body)
    forged["event-data"] = {"id": "mg2", "event": "complained", "recipient": "spam@example.com"}
    assert post(json.dumps(forged)).status_code == 403
    assert _suppressed(ctx) == {"hard@example.com": "bounced"}
    for i in range(3):
        post(_mailgun({"id": f"soft{i}", "event": "failed", "severity": "temporary",
                       "recipient": "soft@example.com"}))
    assert _suppressed(ctx)["soft@example.com"] == "bounced"  # threshold 3


def test_soft_bounces_count_in_a_row(ctx, client, people, monkeypatch):
    monkeypatch.setenv("KPDIGEST_MAILGUN_WEBHOOK_SIGNING_KEY", "mg-key")
    seq = ["temporary", "temporary", "delivered", "temporary", "temporary"]
    for i, kind in enumerate(seq):
        ev = {"id": f"s{i}", "recipient": "soft@example.com"}
        ev.update({"event": "delivered"} if kind == "delivered" else {"event": "failed", "severity": kind})
        resp = client.post("/webhooks/mailgun", data=_mailgun(ev), content_type="application/json")
        assert resp.status_code == 200
    assert _soft(ctx, "soft@example.com") == 2 and "soft@example.com" not in _suppressed(ctx)
    with ctx.engine.connect() as conn:
        kinds = [e.kind for e in conn.execute(select(events.c.kind).where(
            events.c.subscriber_id == people["soft@example.com"]))]
    assert kinds.count("soft_bounce") == 4


# --- Resend (Svix) ----------------------------------------------------------------------------

SVIX_SECRET = "whsec_" + base64.b64encode(b"resend-test-secret-32-bytes-long").decode()


def _svix(body: bytes, secret: str = SVIX_SECRET, msg_id: str = "msg_1", ts: int | None = None) -> dict:
    stamp = str(ts or int(time.time()))
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256)
    sig = base64.b64encode(mac.digest()).decode()
    return {"svix-id": msg_id, "svix-timestamp": stamp, "svix-signature": f"v1,bogus v1,{sig}",
            "Content-Type": "application/json"}


def test_resend_svix(ctx, client, people, monkeypatch):
    monkeypatch.setenv("KPDIGEST_RESEND_WEBHOOK_SECRET", SVIX_SECRET)
    body = json.dumps({"type": "email.complained", "created_at": "2026-11-27T08:00:00Z",
                       "data": {"email_id": "r1", "to": ["spam@example.com"]}}).encode()
    other = "whsec_" + base64.b64encode(b"another-secret-another-secret-32").decode()
    assert client.post("/webhooks/resend", data=body, headers=_svix(body, other)).status_code == 403
    assert client.post("/webhooks/resend", data=body,
                       headers=_svix(body, ts=int(time.time()) - 3600)).status_code == 403
    assert client.post("/webhooks/resend", data=body, headers={"svix-id": "x"}).status_code == 401
    assert _stored(ctx) == 0
    signed = _svix(body)
    assert client.post("/webhooks/resend", data=body, headers=signed).status_code == 200
    assert client.post("/webhooks/resend", data=body, headers=signed).status_code == 403  # replay
    retry = _svix(body, ts=int(time.time()) - 5)  # Svix signs each attempt anew
    assert client.post("/webhooks/resend", data=body, headers=retry).json["duplicates"] == 1
    assert _suppressed(ctx) == {"spam@example.com": "complained"}
    bounce = json.dumps({"type": "email.bounced", "data": {"to": ["hard@example.com"],
                                                            "bounce": {"type": "Permanent"}}}).encode()
    client.post("/webhooks/resend", data=bounce, headers=_svix(bounce, msg_id="msg_2"))
    assert _suppressed(ctx)["hard@example.com"] == "bounced"


# --- SES through SNS --------------------------------------------------------------------------

CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-test.pem"


@pytest.fixture
def sns_key(ctx):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=30)).sign(key, hashes.SHA256()))
    path = trusted_cert_path(ctx, CERT_URL)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key


def _sns(key, inner: dict, msg_id: str = "sns-1", version: str = "1", cert_url: str = CERT_URL,
         when: dt.datetime | None = None) -> bytes:
    msg = {"Type": "Notification", "MessageId": msg_id, "TopicArn": "arn:aws:sns:us-east-1:1:ses",
           "Message": json.dumps(inner), "SignatureVersion": version, "SigningCertURL": cert_url,
           "Timestamp": (when or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%S.000Z")}
    algo = hashes.SHA1() if version == "1" else hashes.SHA256()  # SNS signature version 1 is SHA1
    msg["Signature"] = base64.b64encode(key.sign(sns_string_to_sign(msg), padding.PKCS1v15(), algo)).decode()
    return json.dumps(msg).encode()


def _ses_bounce(addr: str, kind: str = "Permanent") -> dict:
    return {"notificationType": "Bounce", "bounce": {"bounceType": kind,
                                                     "bouncedRecipients": [{"emailAddress": addr}]}}


def test_ses_sns_signature(ctx, client, people, sns_key):
    url = "/webhooks/ses"
    good = _sns(sns_key, _ses_bounce("hard@example.com"))
    tampered = good.replace(b"hard@example.com", b"spam@example.com")
    assert client.post(url, data=tampered).status_code == 403
    evil = _sns(sns_key, _ses_bounce("spam@example.com"), cert_url="https://evil.example.com/cert.pem")
    assert client.post(url, data=evil).status_code == 403
    old = _sns(sns_key, _ses_bounce("spam@example.com"), when=dt.datetime.now(dt.UTC) - dt.timedelta(hours=3))
    assert client.post(url, data=old).status_code == 403
    assert client.post(url, data=b'{"Type": "Notification"}').status_code == 401
    assert _stored(ctx) == 0 and _suppressed(ctx) == {}
    assert client.post(url, data=good).status_code == 200
    assert client.post(url, data=good).json["duplicates"] == 1
    complaint = {"notificationType": "Complaint",
                 "complaint": {"complainedRecipients": [{"emailAddress": "spam@example.com"}]}}
    assert client.post(url, data=_sns(sns_key, complaint, "sns-2", version="2")).status_code == 200
    assert _suppressed(ctx) == {"hard@example.com": "bounced", "spam@example.com": "complained"}
    for i in range(3):
        client.post(url, data=_sns(sns_key, _ses_bounce("soft@example.com", "Transient"), f"soft-{i}"))
    assert _suppressed(ctx)["soft@example.com"] == "bounced"


def test_unknown_provider_is_refused(client):
    assert client.post("/webhooks/nope", data=b"{}").status_code == 403


def test_docs_table_comes_from_the_registry():
    """docs/web.md's provider table is the registry's: adding a provider is one module plus
    one registry line, and the docs cannot forget it."""
    from core.config import PROJECT_ROOT
    from subscribers.webhooks.registry import PROVIDERS, docs_table

    doc = (PROJECT_ROOT / "docs" / "web.md").read_text(encoding="utf-8")
    assert docs_table() in doc
    assert list(PROVIDERS) == ["postmark", "sendgrid", "mailgun", "resend", "ses"]
