"""`kpdigest collect`: fetch every due feed concurrently and store new articles.

Fetching runs in a bounded thread pool with a per-host limit; parsing too, or in worker
processes for big runs (feedparser is pure Python). Storing is one short transaction per
feed, serialised in-process (SQLite has a single writer anyway). When every feed is done,
one pass groups the new articles into stories (near-duplicates). A feed's failure is
recorded on its row and backs it off; it never stops the run.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import sys
import threading
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from itertools import repeat
from typing import Any
from urllib.parse import urlsplit

import requests
from sqlalchemy import bindparam, exists, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from core.config import Config
from core.context import Context
from core.db import utcnow
from core.errors import FetchError
from core.models import articles, articles_ungrouped, feeds
from core.search import index_articles
from pipeline.collect.dedupe import group_pending
from pipeline.collect.feeds import sync_config_feeds
from pipeline.collect.fetch import FetchGone, FetchResult, fetch, make_session
from pipeline.collect.parse import Parsed, init_worker, parse_feed, parse_in_worker

log = logging.getLogger(__name__)
MAX_BACKOFF = timedelta(days=7)
PARSE_PROCESSES_FROM = 20  # feeds due in one run before parsing moves to worker processes

__all__ = ["CollectReport", "FeedOutcome", "collect", "store_articles", "store_feed_articles",
           "sync_config_feeds"]


@dataclass
class FeedOutcome:
    feed_id: int
    name: str
    new: int = 0
    seen: int = 0
    not_modified: bool = False
    error: str | None = None
    warning: str | None = None
    moved_to: str | None = None
    paused: bool = False


@dataclass
class CollectReport:
    outcomes: list[FeedOutcome] = field(default_factory=list)
    waiting: list[tuple[str, datetime]] = field(default_factory=list)  # backing off: (name, until)
    grouped: int = 0  # new articles that joined an existing story (near-duplicates)

    @property
    def new(self) -> int:
        return sum(o.new for o in self.outcomes)

    @property
    def failed(self) -> list[FeedOutcome]:
        return [o for o in self.outcomes if o.error]


def store_articles(conn: Connection, records: list[dict[str, Any]], feed_id: int | None,
                   origin: str = "feed", now: datetime | None = None) -> tuple[int, list[int]]:
    """Insert records whose identity is new; returns (seen-before count, new ids).

    New rows are stories of their own, listed for `pipeline.collect.dedupe.group_pending`, which
    compares them with the others once the run has stored everything.
    """
    rows = _fresh_rows(conn, records, feed_id, origin, now)
    new_ids = sorted(aid for aid, _ in _insert_ignoring_duplicates(conn, rows))
    _list_ungrouped(conn, new_ids)
    if new_ids:
        index_articles(conn, new_ids[0], new_ids[-1])  # the full-text search's hook
    return len(records) - len(new_ids), new_ids


def store_feed_articles(conn: Connection, records: list[dict[str, Any]], feed_id: int,
                        now: datetime) -> tuple[int, int]:
    """`store_articles` for a collect run: (seen, new) counts only.

    On SQLite the rows go in as one executemany of INSERT ... ON CONFLICT DO NOTHING, whose
    row count sqlite3 sums: no look-up of the stored identities first, no RETURNING, and the
    parameters converted by SQLAlchemy's own bind processors but without its per-row
    machinery (the collector's writer spent most of its time there). psycopg reports no
    count for executemany, so PostgreSQL looks up and counts the ids RETURNING gives."""
    if conn.dialect.name == "sqlite":
        unique = list({r["identity"]: r for r in reversed(records)}.values())[::-1]  # first one wins
        if not unique:
            return len(records), 0
        ids = _new_ids(conn, len(unique))
        new = _sqlite_insert_many(conn, unique, {"feed_id": feed_id, "origin": "feed", "created_at": now},
                                  {"id": ids, "story_id": ids})
        if new:  # the ids a duplicate did not take
            conn.execute(articles_ungrouped.insert().from_select(
                ["article_id"], select(articles.c.id).where(articles.c.id.between(ids[0], ids[-1]))))
            index_articles(conn, ids[0], ids[-1])  # the full-text search's hook (FTS5)
    else:
        rows = _fresh_rows(conn, records, feed_id, "feed", now)
        ids = [aid for aid, _ in _insert_ignoring_duplicates(conn, rows)]
        _list_ungrouped(conn, ids)
        new = len(ids)
    return len(records) - new, new


def _new_ids(conn: Connection, n: int) -> list[int]:
    """Ids for `n` new articles, taken before inserting them, so that each row goes in as its
    own story (story_id = id) in one write. SQLite: the transaction began IMMEDIATE, so it
    alone writes and the next ids are known; PostgreSQL: from the id sequence. A duplicate
    that is not inserted leaves its id unused."""
    if conn.dialect.name == "postgresql":
        return list(conn.execute(text("SELECT nextval(pg_get_serial_sequence('articles', 'id')) "
                                      "FROM generate_series(1, :n)"), {"n": n}).scalars())
    first = int(conn.exec_driver_sql("SELECT coalesce(max(id), 0) + 1 FROM articles").scalar_one())
    return list(range(first, first + n))


def _list_ungrouped(conn: Connection, ids: list[int]) -> None:
    """New articles `ids`, listed for grouping."""
    if ids:
        conn.execute(articles_ungrouped.insert(), [{"article_id": i} for i in ids])


def _rows(records: list[dict[str, Any]], feed_id: int | None, origin: str,
          now: datetime) -> list[dict[str, Any]]:
    return [{**{k: v for k, v in r.items() if not k.startswith("_")},
             "feed_id": feed_id, "origin": origin, "created_at": now, "story_id": None} for r in records]


def _sqlite_insert_many(conn: Connection, records: list[dict[str, Any]], constants: dict[str, Any],
                        columns: dict[str, list[Any]] | None = None) -> int:
    """INSERT ... ON CONFLICT (identity) DO NOTHING of `records`, plus the `constants` every
    row shares (converted once) and `columns` given a value per row; how many rows went in.
    Values are converted a column at a time, and a JSON column's equal lists (a feed's
    topics, its empty tags) are encoded once."""
    if not records:
        return 0
    given = columns or {}
    keys = tuple(k for k in records[0] if not k.startswith("_")) + tuple(given) + tuple(constants)
    sql, order, processors = _sqlite_insert(conn.dialect, keys)
    params: list[Any] = []
    for k, p in zip(order, processors, strict=True):
        if k in constants:
            params.append(repeat(constants[k] if p is None else p(constants[k]), len(records)))
        else:
            values = given[k] if k in given else [r[k] for r in records]
            params.append(values if p is None else _converted(values, p))
    return int(conn.exec_driver_sql(sql, list(zip(*params, strict=True))).rowcount)


def _converted(values: list[Any], processor: Any) -> list[Any]:
    """`processor` applied to each value; lists of strings (JSON columns) encoded once each."""
    if not any(isinstance(v, list) for v in values):
        return list(map(processor, values))
    done: dict[tuple[Any, ...], Any] = {}
    out = []
    for v in values:
        if isinstance(v, list) and all(isinstance(x, str) for x in v):
            key = tuple(v)
            if key not in done:
                done[key] = processor(v)
            out.append(done[key])
        else:
            out.append(processor(v))
    return out


@lru_cache(maxsize=8)
def _sqlite_insert(dialect: Any, keys: tuple[str, ...]) -> tuple[str, tuple[str, ...], tuple[Any, ...]]:
    """The compiled statement, its parameter order and each column type's bind processor."""
    stmt = sqlite.insert(articles).on_conflict_do_nothing(index_elements=["identity"])
    compiled = stmt.compile(dialect=dialect, column_keys=list(keys))
    order = tuple(compiled.positiontup or ())
    return str(compiled), order, tuple(articles.c[k].type.dialect_impl(dialect).bind_processor(dialect)
                                       for k in order)


