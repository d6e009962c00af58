"""Rendering once per variant: placeholders survive premailer and URL encoding, the size
budget holds, templates are sandboxed and premailer never touches the network, and the
web version carries no per-recipient data."""

from __future__ import annotations

import shutil
from pathlib import Path

import jinja2.exceptions
import pytest

from core.config import PROJECT_ROOT
from pipeline.compose.issues import archive_html
from pipeline.compose.message import Recipient
from pipeline.compose.personalize import Personalizer, token
from pipeline.compose.render import received_bytes, render_issue
from tests.golden import fixed_issue

KEY = fixed_issue.KEY


def _templates(tmp_path: Path, edit) -> Path:
    root = tmp_path / "templates"
    shutil.copytree(PROJECT_ROOT / "templates", root)
    page = root / "email" / "digest.html.j2"
    page.write_text(edit(page.read_text(encoding="utf-8")), encoding="utf-8")
    return root


def test_placeholders_survive_premailer_and_url_encoding(tmp_path):
    root = _templates(tmp_path, lambda html: html.replace(
        "</body>", '<a class="share" href="https://digest.example.com/share'
        '?to={{ recipient.email | urlencode }}&amp;u={{ recipient.unsubscribe_url | urlencode }}"'
        ' style="color:#1d5c87">Share</a></body>'))
    cfg = fixed_issue.config(paths={"templates": str(root)})
    r = fixed_issue.render(cfg)
    for field in ("unsubscribe_url", "preferences_url", "greeting", "email"):
        assert token(KEY, field) in r.html
    for field in ("unsubscribe_url", "preferences_url", "greeting"):
        assert token(KEY, field) in r.text
    assert 'style="' in r.html and "<style" in r.html  # inlined, media queries kept
    variant = fixed_issue.prepared(cfg, r)
    reader = Recipient(5, "zoë+kp@example.com", "Zoë", "https://digest.example.com/unsubscribe/a.b",
                       "https://digest.example.com/preferences/a.b")
    html = variant.html_for(reader)
    share = f"share?to={token(KEY, 'email')}&amp;u={token(KEY, 'unsubscribe_url')}"
    assert share in r.html  # intact inside an attribute after urlencode and premailer
    assert "KPD" not in html and 'href="https://digest.example.com/unsubscribe/a.b"' in html


def test_twelve_article_issue_fits_the_budget():
    r = fixed_issue.render()
    assert r.notes == []
    assert r.html_bytes == received_bytes(r.html, KEY) < 90 * 1024
    assert r.html.count('class="article"') == 12


def test_oversized_issue_is_trimmed_and_says_so():
    cfg = fixed_issue.config(digest={"max_html_bytes": 15000, "summary_chars": 5000})
    items = fixed_issue.articles()
    for n, a in enumerate(items):
        a["summary_html"] = "<p>" + " ".join(f"word{n}x{i}" for i in range(300)) + "</p>"
    r = fixed_issue.render(cfg, items)
    assert r.html_bytes <= 15000 and r.notes
    assert any(n.startswith("shortened the summary of") for n in r.notes)
    assert any(n.startswith("left out") for n in r.notes)
    kept = r.html.count('class="article"')
    assert 0 < kept < 12 and len([n for n in r.notes if n.startswith("left out")]) == 12 - kept


def test_default_budget_protects_against_gmail_clipping():
    cfg = fixed_issue.config()
    items = fixed_issue.articles()
    for a in items:
        a["summary_html"] = "<p>" + "Lactic acid and urea soften rough bumps. " * 8 + "</p>"
        a["image_url"] = "https://images.example.com/" + "x" * 1500 + ".jpg"
    r = fixed_issue.render(cfg, items * 3)  # 36 articles
    assert r.html_bytes <= cfg.digest.max_html_bytes < 102 * 1024
    assert r.notes


def test_templates_run_in_the_sandbox(tmp_path):
    root = _templates(tmp_path, lambda html: html.replace(
        "</body>", "{{ site.__class__.__init__.__globals__ }}</body>"))
    cfg = fixed_issue.config(paths={"templates": str(root)})
    with pytest.raises(jinja2.exceptions.SecurityError):
        fixed_issue.render(cfg)


def test_premailer_never_fetches_stylesheets(tmp_path, feed_server):
    feed_server.serve_bytes("/evil.css", b".brand { color: red; }", "text/css")
    root = _templates(tmp_path, lambda html: html.replace(
        "</head>", f'<link rel="stylesheet" href="{feed_server.url("/evil.css")}"></head>'))
    cfg = fixed_issue.config(paths={"templates": str(root)})
    fixed_issue.render(cfg)
    assert feed_server.requests == []


def test_web_version_has_no_per_recipient_data():
    cfg = fixed_issue.config()
    r = fixed_issue.render(cfg)
    web = archive_html(cfg, r, KEY)
    assert "KPD" not in web and "Hello" not in web
    assert 'href="https://digest.example.com/unsubscribe"' in web
    assert Personalizer(r.html, KEY).fill({}).replace("<p></p>", "") == web.replace(
        'https://digest.example.com/unsubscribe', "").replace(
        'https://digest.example.com/preferences', "").replace("<p></p>", "")


def test_variant_renders_only_its_articles():
    cfg = fixed_issue.config()
    beauty = [a for a in fixed_issue.articles() if a["picked_by"] == "editor" or "beauty-tips" in a["topics"]]
    r = render_issue(cfg, number=1, date=fixed_issue.DATE, subject="s", intro="A word from the editor.",
                     articles=beauty, key=KEY, web_url="https://digest.example.com/issues/1")
    assert "Keratosis pilaris</h2>" not in r.html and "Beauty tips</h2>" in r.html
    assert "A word from the editor." in r.html and "A word from the editor." in r.text
