"""RFC 5322 messages from a template built once per issue variant.

Building an `EmailMessage` per recipient costs milliseconds; here the whole message
(headers, both parts, quoted-printable bodies) is encoded once, split at its per-recipient
slots, and each recipient costs a join plus the encoding of a few short values.
Quoted-printable slots are framed by soft line breaks, so lines stay within 76 characters
whatever the value's length.
"""

from __future__ import annotations

import binascii
import html
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from email.header import Header
from email.utils import formataddr, formatdate

from kpdigest.config import Config
from pipeline.personalize import FIELDS, Placeholders

CRLF = "\r\n"
_CTRL_RE = re.compile(r"[\x00-\x1f\x7f]+")
# Slots in the assembled template: header slots take a raw (already safe) value,
# body slots a value that is escaped for the part and quoted-printable encoded.
_SLOT_RE = re.compile(r"\x00(H|QH|QT):([a-z_]+)\x00")
HEADER_FIELDS = ("to", "message_id", "date", "list_unsubscribe")


def clean_header(value: str) -> str:
    """No CR, LF or other controls: a title or name can never inject a header."""
    return _CTRL_RE.sub(" ", value).strip()


def encode_header(value: str) -> str:
    value = clean_header(value)
    if value.isascii():
        return value
    return Header(value, "utf-8").encode(maxlinelen=76, linesep=CRLF)


def address(name: str, email: str) -> str:
    name = clean_header(name)
    return formataddr((name, clean_header(email)), charset="utf-8") if name else clean_header(email)


def _qp(data: str) -> str:
    return binascii.b2a_qp(data.encode("utf-8"), quotetabs=False, istext=True).decode("ascii")


@dataclass
class Recipient:
    delivery_id: int
    email: str
    name: str
    unsubscribe_url: str
    preferences_url: str

    def values(self) -> dict[str, str]:
        return {"unsubscribe_url": self.unsubscribe_url, "preferences_url": self.preferences_url,
                "name": self.name, "email": self.email}


class MessageTemplate:
    """One issue variant as a MIME byte template."""

    def __init__(self, cfg: Config, *, key: str, subject: str, html_body: str, text_body: str,
                 issue_number: int, issue_id: int, list_slug: str = "weekly") -> None:
        self.domain = cfg.sender.domain
        self.issue_id = issue_id
        self.mailto = cfg.sender.unsubscribe_mailto
        boundary = f"=_kpd_{key}_{issue_id}"
        placeholders = Placeholders(key)
        headers = [
            ("From", address(cfg.sender.from_name, cfg.sender.from_email)),
            ("Reply-To", cfg.sender.reply_to or cfg.sender.from_email),
            ("To", "\x00H:to\x00"),
            ("Subject", encode_header(subject)),
            ("Date", "\x00H:date\x00"),
            ("Message-ID", "\x00H:message_id\x00"),
            ("MIME-Version", "1.0"),
            ("Content-Language", cfg.site.language),
            ("List-Id", f"{encode_header(cfg.site.name)} <{cfg.sender.list_id}>"),
            ("List-Unsubscribe", "\x00H:list_unsubscribe\x00"),
            ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
            ("Feedback-ID", f"{issue_number}:{list_slug}:digest:{cfg.sender.feedback_id}"),
            ("X-Kpdigest-Issue", str(issue_number)),
            ("Content-Type", f'multipart/alternative; boundary="{boundary}"'),
        ]
        head = "".join(f"{k}: {v}{CRLF}" for k, v in headers)
        parts = [head, CRLF, "This is a multi-part message in MIME format.", CRLF]
        for ctype, body, kind in (("text/plain", text_body, "QT"), ("text/html", html_body, "QH")):
            parts += [f"--{boundary}{CRLF}", f'Content-Type: {ctype}; charset="utf-8"{CRLF}',
                      f"Content-Transfer-Encoding: quoted-printable{CRLF}{CRLF}",
                      self._qp_body(body, placeholders, kind), CRLF]
        parts.append(f"--{boundary}--{CRLF}")
        self._compile("".join(parts))

    @staticmethod
    def _qp_body(body: str, placeholders: Placeholders, kind: str) -> str:
        """QP-encode the literal text between placeholders; placeholders become slots."""
        out: list[str] = []
        pos = 0
        body = body.replace("\r\n", "\n")
        for m in placeholders.pattern().finditer(body):
            out.append(_qp(body[pos:m.start()]))
            out.append(f"=\n\x00{kind}:{placeholders.field_of(m.group(1))}\x00=\n")
            pos = m.end()
        out.append(_qp(body[pos:]))
        return "".join(out).replace("\n", CRLF)

    def _compile(self, template: str) -> None:
        self._literals: list[bytes] = []
        self._slots: list[tuple[str, str]] = []
        pos = 0
        for m in _SLOT_RE.finditer(template):
            self._literals.append(template[pos:m.start()].encode("ascii"))
            self._slots.append((m.group(1), m.group(2)))
            pos = m.end()
        self._literals.append(template[pos:].encode("ascii"))
        assert all(f in FIELDS or f in HEADER_FIELDS for _, f in self._slots)

    def header_values(self, r: Recipient, date: str | None = None) -> dict[str, str]:
        unsub = f"<{r.unsubscribe_url}>"
        if self.mailto:
            unsub += f", <mailto:{self.mailto}?subject=unsubscribe>"
        return {
            "to": address(r.name, r.email),
            "message_id": f"<kpd.{self.issue_id}.{r.delivery_id}@{self.domain}>",
            "date": date or formatdate(time.time(), usegmt=True),
            "list_unsubscribe": unsub,
        }

    def build(self, r: Recipient, date: str | None = None) -> bytes:
        """The complete message for one recipient."""
        heads = self.header_values(r, date)
        values: Mapping[str, str] = r.values()
        out = [self._literals[0]]
        for (kind, name), lit in zip(self._slots, self._literals[1:], strict=True):
            if kind == "H":
                out.append(heads[name].encode("utf-8"))
            else:
                v = values[name]
                out.append(_qp(html.escape(v) if kind == "QH" else v).encode("ascii"))
            out.append(lit)
        return b"".join(out)
