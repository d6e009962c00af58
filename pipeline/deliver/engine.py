"""Sending a frozen issue: claim a batch from the delivery ledger, hand it to the
transport, record each recipient's own result.

The ledger is the truth. A batch is claimed atomically (state -> sending) and committed
before it is handed over; if the sender dies before recording the answer, those rows are
`unknown` on recovery (or re-queued with the same idempotency key where the transport has
one), never silently resent and never silently dropped.

Throughput comes from batches in flight at once (threads: the work is waiting on the
provider), set-based ledger updates, and per-recipient work reduced to joins: links are
signed with a precomputed HMAC and message bodies are templates split once per variant.
"""

from __future__ import annotations

import binascii
import gc
import hashlib
import logging
import os
import signal
import socket
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from operator import itemgetter
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Text,
    any_,
    bindparam,
    case,
    exists,
    func,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Connection

from core.context import Context
from core.db import is_postgres, utcnow
from core.errors import ConfigError, StateError
from core.models import deliveries, issue_variants, issues, suppressions
from pipeline.compose.issues import delivery_counts, get_issue
from pipeline.compose.message import Recipient
from pipeline.compose.prepare import PreparedVariant
from pipeline.deliver.doctor import ensure_domain_ready
from pipeline.deliver.doctor.rates import ensure_reputation
from pipeline.deliver.pacing import Pacer, backoff
from pipeline.deliver.transports import get_transport
from pipeline.deliver.transports.base import Outcome, RetryBatch, Transport, UnknownOutcome

log = logging.getLogger(__name__)
FINAL = ("sent", "failed", "unknown", "suppressed")
WINDOW = 1000  # recipients the error threshold looks back over
MIN_SAMPLE = 20  # ...and how many it needs before it may pause an issue


def sender_id() -> str:
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


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


# --- links ---------------------------------------------------------------------------

_URLSAFE = bytes.maketrans(b"+/", b"-_")
_IPAD = bytes(x ^ 0x36 for x in range(256))
_OPAD = bytes(x ^ 0x5C for x in range(256))


def _b64(data: bytes) -> bytes:
    return binascii.b2a_base64(data, newline=False).translate(_URLSAFE).rstrip(b"=")


