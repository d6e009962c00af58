"""Store each verified event once and act on it: suppress, count soft bounces, reset."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from core.addresses import normalize_email
from core.context import Context
from core.db import utcnow
from core.errors import InvalidInput
from core.models import subscribers, subscriptions, webhook_events
from subscribers.store import log_event, suppress
from subscribers.webhooks.base import Event, WebhookRefused
from subscribers.webhooks.registry import PROVIDERS

REASONS = {"hard_bounce": "bounced", "complaint": "complained", "unsubscribe": "unsubscribed"}


def receive(ctx: Context, provider: str, headers: Mapping[str, str], body: bytes,
            secure: bool) -> dict[str, int]:
    """Verify, store once, act. Counts of new and duplicate events."""
    chosen = PROVIDERS.get(provider)
    if chosen is None:
        raise WebhookRefused(403, f"unknown provider {provider!r}")
    counts = {"stored": 0, "duplicates": 0}
    for event in chosen.verify(ctx, headers, body, secure):
        counts["stored" if store_and_apply(ctx, provider, event) else "duplicates"] += 1
    return counts


def store_and_apply(ctx: Context, provider: str, event: Event) -> bool:
    """Store the raw event and act on it in one transaction; False if it was seen before."""
    try:
        email = normalize_email(event.email) if event.email else None
    except InvalidInput:
        email = None
    try:
        with ctx.engine.begin() as conn:
            conn.execute(insert(webhook_events).values(
                provider=provider, event_id=event.event_id.replace("\x00", "")[:200],
                kind=event.kind, email=email, payload=event.payload, received_at=utcnow()))
            if email:
                _apply(ctx, conn, provider, event.kind, email)
    except IntegrityError:
        return False
    return True


def _apply(ctx: Context, conn: Connection, provider: str, kind: str, email: str) -> None:
    sid = conn.execute(select(subscribers.c.id).where(subscribers.c.email == email)).scalar()
    now = utcnow()
    detail = {"provider": provider}
    actor = f"webhook:{provider}"
    if kind in REASONS:
        reason = REASONS[kind]
        suppress(conn, email, reason, f"{provider} webhook")
        if sid:
            conn.execute(update(subscriptions)
                         .where(subscriptions.c.subscriber_id == sid,
                                subscriptions.c.status != "unsubscribed")
                         .values(status="unsubscribed", unsubscribed_at=now, updated_at=now))
            log_event(conn, sid, reason, detail, actor=actor)
    elif kind == "soft_bounce" and sid:
        conn.execute(update(subscribers).where(subscribers.c.id == sid)
                     .values(soft_bounces=subscribers.c.soft_bounces + 1))
        n = conn.execute(select(subscribers.c.soft_bounces)
                         .where(subscribers.c.id == sid)).scalar_one()
        log_event(conn, sid, "soft_bounce", {**detail, "count": n}, actor=actor)
        if n >= ctx.config.webhooks.soft_bounce_threshold:
            suppress(conn, email, "bounced", f"{n} soft bounces in a row")
            log_event(conn, sid, "bounced", {**detail, "soft_bounces": n}, actor=actor)
    elif kind == "delivered" and sid:
        conn.execute(update(subscribers)
                     .where(subscribers.c.id == sid, subscribers.c.soft_bounces > 0)
                     .values(soft_bounces=0))
