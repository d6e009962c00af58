"""Leases between senders on hosts whose clocks disagree (PostgreSQL: several hosts).

A claim's lease must be stamped and judged on the database's clock. These tests pin the
behaviour of pipeline/deliver/ledger.py: on PostgreSQL `claimed_at` is stamped with the
database's clock and judged against it (see docs/scaling.md, "Leases and clock skew"), so a
host whose clock is off neither steals a live claim nor keeps a dead one.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from core.models import deliveries
from pipeline.compose.issues import get_issue
from pipeline.deliver import ledger
from pipeline.deliver.engine import send_issue
from tests.fakes.issue import emails, make_issue


def _postgres(ctx) -> None:
    if ctx.engine.dialect.name != "postgresql":
        pytest.skip("SQLite is one host: no skew between hosts")


def _skew(monkeypatch, seconds: float) -> None:
    """This process's host clock is `seconds` off."""
    monkeypatch.setattr(ledger, "utcnow", lambda: datetime.now(UTC) + timedelta(seconds=seconds))


def _claim_elsewhere(ctx, number: int, email: str, age: timedelta) -> None:
    """Another host's sender claimed `email` `age` ago on the database's clock."""
    with ctx.engine.begin() as conn:
        issue_id = get_issue(conn, number).id
        conn.execute(update(deliveries).where(deliveries.c.issue_id == issue_id,
                                              deliveries.c.email == email)
                     .values(state="sending", claimed_by="other-host:4242:abcd",
                             claimed_at=func.now() - age, batch_key="k"))


def _state(ctx, email: str) -> str:
    with ctx.engine.connect() as conn:
        return conn.execute(select(deliveries.c.state)
                            .where(deliveries.c.email == email)).scalar_one()


def test_a_dead_sender_on_another_host_is_recovered_when_its_lease_expires(make_ctx):
    ctx = make_ctx(sending={"lease_seconds": 600})
    _postgres(ctx)
    number = make_issue(ctx, 3)
    e = emails(3)
    _claim_elsewhere(ctx, number, e[0], timedelta(seconds=601))
    _claim_elsewhere(ctx, number, e[1], timedelta(seconds=30))
    report = send_issue(ctx, number, force=True)  # outbox: idempotent, the expired row re-queued
    assert report.requeued == 1 and _state(ctx, e[0]) == "sent"
    assert _state(ctx, e[1]) == "sending"  # its sender may be alive: left to its lease


def test_a_recovering_host_an_hour_ahead_leaves_a_live_claim_alone(make_ctx, monkeypatch):
    ctx = make_ctx(sending={"lease_seconds": 600})
    _postgres(ctx)
    number = make_issue(ctx, 3)
    e = emails(3)
    _claim_elsewhere(ctx, number, e[0], timedelta(seconds=30))  # claimed just now
    _skew(monkeypatch, +3600)
    send_issue(ctx, number, force=True)
    assert _state(ctx, e[0]) == "sending"  # 30 s old on the database's clock


def test_a_claim_by_a_host_an_hour_behind_is_not_taken_for_expired(make_ctx, monkeypatch):
    ctx = make_ctx(sending={"lease_seconds": 600})
    _postgres(ctx)
    number = make_issue(ctx, 3)
    with ctx.engine.begin() as conn:
        issue_id = get_issue(conn, number).id
    _skew(monkeypatch, -3600)
    with ctx.engine.begin() as conn:  # the claim statement as a host an hour behind runs it
        claimed = ledger.claim_batch(conn, issue_id, "", 1, "other-host:4242:abcd")
    monkeypatch.undo()
    assert len(claimed) == 1
    with ctx.engine.connect() as conn:
        age = conn.execute(select(func.now() - deliveries.c.claimed_at)
                           .where(deliveries.c.id == claimed[0].id)).scalar_one()
    assert age < timedelta(minutes=1)  # stamped on the database's clock
