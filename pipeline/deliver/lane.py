"""The lane for people who are waiting: sign-ups, confirmations, emailed links, welcomes and
editors' test sends, handed over one by one, never behind an issue.

Why a lane: a web request that sends mail answers later for a new address than for a
known one (the timing tells who is subscribed), and a queue shared with a million-recipient
issue makes a new reader wait for the issue. So the request only writes a row
(`outbound_mail`, the same work for every address) and a worker here does the rest: it
applies the sign-up, then sends the confirmation, paced by a bucket of its own
(`sending.lane_share` of the account's rate), so a running issue never delays it.

Workers run as a thread of `kpdigest serve` (woken at once by a new row) and of the
scheduler, and as a step of its dispatch job. A row is claimed (`queued -> sending`) in its
own transaction before hand-off; a row left `sending` by a dead worker is queued again when
a second copy is harmless (a link) or the transport has idempotency keys (the key is the
row's), else it becomes `unknown`: a welcome is never sent twice.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any

from sqlalchemy import select, update

from core.config import Config
from core.context import Context
from core.db import utcnow
from core.errors import InvalidInput, NotFound, TransportError
from core.models import outbound_mail
from core.owners import alive_here, this_process
from core.states import OutboundKind, OutboundState
from pipeline.deliver import mailer
from pipeline.deliver.pacing import Pacer, backoff
from pipeline.deliver.transports import get_transport
from pipeline.deliver.transports.base import RetryBatch, Transport, UnknownOutcome
from subscribers import consent
from subscribers.outbound import enqueue

log = logging.getLogger("kpdigest.lane")

#: Set by whoever queues in this process: the worker thread looks at once, not at its next poll.
WAKE = threading.Event()
POLL_SECONDS = 2.0
CLAIM = 50  # rows per pass, so a pass ends (and looks for stale rows) now and then
LINKS = (OutboundKind.CONFIRM, OutboundKind.PREFERENCES, OutboundKind.EXPORT,
         OutboundKind.ERASE)
Q, SENDING = OutboundState.QUEUED, OutboundState.SENDING


@dataclass
class LaneReport:
    """What one pass did, by final state of each row it handled."""

    counts: dict[str, int] = field(default_factory=dict)
    recovered: int = 0

    def add(self, state: str) -> None:
        self.counts[state] = self.counts.get(state, 0) + 1

    @property
    def handled(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        parts = [f"{n} {state}" for state, n in sorted(self.counts.items())]
        if self.recovered:
            parts.append(f"{self.recovered} taken back from a stopped worker")
        return ", ".join(parts) or "nothing waiting"


# --- queueing (called by the web and the CLI) -------------------------------------------------

def queue_signup(ctx: Context, email: str, name: str, topics: list[str] | None,
                 lists: tuple[str, ...], evidence: consent.Evidence) -> None:
    """Record a sign-up for the lane: the same one insert whatever the address, so the
    answer takes the same time for a known and an unknown one. Bad input is refused here."""
    consent.check_signup(ctx, email, topics)
    payload = {"email": email, "name": name, "topics": topics, "lists": list(lists),
               "evidence": evidence.__dict__}
    with ctx.engine.begin() as conn:
        enqueue(conn, OutboundKind.SIGNUP, payload=payload)
    WAKE.set()


def queue_link(ctx: Context, subscriber_id: int | None, purpose: str) -> None:
    """Queue a link mail (preferences, export, erase) if there is someone to send it to."""
    if subscriber_id is None:
        return
    with ctx.engine.begin() as conn:
        enqueue(conn, OutboundKind(purpose), subscriber_id=subscriber_id)
    WAKE.set()


def queue_test_welcome(ctx: Context, to: str) -> None:
    """An editor's test send of the welcome to their own address."""
    with ctx.engine.begin() as conn:
        enqueue(conn, OutboundKind.TEST_WELCOME, payload={"to": to})
    WAKE.set()


# --- one pass -------------------------------------------------------------------------------

def owner_name() -> str:
    return this_process()


def lane_pacer(cfg: Config) -> Pacer:
    """The lane's own bucket: its share of the account's rate (unlimited when that is)."""
    rate = cfg.sending.rate_per_second
    return Pacer(per_second=rate * cfg.sending.lane_share if rate else 0)


