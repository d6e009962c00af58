"""Double opt-in: pending sign-ups with their consent evidence, confirmation, preferences,
and the subscriber's own data export.

A sign-up never tells the caller whether the address was known: the web page gives the
same answer either way, and only the mailbox owner learns more (from the email).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, insert, select, update
from sqlalchemy.engine import Connection

from core.addresses import normalize_email
from core.context import Context
from core.db import new_id, utcnow
from core.errors import InvalidInput, NotFound, StateError
from core.models import deliveries, events, issues, lists, subscribers, subscriptions, suppressions
from core.states import OutboundKind, SubscriptionStatus
from subscribers.outbound import enqueue, welcome_key
from subscribers.store import DEFAULT_LIST, ensure_default_list, is_suppressed, log_event

PAUSE_WEEKS = (2, 4, 8)
# A confirmed re-opt-in lifts these; bounces and complaints stay until an admin lifts them.
LIFTED_BY_CONFIRMATION = ("unsubscribed", "erased")


@dataclass
class Evidence:
    """What the person saw and where they were when they asked to subscribe."""

    source: str
    ip: str | None = None
    user_agent: str | None = None
    text: str | None = None
    version: str | None = None


def topic_key(ctx: Context, topics: list[str] | None) -> str | None:
    """The stored form of a topic choice: sorted, comma-joined; None means every topic."""
    chosen = sorted(set(topics or []))
    unknown = [t for t in chosen if t not in ctx.config.topics]
    if unknown:
        raise InvalidInput(f"unknown topic {unknown[0]!r}")
    if not chosen or set(chosen) == set(ctx.config.topics):
        return None
    return ",".join(chosen)


def check_signup(ctx: Context, email: str, topics: list[str] | None) -> None:
    """Refuse a malformed address or an unknown topic before anything is queued; reads
    nothing stored, so it takes the same time for every address."""
    normalize_email(email)
    topic_key(ctx, topics)


def public_lists(ctx: Context) -> list[Any]:
    with ctx.engine.connect() as conn:
        return list(conn.execute(select(lists).where(lists.c.public.is_(True)).order_by(lists.c.id)))


def signup(ctx: Context, email: str, name: str = "", topics: list[str] | None = None, *,
           list_slugs: tuple[str, ...] = (DEFAULT_LIST,), evidence: Evidence) -> int | None:
    """Record a sign-up; the subscriber id to mail a confirmation to, or None when no mail
    should go (already active everywhere, or an address that bounced or complained)."""
    addr = normalize_email(email)
    key = topic_key(ctx, topics)
    now = utcnow()
    with ctx.engine.begin() as conn:
        reason = is_suppressed(conn, addr)
        if reason and reason not in LIFTED_BY_CONFIRMATION:
            return None
        sid = _subscriber(conn, addr, name.strip()[:200], now)
        pending = False
        for slug in list_slugs:
            row = conn.execute(select(lists).where(lists.c.slug == slug, lists.c.public.is_(True))).first()
            if row is None:
                raise InvalidInput(f"no public list {slug!r}")
            pending |= _pend(conn, sid, row, key, evidence, now, reason is not None)
        if pending:
            log_event(conn, sid, "signup_pending", {"lists": list(list_slugs), "source": evidence.source,
                                                    "ip": evidence.ip})
    return sid if pending else None


def _subscriber(conn: Connection, addr: str, name: str, now: Any) -> int:
    row = conn.execute(select(subscribers.c.id).where(subscribers.c.email == addr)).first()
    if row:
        return int(row.id)
    return int(new_id(conn.execute(insert(subscribers).values(
        email=addr, name=name, attributes={}, created_at=now, updated_at=now))))


def _pend(conn: Connection, sid: int, lst: Any, key: str | None, ev: Evidence, now: Any,
          suppressed: bool) -> bool:
    """Make one subscription pending (or active on a single opt-in list); True if it needs a mail."""
    sub = conn.execute(select(subscriptions.c.id, subscriptions.c.status).where(
        subscriptions.c.subscriber_id == sid, subscriptions.c.list_id == lst.id)).first()
    if sub is not None and sub.status == "active" and not suppressed:
        return False
    needs_mail = bool(lst.double_optin) or suppressed
    values = dict(status="pending" if needs_mail else "active", topics=key, consent_at=now,
                  consent_source=ev.source[:200], consent_ip=(ev.ip or "")[:64] or None,
                  consent_user_agent=ev.user_agent, consent_text=ev.text, consent_version=ev.version,
                  confirmed_at=None if needs_mail else now, unsubscribed_at=None, updated_at=now)
    if sub is None:
        conn.execute(insert(subscriptions).values(subscriber_id=sid, list_id=lst.id, created_at=now,
                                                  **values))
    else:
        conn.execute(update(subscriptions).where(subscriptions.c.id == sub.id).values(**values))
    return needs_mail


def confirm(ctx: Context, subscriber_id: int) -> int:
    """Activate every pending subscription of the subscriber; how many were activated.

    Confirming is a fresh, explicit consent, so it lifts an earlier unsubscribe-from-all.
    """
    now = utcnow()
    with ctx.engine.begin() as conn:
        sub = conn.execute(select(subscribers).where(subscribers.c.id == subscriber_id)).first()
        if sub is None:
            raise NotFound("this sign-up no longer exists; please subscribe again")
        reason = is_suppressed(conn, sub.email)
        if reason and reason not in LIFTED_BY_CONFIRMATION:
            return 0
        n = conn.execute(update(subscriptions).where(and_(
            subscriptions.c.subscriber_id == subscriber_id, subscriptions.c.status == "pending"))
            .values(status="active", confirmed_at=now, updated_at=now)).rowcount
        if n:
            conn.execute(delete(suppressions).where(suppressions.c.email == sub.email))
            log_event(conn, subscriber_id, "confirmed", {"subscriptions": n})
            # In this transaction, under a unique key: once per subscriber, whatever crashes.
            enqueue(conn, OutboundKind.WELCOME, subscriber_id=subscriber_id,
                    dedupe_key=welcome_key(subscriber_id), now=now)
        return int(n)


def resubscribe(ctx: Context, subscriber_id: int, evidence: Evidence) -> int:
    """Come back after unsubscribing, from a link only the mailbox owner has (so no second
    opt-in mail): fresh consent evidence on every unsubscribed subscription (or a new one
    on the weekly list), active again, the unsubscribe suppression lifted. Bounces and
    complaints stay (StateError). Returns how many subscriptions are active again."""
    now = utcnow()
    with ctx.engine.begin() as conn:
        sub = conn.execute(select(subscribers).where(subscribers.c.id == subscriber_id)).first()
        if sub is None:
            raise NotFound("this subscription no longer exists; please subscribe again")
        reason = is_suppressed(conn, sub.email)
        if reason and reason not in LIFTED_BY_CONFIRMATION:
            raise StateError(f"this address is blocked ({reason}); write to us to lift it")
        values = dict(status=SubscriptionStatus.ACTIVE, consent_at=now,
                      consent_source=evidence.source[:200], consent_ip=(evidence.ip or "")[:64] or None,
                      consent_user_agent=evidence.user_agent, consent_text=evidence.text,
                      consent_version=evidence.version, confirmed_at=now, unsubscribed_at=None,
                      paused_until=None, updated_at=now)
        n = conn.execute(update(subscriptions).where(
            subscriptions.c.subscriber_id == subscriber_id,
            subscriptions.c.status == SubscriptionStatus.UNSUBSCRIBED).values(**values)).rowcount
        live = conn.execute(select(subscriptions.c.id).where(
            subscriptions.c.subscriber_id == subscriber_id)).first()
        if not n and live is None:
            lid = ensure_default_list(conn, ctx.config.site.name)
            conn.execute(insert(subscriptions).values(subscriber_id=subscriber_id, list_id=lid,
                                                      created_at=now, **values))
            n = 1
        conn.execute(delete(suppressions).where(suppressions.c.email == sub.email))
        log_event(conn, subscriber_id, "resubscribed",
                  {"subscriptions": n, "source": evidence.source, "ip": evidence.ip})
    return int(n)


def preferences(ctx: Context, subscriber_id: int) -> dict[str, Any]:
    """What the preferences page shows: the person and each subscription."""
    with ctx.engine.connect() as conn:
        sub = conn.execute(select(subscribers).where(subscribers.c.id == subscriber_id)).first()
        if sub is None:
            raise NotFound("no such subscriber")
        subs = conn.execute(select(subscriptions, lists.c.slug, lists.c.name.label("list_name"))
                            .join(lists, lists.c.id == subscriptions.c.list_id)
                            .where(subscriptions.c.subscriber_id == subscriber_id)
                            .order_by(lists.c.id)).all()
        reason = is_suppressed(conn, sub.email)
    return {"subscriber": sub, "subscriptions": subs, "suppressed": reason}


def _live(subscriber_id: int) -> Any:
    return and_(subscriptions.c.subscriber_id == subscriber_id,
                subscriptions.c.status.in_((SubscriptionStatus.ACTIVE, SubscriptionStatus.PAUSED)))


def _exists(conn: Connection, subscriber_id: int) -> None:
    if conn.execute(select(subscribers.c.id).where(subscribers.c.id == subscriber_id)).first() is None:
        raise NotFound("no such subscriber")


def update_preferences(ctx: Context, subscriber_id: int, *, topics: list[str] | None,
                       name: str | None = None) -> None:
    """Topics apply to every live subscription (active or paused); a pause is its own call."""
    key = topic_key(ctx, topics)
    now = utcnow()
    with ctx.engine.begin() as conn:
        _exists(conn, subscriber_id)
        conn.execute(update(subscriptions).where(_live(subscriber_id)).values(topics=key, updated_at=now))
        if name is not None:
            conn.execute(update(subscribers).where(subscribers.c.id == subscriber_id)
                         .values(name=name.strip()[:200], updated_at=now))
        log_event(conn, subscriber_id, "preferences", {"topics": key or "*"})


def pause(ctx: Context, subscriber_id: int, weeks: int, *, source: str = "preferences",
          now: datetime | None = None) -> datetime:
    """Send nothing for 2, 4 or 8 weeks; the reader is back by themselves after (the
    freeze takes a pause that has ended as active). Returns when the pause ends."""
    if weeks not in PAUSE_WEEKS:
        raise InvalidInput(f"a pause is {', '.join(map(str, PAUSE_WEEKS))} weeks, not {weeks}")
    now = now or utcnow()
    until = now + timedelta(weeks=weeks)
    with ctx.engine.begin() as conn:
        _exists(conn, subscriber_id)
        n = conn.execute(update(subscriptions).where(_live(subscriber_id)).values(
            status=SubscriptionStatus.PAUSED, paused_until=until, updated_at=now)).rowcount
        if not n:
            raise StateError("there is no subscription to pause")
        log_event(conn, subscriber_id, "paused", {"weeks": weeks, "until": until.isoformat(),
                                                  "source": source})
    return until


def resume(ctx: Context, subscriber_id: int, *, now: datetime | None = None) -> bool:
    """End a pause now; False when nothing was paused."""
    now = now or utcnow()
    with ctx.engine.begin() as conn:
        _exists(conn, subscriber_id)
        n = conn.execute(update(subscriptions).where(
            subscriptions.c.subscriber_id == subscriber_id,
            subscriptions.c.status == SubscriptionStatus.PAUSED).values(
            status=SubscriptionStatus.ACTIVE, paused_until=None, updated_at=now)).rowcount
        if n:
            log_event(conn, subscriber_id, "resumed", {"source": "preferences"})
    return bool(n)


def end_pauses(ctx: Context, now: datetime | None = None) -> int:
    """Pauses whose time is over become active again (the daily job; the freeze already
    counts them in, so this only keeps the shown status true). Returns how many."""
    now = now or utcnow()
    with ctx.engine.begin() as conn:
        return int(conn.execute(update(subscriptions).where(
            subscriptions.c.status == SubscriptionStatus.PAUSED,
            subscriptions.c.paused_until.is_not(None), subscriptions.c.paused_until <= now).values(
            status=SubscriptionStatus.ACTIVE, paused_until=None, updated_at=now)).rowcount or 0)


def export_data(ctx: Context, subscriber_id: int) -> dict[str, Any]:
    """Everything stored about one subscriber (right of access), as JSON-ready values."""
    def plain(row: Any) -> dict[str, Any]:
        return {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row._mapping.items()}

    with ctx.engine.connect() as conn:
        sub = conn.execute(select(subscribers).where(subscribers.c.id == subscriber_id)).first()
        if sub is None:
            raise NotFound("no such subscriber")
        subs = conn.execute(select(subscriptions, lists.c.slug)
                            .join(lists, lists.c.id == subscriptions.c.list_id)
                            .where(subscriptions.c.subscriber_id == subscriber_id)).all()
        evts = conn.execute(select(events).where(events.c.subscriber_id == subscriber_id)
                            .order_by(events.c.id)).all()
        sent = conn.execute(select(issues.c.number, deliveries.c.state, deliveries.c.sent_at)
                            .join(issues, issues.c.id == deliveries.c.issue_id)
                            .where(deliveries.c.subscriber_id == subscriber_id)
                            .order_by(issues.c.number)).all()
    return {"subscriber": plain(sub), "subscriptions": [plain(s) for s in subs],
            "events": [plain(e) for e in evts], "deliveries": [plain(d) for d in sent]}


def find_subscriber_id(ctx: Context, email: str) -> int | None:
    """The id for an address, or None (callers must not reveal which)."""
    try:
        addr = normalize_email(email)
    except InvalidInput:
        return None
    with ctx.engine.connect() as conn:
        return conn.execute(select(subscribers.c.id).where(subscribers.c.email == addr)).scalar()
