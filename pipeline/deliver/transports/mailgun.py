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
import re
import uuid
from email.message import EmailMessage
from json.encoder import encode_basestring
from typing import Any, ClassVar

import requests

from pipeline.compose.message import Recipient, clean_header
from pipeline.compose.personalize import FIELDS
from pipeline.compose.prepare import PreparedVariant
from pipeline.deliver.transports.base import Outcome
from pipeline.deliver.transports.http import (
    HttpTransport,
    PerVariant,
    fixed_headers,
    plain_parts,
    retry_after_header,
    to_address,
)

_AFTER_RE = re.compile(r"after (\d+(?:\.\d+)?) ?s", re.IGNORECASE)
_PROBE_URL = "https://kpd.invalid/probe"
_ESCAPED = "&<>\"'"
# How each per-recipient value is computed, in the generated code of RecipientVars.
_SOURCES = {"name": "name", "email": "r.email", "unsubscribe_url": "r.unsubscribe_url",
            "preferences_url": "r.preferences_url",
            "greeting": 'f"Hello {name}," if name else "Hello,"'}


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
        self.rvars = PerVariant(RecipientVars)
        self.headers = PerVariant(fixed_headers)

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
        fields = [("from", variant.from_address), ("subject", variant.clean_subject),
                  ("html", body_html), ("text", body_text), ("h:Reply-To", variant.reply_to),
                  ("o:tag", f"issue-{variant.number}"), ("o:tracking", "no"),
                  ("v:delivery_id", "%recipient.delivery_id%"),
                  ("h:List-Unsubscribe", "%recipient.list_unsubscribe%"),
                  ("recipient-variables", self.rvars.get(variant).encode(recipients))]
        fields += [(f"h:{k}", v) for k, v in self.headers.get(variant).items()]
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

    reconcile: ClassVar[str] = ("events API: `accepted` events of the recipient, matched on the "
                                "`delivery_id` user variable")

    def lookup(self, issue_number: int, rows: list[Any]) -> dict[int, str] | None:
        found: dict[int, str] = {}
        for r in rows:
            answer = self.search(f"/v3/{self.domain}/events", {
                "event": "accepted", "recipient": r.email, "tags": f"issue-{issue_number}",
                "limit": 300})
            for item in (answer or {}).get("items") or []:
                if str((item.get("user-variables") or {}).get("delivery_id")) == str(r.id):
                    headers = (item.get("message") or {}).get("headers") or {}
                    found[r.id] = str(headers.get("message-id") or item.get("id") or "")
        return found

    def send_single(self, message: EmailMessage) -> str:
        text, body_html = plain_parts(message)
        form = [("from", str(message["From"])), ("to", str(message["To"])),
                ("subject", str(message["Subject"]))]
        form += [(k, v) for k, v in (("text", text), ("html", body_html)) if v]
        resp = self.post(f"/v3/{self.domain}/messages", data=form)
        if resp.status_code != 200:
            raise self.single_failed(resp)
        return str(resp.json().get("id", ""))


def _clean(value: str) -> str:
    """clean_header() without its regex for the usual value (printable ASCII, unpadded)."""
    if value.isascii() and value.isprintable() and value[:1] != " " and value[-1:] != " ":
        return value
    return clean_header(value)


class RecipientVars:
    """The `recipient-variables` JSON of one variant, exactly as `json.dumps(...,
    ensure_ascii=False, separators=(",", ":"))` of per-recipient dicts would write it,
    from one f-string compiled per variant: a recipient costs the C-level escapes of the
    values the templates use, not two dicts and the generic encoder (a third of the
    sender's time at 1,000 recipients per call)."""

    def __init__(self, variant: PreparedVariant) -> None:
        in_html = getattr(variant.html, "fields", FIELDS)  # only what the templates use
        in_text = getattr(variant.text, "fields", FIELDS)
        probe = variant.list_unsubscribe(Recipient(0, "", "", _PROBE_URL, ""))
        before, _, after = probe.partition(_PROBE_URL)
        lines = ["def entry(r):", "    name = clean(r.name)"]
        lines += [f"    v_{f} = {_SOURCES[f]}" for f in FIELDS if f in in_html or f in in_text]
        lines += [f"    t_{f} = enc(v_{f})" for f in FIELDS if f in in_text or f in in_html]
        # html.escape() changes only these five characters; most values have none.
        lines += [f"    h_{f} = enc(esc(v_{f})) if ({' or '.join(f'{c!r} in v_{f}' for c in _ESCAPED)})"
                  f" else t_{f}" for f in in_html]
        items = [f'"{f}_t":{{t_{f}}}' for f in in_text] + [f'"{f}_h":{{h_{f}}}' for f in in_html]
        items += ['"delivery_id":"{r.delivery_id}"',
                  '"list_unsubscribe":{enc(before + clean(r.unsubscribe_url) + after)}']
        lines.append("    return f'{{" + ",".join(items) + "}}'")
        scope = {"clean": _clean, "enc": encode_basestring, "esc": html.escape,
                 "before": before, "after": after}
        # Field names come from FIELDS, never from data: the source is ours alone.
        exec(compile("\n".join(lines), f"<mailgun recipient-variables {variant.variant!r}>", "exec"), scope)
        self.entry = scope["entry"]

    def encode(self, recipients: list[Recipient]) -> str:
        enc, entry = encode_basestring, self.entry
        out = {r.email: entry(r) for r in recipients}  # a repeated address: its last values
        return "{" + ",".join([enc(e) + ":" + v for e, v in out.items()]) + "}"


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
