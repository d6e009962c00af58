"""The MIME message built from the per-issue template: every header present and
well-formed, per-recipient values correct and verifiable, bodies identical to the
personalised parts."""

from __future__ import annotations

import email
import email.policy
import re
from email.message import EmailMessage
from email.utils import parseaddr, parsedate_to_datetime

import pytest

from pipeline.compose.message import Recipient, confirmation_message
from subscribers.tokens import link, read_token
from tests.golden import fixed_issue

SECRET = "test-secret-key"
BASE = "https://digest.example.com"


def _recipient(n: int, email_addr: str, name: str) -> Recipient:
    return Recipient(n, email_addr, name, link(BASE, SECRET, "unsubscribe", 100 + n),
                     link(BASE, SECRET, "preferences", 100 + n))


def _lf(text: str) -> str:
    return text.replace("\r\n", "\n")


def _parse(raw: bytes) -> EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)  # type: ignore[return-value]


@pytest.fixture(scope="module")
def variant():
    return fixed_issue.prepared()


def test_every_header_is_present_and_well_formed(variant):
    raw = variant.mime.build(_recipient(1, "ann@example.com", "Ann Example"))
    msg = _parse(raw)
    assert parseaddr(str(msg["From"])) == ("The Smooth Skin Digest", "digest@example.com")
    assert msg["Reply-To"] == "editors@example.com"
    assert parseaddr(str(msg["To"])) == ("Ann Example", "ann@example.com")
    assert msg["Subject"] == "The Smooth Skin Digest #42: Pat, don't rub: the two-minute KP habit"
    assert parsedate_to_datetime(str(msg["Date"])).tzinfo is not None
    assert re.fullmatch(r"<kpd\.7\.1@example\.com>", str(msg["Message-ID"]))
    assert msg["List-Id"] == "The Smooth Skin Digest <weekly.digest.example.com>"
    assert re.fullmatch(r"<https://digest\.example\.com/unsubscribe/[^>\s]+>", str(msg["List-Unsubscribe"]))
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["Feedback-ID"] == "42:weekly:digest:kpdigest"
    assert msg["X-Kpdigest-Issue"] == "42"
    assert msg["MIME-Version"] == "1.0"
    assert not msg.defects and all(not msg[k].defects for k in msg)
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    assert all(p["Content-Transfer-Encoding"] == "quoted-printable" for p in msg.iter_parts())
    head, body = raw.split(b"\r\n\r\n", 1)
    assert all(len(line) <= 998 for line in head.split(b"\r\n"))
    assert all(len(line) <= 76 for line in body.split(b"\r\n"))
    assert b"\n" not in raw.replace(b"\r\n", b"")  # CRLF only


def test_unsubscribe_urls_differ_per_recipient_and_verify(variant):
    seen = {}
    for n, (addr, name) in enumerate([("ann@example.com", "Ann"), ("bob@example.org", ""),
                                      ("cy@example.net", "Çy")], start=1):
        msg = _parse(variant.mime.build(_recipient(n, addr, name)))
        url = str(msg["List-Unsubscribe"])[1:-1]
        assert read_token(SECRET, "unsubscribe", url.rsplit("/", 1)[1]) == 100 + n
        html = msg.get_body(("html",)).get_content()
        text = msg.get_body(("plain",)).get_content()
        assert f'href="{url}"' in html and f"Unsubscribe: {url}" in text
        prefs = re.search(r"Preferences: (\S+)", text).group(1)
        assert read_token(SECRET, "preferences", prefs.rsplit("/", 1)[1]) == 100 + n
        assert f'href="{prefs}"' in html
        seen[addr] = url
    assert len(set(seen.values())) == 3


def test_bodies_equal_the_personalised_parts(variant):
    r = _recipient(3, "cy@example.net", "Çy Ünï & <Co>")
    msg = _parse(variant.mime.build(r))
    assert _lf(msg.get_body(("html",)).get_content()) == variant.html_for(r)
    assert _lf(msg.get_body(("plain",)).get_content()) == variant.text_for(r)
    assert "Hello Çy Ünï &amp; &lt;Co&gt;," in variant.html_for(r)
    assert "Hello Çy Ünï & <Co>," in variant.text_for(r)
    assert "KPD" not in variant.html_for(r) + variant.text_for(r)


def test_utf8_subject_and_names_are_encoded(variant):
    cfg = fixed_issue.config(site={"name": "Glatte Haut – Wochenbrief"},
                             sender={"from_name": "Glatte Haut – Redaktion"})
    items = fixed_issue.articles()
    items[0]["title"] = ("Crème à l'urée : ce qui marche vraiment contre la kératose pilaire, "
                         "testé sur six semaines")
    v = fixed_issue.prepared(cfg, fixed_issue.render(cfg, items))
    raw = v.mime.build(_recipient(1, "zoë@example.com", "Zoë Ünal"))
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert b"=?utf-8?" in head
    subject = head[head.index(b"Subject:"):head.index(b"\r\nDate:")]
    assert subject.isascii() and all(len(line) <= 78 for line in subject.split(b"\r\n"))
    msg = _parse(raw)
    assert msg["Subject"] == v.subject and "Crème à l'urée" in msg["Subject"]
    assert parseaddr(str(msg["From"]))[0] == "Glatte Haut – Redaktion"
    assert parseaddr(str(msg["To"])) == ("Zoë Ünal", "zoë@example.com")
    assert msg["List-Id"].startswith("Glatte Haut – Wochenbrief <")


def test_mailto_unsubscribe_is_added_when_configured():
    cfg = fixed_issue.config(sender={"unsubscribe_mailto": "leave@example.com"})
    v = fixed_issue.prepared(cfg)
    msg = _parse(v.mime.build(_recipient(1, "ann@example.com", "Ann")))
    value = str(msg["List-Unsubscribe"])
    assert value.startswith("<https://")
    assert value.endswith(", <mailto:leave@example.com?subject=unsubscribe>")
    api = v.headers_for(_recipient(1, "ann@example.com", "Ann"))
    assert api["List-Unsubscribe"] == value and "\r" not in api["List-Unsubscribe"]
    assert api["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert api["Feedback-ID"] == "42:weekly:digest:kpdigest" and api["X-Kpdigest-Issue"] == "42"


def test_long_values_keep_quoted_printable_lines_short(variant):
    r = Recipient(9, "x@example.com", "N" * 300, "https://digest.example.com/unsubscribe/" + "t" * 400,
                  "https://digest.example.com/preferences/" + "p" * 400)
    raw = variant.mime.build(r)
    assert all(len(line) <= 76 for line in raw.split(b"\r\n\r\n", 1)[1].split(b"\r\n"))
    msg = _parse(raw)
    assert f'href="{r.unsubscribe_url}"' in msg.get_body(("html",)).get_content()


def test_confirmation_email_is_plain_with_one_link():
    cfg = fixed_issue.config()
    msg = confirmation_message(cfg, to_email="ann@example.com", name="Ann",
                               confirm_url="https://digest.example.com/confirm/abc.def")
    parsed = _parse(msg.as_bytes())
    assert parsed.get_content_type() == "text/plain"
    body = parsed.get_content()
    assert re.findall(r"https?://\S+", body) == ["https://digest.example.com/confirm/abc.def"]
    assert "List-Unsubscribe" not in parsed and parsed["Subject"].startswith("Confirm your subscription")