def run_once(ctx: Context, *, transport: Transport | None = None, pacer: Pacer | None = None,
             stop: threading.Event | None = None, limit: int = CLAIM,
             now: datetime | None = None) -> LaneReport:
    """Take back rows of stopped workers, then claim and send what is due (up to `limit`)."""
    transport = transport or get_transport(ctx.config)
    pacer = pacer or lane_pacer(ctx.config)
    report = LaneReport(recovered=recover(ctx, transport, now))
    owner = owner_name()
    for _ in range(limit):
        # One row per claim: a worker killed mid-send leaves one row `sending`, not a batch.
        if (stop is not None and stop.is_set()) or not pacer.acquire(1, stop):
            break
        rows = claim(ctx, owner, 1, now)
        if not rows:
            pacer.refund(1)
            break
        report.add(_handle(ctx, transport, rows[0]))
    return report


def drain(ctx: Context, *, transport: Transport | None = None, rounds: int = 1000) -> LaneReport:
    """Pass after pass until nothing is due (tests, a worker process)."""
    ctx.require_schema()
    transport = transport or get_transport(ctx.config)
    total = LaneReport()
    for _ in range(rounds):
        r = run_once(ctx, transport=transport)
        total.recovered += r.recovered
        for state, n in r.counts.items():
            total.counts[state] = total.counts.get(state, 0) + n
        if not r.handled:
            break
    return total


def claim(ctx: Context, owner: str, limit: int, now: datetime | None = None) -> list[Any]:
    """Due queued rows, now `sending` and ours; concurrent workers never share one."""
    now = now or utcnow()
    t = outbound_mail.c
    q = select(t.id).where(t.state == Q, t.next_attempt_at <= now).order_by(t.id).limit(limit)
    with ctx.engine.connect() as conn:  # a look first: SQLite's write lock only when needed
        if conn.execute(q).first() is None:
            return []
    with ctx.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            q = q.with_for_update(skip_locked=True)
        ids = list(conn.execute(q).scalars())
        if not ids:
            return []
        conn.execute(update(outbound_mail).where(t.id.in_(ids), t.state == Q).values(
            state=SENDING, claimed_by=owner, claimed_at=now, attempts=t.attempts + 1))
        return list(conn.execute(select(outbound_mail).where(t.id.in_(ids), t.claimed_by == owner)
                                 .order_by(t.id)).all())


def recover(ctx: Context, transport: Transport, now: datetime | None = None) -> int:
    """Rows left `sending` by a worker that stopped (its process is gone, or its lease ran
    out): queued again when a second copy is harmless or deduplicated, else `unknown`."""
    now = now or utcnow()
    lease = timedelta(seconds=ctx.config.sending.lease_seconds)
    t = outbound_mail.c
    with ctx.engine.connect() as conn:  # a look first: SQLite's write lock only when needed
        rows = conn.execute(select(t.id, t.kind, t.claimed_by, t.claimed_at)
                            .where(t.state == SENDING)).all()
    stale = [r for r in rows if alive_here(r.claimed_by) is False or r.claimed_at < now - lease]
    if not stale:
        return 0
    with ctx.engine.begin() as conn:
        for r in stale:
            again = transport.idempotent or r.kind != OutboundKind.WELCOME
            conn.execute(update(outbound_mail).where(t.id == r.id, t.state == SENDING).values(
                state=Q if again else OutboundState.UNKNOWN, claimed_by=None, next_attempt_at=now,
                last_error=f"the worker {r.claimed_by} stopped while sending it"))
    return len(stale)



def _handle(ctx: Context, transport: Transport, row: Any) -> str:
    """Send one claimed row and record its outcome; returns the final state."""
    try:
        msg = _message(ctx, row)
    except (NotFound, InvalidInput) as exc:
        return _finish(ctx, row.id, OutboundState.DROPPED, error=str(exc))
    if msg is None:
        return _finish(ctx, row.id, OutboundState.DROPPED, error="nothing to send")
    try:
        message_id = _hand_over(transport, msg, f"kpd-lane-{row.id}")
    except RetryBatch as exc:
        return _retry(ctx, row, str(exc), exc.retry_after)
    except UnknownOutcome as exc:
        if transport.idempotent or row.kind != OutboundKind.WELCOME:
            return _retry(ctx, row, str(exc), None)
        return _finish(ctx, row.id, OutboundState.UNKNOWN, error=str(exc))
    except TransportError as exc:
        return _retry(ctx, row, str(exc), None)
    return _finish(ctx, row.id, OutboundState.SENT, message_id=message_id)


