"""The sending engine over the delivery ledger: exactly once, resumable, paced, pausable.

Providers are loopback fakes (tests/fakes/providers.py) on 127.0.0.1; the database is
real SQLite and PostgreSQL (the `make_ctx` fixture runs each test on both).
"""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from sqlalchemy import select

from core.errors import CheckFailed, StateError
from core.models import deliveries, issues, suppressions
from pipeline.compose.issues import get_issue
from pipeline.deliver.control import cancel_issue, issue_progress, pause_issue, resume_issue, retry_issue
from pipeline.deliver.engine import send_issue as checked_send
from subscribers.links import Linker
from subscribers.tokens import link, read_token
from tests.fakes.issue import emails, make_issue
from tests.fakes.providers import FakeProvider, Fault


def send_issue(ctx, number, **kw):
    """The fake issue has no real footer: the pre-send checks are tested on their own."""
    return checked_send(ctx, number, force=True, **kw)


@pytest.fixture
def fake(request):
    kind = getattr(request, "param", "postmark")
    f = FakeProvider(kind)
    yield f
    f.close()


def provider_ctx(make_ctx, monkeypatch, fake, **sending):
    for var in ("POSTMARK_TOKEN", "SENDGRID_API_KEY", "MAILGUN_API_KEY", "RESEND_API_KEY"):
        monkeypatch.setenv(f"KPDIGEST_{var}", "test-key")
    opts = {"base_url": fake.base, "timeout": 1.0}
    return make_ctx(transport={"name": fake.kind, fake.kind: opts},
                    sending={"batch_size": 4, "max_in_flight": 2, "backoff_seconds": 0.05, **sending})


def rows(ctx, number):
    with ctx.engine.connect() as conn:
        issue = get_issue(conn, number)
        return {r.email: r for r in conn.execute(select(deliveries).where(deliveries.c.issue_id == issue.id))}


def states(ctx, number) -> Counter[str]:
    return Counter(r.state for r in rows(ctx, number).values())


@pytest.mark.parametrize("fake", ["postmark", "sendgrid", "mailgun", "resend"], indirect=True)
def test_every_reader_exactly_once_and_rerun_sends_nothing(make_ctx, monkeypatch, fake):
    ctx = provider_ctx(make_ctx, monkeypatch, fake)
    number = make_issue(ctx, 11)
    report = send_issue(ctx, number)
    assert report.sent_now == 11 and report.counts["sent"] == 11
    assert fake.counts() == Counter(emails(11))
    assert all(r.provider_message_id and r.sent_at for r in rows(ctx, number).values())
    again = send_issue(ctx, number)
    assert again.sent_now == 0 and fake.counts() == Counter(emails(11))
    with ctx.engine.connect() as conn:
        assert get_issue(conn, number).status == "sent"