def _fresh_rows(conn: Connection, records: list[dict[str, Any]], feed_id: int | None, origin: str,
                now: datetime | None) -> list[dict[str, Any]]:
    """Rows for the records whose identity is not stored yet (first occurrence wins), each
    with the id it will take."""
    if not records:
        return []
    unique = {r["identity"]: r for r in reversed(records)}
    existing = set(conn.execute(select(articles.c.identity)
                                .where(articles.c.identity.in_(list(unique)))).scalars())
    fresh = _rows([r for ident, r in reversed(unique.items()) if ident not in existing], feed_id, origin,
                  now or utcnow())
    for row, new_id in zip(fresh, _new_ids(conn, len(fresh)), strict=True):
        row["id"] = row["story_id"] = new_id  # its own story until grouped
    return fresh


def _insert_ignoring_duplicates(conn: Connection, rows: list[dict[str, Any]]) -> list[tuple[int, str]]:
    """INSERT ... ON CONFLICT (identity) DO NOTHING RETURNING id, identity: a concurrent
    writer that stored the same story first wins, without an error."""
    if not rows:
        return []
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = (dialect.insert(articles).on_conflict_do_nothing(index_elements=["identity"])
            .returning(articles.c.id, articles.c.identity))
    return [(int(r.id), r.identity) for r in conn.execute(stmt, rows)]


