"""Individual analytics, only with a reader's separate, withdrawable consent.

The email never names the reader. A reader who opts in on the preferences page gets a
signed first-party cookie (`kpd_reader`) from this site; a redirect opened in that
browser carries the subscriber id to the counter, which stores a personal row only while
the consent row exists. Withdrawal deletes the consent and every personal click in one
transaction, so a replayed link or a leftover cookie afterwards writes nothing personal.
"""

from __future__ import annotations

from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import delete, func, insert, select

from core.context import Context
from core.db import utcnow
from core.errors import NotFound
from core.models import analytics_consent, events, reader_clicks, subscribers

COOKIE = "kpd_reader"
COOKIE_DAYS = 400
_SALT = "kpdigest.reader"


def reader_cookie(secret: str, subscriber_id: int) -> str:
    return URLSafeSerializer(secret, salt=_SALT).dumps(int(subscriber_id))


def reader_from_cookie(secret: str, value: str | None) -> int | None:
    """The subscriber id in a valid cookie, else None (a bad cookie is simply ignored)."""
    if not value or len(value) > 200:
        return None
    try:
        sid = URLSafeSerializer(secret, salt=_SALT).loads(value)
    except (BadSignature, ValueError, UnicodeError):
        return None
    return sid if type(sid) is int else None


def has_consent(ctx: Context, subscriber_id: int) -> bool:
    with ctx.engine.connect() as conn:
        return conn.execute(select(analytics_consent.c.subscriber_id).where(
            analytics_consent.c.subscriber_id == subscriber_id)).first() is not None


def give(ctx: Context, subscriber_id: int) -> None:
    """Record the opt-in (idempotent) and an audit event."""
    with ctx.engine.begin() as conn:
        if conn.execute(select(subscribers.c.id).where(subscribers.c.id == subscriber_id)).first() is None:
            raise NotFound("no such subscriber")
        if conn.execute(select(analytics_consent.c.subscriber_id).where(
                analytics_consent.c.subscriber_id == subscriber_id)).first() is not None:
            return
        now = utcnow()
        conn.execute(insert(analytics_consent).values(subscriber_id=subscriber_id, given_at=now))
        conn.execute(insert(events).values(subscriber_id=subscriber_id, kind="analytics_consent",
                                           detail={"given": True}, created_at=now))


def withdraw(ctx: Context, subscriber_id: int) -> int:
    """Delete the consent and every individual click; the number of clicks deleted."""
    with ctx.engine.begin() as conn:
        n = conn.execute(select(func.count()).select_from(reader_clicks).where(
            reader_clicks.c.subscriber_id == subscriber_id)).scalar_one()
        conn.execute(delete(reader_clicks).where(reader_clicks.c.subscriber_id == subscriber_id))
        gone = conn.execute(delete(analytics_consent).where(
            analytics_consent.c.subscriber_id == subscriber_id)).rowcount
        if gone:
            conn.execute(insert(events).values(subscriber_id=subscriber_id, kind="analytics_consent",
                                               detail={"given": False, "clicks_deleted": n},
                                               created_at=utcnow()))
        return int(n)
