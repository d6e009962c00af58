"""Draft for review: build and wait, approve or reject (CLI), and the deadline's two actions."""

from __future__ import annotations

from datetime import timedelta

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from core.errors import StateError
from core.models import issues
from kpdigest.main import main as cli
from pipeline.compose.issues import build_issue, delivery_counts, get_issue
from pipeline.deliver.engine import send_issue
from pipeline.deliver.review import apply_deadlines, approve_issue, dispatch
from pipeline.jobs.weekly import run_weekly
from subscribers.store import add_subscriber
from tests.feedgen import BEAUTY_ITEMS, KP_ITEMS, rss


def _review_ctx(make_ctx, feed_server, **schedule):
    feed_server.serve_bytes("/kp.xml", rss("KP Feed", KP_ITEMS + BEAUTY_ITEMS))
    ctx = make_ctx(feeds=[("KP Feed", feed_server.url("/kp.xml"), ["kp"])],
                   schedule={"review": True, **schedule})
    for addr in ("ann@example.com", "bob@example.org"):
        add_subscriber(ctx, addr)
    return ctx


def _cli(ctx, *args):
    return CliRunner().invoke(cli, ["--config", str(ctx.config.source), "issue", *args])


def _issue(ctx, issue_id):
    with ctx.engine.connect() as conn:
        return conn.execute(select(issues).where(issues.c.id == issue_id)).one()


def _counts(ctx, issue_id):
    with ctx.engine.connect() as conn:
        return delivery_counts(conn, issue_id)


def test_draft_waits_for_approval_then_dispatch_sends_it(make_ctx, feed_server):
    ctx = _review_ctx(make_ctx, feed_server)
    result = run_weekly(ctx, force=True)  # the checks run once, below, at approval
    assert result.result == "waiting"
    draft = _issue(ctx, result.build.issue_id)
    assert draft.status == "draft"
    assert draft.review_deadline == draft.frozen_at + timedelta(minutes=240)
    with pytest.raises(StateError):
        send_issue(ctx, draft.number)
    assert dispatch(ctx).message == "nothing to send"  # a draft is not sent by anyone
    assert _counts(ctx, draft.id)["sent"] == 0

    out = _cli(ctx, "approve", str(draft.number), "--by", "editor@example.com")
    assert out.exit_code == 0, out.output
    approved = _issue(ctx, draft.id)
    assert (approved.status, approved.approved_by) == ("frozen", "editor@example.com")
    assert approved.approved_at is not None

    note = dispatch(ctx).message
    assert note.startswith(f"issue #{draft.number}: 2 sent now")
    assert _issue(ctx, draft.id).status == "sent"
    again = _cli(ctx, "approve", str(draft.number), "--by", "x")
    assert again.exit_code == 4 and "not a draft" in again.output


def test_reject_skips_the_week_and_frees_its_articles(make_ctx, feed_server):
    ctx = _review_ctx(make_ctx, feed_server)
    week = run_weekly(ctx, force=True).build  # force: the (slow) pre-send checks are not the subject
    assert build_issue(ctx, period="2026-W10").status == "skipped"  # the draft holds every article
    out = _cli(ctx, "reject", str(week.number), "--by", "ann", "--reason", "off-topic")
    assert out.exit_code == 0, out.output
    row = _issue(ctx, week.issue_id)
    assert (row.status, row.number) == ("skipped", None)
    assert row.skip_reason.startswith("rejected by ann at ") and row.skip_reason.endswith(": off-topic")
    assert sum(_counts(ctx, row.id).values()) == 0
    rebuilt = build_issue(ctx, period="2026-W11")
    assert rebuilt.status == "draft" and rebuilt.number == week.number  # number and articles reused


@pytest.mark.parametrize("action", ["send", "skip"])
def test_deadline_sends_or_skips_as_configured(make_ctx, feed_server, action):
    ctx = _review_ctx(make_ctx, feed_server, review_deadline_action=action,
                      review_deadline_minutes=30)
    built = run_weekly(ctx, force=True).build
    deadline = _issue(ctx, built.issue_id).review_deadline
    assert apply_deadlines(ctx, now=deadline - timedelta(minutes=1)) == []
    assert _issue(ctx, built.issue_id).status == "draft"

    note = dispatch(ctx, now=deadline + timedelta(minutes=1)).message
    row = _issue(ctx, built.issue_id)
    if action == "send":
        assert "sending" in note and row.status == "sent"
        assert row.approved_by == "scheduler (review deadline)"
        assert _counts(ctx, row.id)["sent"] == 2
    else:
        assert "skipped" in note and (row.status, row.number) == ("skipped", None)
        assert row.skip_reason.startswith("not approved by the review deadline")


def test_approve_refuses_non_drafts_and_anonymous_approvals(make_ctx, feed_server):
    ctx = _review_ctx(make_ctx, feed_server)
    built = run_weekly(ctx, force=True).build
    with pytest.raises(StateError):
        approve_issue(ctx, built.number, " ")
    approve_issue(ctx, built.number, "ann", force=True)
    with pytest.raises(StateError):
        approve_issue(ctx, built.number, "ann")
    with ctx.engine.connect() as conn:
        assert get_issue(conn, built.number).status == "frozen"