def _message(ctx: Context, row: Any) -> EmailMessage | None:
    """The mail a row stands for; a sign-up is applied first and becomes a confirmation."""
    mid = f"lane-{row.id}"
    if row.kind == OutboundKind.SIGNUP:
        sid = _apply_signup(ctx, row)
        return None if sid is None else mailer.link_message(ctx, sid, "confirm", mid)
    if row.kind == OutboundKind.WELCOME:
        return mailer.welcome_message(ctx, row.subscriber_id, message_id=mid)
    if row.kind == OutboundKind.TEST_WELCOME:
        return mailer.welcome_message(ctx, None, to=(row.payload or {}).get("to"), message_id=mid)
    if row.subscriber_id is None:
        raise NotFound("the subscriber is gone")
    return mailer.link_message(ctx, row.subscriber_id, str(row.kind), mid)


def _apply_signup(ctx: Context, row: Any) -> int | None:
    """Record the sign-up with its evidence; the row becomes the confirmation (or is done),
    and the form's personal data leaves the queue."""
    p = row.payload or {}
    ev = consent.Evidence(**p.get("evidence", {}))
    sid = consent.signup(ctx, p.get("email", ""), p.get("name", ""), p.get("topics"),
                         list_slugs=tuple(p.get("lists") or ()), evidence=ev)
    t = outbound_mail.c
    with ctx.engine.begin() as conn:
        conn.execute(update(outbound_mail).where(t.id == row.id).values(
            kind=OutboundKind.CONFIRM if sid else row.kind, subscriber_id=sid, payload=None))
    return sid


def _hand_over(transport: Transport, msg: EmailMessage, key: str) -> str:
    """send_single, with the row's idempotency key where the transport takes one."""
    if transport.idempotent:
        return str(transport.send_single(msg, idempotency_key=key))  # type: ignore[call-arg]
    return transport.send_single(msg)


def _retry(ctx: Context, row: Any, error: str, retry_after: float | None) -> str:
    if row.attempts >= ctx.config.sending.max_attempts:
        return _finish(ctx, row.id, OutboundState.FAILED, error=error)
    wait = backoff(row.attempts, retry_after, base=max(1.0, ctx.config.sending.backoff_seconds))
    t = outbound_mail.c
    with ctx.engine.begin() as conn:
        conn.execute(update(outbound_mail).where(t.id == row.id).values(
            state=Q, claimed_by=None, last_error=error[:2000],
            next_attempt_at=utcnow() + timedelta(seconds=wait)))
    log.warning("lane: %s #%s will be retried in %.0fs: %s", row.kind, row.id, wait, error)
    return "retry"


def _finish(ctx: Context, row_id: int, state: OutboundState, *, error: str | None = None,
            message_id: str | None = None) -> str:
    t = outbound_mail.c
    with ctx.engine.begin() as conn:
        conn.execute(update(outbound_mail).where(t.id == row_id).values(
            state=state, last_error=error[:2000] if error else None,
            provider_message_id=message_id, payload=None,
            sent_at=utcnow() if state == OutboundState.SENT else None))
    if state in (OutboundState.FAILED, OutboundState.UNKNOWN):
        log.error("lane: #%s %s: %s", row_id, state, error)
    return str(state)


# --- the worker thread -------------------------------------------------------------------------

class Worker(threading.Thread):
    """The lane in a long-running process (`kpdigest serve`, the scheduler)."""

    def __init__(self, ctx: Context, stop: threading.Event, poll: float = POLL_SECONDS) -> None:
        super().__init__(name="kpdigest-lane", daemon=True)
        self.ctx, self.stop, self.poll = ctx, stop, poll

    def run(self) -> None:
        self.ctx.require_schema()
        transport = get_transport(self.ctx.config)
        pacer = lane_pacer(self.ctx.config)
        transport.open()
        try:
            while not self.stop.is_set():
                WAKE.clear()
                try:
                    busy = run_once(self.ctx, transport=transport, pacer=pacer,
                                    stop=self.stop).handled
                except Exception:  # a database hiccup must not end the lane for good
                    log.exception("lane: pass failed; trying again")
                    busy = 0
                if not busy:
                    WAKE.wait(self.poll)
        finally:
            transport.close()


def start_worker(ctx: Context, stop: threading.Event, poll: float = POLL_SECONDS) -> Worker:
    worker = Worker(ctx, stop, poll)
    worker.start()
    return worker
