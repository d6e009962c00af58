"""Complaint and hard-bounce rates over the rolling window, from the stored ledger and
webhook events, on both databases: warn at 0.1 %, pause the sending issue at 0.3 %, a
configurable hard-bounce line; shown by `issue status`, the dashboard and the
deliverability page."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import insert, select, update

from core.db import utcnow
from core.errors import StateError
from core.models import deliveries, issues, webhook_events
from core.states import RateLevel
from kpdigest.main import main
from pipeline.deliver.doctor.rates import enforce, ensure_reputation, sending_rates
from pipeline.deliver.engine import send_issue
from pipeline.jobs.registry import body_for
from tests.fakes.issue import make_issue
from tests.test_web_helpers import login_as, make_app


def _sent(ctx, number: int, days_ago: float = 1) -> None:
    when = utcnow() - timedelta(days=days_ago)
    with ctx.engine.begin() as conn:
        iid = conn.execute(select(issues.c.id).where(issues.c.number == number)).scalar_one()
        conn.execute(
            update(deliveries)
            .where(deliveries.c.issue_id == iid)
            .values(state="sent", sent_at=when)
        )


def _events(ctx, kind: str, n: int, days_ago: float = 1, tag: str = "") -> None:
    if not n:
        return
    when = utcnow() - timedelta(days=days_ago)
    with ctx.engine.begin() as conn:
        conn.execute(
            insert(webhook_events),
            [
                {
                    "provider": "postmark",
                    "event_id": f"{kind}{tag}{i}",
                    "kind": kind,
                    "email": f"r{i}@example.com",
                    "payload": "{}",
                    "received_at": when,
                }
                for i in range(n)
            ],
        )


@pytest.mark.parametrize(
    ("complaints", "bounces", "level", "reason"),
    [
        (0, 0, RateLevel.OK, ""),
        (1, 0, RateLevel.OK, ""),  # 0.05 %
        (2, 0, RateLevel.WARN, "complaint rate 0.10% reaches 0.1%; sending pauses at 0.3%"),
        (
            6,
            0,
            RateLevel.PAUSE,
            "complaint rate 0.30% reaches 0.3% (Gmail rejects bulk mail past 0.3 %)",
        ),
        (
            0,
            41,
            RateLevel.PAUSE,
            "hard-bounce rate 2.05% is over 2.0%: clean the list before sending more",
        ),
        (0, 40, RateLevel.OK, ""),
    ],
)
def test_levels(ctx, complaints, bounces, level, reason):
    number = make_issue(ctx, 2000)
    _sent(ctx, number)
    _events(ctx, "complaint", complaints)
    _events(ctx, "hard_bounce", bounces)
    _events(ctx, "soft_bounce", 50)  # not counted
    r = sending_rates(ctx)
    assert (r.sent, r.complaints, r.hard_bounces) == (2000, complaints, bounces)
    assert (r.level, r.reason) == (level, reason)


def test_window_and_minimum_sample(make_ctx):
    ctx = make_ctx(reputation={"window_days": 30, "min_sent": 100, "hard_bounce_pause": 0.5})
    number = make_issue(ctx, 50)
    _sent(ctx, number)
    _events(ctx, "complaint", 5)
    _events(ctx, "complaint", 100, days_ago=31, tag="old")  # outside the window
    r = sending_rates(ctx)
    assert r.complaints == 5
    assert r.level == RateLevel.WARN  # 10 %, but only 50 sent: shown, not enforced
    assert r.reason.endswith("(only 50 sent: not enforced yet)")
    old = make_issue(ctx, 500)
    _sent(ctx, old, days_ago=40)
    assert sending_rates(ctx).sent == 50


def test_pause_line_pauses_the_sending_issue_and_refuses_new_sends(ctx, monkeypatch):
    sending = make_issue(ctx, 1000)
    _sent(ctx, sending)
    nxt = make_issue(ctx)
    with ctx.engine.begin() as conn:
        conn.execute(
            update(issues)
            .where(issues.c.number == sending)
            .values(status="sending", send_started_at=utcnow())
        )
    assert enforce(ctx) == []
    _events(ctx, "complaint", 4)
    result = body_for("dispatch", ctx, threading.Event())()
    assert f"paused issue(s) #{sending}: complaint or bounce rate" in result.message
    with ctx.engine.connect() as conn:
        row = conn.execute(
            select(issues.c.status, issues.c.pause_reason).where(issues.c.number == sending)
        ).one()
    assert row.status == "paused"
    assert row.pause_reason.startswith("complaint rate 0.40% reaches 0.3%")
    monkeypatch.setattr("pipeline.deliver.engine.ensure_sendable", lambda ctx, number: None)
    with pytest.raises(StateError, match=r"is paused: complaint rate 0\.40%.*use --force"):
        send_issue(ctx, nxt)
    with pytest.raises(StateError):
        ensure_reputation(ctx)
    assert send_issue(ctx, nxt, force=True).counts["sent"] == 1000  # --force sends anyway


def test_issue_status_and_desk_show_the_rates(ctx, monkeypatch, tmp_path):
    number = make_issue(ctx, 1000)
    _sent(ctx, number)
    _events(ctx, "complaint", 2)
    runner = CliRunner()
    out = runner.invoke(main, ["--config", str(ctx.config.source), "issue", "status", str(number)])
    assert out.exit_code == 0, out.output
    assert (
        "reputation: example.com, last 30 days: 1000 sent, complaints 2 (0.20%), hard bounces 0 "
        "(0.00%): warn - complaint rate 0.20% reaches 0.1%"
    ) in out.output
    client = make_app(ctx).test_client()
    login_as(client, ctx, "admin")
    page = client.get("/desk/").get_data(as_text=True)
    assert "Sending reputation" in page and "complaints 2 (0.20 %)" in page and "warning" in page
    deliver = client.get("/desk/deliverability?offline=1")
    assert deliver.status_code == 200
    text = deliver.get_data(as_text=True)
    assert "Sending domain <strong>example.com</strong> through <strong>outbox</strong>" in text
    assert "complaints 2 (0.20 %)" in text


def test_deliverability_page_is_for_admins(ctx):
    client = make_app(ctx).test_client()
    login_as(client, ctx, "editor")
    assert client.get("/desk/deliverability?offline=1").status_code == 403
