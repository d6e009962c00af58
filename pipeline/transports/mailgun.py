"""Mailgun: `POST /v3/{domain}/messages` with up to 1000 recipients and
`recipient-variables`, the body once per call. Mailgun then sends each recipient their
own message (batch sending: recipients never see each other).

Our placeholders become `%recipient.NAME%` once per variant; HTML and text get their own
variables because Mailgun substitutes values as they are. Our delivery id travels as the
`v:delivery_id` user variable. On 429 Mailgun says when to come back in the body
("try again after 120 seconds").
"""

from __future__ import annotations

import html
import json
import re
import uuid
from email.message import EmailMessage
from typing import Any, ClassVar

import requests

from pipeline.message import Recipient
from pipeline.personalize import FIELDS
from pipeline.prepare import PreparedVariant
from pipeline.transports.base import Outcome
from pipeline.transports.http import (
    HttpTransport,
    fixed_headers,
    plain_parts,
    retry_after_header,
    to_address,
)

_AFTER_RE = re.compile(r"after (\d+(?:\.\d+)?) ?s", re.IGNORECASE)


def var(field: str, part: str) -> str:
    return f"%recipient.{field}_{part}%"


class MailgunTransport(HttpTransport):
    name: ClassVar[str] = "mailgun"
    max_batch: ClassVar[int] = 1000
    recipient_variables: ClassVar[bool] = True
    idempotent: ClassVar[bool] = False
    rate_limit_signal: ClassVar[str] = "HTTP 429, the retry time in the JSON body's message"
    secret_name: ClassVar[str] = "mailgun_api_key"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.domain = str(self.options.get("domain") or self.cfg.sender.domain)
        self._bodies: dict[tuple[int, str], tuple[str, str]] = {}

    def auth_headers(self) -> dict[str, str]:
        import base64

        token = base64.b64encode(f"api:{self.secret()}".encode()).decode()
        return {"Authorization": f"Basic {token}"}

    def retry_after(self, resp: requests.Response) -> float | None:
        m = _AFTER_RE.search(resp.text or "")
        return float(m.group(1)) if m else retry_after_header(resp)

    def bodies(self, variant: PreparedVariant) -> tuple[str, str]:
        key = (variant.issue_id, variant.variant)
        if key not in self._bodies:
            self._bodies[key] = (variant.html.substitute({f: var(f, "h") for f in FIELDS}),
                                 variant.text.substitute({f: var(f, "t") for f in FIELDS}))
        return self._bodies[key]

    def form(self, variant: PreparedVariant, recipients: list[Recipient]) -> list[tuple[str, str]]:
        body_html, body_text = self.bodies(variant)
        in_html = getattr(variant.html, "fields", FIELDS)  # only what the templates use
        in_text = getattr(variant.text, "fields", FIELDS)
        rvars: dict[str, dict[str, str]] = {}
        for r in recipients:
            values = r.values()
            v = {f"{f}_t": values.get(f, "") for f in in_text}
            v.update({f"{f}_h": html.escape(values.get(f, "")) for f in in_html})
            v["delivery_id"] = str(r.delivery_id)
            v["list_unsubscribe"] = variant.list_unsubscribe(r)
            rvars[r.email] = v
        fields = [("from", variant.from_address), ("subject", variant.clean_subject),
                  ("html", body_html), ("text", body_text), ("h:Reply-To", variant.reply_to),
                  ("o:tag", f"issue-{variant.number}"), ("o:tracking", "no"),
                  ("v:delivery_id", "%recipient.delivery_id%"),
                  ("h:List-Unsubscribe", "%recipient.list_unsubscribe%"),
                  ("recipient-variables", json.dumps(rvars, ensure_ascii=False, separators=(",", ":")))]
        fields += [(f"h:{k}", v) for k, v in fixed_headers(variant).items()]
        fields += [("to", to_address(r.name, r.email)) for r in recipients]
        return fields

    def send_batch(self, variant: PreparedVariant, recipients: list[Recipient],
                   batch_key: str) -> list[Outcome]:
        body, ctype = multipart(self.form(variant, recipients))
        resp = self.post(f"/v3/{self.domain}/messages", data=body, headers={"Content-Type": ctype})
        if resp.status_code != 200:
            return self.all_failed(recipients, resp)
        try:
            mid = str(resp.json().get("id", ""))
        except ValueError:
            mid = ""
        return [Outcome(r.delivery_id, "sent", provider_message_id=mid) for r in recipients]

    def send_single(self, message: EmailMessage) -> str:
        text, body_html = plain_parts(message)
        form = [("from", str(message["From"])), ("to", str(message["To"])),
                ("subject", str(message["Subject"]))]
        form += [(k, v) for k, v in (("text", text), ("html", body_html)) if v]
        resp = self.post(f"/v3/{self.domain}/messages", data=form)
        if resp.status_code != 200:
            raise self.single_failed(resp)
        return str(resp.json().get("id", ""))


def multipart(fields: list[tuple[str, str]]) -> tuple[bytes, str]:
    """multipart/form-data without per-character escaping (urlencoding a 1000-recipient
    call costs more than building it)."""
    boundary = f"kpd{uuid.uuid4().hex}"
    dash = f"--{boundary}\r\n".encode()
    out: list[bytes] = []
    for name, value in fields:
        out += [dash, f'Content-Disposition: form-data; name="{name}"\r\n\r\n'.encode(),
                value.encode("utf-8"), b"\r\n"]
    out.append(f"--{boundary}--\r\n".encode())
    return b"".join(out), f"multipart/form-data; boundary={boundary}"


TRANSPORT = MailgunTransport
