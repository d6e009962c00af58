"""`kpdigest collect`: fetch every due feed concurrently, store new articles, group them.

Fetching runs in a bounded thread pool with a per-host limit. A body that changed is parsed
in worker processes once a run has enough feeds to repay them (feedparser is pure Python);
the processes start on the first body that needs one, so a run where every feed answers 304
starts none. One writer thread stores up to ten feeds per transaction (`store.py`). When
every feed is done, `dedupe.group_pending_in_chunks` groups the new articles into stories in
committed chunks. The parser, numpy and the grouping code are imported only when a body or an
ungrouped article needs them: an all-304 run is SQLAlchemy, requests and a few statements.
A feed's failure is recorded on its row and backs it off; it never stops the run.
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
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests
from sqlalchemy import bindparam, exists, select, update
from sqlalchemy.engine import Connection

from core.config import Config
from core.context import Context
from core.db import utcnow
from core.errors import FetchError
from core.models import articles, feeds
from pipeline.collect.feeds import sync_config_feeds
from pipeline.collect.fetch import FetchGone, FetchResult, fetch, make_session
from pipeline.collect.store import has_ungrouped, store_feed_articles

if TYPE_CHECKING:
    from pipeline.collect.parse import Parsed

log = logging.getLogger(__name__)
MAX_BACKOFF = timedelta(days=7)
PARSE_PROCESSES_FROM = 20  # feeds due in one run before parsing moves to worker processes

__all__ = ["CollectReport", "FeedOutcome", "collect", "sync_config_feeds"]


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
    full: int = 0  # near-duplicates of full stories only, which began a story of their own
    clusters: list[tuple[str, int]] = field(default_factory=list)  # (feed, entries in one story)

    @property
    def new(self) -> int:
        return sum(o.new for o in self.outcomes)

    @property
    def failed(self) -> list[FeedOutcome]:
        return [o for o in self.outcomes if o.error]


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
    parsers: Parsers | None = None
    unchanged: list[dict[str, Any]] = field(default_factory=list)  # 304s, recorded at the end
    writer: Writer | None = None

    def parse(self, feed: Any, result: FetchResult) -> Parsed:
        """Parse in the worker processes once they are up: feedparser is pure Python, and
        threads alone would keep a 200-feed run on one core. Until then, here."""
        # Lazy: an all-304 run never imports the parser (feedparser, lxml, nh3, numpy).
        from pipeline.collect.parse import parse_feed, parse_in_worker

        base_url = result.final_url or feed.url
        known = known_identities(self.ctx, feed.id) if feed.has_articles else frozenset()
        pool = self.parsers.get() if self.parsers is not None else None
        if pool is not None:
            try:
                return pool.submit(parse_in_worker, result.body, result.headers, base_url,
                                   feed.name, self.now, feed.id, known).result()
            except (BrokenProcessPool, RuntimeError, OSError) as exc:
                # The pool itself failed (a worker died, or could not start): that is no
                # fault of this feed, so parse here for the rest of the run.
                log.error("parser processes unavailable (%s); parsing in threads",
                          exc.__class__.__name__)
                self.parsers.give_up()  # type: ignore[union-attr]
        return parse_feed(result.body, result.headers, base_url, self.ctx.config, feed.name,
                          self.now, feed.id, known)


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
    with make_session(cfg) as session, _parsers(cfg, rows) as parsers, \
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
        pending = has_ungrouped(conn)
    if pending:  # this run's articles, or those a killed run left
        _group(ctx, report, now)
    return report


def _group(ctx: Context, report: CollectReport, now: datetime) -> None:
    """Group the listed articles in committed chunks; a feed whose entries joined one story
    in a mass gets a line in the summary and on its health (its last warning)."""
    # Lazy: numpy and the grouping code only when there are articles to group.
    from pipeline.collect.dedupe import group_pending_in_chunks

    grouping = group_pending_in_chunks(ctx.engine, ctx.config, now)
    report.grouped, report.full = grouping.joined, grouping.full
    names = {o.feed_id: o.name for o in report.outcomes}
    notes: dict[int, str] = {}
    for feed_id, count in grouping.clusters():
        if feed_id is None or feed_id in notes:
            continue
        notes[feed_id] = f"{count} near-identical entries grouped into one story"
        report.clusters.append((names.get(feed_id, f"feed {feed_id}"), count))
    if notes:
        with ctx.engine.begin() as conn:
            _update_feeds(conn, [{"fid": f, "last_warning": note} for f, note in notes.items()])


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
    """fork while this process has no other thread (the CLI, before its fetch threads): a
    child starts in milliseconds with everything imported. Otherwise (the fetch threads
    run, or the scheduler, the web app) a fork server, as forking a process that has threads
    can copy a lock some other thread holds; it preloads the parser and what the parent's
    main module imports, which multiprocessing re-runs in every child (0.25-0.4 s each of
    SQLAlchemy, click...)."""
    if threading.active_count() == 1 and "fork" in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("fork")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["pipeline.collect.parse", *(m for m in _PRELOAD if m in sys.modules)])
    return context


class Parsers:
    """Worker processes for parsing, for runs big enough to repay them, started on the first
    body that needs one: a run where every feed answers 304 starts none. They then come from
    a fork server (the fetch threads run by then), and until they are up, bodies are parsed
    in the fetch threads, so their start-up costs the run little. A run with a feed that
    cannot answer 304 (no ETag or Last-Modified stored: new feeds, a first collect) will
    parse for sure: its processes are forked before the fetch threads start, in milliseconds
    (a fork server takes 0.5 s and more, seconds on a loaded machine)."""

    def __init__(self, cfg: Config, n_feeds: int, certain: bool = False) -> None:
        self.cfg = cfg
        self.size = cfg.collect.parse_processes
        self.wanted = self.size > 0 and n_feeds >= PARSE_PROCESSES_FROM
        self.pool: ProcessPoolExecutor | None = None
        self.ready = threading.Event()
        self._lock = threading.Lock()
        if certain and self.wanted and threading.active_count() == 1:
            self._start()
            self.pool.submit(os.getpid).result() # forks them now

    @property
    def started(self) -> bool:
        return self.pool is not None

    def get(self) -> ProcessPoolExecutor | None:
        """The pool once every worker is up; None: parse here (starting them if wanted)."""
        if self.ready.is_set():
            return self.pool if self.wanted else None
        if not self.wanted:
            return None
        with self._lock:
            if self.pool is None:
                try:
                    self._start()
                except (OSError, RuntimeError) as exc:  # no fault of the feed: parse here
                    log.error("parser processes did not start (%s); parsing in threads",
                              exc.__class__.__name__)
                    self.wanted = False
        return None

    def _start(self) -> None:
        from pipeline.collect.parse import init_worker  # lazy: see Run.parse

        self.pool = ProcessPoolExecutor(max_workers=self.size, mp_context=_process_context(),
                                        initializer=init_worker, initargs=(self.cfg,))
        warm = [self.pool.submit(os.getpid) for _ in range(self.size)]  # one per worker
        left = [len(warm)]
        count_lock = threading.Lock()  # not self._lock: a callback may run inside _start

        def done(future: Future[int]) -> None:
            if future.exception() is not None:
                log.error("parser processes did not start (%s); parsing in threads",
                          future.exception().__class__.__name__)
                self.wanted = False
            with count_lock:
                left[0] -= 1
                if left[0] == 0 or not self.wanted:
                    self.ready.set()

        for future in warm:
            future.add_done_callback(done)

    def give_up(self) -> None:
        self.wanted = False

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


@contextmanager
def _parsers(cfg: Config, rows: list[Any]) -> Iterator[Parsers]:
    certain = any(r.etag is None and r.last_modified is None for r in rows)
    parsers = Parsers(cfg, len(rows), certain)
    try:
        yield parsers
    finally:
        parsers.close()
