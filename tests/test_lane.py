"""The lane for people who are waiting: sign-up mail is queued, never sent in the request;
the answer takes the same time for a known and an unknown address; the lane has its own
rate share, so a confirmation arrives while an issue is still sending; a welcome goes
once per subscriber, through a unique key, and survives SIGKILL of its worker."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest
from scipy.stats import mannwhitneyu
from sqlalchemy import func, select, update

from core.config import PROJECT_ROOT
from core.context import Context
from core.models import deliveries, outbound_mail, subscribers, subscriptions
from core.states import OutboundKind, OutboundState
from pipeline.compose.issues import get_issue
from pipeline.deliver import lane
from pipeline.deliver.engine import send_issue
from pipeline.deliver.transports import get_transport
from subscribers import consent
from subscribers.store import add_subscriber, unsubscribe
from tests.fakes.config import use_provider
from tests.fakes.issue import add_subscribers, emails, make_issue
from tests.fakes.providers import FakeProvider, Fault
from tests.test_web_helpers import body, csrf, fresh_outbox, link_in, make_app

EVIDENCE = consent.Evidence(source="/subscribe", ip="10.0.0.1", text="yes", version="1")


def _rows(ctx, **where):
    q = select(outbound_mail).order_by(outbound_mail.c.id)
    for k, v in where.items():
        q = q.where(outbound_mail.c[k] == v)
    with ctx.engine.connect() as conn:
        return conn.execute(q).all()


def _signup_and_confirm(ctx, addr: str) -> int:
    sid = consent.signup(ctx, addr, evidence=EVIDENCE)
    assert sid is not None
    consent.confirm(ctx, sid)
    return sid


def test_signup_is_queued_and_the_lane_sends_the_confirmation(ctx):
    client = make_app(ctx).test_client()
    new_mail = fresh_outbox(ctx)
    resp = client.post("/subscribe", data={"email": "New@Example.com", "consent": "yes",
                                           "topics": "kp", "csrf_token": csrf(client)})
    assert resp.status_code == 200 and "Check your inbox" in resp.get_data(as_text=True)
    folder = ctx.config.path("var/outbox")
    assert not folder.exists() or not list(folder.glob("*.eml")), "sent inside the request"
    (row,) = _rows(ctx)
    assert row.kind == OutboundKind.SIGNUP and row.state == OutboundState.QUEUED
    with ctx.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(subscribers)).scalar() == 0

    (msg,) = new_mail()  # drains the lane, as the serve process's worker does
    assert msg["To"] == "new@example.com" and link_in(msg, ctx.config.site.base_url).startswith("/confirm/")
    (row,) = _rows(ctx)
    assert row.state == OutboundState.SENT and row.kind == OutboundKind.CONFIRM
    assert row.payload is None, "the form's personal data stays in the queue after use"
    with ctx.engine.connect() as conn:
        sub = conn.execute(select(subscriptions)).one()
    assert sub.status == "pending" and sub.topics == "kp" and sub.consent_ip is not None


def test_a_known_address_gets_no_mail_and_the_same_page(ctx):
    add_subscriber(ctx, "known@example.com")
    client = make_app(ctx).test_client()
    new_mail = fresh_outbox(ctx)
    pages = set()
    for addr in ("known@example.com", "other@example.com"):
        pages.add(client.post("/subscribe", data={"email": addr, "consent": "yes",
                                                  "csrf_token": csrf(client)}).get_data(as_text=True))
    assert len(pages) == 1
    assert [m["To"] for m in new_mail()] == ["other@example.com"]
    states = sorted(r.state for r in _rows(ctx))
    assert states == [OutboundState.DROPPED, OutboundState.SENT]


@pytest.mark.slow
def test_signup_takes_the_same_time_for_known_and_unknown_addresses(make_ctx):
    """Timing as an attacker sees it: interleaved sign-ups for known and new addresses.
    The two distributions must not be told apart (Mann-Whitney U, a generous alpha of
    0.1 %: a false alarm once in a thousand runs). The former request, which sent the
    confirmation itself, fails this test even with the outbox transport (a file write)."""
    ctx = make_ctx(web={"subscribe_rate_per_hour": 100000})
    add_subscribers(ctx, 200)
    known = emails(200)
    client = make_app(ctx).test_client()
    token = csrf(client)
    order = [("known", known[i]) for i in range(150)] + [("new", f"new{i}@example.com")
                                                          for i in range(150)]
    random.Random(7).shuffle(order)
    times: dict[str, list[float]] = {"known": [], "new": []}
    for i, (kind, addr) in enumerate(order):
        t0 = time.perf_counter()
        resp = client.post("/subscribe", data={"email": addr, "consent": "yes", "csrf_token": token},
                           environ_base={"REMOTE_ADDR": f"10.9.{i // 250}.{i % 250}"})
        times[kind].append(time.perf_counter() - t0)
        assert resp.status_code == 200
    warm = {k: v[10:] for k, v in times.items()}  # the first requests warm caches
    p = mannwhitneyu(warm["known"], warm["new"]).pvalue
    assert p > 0.001, f"sign-up timing tells known from new addresses (p={p:.2g})"
    report = lane.drain(ctx)
    assert report.counts == {"dropped": 150, "sent": 150}


def test_welcome_once_per_subscriber_even_after_resubscribing(ctx):
    sid = _signup_and_confirm(ctx, "w@example.com")
    consent.confirm(ctx, sid)  # a second click on the link
    unsubscribe(ctx, sid, source="test")
    consent.signup(ctx, "w@example.com", evidence=EVIDENCE)
    consent.confirm(ctx, sid)
    new_mail = fresh_outbox(ctx)
    welcomes = [m for m in new_mail() if m["Subject"].startswith("Welcome")]
    assert [m["To"] for m in welcomes] == ["w@example.com"]
    text = body(welcomes[0])
    assert "/preferences/" in text and "/archive" in text and "confirm" not in text.lower()


def test_editor_test_send_of_the_welcome(ctx):
    lane.queue_test_welcome(ctx, "editor@example.com")
    (msg,) = fresh_outbox(ctx)()
    assert msg["To"] == "editor@example.com" and msg["Subject"].startswith("[Test] Welcome")


def test_a_provider_refusal_is_retried_and_a_gone_subscriber_dropped(make_ctx, monkeypatch):
    monkeypatch.setenv("KPDIGEST_POSTMARK_TOKEN", "k")
    fake = FakeProvider("postmark")
    try:
        ctx = make_ctx(transport={"name": "postmark", "postmark": {"base_url": fake.base}},
                       sending={"backoff_seconds": 0.01})
        sid = add_subscriber(ctx, "r@example.com")
        gone = add_subscriber(ctx, "gone@example.com")
        lane.queue_link(ctx, sid, "preferences")
        lane.queue_link(ctx, gone, "export")
        with ctx.engine.begin() as conn:
            conn.execute(subscribers.delete().where(subscribers.c.id == gone))
        fake.script.append(Fault("503"))
        first = lane.run_once(ctx)
        assert first.counts == {"retry": 1}  # the erased one's row went with them (cascade)
        (row,) = _rows(ctx)
        assert row.state == OutboundState.QUEUED and "503" in row.last_error
        with ctx.engine.begin() as conn:  # its backoff has passed
            conn.execute(update(outbound_mail).values(next_attempt_at=row.created_at))
        assert lane.run_once(ctx).counts == {"sent": 1}
        assert fake.counts() == Counter({"r@example.com": 1})
    finally:
        fake.close()


def test_rows_of_a_dead_worker_come_back_by_kind(make_ctx, monkeypatch):
    """A link is queued again (a second copy is harmless); a welcome through a transport
    without idempotency keys becomes `unknown`, never a second welcome."""
    monkeypatch.setenv("KPDIGEST_POSTMARK_TOKEN", "k")
    ctx = make_ctx(transport={"name": "postmark"})
    sid = _signup_and_confirm(ctx, "x@example.com")
    lane.queue_link(ctx, sid, "preferences")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    owner = f"{lane.owner_name().split(':')[0]}:{dead}"
    assert len(lane.claim(ctx, owner, 10)) == 2
    assert lane.recover(ctx, get_transport(ctx.config)) == 2
    states = {r.kind: r.state for r in _rows(ctx)}
    assert states == {OutboundKind.WELCOME: OutboundState.UNKNOWN,
                      OutboundKind.PREFERENCES: OutboundState.QUEUED}


@pytest.mark.slow
def test_a_confirmation_arrives_while_a_paced_issue_is_still_sending(make_ctx, monkeypatch):
    """Its own rate share: the issue's bucket is full, the lane's is not."""
    monkeypatch.setenv("KPDIGEST_POSTMARK_TOKEN", "k")
    fake = FakeProvider("postmark")
    try:
        ctx = make_ctx(transport={"name": "postmark", "postmark": {"base_url": fake.base}},
                       sending={"rate_per_second": 40, "batch_size": 10})
        number = make_issue(ctx, 400)  # ten seconds at the issue's pace
        stop = threading.Event()
        sender = threading.Thread(target=send_issue, args=(ctx, number),
                                  kwargs={"force": True, "stop": stop})
        worker = lane.start_worker(ctx, stop, poll=0.2)
        sender.start()
        deadline = time.monotonic() + 60
        while not fake.counts() and time.monotonic() < deadline:
            time.sleep(0.05)
        lane.queue_signup(ctx, "waiting@example.com", "", None, ("weekly",), EVIDENCE)
        while "waiting@example.com" not in fake.counts() and time.monotonic() < deadline:
            time.sleep(0.05)
        with ctx.engine.connect() as conn:
            issue = get_issue(conn, number)
            queued = conn.execute(select(func.count()).select_from(deliveries).where(
                deliveries.c.issue_id == issue.id, deliveries.c.state == "queued")).scalar()
        stop.set()
        lane.WAKE.set()
        sender.join(60)
        worker.join(60)
        assert fake.counts()["waiting@example.com"] == 1
        assert queued > 0, "the issue had finished: the test proves nothing"
    finally:
        fake.close()


def _lane_process(config, env):
    return subprocess.Popen([sys.executable, "-m", "tests.fakes.lane_worker", str(config)],
                            stdout=subprocess.PIPE, text=True, env=env, cwd=PROJECT_ROOT)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["resend", "postmark"])
def test_sigkill_during_the_welcome_fan_out(make_ctx, monkeypatch, tmp_path, kind):
    """Readers confirm, their welcomes go out, the worker is killed mid-way three times,
    then a worker finishes. Resend (idempotency keys): everyone has exactly one welcome.
    Postmark: nobody has two; the one in flight at a kill may be `unknown`."""
    readers = 40
    secret = "POSTMARK_TOKEN" if kind == "postmark" else "RESEND_API_KEY"
    monkeypatch.setenv(f"KPDIGEST_{secret}", "k")
    fake = FakeProvider(kind, latency=0.02)
    ctx = make_ctx()
    config = use_provider(ctx.config.source, kind, fake.base)
    ctx.close()
    ctx = Context.load(str(config))
    addrs = [f"welcome{i}@example.com" for i in range(readers)]
    for a in addrs:
        _signup_and_confirm(ctx, a)
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    rng = random.Random(int.from_bytes(os.urandom(4), "big"))
    try:
        for k in range(3):
            child = _lane_process(config, env)
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
            target = (k + 1) * readers // 4 + rng.randrange(0, 4)
            deadline = time.monotonic() + 60
            while sum(fake.counts().values()) < target and child.poll() is None \
                    and time.monotonic() < deadline:
                time.sleep(0.001)
            time.sleep(rng.uniform(0.0, 0.02))
            child.send_signal(signal.SIGKILL)
            code = child.wait(30)
            child.stdout.close()
            assert code == -signal.SIGKILL, "the worker finished before the kill"
            fake.wait_idle()
        lane.drain(ctx)
        fake.wait_idle()
        accepted = fake.counts()
        states = Counter(r.state for r in _rows(ctx, kind=OutboundKind.WELCOME))
        assert max(accepted.values()) == 1, "someone got two welcomes"
        if kind == "resend":
            assert sorted(accepted) == sorted(addrs) and states == {"sent": readers}
        else:
            assert set(states) <= {"sent", "unknown"} and states["unknown"] <= 3
            assert states["sent"] + states["unknown"] == readers
            sent = {row.email for row in _welcomed(ctx, OutboundState.SENT)}
            assert all(accepted[a] == 1 for a in sent)
    finally:
        fake.close()
        ctx.close()


def _welcomed(ctx, state):
    with ctx.engine.connect() as conn:
        return conn.execute(select(subscribers.c.email).join(
            outbound_mail, outbound_mail.c.subscriber_id == subscribers.c.id).where(
            outbound_mail.c.kind == OutboundKind.WELCOME, outbound_mail.c.state == state)).all()


def test_an_editor_test_sends_the_welcome_from_the_desk(ctx):
    from tests.test_web_helpers import login_as

    client = make_app(ctx).test_client()
    login_as(client, ctx, "editor")
    assert "Send the welcome mail" in client.get("/desk/queue").get_data(as_text=True)
    resp = client.post("/desk/welcome/test", data={"csrf_token": csrf(client, "/desk/queue")})
    assert resp.status_code == 302
    (msg,) = fresh_outbox(ctx)()
    assert msg["To"] == "editor@example.com" and msg["Subject"].startswith("[Test] Welcome")
    assert "/preferences" in body(msg)


def test_the_welcome_shows_the_best_recent_stories(ctx):
    from sqlalchemy import insert

    from core.db import utcnow
    from core.models import articles, issue_articles, issues

    number = make_issue(ctx)
    now = utcnow()
    with ctx.engine.begin() as conn:
        iid = conn.execute(select(issues.c.id).where(issues.c.number == number)).scalar_one()
        conn.execute(update(issues).where(issues.c.id == iid).values(status="sent"))
        for i, score in enumerate((1.0, 9.0, 5.0)):
            aid = conn.execute(insert(articles).values(
                identity=f"a{i}", title=f"Story {i} score {score}", link=f"https://e.org/{i}",
                score=score, created_at=now, tags=[], topics=[])).inserted_primary_key[0]
            conn.execute(insert(issue_articles).values(issue_id=iid, article_id=aid, position=i))
    _signup_and_confirm(ctx, "reader@example.com")
    (msg,) = [m for m in fresh_outbox(ctx)() if m["Subject"].startswith("Welcome")]
    text = body(msg)
    assert text.index("Story 1 score 9.0") < text.index("Story 2 score 5.0") < text.index("Story 0")
    assert "https://e.org/1" in text
