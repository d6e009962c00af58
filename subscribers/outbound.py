"""Queueing mail for the lane (pipeline/deliver/lane.py), inside the caller's transaction.

A row is written in the same transaction as the change it follows (a sign-up, a
confirmation), so a crash leaves both or neither. A `dedupe_key` makes "once per
subscriber" a unique key in the database: the welcome is queued at most once, however
often or concurrently a subscriber confirms.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from core.db import utcnow
from core.models import outbound_mail
from core.states import OutboundKind, OutboundState


def enqueue(conn: Connection, kind: OutboundKind, *, subscriber_id: int | None = None,
            payload: dict[str, Any] | None = None, dedupe_key: str | None = None,
            now: datetime | None = None) -> bool:
    """Queue one mail; False when `dedupe_key` was queued before (nothing is written)."""
    now = now or utcnow()
    values = dict(kind=str(kind), subscriber_id=subscriber_id, payload=payload,
                  dedupe_key=dedupe_key, state=str(OutboundState.QUEUED), attempts=0,
                  next_attempt_at=now, created_at=now)
    if dedupe_key is None:
        conn.execute(insert(outbound_mail).values(**values))
        return True
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(outbound_mail).values(**values).on_conflict_do_nothing(
        index_elements=["dedupe_key"])
    return bool(conn.execute(stmt).rowcount)


def welcome_key(subscriber_id: int) -> str:
    return f"welcome:{subscriber_id}"
