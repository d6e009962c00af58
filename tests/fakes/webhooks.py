"""Each provider's side of a webhook, with keys the tests generate: genuine events signed
as the provider signs them, and any payload signed the same way (for the property tests).

`WebhookSigners().env()` is the KPDIGEST_* environment that makes the app trust these keys;
`pin_sns_cert(var_dir)` puts the SNS certificate where the app looks for it.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import time
import uuid
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from subscribers.webhooks.ses import sns_string_to_sign
from subscribers.webhooks.sns_certs import trusted_cert_path

CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-test.pem"
TOPIC = "arn:aws:sns:us-east-1:1:ses"
PROVIDERS = ("postmark", "sendgrid", "mailgun", "resend", "ses")
Request = tuple[dict[str, str], bytes]


def sns_certificate(key: rsa.RSAPrivateKey, name: str = "sns.amazonaws.com",
                    days: int = 30) -> bytes:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=max(1, 1 - days)))
            .not_valid_after(now + dt.timedelta(days=days)).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


class WebhookSigners:
    def __init__(self) -> None:
        self.sendgrid = ec.generate_private_key(ec.SECP256R1())
        self.mailgun = "mg-signing-key"
        self.svix = "whsec_" + base64.b64encode(b"resend-test-secret-32-bytes-long").decode()
        self.sns = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.sns_pem = sns_certificate(self.sns)
        self.postmark = ("pm-user", "pm-password")

    def env(self) -> dict[str, str]:
        der = self.sendgrid.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return {"KPDIGEST_POSTMARK_WEBHOOK_USER": self.postmark[0],
                "KPDIGEST_POSTMARK_WEBHOOK_PASSWORD": self.postmark[1],
                "KPDIGEST_SENDGRID_WEBHOOK_PUBLIC_KEY": base64.b64encode(der).decode(),
                "KPDIGEST_MAILGUN_WEBHOOK_SIGNING_KEY": self.mailgun,
                "KPDIGEST_RESEND_WEBHOOK_SECRET": self.svix}

    def pin_sns_cert(self, ctx: Any) -> Path:
        path = trusted_cert_path(ctx, CERT_URL)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.sns_pem)
        return path

    # --- any body, signed as the provider signs ---------------------------------------

    def sign(self, provider: str, payload: bytes | Any) -> Request:
        """`payload` signed the provider's way. Bytes are the body itself where the provider
        signs the raw body; Mailgun and SNS carry their signature inside JSON, so there the
        payload is what the signed envelope carries (`event-data`, `Message`)."""
        return getattr(self, f"_sign_{provider}")(payload)

    def _sign_postmark(self, body: bytes) -> Request:
        token = base64.b64encode(":".join(self.postmark).encode()).decode()
        return {"Authorization": f"Basic {token}", "Content-Type": "application/json"}, body

    def _sign_sendgrid(self, body: bytes, ts: int | None = None) -> Request:
        stamp = str(ts or int(time.time()))
        sig = self.sendgrid.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {"X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(sig).decode(),
                "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
                "Content-Type": "application/json"}, body

    def _sign_mailgun(self, event: Any, ts: int | None = None) -> Request:
        if isinstance(event, bytes):
            event = event.decode("utf-8", "replace")
        stamp, token = str(ts or int(time.time())), uuid.uuid4().hex
        sig = hmac.new(self.mailgun.encode(), (stamp + token).encode(), hashlib.sha256)
        body = {"signature": {"timestamp": stamp, "token": token, "signature": sig.hexdigest()},
                "event-data": event}
        return {"Content-Type": "application/json"}, json.dumps(body).encode()

    def _sign_resend(self, body: bytes, ts: int | None = None) -> Request:
        stamp, msg_id = str(ts or int(time.time())), f"msg_{uuid.uuid4().hex}"
        key = base64.b64decode(self.svix.removeprefix("whsec_"))
        mac = hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256)
        return {"svix-id": msg_id, "svix-timestamp": stamp,
                "svix-signature": "v1," + base64.b64encode(mac.digest()).decode(),
                "Content-Type": "application/json"}, body

    def _sign_ses(self, inner: Any, when: dt.datetime | None = None) -> Request:
        message = inner.decode("utf-8", "replace") if isinstance(inner, bytes) \
            else json.dumps(inner)
        msg = {"Type": "Notification", "MessageId": str(uuid.uuid4()), "TopicArn": TOPIC,
               "Message": message, "SignatureVersion": "2", "SigningCertURL": CERT_URL,
               "Timestamp": (when or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%S.000Z")}
        sig = self.sns.sign(sns_string_to_sign(msg), padding.PKCS1v15(), hashes.SHA256())
        msg["Signature"] = base64.b64encode(sig).decode()
        return {"Content-Type": "text/plain; charset=UTF-8"}, json.dumps(msg).encode()

    # --- genuine events ---------------------------------------------------------------

    def hard_bounce(self, provider: str, email: str) -> Request:
        """A permanent bounce for `email` in the provider's documented format, signed."""
        eid = uuid.uuid4().hex
        events: dict[str, Any] = {
            "postmark": {"RecordType": "Bounce", "ID": uuid.uuid4().int % 10**9,
                         "Type": "HardBounce", "Email": email, "MessageID": eid},
            "sendgrid": [{"email": email, "event": "bounce", "type": "bounce",
                          "sg_event_id": eid, "timestamp": int(time.time())}],
            "mailgun": {"id": eid, "event": "failed", "severity": "permanent",
                        "recipient": email},
            "resend": {"type": "email.bounced", "created_at": "2026-12-07T08:00:00Z",
                       "data": {"email_id": eid, "to": [email],
                                "bounce": {"type": "Permanent"}}},
            "ses": {"notificationType": "Bounce",
                    "bounce": {"bounceType": "Permanent",
                               "bouncedRecipients": [{"emailAddress": email}]}},
        }
        event = events[provider]
        raw = provider in ("postmark", "sendgrid", "resend")
        return self.sign(provider, json.dumps(event).encode() if raw else event)
