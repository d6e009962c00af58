"""Sending a frozen issue: claim a batch from the delivery ledger, hand it to the
transport, record each recipient's own result (`send_issue` is the entry point).

Throughput comes from batches in flight at once (threads: the work is waiting on the
provider), set-based ledger updates (`ledger.py`), and per-recipient work reduced to
joins: links are signed with a precomputed HMAC (`subscribers/links.py`) and message
bodies are templates split once per variant.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.engine import Connection

from core.context import Context
from core.db import utcnow
from core.errors import ConfigError, StateError
from core.models import issue_variants, issues
from core.states import FINISHED, SENDABLE, DeliveryState, IssueStatus
from pipeline.compose.check import ensure_sendable
from pipeline.compose.issues import delivery_counts, get_issue
from pipeline.compose.message import Recipient
from pipeline.compose.prepare import PreparedVariant
from pipeline.deliver import ledger
from pipeline.deliver.doctor import ensure_domain_ready
from pipeline.deliver.doctor.rates import ensure_reputation
from pipeline.deliver.gctuning import rare_collections
from pipeline.deliver.outcome import final_status
from pipeline.deliver.pacing import backoff, pacer_for
from pipeline.deliver.reconcile import ReconcileReport, reconcile_quietly
from pipeline.deliver.transports import get_transport
from pipeline.deliver.transports.base import Outcome, RetryBatch, Transport, UnknownOutcome
from subscribers.links import Linker

log = logging.getLogger(__name__)
WINDOW = 1000  # recipients the error threshold looks back over
MIN_SAMPLE = 20  # ...and how many it needs before it may pause an issue


@dataclass
class SendReport:
    issue_number: int
    counts: dict[str, int] = field(default_factory=dict)
    sent_now: int = 0
    stopped: bool = False
    paused: str | None = None
    waiting: str | None = None  # stopped for a limit (the daily allowance); resumes later
    recovered_unknown: int = 0
    requeued: int = 0
    status: str = ""  # the issue's status after the run: its outcome once finished
    reconciled: ReconcileReport | None = None  # unknown rows asked about before sending


def send_issue(ctx: Context, number: int, *, transport: Transport | None = None,
               stop: threading.Event | None = None, progress: Callable[[int], None] | None = None,
               force: bool = False) -> SendReport:
    """Send every queued delivery of issue `number`; safe to run again at any time, and
    from several processes at once. Refuses an issue failing its checks unless `force`."""
    ctx.require_schema()
    with ctx.engine.connect() as conn:
        issue = get_issue(conn, number)
    _check_state(ctx, issue, force)
    transport = transport or get_transport(ctx.config)
    stop = stop or threading.Event()
    sender = Sender(ctx, issue, transport, stop, progress)
    report = SendReport(issue_number=number)
    report.recovered_unknown, report.requeued = \
        ledger.recover_stale(ctx, issue.id, transport, sender.me)
    if ledger.has_unknown(ctx, issue.id):  # ask the provider first, where it can tell
        report.reconciled = reconcile_quietly(ctx, number, transport)
    with ctx.engine.begin() as conn:
        conn.execute(update(issues).where(issues.c.id == issue.id,
                                          issues.c.status == IssueStatus.FROZEN)
                     .values(status=IssueStatus.SENDING, send_started_at=utcnow()))
    transport.open()
    try:
        sender.run(load_variants(ctx, issue))
    finally:
        transport.close()
    if sender.fatal:
        raise _stopped_by(ctx, issue, sender.fatal)
    report.sent_now, report.paused, report.waiting = sender.sent_now, sender.paused, sender.waiting
    report.stopped = stop.is_set()
    with ctx.engine.begin() as conn:
        report.counts = delivery_counts(conn, issue.id)
        report.status = _finish(conn, issue.id, report.counts)
    return report


def _finish(conn: Connection, issue_id: int, counts: dict[str, int]) -> str:
    """Give an issue with nothing left to send its outcome; returns its status."""
    outcome = final_status(counts)
    if outcome is not None:
        conn.execute(update(issues).where(issues.c.id == issue_id, issues.c.status.in_(SENDABLE))
                     .values(status=outcome, sent_at=utcnow()))
    return str(conn.execute(select(issues.c.status).where(issues.c.id == issue_id)).scalar_one())


def _stopped_by(ctx: Context, issue: Any, exc: ConfigError) -> ConfigError:
    """A configuration error stops the whole issue with its reason: `failed` when nothing
    was ever accepted, else `paused`. Nobody's attempts were spent (the batch went back
    to the queue) and nobody was suppressed. Returns the error to raise, with the next step."""
    reason = str(exc)
    with ctx.engine.begin() as conn:
        counts = delivery_counts(conn, issue.id)
        status = IssueStatus.PAUSED if counts[DeliveryState.SENT] else IssueStatus.FAILED
        conn.execute(update(issues).where(issues.c.id == issue.id,
                                          issues.c.status.in_(SENDABLE))
                     .values(status=status, pause_reason=reason))
    return type(exc)(f"issue #{issue.number} {status}: {reason}; fix it, then "
                     f"`kpdigest issue resume {issue.number}` and send again")


def _check_state(ctx: Context, issue: Any, force: bool) -> None:
    if issue.status == "draft":
        raise StateError(f"issue #{issue.number} is a draft awaiting approval")
    if issue.status in ("cancelled", "skipped"):
        raise StateError(f"issue #{issue.number} is {issue.status}")
    if issue.status in (IssueStatus.PAUSED, IssueStatus.FAILED) and issue.pause_reason:
        raise StateError(f"issue #{issue.number} is {issue.status} ({issue.pause_reason}): run "
                         f"`kpdigest issue resume {issue.number}` first")
    if issue.status == IssueStatus.PAUSED:
        raise StateError(f"issue #{issue.number} is paused: run `kpdigest issue resume "
                         f"{issue.number}` first")
    if not force and issue.status not in FINISHED:
        ensure_sendable(ctx, issue.number)
        ensure_domain_ready(ctx.config)
        ensure_reputation(ctx)


def recipients_for(linker: Linker, rows: list[Any]) -> list[Recipient]:
    """Rows with id, subscriber_id, email and name (claimed rows, or whole ledger rows),
    read by position: a Row's attribute lookup costs about a microsecond each."""
    if not rows:
        return []
    fields = rows[0]._fields
    did, sid, email, name = (fields.index(f) for f in ("id", "subscriber_id", "email", "name"))
    pair = linker.pair
    return [Recipient(r[did], r[email], r[name] or "", *pair(r[sid])) for r in rows]


