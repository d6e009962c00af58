"""The delivery ledger's SQL: claim a batch, record each recipient's answer, release a
batch never handed over, recover rows a dead sender left behind.

The ledger is the truth. A batch is claimed atomically (state -> sending) and committed
before it is handed over; if the sender dies before recording the answer, those rows are
`unknown` on recovery (or re-queued with the same idempotency key where the transport has
one), never silently resent and never silently dropped. Updates are set-based: a batch's
rows are found by a primary-key range and its batch key.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
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
from core.models import deliveries, suppressions
from core.owners import alive_here, this_process
from core.states import DeliveryState
from pipeline.deliver.transports.base import Outcome, Transport


def sender_id() -> str:
    """Who claims: host, pid (recovery checks whether it is alive) and a random tag."""
    return f"{this_process()}:{uuid.uuid4().hex[:8]}"


def _stale(row: Any, me: str, lease: datetime) -> bool:
    if row.claimed_by == me:
        return False
    # A dead pid on this host is stale at once; otherwise (another host, or a pid that
    # may have been reused) the lease decides.
    return alive_here(row.claimed_by) is False or row.claimed_at is None or row.claimed_at < lease


def database_now(conn: Connection) -> datetime:
    """The time on the database's clock (PostgreSQL), or this host's (SQLite: one host)."""
    if is_postgres(conn):
        return conn.execute(select(func.now())).scalar_one()
    return utcnow()


def recover_stale(ctx: Context, issue_id: int, transport: Transport, me: str) -> tuple[int, int]:
    """Rows a dead sender left behind. Claimed but never posted (`sending`): back to the
    queue, attempt given back; nobody was mailed. Posted with no answer (`posted`):
    `unknown`, or queued again with the same key if the transport is idempotent.
    Returns (made unknown, re-queued)."""
    d = deliveries.c
    with ctx.engine.begin() as conn:
        lease = database_now(conn) - timedelta(seconds=ctx.config.sending.lease_seconds)
        rows = conn.execute(select(d.id, d.state, d.claimed_by, d.claimed_at).where(
            d.issue_id == issue_id, d.state.in_(IN_FLIGHT))).all()
        stale = [r for r in rows if _stale(r, me, lease)]
        claimed = [r.id for r in stale if r.state == DeliveryState.SENDING]
        posted = [r.id for r in stale if r.state == DeliveryState.POSTED]
        for chunk in _chunks(claimed, 900):
            conn.execute(update(deliveries).where(d.id.in_(chunk), d.state == SENDING)
                         .values(state=QUEUED, claimed_by=None, attempts=d.attempts - 1))
        for chunk in _chunks(posted, 900):
            target = update(deliveries).where(d.id.in_(chunk), d.state == POSTED)
            if transport.idempotent:
                conn.execute(target.values(state=QUEUED, claimed_by=None))
            else:
                conn.execute(target.values(
                    state=DeliveryState.UNKNOWN,
                    last_error="sender stopped after hand-off; outcome unknown"))
        if transport.idempotent:
            return 0, len(claimed) + len(posted)
        return len(posted), len(claimed)


def mark_posted(conn: Connection, ids: list[int], key: str, me: str, posted: bool = True) -> None:
    """A claimed batch goes on the wire (`posted`), committed before the request starts;
    or back to merely claimed (`posted=False`) after an answer that said nothing was
    accepted, so that a crash while it waits to be retried does not make it `unknown`."""
    d = deliveries.c
    frm, to = (SENDING, POSTED) if posted else (POSTED, SENDING)
    for where in _by_ids(ids, is_postgres(conn)):
        conn.execute(update(deliveries).where(where, d.batch_key == key, d.claimed_by == me,
                                              d.state == frm).values(state=to))


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
POSTED = literal_column("'posted'")
IN_FLIGHT = (SENDING, POSTED)


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
    # PostgreSQL may serve senders on several hosts: a lease is stamped (and judged, in
    # recover_stale) on the database's clock, so hosts whose clocks disagree agree on it.
    stamp = func.now() if postgres else bindparam("p_now")
    claim = update(deliveries).values(
        state="sending", claimed_by=bindparam("p_me"), claimed_at=stamp,
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
    rows = list(conn.execute(claim, params))
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
        base = update(deliveries).where(d.claimed_by == me, d.state.in_(IN_FLIGHT))
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
        d.claimed_by == bindparam("p_me"), d.state.in_(IN_FLIGHT)).values(
        state="sent", last_error=None, sent_at=bindparam("p_now"),
        provider_message_id=bindparam("p_pmid"))


def _retry_state(max_attempts: int, extra: int) -> Any:
    return case((deliveries.c.attempts + extra >= max_attempts, "failed"), else_="queued")


def _chunks(items: list[int], n: int) -> Iterator[list[int]]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


def release(conn: Connection, ids: list[int], me: str) -> None:
    """Put a claimed batch that was never handed over (or that the provider refused
    whole) back in the queue, key kept, attempt given back."""
    for chunk in _chunks(ids, 900):
        conn.execute(update(deliveries).where(deliveries.c.id.in_(chunk), deliveries.c.claimed_by == me,
                                              deliveries.c.state.in_(IN_FLIGHT))
                     .values(state="queued", claimed_by=None, attempts=deliveries.c.attempts - 1))


def has_unknown(ctx: Context, issue_id: int) -> bool:
    with ctx.engine.connect() as conn:
        return conn.execute(select(deliveries.c.id).where(
            deliveries.c.issue_id == issue_id, deliveries.c.state == DeliveryState.UNKNOWN)
            .limit(1)).first() is not None


def sent_today(ctx: Context) -> int:
    """Recipients handed to the provider in the last 24 hours, for the daily allowance."""
    since = utcnow() - timedelta(days=1)
    with ctx.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(deliveries).where(
            deliveries.c.state == "sent", deliveries.c.sent_at >= since)).scalar_one())

