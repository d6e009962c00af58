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
import uuid
from dataclasses import dataclass
from email.header import Header
from email.message import EmailMessage
from email.utils import formataddr, formatdate, make_msgid

from core.config import Config
from pipeline.compose.personalize import FIELDS, Personalizer, Placeholders
from pipeline.compose.render import render_confirm

CRLF = "\r\n"
_CTRL_RE = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\x85]+")
# Slots in the assembled template: header slots take a raw (already safe) value,
# body slots a value that is escaped for the part and quoted-printable encoded.
_SLOT_RE = re.compile(r"\x00(H|QH|QT):([a-z_]+)\x00")
HEADER_FIELDS = ("to", "message_id", "date", "list_unsubscribe")
ISSUE_HEADER = "X-Kpdigest-Issue"


def clean_header(value: str) -> str:
    """No CR, LF or other controls: a title or name can never inject a header."""
    return _CTRL_RE.sub(" ", value).strip()


def encode_header(value: str, name: str = "Subject") -> str:
    """A header value folded to 78 columns; non-ASCII as RFC 2047 UTF-8 encoded words."""
    value = clean_header(value)
    if value.isascii() and len(name) + 2 + len(value) <= 78:
        return value
    charset = "us-ascii" if value.isascii() else "utf-8"
    return Header(value, charset, header_name=name).encode(maxlinelen=78, linesep=CRLF)


def address(name: str, email: str) -> str:
    """`"Name" <addr>` with the name encoded when it is not ASCII."""
    name, email = clean_header(name), clean_header(email)
    if not name:
        return email
    if email.isascii():
        return formataddr((name, email), charset="utf-8")
    # An internationalised address (SMTPUTF8) stays UTF-8; only the name is encoded.
    return f"{formataddr((name, 'x@x'), charset='utf-8').rpartition(' <')[0]} <{email}>"


def _qp(data: str) -> str:
    return binascii.b2a_qp(data.encode("utf-8"), quotetabs=False, istext=True).decode("ascii")


def list_unsubscribe(cfg: Config, url: str, fold: bool = True) -> str:
    """RFC 8058: the one-click HTTPS URL first, then the optional mailto (on a folded
    line in a raw message; unfolded for HTTP APIs that take header values)."""
    value = f"<{clean_header(url)}>"
    if cfg.sender.unsubscribe_mailto:
        sep = f",{CRLF} " if fold else ", "
        value += f"{sep}<mailto:{clean_header(cfg.sender.unsubscribe_mailto)}?subject=unsubscribe>"
    return value


def one_click(cfg: Config) -> bool:
    """RFC 8058 allows one-click unsubscribe (List-Unsubscribe-Post) for HTTPS URLs only."""
    return cfg.site.base_url.lower().startswith("https://")


def list_headers(cfg: Config, issue_number: int, list_slug: str = "weekly") -> list[tuple[str, str]]:
    """The headers every digest carries that do not depend on the recipient; one-click
    unsubscribe only where RFC 8058 allows it (an https `site.base_url`)."""
    post = [("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")] if one_click(cfg) else []
    return [
        ("List-Id", f"{encode_header(cfg.site.name, 'List-Id')} <{cfg.sender.list_id}>"),
        *post,
        ("Feedback-ID", f"{issue_number}:{list_slug}:digest:{cfg.sender.feedback_id}"),
        (ISSUE_HEADER, str(issue_number)),
    ]


@dataclass
class Recipient:
    delivery_id: int
    email: str
    name: str
    unsubscribe_url: str
    preferences_url: str

    def values(self) -> dict[str, str]:
        name = clean_header(self.name)
        return {"unsubscribe_url": self.unsubscribe_url, "preferences_url": self.preferences_url,
                "name": name, "email": self.email,
                "greeting": f"Hello {name}," if name else "Hello,"}


class _Clock:
    """`formatdate` once per second, not once per message."""

    def __init__(self) -> None:
        self.second = -1
        self.value = ""

    def now(self) -> str:
        second = int(time.time())
        if second != self.second:
            self.second, self.value = second, formatdate(second, usegmt=True)
        return self.value