class Linker:
    """Unsubscribe/preferences URLs, byte-identical to subscribers.tokens.link() signed
    at a fixed time (the issue's freeze), at a few microseconds each instead of ~100:
    HMAC-SHA1 from its inner and outer hash states, computed once.

    A fixed timestamp also makes a batch's payload identical on every retry, which
    idempotency keys (Resend) require.
    """

    PURPOSES = ("unsubscribe", "preferences")

    def __init__(self, base_url: str, secret: str, when: datetime) -> None:
        self.base = base_url.rstrip("/")
        ts = int(when.timestamp())
        self.ts = b"." + _b64(ts.to_bytes((ts.bit_length() + 7) // 8 or 1, "big"))
        self.states: dict[str, tuple[Any, Any]] = {}
        for p in self.PURPOSES:
            key = hashlib.sha1(f"kpdigest.{p}".encode() + b"signer" + secret.encode()).digest()
            key = key.ljust(64, b"\0")  # HMAC's block-sized key, then its two pads
            self.states[p] = (hashlib.sha1(key.translate(_IPAD)), hashlib.sha1(key.translate(_OPAD)))
        self.prefix = {p: f"{self.base}/{p}/" for p in self.PURPOSES}

    def _sign(self, purpose: str, value: bytes) -> str:
        inner, outer = self.states[purpose]
        i = inner.copy()
        i.update(value)
        o = outer.copy()
        o.update(i.digest())
        return self.prefix[purpose] + (value + b"." + _b64(o.digest())).decode()

    def __call__(self, purpose: str, subscriber_id: int) -> str:
        return self._sign(purpose, _b64(str(int(subscriber_id)).encode()) + self.ts)

    def pair(self, subscriber_id: int) -> tuple[str, str]:
        """(unsubscribe URL, preferences URL) for one subscriber: `_sign` twice, inlined
        (this runs for every recipient)."""
        (ui, uo), (pi, po) = self.states["unsubscribe"], self.states["preferences"]
        value = _b64(str(int(subscriber_id)).encode()) + self.ts
        i = ui.copy()
        i.update(value)
        u = uo.copy()
        u.update(i.digest())
        i = pi.copy()
        i.update(value)
        p = po.copy()
        p.update(i.digest())
        v = value.decode()
        return (f"{self.prefix['unsubscribe']}{v}.{_b64(u.digest()).decode()}",
                f"{self.prefix['preferences']}{v}.{_b64(p.digest()).decode()}")


def recipients_for(linker: Linker, rows: list[Any]) -> list[Recipient]:
    """Rows with id, subscriber_id, email and name (claimed rows, or whole ledger rows),
    read by position: a Row's attribute lookup costs about a microsecond each."""
    if not rows:
        return []
    fields = rows[0]._fields
    did, sid, email, name = (fields.index(f) for f in ("id", "subscriber_id", "email", "name"))
    pair = linker.pair
    return [Recipient(r[did], r[email], r[name] or "", *pair(r[sid])) for r in rows]


# --- the ledger ----------------------------------------------------------------------

def _pid_alive(claimed_by: str) -> bool | None:
    """True/False for a claim made on this host, None for another host (use the lease)."""
    host, _, rest = (claimed_by or "").partition(":")
    if host != socket.gethostname()[:40]:
        return None
    try:
        os.kill(int(rest.split(":")[0] or 0), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError):
        return True
    return True


def _stale(row: Any, me: str, lease: datetime) -> bool:
    if row.claimed_by == me:
        return False
    # A dead pid on this host is stale at once; otherwise (another host, or a pid that
    # may have been reused) the lease decides.
    return _pid_alive(row.claimed_by) is False or row.claimed_at is None or row.claimed_at < lease


def recover_stale(ctx: Context, issue_id: int, transport: Transport, me: str) -> tuple[int, int]:
    """Rows a dead sender left in `sending`: unknown, or queued again (same key) if the
    transport is idempotent. Returns (made unknown, re-queued)."""
    lease = utcnow() - timedelta(seconds=ctx.config.sending.lease_seconds)
    with ctx.engine.begin() as conn:
        rows = conn.execute(select(deliveries.c.id, deliveries.c.claimed_by, deliveries.c.claimed_at)
                            .where(deliveries.c.issue_id == issue_id,
                                   deliveries.c.state == "sending")).all()
        stale = [r.id for r in rows if _stale(r, me, lease)]
        if not stale:
            return 0, 0
        target = update(deliveries).where(deliveries.c.id.in_(stale), deliveries.c.state == "sending")
        if transport.idempotent:
            conn.execute(target.values(state="queued", claimed_by=None))
            return 0, len(stale)
        conn.execute(target.values(state="unknown",
                                   last_error="sender stopped after hand-off; outcome unknown"))
        return len(stale), 0


def claim_batch(conn: Connection, issue_id: int, variant: str, size: int, me: str) -> list[Any]:
    """Atomically move up to `size` queued rows of `variant` to `sending`, owned by this
    sender, in one UPDATE ... WHERE id IN (SELECT ... LIMIT) ... RETURNING.

    A batch waiting for a retry with its idempotency key comes first, whole. Otherwise the
    next rows in id order: a keyset page on the state index, whatever the list size.
    PostgreSQL: FOR UPDATE SKIP LOCKED lets several senders share an issue. SQLite: the
    transaction began IMMEDIATE, so claims are serialised. Rows whose address was
    suppressed (or whose subscriber was erased) after the freeze become `suppressed`.
    """
    while True:
        claimed, rows = _claim_page(conn, issue_id, variant, size, me)
        if rows or not claimed:  # a page that was all suppressed: take the next one
            return rows


QUEUED = literal_column("'queued'")
SENDING = literal_column("'sending'")


@cache
def _claim_statements(postgres: bool, keyed: bool) -> tuple[Any, Any]:
    """(find a batch waiting with its key, claim), built once with bound parameters:
    building and cache-keying them took a few ms of CPU per claim."""
    d = deliveries.c
    # claimed_by IS NULL: the partial claim index's own predicate, so both planners (and
    # PostgreSQL's generic plans for prepared statements) use it.
    mine = (d.issue_id == bindparam("p_issue"), d.claimed_by.is_(None), d.state == QUEUED,
            d.variant == bindparam("p_variant"))
    find_keyed = select(d.batch_key).where(*mine, d.batch_key.is_not(None)).limit(1)
    # Ordered by (batch_key, id), not id alone: the same order (the key is NULL), but the
    # index's own, so PostgreSQL reads one page instead of sorting every queued row.
    pick = select(d.id).where(*mine, d.batch_key == bindparam("p_key")) if keyed else \
        select(d.id).where(*mine, d.batch_key.is_(None)).order_by(d.batch_key, d.id) \
        .limit(bindparam("p_size"))
    claim = update(deliveries).values(
        state="sending", claimed_by=bindparam("p_me"), claimed_at=bindparam("p_now"),
        batch_key=bindparam("p_key"), attempts=d.attempts + 1)
    if postgres:
        # Lock the page in a CTE evaluated once, then update it by an array of its row
        # addresses (a TID scan: no primary-key descent per row; a locked row cannot move),
        # in one round trip: an IN (subquery ... SKIP LOCKED) may be re-evaluated and claim
        # more than one page, and a join may be planned as a scan of the whole table.
        ctid = literal_column(f"{deliveries.name}.ctid")
        picked = pick.with_only_columns(ctid.label("tid")).with_for_update(skip_locked=True) \
            .cte("picked").prefix_with("MATERIALIZED")
        claim = claim.where(ctid == any_(func.array(select(picked.c.tid).scalar_subquery())),
                            d.state == QUEUED)
    else:
        claim = claim.where(d.id.in_(pick), d.state == QUEUED)
    returned = (d.id, d.subscriber_id, d.email, d.name, d.variant, d.batch_key)
    if postgres:
        # Whether the address was suppressed (or the subscriber erased) after the freeze,
        # read by the claim itself: those rows are set aside by id, only when there are
        # any. (SQLite scans the whole suppression list for a subquery in RETURNING.)
        # Written out: SQLAlchemy would not correlate a subquery in RETURNING.
        gone = literal_column(f"({d.subscriber_id.name} IS NULL OR EXISTS (SELECT 1 FROM {suppressions.name} "
                              f"WHERE {suppressions.name}.email = {deliveries.name}.email))")
        returned += (gone.label("gone"),)
    return find_keyed, claim.returning(*returned)


@cache
def _gone_statement() -> Any:
    """Claimed rows whose address was suppressed (or subscriber erased) after the freeze
    become `suppressed`; the caller adds which ids."""
    d = deliveries.c
    listed = exists().where(suppressions.c.email == d.email)
    return update(deliveries).where(
        d.batch_key == bindparam("p_key"), d.claimed_by == bindparam("p_me"), d.state == SENDING,
        or_(d.subscriber_id.is_(None), listed)).values(
        state="suppressed",
        last_error="suppressed or erased before sending").returning(d.id)


def _claim_page(conn: Connection, issue_id: int, variant: str, size: int, me: str) -> tuple[int, list[Any]]:
    params: dict[str, Any] = {"p_issue": issue_id, "p_variant": variant, "p_me": me, "p_size": size}
    postgres = is_postgres(conn)
    find_keyed = _claim_statements(postgres, False)[0]
    keyed = conn.execute(find_keyed, params).scalar()
    claim = _claim_statements(postgres, bool(keyed))[1]
    params.update(p_key=keyed or uuid.uuid4().hex, p_now=utcnow())
    rows = conn.execute(claim, params).all()
    if not rows:
        return 0, []
    rows.sort(key=itemgetter(0))  # by id
    if postgres:
        gone = [r[0] for r in rows if r[-1]]
        if gone:
            conn.execute(_gone_statement().where(deliveries.c.id == any_(bindparam("p_ids"))),
                         {**params, "p_ids": gone})
    else:
        gone = [i for where in _by_ids([r[0] for r in rows], False)
                for i in conn.execute(_gone_statement().where(where), params).scalars()]
    if not gone:
        return len(rows), rows
    out = set(gone)
    return len(rows), [r for r in rows if r[0] not in out]


SPREAD = 4  # a batch's ids spanning up to this many times its size are read as one range


def _by_ids(ids: list[int], postgres: bool) -> Iterator[Any]:
    """WHERE terms that find a claimed batch's rows by primary key, the claim index holding
    queued rows only: one range when the ids are close together (a batch claimed in id
    order, perhaps interleaved with another worker's), otherwise an array (PostgreSQL) or
    lists of at most 900 (SQLite's parameter limit)."""
    if max(ids) - min(ids) < SPREAD * len(ids):
        yield deliveries.c.id.between(min(ids), max(ids))
    elif postgres:
        yield deliveries.c.id == any_(bindparam("p_ids", ids, type_=ARRAY(BigInteger)))
    else:
        for chunk in _chunks(sorted(ids), 900):
            yield deliveries.c.id.in_(chunk)


def record(conn: Connection, outcomes: list[Outcome], me: str, max_attempts: int = 5,
           emails: dict[int, str] | None = None, extra_attempts: int = 0,
           batch: tuple[int, str, str] | None = None) -> None:
    """Store each recipient's result in a few set-based statements.

    A per-recipient `retry` goes back to the queue (with a fresh batch later) until it has
    used its attempts, then fails with the provider's reason. Rows another sender owns
    now (after a lease expired) are left alone. `batch` (issue id, variant, batch key)
    lets a batch with one outcome for everyone be recorded by its key within a
    primary-key range, without an id list.
    """
    d = deliveries.c
    now = utcnow()
    first = outcomes[0] if outcomes else None
    if batch is not None and first is not None and not extra_attempts and all(
            o.state == "sent" and o.error is None and o.provider_message_id == first.provider_message_id
            for o in outcomes):
        # The usual answer of a recipient-variables provider: the whole batch sent, one id.
        ids = [o.delivery_id for o in outcomes]
        lo, hi = min(ids), max(ids)
        ranged = hi - lo < SPREAD * len(ids)
        if ranged or is_postgres(conn):
            conn.execute(_record_sent_statement(ranged), {
                "p_me": me, "p_lo": lo, "p_hi": hi, "p_ids": ids, "p_key": batch[2], "p_now": now,
                "p_pmid": first.provider_message_id})
            return
    groups: dict[tuple[str, str | None], list[Outcome]] = {}
    for o in outcomes:
        groups.setdefault((o.state, o.error), []).append(o)
    whole = batch is not None and len(groups) == 1
    for (state, error), group in groups.items():
        ids = [o.delivery_id for o in group]
        base = update(deliveries).where(d.claimed_by == me, d.state == SENDING)
        if whole and batch:
            base = base.where(d.batch_key == batch[2])
        # A final result keeps claimed_by and batch_key (who handed it over, in which batch):
        # no indexed column changes, so PostgreSQL records it without an index entry.
        values: dict[str, Any] = {"state": state, "last_error": error,
                                  "attempts": d.attempts + extra_attempts}
        if state == "retry":  # queued again for a fresh batch, unless out of attempts
            again = deliveries.c.attempts + extra_attempts < max_attempts
            values.update(state=_retry_state(max_attempts, extra_attempts),
                          claimed_by=case((again, None), else_=d.claimed_by),
                          batch_key=case((again, None), else_=d.batch_key))
        if state == "sent":
            values["sent_at"] = now
            pmids = {o.provider_message_id for o in group}
            if len(pmids) > 1 and is_postgres(conn):  # one id per message (Postmark, Resend):
                # one UPDATE ... FROM unnest(ids, message ids), not a statement per row
                # (PostgreSQL spent ~60 µs of CPU on each of those)
                pairs = func.unnest(bindparam("p_ids", type_=ARRAY(BigInteger)),
                                    bindparam("p_pmids", type_=ARRAY(Text))) \
                    .table_valued("id", "pmid").render_derived(name="answers")
                conn.execute(base.where(d.id == pairs.c.id)
                             .values(**values, provider_message_id=pairs.c.pmid),
                             {"p_ids": [o.delivery_id for o in group],
                              "p_pmids": [o.provider_message_id for o in group]})
                continue
            if len(pmids) > 1:  # SQLite: one prepared statement run for each row, in process
                # (a 500-branch CASE costs more to build than to run)
                conn.execute(base.where(d.id == bindparam("did"))
                             .values(**values, provider_message_id=bindparam("pmid")),
                             [{"did": o.delivery_id, "pmid": o.provider_message_id} for o in group])
                continue
            values["provider_message_id"] = pmids.pop()
        for where in _by_ids(ids, is_postgres(conn)) if whole else \
                (d.id.in_(chunk) for chunk in _chunks(ids, 900)):
            conn.execute(base.where(where).values(**values))
        if state == "suppressed" and emails:
            from subscribers.store import suppress

            for o in group:
                if o.delivery_id in emails:
                    suppress(conn, emails[o.delivery_id], "bounced", o.error)


@cache
def _record_sent_statement(ranged: bool) -> Any:
    """`record` for a whole batch sent under one provider message id, built once: the
    batch's rows by a primary-key range (told from others in it by their batch key), or
    by an array of ids (PostgreSQL) when they are spread out."""
    d = deliveries.c
    by_id = d.id.between(bindparam("p_lo"), bindparam("p_hi")) if ranged else \
        d.id == any_(bindparam("p_ids", type_=ARRAY(BigInteger)))
    return update(deliveries).where(
        by_id, d.batch_key == bindparam("p_key"),
        d.claimed_by == bindparam("p_me"), d.state == SENDING).values(
        state="sent", last_error=None, sent_at=bindparam("p_now"),
        provider_message_id=bindparam("p_pmid"))


def _retry_state(max_attempts: int, extra: int) -> Any:
    return case((deliveries.c.attempts + extra >= max_attempts, "failed"), else_="queued")


def _chunks(items: list[int], n: int) -> Iterator[list[int]]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


def release(conn: Connection, ids: list[int], me: str) -> None:
    """Put a claimed batch that was never handed over back in the queue, key kept."""
    for chunk in _chunks(ids, 900):
        conn.execute(update(deliveries).where(deliveries.c.id.in_(chunk), deliveries.c.claimed_by == me,
                                              deliveries.c.state == "sending")
                     .values(state="queued", claimed_by=None, attempts=deliveries.c.attempts - 1))


def load_variants(ctx: Context, issue: Any) -> dict[str, PreparedVariant]:
    with ctx.engine.connect() as conn:
        rows = conn.execute(select(issue_variants).where(issue_variants.c.issue_id == issue.id)).all()
    return {r.variant: PreparedVariant(ctx.config, issue.id, issue.number, r.variant,
                                       issue.placeholder_key, issue.subject, r.html_template,
                                       r.text_template) for r in rows}


def sent_today(ctx: Context) -> int:
    """Recipients handed to the provider in the last 24 hours, for the daily allowance."""
    since = utcnow() - timedelta(days=1)
    with ctx.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(deliveries).where(
            deliveries.c.state == "sent", deliveries.c.sent_at >= since)).scalar_one())


