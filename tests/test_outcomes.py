"""Honest outcomes: an issue ends `sent`, `sent with failures`, `needs attention` or
`failed`, with its errors grouped by reason and a next step; errors about our own
configuration stop the whole issue at the first batch without spending anyone's
attempts; the ledger tells rows claimed but never posted from rows on the wire."""

from __future__ import annotations

import socket
from collections import Counter

import pytest
from sqlalchemy import select, update

from core.errors import AccountError, ConfigError
from core.models import deliveries, events, suppressions
from pipeline.compose.issues import get_issue
from pipeline.deliver.control import issue_progress, resume_issue, retry_issue
from pipeline.deliver.engine import send_issue as checked_send
from tests.fakes.issue import emails, make_issue
from tests.fakes.providers import FakeProvider, Fault


def send_issue(ctx, number, **kw):
    return checked_send(ctx, number, force=True, **kw)


@pytest.fixture
def fake(request):
    f = FakeProvider(getattr(request, "param", "postmark"))
    yield f
    f.close()


def provider_ctx(make_ctx, monkeypatch, kind, base_url, **sending):
    for var in ("POSTMARK_TOKEN", "SENDGRID_API_KEY", "MAILGUN_API_KEY", "RESEND_API_KEY"):
        monkeypatch.setenv(f"KPDIGEST_{var}", "test-key")
    opts = {"base_url": base_url, "timeout": 1.0}
    return make_ctx(transport={"name": kind, kind: opts},
                    sending={"batch_size": 4, "max_in_flight": 1, "backoff_seconds": 0.05,
                             **sending})


def ledger(ctx, number):
    with ctx.engine.connect() as conn:
        issue = get_issue(conn, number)
        rows = conn.execute(select(deliveries).where(deliveries.c.issue_id == issue.id)).all()
    return issue, {r.email: r for r in rows}


# --- 1. outcomes that say what happened ---------------------------------------------

def test_everyone_refused_is_failed_with_the_reason_and_next_step(make_ctx, monkeypatch, fake):
    ctx = provider_ctx(make_ctx, monkeypatch, fake.kind, fake.base, batch_size=10, max_attempts=2)
    number = make_issue(ctx, 3)
    fake.script.extend([Fault("500"), Fault("500")])
    report = send_issue(ctx, number)
    assert report.status == "failed" and report.counts["failed"] == 3
    p = issue_progress(ctx, number)
    assert p.status == "failed"
    assert [(g.state, g.count) for g in p.errors] == [("failed", 3)]
    assert "HTTP 500" in p.errors[0].reason and "retry" in p.next_step


def test_some_refused_is_sent_with_failures_grouped_by_reason(make_ctx, monkeypatch, fake):
    ctx = provider_ctx(make_ctx, monkeypatch, fake.kind, fake.base, batch_size=10)
    number = make_issue(ctx, 6)
    e = emails(6)
    fake.script.append(Fault("partial", codes={e[0]: 300, e[1]: 300, e[2]: 422}))
    report = send_issue(ctx, number)
    assert report.status == "sent with failures"
    p = issue_progress(ctx, number)
    assert [(g.count, g.reason) for g in p.errors] == [
        (2, "postmark 300: fake error 300"), (1, "postmark 422: fake error 422")]
    assert p.next_step.startswith("3 recipients refused")


def test_unknown_rows_need_attention_never_sent(make_ctx, monkeypatch, fake):
    ctx = provider_ctx(make_ctx, monkeypatch, fake.kind, fake.base, batch_size=2)
    number = make_issue(ctx, 4)
    fake.script.append(Fault("reset"))
    report = send_issue(ctx, number)
    assert report.status == "needs attention" and report.counts["unknown"] == 2
    p = issue_progress(ctx, number)
    assert "2 recipients may not have it" in p.next_step and "reconcile" in p.next_step


def test_a_clean_send_is_sent(make_ctx, monkeypatch, fake):
    ctx = provider_ctx(make_ctx, monkeypatch, fake.kind, fake.base)
    number = make_issue(ctx, 5)
    assert send_issue(ctx, number).status == "sent"
    assert issue_progress(ctx, number).next_step == ""


# --- 2. error classes ----------------------------------------------------------------

def _assert_stopped_cleanly(ctx, number, status="failed"):
    """Paused/failed with the reason, every row queued with no attempt spent, nobody
    suppressed."""
    issue, rows = ledger(ctx, number)
    assert issue.status == status and issue.pause_reason
    assert {r.state for r in rows.values()} == {"queued"}
    assert {r.attempts for r in rows.values()} == {0}
    with ctx.engine.connect() as conn:
        assert conn.execute(select(suppressions)).all() == []
    return issue


