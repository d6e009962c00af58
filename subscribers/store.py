"""Subscribers, lists and subscriptions: the library calls behind CLI, web and import."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, func, insert, or_, select, update
from sqlalchemy.engine import Connection

from core.addresses import normalize_email
from core.context import Context
from core.db import new_id, utcnow
from core.errors import NotFound, StateError
from core.models import events, lists, subscribers, subscriptions, suppressions
from core.states import SubscriptionStatus

DEFAULT_LIST = "weekly"


def ensure_default_list(conn: Connection, name: str) -> int:
    """The weekly list every digest goes to unless told otherwise; created once."""
    row = conn.execute(select(lists.c.id).where(lists.c.slug == DEFAULT_LIST)).first()
    if row:
        return int(row.id)
    return int(new_id(conn.execute(insert(lists).values(
        slug=DEFAULT_LIST, name=name, description="The weekly digest", public=True,
        double_optin=True, created_at=utcnow(),
    ))))


def list_id(conn: Connection, slug: str = DEFAULT_LIST) -> int:
    row = conn.execute(select(lists.c.id).where(lists.c.slug == slug)).first()
    if row is None:
        raise NotFound(f"no list named {slug!r}")
    return int(row.id)


def receiving(now: datetime) -> ColumnElement[bool]:
    """Subscriptions an issue frozen at `now` goes to: active, or paused with the pause
    over (readers come back by themselves, before the daily job marks them active)."""
    c = subscriptions.c
    return or_(c.status == SubscriptionStatus.ACTIVE,
               and_(c.status == SubscriptionStatus.PAUSED, c.paused_until.is_not(None),
                    c.paused_until <= now))


def paused(ctx: Context, limit: int = 500) -> list[Any]:
    """Who is paused until when, soonest back first (the admin's view)."""
    with ctx.engine.connect() as conn:
        return list(conn.execute(
            select(subscribers.c.id, subscribers.c.email, subscribers.c.name, lists.c.slug,
                   subscriptions.c.paused_until)
            .join(subscriptions, subscriptions.c.subscriber_id == subscribers.c.id)
            .join(lists, lists.c.id == subscriptions.c.list_id)
            .where(subscriptions.c.status == SubscriptionStatus.PAUSED)
            .order_by(subscriptions.c.paused_until, subscribers.c.id).limit(limit)).all())


def log_event(conn: Connection, subscriber_id: int | None, kind: str,
              detail: dict[str, Any] | None = None, actor: str | None = None) -> None:
    """Append to the audit trail of subscription events."""
    conn.execute(insert(events).values(subscriber_id=subscriber_id, kind=kind,
                                       detail=detail or {}, actor=actor, created_at=utcnow()))


def is_suppressed(conn: Connection, email: str) -> str | None:
    """The suppression reason for an address, or None if it may be mailed."""
    return conn.execute(select(suppressions.c.reason).where(suppressions.c.email == email)).scalar()


def suppress(conn: Connection, email: str, reason: str, detail: str | None = None) -> bool:
    """Add an address to the do-not-mail list; True if it was not there yet."""
    if is_suppressed(conn, email):
        return False
    conn.execute(insert(suppressions).values(email=email, reason=reason, detail=detail,
                                             created_at=utcnow()))
    return True


def get_subscriber(conn: Connection, email: str) -> Any:
    row = conn.execute(select(subscribers).where(subscribers.c.email == normalize_email(email))).first()
    if row is None:
        raise NotFound(f"no subscriber {email!r}")
    return row


def add_subscriber(
    ctx: Context,
    email: str,
    name: str = "",
    *,
    confirmed: bool = True,
    topics: list[str] | None = None,
    source: str = "cli",
    list_slug: str = DEFAULT_LIST,
    consent: dict[str, Any] | None = None,
) -> int:
    """Add (or re-activate) a subscriber on a list.

    `confirmed=True` is for admins adding someone who already consented elsewhere; the
    public sign-up passes False and the subscription stays pending until confirmed.
    A suppressed address is refused: suppression wins over every way in.
    """
    addr = normalize_email(email)
    now = utcnow()
    with ctx.engine.begin() as conn:
        reason = is_suppressed(conn, addr)
        if reason:
            raise StateError(f"{addr} is suppressed ({reason}) and cannot be subscribed")
        lid = list_id(conn, list_slug)
        row = conn.execute(select(subscribers.c.id).where(subscribers.c.email == addr)).first()
        if row:
            sid = int(row.id)
            if name:
                conn.execute(update(subscribers).where(subscribers.c.id == sid)
                             .values(name=name, updated_at=now))
        else:
            sid = int(new_id(conn.execute(insert(subscribers).values(
                email=addr, name=name, attributes={}, created_at=now, updated_at=now,
            ))))
        status = "active" if confirmed else "pending"
        c = consent or {}
        sub = conn.execute(select(subscriptions.c.id, subscriptions.c.status).where(and_(
            subscriptions.c.subscriber_id == sid, subscriptions.c.list_id == lid))).first()
        topic_key = ",".join(sorted(set(topics))) if topics else None
        values = dict(status=status, topics=topic_key, consent_at=now, consent_source=source,
                      consent_ip=c.get("ip"), consent_user_agent=c.get("user_agent"),
                      consent_text=c.get("text"), consent_version=c.get("version"),
                      confirmed_at=now if confirmed else None, unsubscribed_at=None, updated_at=now)
        if sub is None:
            conn.execute(insert(subscriptions).values(subscriber_id=sid, list_id=lid,
                                                      created_at=now, **values))
        elif sub.status != "active":
            conn.execute(update(subscriptions).where(subscriptions.c.id == sub.id).values(**values))
        else:
            return sid
        log_event(conn, sid, "subscribed" if confirmed else "signup_pending",
                  {"list": list_slug, "source": source})
    return sid


def unsubscribe(ctx: Context, subscriber_id: int, *, list_slug: str | None = None,
                source: str = "cli") -> bool:
    """Unsubscribe from one list, or from all (which also suppresses the address).

    Idempotent: a second call changes nothing and returns False.
    """
    now = utcnow()
    with ctx.engine.begin() as conn:
        sub = conn.execute(select(subscribers).where(subscribers.c.id == subscriber_id)).first()
        if sub is None:
            raise NotFound(f"no subscriber with id {subscriber_id}")
        cond = and_(subscriptions.c.subscriber_id == subscriber_id,
                    subscriptions.c.status != "unsubscribed")
        if list_slug:
            cond = and_(cond, subscriptions.c.list_id == list_id(conn, list_slug))
        changed = conn.execute(update(subscriptions).where(cond).values(
            status="unsubscribed", unsubscribed_at=now, updated_at=now)).rowcount
        if list_slug is None:
            changed += int(suppress(conn, sub.email, "unsubscribed", f"via {source}"))
        if changed:
            log_event(conn, subscriber_id, "unsubscribed", {"list": list_slug or "*", "source": source})
        return bool(changed)


def remove_subscriber(ctx: Context, email: str) -> None:
    """`subscribers remove`: unsubscribe from everything and suppress the address."""
    with ctx.engine.connect() as conn:
        sid = int(get_subscriber(conn, email).id)
    unsubscribe(ctx, sid, source="admin")


def iter_subscribers(ctx: Context, page_size: int = 1000) -> Iterator[Any]:
    """Every subscriber with their weekly-list status, read in keyset pages (flat memory)."""
    last = 0
    while True:
        with ctx.engine.connect() as conn:
            rows = conn.execute(
                select(subscribers.c.id, subscribers.c.email, subscribers.c.name,
                       subscribers.c.created_at,
                       func.coalesce(subscriptions.c.status, "none").label("status"),
                       subscriptions.c.topics, subscriptions.c.paused_until)
                .select_from(subscribers.outerjoin(subscriptions, and_(
                    subscriptions.c.subscriber_id == subscribers.c.id,
                    subscriptions.c.list_id == select(lists.c.id)
                    .where(lists.c.slug == DEFAULT_LIST).scalar_subquery())))
                .where(subscribers.c.id > last).order_by(subscribers.c.id).limit(page_size)
            ).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].id


def counts(ctx: Context) -> dict[str, int]:
    with ctx.engine.connect() as conn:
        rows = conn.execute(select(subscriptions.c.status, func.count())
                            .group_by(subscriptions.c.status)).all()
    return {r[0]: r[1] for r in rows}


def erase(ctx: Context, subscriber_id: int) -> None:
    """Right to erasure: delete the person; the address stays only on the suppression list,
    so it is never mailed again."""
    with ctx.engine.begin() as conn:
        sub = conn.execute(select(subscribers).where(subscribers.c.id == subscriber_id)).first()
        if sub is None:
            raise NotFound(f"no subscriber with id {subscriber_id}")
        conn.execute(delete(suppressions).where(suppressions.c.email == sub.email))
        suppress(conn, sub.email, "erased")
        conn.execute(delete(subscribers).where(subscribers.c.id == subscriber_id))
