"""A fixed-window counter in the database, so that every web worker shares one limit."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from core.context import Context
from core.db import utcnow
from core.models import rate_limits


def hit(ctx: Context, key: str, limit: int, window_seconds: int = 3600) -> bool:
    """Count one attempt for `key`; False when the window's limit is already used up."""
    if limit <= 0:
        return True
    for _ in range(2):
        try:
            return _hit(ctx, key[:200], limit, window_seconds)
        except IntegrityError:  # two first hits raced on the insert; the second one counts again
            continue
    return False


def _hit(ctx: Context, key: str, limit: int, window_seconds: int) -> bool:
    now = utcnow()
    with ctx.engine.begin() as conn:
        row = conn.execute(select(rate_limits).where(rate_limits.c.key == key)).first()
        if row is None:
            conn.execute(insert(rate_limits).values(key=key, window_start=now, count=1))
            return True
        if row.window_start <= now - timedelta(seconds=window_seconds):
            conn.execute(update(rate_limits).where(rate_limits.c.key == key)
                         .values(window_start=now, count=1))
            return True
        if row.count >= limit:
            return False
        conn.execute(update(rate_limits).where(rate_limits.c.key == key)
                     .values(count=rate_limits.c.count + 1))
        return True