@pytest.mark.parametrize("fake", ["postmark", "sendgrid", "mailgun", "resend"], indirect=True)
@pytest.mark.parametrize("fault", ["401", "unverified"])
def test_bad_key_or_unverified_domain_stops_the_issue_at_the_first_batch(
        make_ctx, monkeypatch, fake, fault):
    ctx = provider_ctx(make_ctx, monkeypatch, fake.kind, fake.base, batch_size=2)
    number = make_issue(ctx, 6)
    fake.script.append(Fault(fault))
    with pytest.raises(AccountError, match=rf"issue #{number} failed: {fake.kind}") as err:
        send_issue(ctx, number)
    assert "resume" in str(err.value)
    assert fake.calls == 1  # the first batch only: no retries, no other batches
    issue = _assert_stopped_cleanly(ctx, number)
    assert ("401" if fault == "401" else "verified") in issue.pause_reason \
        or "Sender Signature" in issue.pause_reason
    p = issue_progress(ctx, number)
    assert p.next_step.startswith("fix the cause")
    # Fixed: resume and send; everyone gets it once.
    resume_issue(ctx, number)
    assert send_issue(ctx, number).status == "sent"
    assert fake.counts() == Counter(emails(6))


def test_postmark_per_message_sender_signature_error_is_about_the_account(
        make_ctx, monkeypatch, fake):
    ctx = provider_ctx(make_ctx, monkeypatch, fake.kind, fake.base)
    number = make_issue(ctx, 3)
    fake.script.append(Fault("partial", codes={e: 400 for e in emails(3)}))
    with pytest.raises(AccountError, match="postmark 400"):
        send_issue(ctx, number)
    _assert_stopped_cleanly(ctx, number)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: connections refused


@pytest.mark.parametrize(("base_url", "words"), [
    ("http://mail.invalid", "does not resolve"),
    (None, "refuses connections"),
])
def test_unreachable_provider_stops_the_issue(make_ctx, monkeypatch, base_url, words):
    ctx = provider_ctx(make_ctx, monkeypatch, "postmark",
                       base_url or f"http://127.0.0.1:{_closed_port()}")
    number = make_issue(ctx, 3)
    with pytest.raises(AccountError, match=words):
        send_issue(ctx, number)
    _assert_stopped_cleanly(ctx, number)


def test_tls_failure_stops_the_issue(make_ctx, monkeypatch, fake):
    ctx = provider_ctx(make_ctx, monkeypatch, "postmark", fake.base.replace("http:", "https:"))
    number = make_issue(ctx, 3)
    with pytest.raises(AccountError, match="TLS failure"):
        send_issue(ctx, number)
    _assert_stopped_cleanly(ctx, number)


def test_missing_secret_fails_the_issue_instead_of_leaving_it_sending(make_ctx, monkeypatch, fake):
    ctx = provider_ctx(make_ctx, monkeypatch, fake.kind, fake.base)
    monkeypatch.delenv("KPDIGEST_POSTMARK_TOKEN")
    number = make_issue(ctx, 2)
    with pytest.raises(ConfigError, match="KPDIGEST_POSTMARK_TOKEN"):
        send_issue(ctx, number)
    _assert_stopped_cleanly(ctx, number)


def test_account_error_after_some_were_sent_pauses(make_ctx, monkeypatch, fake):
    ctx = provider_ctx(make_ctx, monkeypatch, fake.kind, fake.base, batch_size=2)
    number = make_issue(ctx, 6)
    fake.script.extend([Fault("partial"), Fault("401")])
    with pytest.raises(AccountError, match=rf"issue #{number} paused"):
        send_issue(ctx, number)
    issue, rows = ledger(ctx, number)
    assert issue.status == "paused"
    assert Counter(r.state for r in rows.values()) == {"sent": 2, "queued": 4}
    assert {r.attempts for r in rows.values() if r.state == "queued"} == {0}


def test_transient_errors_are_retried(make_ctx, monkeypatch, fake):
    ctx = provider_ctx(make_ctx, monkeypatch, fake.kind, fake.base, batch_size=10)
    number = make_issue(ctx, 3)
    fake.script.extend([Fault("503"), Fault("429", retry_after=0.05)])
    assert send_issue(ctx, number).status == "sent"
    assert fake.calls == 3 and fake.counts() == Counter(emails(3))


