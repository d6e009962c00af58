"""The 13 requests that were answered 500 (issue #21), each now a 4xx that changes nothing;
body limits per route; SES certificates fetched outside the request and cached only when
they are certificates for an SNS host."""

from __future__ import annotations

import datetime as dt
import io
import json
import time

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import func, select

from core.models import events, subscriptions, suppressions, webhook_events
from subscribers.store import add_subscriber
from subscribers.webhooks import PROVIDERS
from subscribers.webhooks.base import Malformed, nesting, parse_json
from subscribers.webhooks.sns_certs import fetch_wanted, trusted_cert_path, wanted
from tests.fakes.webhooks import CERT_URL, WebhookSigners, sns_certificate
from tests.test_web_helpers import csrf, login_as, make_app

HTTPS = {"base_url": "https://localhost"}
MB_OF_BRACKETS = b"[" * 1_000_000


@pytest.fixture
def signers(ctx, monkeypatch) -> WebhookSigners:
    s = WebhookSigners()
    for k, v in s.env().items():
        monkeypatch.setenv(k, v)
    s.pin_sns_cert(ctx)
    return s


@pytest.fixture
def client(ctx):
    return make_app(ctx).test_client()


def _state(ctx) -> tuple[int, ...]:
    """Everything a webhook may change, counted."""
    with ctx.engine.connect() as conn:
        counts = [conn.execute(select(func.count()).select_from(t)).scalar_one()
                  for t in (webhook_events, suppressions, events)]
        counts.append(conn.execute(select(func.count()).select_from(subscriptions).where(
            subscriptions.c.status == "unsubscribed")).scalar_one())
    return tuple(counts)


def _post(client, provider: str, request: tuple[dict[str, str], bytes]):
    headers, body = request
    return client.post(f"/webhooks/{provider}", data=body, headers=headers, **HTTPS)


def _sns_envelope(signers: WebhookSigners, **changes) -> bytes:
    _, body = signers.sign("ses", {"notificationType": "Bounce"})
    msg = json.loads(body)
    msg.update(changes)
    return json.dumps(msg).encode()


# --- the 13 requests of the issue, one test each -------------------------------------------

def _mailgun_with(signers, **signature) -> bytes:
    _, body = signers.sign("mailgun", {"event": "failed", "recipient": "a@example.com"})
    data = json.loads(body)
    data["signature"].update(signature)
    return json.dumps(data).encode()