# --- the engine ----------------------------------------------------------------------

@dataclass
class _Batch:
    variant: PreparedVariant
    rows: list[Any]
    key: str


_gc_lock = threading.Lock()
_gc_users: list[tuple[int, int, int]] = []  # the thresholds to restore, one per running send


@contextmanager
def _rare_collections(young: int = 10_000) -> Iterator[None]:
    """Collect the youngest generation every `young` net allocations instead of 700 while
    sending: a batch's rows, recipients and strings (tens of thousands of objects, freed
    when it is recorded) then die young instead of being traversed again and again and
    promoted; collections took about 6 % of a sending process. Cycles are still found.
    Sends overlapping in one process restore the original thresholds when the last ends."""
    with _gc_lock:
        _gc_users.append(gc.get_threshold())
        gc.set_threshold(max(young, _gc_users[0][0]), *_gc_users[0][1:])
    try:
        yield
    finally:
        with _gc_lock:
            first = _gc_users[0]
            _gc_users.pop()
            if not _gc_users:
                gc.set_threshold(*first)


class Sender:
    """One sending run over one issue: `max_in_flight` workers, each claiming a batch,
    handing it over and recording the answer on a connection of its own."""

    def __init__(self, ctx: Context, issue: Any, transport: Transport, stop: threading.Event,
                 progress: Callable[[int], None] | None) -> None:
        self.ctx, self.issue, self.transport, self.stop = ctx, issue, transport, stop
        s = ctx.config.sending
        self.me = sender_id()
        self.size = min(s.batch_size or transport.max_batch, transport.max_batch)
        self.in_flight = max(1, s.max_in_flight)
        self.max_attempts = max(1, s.max_attempts)
        self.pacer = Pacer(s.rate_per_second, s.rate_per_day, sent_today(ctx) if s.rate_per_day else 0)
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
            if status not in ("frozen", "sending"):
                self.paused = self.paused or f"issue is {status}"
                return []
            return claim_batch(conn, self.issue.id, variant, size, self.me)

    def run(self, variants: dict[str, PreparedVariant]) -> None:
        """Workers claim in parallel: on PostgreSQL a claim (a synchronous commit) no longer
        waits for the one before it, and the next batch is claimed and built by one worker
        while the others' batches are in flight."""
        with _rare_collections(), \
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
                    name = names[i % len(names)]
                    rows = self._claim(name, size)
                    self.pacer.refund(size - len(rows))
                    if not rows:
                        empty += 1
                        i += 1
                        if empty > len(names):
                            break
                        continue
                    empty = 0
                    batch = _Batch(variants.get(rows[0].variant) or variants[name], rows, rows[0].batch_key)
                    if not self.pacer.acquire(len(rows), self.stop, reserved=True):
                        self._release(batch)
                        self.pacer.refund(len(rows))
                        break
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
        except ConfigError as exc:  # bad credentials or settings: nothing was handed over
            self.fatal = self.fatal or exc
            self.stop.set()
            self._release(batch)
        except Exception:  # a bug must not leave rows in `sending` for a live sender
            log.exception("batch %s: unexpected error; outcome unknown", batch.key)
            self._record([Outcome(r.id, "unknown", error="sender error after claim; outcome unknown")
                          for r in batch.rows], batch, 0, fresh=True)

    def _deliver_inner(self, batch: _Batch) -> None:
        recipients = recipients_for(self.linker, batch.rows)
        attempt = 0
        while True:
            attempt += 1  # the first attempt's tokens were taken when the batch was claimed
            if attempt > 1 and not self.pacer.wait_hold(self.stop):
                return self._release(batch)
            try:
                outcomes = self.transport.send_batch(batch.variant, recipients, batch.key)
            except RetryBatch as exc:
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

    def _release(self, batch: _Batch) -> None:
        with self._tx() as conn:
            release(conn, [r.id for r in batch.rows], self.me)

    def _record(self, outcomes: list[Outcome], batch: _Batch, extra: int, fresh: bool = False) -> None:
        bounced = any(o.state == "suppressed" for o in outcomes)
        emails = {r.id: r.email for r in batch.rows} if bounced else None
        with self._tx(fresh) as conn:
            record(conn, outcomes, self.me, self.max_attempts, emails, extra,
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
                                              issues.c.status.in_(("frozen", "sending")))
                         .values(status="paused", pause_reason=reason))


