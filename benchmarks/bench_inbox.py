"""The editors' inbox with 100,000 collected articles (issue 16): the first page, full-text
searches, and what keeping the search index costs the collector's insert path.

    python -m benchmarks.bench_inbox [ARTICLES]
    python -m benchmarks.bench_inbox collect     # a whole collection, search hook on and off

SQLite always; PostgreSQL too when KPDIGEST_BENCH_DATABASE_URL is set (a scratch schema is
made and dropped). The articles go in through `store_feed_articles`, the collector's own
insert path, in transactions of 50 (a feed's worth): the first 20,000 with the
search index kept and without it (SQLite: no FTS5 table and the hook off; PostgreSQL: no
GIN index), three rounds alternating; then all of them (transactions of 1,000) for the
inbox's queries.
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert, text

from benchmarks.bench_collect import article_text, vocabulary
from benchmarks.bench_import import _pg_scratch
from core.config import DEFAULT_CONFIG, load_config
from core.context import Context
from core.db import make_engine, migrate, utcnow
from core.models import feeds
from pipeline.collect import run as collect_run
from pipeline.curate import inbox

BATCH = 50
FEEDS = 200


def records(n: int, seed: int = 16) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    vocab = vocabulary(rng)
    now = utcnow()
    topics = [["kp"], ["skin"], ["kp", "skin"], []]
    out = []
    for i in range(n):
        body = article_text(rng, vocab, 60)
        title = " ".join(body.split()[:8]).capitalize()
        out.append({"identity": f"bench:{seed}:{i}", "source": f"Source {i % FEEDS}", "title": title,
                    "link": f"https://s{i % FEEDS}.example.com/{i}", "author": None,
                    "published_at": now - timedelta(minutes=rng.randint(0, 60 * 24 * 60)),
                    "summary_html": f"<p>{body}</p>", "excerpt": body[:300], "image_url": None,
                    "image_alt": None, "tags": [], "topics": rng.choice(topics),
                    "score": round(rng.paretovariate(1.5) - 1, 3), "content_hash": None,
                    "minhash": None})
    return out


def load(ctx: Context, rows: list[dict[str, Any]], batch: int = BATCH) -> float:
    """Seconds to store `rows` through the collector's insert path, `batch` a transaction."""
    with ctx.engine.begin() as conn:
        ids = [int(conn.execute(insert(feeds).values(name=f"Feed {f}", url=f"https://f{f}.example/rss",
                                                     topics=["kp"], created_at=utcnow()))
                   .inserted_primary_key[0]) for f in range(FEEDS)]
    start = time.perf_counter()
    for b in range(0, len(rows), batch):
        with ctx.engine.begin() as conn:
            collect_run.store_feed_articles(conn, rows[b:b + batch], ids[(b // batch) % FEEDS], utcnow())
    return time.perf_counter() - start


def timed(fn: Callable[[], Any], repeat: int = 7) -> tuple[float, Any]:
    """Median milliseconds of `repeat` calls after one warm-up call; the last result."""
    result = fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), result


def drop_index(ctx: Context) -> None:
    with ctx.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("DROP INDEX ix_articles_search"))
        else:
            conn.execute(text("DROP TABLE articles_fts"))


def context(url: str, tmp: Path) -> Context:
    os.environ["KPDIGEST_DATABASE_URL"] = url
    ctx = Context(load_config(DEFAULT_CONFIG))
    migrate(ctx.engine)
    return ctx


def store_cost(url_for: Callable[[str], str], rows: list[dict[str, Any]], tmp: Path,
               rounds: int = 3) -> tuple[list[float], list[float]]:
    """Storing `rows` (transactions of 50, a feed's worth) with the index and without it,
    alternating, each into a fresh database: (with, without) seconds per round."""
    hook = collect_run.index_articles
    on: list[float] = []
    off: list[float] = []
    for r in range(rounds):
        for indexed in (True, False):
            ctx = context(url_for(f"store{r}{indexed}"), tmp)
            if not indexed:
                drop_index(ctx)
                collect_run.index_articles = lambda *_a: None  # nothing to keep in step
            try:
                (on if indexed else off).append(load(ctx, rows))
            finally:
                collect_run.index_articles = hook
                ctx.close()
    return on, off


def bench(name: str, url_for: Callable[[str], str], rows: list[dict[str, Any]], tmp: Path,
          store_rows: int) -> None:
    on, off = store_cost(url_for, rows[:store_rows], tmp)
    print(f"{name}: storing {store_rows:,} articles, 3 alternating rounds: with the search index "
          f"{', '.join(f'{t:.1f}' for t in on)} s, without {', '.join(f'{t:.1f}' for t in off)} s:"
          f" {100 * (statistics.median(on) / statistics.median(off) - 1):+.1f} % (medians)")
    ctx = context(url_for("indexed"), tmp)
    load(ctx, rows, batch=1000)
    if ctx.engine.dialect.name == "postgresql":
        with ctx.engine.begin() as conn:
            conn.execute(text("ANALYZE"))
    word = rows[0]["excerpt"].split()[3]
    cases = {
        "first page, best score": inbox.Filters(),
        "first page, newest": inbox.Filters(sort="date"),
        "first page, state new": inbox.Filters(state=inbox.ArticleState.NEW),
        "first page, topic skin": inbox.Filters(topic="skin"),
        f"search '{word}' (common)": inbox.Filters(query=word),
        "search 'urea' + 'keratosis' (rare, two words)": inbox.Filters(query="urea keratosis"),
        "search, no match": inbox.Filters(query="zzzqqq"),
    }
    print(f"  {len(rows):,} articles, median of 7 (load average {os.getloadavg()[0]:.1f}):")
    for label, f in cases.items():
        ms, page = timed(lambda f=f: inbox.list_articles(ctx, f))
        print(f"  {label:<48} {ms:7.1f} ms  ({len(page.entries)} shown)")
    ctx.close()


def collect_overhead(runs: int = 3) -> None:
    """A whole first collect (bench_collect: 200 feeds x 50 entries, fetch, parse, store,
    group) with the search hook on and off, alternating: the slowdown a collection sees."""
    from benchmarks.bench_collect import run as collect_bench

    hook = collect_run.index_articles
    times: dict[bool, list[float]] = {True: [], False: []}
    try:
        for _ in range(runs):
            for on in (True, False):
                collect_run.index_articles = hook if on else (lambda *_a: None)
                times[on].append(collect_bench(200, 50, 0.05)["first"])
    finally:
        collect_run.index_articles = hook
    on, off = statistics.median(times[True]), statistics.median(times[False])
    print(f"collect 200 feeds x 50 entries, first run, median of {runs}: {on:.2f} s with the "
          f"search hook, {off:.2f} s without: {100 * (on / off - 1):+.1f} % "
          f"(with: {', '.join(f'{t:.2f}' for t in times[True])}; "
          f"without: {', '.join(f'{t:.2f}' for t in times[False])})")


def main() -> None:
    if sys.argv[1:2] == ["collect"]:
        collect_overhead()
        return
    n = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 100_000
    os.environ.setdefault("KPDIGEST_SECRET_KEY", "bench")
    rows = records(n)
    print(f"load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        store_rows = min(n, 20_000)
        bench("sqlite", lambda tag: f"sqlite:///{tmp / f'{tag}.db'}", rows, tmp, store_rows)
        pg = os.environ.get("KPDIGEST_BENCH_DATABASE_URL")
        if pg:
            schemas: list[str] = []

            def pg_url(_tag: str) -> str:
                schema, url = _pg_scratch(pg)
                schemas.append(schema)
                return url

            try:
                bench("postgresql", pg_url, rows, tmp, store_rows)
            finally:
                with make_engine(pg).begin() as conn:
                    for schema in schemas:
                        conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))


if __name__ == "__main__":
    main()