# --- 3. claimed, not posted vs posted, no answer -------------------------------------

def test_a_dead_senders_claimed_rows_are_requeued_its_posted_rows_unknown(
        make_ctx, monkeypatch, fake):
    ctx = provider_ctx(make_ctx, monkeypatch, fake.kind, fake.base)
    number = make_issue(ctx, 6)
    e = emails(6)
    dead = f"{socket.gethostname()[:40]}:999999999:dead"
    with ctx.engine.begin() as conn:
        issue = get_issue(conn, number)
        for email, state in ((e[0], "sending"), (e[1], "sending"), (e[2], "posted")):
            conn.execute(update(deliveries).where(
                deliveries.c.issue_id == issue.id, deliveries.c.email == email).values(
                state=state, claimed_by=dead, batch_key="k", attempts=1))
    report = send_issue(ctx, number)
    assert report.recovered_unknown == 1 and report.requeued == 2
    _, rows = ledger(ctx, number)
    assert rows[e[2]].state == "unknown"
    assert all(rows[x].state == "sent" for x in e if x != e[2])
    assert rows[e[0]].attempts == 1  # the requeued claim gave its attempt back
    assert fake.counts() == Counter(e[:2] + e[3:])


def test_rows_are_posted_before_the_request_and_claimed_again_after_a_refusal(
        make_ctx, monkeypatch, fake):
    from pipeline.deliver.transports.postmark import PostmarkTransport

    ctx = provider_ctx(make_ctx, monkeypatch, fake.kind, fake.base, batch_size=3)
    number = make_issue(ctx, 3)
    seen: list[str] = []
    real = PostmarkTransport.send_batch

    def spy(self, variant, recipients, key):
        with ctx.engine.connect() as conn:
            seen.extend(conn.execute(select(deliveries.c.state)).scalars())
        return real(self, variant, recipients, key)

    monkeypatch.setattr(PostmarkTransport, "send_batch", spy)
    fake.script.append(Fault("503"))
    assert send_issue(ctx, number).status == "sent"
    assert seen == ["posted"] * 6  # on the wire at both attempts


# --- 5. every resend of unknown rows leaves a trace -----------------------------------

def test_resending_unknown_rows_writes_an_event_per_recipient(make_ctx, monkeypatch, fake):
    ctx = provider_ctx(make_ctx, monkeypatch, fake.kind, fake.base, batch_size=2)
    number = make_issue(ctx, 4)
    fake.script.append(Fault("reset"))
    send_issue(ctx, number)
    twice = {r.subscriber_id for r in ledger(ctx, number)[1].values() if r.state == "unknown"}
    assert retry_issue(ctx, number, unknown=True) == 2
    report = send_issue(ctx, number)
    assert report.status == "sent"
    p = issue_progress(ctx, number)
    assert p.resent == 2
    with ctx.engine.connect() as conn:
        evts = conn.execute(select(events).where(events.c.kind == "possible_duplicate")).all()
    assert {ev.subscriber_id for ev in evts} == twice and len(twice) == 2
    assert all(ev.detail["note"] == f"may have received issue {number} twice" for ev in evts)
    from tests.test_web_helpers import login_as, make_app

    client = make_app(ctx).test_client()
    login_as(client, ctx, "admin")
    page = client.get(f"/desk/subscribers/{evts[0].subscriber_id}").get_data(as_text=True)
    assert "possible duplicate" in page and f"may have received issue {number} twice" in page


# --- the dashboard and the issue page say it too --------------------------------------

def test_dashboard_and_issue_page_show_a_failed_send_with_its_reason(make_ctx, monkeypatch, fake):
    from tests.test_web_helpers import login_as, make_app

    ctx = provider_ctx(make_ctx, monkeypatch, fake.kind, fake.base)
    number = make_issue(ctx, 3)
    fake.script.append(Fault("401"))
    with pytest.raises(AccountError):
        send_issue(ctx, number)
    client = make_app(ctx).test_client()
    login_as(client, ctx, "admin")
    page = client.get(f"/desk/issues/{number}").get_data(as_text=True)
    assert 'id="issue-status">failed' in page and "Failed: postmark: HTTP 401" in page
    assert "Next: fix the cause" in page
    dash = client.get("/desk/").get_data(as_text=True)
    assert "<strong>failed</strong>" in dash and "Why: postmark: HTTP 401" in dash


