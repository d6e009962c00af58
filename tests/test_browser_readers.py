"""Readers in control, in headless Chromium against waitress on 127.0.0.1: pause from the
footer link of a real digest, and resubscribe from the unsubscribe confirmation."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import timedelta

import pytest
from sqlalchemy import select

from core.db import utcnow
from core.models import subscriptions
from pipeline.compose.personalize import new_key
from pipeline.compose.render import render_issue
from pipeline.deliver.engine import send_issue
from subscribers.store import add_subscriber
from subscribers.tokens import make_token
from tests.fakes.issue import make_issue

pytestmark = pytest.mark.browser


def _sub(ctx):
    with ctx.engine.connect() as conn:
        return conn.execute(select(subscriptions)).one()


def test_pause_from_the_footer_link_of_a_digest(site, page):
    ctx, base = site
    add_subscriber(ctx, "reader@example.com", "Reader")
    key = new_key()
    r = render_issue(ctx.config, number=1, date=utcnow(), subject="KP weekly", intro="",
                     articles=[], key=key, web_url=f"{base}/issues/1")
    send_issue(ctx, make_issue(ctx, html_text=(r.html, r.text), key=key), force=True)
    (eml,) = ctx.config.path("var/outbox").glob("issue-*.eml")
    msg = email.message_from_bytes(eml.read_bytes(), policy=email.policy.default)
    html = msg.get_body(("html",)).get_content()
    (link,) = re.findall(r'href="([^"]+/pause)"', html)
    assert link.startswith(f"{base}/preferences/")
    text = msg.get_body(("plain",)).get_content()
    assert f"Pause for a few weeks: {link}" in text
    page.goto(link)
    assert _sub(ctx).status == "active"  # opening the link changes nothing
    before = utcnow()
    page.click("button:has-text('Pause for 4 weeks')")
    assert "Paused until" in page.locator("[role=status]").first.inner_text()
    sub = _sub(ctx)
    assert sub.status == "paused"
    assert timedelta(weeks=4) <= sub.paused_until - before < timedelta(weeks=4, minutes=5)
    page.click("button:has-text('Resume now')")
    assert _sub(ctx).status == "active"


def test_resubscribe_after_unsubscribing(site, page):
    ctx, base = site
    sid = add_subscriber(ctx, "back@example.com")
    page.goto(f"{base}/unsubscribe/{make_token(ctx.config.secret_key, 'unsubscribe', sid)}")
    page.click("button:has-text('Unsubscribe')")
    assert page.locator("h1").inner_text() == "You are unsubscribed"
    assert _sub(ctx).status == "unsubscribed"
    page.check("#resubscribe input[name=consent]")
    page.click("button:has-text('Resubscribe')")
    assert page.locator("h1").inner_text() == "Welcome back"
    sub = _sub(ctx)
    assert sub.status == "active" and sub.consent_source == "/resubscribe"
    page.click("text=Choose topics or pause")
    assert page.locator("input[name=topics][value=kp]").is_checked()  # every topic: all ticked
