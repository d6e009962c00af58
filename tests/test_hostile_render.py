"""Hostile text in titles, summaries, names and sources is shown as text: never executed
as HTML or template code, never substituted as a placeholder, never a header."""

from __future__ import annotations

import email
import email.policy

import lxml.html
import pytest

from pipeline.collect.sanitize import sanitize_html
from pipeline.compose.message import Recipient
from pipeline.compose.personalize import token
from tests.golden import fixed_issue

KEY = fixed_issue.KEY
REAL_LOOKALIKE = token(KEY, "unsubscribe_url")  # the issue's real key: only an insider knows it
OTHER_LOOKALIKE = token("FFFFFFFFFF", "unsubscribe_url")
HOSTILE = [
    ("<script>alert(1)</script><b>Bold</b> claim", "<p>Fine <script>alert(2)</script>"
     "<img src=x onerror=alert(3)><a href=\"javascript:alert(4)\">click</a></p>"),
    ("Template {{ 7 * 7 }} and {% for x in range(3) %}loop{% endfor %} {{ config }}",
     "<p>{{ recipient.unsubscribe_url }} {{ ''.__class__.__mro__ }}</p>"),
    (f"Free money {REAL_LOOKALIKE} {OTHER_LOOKALIKE}", f"<p>{REAL_LOOKALIKE} KPD{KEY}ZEMAILZ</p>"),
    ("Subject line\r\nBcc: victim@example.com\r\nX-Evil: 1", "<p>Header\r\nBcc: x@example.com</p>"),
    ('Quote " onmouseover="alert(5)" \' end', "<p>ok</p>"),
]


@pytest.fixture(scope="module")
def built():
    items = fixed_issue.articles()[:2]
    for n, (title, summary) in enumerate(HOSTILE):
        items.append({**fixed_issue.articles()[2], "id": 100 + n, "title": title,
                      "summary_html": sanitize_html(summary, "https://feed.example.com/"),
                      "source": "Feed {{ 1 + 1 }}\r\nBcc: s@example.com",
                      "image_url": "https://img.example.com/a.jpg", "image_alt": title,
                      "link": "javascript:alert(6)" if n == 0 else f"https://feed.example.com/{n}"})
    variant = fixed_issue.prepared(rendered=fixed_issue.render(items=items))
    r = Recipient(1, "ann@example.com", "Ann\r\nBcc: name@example.com <b>x</b>",
                  "https://digest.example.com/unsubscribe/REAL", "https://digest.example.com/preferences/REAL")
    raw = variant.mime.build(r)
    return variant, r, raw, email.message_from_bytes(raw, policy=email.policy.default)


def test_html_in_titles_and_summaries_is_text(built):
    variant, r, _, _ = built
    html = variant.html_for(r)
    doc = lxml.html.document_fromstring(html)
    assert doc.xpath("//script") == []
    assert all(not k.startswith("on") for el in doc.iter() if isinstance(el.tag, str) for k in el.attrib)
    assert all(not (el.get("href") or "").startswith("javascript:") for el in doc.iter("a"))
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;b&gt;Bold&lt;/b&gt; claim" in html
    titles = [h.text_content() for h in doc.xpath("//h3")]
    assert "<script>alert(1)</script><b>Bold</b> claim" in titles
    assert 'Quote " onmouseover="alert(5)" \' end' in titles
    assert "Hello Ann Bcc: name@example.com &lt;b&gt;x&lt;/b&gt;," in html


def test_template_syntax_is_never_evaluated(built):
    variant, r, _, _ = built
    html, text = variant.html_for(r), variant.text_for(r)
    for part in (html, text):
        assert "{{ 7 * 7 }}" in part and "49" not in part
        assert "{% for x in range(3) %}loop{% endfor %}" in part
        assert "Feed {{ 1 + 1 }} Bcc: s@example.com" in part
    assert "{{ recipient.unsubscribe_url }}" in html and "__mro__" in html


def test_placeholder_lookalikes_are_not_substituted(built):
    variant, r, _, _ = built
    for part in (variant.html_for(r), variant.text_for(r)):
        assert part.count(r.unsubscribe_url) == 1  # the footer only
        assert OTHER_LOOKALIKE in part
        assert f"kpd{KEY}ZUNSUBSCRIBEURLZ" in part and f"kpd{KEY}ZEMAILZ" in part
        assert "ann@example.com" not in part


def test_no_header_can_be_injected(built):
    _, _, raw, msg = built
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert b"\r\nBcc:" not in head and b"\r\nX-Evil:" not in head
    assert msg["Bcc"] is None and msg["X-Evil"] is None
    assert msg["Subject"].startswith("The Smooth Skin Digest #42:")
    assert "\n" not in msg["To"] and msg["To"].addresses[0].addr_spec == "ann@example.com"


def test_hostile_subject_is_one_header():
    items = fixed_issue.articles()
    items[0] = {**items[0], "title": "Win\r\nBcc: all@example.com\nSubject: spam"}
    variant = fixed_issue.prepared(rendered=fixed_issue.render(items=items))
    raw = variant.mime.build(fixed_issue.recipient())
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["Bcc"] is None and len(msg.get_all("Subject")) == 1
    assert msg["Subject"] == "The Smooth Skin Digest #42: Win Bcc: all@example.com Subject: spam"
