"""Postmark: `POST /email/batch`, up to 500 complete messages per call, on the Broadcasts
message stream, each carrying our delivery id in `Metadata`.

The call answers 200 even when some messages fail, so every message's ErrorCode is read:
0 is accepted, 406 an inactive (bounced, complained, unsubscribed) recipient to suppress,
anything else a failure for that recipient with Postmark's message. Postmark sends no
retry time with its 429, so the backoff is our own.
"""

from __future__ import annotations

import json
from email.message import EmailMessage
from typing import Any, ClassVar

from core.errors import AccountError
from pipeline.compose.message import Recipient
from pipeline.compose.prepare import PreparedVariant
from pipeline.deliver.transports.base import Outcome, UnknownOutcome
from pipeline.deliver.transports.http import (
    HttpTransport,
    JsonArray,
    fixed_headers,
    json_str,
    plain_parts,
    to_address,
)

INACTIVE = 406
# Per-message codes that mean "not now" rather than "never" (rate limits, overload).
TRANSIENT = {429, 1000}
# Codes about the account, not the recipient: bad token (10), sender signature missing or
# unconfirmed (400, 401), sending not allowed or pending approval (405, 412).
ACCOUNT = {10, 400, 401, 405, 412}


class PostmarkTransport(HttpTransport):
    name: ClassVar[str] = "postmark"
    max_batch: ClassVar[int] = 500
    recipient_variables: ClassVar[bool] = False
    idempotent: ClassVar[bool] = False
    rate_limit_signal: ClassVar[str] = "HTTP 429 without a retry time (exponential backoff)"
    secret_name: ClassVar[str] = "postmark_token"

    def auth_headers(self) -> dict[str, str]:
        return {"X-Postmark-Server-Token": self.secret(), "Accept": "application/json",
                "Content-Type": "application/json"}

    @property
    def stream(self) -> str:
        return str(self.options.get("message_stream", "broadcast"))

    def fixed_part(self, variant: PreparedVariant) -> tuple[str, str]:
        head = json.dumps({"From": variant.from_address, "ReplyTo": variant.reply_to,
                           "Subject": variant.clean_subject, "MessageStream": self.stream,
                           "Tag": f"issue-{variant.number}", "TrackOpens": False, "TrackLinks": "None"},
                          separators=(",", ":"))[:-1]
        headers = json.dumps([{"Name": k, "Value": v} for k, v in fixed_headers(variant).items()],
                             separators=(",", ":"))[1:-1]
        return head, headers

    def message(self, variant: PreparedVariant, r: Recipient, sep: bytes = b"") -> bytes:
        """One message as JSON (after `sep`): the variant's fixed part joined with this
        recipient's, in one join of byte pieces."""
        head, headers = self.fixed.get(variant)
        html_filler, text_filler = self.fillers.get(variant)
        values = r.values()
        unsub = json_str(variant.list_unsubscribe(r))
        own = (f'{head},"To":{json_str(to_address(r.name, r.email))},'
               f'"Headers":[{{"Name":"List-Unsubscribe","Value":{unsub}}},{headers}],'
               f'"Metadata":{{"delivery_id":"{r.delivery_id}","issue":"{variant.number}"}},'
               f'"HtmlBody":').encode("ascii")
        return b"".join([sep, own, *html_filler.fill_bytes(values), b',"TextBody":',
                         *text_filler.fill_bytes(values), b"}"])

    def send_batch(self, variant: PreparedVariant, recipients: list[Recipient],
                   batch_key: str) -> list[Outcome]:
        messages = [self.message(variant, r, b"," if i else b"") for i, r in enumerate(recipients)]
        resp = self.post("/email/batch", data=JsonArray(messages, separated=True))
        if resp.status_code != 200:
            _account_check([_json_or_none(resp)])
            return self.all_failed(recipients, resp)
        try:
            results = resp.json()
        except ValueError as exc:
            raise UnknownOutcome(f"postmark: unreadable answer to an accepted batch: {exc}") from exc
        if not isinstance(results, list) or len(results) != len(recipients):
            raise UnknownOutcome("postmark: the answer does not list every message of the batch")
        if not any(isinstance(m, dict) and m.get("ErrorCode") == 0 for m in results):
            _account_check(results)  # nothing accepted, for a reason about the account
        return [_outcome(r, res) for r, res in zip(recipients, results, strict=True)]

    reconcile: ClassVar[str] = ("outbound message search by recipient and the issue's tag, "
                                "matched on `Metadata.delivery_id`")

    def lookup(self, issue_number: int, rows: list[Any]) -> dict[int, str] | None:
        found: dict[int, str] = {}
        for r in rows:
            answer = self.search("/messages/outbound", {
                "count": 50, "offset": 0, "recipient": r.email, "tag": f"issue-{issue_number}",
                "metadata_delivery_id": str(r.id)})
            for m in (answer or {}).get("Messages") or []:
                if str((m.get("Metadata") or {}).get("delivery_id")) == str(r.id):
                    found[r.id] = str(m.get("MessageID") or "")
        return found

    def send_single(self, message: EmailMessage) -> str:
        text, body_html = plain_parts(message)
        payload = {"From": str(message["From"]), "To": str(message["To"]),
                   "Subject": str(message["Subject"]), "TextBody": text, "HtmlBody": body_html,
                   "MessageStream": str(self.options.get("transactional_stream", "outbound"))}
        if message["Reply-To"]:
            payload["ReplyTo"] = str(message["Reply-To"])
        resp = self.post("/email", data=json.dumps(payload).encode())
        if resp.status_code != 200 or resp.json().get("ErrorCode", 0) != 0:
            raise self.single_failed(resp)
        return str(resp.json().get("MessageID", ""))


def _json_or_none(resp: Any) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None


def _account_check(answers: list[Any]) -> None:
    """AccountError when an answer's ErrorCode is about the account, not a recipient."""
    for a in answers:
        if isinstance(a, dict) and a.get("ErrorCode") in ACCOUNT:
            raise AccountError(f"postmark {a['ErrorCode']}: {a.get('Message', '')} (check "
                               "KPDIGEST_POSTMARK_TOKEN and the sender signature)")


def _outcome(r: Recipient, res: dict[str, object]) -> Outcome:
    code = int(res.get("ErrorCode", -1) or 0) if isinstance(res, dict) else -1
    why = f"postmark {code}: {res.get('Message', '')}" if isinstance(res, dict) else "postmark: bad answer"
    if code == 0:
        return Outcome(r.delivery_id, "sent", provider_message_id=str(res.get("MessageID") or ""))
    if code == INACTIVE:
        return Outcome(r.delivery_id, "suppressed", error=why)
    if code in TRANSIENT:
        return Outcome(r.delivery_id, "retry", error=why)
    return Outcome(r.delivery_id, "failed", error=why)


TRANSPORT = PostmarkTransport