class HostLimiter:
    """At most `per_host` requests in flight to one host (politeness), however many workers."""

    def __init__(self, per_host: int) -> None:
        self.per_host = max(1, per_host)
        self._sems: dict[str, threading.BoundedSemaphore] = {}
        self._lock = threading.Lock()

    @contextmanager
    def slot(self, url: str) -> Iterator[None]:
        host = urlsplit(url).netloc.lower()
        with self._lock:
            sem = self._sems.setdefault(host, threading.BoundedSemaphore(self.per_host))
        with sem:
            yield


def interleave_hosts(rows: list[Any]) -> list[Any]:
    """Round-robin over hosts, so workers rarely wait on one busy host's limit."""
    by_host: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        by_host[urlsplit(row.url).netloc.lower()].append(row)
    queues = list(by_host.values())
    ordered: list[Any] = []
    while queues:
        ordered += [q.pop(0) for q in queues]
        queues = [q for q in queues if q]
    return ordered


@dataclass
class Run:
    """What every worker of one collect run shares."""

    ctx: Context
    session: requests.Session
    limiter: HostLimiter
    now: datetime
    write_lock: threading.Lock = field(default_factory=threading.Lock)
    parsers: ProcessPoolExecutor | None = None
    unchanged: list[dict[str, Any]] = field(default_factory=list)  # 304s, recorded at the end
    writer: Writer | None = None

    def parse(self, feed: Any, result: FetchResult) -> Parsed:
        """Parse in the process pool when there is one: feedparser is pure Python, and
        threads alone would keep a 200-feed run on one core."""
        base_url = result.final_url or feed.url
        known = known_identities(self.ctx, feed.id) if feed.has_articles else frozenset()
        if self.parsers is not None:
            try:
                return self.parsers.submit(parse_in_worker, result.body, result.headers, base_url,
                                           feed.name, self.now, feed.id, known).result()
            except (BrokenProcessPool, RuntimeError, OSError) as exc:
                # The pool itself failed (a worker died, or could not start): that is no
                # fault of this feed, so parse here for the rest of the run.
                log.error("parser processes unavailable (%s); parsing in threads", exc.__class__.__name__)
                self.parsers = None
        return parse_feed(result.body, result.headers, base_url, self.ctx.config, feed.name, self.now,
                          feed.id, known)


KNOWN_LIMIT = 2000  # a feed document lists its latest entries: its latest stored ones suffice


def known_identities(ctx: Context, feed_id: int) -> frozenset[str]:
    """Identities of the feed's most recent stored articles, for the parser to skip. One
    that is not here (older) is still caught when stored, only at full cost."""
    with ctx.engine.connect() as conn:
        return frozenset(conn.execute(
            select(articles.c.identity).where(articles.c.feed_id == feed_id)
            .order_by(articles.c.id.desc()).limit(KNOWN_LIMIT)).scalars())


def collect_feed(run: Run, feed: Any) -> FeedOutcome:
    """Fetch and parse one feed, and hand it to the run's writer; every failure is recorded
    on the feed row. The outcome is complete once the writer has finished."""
    outcome = FeedOutcome(feed_id=feed.id, name=feed.name)
    cfg = run.ctx.config
    try:
        with run.limiter.slot(feed.url):
            result = fetch(run.session, feed.url, cfg, feed.etag, feed.last_modified)
        parsed = None if result.not_modified else run.parse(feed, result)
    except FetchError as exc:
        return _record_failure(run, feed, outcome, exc)
    except Exception as exc:  # hostile bytes must not stop the run, whatever breaks on them
        log.exception("feed %s: unexpected parser failure", feed.name)
        return _record_failure(run, feed, outcome, FetchError(f"parser failure: {exc.__class__.__name__}"))
    values: dict[str, Any] = dict(
        last_fetched_at=run.now, last_success_at=run.now, consecutive_failures=0, last_error=None,
        next_attempt_at=None, etag=result.headers.get("ETag") or feed.etag,
        last_modified=result.headers.get("Last-Modified") or feed.last_modified)
    if parsed is None and not (result.moved_to and result.moved_to != feed.url):
        outcome.not_modified = True
        with run.write_lock:
            run.unchanged.append({**values, "fid": feed.id})
    elif run.writer is not None:
        run.writer.put(Stored(feed, outcome, result, parsed, values))
    else:
        Writer.write(run, [Stored(feed, outcome, result, parsed, values)])
    return outcome


