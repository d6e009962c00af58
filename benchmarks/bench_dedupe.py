"""Near-duplicate grouping: MinHash signatures of 10,000 articles, grouping them, and
`group_pending` in a database for a first collect (10,000 new articles) and for the steady
state (10 new articles among 50,000 stored recent ones).

    .venv/bin/python -m benchmarks.bench_dedupe [--articles 10000] [--copies 0.1] [--stored 50000]

Articles are ~90 words of a heavy-tailed pseudo-vocabulary (two articles share about a
tenth of their words, like same-topic articles); a share of them (`--copies`) are reworded
copies of an earlier one (a fifth of the words replaced), which must join its story.
SQLite in a temporary folder; KPDIGEST_BENCH_DATABASE_URL adds a PostgreSQL run (in a
scratch schema, dropped afterwards).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
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
from core.models import articles, articles_ungrouped
from pipeline.collect.dedupe import assign_stories, encode, group_pending, signature
from pipeline.collect import minhash


def reword(rng: random.Random, text: str, vocab: list[str], share: float = 0.2) -> str:
    words = text.split()
    for i in rng.sample(range(len(words)), int(len(words) * share)):
        words[i] = rng.choice(vocab)
    return " ".join(words)


def corpus(n: int, copies: float, seed: int = 11) -> tuple[list[str], list[int]]:
    """`n` texts and, for each, the index of the text it is a copy of (its own if original)."""
    rng = random.Random(seed)
    vocab = vocabulary(rng)
    texts: list[str] = []
    origin: list[int] = []
    for i in range(n):
        if texts and rng.random() < copies:
            src = rng.randrange(len(texts))
            texts.append(reword(rng, texts[src], vocab))
            origin.append(origin[src])
        else:
            texts.append(article_text(rng, vocab))
            origin.append(i)
    return texts, origin


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def cpu_timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """Wall time and this process's CPU time: the machine is shared, and the CPU time moves
    less with the other jobs."""
    c0 = time.process_time()
    wall, result = timed(fn)
    return wall, time.process_time() - c0, result


def cold(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Time `fn` with empty word caches, as in a fresh parser process."""
    minhash._STEMS.clear()
    minhash._HASHES.clear()
    return timed(fn)


def in_memory(texts: list[str], origin: list[int], threshold: float) -> dict[str, Any]:
    first, sigs = cold(lambda: [signature(t) for t in texts])
    again, _ = timed(lambda: [signature(t) for t in texts])
    minhashes = [encode(s) for s in sigs]  # as the parser stores them
    n = len(texts)
    grouping, cpu, stories = cpu_timed(
        lambda: assign_stories(range(n), [None] * n, minhashes, [None] * n, threshold))
    return {"signature": first, "signature_warm": again, "grouping": grouping, "grouping_cpu": cpu,
            "copies": sum(o != i for i, o in enumerate(origin)),
            "found": sum(1 for i in range(n) if origin[i] != i and stories[i] == stories[origin[i]]),
            "false": sum(1 for i in range(n) if origin[i] == i and stories[i] != i),
            "stories": len(set(stories.tolist())), "minhashes": minhashes}


def _store(ctx: Context, minhashes: list[str | None], start: int, grouped: bool = False) -> None:
    now = utcnow() - timedelta(days=1)
    with ctx.engine.begin() as conn:
        conn.execute(insert(articles), [
            {"identity": f"bench-{start + i}", "title": f"Article {start + i}", "minhash": m,
             "content_hash": f"{start + i:064x}", "created_at": now,
             "story_id": start + i + 1} for i, m in enumerate(minhashes)])
        if not grouped:  # as the collector stores new articles: their own story, listed
            conn.execute(insert(articles_ungrouped),
                         [{"article_id": start + i + 1} for i in range(len(minhashes))])


def _group(ctx: Context) -> tuple[float, float, int]:
    with ctx.engine.begin() as conn:
        return cpu_timed(lambda: group_pending(conn, ctx.config, utcnow()))


def in_database(url: str, first: list[str | None], more: list[str | None],
                fresh: list[str | None]) -> dict[str, Any]:
    """Group `first` (all new: a first collect), then add `more` as already grouped (each its
    own story; grouping them would compare every pair of the synthetic texts) and group three
    times 10 of `fresh` on top of all of them."""
    os.environ["KPDIGEST_DATABASE_URL"] = url
    ctx = Context(load_config(DEFAULT_CONFIG))
    migrate(ctx.engine)
    _store(ctx, first, 0)
    t_first, cpu_first, joined_first = _group(ctx)
    _store(ctx, more, len(first), grouped=True)
    steady = []
    stored = len(first) + len(more)
    for k in range(3):
        _store(ctx, fresh[k * 10:(k + 1) * 10], stored + k * 10)
        steady.append(_group(ctx))
    ctx.close()
    return {"first": t_first, "first_cpu": cpu_first, "joined_first": joined_first, "stored": stored,
            "steady": statistics.median(t for t, _, _ in steady),
            "steady_cpu": statistics.median(c for _, c, _ in steady),
            "steady_joined": [j for _, _, j in steady]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=int, default=10_000)
    parser.add_argument("--copies", type=float, default=0.1)
    parser.add_argument("--stored", type=int, default=50_000, help="stored articles in the steady-state case")
    args = parser.parse_args([] if __name__ != "__main__" else None)
    threshold = load_config(DEFAULT_CONFIG).collect.near_duplicate_threshold
    texts, origin = corpus(args.articles, args.copies)
    r = in_memory(texts, origin, threshold)
    n = args.articles
    print(f"near-duplicates, {n} articles: signatures {r['signature']:.2f} s (word caches warm: "
          f"{r['signature_warm']:.2f} s); grouping {r['grouping']:.2f} s (CPU {r['grouping_cpu']:.2f} s); "
          f"{r['found']}/{r['copies']} "
          f"copies joined their story, {r['false']} originals wrongly grouped, {r['stories']} stories; "
          f"load average {os.getloadavg()[0]:.1f}")
    more_texts, _ = corpus(max(args.stored - n, 30), args.copies, seed=12)
    more = [encode(signature(t)) for t in more_texts]
    fresh_texts, _ = corpus(30, args.copies, seed=13)
    fresh = [encode(signature(t)) for t in fresh_texts]
    os.environ.setdefault("KPDIGEST_SECRET_KEY", "bench")
    with tempfile.TemporaryDirectory() as tmp:
        targets = [("sqlite", f"sqlite:///{Path(tmp) / 'bench.db'}", None)]
        pg = os.environ.get("KPDIGEST_BENCH_DATABASE_URL")
        if pg:
            schema, url = _pg_scratch(pg)
            targets.append(("postgresql", url, schema))
        for name, url, schema in targets:
            try:
                d = in_database(url, r["minhashes"], more, fresh)
            finally:
                if pg and schema:
                    with make_engine(pg).begin() as conn:
                        conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
            print(f"group_pending on {name}: {n} new {d['first']:.2f} s (CPU {d['first_cpu']:.2f} s, "
                  f"{d['joined_first']} joined); 10 new on {d['stored']} stored {d['steady'] * 1000:.0f} ms "
                  f"(CPU {d['steady_cpu'] * 1000:.0f} ms; median of 3; joined {d['steady_joined']}); "
                  f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
