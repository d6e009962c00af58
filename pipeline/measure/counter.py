"""Counting clicks off the reader's path: a bounded in-memory buffer and one thread that
writes it in batches.

`record` appends to the buffer and returns at once; the redirect never waits for the
database. The flusher writes up to `batch` clicks per transaction, removes them from the
buffer only after the commit, and retries with backoff when the database is slow or down.
Each click has a key unique to this process and counter (`click_key`, a unique column,
inserted with ON CONFLICT DO NOTHING), so a batch written again after an unclear failure
is still counted once. The buffer holds at most `bound` clicks (`analytics.buffer_clicks`);
a click arriving at a full buffer is dropped and counted in `dropped` (logged), never
queued without limit.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from core.models import analytics_consent, clicks, issues, reader_clicks
from pipeline.measure.machines import Classifier

log = logging.getLogger(__name__)
AGENT_CHARS = 512  # a click holds at most ~1 KB in the buffer


@dataclass(slots=True)
class Click:
    key: str
    issue_id: int
    link_id: int
    at: float  # time.time()
    head: bool
    agent: str
    ip: str
    reader: int | None = None  # a subscriber id, only from a consenting reader's cookie
    vote: int | None = None  # +1 / -1 for "more / less like this"; None for a click


class DailySalt:
    """A random salt per UTC day, in memory only: yesterday's visitors cannot be linked to
    today's, and nobody, the operator included, can recompute a visitor hash later."""

    def __init__(self) -> None:
        self.day = ""
        self.salt = b""

    def visitor(self, ip: str, agent: str, issue_id: int, at: datetime) -> str:
        day = at.strftime("%Y-%m-%d")
        if day != self.day:
            self.day, self.salt = day, secrets.token_bytes(16)
        data = f"{issue_id}|{ip}|{agent}".encode("utf-8", "replace")
        return hashlib.blake2b(data, key=self.salt, digest_size=8).hexdigest()


class ClickCounter:
    def __init__(self, engine: Engine, classifier: Classifier, *, bound: int,
                 flush_seconds: float = 1.0, batch: int = 2000) -> None:
        self.engine = engine
        self.classifier = classifier
        self.bound = bound
        self.flush_seconds = flush_seconds
        self.batch = batch
        self.recorded = self.written = self.dropped = self.failures = 0
        self._buffer: deque[Click] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._prefix = secrets.token_hex(6)
        self._seq = itertools.count()
        self._salt = DailySalt()

    # --- the reader's side: never touches the database ---------------------------------

    def record(self, issue_id: int, link_id: int, *, head: bool, agent: str, ip: str,
               reader: int | None = None, vote: int | None = None) -> bool:
        """Buffer one click (or vote); False when the buffer is full and it is dropped."""
        click = Click(f"{self._prefix}-{next(self._seq)}", issue_id, link_id, time.time(),
                      head, agent[:AGENT_CHARS], ip[:64], reader, vote)
        with self._lock:
            if len(self._buffer) >= self.bound:
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 10_000 == 0:
                    log.warning("click buffer full (%d): %d clicks dropped so far",
                                self.bound, self.dropped)
                return False
            self._buffer.append(click)
            self.recorded += 1
        if len(self._buffer) >= self.batch:
            self._wake.set()
        return True

    @property
    def pending(self) -> int:
        return len(self._buffer)

    # --- the flusher -------------------------------------------------------------------

    def start(self) -> ClickCounter:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="kpdigest-clicks", daemon=True)
            self._thread.start()
        return self

    def close(self, timeout: float = 10.0) -> None:
        """Stop the thread after writing what it can within `timeout` seconds."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        delay = self.flush_seconds
        while True:
            self._wake.wait(delay)
            self._wake.clear()
            stopping = self._stop.is_set()
            try:
                while self._buffer:
                    self.flush_once()
                delay = self.flush_seconds
            except Exception:  # the database is down or slow: keep the clicks, try later
                self.failures += 1
                log.warning("writing clicks failed; %d kept for the next try", self.pending,
                            exc_info=True)
                delay = min(max(delay * 2, 0.5), 30.0)
                if stopping:
                    return
            if stopping:
                return

    def flush_once(self) -> int:
        """Write the oldest batch in one transaction; remove it from the buffer after."""
        with self._lock:
            chunk = list(itertools.islice(self._buffer, self.batch))
        if not chunk:
            return 0
        with self.engine.begin() as conn:
            self._write(conn, chunk)
        with self._lock:
            for _ in chunk:
                self._buffer.popleft()
        self.written += len(chunk)
        return len(chunk)

    def _write(self, conn: Connection, chunk: list[Click]) -> None:
        started = self._send_starts(conn, {c.issue_id for c in chunk})
        rows = []
        for c in chunk:
            at = datetime.fromtimestamp(c.at, UTC)
            reason = self.classifier.reason(head=c.head, at=at, started=started.get(c.issue_id),
                                            agent=c.agent, ip=c.ip)
            rows.append({"click_key": c.key, "issue_id": c.issue_id, "link_id": c.link_id,
                         "at": at, "machine": reason is not None, "reason": reason,
                         "visitor": self._salt.visitor(c.ip, c.agent, c.issue_id, at),
                         "vote": c.vote})
        conn.execute(_insert_ignoring(conn, clicks), rows)
        readers = {c.reader for c in chunk if c.reader is not None and c.vote is None}
        if readers:
            consenting = set(conn.execute(select(analytics_consent.c.subscriber_id).where(
                analytics_consent.c.subscriber_id.in_(readers))).scalars())
            personal = [{"click_key": c.key, "subscriber_id": c.reader, "issue_id": c.issue_id,
                         "link_id": c.link_id, "at": datetime.fromtimestamp(c.at, UTC)}
                        for c in chunk
                        if c.reader in consenting and not c.head and c.vote is None]
            if personal:
                conn.execute(_insert_ignoring(conn, reader_clicks), personal)

    @staticmethod
    def _send_starts(conn: Connection, ids: set[int]) -> dict[int, datetime | None]:
        return dict(conn.execute(select(issues.c.id, issues.c.send_started_at)
                                 .where(issues.c.id.in_(ids))).all())


def _insert_ignoring(conn: Connection, table: object) -> object:
    """INSERT ... ON CONFLICT DO NOTHING: a click written twice is stored once."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing(index_elements=["click_key"])