def test_a_worker_error_ends_the_run_and_gc_settings_come_back(make_ctx, monkeypatch):
    import gc

    from pipeline.deliver import ledger as send_module

    ctx = make_ctx(sending={"batch_size": 2, "max_in_flight": 3})
    number = make_issue(ctx, 20)
    before = gc.get_threshold()
    calls = 0
    real = send_module.claim_batch

    def flaky(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls == 3:
            raise RuntimeError("database went away")
        return real(*args, **kwargs)

    monkeypatch.setattr(send_module, "claim_batch", flaky)
    with pytest.raises(RuntimeError, match="went away"):
        send_issue(ctx, number)
    assert gc.get_threshold() == before
    left = states(ctx, number)
    assert left["sending"] == 0 and left["queued"] > 0  # the others stopped claiming
    monkeypatch.setattr(send_module, "claim_batch", real)
    assert send_issue(ctx, number).counts["sent"] == 20


def test_outbox_stop_leaves_the_rest_queued_and_resumes(make_ctx):
    ctx = make_ctx(sending={"batch_size": 3, "max_in_flight": 1})
    number = make_issue(ctx, 10)
    stop = threading.Event()
    seen: list[int] = []

    def progress(n: int) -> None:
        seen.append(n)
        stop.set()  # as if SIGTERM arrived during the first batch

    first = send_issue(ctx, number, stop=stop, progress=progress)
    assert first.stopped and first.counts["sent"] == 3 and first.counts["queued"] == 7
    second = send_issue(ctx, number)
    assert second.counts["sent"] == 10 and second.sent_now == 7
    assert len(list(ctx.config.path("var/outbox").glob("issue-*.eml"))) == 10


def test_postmark_batch_with_failed_and_inactive_messages(make_ctx, monkeypatch, fake):
    ctx = provider_ctx(make_ctx, monkeypatch, fake, batch_size=10)
    number = make_issue(ctx, 6)
    e = emails(6)
    fake.script.append(Fault("partial", codes={e[1]: 406, e[2]: 300}))
    report = send_issue(ctx, number)
    got = rows(ctx, number)
    assert got[e[1]].state == "suppressed" and "406" in got[e[1]].last_error
    assert got[e[2]].state == "failed" and "300" in got[e[2]].last_error
    assert report.counts["sent"] == 4
    with ctx.engine.connect() as conn:
        assert conn.execute(select(suppressions.c.reason).where(suppressions.c.email == e[1])).scalar() \
            == "bounced"


@pytest.mark.parametrize("fake", ["postmark", "sendgrid", "mailgun", "resend"], indirect=True)
def test_rate_limit_signal_is_read_and_the_batch_retried(make_ctx, monkeypatch, fake):
    from pipeline.deliver.engine import load_variants, recipients_for
    from pipeline.deliver.transports import get_transport
    from pipeline.deliver.transports.base import RetryBatch

    ctx = provider_ctx(make_ctx, monkeypatch, fake, batch_size=10)
    number = make_issue(ctx, 3)
    transport = get_transport(ctx.config)
    with ctx.engine.connect() as conn:
        issue = get_issue(conn, number)
        rs = conn.execute(select(deliveries).where(deliveries.c.issue_id == issue.id)).all()
    variant = load_variants(ctx, issue)[""]
    fake.script.append(Fault("429", retry_after=7))
    with pytest.raises(RetryBatch) as exc:
        transport.send_batch(variant, recipients_for(Linker("http://x", "k", issue.frozen_at), rs), "k1")
    # Postmark gives no retry time: the engine's own backoff applies.
    assert exc.value.retry_after is None if fake.kind == "postmark" else 5 <= exc.value.retry_after <= 8
    transport.close()
    fake.script.extend([Fault("429", retry_after=0), Fault("503"), Fault("500")])
    report = send_issue(ctx, number)
    assert report.counts["sent"] == 3 and fake.counts() == Counter(emails(3))
    assert fake.calls == 1 + 4  # the refused call above, three refusals, then the batch


def test_server_errors_past_max_attempts_fail_with_reason(make_ctx, monkeypatch, fake):
    ctx = provider_ctx(make_ctx, monkeypatch, fake, batch_size=10, max_attempts=2)
    number = make_issue(ctx, 3)
    fake.script.extend([Fault("500"), Fault("500")])
    report = send_issue(ctx, number)
    assert report.counts["failed"] == 3 and not fake.accepted
    assert all("HTTP 500" in r.last_error for r in rows(ctx, number).values())


@pytest.mark.parametrize("fault", ["timeout", "reset"])
def test_lost_answer_without_idempotency_is_unknown_never_resent(make_ctx, monkeypatch, fake, fault):
    ctx = provider_ctx(make_ctx, monkeypatch, fake, batch_size=10)
    number = make_issue(ctx, 3)
    fake.script.append(Fault(fault, hold=2.0))
    report = send_issue(ctx, number)
    assert report.counts["unknown"] == 3 and report.counts["sent"] == 0
    assert fake.counts() == Counter(emails(3))  # the provider did accept them, once
    send_issue(ctx, number)
    assert fake.counts() == Counter(emails(3))


@pytest.mark.parametrize("fake", ["resend"], indirect=True)
@pytest.mark.parametrize("fault", ["timeout", "reset"])
def test_lost_answer_with_idempotency_key_is_retried_once(make_ctx, monkeypatch, fake, fault):
    ctx = provider_ctx(make_ctx, monkeypatch, fake, batch_size=10)
    number = make_issue(ctx, 3)
    fake.script.append(Fault(fault, hold=2.0))
    report = send_issue(ctx, number)
    assert report.counts["sent"] == 3 and report.counts["unknown"] == 0
    assert fake.counts() == Counter(emails(3))
    keys = [r["headers"]["Idempotency-Key"] for r in fake.requests]
    assert len(keys) == 2 and keys[0] == keys[1]


def test_permanent_refusal_fails_recipients_and_pauses_the_issue(make_ctx, monkeypatch, fake):
    ctx = provider_ctx(make_ctx, monkeypatch, fake, batch_size=5, max_in_flight=1, error_threshold=0.5)
    number = make_issue(ctx, 60)
    fake.script.extend([Fault("400")] * 4)
    report = send_issue(ctx, number)
    assert report.paused and "failed" in report.paused
    with ctx.engine.connect() as conn:
        issue = get_issue(conn, number)
    assert issue.status == "paused" and issue.pause_reason == report.paused
    c = states(ctx, number)
    assert c["failed"] == 20 and c["queued"] == 40 and c["sending"] == 0
    assert all("fake error" in r.last_error for r in rows(ctx, number).values() if r.state == "failed")
    with pytest.raises(StateError):
        send_issue(ctx, number)
    resume_issue(ctx, number)
    assert retry_issue(ctx, number, failed=True) == c["failed"]
    assert send_issue(ctx, number).counts["sent"] == 60


def test_admin_controls_and_progress(make_ctx, monkeypatch, fake):
    ctx = provider_ctx(make_ctx, monkeypatch, fake)
    number = make_issue(ctx, 8)
    pause_issue(ctx, number, "checking a typo")
    with pytest.raises(StateError, match="checking a typo"):
        send_issue(ctx, number)
    p = issue_progress(ctx, number)
    assert p.status == "paused" and p.counts["queued"] == 8 and p.eta_seconds is None
    resume_issue(ctx, number)
    fake.script.append(Fault("reset"))
    send_issue(ctx, number)
    p = issue_progress(ctx, number)
    assert p.counts["unknown"] == 4 and p.counts["sent"] == 4 and p.rate > 0 and p.eta_seconds == 0
    assert retry_issue(ctx, number, failed=True) == 0
    assert retry_issue(ctx, number, unknown=True) == 4  # deliberately: may duplicate
    with ctx.engine.connect() as conn:
        assert get_issue(conn, number).status == "sending"
    send_issue(ctx, number)
    assert issue_progress(ctx, number).counts["sent"] == 8
    later = make_issue(ctx)
    cancel_issue(ctx, later)
    with pytest.raises(StateError, match="cancelled"):
        send_issue(ctx, later)
    with pytest.raises(StateError):
        retry_issue(ctx, later, failed=True)


def test_pause_from_another_process_stops_a_running_sender(make_ctx, monkeypatch, fake):
    ctx = provider_ctx(make_ctx, monkeypatch, fake, batch_size=2, max_in_flight=1)
    number = make_issue(ctx, 20)

    def progress(_n: int) -> None:
        pause_issue(ctx, number, "stop now")

    report = send_issue(ctx, number, progress=progress)
    assert report.paused and report.counts["sent"] == 2 and report.counts["queued"] == 18


def test_failing_checks_block_sending_unless_forced(make_ctx):
    ctx = make_ctx()
    number = make_issue(ctx, 2, html_text=("<p>no footer</p>", "no footer"))
    with pytest.raises(CheckFailed):
        checked_send(ctx, number)
    assert checked_send(ctx, number, force=True).counts["sent"] == 2


def test_suppressed_after_freeze_is_not_sent(make_ctx, monkeypatch, fake):
    from subscribers.store import suppress

    ctx = provider_ctx(make_ctx, monkeypatch, fake, batch_size=4)
    number = make_issue(ctx, 6)
    with ctx.engine.begin() as conn:
        for e in emails(4):  # a whole first page
            suppress(conn, e, "unsubscribed")
    report = send_issue(ctx, number)
    assert report.counts["suppressed"] == 4 and report.counts["sent"] == 2
    assert set(fake.counts()) == set(emails(6)[4:])


def test_rate_per_day_leaves_the_rest_queued(make_ctx, monkeypatch, fake):
    ctx = provider_ctx(make_ctx, monkeypatch, fake, rate_per_day=10, batch_size=4)
    number = make_issue(ctx, 12)
    report = send_issue(ctx, number)  # returns at once instead of waiting for tomorrow
    assert report.counts["sent"] == 10 and report.counts["queued"] == 2 and report.counts["sending"] == 0
    assert "daily allowance" in report.waiting
    with ctx.engine.connect() as conn:
        assert get_issue(conn, number).status == "sending"  # the scheduler continues it later
    again = send_issue(ctx, number)  # still within the same 24 hours: nothing more
    assert again.sent_now == 0 and again.waiting


def test_fast_links_equal_the_token_module(ctx):
    from datetime import UTC, datetime

    from itsdangerous import TimestampSigner, URLSafeTimedSerializer

    when = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)

    class Fixed(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(when.timestamp())

    linker = Linker("https://d.example/", "s3cret", when)
    for sid in (1, 42, 10**7):
        for purpose in ("unsubscribe", "preferences"):
            url = linker(purpose, sid)
            ref = URLSafeTimedSerializer("s3cret", salt=f"kpdigest.{purpose}", signer=Fixed).dumps(sid)
            assert url == f"https://d.example/{purpose}/{ref}"
            assert read_token("s3cret", purpose, url.rsplit("/", 1)[1]) == sid
    assert link("https://d.example", "s3cret", "unsubscribe", 5).rsplit(".", 2)[0] == \
        linker("unsubscribe", 5).rsplit(".", 2)[0]
    for sid in (1, 255, 256, 10**7, 2**40):  # the inlined pair signs exactly as one link does
        assert linker.pair(sid) == (linker("unsubscribe", sid), linker("preferences", sid))


def test_issue_status_moves_through_sending_to_sent(make_ctx, monkeypatch, fake):
    ctx = provider_ctx(make_ctx, monkeypatch, fake, batch_size=2, max_in_flight=1)
    number = make_issue(ctx, 4)
    seen = []

    def progress(_n: int) -> None:
        with ctx.engine.connect() as conn:
            seen.append(conn.execute(select(issues.c.status).where(issues.c.number == number)).scalar())

    send_issue(ctx, number, progress=progress)
    assert seen == ["sending", "sending"]
    with ctx.engine.connect() as conn:
        row = get_issue(conn, number)
    assert row.status == "sent" and row.send_started_at and row.sent_at


def test_the_audience_is_frozen_with_the_issue(make_ctx):
    from subscribers.store import suppress
    from tests.fakes.issue import add_subscribers

    ctx = make_ctx()
    add_subscribers(ctx, 4)
    with ctx.engine.begin() as conn:
        suppress(conn, emails(4)[3], "complained")
    number = make_issue(ctx)
    add_subscribers(ctx, 2, start=4)  # joined after the freeze: not in this issue
    report = send_issue(ctx, number)
    assert report.counts["sent"] == 3 and sum(report.counts.values()) == 3
    assert set(rows(ctx, number)) == set(emails(3))


def test_rows_left_in_flight_by_another_host_wait_for_the_lease(make_ctx):
    from datetime import timedelta

    from sqlalchemy import update

    from core.db import utcnow

    ctx = make_ctx(sending={"lease_seconds": 600})
    number = make_issue(ctx, 4)
    e = emails(4)
    with ctx.engine.begin() as conn:
        issue_id = get_issue(conn, number).id
        for email, age in ((e[0], 3600), (e[1], 60)):
            mine = (deliveries.c.issue_id == issue_id, deliveries.c.email == email)
            conn.execute(update(deliveries).where(*mine).values(
                state="sending", claimed_by="other-host:4242:abcd",
                claimed_at=utcnow() - timedelta(seconds=age), batch_key="k"))
    report = send_issue(ctx, number)  # the outbox is idempotent: the expired one is re-queued
    got = rows(ctx, number)
    assert report.requeued == 1 and got[e[0]].state == "sent"
    assert got[e[1]].state == "sending"  # its sender may still be alive: not touched
    assert report.counts["sent"] == 3
