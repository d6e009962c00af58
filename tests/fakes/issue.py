"""A frozen issue without feeds or rendering: subscribers inserted in bulk, one variant
whose templates carry every per-recipient placeholder and the footer parts the pre-send
checks look for. Tests of the sending engine build on it so they stay fast."""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import func, insert, select

from core.context import Context
from core.db import utcnow
from core.models import issue_variants, issues, subscribers, subscriptions
from pipeline.compose.issues import freeze_audience
from pipeline.compose.personalize import FIELDS, new_key, token
from subscribers.store import ensure_default_list


def emails(n: int, start: int = 0) -> list[str]:
    return [f"reader{i:07d}@example.com" for i in range(start, start + n)]


def _rows(n: int, start: int) -> Iterator[dict[str, object]]:
    now = utcnow()
    for i, e in enumerate(emails(n, start)):
        yield {"email": e, "name": f"Reader {start + i}" if i % 3 else "", "created_at": now,
               "updated_at": now, "attributes": {}, "soft_bounces": 0}


def add_subscribers(ctx: Context, n: int, start: int = 0, chunk: int = 20000) -> None:
    """`n` active, confirmed subscribers, inserted in bulk."""
    with ctx.engine.begin() as conn:
        lid = ensure_default_list(conn, ctx.config.site.name)
    rows = list(_rows(n, start))
    for i in range(0, n, chunk):
        part = rows[i:i + chunk]
        with ctx.engine.begin() as conn:
            conn.execute(insert(subscribers), part)
            lo, hi = part[0]["email"], part[-1]["email"]
            ids = conn.execute(select(subscribers.c.id).where(subscribers.c.email >= lo,
                                                              subscribers.c.email <= hi)).scalars().all()
            now = utcnow()
            conn.execute(insert(subscriptions), [
                {"subscriber_id": sid, "list_id": lid, "status": "active", "created_at": now,
                 "updated_at": now, "confirmed_at": now} for sid in ids])


def templates(ctx: Context, key: str, html_body: str = "") -> tuple[str, str]:
    t = {f: token(key, f) for f in FIELDS}
    html_t = (f"<html><body><p>Hello {t['name']} &lt;{t['email']}&gt;</p>{html_body}"
              f"<p>{ctx.config.site.postal_address}</p>"
              f"<a href=\"{t['preferences_url']}\">preferences</a> "
              f"<a href=\"{t['unsubscribe_url']}\">unsubscribe</a></body></html>")
    text_t = (f"Hello {t['name']} <{t['email']}>\n\n{ctx.config.site.postal_address}\n"
              f"Preferences: {t['preferences_url']}\nUnsubscribe: {t['unsubscribe_url']}\n")
    return html_t, text_t


def make_issue(ctx: Context, n: int = 0, html_body: str = "", html_text: tuple[str, str] | None = None,
               key: str | None = None) -> int:
    """Freeze a new issue for the current audience (after adding `n` subscribers)."""
    if n:
        with ctx.engine.connect() as conn:
            have = conn.execute(select(func.count()).select_from(subscribers)).scalar_one()
        add_subscribers(ctx, n, start=have)
    key = key or new_key()
    html_t, text_t = html_text or templates(ctx, key, html_body)
    now = utcnow()
    with ctx.engine.begin() as conn:
        lid = ensure_default_list(conn, ctx.config.site.name)
        number = (conn.execute(select(func.max(issues.c.number))).scalar() or 0) + 1
        iid = conn.execute(insert(issues).values(
            number=number, list_id=lid, period=f"T-{number}", status="frozen",
            subject=f"Digest #{number}: smooth skin", placeholder_key=key, created_at=now,
            frozen_at=now)).inserted_primary_key[0]
        conn.execute(insert(issue_variants).values(issue_id=iid, variant="", article_ids=[],
                                                   html_template=html_t, text_template=text_t,
                                                   html_bytes=len(html_t.encode())))
        freeze_audience(conn, iid, lid)
    return int(number)