def test_issue_page_groups_errors_by_reason(make_ctx, monkeypatch, fake):
    from tests.test_web_helpers import login_as, make_app

    ctx = provider_ctx(make_ctx, monkeypatch, fake.kind, fake.base, batch_size=10)
    number = make_issue(ctx, 4)
    e = emails(4)
    fake.script.append(Fault("partial", codes={e[0]: 300, e[1]: 300}))
    send_issue(ctx, number)
    client = make_app(ctx).test_client()
    login_as(client, ctx, "admin")
    page = client.get(f"/desk/issues/{number}").get_data(as_text=True)
    assert "sent with failures" in page
    assert "<td>failed</td><td>2</td><td>postmark 300: fake error 300</td>" in page


# --- SMTP: policy refusals are about our setup ----------------------------------------

class _Refuser:
    """An SMTP server that takes the first `take` messages, then answers DATA with
    `reply`."""

    def __init__(self, reply: str, take: int = 0) -> None:
        self.reply, self.take, self.taken = reply, take, []

    async def handle_DATA(self, server, session, envelope):
        if len(self.taken) < self.take:
            self.taken.extend(envelope.rcpt_tos)
            return "250 OK"
        return self.reply


@pytest.mark.parametrize("reply", [
    "550 5.7.26 Unauthenticated email from example.com is not accepted due to DMARC policy",
    "550 5.7.515 Access denied, sending domain does not meet the required authentication level",
    "550 5.7.25 The IP address sending this message does not have a PTR record",
    "554 5.7.1 Message rejected due to local policy",
])
def test_smtp_policy_refusals_stop_the_issue(make_ctx, reply):
    pytest.importorskip("aiosmtpd")
    from aiosmtpd.controller import Controller

    handler = _Refuser(reply, take=2)
    port = _closed_port()
    ctl = Controller(handler, hostname="127.0.0.1", port=port)
    ctl.start()
    try:
        ctx = make_ctx(transport={"name": "smtp", "smtp": {
            "host": "127.0.0.1", "port": port, "security": "none", "timeout": 10}},
            sending={"batch_size": 5, "max_in_flight": 1})
        number = make_issue(ctx, 5)
        with pytest.raises(AccountError, match=reply.split()[1].replace(".", r"\.")):
            send_issue(ctx, number)
        issue, rows = ledger(ctx, number)
        assert issue.status == "paused"  # two were accepted before the refusal
        assert sorted(r.email for r in rows.values() if r.state == "sent") == sorted(handler.taken)
        assert {r.state for r in rows.values() if r.email not in handler.taken} == {"queued"}
        assert {r.attempts for r in rows.values() if r.state == "queued"} == {0}
    finally:
        ctl.stop()


def test_smtp_recipient_refusal_stays_per_recipient(make_ctx):
    pytest.importorskip("aiosmtpd")
    from aiosmtpd.controller import Controller

    handler = _Refuser("550 5.1.1 no such user", take=4)
    port = _closed_port()
    ctl = Controller(handler, hostname="127.0.0.1", port=port)
    ctl.start()
    try:
        ctx = make_ctx(transport={"name": "smtp", "smtp": {
            "host": "127.0.0.1", "port": port, "security": "none", "timeout": 10}},
            sending={"batch_size": 5, "max_in_flight": 1})
        number = make_issue(ctx, 5)
        report = send_issue(ctx, number)
        assert report.status == "sent with failures"
        assert report.counts["sent"] == 4 and report.counts["failed"] == 1
    finally:
        ctl.stop()


# --- 4. reconciling unknown rows with the provider -------------------------------------

def _make_unknown(ctx, number, emails_):
    """Rows whose answer was lost without the provider having them (a request cut off
    before it arrived)."""
    with ctx.engine.begin() as conn:
        issue = get_issue(conn, number)
        conn.execute(update(deliveries).where(deliveries.c.issue_id == issue.id,
                                              deliveries.c.email.in_(emails_))
                     .values(state="unknown", last_error="lost"))


@pytest.mark.parametrize("fake", ["postmark", "mailgun"], indirect=True)
def test_reconcile_finds_what_the_provider_accepted(make_ctx, monkeypatch, fake):
    from pipeline.deliver.reconcile import reconcile_issue

    ctx = provider_ctx(make_ctx, monkeypatch, fake.kind, fake.base, batch_size=3)
    number = make_issue(ctx, 6)
    e = emails(6)
    _make_unknown(ctx, number, e[3:4])  # never reached the provider
    fake.script.append(Fault("reset"))  # the first batch: accepted, answer lost
    report = send_issue(ctx, number)
    assert report.status == "needs attention" and report.counts["unknown"] == 4
    r = reconcile_issue(ctx, number)
    assert (r.asked, r.accepted, r.still_unknown) == (4, 3, 1) and r.status == "needs attention"
    _, rows = ledger(ctx, number)
    assert rows[e[3]].state == "unknown"
    assert all(rows[x].state == "sent" and rows[x].provider_message_id for x in e[:3])
    assert retry_issue(ctx, number, unknown=True) == 1
    assert send_issue(ctx, number).status == "sent"
    assert fake.counts() == Counter(e)  # everyone exactly once


