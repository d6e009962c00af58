"""A collector killed while grouping: the next collect, every feed answering 304, finishes the
grouping in committed chunks within the same memory bound, with the stories of one pass."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import func, select

from core.models import articles, articles_ungrouped
from pipeline.collect.dedupe import CHUNK, MAX_STORY, assign_stories
from tests.feedgen import rss
from tests.test_collect import serve_conditional

WORDS = ["deal", "coupon", "save", "percent", "today", "only", "voucher", "price", "store", "offer",
         "discount", "shipping", "free", "order", "cream", "lotion", "serum", "urea", "bundle",
         "limited", "exclusive", "member", "checkout", "online", "brand", "skin", "bargain"]
AS_LIMIT = 2 * 1024**3  # the address-space cap: prlimit --as


def _templated_feeds(feed_server, n_feeds: int, per_feed: int) -> list[tuple[str, str, list[str]]]:
    """Feeds whose every entry is written from one small vocabulary: all near-identical."""
    rng = random.Random(5)
    feeds = []
    for f in range(n_feeds):
        items = [{"title": f"Deal {f}.{i}", "guid": f"d{f}-{i}",
                  "link": f"https://deals.example.com/{f}/{i}",
                  "description": " ".join(rng.choice(WORDS) for _ in range(50))}
                 for i in range(per_feed)]
        serve_conditional(feed_server, f"/d{f}.xml", rss(f"Deals {f}", items))
        feeds.append((f"Deals {f}", feed_server.url(f"/d{f}.xml"), ["kp"]))
    return feeds


def _counts(ctx) -> tuple[int, int]:
    with ctx.engine.connect() as conn:
        return (conn.execute(select(func.count()).select_from(articles)).scalar_one(),
                conn.execute(select(func.count()).select_from(articles_ungrouped)).scalar_one())


def _command(ctx, *args: str) -> list[str]:
    return [sys.executable, "-m", "kpdigest", *args, "--config", str(ctx.config.source), "collect"]


@pytest.mark.slow
def test_a_collect_killed_while_grouping_is_finished_by_the_next_all_304_collect(make_ctx,
                                                                                 feed_server):
    feeds = _templated_feeds(feed_server, 64, 50)
    total = 64 * 50
    assert total >= 3 * CHUNK  # killed after the first chunk, with more to do
    ctx = make_ctx(feeds=feeds)
    first = subprocess.Popen(_command(ctx, "-v"),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    try:
        for line in first.stderr:  # type: ignore[union-attr]
            if "grouping: chunk 1 of" in line:
                first.send_signal(signal.SIGKILL)
                break
            assert time.monotonic() < deadline, "no grouping chunk was committed"
    finally:
        first.kill()
        first.wait(60)
        first.stderr.close()  # type: ignore[union-attr]
    assert first.returncode == -signal.SIGKILL
    stored, left = _counts(ctx)
    assert stored == total and 0 < left < total, (stored, left)  # killed mid-grouping

    second = subprocess.Popen(["prlimit", f"--as={AS_LIMIT}", *_command(ctx)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _pid, status, usage = os.wait4(second.pid, 0)
    out, err = second.stdout.read(), second.stderr.read()  # type: ignore[union-attr]
    second.stdout.close()  # type: ignore[union-attr]
    second.stderr.close()  # type: ignore[union-attr]
    second.returncode = os.waitstatus_to_exitcode(status)
    assert second.returncode == 0, err
    assert out.count(": not modified") == len(feeds) and "0 new articles" in out
    assert usage.ru_maxrss < AS_LIMIT // 1024 // 4  # KiB: far inside the cap
    assert _counts(ctx) == (total, 0)

    with ctx.engine.connect() as conn:
        rows = conn.execute(select(articles.c.id, articles.c.story_id, articles.c.minhash,
                                   articles.c.content_hash).order_by(articles.c.id)).all()
    ids, stories, minhashes, hashes = zip(*rows, strict=True)
    in_one_pass = assign_stories(ids, [None] * len(ids), minhashes, hashes,
                                 ctx.config.collect.near_duplicate_threshold).tolist()
    assert list(stories) == in_one_pass  # resumed: the stories of one uninterrupted pass
    assert len(set(stories)) <= total // MAX_STORY + 5  # a few full stories, not thousands


def test_a_feed_of_look_alikes_is_grouped_into_one_story_and_reported(make_ctx, feed_server):
    """One line in the collect summary and on the feed's health; the ordinary feed beside it
    keeps its stories and gets no such line."""
    from click.testing import CliRunner

    from kpdigest.main import main
    from pipeline.collect.dedupe import CLUSTER_REPORT
    from pipeline.collect.feeds import feed_health
    from tests.feedgen import KP_ITEMS

    feeds = _templated_feeds(feed_server, 1, CLUSTER_REPORT + 10)
    serve_conditional(feed_server, "/kp.xml", rss("KP", KP_ITEMS))
    ctx = make_ctx(feeds=[*feeds, ("KP", feed_server.url("/kp.xml"), ["kp"])])
    result = CliRunner().invoke(main, ["--config", str(ctx.config.source), "collect"])
    assert result.exit_code == 0, result.output
    line = f"Deals 0: {CLUSTER_REPORT + 9} near-identical entries grouped into one story"
    lines = result.output.splitlines()
    assert line in lines and [x for x in lines if "near-identical" in x] == [line]
    health = {f.name: f for f in feed_health(ctx)}
    assert health["Deals 0"].last_warning == line.split(": ", 1)[1]
    assert health["KP"].last_warning is None
    with ctx.engine.connect() as conn:
        stories = conn.execute(select(articles.c.story_id, func.count())
                               .group_by(articles.c.story_id).order_by(func.count().desc())).all()
    assert stories[0][1] == CLUSTER_REPORT + 10 and len(stories) == 1 + len(KP_ITEMS)
