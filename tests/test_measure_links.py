"""Counted links (#19): the link table written at freeze time, the signed redirect, and
every bad token answering 400 without a redirect."""

from __future__ import annotations

import time

import pytest
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import select

from core.models import articles, clicks, issue_links
from pipeline.compose.check import check_issue
from pipeline.measure.links import SALT, make_link_token, read_link_token
from subscribers.tokens import make_token
from tests import measure_helpers
from tests.measure_helpers import COUNTED_RE, counted_issue, links_of, variant, wait_clicks

SECRET = "test-secret-key"
measured_app = measure_helpers.measured_app  # the fixture


def test_links_are_written_once_per_variant_and_the_email_carries_only_counted_ones(
        make_ctx, feed_server, measured_app):
    ctx, built = counted_issue(make_ctx, feed_server)
    rows = links_of(ctx, built.issue_id)
    everyone, kp_only = variant(ctx, built.issue_id, ""), variant(ctx, built.issue_id, "kp")
    assert len(rows) == len(everyone.article_ids) + len(kp_only.article_ids)
    assert {r.variant for r in rows} == {"", "kp"}
    with ctx.engine.connect() as conn:
        originals = set(conn.execute(select(articles.c.link)).scalars())
    assert {r.url for r in rows} <= originals
    tokens = COUNTED_RE.findall(everyone.html_template)
    assert len(set(tokens)) == len(everyone.article_ids)
    for url in originals:
        assert f'href="{url}"' not in everyone.html_template
        assert url not in everyone.text_template
    assert "https://digest.example.com/r/" in everyone.text_template
    issue_id, link_id = read_link_token(SECRET, tokens[0], None)
    assert issue_id == built.issue_id and link_id in {r.id for r in rows}


def test_counting_off_writes_no_table_and_shows_the_real_urls(make_ctx, feed_server, measured_app):
    ctx, built = counted_issue(make_ctx, feed_server, enabled=False)
    assert links_of(ctx, built.issue_id) == []
    v = variant(ctx, built.issue_id)
    assert "/r/" not in v.html_template and "/r/" not in v.text_template
    assert "https://a.example.com/urea" in v.text_template


def test_redirect_answers_with_the_issues_own_link(make_ctx, feed_server, measured_app):
    ctx, built = counted_issue(make_ctx, feed_server)
    client = measured_app(ctx).test_client()
    for row in links_of(ctx, built.issue_id):
        resp = client.get(f"/r/{make_link_token(SECRET, built.issue_id, row.id)}")
        assert resp.status_code == 302
        assert resp.headers["Location"] == row.url
        assert resp.headers["Cache-Control"] == "no-store"


def _expired_token(issue_id: int, link_id: int, monkeypatch: pytest.MonkeyPatch) -> str:
    past = time.time() - 401 * 86400
    with monkeypatch.context() as m:
        m.setattr(time, "time", lambda: past)
        return make_link_token(SECRET, issue_id, link_id)


def test_bad_tokens_answer_400_and_redirect_nowhere(make_ctx, feed_server, monkeypatch, measured_app):
    ctx, built = counted_issue(make_ctx, feed_server)
    client = measured_app(ctx).test_client()
    link = links_of(ctx, built.issue_id)[0]
    good = make_link_token(SECRET, built.issue_id, link.id)
    payload, _, sig = good.rpartition(".")
    flipped = sig[:-2] + ("A" if sig[-2] != "A" else "B") + sig[-1]
    with ctx.engine.begin() as conn:  # a second issue's link id, claimed under the first issue
        other = conn.execute(issue_links.insert().values(
            issue_id=built.issue_id, variant="x", position=0, section="", source="",
            url="https://evil.example.net/")).inserted_primary_key[0]
        conn.execute(issue_links.delete().where(issue_links.c.id == other))
    bad = {
        "tampered signature": f"{payload}.{flipped}",
        "tampered payload": good.replace(good[1], "A" if good[1] != "A" else "B", 1),
        "truncated": good[:-4],
        "only the payload": payload,
        "empty-ish": "x",
        "huge": "A" * 5000,
        "cross-purpose: preferences": make_token(SECRET, "preferences", 1),
        "cross-purpose: unsubscribe": make_token(SECRET, "unsubscribe", 1),
        "expired": _expired_token(built.issue_id, link.id, monkeypatch),
        "unknown link": make_link_token(SECRET, built.issue_id, other),
        "another issue's number": make_link_token(SECRET, built.issue_id + 1, link.id),
        "other key": make_link_token("another-secret", built.issue_id, link.id),
        "not a pair": URLSafeTimedSerializer(SECRET, salt=SALT).dumps(
            {"url": "https://evil.example.net/"}),
        "a URL as payload": URLSafeTimedSerializer(SECRET, salt=SALT).dumps(
            "https://evil.example.net/"),
    }
    for name, token in bad.items():
        for method in (client.get, client.head):
            resp = method(f"/r/{token}")
            assert resp.status_code == 400, name
            assert "Location" not in resp.headers, name
    # a click token is no preferences or unsubscribe token either
    assert client.get(f"/preferences/{good}").status_code == 400
    assert client.get(f"/unsubscribe/{good}").status_code == 400


def test_a_counted_issue_passes_the_pre_send_check(make_ctx, feed_server, measured_app):
    ctx, built = counted_issue(make_ctx, feed_server)
    report = check_issue(ctx, built.number, spam=False)
    assert report.ok, report.problems


def test_location_is_a_uri_and_the_address_is_the_proxys_client(make_ctx, feed_server,
                                                               measured_app):
    ctx, built = counted_issue(make_ctx, feed_server, machine_networks=["203.0.113.0/24"])
    ctx.config.web.trusted_proxies = 1
    with ctx.engine.begin() as conn:
        link_id = conn.execute(issue_links.insert().values(
            issue_id=built.issue_id, variant="", position=99, section="kp", source="S",
            url="https://ex.example.com/café?q=ü")).inserted_primary_key[0]
    client = measured_app(ctx).test_client()
    resp = client.get(f"/r/{make_link_token(SECRET, built.issue_id, link_id)}",
                      headers={"X-Forwarded-For": "203.0.113.9", "User-Agent": "Mozilla/5.0 x"},
                      environ_base={"REMOTE_ADDR": "127.0.0.1"})
    assert resp.status_code == 302
    assert resp.headers["Location"] == "https://ex.example.com/caf%C3%A9?q=%C3%BC"
    wait_clicks(ctx, 1, clicks.c.reason == "network")  # the proxy's client, not the proxy
