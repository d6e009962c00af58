"""Public pages through the Flask test client: sign-up to one-click unsubscribe, preferences,
privacy links and the archive, each with its refusals."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from core.models import events, subscribers, subscriptions, suppressions
from pipeline.compose.issues import build_issue
from pipeline.curate.queue import add_markdown
from pipeline.deliver.lane import drain
from subscribers.store import add_subscriber, suppress
from subscribers.tokens import make_token
from tests.test_web_helpers import csrf, fresh_outbox, link_in, make_app

SECRET = "test-secret-key"


@pytest.fixture
def client(ctx):
    return make_app(ctx).test_client()


def _subscribe(client, **fields):
    ip = fields.pop("ip", "10.0.0.1")
    data = {"email": "new@example.com", "name": "New", "consent": "yes", "csrf_token": csrf(client)}
    data.update(fields)
    resp = client.post("/subscribe", data=data, environ_base={"REMOTE_ADDR": ip},
                       headers={"User-Agent": "TestAgent/1.0"})
    drain(client.application.extensions["kpdigest"])  # the lane records the sign-up
    return resp


def _status(ctx, addr):
    with ctx.engine.connect() as conn:
        return conn.execute(select(subscriptions.c.status).join(
            subscribers, subscribers.c.id == subscriptions.c.subscriber_id)
            .where(subscribers.c.email == addr)).scalar()


def test_subscribe_confirm_unsubscribe_flow(ctx, client):
    new_mail = fresh_outbox(ctx)
    resp = _subscribe(client, topics="kp")
    assert resp.status_code == 200 and "Check your inbox" in resp.get_data(as_text=True)
    assert _status(ctx, "new@example.com") == "pending"
    with ctx.engine.connect() as conn:
        sub = conn.execute(select(subscriptions)).one()
    assert sub.consent_ip == "10.0.0.1" and sub.consent_user_agent == "TestAgent/1.0"
    assert sub.consent_text == ctx.config.web.consent_text and sub.consent_version == "2026-11"
    assert sub.consent_source == "/subscribe" and sub.topics == "kp" and sub.confirmed_at is None

    (msg,) = new_mail()
    assert msg["To"] == "new@example.com" and "confirm" in msg["Subject"].lower()
    path = link_in(msg, ctx.config.site.base_url)
    assert path.startswith("/confirm/")
    page = client.get(path)
    assert page.status_code == 200 and _status(ctx, "new@example.com") == "pending"  # GET only asks
    done = client.post(path, data={"csrf_token": csrf(client, path)})
    assert done.status_code == 200 and _status(ctx, "new@example.com") == "active"

    sid = sub.subscriber_id
    token = make_token(SECRET, "unsubscribe", sid)
    assert "Unsubscribe" in client.get(f"/unsubscribe/{token}").get_data(as_text=True)
    assert _status(ctx, "new@example.com") == "active"
    mail_client = client.application.test_client()  # a mail client: no cookies, no CSRF token
    first = mail_client.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"})
    again = mail_client.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"})
    assert first.status_code == 200 and again.status_code == 200 and "Location" not in first.headers
    assert _status(ctx, "new@example.com") == "unsubscribed"
    with ctx.engine.connect() as conn:
        assert conn.execute(select(suppressions.c.reason)).scalar() == "unsubscribed"
        kinds = [e.kind for e in conn.execute(select(events).order_by(events.c.id))]
    assert kinds == ["signup_pending", "confirmed", "unsubscribed"]


def test_confirming_again_after_unsubscribe_lifts_it(ctx, client):
    sid = add_subscriber(ctx, "back@example.com")
    client.post(f"/unsubscribe/{make_token(SECRET, 'unsubscribe', sid)}")
    new_mail = fresh_outbox(ctx)
    _subscribe(client, email="back@example.com")
    (msg,) = new_mail()
    path = link_in(msg, ctx.config.site.base_url)
    client.post(path, data={"csrf_token": csrf(client, path)})
    assert _status(ctx, "back@example.com") == "active"
    with ctx.engine.connect() as conn:
        assert conn.execute(select(suppressions)).first() is None


def test_subscribe_to_chosen_public_lists_only(ctx, client):
    from core.db import utcnow
    from core.models import lists

    with ctx.engine.begin() as conn:
        for slug, public in (("monthly", True), ("staff", False)):
            conn.execute(lists.insert().values(slug=slug, name=slug.title(), description="", public=public,
                                               double_optin=True, created_at=utcnow()))
    page = client.get("/").get_data(as_text=True)
    assert 'value="monthly"' in page and 'value="staff"' not in page
    _subscribe(client, lists=["monthly", "staff"])
    with ctx.engine.connect() as conn:
        slugs = conn.execute(select(lists.c.slug).join(subscriptions, subscriptions.c.list_id == lists.c.id)
                             ).scalars().all()
    assert slugs == ["monthly"]


def test_subscribe_refusals(ctx, client):
    no_consent = _subscribe(client, consent="")
    assert no_consent.status_code == 400 and "tick the box" in no_consent.get_data(as_text=True)
    bad = _subscribe(client, email="not-an-address")
    assert bad.status_code == 400 and "valid email" in bad.get_data(as_text=True)
    new_mail = fresh_outbox(ctx)
    bot = _subscribe(client, email="bot@example.com", website="http://spam.example")
    assert bot.status_code == 200 and "Check your inbox" in bot.get_data(as_text=True)
    assert _status(ctx, "bot@example.com") is None and new_mail() == []
    no_csrf = client.post("/subscribe", data={"email": "x@example.com", "consent": "yes"})
    assert no_csrf.status_code == 400 and _status(ctx, "x@example.com") is None


def test_subscribe_is_rate_limited_per_ip(make_ctx):
    ctx = make_ctx(web={"subscribe_rate_per_hour": 2})
    client = make_app(ctx).test_client()
    codes = [_subscribe(client, email=f"p{i}@example.com").status_code for i in range(3)]
    assert codes == [200, 200, 429]
    other_ip = _subscribe(client, email="q@example.com", ip="10.0.0.2")
    assert other_ip.status_code == 200


def test_bad_and_expired_tokens_are_refused(make_ctx):
    ctx = make_ctx(web={"confirm_expiry_hours": 0})
    client = make_app(ctx).test_client()
    sid = add_subscriber(ctx, "t@example.com")
    expired = make_token(SECRET, "confirm", sid)
    import time

    time.sleep(1.1)
    assert client.get(f"/confirm/{expired}").status_code == 400
    for path in ("/unsubscribe/garbage", "/preferences/garbage", "/confirm/garbage", "/export/x", "/erase/x"):
        assert client.get(path).status_code == 400, path
    assert client.post("/unsubscribe/garbage").status_code == 400
    assert _status(ctx, "t@example.com") == "active"


def test_preferences_topics_pause_and_name(ctx, client):
    sid = add_subscriber(ctx, "pref@example.com", "Pat")
    path = f"/preferences/{make_token(SECRET, 'preferences', sid)}"
    page = client.get(path).get_data(as_text=True)
    assert "pref@example.com" in page and "Keratosis pilaris" in page
    saved = client.post(path, data={"csrf_token": csrf(client, path), "topics": ["beauty-tips"],
                                    "name": "Patricia"})
    assert saved.status_code == 200 and "Saved" in saved.get_data(as_text=True)
    client.post(f"{path}/pause", data={"csrf_token": csrf(client, path), "weeks": "4"})
    with ctx.engine.connect() as conn:
        sub = conn.execute(select(subscriptions)).one()
        name = conn.execute(select(subscribers.c.name)).scalar()
    assert (sub.status, sub.topics, name) == ("paused", "beauty-tips", "Patricia")
    assert "Paused until" in client.get(path).get_data(as_text=True)
    client.post(f"{path}/pause", data={"csrf_token": csrf(client, path), "weeks": "resume"})
    client.post(path, data={"csrf_token": csrf(client, path)})
    with ctx.engine.connect() as conn:
        sub = conn.execute(select(subscriptions)).one()
    assert (sub.status, sub.topics) == ("active", None)
    assert client.post(path, data={"topics": ["kp"]}).status_code == 400  # no CSRF token


def test_generic_links_and_manage_do_not_enumerate(ctx, client):
    add_subscriber(ctx, "known@example.com")
    for path in ("/unsubscribe", "/preferences", "/privacy"):
        page = client.get(path)
        assert page.status_code == 200 and 'name="email"' in page.get_data(as_text=True)
    new_mail = fresh_outbox(ctx)
    answers = []
    for addr in ("known@example.com", "unknown@example.com", "broken"):
        r = client.post("/manage", data={"email": addr, "action": "preferences", "csrf_token": csrf(client)})
        answers.append((r.status_code, r.get_data(as_text=True)))
    assert len(set(answers)) == 1 and answers[0][0] == 200
    (msg,) = new_mail()
    assert msg["To"] == "known@example.com"
    assert link_in(msg, ctx.config.site.base_url).startswith("/preferences/")


def test_subscribe_answers_the_same_for_known_unknown_and_suppressed(ctx, client):
    add_subscriber(ctx, "active@example.com")
    with ctx.engine.begin() as conn:
        suppress(conn, "complained@example.com", "complained")
    pages = {_subscribe(client, email=a, ip=f"10.1.0.{i}").get_data(as_text=True)
             for i, a in enumerate(("active@example.com", "fresh@example.com", "complained@example.com"))}
    assert len(pages) == 1
    with ctx.engine.connect() as conn:
        assert conn.execute(select(subscribers.c.id).where(subscribers.c.email == "complained@example.com")
                            ).first() is None


def test_export_and_erase_by_emailed_link(ctx, client):
    sid = add_subscriber(ctx, "me@example.com", "Me")
    prefs = f"/preferences/{make_token(SECRET, 'preferences', sid)}"
    new_mail = fresh_outbox(ctx)
    client.post(f"{prefs}/privacy", data={"action": "export", "csrf_token": csrf(client, prefs)})
    client.post("/manage", data={"email": "me@example.com", "action": "erase", "csrf_token": csrf(client)})
    export_msg, erase_msg = new_mail()
    export_path = link_in(export_msg, ctx.config.site.base_url)
    data = client.get(export_path)
    assert data.status_code == 200 and "attachment" in data.headers["Content-Disposition"]
    dump = json.loads(data.get_data())
    assert dump["subscriber"]["email"] == "me@example.com" and dump["subscriptions"][0]["status"] == "active"
    assert dump["events"][0]["kind"] == "subscribed"
    erase_path = link_in(erase_msg, ctx.config.site.base_url)
    assert erase_path.startswith("/erase/")
    assert client.get(erase_path).status_code == 200
    assert client.post(erase_path, data={}).status_code == 400  # CSRF
    assert client.post(erase_path, data={"csrf_token": csrf(client, erase_path)}).status_code == 200
    assert client.post(erase_path, data={"csrf_token": csrf(client, erase_path)}).status_code == 200
    with ctx.engine.connect() as conn:
        assert conn.execute(select(subscribers)).first() is None
        assert conn.execute(select(suppressions.c.reason)).scalar() == "erased"
    assert client.get(prefs).status_code == 404


def test_archive_lists_only_sent_issues(ctx, client):
    from pipeline.deliver.engine import send_issue

    for i in range(3):
        add_markdown(ctx, f"Tip {i}: urea lotion for KP", f"Use **urea** {i}.", approve=True)
    add_subscriber(ctx, "reader@example.com")
    built = build_issue(ctx)
    assert client.get(f"/issues/{built.number}").status_code == 404  # frozen, not published yet
    send_issue(ctx, built.number)
    archive = client.get("/archive").get_data(as_text=True)
    assert f"/issues/{built.number}" in archive
    page = client.get(f"/issues/{built.number}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "Tip 0: urea lotion" in html
    assert "script-src" not in page.headers["Content-Security-Policy"]
    assert "/unsubscribe" in html and client.get("/issues/999").status_code == 404