def _check_state(ctx: Context, issue: Any, force: bool) -> None:
    if issue.status == "draft":
        raise StateError(f"issue #{issue.number} is a draft awaiting approval")
    if issue.status in ("cancelled", "skipped"):
        raise StateError(f"issue #{issue.number} is {issue.status}")
    if issue.status == "paused":
        why = f" ({issue.pause_reason})" if issue.pause_reason else ""
        raise StateError(f"issue #{issue.number} is paused{why}: run `kpdigest issue resume "
                         f"{issue.number}` first")
    if not force and issue.status != "sent":
        from pipeline.compose.check import ensure_sendable

        ensure_sendable(ctx, issue.number)
        ensure_domain_ready(ctx.config)
        ensure_reputation(ctx)


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
    report.recovered_unknown, report.requeued = recover_stale(ctx, issue.id, transport, sender.me)
    with ctx.engine.begin() as conn:
        conn.execute(update(issues).where(issues.c.id == issue.id, issues.c.status == "frozen")
                     .values(status="sending", send_started_at=utcnow()))
    transport.open()
    try:
        sender.run(load_variants(ctx, issue))
    finally:
        transport.close()
    if sender.fatal:
        raise sender.fatal
    report.sent_now, report.paused, report.waiting = sender.sent_now, sender.paused, sender.waiting
    report.stopped = stop.is_set()
    with ctx.engine.begin() as conn:
        report.counts = delivery_counts(conn, issue.id)
        if report.counts["queued"] == 0 and report.counts["sending"] == 0:
            conn.execute(update(issues).where(issues.c.id == issue.id,
                                              issues.c.status.in_(("frozen", "sending")))
                         .values(status="sent", sent_at=utcnow()))
    return report


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
