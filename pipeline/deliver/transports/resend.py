"""Resend: `POST /emails/batch`, up to 100 complete messages per call, with an
`Idempotency-Key` per batch: the same key (our batch key, kept across retries and
restarts) with the same payload returns the first answer instead of sending again, so a
retry after a timeout or a crash cannot double-send. Resend keeps keys for 24 hours.

The batch is all or nothing (strict validation). 429 comes with `retry-after`.
A 409 means the key is still being processed (retry) or was used for another payload.
"""

from __future__ import annotations

import json
from email.message import EmailMessage
from typing import ClassVar

from pipeline.compose.message import Recipient
from pipeline.compose.prepare import PreparedVariant
from pipeline.deliver.transports.base import Outcome, RetryBatch, UnknownOutcome
from pipeline.deliver.transports.http import (
    HttpTransport,
    JsonArray,
    fixed_headers,
    json_str,
    plain_parts,
    reason,
    to_address,
)


class ResendTransport(HttpTransport):
    name: ClassVar[str] = "resend"
    max_batch: ClassVar[int] = 100
    recipient_variables: ClassVar[bool] = False
    idempotent: ClassVar[bool] = True
    idempotency_hours: ClassVar[float | None] = 24
    rate_limit_signal: ClassVar[str] = "HTTP 429 with retry-after (seconds)"
    secret_name: ClassVar[str] = "resend_api_key"

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret()}", "Content-Type": "application/json"}

    def fixed_part(self, variant: PreparedVariant) -> tuple[str, str]:
        head = json.dumps({"from": variant.from_address, "subject": variant.clean_subject,
                           "reply_to": variant.reply_to}, separators=(",", ":"))[:-1]
        headers = json.dumps(fixed_headers(variant), separators=(",", ":"))[1:-1]
        return head, headers

    def message(self, variant: PreparedVariant, r: Recipient) -> bytes:
        """One message as JSON: the variant's fixed part joined with this recipient's."""
        head, headers = self.fixed.get(variant)
        html_filler, text_filler = self.fillers.get(variant)
        values = r.values()
        unsub = json_str(variant.list_unsubscribe(r))
        return (f'{head},"to":[{json_str(to_address(r.name, r.email))}],'
                f'"headers":{{"List-Unsubscribe":{unsub},{headers}}},'
                f'"tags":[{{"name":"delivery_id","value":"{r.delivery_id}"}},'
                f'{{"name":"issue","value":"{variant.number}"}}],'
                f'"html":{html_filler.fill(values)},"text":{text_filler.fill(values)}}}').encode("ascii")

    def send_batch(self, variant: PreparedVariant, recipients: list[Recipient],
                   batch_key: str) -> list[Outcome]:
        resp = self.post("/emails/batch", data=JsonArray([self.message(variant, r) for r in recipients]),
                         headers={"Idempotency-Key": f"kpd-{batch_key}"})
        if resp.status_code == 409:
            if "concurrent" in resp.text:
                raise RetryBatch(f"resend: {reason(resp)}", 1.0)
            return self.all_failed(recipients, resp)
        if resp.status_code != 200:
            return self.all_failed(recipients, resp)
        try:
            data = resp.json().get("data") or []
        except ValueError as exc:
            raise UnknownOutcome(f"resend: unreadable answer to an accepted batch: {exc}") from exc
        ids = [str(d.get("id", "")) for d in data] if len(data) == len(recipients) else [""] * len(recipients)
        return [Outcome(r.delivery_id, "sent", provider_message_id=i)
                for r, i in zip(recipients, ids, strict=True)]

    reconcile: ClassVar[str] = ("idempotency key: unknown rows of the last 24 hours go back to "
                                "the queue with their batch key; Resend answers a repeated key "
                                "without sending again")

    def send_single(self, message: EmailMessage, idempotency_key: str | None = None) -> str:
        """`idempotency_key`: the lane's row, so a resend after a crash is not a second mail."""
        text, body_html = plain_parts(message)
        payload = {"from": str(message["From"]), "to": [str(message["To"])],
                   "subject": str(message["Subject"])}
        payload.update({k: v for k, v in (("text", text), ("html", body_html)) if v})
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        resp = self.post("/emails", data=json.dumps(payload).encode(), headers=headers)
        if resp.status_code != 200:
            raise self.single_failed(resp)
        return str(resp.json().get("id", ""))


TRANSPORT = ResendTransport