def load_variants(ctx: Context, issue: Any) -> dict[str, PreparedVariant]:
    with ctx.engine.connect() as conn:
        rows = conn.execute(select(issue_variants).where(issue_variants.c.issue_id == issue.id)).all()
    return {r.variant: PreparedVariant(ctx.config, issue.id, issue.number, r.variant,
                                       issue.placeholder_key, issue.subject, r.html_template,
                                       r.text_template) for r in rows}


@dataclass
class _Batch:
    variant: PreparedVariant
    rows: list[Any]
    key: str
    posted: bool = False


class Sender:
    """One sending run over one issue: `max_in_flight` workers, each claiming a batch,
    handing it over and recording the answer on a connection of its own."""

    def __init__(self, ctx: Context, issue: Any, transport: Transport, stop: threading.Event,
                 progress: Callable[[int], None] | None) -> None:
        self.ctx, self.issue, self.transport, self.stop = ctx, issue, transport, stop
        s = ctx.config.sending
        self.me = ledger.sender_id()
        self.size = min(s.batch_size or transport.max_batch, transport.max_batch)
        self.in_flight = max(1, s.max_in_flight)
        self.max_attempts = max(1, s.max_attempts)
        self.pacer = pacer_for(ctx, transport.name, ledger.sent_today(ctx) if s.rate_per_day else 0)
        self.linker = Linker(ctx.config.site.base_url, ctx.config.secret_key,
                             issue.frozen_at or issue.created_at)
        self.progress = progress
        self.lock = threading.Lock()
        # SQLite has one writer at a time: queueing our own threads here costs nothing,
        # whereas its busy handler sleeps 1-100 ms each time a writer finds it taken.
        self.writer: AbstractContextManager[Any] = \
            nullcontext() if ctx.engine.dialect.name == "postgresql" else threading.Lock()
        self.local = threading.local()  # each worker's own connection
        self.window: deque[bool] = deque(maxlen=WINDOW)
        self.sent_now = 0
        self.paused: str | None = None
        self.fatal: ConfigError | None = None
        self.waiting: str | None = None
        self.failed = False  # a worker raised: the run ends with its error

    @contextmanager
    def _tx(self, fresh: bool = False) -> Iterator[Connection]:
        """A write transaction on this worker's connection (no pool check-out and ping per
        batch), queued behind this process's other writers on SQLite. `fresh`: on a new
        pooled connection, for recording after an error that may have broken ours."""
        conn = None if fresh else getattr(self.local, "conn", None)
        with self.writer, (nullcontext(conn) if conn is not None else self.ctx.engine.connect()) as c, \
                c.begin():
            yield c

    def _claim(self, variant: str, size: int) -> list[Any]:
        with self._tx() as conn:
            status = conn.execute(select(issues.c.status).where(issues.c.id == self.issue.id)).scalar()
            if status not in SENDABLE:
                self.paused = self.paused or f"issue is {status}"
                return []
            return ledger.claim_batch(conn, self.issue.id, variant, size, self.me)

    def run(self, variants: dict[str, PreparedVariant]) -> None:
        """Workers claim in parallel: on PostgreSQL a claim (a synchronous commit) no longer
        waits for the one before it, and the next batch is claimed and built by one worker
        while the others' batches are in flight."""
        with rare_collections(), \
                ThreadPoolExecutor(self.in_flight, thread_name_prefix="kpd-send") as pool:
            workers = [pool.submit(self._work, variants, k) for k in range(self.in_flight)]
            for w in workers:
                w.result()

    def _work(self, variants: dict[str, PreparedVariant], start: int) -> None:
        """Claim, hand over, record, until nothing is queued for this run. A worker that
        finds every variant empty stops; rows a batch puts back for a retry are claimed
        again by the worker that put them back, which always tries once more."""
        names = list(variants)
        i, empty = start, 0
        with self.ctx.engine.connect() as conn:
            self.local.conn = conn
            try:
                while not self.stop.is_set() and not self.paused and not self.failed:
                    size = self.pacer.reserve(self.size)  # today's allowance, before claiming
                    if size == 0:  # stop rather than hold claimed rows until tomorrow
                        self.waiting = "the daily allowance (sending.rate_per_day) is used up"
                        break
                    # Claim late: only once this slot may post now (rate and any hold).
                    if not self.pacer.acquire(size, self.stop, reserved=True):
                        self.pacer.refund(size, paced=False)
                        break
                    name = names[i % len(names)]
                    rows = self._claim(name, size)
                    self.pacer.refund(size - len(rows), paced=True)
                    if not rows:
                        empty += 1
                        i += 1
                        if empty > len(names):
                            break
                        continue
                    empty = 0
                    batch = _Batch(variants.get(rows[0].variant) or variants[name], rows,
                                   rows[0].batch_key)
                    self._deliver(batch)
            except BaseException:
                self.failed = True  # the others finish their batches and claim no more
                raise
            finally:
                self.local.conn = None

    # handing over (pool threads)
    def _deliver(self, batch: _Batch) -> None:
        try:
            self._deliver_inner(batch)
        except ConfigError as exc:  # about our settings, not a recipient: stop the issue
            self.fatal = self.fatal or exc
            self.stop.set()
            done = getattr(exc, "outcomes", None) or []  # answered before the refusal
            if done:
                self._record(done, _Batch(batch.variant, batch.rows[:len(done)], batch.key), 0)
            self._release(batch)  # the rest, attempts given back
        except Exception:  # a bug must not leave rows in `sending` for a live sender
            log.exception("batch %s: unexpected error; outcome unknown", batch.key)
            self._record([Outcome(r.id, "unknown", error="sender error after claim; outcome unknown")
                          for r in batch.rows], batch, 0, fresh=True)

    def _deliver_inner(self, batch: _Batch) -> None:
        recipients = recipients_for(self.linker, batch.rows)
        attempt = 0
        while True:
            attempt += 1  # the first attempt's tokens were taken before the batch was claimed
            if attempt > 1 and not self.pacer.wait_hold(self.stop):
                return self._release(batch)
            self._mark(batch, True)
            try:
                outcomes = self.transport.send_batch(batch.variant, recipients, batch.key)
            except RetryBatch as exc:
                self._mark(batch, False)  # refused whole: not on the wire while it waits
                if self._again(attempt, exc.retry_after):
                    continue
                if self.stop.is_set():
                    return self._release(batch)
                outcomes = [Outcome(r.id, "failed", error=f"gave up after {attempt} attempts: {exc}")
                            for r in batch.rows]
            except UnknownOutcome as exc:
                if self.transport.idempotent and self._again(attempt, None):
                    continue
                if self.transport.idempotent and self.stop.is_set():
                    return self._release(batch)
                outcomes = [Outcome(r.id, "unknown", error=str(exc)) for r in batch.rows]
            return self._record(outcomes, batch, attempt - 1)

    def _again(self, attempt: int, retry_after: float | None) -> bool:
        """Back off (holding the whole account) and say whether to try the batch again."""
        if attempt >= self.max_attempts or self.stop.is_set():
            return False
        self.pacer.hold(backoff(attempt, retry_after, base=self.ctx.config.sending.backoff_seconds))
        return True

    def _mark(self, batch: _Batch, posted: bool) -> None:
        """`posted` before the request starts (committed), back to claimed after a refusal."""
        if batch.posted == posted:
            return
        with self._tx() as conn:
            ledger.mark_posted(conn, [r.id for r in batch.rows], batch.key, self.me, posted)
        batch.posted = posted

    def _release(self, batch: _Batch) -> None:
        with self._tx() as conn:
            ledger.release(conn, [r.id for r in batch.rows], self.me)

    def _record(self, outcomes: list[Outcome], batch: _Batch, extra: int, fresh: bool = False) -> None:
        bounced = any(o.state == "suppressed" for o in outcomes)
        emails = {r.id: r.email for r in batch.rows} if bounced else None
        with self._tx(fresh) as conn:
            ledger.record(conn, outcomes, self.me, self.max_attempts, emails, extra,
                   (self.issue.id, batch.rows[0].variant, batch.key))
        with self.lock:
            self.sent_now += sum(o.state == "sent" for o in outcomes)
            self.window.extend(o.state == "failed" for o in outcomes)
            failed = sum(self.window)
            if (len(self.window) >= MIN_SAMPLE and not self.paused
                    and failed / len(self.window) > self.ctx.config.sending.error_threshold):
                self._pause(f"{failed} of the last {len(self.window)} recipients failed "
                            f"(threshold {self.ctx.config.sending.error_threshold:.0%})")
            if self.progress:
                self.progress(len(outcomes))

    def _pause(self, reason: str) -> None:
        self.paused = reason
        log.warning("issue #%s paused: %s", self.issue.number, reason)
        with self._tx() as conn:
            conn.execute(update(issues).where(issues.c.id == self.issue.id,
                                              issues.c.status.in_(SENDABLE))
                         .values(status=IssueStatus.PAUSED, pause_reason=reason))


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[threading.Event]:
    """SIGTERM/SIGINT set `stop`: batches in flight finish, the rest stays queued. A
    second SIGINT interrupts at once."""
    def handler(signum: int, _frame: Any) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for s, h in old.items():
            signal.signal(s, h)