CASES = {
    "mailgun-non-ascii-signature": (
        "mailgun", lambda s: ({}, _mailgun_with(s, signature="é" * 64)), 403),
    "mailgun-megabyte-of-brackets": ("mailgun", lambda s: ({}, MB_OF_BRACKETS), 400),
    "resend-non-ascii-signature": (
        "resend", lambda s: ({"svix-id": "msg_1", "svix-timestamp": "1",
                              "svix-signature": "v1,\xe9\xff\xfe"}, b"{}"), 403),
    "ses-cert-url-a-number": ("ses", lambda s: ({}, _sns_envelope(s, SigningCertURL=443)), 400),
    "ses-signature-a-number": ("ses", lambda s: ({}, _sns_envelope(s, Signature=12345)), 400),
    "ses-type-a-list": ("ses", lambda s: ({}, _sns_envelope(s, Type=["Notification"])), 400),
    "ses-megabyte-of-brackets": ("ses", lambda s: ({}, MB_OF_BRACKETS), 400),
    "sendgrid-signed-array-of-mixed-values": (
        "sendgrid", lambda s: s.sign("sendgrid", b'[1, "x", null, {"event": "bounce"}, []]'), 400),
    "resend-signed-array-of-mixed-values": (
        "resend", lambda s: s.sign("resend", b'[1, "x", null, {"type": "email.bounced"}]'), 400),
    "mailgun-signed-event-data-a-string": ("mailgun", lambda s: s.sign("mailgun", "failed"), 400),
    "mailgun-signed-event-data-a-list": (
        "mailgun", lambda s: s.sign("mailgun", [{"event": "failed"}, 3]), 400),
    "ses-signed-message-a-list": (
        "ses", lambda s: s.sign("ses", [{"notificationType": "Bounce"}, "x"]), 400),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_former_500s_are_4xx_and_change_nothing(ctx, client, signers, case):
    add_subscriber(ctx, "a@example.com")
    provider, build, status = CASES[case]
    before = _state(ctx)
    resp = _post(client, provider, build(signers))
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert resp.json["error"]
    assert _state(ctx) == before


def test_ses_unpinned_certificate_is_429_without_any_network(ctx, client, signers, monkeypatch):
    """The 13th: a certificate URL on the allowed host that is not cached. Offline, the
    request used to fetch it and fail with a 500; now nothing is fetched in the request."""
    import requests

    def no_network(*_a, **_k):
        raise AssertionError("a request must not touch the network")

    monkeypatch.setattr(requests, "get", no_network)
    monkeypatch.setattr(requests.Session, "request", no_network)
    other = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-new.pem"
    add_subscriber(ctx, "a@example.com")
    before = _state(ctx)
    resp = client.post("/webhooks/ses", data=_sns_envelope(signers, SigningCertURL=other))
    assert resp.status_code == 429 and resp.headers["Retry-After"] == "30"
    assert _state(ctx) == before and wanted(ctx) == [other]


# --- bounded parsing -------------------------------------------------------------------------

@pytest.mark.parametrize("text, depth", [
    ('{"a": [1, {"b": "[[[["}]}', 3), ('"\\"[[["', 0), ('["\\\\", [[]]]', 3),
    ("[" * 40 + "]" * 40, 33), ("1", 0), ('{"x": "\\u005b"}', 1), ("[[], [[[]]]]", 4)])
def test_nesting_is_counted_on_the_parsed_value(text, depth):
    assert nesting(json.loads(text)) == depth


def test_parse_json_bounds():
    assert parse_json(b'{"a": [[1]]}') == {"a": [[1]]}
    for bad in (b"[" * 10**6, b"\xff\xfe", b"NaN", b"[Infinity]", b"{",
                b"1" * 5000, b" " * (5 * 1024 * 1024)):
        with pytest.raises(Malformed):
            parse_json(bad)
    deep = b"[" * 32 + b"]" * 32
    assert parse_json(deep) is not None
    with pytest.raises(Malformed):
        parse_json(b"[" + deep + b"]")


# --- body limits ---------------------------------------------------------------------------

def test_webhook_and_form_bodies_have_their_own_limits(ctx, client, signers):
    big = b"x" * (ctx.config.webhooks.body_max_kb * 1024 + 1)
    for provider in PROVIDERS:
        resp = client.post(f"/webhooks/{provider}", data=big, **HTTPS)
        assert resp.status_code == 413 and resp.json["error"], provider
    token = csrf(client)
    form = {"email": "x@example.com", "consent": "yes", "csrf_token": token,
            "name": "n" * (ctx.config.web.form_max_kb * 1024)}
    assert client.post("/subscribe", data=form).status_code == 413
    assert client.post("/login", data={"email": "e" * 70_000, "password": "p"}).status_code == 413
    assert _state(ctx) == (0, 0, 0, 0)


def test_the_csv_import_keeps_its_larger_limit(ctx, client):
    login_as(client, ctx, "admin")
    rows = "".join(f"reader{i}@example.com,Reader {i}\n" for i in range(5000))
    csv = ("email,name\n" + rows).encode()
    assert len(csv) > ctx.config.web.form_max_kb * 1024
    resp = client.post("/desk/import", data={"csrf_token": csrf(client, "/desk/import"),
                                             "file": (io.BytesIO(csv), "r.csv")},
                       content_type="multipart/form-data")
    assert resp.status_code == 302 and "/desk/import/" in resp.headers["Location"]
    deadline = time.monotonic() + 60
    while "Finished" not in (page := client.get(resp.headers["Location"]).get_data(as_text=True)):
        assert time.monotonic() < deadline, "the import did not finish"
        time.sleep(0.1)
    assert "5000 added" in page


# --- SES certificates: fetched outside requests, cached only when they check out -----------

def test_certificates_are_cached_only_when_they_are_sns_certificates(ctx, client, signers):
    add_subscriber(ctx, "a@example.com")
    trusted_cert_path(ctx, CERT_URL).unlink()
    _, body = signers.hard_bounce("ses", "a@example.com")
    assert client.post("/webhooks/ses", data=body).status_code == 429
    assert wanted(ctx) == [CERT_URL]

    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    expired = sns_certificate(signers.sns, days=-2)
    for answer, reason in ((b"<html>200 OK, but a login page</html>", "certificate"),
                           (sns_certificate(other_key, name="evil.example.com"), "SNS host"),
                           (expired, "valid today"), (b"-----BEGIN" + b"x" * 20_000, "larger")):
        (result,) = fetch_wanted(ctx, fetch=lambda _url, a=answer: a)
        assert reason in (result.error or ""), result
        assert not trusted_cert_path(ctx, CERT_URL).exists()
        assert client.post("/webhooks/ses", data=body).status_code == 429  # asks again
    assert _state(ctx)[0] == 0

    (result,) = fetch_wanted(ctx, fetch=lambda _url: signers.sns_pem)
    assert result.error is None and trusted_cert_path(ctx, CERT_URL).exists()
    assert wanted(ctx) == []
    assert client.post("/webhooks/ses", data=body).status_code == 200
    with ctx.engine.connect() as conn:
        assert conn.execute(select(suppressions.c.reason)).scalar() == "bounced"


def test_a_network_failure_in_the_background_step_caches_nothing(ctx, client, signers):
    trusted_cert_path(ctx, CERT_URL).unlink()
    _, body = signers.hard_bounce("ses", "a@example.com")
    client.post("/webhooks/ses", data=body)

    def offline(_url: str) -> bytes:
        raise ConnectionError("no route to host")

    (result,) = fetch_wanted(ctx, fetch=offline)
    assert "no route" in (result.error or "") and not trusted_cert_path(ctx, CERT_URL).exists()


def test_untrusted_certificate_urls_are_never_queued(ctx, client, signers):
    for url in ("http://sns.us-east-1.amazonaws.com/x.pem", "https://evil.example.com/x.pem",
                "https://sns.us-east-1.amazonaws.com:8443/x.pem",
                "https://sns.us-east-1.amazonaws.com/x.pem?u=1", "https://[::1/x.pem",
                "https://sns.us-east-1.amazonaws.com.evil.com/x.pem"):
        resp = client.post("/webhooks/ses", data=_sns_envelope(signers, SigningCertURL=url))
        assert resp.status_code == 403, url
    assert wanted(ctx) == []


def test_stale_sns_message_is_refused(ctx, client, signers):
    old = dt.datetime.now(dt.UTC) - dt.timedelta(hours=3)
    headers, body = signers._sign_ses({"notificationType": "Bounce"}, when=old)
    assert client.post("/webhooks/ses", data=body, headers=headers).status_code == 403


def test_nul_characters_in_forms_are_400_not_a_database_error(ctx, client):
    """Found by the property test on PostgreSQL (which cannot store NUL): was a 500."""
    token = csrf(client)
    for route, form in (("/subscribe", {"email": "a@example.com", "name": "x\x00y",
                                        "consent": "yes"}),
                        ("/login", {"email": "a\x00@example.com", "password": "p"}),
                        ("/manage", {"email": "a\x00@example.com"})):
        assert client.post(route, data={**form, "csrf_token": token}).status_code == 400, route
    assert client.get("/", headers={"User-Agent": "x\x00"}).status_code == 400
    assert _state(ctx) == (0, 0, 0, 0)


def test_an_unreadable_pinned_certificate_is_refused_not_a_500(ctx, client, signers):
    trusted_cert_path(ctx, CERT_URL).write_bytes(b"not a certificate")
    _, body = signers.hard_bounce("ses", "a@example.com")
    assert client.post("/webhooks/ses", data=body).status_code == 403
