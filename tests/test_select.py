"""Selecting an issue: editor picks first in editor order, then the best new feed stories,
at most K per source, up to the limit; too few new items is a recorded skip."""

from __future__ import annotations

from sqlalchemy import select

from core.db import utcnow
from core.models import articles
from pipeline.collect.run import collect
from pipeline.compose.issues import build_issue
from pipeline.curate import queue as q
from pipeline.curate.select import select_articles
from tests.feedgen import rss


def _items(prefix: str, n: int, text: str = "urea for keratosis pilaris", **extra) -> list[dict]:
    return [{"title": f"{prefix} {i}: {text}", "link": f"https://{prefix.lower()}.example.com/{i}",
             "description": f"<p>{prefix} story {i} " + "lactic acid " * i + "</p>", **extra}
            for i in range(n)]


def _select(ctx):
    with ctx.engine.connect() as conn:
        return select_articles(conn, ctx.config, utcnow())


def _ctx(make_ctx, feed_server, feeds, **selection):
    for name, items in feeds.items():
        feed_server.serve_bytes(f"/{name}.xml", rss(name, items))
    ctx = make_ctx(feeds=[(name, feed_server.url(f"/{name}.xml"), ["kp"]) for name in feeds],
                   selection=selection)
    collect(ctx)
    return ctx


def test_editor_items_lead_then_best_scoring_with_a_per_source_cap(make_ctx, feed_server):
    ctx = _ctx(make_ctx, feed_server, {"Alpha": _items("Alpha", 5), "Beta": _items("Beta", 2)},
               max_items=6, per_source=2, min_items=1)
    first = q.add_markdown(ctx, "Editor tip one", "On urea.", approve=True)
    second = q.add_markdown(ctx, "Editor tip two", "On lactic acid.", approve=True)
    q.add_markdown(ctx, "Not approved", "On KP.")
    q.move(ctx, second, 1)
    sel = _select(ctx)
    titles = [a["title"] for a in sel.picked]
    assert titles[:2] == ["Editor tip two", "Editor tip one"] and sel.queue_ids == [second, first]
    feed_part = sel.picked[2:]
    assert len(feed_part) == 4 and {a["picked_by"] for a in feed_part} == {"feed"}
    assert sum(a["source"] == "Alpha" for a in feed_part) == 2  # capped although Alpha scores higher
    assert [a["score"] for a in feed_part] == sorted((a["score"] for a in feed_part), reverse=True)
    # Alpha 4 and 3 carry the most keywords: they are the two Alpha stories chosen.
    assert {a["title"].split(":")[0] for a in feed_part if a["source"] == "Alpha"} == {"Alpha 4", "Alpha 3"}


def test_stories_sent_before_are_never_picked_again_and_too_few_is_a_recorded_skip(make_ctx, feed_server):
    ctx = _ctx(make_ctx, feed_server, {"Alpha": _items("Alpha", 4)}, per_source=10, min_items=3)
    first = build_issue(ctx, period="2026-W10")
    assert first.status == "frozen"
    feed_server.serve_bytes("/Alpha.xml", rss("Alpha", _items("Alpha", 6)))
    collect(ctx)
    second = build_issue(ctx, period="2026-W11")
    assert second.status == "skipped" and second.reason == "2 new items, 3 needed"
    ctx.config.selection.min_items = 5
    assert build_issue(ctx, period="2026-W11").reason == "2 new items, 5 needed"


def test_low_scores_old_and_rejected_stories_stay_out_unless_an_editor_picks(make_ctx, feed_server):
    feeds = {"Alpha": [
        *_items("Alpha", 2),
        {"title": "Holiday gift ideas", "link": "https://alpha.example.com/gifts",
         "description": "<p>Candles and socks.</p>"},
        {"title": "Old urea study for KP", "link": "https://alpha.example.com/old", "days_ago": 60,
         "description": "<p>Keratosis pilaris and urea, years ago.</p>"}]}
    ctx = _ctx(make_ctx, feed_server, feeds, per_source=10, min_items=1)
    titles = [a["title"] for a in _select(ctx).picked]
    assert "Holiday gift ideas" not in titles and "Old urea study for KP" not in titles
    assert len(titles) == 2

    with ctx.engine.connect() as conn:
        ids = dict(conn.execute(select(articles.c.title, articles.c.id)).all())
    q.add_article(ctx, ids["Holiday gift ideas"], approve=True)
    rejected = q.add_article(ctx, ids["Alpha 1: urea for keratosis pilaris"])
    q.set_state(ctx, rejected, "rejected")
    sel = _select(ctx)
    assert [a["title"] for a in sel.picked] == ["Holiday gift ideas", "Alpha 0: urea for keratosis pilaris"]
    assert sel.picked[0]["picked_by"] == "editor"
