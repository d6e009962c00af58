"""collect -> queue -> build -> send to the outbox, checked by parsing every .eml."""

from __future__ import annotations

import email
import email.policy
import re
from pathlib import Path

from core.context import Context
from pipeline.collect.run import collect
from pipeline.compose.issues import build_issue, delivery_counts, get_issue
from pipeline.curate.queue import add_markdown
from pipeline.deliver.engine import send_issue
from subscribers.store import add_subscriber
from subscribers.tokens import read_token
from tests.feedgen import BEAUTY_ITEMS, KP_ITEMS, rss

PEOPLE = [("ann@example.com", "Ann"), ("bob@example.org", "Bob"), ("cy@example.net", "Çy Ünï")]


def _setup(make_ctx, feed_server) -> Context:
    feed_server.serve_bytes("/kp.xml", rss("KP Feed", KP_ITEMS))
    feed_server.serve_bytes("/beauty.xml", rss("Beauty Feed", BEAUTY_ITEMS))
    ctx = make_ctx(feeds=[("KP Feed", feed_server.url("/kp.xml"), ["kp"]),
                          ("Beauty Feed", feed_server.url("/beauty.xml"), ["beauty-tips"])])
    for addr, name in PEOPLE:
        add_subscriber(ctx, addr, name)
    return ctx


def _parse(path: Path) -> email.message.EmailMessage:
    return email.message_from_bytes(path.read_bytes(), policy=email.policy.default)


def test_pipeline_end_to_end(make_ctx, feed_server, tmp_path):
    ctx = _setup(make_ctx, feed_server)
    report = collect(ctx)
    assert report.new == 5 and not report.failed
    add_markdown(ctx, "Editor tip: pat, don't rub", "Pat skin dry and apply **urea** cream.",
                 approve=True)
    built = build_issue(ctx)
    assert built.status == "frozen" and built.recipients == 3

    sent = send_issue(ctx, built.number)
    assert sent.counts["sent"] == 3 and sent.sent_now == 3
    outbox = ctx.config.path("var/outbox")
    files = sorted(outbox.glob("*.eml"))
    assert len(files) == 3

    unsubscribe_urls = set()
    for f in files:
        msg = _parse(f)
        assert msg.get_content_type() == "multipart/alternative"
        text = msg.get_body(("plain",)).get_content()
        html = msg.get_body(("html",)).get_content()
        assert "stylesheet" not in html  # no external CSS
        assert re.search(r'<td class="article" style="[^"]*padding', html)  # CSS inlined
        assert "Editor tip: pat, don&#39;t rub" in html or "Editor tip: pat, don't rub" in html
        assert "Editor tip: pat, don't rub" in text
        for item in KP_ITEMS + BEAUTY_ITEMS:
            assert item["link"] in html
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        url = re.fullmatch(r"<(https://[^>]+)>", str(msg["List-Unsubscribe"])).group(1)
        assert url in html and url in text
        unsubscribe_urls.add(url)
        sid = read_token("test-secret-key", "unsubscribe", url.rsplit("/", 1)[1])
        assert sid > 0
        assert msg["Message-ID"].endswith("@example.com>")
        assert msg["Date"]
    assert len(unsubscribe_urls) == 3
    # The non-ASCII display name survives encoding.
    assert any("Çy Ünï" in str(_parse(f)["To"]) for f in files)

    again = send_issue(ctx, built.number)
    assert again.sent_now == 0
    assert len(list(outbox.glob("*.eml"))) == 3
    with ctx.engine.connect() as conn:
        assert delivery_counts(conn, get_issue(conn, built.number).id)["sent"] == 3


def test_build_twice_in_one_period_reuses_the_issue(make_ctx, feed_server):
    ctx = _setup(make_ctx, feed_server)
    collect(ctx)
    first = build_issue(ctx)
    second = build_issue(ctx)
    assert second.number == first.number and not second.created


def test_too_few_articles_records_a_skip(make_ctx, feed_server):
    feed_server.serve_bytes("/one.xml", rss("One", KP_ITEMS[:1]))
    ctx = make_ctx(feeds=[("One", feed_server.url("/one.xml"), ["kp"])])
    collect(ctx)
    built = build_issue(ctx)
    assert built.status == "skipped"
    assert built.reason == "1 new item, 3 needed"


def test_next_issue_excludes_articles_already_sent(make_ctx, feed_server):
    ctx = _setup(make_ctx, feed_server)
    collect(ctx)
    first = build_issue(ctx, period="2026-W01")
    assert first.status == "frozen"
    second = build_issue(ctx, period="2026-W02")
    assert second.status == "skipped" and second.reason.startswith("0 new items")