@dataclass
class Stored:
    """One fetched feed waiting to be written: its articles and its row's new values."""

    feed: Any
    outcome: FeedOutcome
    result: FetchResult
    parsed: Parsed | None
    values: dict[str, Any]

    def write(self, conn: Connection, now: datetime) -> dict[str, Any]:
        """Store the articles; returns the feed row's new values for `_update_feeds`."""
        values = dict(self.values)
        if self.parsed is not None:
            self.outcome.warning = values["last_warning"] = self.parsed.warning
            self.outcome.seen, self.outcome.new = store_feed_articles(conn, self.parsed.entries,
                                                                      self.feed.id, now)
            self.outcome.seen += self.parsed.known
        else:
            self.outcome.not_modified = True
        moved_to = self.result.moved_to
        if moved_to and moved_to != self.feed.url:
            _follow_move(conn, self.feed, self.outcome, moved_to, values)
        return {**values, "fid": self.feed.id}


class Writer:
    """One thread stores what the fetch threads hand over, up to BATCH feeds per transaction:
    a tenth of the commits, and a fetch thread moves on to its next feed instead of queueing
    for the write lock. A batch that fails is redone feed by feed, so one bad feed is
    recorded as failed and the others land."""

    BATCH = 10

    def __init__(self, run: Run) -> None:
        self.run = run
        self.jobs: queue.SimpleQueue[Stored | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._loop, name="collect-writer", daemon=True)
        self.thread.start()

    def put(self, job: Stored) -> None:
        self.jobs.put(job)

    def close(self) -> None:
        """Write everything handed over so far, then stop."""
        self.jobs.put(None)
        self.thread.join()

    def _loop(self) -> None:
        done = False
        while not done:
            first = self.jobs.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self.BATCH and not self.jobs.empty():
                job = self.jobs.get()
                if job is None:
                    done = True
                    break
                batch.append(job)
            self.write(self.run, batch)

    @staticmethod
    def write(run: Run, batch: list[Stored]) -> None:
        try:
            with run.write_lock, run.ctx.engine.begin() as conn:
                _update_feeds(conn, [job.write(conn, run.now) for job in batch])
        except Exception as exc:  # storing must not stop the run: isolate the feed at fault
            if len(batch) > 1:
                for job in batch:
                    Writer.write(run, [job])
                return
            job = batch[0]
            log.exception("feed %s: storing failed", job.feed.name)
            job.outcome.seen = job.outcome.new = 0
            error = FetchError(f"storing failed: {exc.__class__.__name__}")
            _record_failure(run, job.feed, job.outcome, error)


def _follow_move(conn: Connection, feed: Any, outcome: FeedOutcome, target: str,
                 values: dict[str, Any]) -> None:
    """A permanent redirect updates the stored URL, unless another feed already has it."""
    other = conn.execute(select(feeds.c.id).where(feeds.c.url == target)).scalar()
    if other is None:
        values["url"] = outcome.moved_to = target
    else:
        values["last_warning"] = f"moved permanently to {target}, already collected as feed {other}"


def backoff(cfg: Config, failures: int) -> timedelta:
    """Exponential: backoff_minutes, doubled for each further failure in a row, capped."""
    minutes = cfg.collect.backoff_minutes * (2 ** max(0, min(failures - 1, 20)))
    return min(timedelta(minutes=minutes), MAX_BACKOFF)


def _record_failure(run: Run, feed: Any, outcome: FeedOutcome, exc: FetchError) -> FeedOutcome:
    cfg = run.ctx.config
    outcome.error = str(exc)[:1000]
    failures = feed.consecutive_failures + 1
    values: dict[str, Any] = dict(last_error=outcome.error, last_error_at=run.now,
                                  last_fetched_at=run.now, consecutive_failures=failures,
                                  next_attempt_at=run.now + backoff(cfg, failures))
    if isinstance(exc, FetchGone):
        values.update(enabled=False, paused=True, paused_reason=outcome.error)
    elif failures >= cfg.collect.max_failures:
        reason = f"{failures} failures in a row; last: {outcome.error}"
        values.update(paused=True, paused_reason=reason[:1000])
    outcome.paused = bool(values.get("paused"))
    with run.write_lock, run.ctx.engine.begin() as conn:
        conn.execute(update(feeds).where(feeds.c.id == feed.id).values(**values))
    log.warning("feed %s failed: %s", feed.name, outcome.error)
    return outcome


