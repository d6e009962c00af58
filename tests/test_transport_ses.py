"""The SES v2 transport (boto3) against a loopback fake of SendEmail: raw MIME per
recipient, throttling retried by our engine, MessageRejected failing one recipient."""

from __future__ import annotations

import email
import email.policy
from collections import Counter

import pytest

from tests.fakes.issue import emails, make_issue

boto3 = pytest.importorskip("boto3")


@pytest.fixture
def fake_ses():
    from tests.fakes.ses import FakeSes

    f = FakeSes()
    yield f
    f.close()


@pytest.fixture
def db_url(tmp_path):
    """The wire protocol does not depend on the database: SQLite only."""
    return f"sqlite:///{tmp_path / 'kpdigest.db'}"


def test_ses_sends_raw_mime_and_maps_errors(make_ctx, monkeypatch, fake_ses):
    from pipeline.deliver.engine import send_issue

    for k, v in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    ctx = make_ctx(transport={"name": "ses", "ses": {"region": "eu-west-1", "endpoint_url": fake_ses.base}},
                   sending={"batch_size": 3, "max_in_flight": 2, "backoff_seconds": 0.05})
    number = make_issue(ctx, 7)
    e = emails(7)
    fake_ses.errors.append((429, "TooManyRequestsException"))
    fake_ses.refuse[e[4]] = (400, "MessageRejected")
    report = send_issue(ctx, number, force=True)
    assert report.counts["sent"] == 6 and report.counts["failed"] == 1
    assert Counter(fake_ses.accepted) == Counter(x for x in e if x != e[4])


def test_ses_send_single(make_ctx, monkeypatch, fake_ses):
    from email.message import EmailMessage

    from pipeline.deliver.transports import get_transport

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    ctx = make_ctx(transport={"name": "ses", "ses": {"endpoint_url": fake_ses.base}})
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = "d@example.com", "x@example.org", "Confirm"
    m.set_content("Please confirm")
    assert get_transport(ctx.config).send_single(m)
    assert fake_ses.accepted == ["x@example.org"]
    assert email.message_from_bytes(m.as_bytes(), policy=email.policy.default)["To"] == "x@example.org"
