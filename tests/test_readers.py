"""Readers in control, through the Flask test client: resubscribe with fresh consent
evidence, topics shown as chosen, pause for 2, 4 or 8 weeks (page and footer link)."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from core.models import events, subscriptions, suppressions
from subscribers.store import add_subscriber, suppress, unsubscribe
from subscribers.tokens import make_token
from tests.test_web_helpers import CSRF_RE, csrf, fresh_outbox, link_in, make_app

SECRET = "test-secret-key"
CHECKED = re.compile(r'<input type="checkbox" name="topics" value="([^"]+)" checked>')


@pytest.fixture
def client(ctx):
    return make_app(ctx).test_client()


def _sub(ctx):
    with ctx.engine.connect() as conn:
        return conn.execute(select(subscriptions)).one()


def _suppressed(ctx):
    with ctx.engine.connect() as conn:
        return conn.execute(select(suppressions.c.reason)).scalars().all()


def test_resubscribe_from_the_unsubscribe_confirmation(ctx, client):
    sid = add_subscriber(ctx, "back@example.com")
    token = make_token(SECRET, "unsubscribe", sid)
    page = client.post(f"/unsubscribe/{token}").get_data(as_text=True)
    assert "You are unsubscribed" in page and "Resubscribe" in page
    assert _sub(ctx).status == "unsubscribed" and _suppressed(ctx) == ["unsubscribed"]
    path = f"/resubscribe/{token}"
    assert "/resubscribe/" in page
    token_csrf = CSRF_RE.search(page).group(1)  # the form on the page the reader sees
    refused = client.post(path, data={"csrf_token": token_csrf})  # the consent box unticked
    assert refused.status_code == 400 and _sub(ctx).status == "unsubscribed"
    done = client.post(path, data={"csrf_token": token_csrf, "consent": "yes"},
                       environ_base={"REMOTE_ADDR": "10.2.0.9"}, headers={"User-Agent": "Back/1"})
    assert done.status_code == 200 and "Welcome back" in done.get_data(as_text=True)
    sub = _sub(ctx)
    assert (sub.status, sub.unsubscribed_at) == ("active", None)
    assert (sub.consent_source, sub.consent_ip, sub.consent_user_agent) == \
        ("/resubscribe", "10.2.0.9", "Back/1")
    assert sub.consent_text == ctx.config.web.consent_text and _suppressed(ctx) == []
    with ctx.engine.connect() as conn:
        kinds = [e.kind for e in conn.execute(select(events).order_by(events.c.id))]
    assert kinds[-2:] == ["unsubscribed", "resubscribed"]


def test_resubscribe_from_the_preferences_page(ctx, client):
    sid = add_subscriber(ctx, "pref@example.com")
    unsubscribe(ctx, sid, source="test")
    path = f"/preferences/{make_token(SECRET, 'preferences', sid)}"
    page = client.get(path).get_data(as_text=True)
    assert "unsubscribed from everything" in page and "Resubscribe" in page
    done = client.post(f"{path}/resubscribe", data={"csrf_token": csrf(client, path), "consent": "yes"})
    assert done.status_code == 200 and _sub(ctx).status == "active"
    assert _sub(ctx).consent_source == "/preferences/resubscribe"
    assert "Resubscribe" not in client.get(path).get_data(as_text=True)
    assert client.post(f"{path}/resubscribe", data={"consent": "yes"}).status_code == 400  # no CSRF


def test_a_bounced_address_cannot_resubscribe_itself(ctx, client):
    sid = add_subscriber(ctx, "bounce@example.com")
    with ctx.engine.begin() as conn:
        suppress(conn, "bounce@example.com", "bounced")
    path = f"/preferences/{make_token(SECRET, 'preferences', sid)}"
    page = client.get(path).get_data(as_text=True)
    assert "blocked after a bounce" in page and "Resubscribe" not in page
    resp = client.post(f"{path}/resubscribe", data={"csrf_token": csrf(client, path), "consent": "yes"})
    assert resp.status_code == 409 and _suppressed(ctx) == ["bounced"]


@pytest.mark.parametrize("ticked", [["kp", "beauty-tips"], ["kp"], []])
def test_topics_are_shown_as_chosen_at_sign_up(ctx, client, ticked):
    """Both ticked is stored as "every topic" and must show both ticked, not none."""
    client.post("/subscribe", data={"email": "t@example.com", "consent": "yes", "topics": ticked,
                                    "csrf_token": csrf(client)})
    (msg,) = fresh_outbox(ctx)()  # the lane sends the confirmation
    sid = _sub(ctx).subscriber_id
    path = link_in(msg, ctx.config.site.base_url)
    client.post(path, data={"csrf_token": csrf(client, path)})
    page = client.get(f"/preferences/{make_token(SECRET, 'preferences', sid)}").get_data(as_text=True)
    shown = set(CHECKED.findall(page))
    assert shown == (set(ticked) or {"kp", "beauty-tips"})
