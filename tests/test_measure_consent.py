"""Individual analytics only with consent (#19): the opt-in on the preferences page, clicks
that carry the subscriber only while consent lasts, withdrawal deleting them, and a
replayed link afterwards writing nothing personal."""

from __future__ import annotations

from sqlalchemy import inspect, select

from core.models import analytics_consent, clicks, reader_clicks, subscribers
from pipeline.measure.consent import COOKIE, reader_cookie
from pipeline.measure.links import make_link_token
from subscribers.store import erase
from subscribers.tokens import make_token
from tests import measure_helpers
from tests.measure_helpers import BROWSER, count, counted_issue, links_of, wait_clicks
from tests.test_web_helpers import csrf

SECRET = "test-secret-key"
measured_app = measure_helpers.measured_app  # the fixture


def _ann(ctx) -> int:
    with ctx.engine.connect() as conn:
        return conn.execute(select(subscribers.c.id).where(
            subscribers.c.email == "ann@example.com")).scalar_one()


def _choose(client, prefs: str, action: str):
    token = csrf(client, prefs)
    return client.post(f"{prefs}/analytics", data={"action": action, "csrf_token": token})


def test_clicks_carry_the_reader_only_with_consent_and_withdrawal_deletes_them(
        make_ctx, feed_server, measured_app):
    ctx, built = counted_issue(make_ctx, feed_server)
    app = measured_app(ctx)
    sid = _ann(ctx)
    prefs = f"/preferences/{make_token(SECRET, 'preferences', sid)}"
    link = links_of(ctx, built.issue_id)[0]
    path = f"/r/{make_link_token(SECRET, built.issue_id, link.id)}"
    ann = app.test_client()
    assert "Yes, help with my clicks" in ann.get(prefs).get_data(as_text=True)

    ann.get(path, headers={"User-Agent": BROWSER})  # before consent: anonymous
    resp = _choose(ann, prefs, "give")
    assert resp.status_code == 200 and COOKIE in resp.headers.get("Set-Cookie", "")
    cookie = ann.get_cookie(COOKIE).value
    assert "Stop and delete my clicks" in ann.get(prefs).get_data(as_text=True)
    ann.get(path, headers={"User-Agent": BROWSER})
    ann.get(path, headers={"User-Agent": BROWSER})
    app.test_client().get(path, headers={"User-Agent": BROWSER})  # someone else
    wait_clicks(ctx, 4)
    assert count(ctx, reader_clicks, reader_clicks.c.subscriber_id == sid) == 2
    assert count(ctx, reader_clicks) == 2

    resp = _choose(ann, prefs, "withdraw")
    assert "deleted the 2 clicks" in resp.get_data(as_text=True)
    assert ann.get_cookie(COOKIE) is None
    assert count(ctx, reader_clicks) == 0 and count(ctx, analytics_consent) == 0

    replay = app.test_client()  # an old link opened in a browser that kept the cookie
    replay.set_cookie(COOKIE, cookie)
    assert replay.get(path, headers={"User-Agent": BROWSER}).status_code == 302
    wait_clicks(ctx, 5)
    assert count(ctx, reader_clicks) == 0
    # no table holds the reader's id together with a click
    for table in ("clicks", "issue_links"):
        names = {c["name"] for c in inspect(ctx.engine).get_columns(table)}
        assert not names & {"subscriber_id", "email", "delivery_id"}, table
    assert count(ctx, clicks) == 5  # every click still counted, without the reader


def test_a_forged_cookie_or_no_consent_writes_nothing_personal(make_ctx, feed_server,
                                                               measured_app):
    ctx, built = counted_issue(make_ctx, feed_server)
    app = measured_app(ctx)
    sid = _ann(ctx)
    link = links_of(ctx, built.issue_id)[0]
    path = f"/r/{make_link_token(SECRET, built.issue_id, link.id)}"
    for value in (reader_cookie(SECRET, sid),  # valid, but Ann never agreed
                  reader_cookie("another-key", sid), "garbage", "A" * 3000):
        c = app.test_client()
        c.set_cookie(COOKIE, value)
        assert c.get(path, headers={"User-Agent": BROWSER}).status_code == 302
    wait_clicks(ctx, 4)
    assert count(ctx, reader_clicks) == 0


def test_erasure_deletes_consent_and_personal_clicks(make_ctx, feed_server, measured_app):
    ctx, built = counted_issue(make_ctx, feed_server)
    app = measured_app(ctx)
    sid = _ann(ctx)
    prefs = f"/preferences/{make_token(SECRET, 'preferences', sid)}"
    path = f"/r/{make_link_token(SECRET, built.issue_id, links_of(ctx, built.issue_id)[0].id)}"
    ann = app.test_client()
    _choose(ann, prefs, "give")
    ann.get(path, headers={"User-Agent": BROWSER})
    wait_clicks(ctx, 1)
    assert count(ctx, reader_clicks) == 1
    erase(ctx, sid)
    assert count(ctx, reader_clicks) == 0 and count(ctx, analytics_consent) == 0
    assert count(ctx, clicks) == 1


def test_no_opt_in_is_offered_while_counting_is_off(make_ctx, feed_server, measured_app):
    ctx, _ = counted_issue(make_ctx, feed_server, enabled=False)
    client = measured_app(ctx).test_client()
    prefs = f"/preferences/{make_token(SECRET, 'preferences', _ann(ctx))}"
    assert "Help us learn" not in client.get(prefs).get_data(as_text=True)
    _choose(client, prefs, "give")
    assert count(ctx, analytics_consent) == 0
