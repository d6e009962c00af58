"""Helpers for the measurement tests (#19): an issue frozen with counted links, its
tokens, and polling the click tables. (No tests here.)"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from core.context import Context
from core.models import clicks, issue_links, issue_variants
from pipeline.collect.run import collect
from pipeline.compose.issues import build_issue
from subscribers.store import add_subscriber
from tests.feedgen import BEAUTY_ITEMS, KP_ITEMS, rss
from tests.test_web_helpers import make_app

COUNTED_RE = re.compile(r'href="https://digest\.example\.com/r/([A-Za-z0-9_.\-]+)"')
BROWSER = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
           "Chrome/131.0 Safari/537.36")


def counted_issue(make_ctx: Callable[..., Context], feed_server: Any, enabled: bool = True,
                  **analytics: Any) -> tuple[Context, Any]:
    """Two feeds, three readers (one with a topic set: two variants), issue frozen."""
    feed_server.serve_bytes("/kp.xml", rss("KP Feed", KP_ITEMS))
    feed_server.serve_bytes("/beauty.xml", rss("Beauty Feed", BEAUTY_ITEMS))
    ctx = make_ctx(feeds=[("KP Feed", feed_server.url("/kp.xml"), ["kp"]),
                          ("Beauty Feed", feed_server.url("/beauty.xml"), ["beauty-tips"])],
                   analytics={"enabled": enabled, "flush_seconds": 0.05, **analytics})
    add_subscriber(ctx, "ann@example.com", "Ann")
    add_subscriber(ctx, "bob@example.com", "Bob", topics=["kp"])
    add_subscriber(ctx, "cy@example.com", "Cy")
    collect(ctx)
    built = build_issue(ctx)
    assert built.status == "frozen", built
    return ctx, built


@pytest.fixture
def measured_app() -> Iterator[Callable[[Context], Flask]]:
    """Apps whose click counters are closed (buffer written) before the database goes."""
    made: list[Flask] = []

    def factory(ctx: Context) -> Flask:
        app = make_app(ctx)
        made.append(app)
        return app

    yield factory
    for app in made:
        app.extensions["kpdigest.measure"].close()


def variant(ctx: Context, issue_id: int, name: str = "") -> Any:
    with ctx.engine.connect() as conn:
        return conn.execute(select(issue_variants).where(issue_variants.c.issue_id == issue_id,
                                                         issue_variants.c.variant == name)).one()


def links_of(ctx: Context, issue_id: int) -> list[Any]:
    with ctx.engine.connect() as conn:
        return conn.execute(select(issue_links).where(issue_links.c.issue_id == issue_id)
                            .order_by(issue_links.c.id)).all()


def count(ctx: Context, table: Any, *where: Any) -> int:
    with ctx.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table).where(*where)).scalar_one())


def wait_for(predicate: Callable[[], bool], seconds: float = 60.0) -> None:
    """Poll with a generous deadline (the flusher writes every 50 ms in these tests)."""
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met within the deadline")
        time.sleep(0.05)


def wait_clicks(ctx: Context, n: int, *where: Any) -> None:
    wait_for(lambda: count(ctx, clicks, *where) >= n)
    assert count(ctx, clicks, *where) == n
