"""Counting (#19): a burst counted exactly once each, clicks kept through a database
outage up to the stated buffer, retried batches stored once, machine traffic apart."""

from __future__ import annotations

import threading
from datetime import timedelta

from sqlalchemy import create_engine, text, update

from core.db import is_postgres, utcnow
from core.models import clicks, issues
from pipeline.measure.links import make_link_token
from tests import measure_helpers
from tests.measure_helpers import BROWSER, count, counted_issue, links_of, wait_clicks, wait_for

SECRET = "test-secret-key"
measured_app = measure_helpers.measured_app  # the fixture


def _first_link(ctx, built):
    link = links_of(ctx, built.issue_id)[0]
    return link, f"/r/{make_link_token(SECRET, built.issue_id, link.id)}"


def test_a_burst_of_10000_clicks_on_one_link_is_counted_exactly_once_each(
        make_ctx, feed_server, measured_app):
    ctx, built = counted_issue(make_ctx, feed_server)
    app = measured_app(ctx)
    link, path = _first_link(ctx, built)
    answers: list[int] = []

    def burst() -> None:
        client = app.test_client()
        got = [client.get(path, headers={"User-Agent": BROWSER}).status_code for _ in range(2500)]
        answers.extend(got)

    threads = [threading.Thread(target=burst) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers.count(302) == 10_000
    wait_clicks(ctx, 10_000, clicks.c.link_id == link.id)
    counter = app.extensions["kpdigest.measure"].counter
    assert (counter.recorded, counter.written, counter.dropped) == (10_000, 10_000, 0)
    with ctx.engine.connect() as conn:
        keys = conn.execute(text("SELECT COUNT(DISTINCT click_key) FROM clicks")).scalar_one()
    assert keys == 10_000


def test_a_batch_written_twice_is_stored_once(make_ctx, feed_server, measured_app):
    ctx, built = counted_issue(make_ctx, feed_server)
    counter = measured_app(ctx).extensions["kpdigest.measure"].counter
    counter.close()  # no background flushes: this test writes by hand
    link, _ = _first_link(ctx, built)
    for _ in range(50):
        counter.record(built.issue_id, link.id, head=False, agent=BROWSER, ip="192.0.2.1")
    chunk = list(counter._buffer)
    for _ in range(2):  # as after a commit whose acknowledgement was lost
        with ctx.engine.begin() as conn:
            counter._write(conn, chunk)
    assert count(ctx, clicks) == 50


def _hold_writes(ctx):
    """Stop every write to the clicks table until the returned connection is closed."""
    conn = ctx.engine.connect()
    conn.begin()  # SQLite: BEGIN IMMEDIATE takes the one write lock
    if is_postgres(conn):
        conn.execute(text("LOCK TABLE clicks IN EXCLUSIVE MODE"))  # reads still pass
    return conn


def _peek(ctx) -> int:
    """The number of stored clicks, read without asking for the write lock (the project's
    SQLite engine begins every transaction with BEGIN IMMEDIATE)."""
    engine = create_engine(ctx.config.database_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT COUNT(*) FROM clicks")).scalar_one())
    finally:
        engine.dispose()


def test_clicks_during_a_database_outage_are_kept_up_to_the_buffer(make_ctx, feed_server, measured_app):
    ctx, built = counted_issue(make_ctx, feed_server, buffer_clicks=300)
    app = measured_app(ctx)
    counter = app.extensions["kpdigest.measure"].counter
    _, path = _first_link(ctx, built)
    client = app.test_client()
    blocker = _hold_writes(ctx)
    try:
        # Every reader gets an answer while the database takes no writes...
        assert [client.get(path).status_code for _ in range(400)] == [302] * 400
        assert _peek(ctx) == 0
        assert counter.recorded == 300 and counter.dropped == 100
    finally:
        blocker.rollback()
        blocker.close()
    # ...and once it is back, the buffered clicks are written, none twice.
    wait_clicks(ctx, 300)
    wait_for(lambda: counter.pending == 0)
    assert counter.written == 300
    assert [client.get(path).status_code for _ in range(10)] == [302] * 10
    wait_clicks(ctx, 310)


def test_machine_traffic_is_counted_apart(make_ctx, feed_server, measured_app):
    ctx, built = counted_issue(make_ctx, feed_server, machine_networks=["198.51.100.0/24"],
                               machine_agents=["ExampleScanner"])
    client = measured_app(ctx).test_client()
    _, path = _first_link(ctx, built)
    with ctx.engine.begin() as conn:
        conn.execute(update(issues).where(issues.c.id == built.issue_id)
                     .values(send_started_at=utcnow() - timedelta(hours=1)))
    client.head(path, headers={"User-Agent": BROWSER})
    client.get(path, headers={"User-Agent": "Mozilla/5.0 (compatible; Googlebot/2.1; "
                                            "+http://www.google.com/bot.html)"})
    client.get(path, headers={"User-Agent": "Mozilla/5.0 ExampleScanner/3"})
    client.get(path, headers={"User-Agent": "Barracuda Sentinel (EE)"})
    client.get(path, headers={"User-Agent": ""})
    client.get(path, headers={"User-Agent": BROWSER}, environ_base={"REMOTE_ADDR": "198.51.100.7"})
    client.get(path, headers={"User-Agent": BROWSER})
    wait_clicks(ctx, 7)
    with ctx.engine.connect() as conn:
        rows = conn.execute(clicks.select().order_by(clicks.c.id)).all()
    assert [r.reason for r in rows] == ["head", "agent", "agent", "agent", "agent", "network", None]
    assert [r.machine for r in rows] == [True] * 6 + [False]
    # just after the issue started sending, every click is a machine's
    with ctx.engine.begin() as conn:
        conn.execute(update(issues).where(issues.c.id == built.issue_id)
                     .values(send_started_at=utcnow()))
    client.get(path, headers={"User-Agent": BROWSER})
    wait_clicks(ctx, 1, clicks.c.reason == "early")
