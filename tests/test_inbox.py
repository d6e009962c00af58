"""The editors' inbox: filters, sort, full-text search kept in step by the collector's
insert path, one-click actions, and a "why not picked" that equals what `issue build` does."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import insert, select, update

from core.db import utcnow
from core.errors import InvalidInput, NotFound
from core.models import articles, feeds, issue_articles, queue_items
from core.states import ArticleState, Verdict
from pipeline.collect.store import store_articles, store_feed_articles
from pipeline.compose.issues import build_issue
from pipeline.curate import inbox
from pipeline.curate import queue as q


def _record(title: str, *, source: str = "Alpha", score: float = 3.0, days_old: int = 1,
            topics: tuple[str, ...] = ("kp",), excerpt: str = "") -> dict:
    return {"identity": f"id:{title}", "source": source, "title": title,
            "link": f"https://example.com/{abs(hash(title))}", "author": None,
            "published_at": utcnow() - timedelta(days=days_old),
            "summary_html": f"<p>{excerpt or title}</p>", "excerpt": excerpt or title,
            "image_url": None, "image_alt": None, "tags": [], "topics": list(topics),
            "score": score, "content_hash": None, "minhash": None}


def _feed(conn, name: str) -> int:
    return int(conn.execute(insert(feeds).values(name=name, url=f"https://{name}.example/feed",
                                                 topics=["kp"], created_at=utcnow()))
               .inserted_primary_key[0])


def _store(ctx, records: list[dict], feed_name: str = "Alpha feed") -> list[int]:
    with ctx.engine.begin() as conn:
        fid = conn.execute(select(feeds.c.id).where(feeds.c.name == feed_name)).scalar() \
            or _feed(conn, feed_name)
        return store_articles(conn, records, fid)[1]


def _all_entries(ctx, **filters) -> list[inbox.Entry]:
    out, page = [], 1
    while True:
        got = inbox.list_articles(ctx, inbox.Filters(page=page, **filters))
        out += got.entries
        if not got.has_next:
            return out
        page += 1


def test_why_not_picked_equals_what_issue_build_does(make_ctx):
    ctx = make_ctx(selection={"max_items": 5, "min_items": 2, "per_source": 2, "min_score": 1.0,
                              "max_age_days": 21})
    ids = _store(ctx, [_record(f"Alpha story {i} on urea", score=9 - i) for i in range(4)]
                 + [_record("Beta best on lactic acid", source="Beta", score=8.5),
                    _record("Beta weak", source="Beta", score=0.5),
                    _record("Beta stale", source="Beta", score=9.5, days_old=60),
                    _record("Gamma copy of Beta best", source="Gamma", score=8.4),
                    _record("Gamma rejected", source="Gamma", score=7.9),
                    _record("Gamma fine", source="Gamma", score=2.0),
                    _record("Gamma filler", source="Gamma", score=1.5)])
    by_title = dict(zip([f"Alpha story {i} on urea" for i in range(4)] + [
        "Beta best on lactic acid", "Beta weak", "Beta stale", "Gamma copy of Beta best",
        "Gamma rejected", "Gamma fine", "Gamma filler"], ids, strict=True))
    with ctx.engine.begin() as conn:  # a near-duplicate: one story, told once
        conn.execute(update(articles).where(articles.c.id == by_title["Gamma copy of Beta best"])
                     .values(story_id=by_title["Beta best on lactic acid"]))
    inbox.act(ctx, by_title["Gamma rejected"], "reject", by="ed@example.com")
    tip = q.add_markdown(ctx, "Editor tip on urea", "Urea **helps**.", approve=True)
    q.add_markdown(ctx, "Waiting tip", "Not approved yet.")

    entries = {e.id: e for e in _all_entries(ctx)}
    verdicts = {e.title: e.verdict for e in entries.values()}
    assert verdicts["Beta weak"] == Verdict.BELOW_THRESHOLD
    assert verdicts["Beta stale"] == Verdict.TOO_OLD
    assert verdicts["Gamma copy of Beta best"] == Verdict.SAME_STORY
    assert verdicts["Gamma rejected"] == Verdict.REJECTED
    assert verdicts["Alpha story 2 on urea"] == Verdict.SOURCE_CAP
    assert verdicts["Waiting tip"] == Verdict.WAITING
    assert verdicts["Gamma filler"] == Verdict.ISSUE_FULL
    predicted = {i for i, e in entries.items() if e.verdict == Verdict.PICKED}

    built = build_issue(ctx)
    with ctx.engine.connect() as conn:
        carried = set(conn.execute(select(issue_articles.c.article_id)
                                   .where(issue_articles.c.issue_id == built.issue_id)).scalars())
        tip_article = conn.execute(select(queue_items.c.article_id)
                                   .where(queue_items.c.id == tip)).scalar_one()
    assert built.status == "frozen" and predicted == carried and tip_article in carried
    after = {e.id: e for e in _all_entries(ctx)}
    for article_id in carried:  # and now the inbox says they are used
        assert after[article_id].state == ArticleState.USED and after[article_id].actions == []
        assert after[article_id].verdict == Verdict.CARRIED


def test_the_inbox_warns_when_the_next_issue_would_be_skipped(make_ctx):
    ctx = make_ctx(selection={"min_items": 3})
    _store(ctx, [_record("Only one on urea")])
    page = inbox.list_articles(ctx)
    built = build_issue(ctx)
    assert built.status == "skipped"
    assert page.skip_warning == f"The next issue would be skipped: {built.reason}."


def test_filters_sort_and_search(make_ctx):
    ctx = make_ctx()
    _store(ctx, [_record("Urea cream for keratosis pilaris", score=5, days_old=3,
                         excerpt="Urea softens the bumps"),
                 _record("Sunscreen basics", score=2, days_old=1, topics=("skin",),
                         excerpt="Broad spectrum every morning")])
    _store(ctx, [_record("Lactic acid lotions compared", score=0.2, days_old=2, source="Beta")],
           feed_name="Beta feed")
    titles = [e.title for e in inbox.list_articles(ctx).entries]
    assert titles == ["Urea cream for keratosis pilaris", "Sunscreen basics",
                      "Lactic acid lotions compared"]
    by_date = inbox.list_articles(ctx, inbox.Filters(sort="date")).entries
    assert [e.title for e in by_date] == ["Sunscreen basics", "Lactic acid lotions compared",
                                          "Urea cream for keratosis pilaris"]
    assert [e.title for e in inbox.list_articles(ctx, inbox.Filters(topic="skin")).entries] \
        == ["Sunscreen basics"]
    below = inbox.list_articles(ctx, inbox.Filters(state=ArticleState.BELOW_THRESHOLD)).entries
    assert [e.title for e in below] == ["Lactic acid lotions compared"]
    with ctx.engine.connect() as conn:
        beta = conn.execute(select(feeds.c.id).where(feeds.c.name == "Beta feed")).scalar_one()
    assert [e.feed for e in inbox.list_articles(ctx, inbox.Filters(feed=beta)).entries] \
        == ["Beta feed"]
    since = (utcnow() - timedelta(days=2)).date()
    assert len(inbox.list_articles(ctx, inbox.Filters(since=since)).entries) == 2
    # Full text: stemmed words from title and excerpt, every word needed, operators inert.
    assert [e.title for e in inbox.list_articles(ctx, inbox.Filters(query="bump")).entries] \
        == ["Urea cream for keratosis pilaris"]
    assert [e.title for e in inbox.list_articles(ctx, inbox.Filters(query='lotion "zebra" OR* NEAR('))
            .entries] == []
    assert [e.title for e in inbox.list_articles(ctx, inbox.Filters(query="lactic lotion"))
            .entries] == ["Lactic acid lotions compared"]
    with pytest.raises(InvalidInput, match="no words"):
        inbox.list_articles(ctx, inbox.Filters(query='"*"'))
    with pytest.raises(InvalidInput, match="topic"):
        inbox.parse_filters(ctx.config, {"topic": "nope"})
    with pytest.raises(InvalidInput, match="since"):
        inbox.parse_filters(ctx.config, {"since": "yesterday"})


def test_search_follows_the_collectors_insert_path_and_edits(make_ctx):
    ctx = make_ctx()
    now = utcnow()
    with ctx.engine.begin() as conn:
        fid = _feed(conn, "Runner")
        diary = _record("Glycolic peel diary", excerpt="A week of peels")
        seen, new = store_feed_articles(conn, [diary, diary,  # a duplicate
                                               _record("Ammonium lactate notes")], fid, now)
        assert (seen, new) == (1, 2)
        again = store_feed_articles(conn, [diary], fid, now)
        assert again == (1, 0)
    found = inbox.list_articles(ctx, inbox.Filters(query="glycolic")).entries
    assert [e.title for e in found] == ["Glycolic peel diary"]  # indexed once
    item = inbox.act(ctx, found[0].id, "queue")
    assert item == "queued"
    with ctx.engine.connect() as conn:
        qid = conn.execute(select(queue_items.c.id)).scalar_one()
    q.edit_item(ctx, qid, title="Salicylic wash diary")
    assert inbox.list_articles(ctx, inbox.Filters(query="glycolic")).entries == []
    assert [e.id for e in inbox.list_articles(ctx, inbox.Filters(query="salicylic")).entries] \
        == [found[0].id]


def test_one_click_actions_and_the_actions_that_apply(make_ctx):
    ctx = make_ctx()
    a, b, c = _store(ctx, [_record("One on urea"), _record("Two on urea"), _record("Three")])
    assert inbox.show_article(ctx, a).actions == ["queue", "approve", "reject", "pin"]
    assert inbox.act(ctx, a, "approve") == "approved"
    assert inbox.act(ctx, b, "pin") == "approved and pinned to the top"
    assert inbox.act(ctx, c, "reject") == "rejected: never in a digest"
    shown = {i: inbox.show_article(ctx, i) for i in (a, b, c)}
    assert shown[a].queue_state == "approved" and shown[a].actions == ["reject", "pin"]
    assert shown[b].pinned and shown[b].actions == ["reject", "unpin"]
    assert shown[c].state == ArticleState.REJECTED and shown[c].actions == ["requeue"]
    assert shown[c].verdict == Verdict.REJECTED
    assert shown[a].keywords["kp"]["urea"] == 2  # title and summary
    queued = inbox.list_articles(ctx, inbox.Filters(state=ArticleState.QUEUED)).entries
    assert [e.id for e in queued] == [b, a]  # equal scores: newest first
    with pytest.raises(NotFound):
        inbox.act(ctx, 999999, "queue")
    with pytest.raises(InvalidInput):
        inbox.act(ctx, a, "explode")


def test_a_story_shows_its_copies_and_feeds(make_ctx):
    ctx = make_ctx()
    (first,) = _store(ctx, [_record("Story told by Alpha")])
    (copy,) = _store(ctx, [_record("Story retold by Beta", source="Beta")], feed_name="Beta feed")
    with ctx.engine.begin() as conn:
        conn.execute(update(articles).where(articles.c.id == copy).values(story_id=first))
    shown = inbox.show_article(ctx, first)
    assert shown.copies == 2 and shown.copy_sources == ["Alpha feed", "Beta feed"]


def test_the_articles_command_lists_shows_and_searches(ctx, monkeypatch):
    from click.testing import CliRunner

    from kpdigest.main import main

    (urea,) = _store(ctx, [_record("Urea cream for keratosis pilaris", score=5,
                                   excerpt="Urea softens the bumps")])
    _store(ctx, [_record("Lactic acid lotions compared", score=0.2)])

    def run(*args: str):
        return CliRunner().invoke(main, ["--config", str(ctx.config.path("config.toml")), *args])

    listed = run("articles", "list", "--state", "below threshold")
    assert listed.exit_code == 0, listed.output
    assert "Lactic acid lotions compared" in listed.output and "Urea cream" not in listed.output
    assert "below threshold: score 0.2 < 1" in listed.output
    assert "The next issue would be skipped: 1 new item, 3 needed." in listed.output
    found = run("articles", "search", "bump")
    assert found.exit_code == 0 and "Urea cream" in found.output and "Lactic" not in found.output
    shown = run("articles", "show", str(urea))
    assert shown.exit_code == 0 and "urea x2" in shown.output and "story:     1 copy" in shown.output
    assert "Alpha feed" in shown.output and ("GMT" in shown.output or "BST" in shown.output)
    missing = run("articles", "show", "999999")
    assert missing.exit_code == 3 and "no article 999999" in missing.stderr
    bad = run("articles", "list", "--topic", "nope")
    assert bad.exit_code == 5 and "topic: 'nope'" in bad.stderr