@pytest.mark.parametrize("fake", ["postmark"], indirect=True)
def test_reconcile_asks_page_by_page_and_misses_none(make_ctx, monkeypatch, fake):
    """However many rows are unknown (a provider outage can make them all so), they are read
    a page at a time, and every page is asked about."""
    from pipeline.deliver import reconcile

    monkeypatch.setattr(reconcile, "PAGE", 2)
    ctx = provider_ctx(make_ctx, monkeypatch, fake.kind, fake.base, batch_size=3)
    number = make_issue(ctx, 6)
    e = emails(6)
    _make_unknown(ctx, number, e[3:4])
    fake.script.append(Fault("reset"))
    send_issue(ctx, number)
    r = reconcile.reconcile_issue(ctx, number)
    assert (r.asked, r.accepted, r.still_unknown) == (4, 3, 1)


@pytest.mark.parametrize("fake", ["postmark"], indirect=True)
def test_every_send_reconciles_first(make_ctx, monkeypatch, fake):
    ctx = provider_ctx(make_ctx, monkeypatch, fake.kind, fake.base, batch_size=3)
    number = make_issue(ctx, 3)
    fake.script.append(Fault("reset"))
    assert send_issue(ctx, number).status == "needs attention"
    again = send_issue(ctx, number)
    assert again.reconciled.accepted == 3 and again.status == "sent"


@pytest.mark.parametrize("fake", ["resend"], indirect=True)
def test_reconcile_with_an_idempotency_key_resends_without_duplicates(make_ctx, monkeypatch, fake):
    from pipeline.deliver.reconcile import reconcile_issue

    ctx = provider_ctx(make_ctx, monkeypatch, fake.kind, fake.base, batch_size=3, max_attempts=1)
    number = make_issue(ctx, 3)
    fake.script.append(Fault("reset"))
    assert checked_send(ctx, number, force=True).status == "needs attention"
    r = reconcile_issue(ctx, number)
    assert r.requeued == 3 and r.status == "sending"
    assert send_issue(ctx, number).status == "sent"
    assert fake.counts() == Counter(emails(3))  # the key made the second call a no-op


@pytest.mark.parametrize("fake", ["sendgrid"], indirect=True)
def test_reconcile_says_plainly_when_the_provider_cannot_tell(make_ctx, monkeypatch, fake):
    from pipeline.deliver.reconcile import reconcile_issue

    ctx = provider_ctx(make_ctx, monkeypatch, fake.kind, fake.base, batch_size=3)
    number = make_issue(ctx, 3)
    fake.script.append(Fault("reset"))
    send_issue(ctx, number)
    r = reconcile_issue(ctx, number)
    assert r.still_unknown == 3 and "cannot tell" in r.how


# --- 8. the weekly job told by what happened to its issue -----------------------------

def test_schedule_status_reports_the_weekly_job_by_its_issue(make_ctx):
    from sqlalchemy import insert

    from core.db import utcnow
    from core.models import issues, job_runs
    from pipeline.compose.issues import period_for
    from pipeline.jobs.registry import schedule_status

    ctx = make_ctx()
    number = make_issue(ctx, 3)
    now = utcnow()
    with ctx.engine.begin() as conn:
        conn.execute(update(issues).where(issues.c.number == number)
                     .values(period=period_for(now, ctx.config), status="sending"))
        conn.execute(insert(job_runs).values(
            job="weekly", started_at=now, finished_at=now, result="failed",
            message="interrupted: the scheduler process stopped before the job finished"))

    def weekly():
        return {s["id"]: s for s in schedule_status(ctx)}["weekly"]

    assert weekly()["last_result"] == "resuming"
    send_issue(ctx, number)  # what dispatch does after the restart
    w = weekly()
    assert w["last_result"] == "ok"
    assert w["last_message"] == (f"issue #{number} sent: 3 of 3 sent; the run was interrupted, "
                                 "dispatch resumed the send")
