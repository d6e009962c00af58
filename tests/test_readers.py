"""Readers in control, through the Flask test client: resubscribe with fresh consent
evidence, topics shown as chosen, pause for 2, 4 or 8 weeks (page and footer link)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from freezegun import freeze_time
from sqlalchemy import func, select

from core.db import utcnow
from core.models import deliveries, events, subscribers, subscriptions, suppressions
from pipeline.compose.issues import get_issue
from subscribers import consent
from subscribers.consent import end_pauses
from subscribers.store import add_subscriber, paused, suppress, unsubscribe
from subscribers.tokens import make_token
from tests.fakes.issue import add_subscribers, emails, make_issue
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


def test_pause_from_the_footer_link_and_the_preferences_page(ctx, client):
    sid = add_subscriber(ctx, "p@example.com")
    prefs = f"/preferences/{make_token(SECRET, 'preferences', sid)}"
    page = client.get(f"{prefs}/pause")  # the footer link: GET only shows the choice
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and all(f"Pause for {w} weeks" in text for w in (2, 4, 8))
    assert _sub(ctx).status == "active"
    token = csrf(client, f"{prefs}/pause")
    before = utcnow()
    done = client.post(f"{prefs}/pause", data={"csrf_token": token, "weeks": "8"})
    assert done.status_code == 200 and "Paused until" in done.get_data(as_text=True)
    sub = _sub(ctx)
    assert sub.status == "paused"
    assert timedelta(weeks=8) <= sub.paused_until - before < timedelta(weeks=8, minutes=5)
    assert client.post(f"{prefs}/pause", data={"csrf_token": token, "weeks": "3"}).status_code == 400
    assert client.post(f"{prefs}/pause", data={"csrf_token": token, "weeks": "x"}).status_code == 400
    assert client.post(f"{prefs}/pause", data={"weeks": "2"}).status_code == 400  # no CSRF token
    assert "Resume now" in client.get(prefs).get_data(as_text=True)
    client.post(f"{prefs}/pause", data={"csrf_token": token, "weeks": "resume"})
    assert (_sub(ctx).status, _sub(ctx).paused_until) == ("active", None)
    assert client.get("/preferences/pause").status_code == 200  # the archive's generic link


def test_paused_readers_are_left_out_until_their_pause_ends(ctx):
    """Freezegun across five weeks: one issue a week; a 2-week pause skips two issues and
    the reader is back by themselves for the third, before the daily job marks them."""
    start = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
    with freeze_time(start) as clock:
        add_subscribers(ctx, 3)
        with ctx.engine.connect() as conn:
            sid = conn.execute(select(subscribers.c.id).where(
                subscribers.c.email == emails(1)[0])).scalar_one()
        until = consent.pause(ctx, sid, 2)
        assert until == start + timedelta(weeks=2)
        got = []
        for week in range(5):
            clock.move_to(start + timedelta(weeks=week, hours=1))
            number = make_issue(ctx)
            with ctx.engine.connect() as conn:
                issue = get_issue(conn, number)
                got.append(conn.execute(select(func.count()).select_from(deliveries).where(
                    deliveries.c.issue_id == issue.id, deliveries.c.subscriber_id == sid)).scalar())
            if week == 2:
                assert _status_of(ctx, sid) == "paused"  # not yet marked: the freeze knew
                assert end_pauses(ctx) == 1 and _status_of(ctx, sid) == "active"
        assert got == [0, 0, 1, 1, 1]
        assert [r.email for r in paused(ctx)] == []


def test_the_admin_sees_who_is_paused_until_when(ctx):
    from tests.test_web_helpers import login_as

    sid = add_subscriber(ctx, "later@example.com")
    until = consent.pause(ctx, sid, 4)
    assert [(r.email, r.paused_until) for r in paused(ctx)] == [("later@example.com", until)]
    client = make_app(ctx).test_client()
    login_as(client, ctx, "admin")
    page = client.get("/desk/subscribers/paused").get_data(as_text=True)
    assert "later@example.com" in page and until.strftime("%d %b %Y") in page
    detail = client.get(f"/desk/subscribers/{sid}").get_data(as_text=True)
    assert f"paused until {until:%d %b %Y}" in detail


def _status_of(ctx, sid):
    with ctx.engine.connect() as conn:
        return conn.execute(select(subscriptions.c.status).where(
            subscriptions.c.subscriber_id == sid)).scalar_one()


def test_subscribers_list_shows_until_when_a_reader_is_paused(ctx):
    from click.testing import CliRunner

    from kpdigest.main import main

    sid = add_subscriber(ctx, "cli@example.com")
    until = consent.pause(ctx, sid, 2)
    out = CliRunner().invoke(main, ["--config", str(ctx.config.source), "subscribers", "list"])
    assert out.exit_code == 0 and f"paused until {until:%Y-%m-%d}" in out.output