class MessageTemplate:
    """One issue variant as a MIME byte template."""

    def __init__(self, cfg: Config, *, key: str, subject: str, html_body: str, text_body: str,
                 issue_number: int, issue_id: int, list_slug: str = "weekly") -> None:
        self.cfg = cfg
        self.domain = cfg.sender.domain
        self.issue_id = issue_id
        self._clock = _Clock()
        boundary = f"=_kpd_{key}_{issue_id}"
        placeholders = Placeholders(key)
        headers = [
            ("From", address(cfg.sender.from_name, cfg.sender.from_email)),
            ("Reply-To", clean_header(cfg.sender.reply_to or cfg.sender.from_email)),
            ("To", "\x00H:to\x00"),
            ("Subject", encode_header(subject)),
            ("Date", "\x00H:date\x00"),
            ("Message-ID", "\x00H:message_id\x00"),
            ("MIME-Version", "1.0"),
            ("Content-Language", clean_header(cfg.site.language)),
            *list_headers(cfg, issue_number, list_slug),
            ("List-Unsubscribe", "\x00H:list_unsubscribe\x00"),
            ("Content-Type", f'multipart/alternative;{CRLF} boundary="{boundary}"'),
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
        unknown = [f for _, f in self._slots if f not in FIELDS and f not in HEADER_FIELDS]
        if unknown:
            raise ValueError(f"unknown message slots: {unknown}")
        self._parts: list[bytes] = [self._literals[0]]
        for lit in self._literals[1:]:
            self._parts += [b"", lit]

    def header_values(self, r: Recipient, date: str | None = None) -> dict[str, str]:
        return {
            "to": address(r.name, r.email),
            "message_id": f"<kpd.{self.issue_id}.{r.delivery_id}@{self.domain}>",
            "date": date or self._clock.now(),
            "list_unsubscribe": list_unsubscribe(self.cfg, r.unsubscribe_url),
        }

    @property
    def literals(self) -> list[bytes]:
        """The template's fixed stretches; slot i lies between literals i and i + 1."""
        return self._literals

    def build(self, r: Recipient, date: str | None = None) -> bytes:
        """The complete message for one recipient, CRLF line endings."""
        return b"".join(self.build_parts(r, date))

    def build_parts(self, r: Recipient, date: str | None = None) -> list[bytes]:
        """The message as pieces: literals at even indices, slot i's value at 2i + 1
        (a DKIM signer reuses the literals' canonical form)."""
        heads = self.header_values(r, date)
        values = r.values()
        encoded: dict[tuple[str, str], bytes] = {}
        parts = self._parts.copy()
        for i, slot in enumerate(self._slots):
            data = encoded.get(slot)
            if data is None:
                kind, name = slot
                if kind == "H":
                    data = heads[name].encode("utf-8")
                else:
                    v = values[name]
                    data = _qp(html.escape(v) if kind == "QH" else v).replace("\n", CRLF).encode("ascii")
                encoded[slot] = data
            parts[2 * i + 1] = data
        return parts


def confirmation_message(cfg: Config, *, to_email: str, name: str, confirm_url: str) -> EmailMessage:
    """The double opt-in email: plain text, one link, no list headers (it is not a list
    message yet). One per sign-up, so a plain EmailMessage is fast enough."""
    subject, body = render_confirm(cfg, confirm_url=confirm_url, name=name)
    msg = EmailMessage()
    msg["From"] = address(cfg.sender.from_name, cfg.sender.from_email)
    msg["To"] = address(name, to_email)
    msg["Reply-To"] = clean_header(cfg.sender.reply_to or cfg.sender.from_email)
    msg["Subject"] = clean_header(subject)
    msg["Date"] = formatdate(usegmt=True)
    msg["Message-ID"] = make_msgid("kpd.confirm", domain=cfg.sender.domain)
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(body, cte="quoted-printable")
    return msg


def copy_for_test(cfg: Config, to: str, subject: str, text_template: str, html_template: str,
              key: str, values: dict[str, str]) -> EmailMessage:
    """A digest rendering filled for one address and labelled as a test (`[Test]` subject,
    `X-Kpdigest-Test`): sent outside the ledger, so it carries no list headers."""
    msg = EmailMessage()
    msg["From"] = formataddr((cfg.sender.from_name, cfg.sender.from_email))
    msg["To"] = to
    msg["Subject"] = clean_header(f"[Test] {subject}")
    msg["Date"] = formatdate()
    msg["Message-ID"] = f"<test-{uuid.uuid4().hex}@{cfg.sender.domain}>"
    msg["X-Kpdigest-Test"] = "yes"
    msg.set_content(Personalizer(text_template, key).fill(values))
    msg.add_alternative(Personalizer(html_template, key).fill(values, escape=html.escape),
                        subtype="html")
    return msg