def due_feeds(conn: Connection, now: datetime, force: bool = False) -> tuple[list[Any], list[Any]]:
    """(feeds to fetch now, feeds still backing off after failures). Each row says whether the
    feed has stored articles: a new feed's parser has no identities to look up."""
    stored = exists().where(articles.c.feed_id == feeds.c.id).label("has_articles")
    rows = conn.execute(select(feeds, stored).where(feeds.c.enabled, ~feeds.c.paused)
                        .order_by(feeds.c.id)).all()
    if force:
        return rows, []
    due = [r for r in rows if r.next_attempt_at is None or r.next_attempt_at <= now]
    return due, [r for r in rows if r not in due]


def collect(ctx: Context, *, now: datetime | None = None, force: bool = False,
            feed_ids: list[int] | None = None) -> CollectReport:
    """Collect every enabled, unpaused feed that is due (`force`: backing-off ones too)."""
    ctx.require_schema()
    sync_config_feeds(ctx)
    now = now or utcnow()
    with ctx.engine.connect() as conn:
        rows, waiting = due_feeds(conn, now, force)
    if feed_ids is not None:
        rows = [r for r in rows if r.id in feed_ids]
    report = CollectReport(waiting=[(r.name, r.next_attempt_at) for r in waiting])
    cfg = ctx.config
    with make_session(cfg) as session, _parser_pool(cfg, len(rows)) as parsers, \
            ThreadPoolExecutor(max_workers=max(1, cfg.collect.workers), thread_name_prefix="collect") as pool:
        run = Run(ctx, session, HostLimiter(cfg.collect.per_host), now, parsers=parsers)
        run.writer = Writer(run)
        try:
            futures = {row.id: pool.submit(collect_feed, run, row) for row in interleave_hosts(rows)}
            report.outcomes = [futures[row.id].result() for row in rows]
        finally:
            run.writer.close()
    with ctx.engine.begin() as conn:
        # The 304s, in one statement rather than a transaction each: most feeds of most runs.
        # (A crash before this only leaves them due again: a 304 again.)
        _update_feeds(conn, run.unchanged)
        report.grouped = group_pending(conn, cfg, now)
    return report


def _update_feeds(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Feed rows' new values ({column: value, "fid": id}): one executemany per set of columns."""
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[tuple(sorted(row))].append(row)
    for columns, group in groups.items():
        conn.execute(update(feeds).where(feeds.c.id == bindparam("fid"))
                     .values({k: bindparam(k) for k in columns if k != "fid"}), group)


# Modules that a parent's main module (the CLI, the scheduler) imports anyway and that each
# parser process would import again when multiprocessing re-runs that main module in it.
_PRELOAD = ("sqlalchemy", "click", "apscheduler", "flask")


def _process_context() -> multiprocessing.context.BaseContext:
    """fork while this process has no other thread (the CLI): a child starts in milliseconds
    with everything imported. Otherwise (the scheduler, the web app) a fork server, as forking
    a process that has threads can copy a lock some other thread holds; it preloads the parser
    and what the parent's main module imports, which multiprocessing re-runs in every child
    (0.25-0.4 s each of SQLAlchemy, click...)."""
    if threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["pipeline.collect.parse", *(m for m in _PRELOAD if m in sys.modules)])
    return context


@contextmanager
def _parser_pool(cfg: Config, n_feeds: int) -> Iterator[ProcessPoolExecutor | None]:
    """Worker processes for parsing, for runs big enough to repay their start-up."""
    n = cfg.collect.parse_processes
    if n <= 0 or n_feeds < PARSE_PROCESSES_FROM:
        yield None
        return
    context = _process_context()
    with ProcessPoolExecutor(max_workers=n, mp_context=context, initializer=init_worker,
                             initargs=(cfg,)) as parsers:
        if context.get_start_method() == "fork":
            parsers.submit(os.getpid).result()  # forks every worker now, before the fetch threads
        yield parsers
