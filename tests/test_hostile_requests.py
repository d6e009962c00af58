"""Property tests: arbitrary JSON and bytes thrown at every webhook (signed and unsigned)
and at the public forms (sign-up, confirm, unsubscribe, preferences, login). No answer is
a 5xx, and no unsigned request changes anything."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from core.models import events, subscribers, subscriptions, suppressions, webhook_events
from subscribers.store import add_subscriber
from subscribers.tokens import make_token
from subscribers.webhooks import PROVIDERS
from tests.fakes.webhooks import WebhookSigners
from tests.test_web_helpers import csrf, make_app

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])
# Field names the verifiers read, so that generated objects reach past the first check.
FIELDS = ["RecordType", "Type", "ID", "Email", "Recipient", "MessageID", "SuppressSending",
          "SuppressionReason", "event", "email", "type", "sg_event_id", "signature",
          "timestamp", "token", "event-data", "severity", "recipient", "id", "data", "to",
          "bounce", "unsubscribed", "notificationType", "eventType", "bouncedRecipients",
          "emailAddress", "complaint", "complainedRecipients", "delivery", "recipients",
          "Message", "MessageId", "Signature", "SigningCertURL", "SignatureVersion",
          "Timestamp", "TopicArn", "Subject", "SubscribeURL", "Token"]
ADDRESS = "victim@example.com"
scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
           | st.text(max_size=30) | st.sampled_from([ADDRESS, "Permanent", "HardBounce", "failed",
                                                     "bounce", "Bounce", "Notification", "1"]))
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=8), inner, max_size=5),
    max_leaves=25)
bodies = st.one_of(st.binary(max_size=600), json_values.map(lambda v: json.dumps(v).encode()))
HEADER_NAMES = ["Authorization", "X-Twilio-Email-Event-Webhook-Signature",
                "X-Twilio-Email-Event-Webhook-Timestamp", "svix-id", "svix-timestamp",
                "svix-signature", "Content-Type"]
header_text = st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=60)
headers = st.dictionaries(st.sampled_from(HEADER_NAMES), header_text, max_size=4)
form_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
forms = st.dictionaries(st.sampled_from(["email", "name", "consent", "topics", "lists",
                                         "website", "paused", "password", "next", "action"])
                        | st.text(max_size=10),
                        form_text | st.sampled_from([ADDRESS, "yes", "kp", "x\x00y", "é" * 300,
                                                     f"{ADDRESS}\x00"]), max_size=6)
ips = st.ip_addresses(v=4).map(str)


@pytest.fixture
def signers(ctx, monkeypatch) -> WebhookSigners:
    s = WebhookSigners()
    for k, v in s.env().items():
        monkeypatch.setenv(k, v)
    s.pin_sns_cert(ctx)
    return s


@pytest.fixture
def hctx(make_ctx):
    """No sign-up rate limit, so that every generated sign-up reaches the code."""
    ctx = make_ctx(web={"subscribe_rate_per_hour": 0})
    add_subscriber(ctx, ADDRESS)
    return ctx


def _state(ctx) -> tuple[Any, ...]:
    with ctx.engine.connect() as conn:
        counts = [conn.execute(select(func.count()).select_from(t)).scalar_one()
                  for t in (webhook_events, suppressions, events, subscribers)]
        statuses = sorted(conn.execute(select(subscriptions.c.status, subscriptions.c.topics,
                                              subscriptions.c.updated_at)).all())
        names = sorted(conn.execute(select(subscribers.c.name, subscribers.c.soft_bounces)).all())
    return (*counts, statuses, names)


@pytest.mark.slow
@pytest.mark.parametrize("provider", PROVIDERS)
def test_unsigned_webhooks_are_4xx_and_change_nothing(hctx, signers, provider):
    client = make_app(hctx).test_client()
    before = _state(hctx)

    @SETTINGS
    @given(body=bodies, sent=headers, secure=st.booleans())
    def check(body: bytes, sent: dict[str, str], secure: bool) -> None:
        resp = client.post(f"/webhooks/{provider}", data=body, headers=sent,
                           base_url="https://localhost" if secure else "http://localhost")
        assert 400 <= resp.status_code < 500, (resp.status_code, resp.get_data(as_text=True))
        assert _state(hctx) == before

    check()


@pytest.mark.slow
@pytest.mark.parametrize("provider", PROVIDERS)
def test_signed_webhooks_with_any_content_are_never_5xx(hctx, signers, provider):
    client = make_app(hctx).test_client()
    raw_body = provider in ("postmark", "sendgrid", "resend")

    @SETTINGS
    @given(payload=bodies if raw_body else json_values | st.binary(max_size=300))
    def check(payload: Any) -> None:
        sent, body = signers.sign(provider, payload)
        resp = client.post(f"/webhooks/{provider}", data=body, headers=sent,
                           base_url="https://localhost")
        assert resp.status_code < 500, (resp.status_code, resp.get_data(as_text=True))

    check()


@pytest.mark.slow
def test_public_forms_are_never_5xx(hctx):
    client = make_app(hctx).test_client()
    token = csrf(client)

    @SETTINGS
    @given(form=forms, ip=ips, with_csrf=st.booleans(),
           route=st.sampled_from(["/subscribe", "/login", "/manage"]))
    def check(form: dict[str, str], ip: str, with_csrf: bool, route: str) -> None:
        before = _state(hctx)
        data = {**form, "csrf_token": token} if with_csrf else form
        resp = client.post(route, data=data, environ_base={"REMOTE_ADDR": ip})
        assert resp.status_code < 500, (resp.status_code, resp.get_data(as_text=True))
        if not with_csrf or route != "/subscribe":
            assert _state(hctx) == before
        client.get("/")  # the session (and its CSRF token) survives a failed login

    check()


@pytest.mark.slow
def test_sign_ups_with_any_fields_are_never_5xx(hctx):
    """Fields that reach the database: a valid form with hostile text in each field."""
    client = make_app(hctx).test_client()
    token = csrf(client)
    hostile = form_text | st.sampled_from(["x\x00y", "é" * 300, "\u202e", " ", "<b>"])
    emails = st.sampled_from(["new@example.com", ADDRESS, "a@b", "x\x00@example.com"]) \
        | st.emails().map(str) | hostile

    @SETTINGS
    @given(email=emails, name=hostile, topics=st.lists(hostile | st.just("kp"), max_size=3),
           agent=header_text, ip=ips)
    def check(email: str, name: str, topics: list[str], agent: str, ip: str) -> None:
        form = {"email": email, "name": name, "consent": "yes", "topics": topics,
                "csrf_token": token}
        resp = client.post("/subscribe", data=form, headers={"User-Agent": agent},
                           environ_base={"REMOTE_ADDR": ip})
        assert resp.status_code < 500, (resp.status_code, resp.get_data(as_text=True))

    check()


@pytest.mark.slow
def test_token_routes_with_forged_tokens_change_nothing(hctx):
    client = make_app(hctx).test_client()
    token = csrf(client)
    before = _state(hctx)

    @SETTINGS
    @given(forged=st.text(min_size=1, max_size=120), form=forms, body=st.binary(max_size=300),
           route=st.sampled_from(["confirm", "unsubscribe", "preferences", "export", "erase"]))
    def check(forged: str, form: dict[str, str], body: bytes, route: str) -> None:
        path = f"/{route}/{quote(forged, safe='')}"
        for resp in (client.get(path),
                     client.post(path, data={**form, "csrf_token": token}),
                     client.post(path, data=body,
                                 content_type="application/x-www-form-urlencoded")):
            assert resp.status_code < 500, (resp.status_code, resp.get_data(as_text=True))
        assert _state(hctx) == before

    check()


@pytest.mark.slow
def test_preferences_with_a_real_token_and_any_form_are_never_5xx(hctx):
    client = make_app(hctx).test_client()
    with hctx.engine.connect() as conn:
        sid = conn.execute(select(subscribers.c.id)).scalar_one()
    path = f"/preferences/{make_token('test-secret-key', 'preferences', sid)}"
    token = csrf(client, path)

    @SETTINGS
    @given(form=forms, body=st.binary(max_size=300))
    def check(form: dict[str, str], body: bytes) -> None:
        for resp in (client.post(path, data={**form, "csrf_token": token}),
                     client.post(f"{path}/privacy", data={**form, "csrf_token": token}),
                     client.post(path, data=body,
                                 content_type="application/x-www-form-urlencoded")):
            assert resp.status_code < 500, (resp.status_code, resp.get_data(as_text=True))

    check()
