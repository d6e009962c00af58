"""SendGrid: `POST /v3/mail/send` with up to 1000 personalizations and the body once per
call; each personalization carries its recipient's substitutions, headers and our
delivery id in `custom_args`.

Substitutions apply to both parts, so HTML and text get their own tags: HTML values are
escaped, text values are not. SendGrid answers 202 for the whole call (one X-Message-Id)
and, on 429, says when the limit resets in `X-RateLimit-Reset` (a Unix time).
"""

from __future__ import annotations

import json
import time
from email.message import EmailMessage
from typing import Any, ClassVar

import requests

from pipeline.compose.message import Recipient, clean_header
from pipeline.compose.personalize import FIELDS
from pipeline.compose.prepare import PreparedVariant
from pipeline.deliver.transports.base import Outcome
from pipeline.deliver.transports.http import HttpTransport, fixed_headers, plain_parts, retry_after_header


def tag(field: str, part: str) -> str:
    return f"-kpd{part}{field.replace('_', '')}-"


class SendGridTransport(HttpTransport):
    name: ClassVar[str] = "sendgrid"
    max_batch: ClassVar[int] = 1000
    recipient_variables: ClassVar[bool] = True
    idempotent: ClassVar[bool] = False
    rate_limit_signal: ClassVar[str] = "HTTP 429 with X-RateLimit-Reset (Unix time)"
    secret_name: ClassVar[str] = "sendgrid_api_key"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._bodies: dict[tuple[int, str], list[dict[str, str]]] = {}

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret()}", "Content-Type": "application/json"}

    def retry_after(self, resp: requests.Response) -> float | None:
        reset = resp.headers.get("X-RateLimit-Reset")
        if reset:
            try:
                return max(0.0, float(reset) - time.time())
            except ValueError:
                pass
        return retry_after_header(resp)

    def content(self, variant: PreparedVariant) -> list[dict[str, str]]:
        """Both parts with SendGrid tags in place of our placeholders: once per variant."""
        key = (variant.issue_id, variant.variant)
        if key not in self._bodies:
            self._bodies[key] = [
                {"type": "text/plain", "value": variant.text.substitute({f: tag(f, "t") for f in FIELDS})},
                {"type": "text/html", "value": variant.html.substitute({f: tag(f, "h") for f in FIELDS})}]
        return self._bodies[key]

    def personalization(self, variant: PreparedVariant, r: Recipient) -> dict[str, Any]:
        import html

        values = r.values()
        subs = {tag(f, "t"): values.get(f, "") for f in FIELDS}
        subs.update({tag(f, "h"): html.escape(values.get(f, "")) for f in FIELDS})
        to: dict[str, str] = {"email": r.email}
        if r.name:
            to["name"] = clean_header(r.name)
        return {"to": [to], "substitutions": subs,
                "headers": {"List-Unsubscribe": variant.list_unsubscribe(r)},
                "custom_args": {"delivery_id": str(r.delivery_id), "issue": str(variant.number)}}

    def payload(self, variant: PreparedVariant, recipients: list[Recipient]) -> dict[str, Any]:
        cfg = self.cfg.sender
        return {
            "personalizations": [self.personalization(variant, r) for r in recipients],
            "from": {"email": cfg.from_email, "name": clean_header(cfg.from_name)},
            "reply_to": {"email": variant.reply_to},
            "subject": variant.clean_subject,
            "content": self.content(variant),
            "headers": fixed_headers(variant),
            "categories": [f"issue-{variant.number}"],
            "tracking_settings": {"click_tracking": {"enable": False}, "open_tracking": {"enable": False}},
        }

    def send_batch(self, variant: PreparedVariant, recipients: list[Recipient],
                   batch_key: str) -> list[Outcome]:
        body = json.dumps(self.payload(variant, recipients), ensure_ascii=False, separators=(",", ":"))
        resp = self.post("/v3/mail/send", data=body.encode("utf-8"))
        if resp.status_code not in (200, 202):
            return self.all_failed(recipients, resp)
        mid = resp.headers.get("X-Message-Id", "")
        return [Outcome(r.delivery_id, "sent", provider_message_id=mid) for r in recipients]

    reconcile: ClassVar[str] = ("cannot tell from the mail API (the Email Activity API is a paid "
                                "add-on): unknown rows stay unknown")

    def send_single(self, message: EmailMessage) -> str:
        from email.utils import getaddresses

        text, body_html = plain_parts(message)
        content = [{"type": t, "value": v} for t, v in (("text/plain", text), ("text/html", body_html)) if v]
        (to_name, to_email), = getaddresses([str(message["To"])])
        (from_name, from_email), = getaddresses([str(message["From"])])
        to = {"email": to_email, **({"name": to_name} if to_name else {})}
        payload = {"personalizations": [{"to": [to]}],
                   "from": {"email": from_email, **({"name": from_name} if from_name else {})},
                   "subject": str(message["Subject"]), "content": content}
        resp = self.post("/v3/mail/send", data=json.dumps(payload).encode())
        if resp.status_code not in (200, 202):
            raise self.single_failed(resp)
        return resp.headers.get("X-Message-Id", "")


TRANSPORT = SendGridTransport
