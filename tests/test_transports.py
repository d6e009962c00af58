"""What each HTTP transport puts on the wire, checked by doing what the provider does:
per-message bodies must equal our own per-recipient rendering; recipient-variables and
substitution bodies, once the provider substitutes, must equal it too."""

from __future__ import annotations

import html
import json

import pytest
from sqlalchemy import select

from core.errors import ConfigError
from core.models import deliveries
from pipeline.compose.issues import get_issue
from pipeline.deliver.engine import load_variants, recipients_for
from pipeline.deliver.transports import get_transport
from subscribers.links import Linker
from tests.fakes.issue import make_issue
from tests.fakes.providers import FakeProvider, parse_form

ODD_NAME = 'Zoë "Z" O\'Neil & <KP>'


@pytest.fixture
def db_url(tmp_path):
    """Wire formats do not depend on the database: SQLite only."""
    return f"sqlite:///{tmp_path / 'kpdigest.db'}"


def _batch(make_ctx, monkeypatch, kind, n=3):
    for var in ("POSTMARK_TOKEN", "SENDGRID_API_KEY", "MAILGUN_API_KEY", "RESEND_API_KEY"):
        monkeypatch.setenv(f"KPDIGEST_{var}", "test-key")
    fake = FakeProvider(kind)
    ctx = make_ctx(transport={"name": kind, kind: {"base_url": fake.base, "domain": "mg.example.com"}})
    number = make_issue(ctx, n)
    with ctx.engine.connect() as conn:
        issue = get_issue(conn, number)
        rows = conn.execute(select(deliveries).where(deliveries.c.issue_id == issue.id)
                            .order_by(deliveries.c.id)).all()
    variant = load_variants(ctx, issue)[""]
    recipients = recipients_for(Linker(ctx.config.site.base_url, "k", issue.frozen_at), rows)
    recipients[0].name = ODD_NAME
    return fake, get_transport(ctx.config), variant, recipients


@pytest.mark.parametrize("kind", ["postmark", "resend"])
def test_per_message_bodies_equal_our_rendering(make_ctx, monkeypatch, kind):
    fake, t, variant, recipients = _batch(make_ctx, monkeypatch, kind)
    try:
        outcomes = t.send_batch(variant, recipients, "key-1")
        assert [o.state for o in outcomes] == ["sent"] * 3
        req = fake.requests[0]
        messages = json.loads(req["body"])
        html_key, text_key = ("HtmlBody", "TextBody") if kind == "postmark" else ("html", "text")
        for m, r in zip(messages, recipients, strict=True):
            assert m[html_key] == variant.html_for(r) and m[text_key] == variant.text_for(r)
            headers = m["Headers"] if kind == "postmark" else [{"Name": k, "Value": v}
                                                                for k, v in m["headers"].items()]
            assert {"Name": "List-Unsubscribe", "Value": f"<{r.unsubscribe_url}>"} in headers
        assert html.escape(ODD_NAME) in messages[0][html_key]
        if kind == "postmark":
            assert messages[1]["Metadata"]["delivery_id"] == str(recipients[1].delivery_id)
            assert messages[0]["MessageStream"] == "broadcast"
            assert req["headers"]["X-Postmark-Server-Token"] == "test-key"
        else:
            assert req["headers"]["Idempotency-Key"] == "kpd-key-1"
            assert {"name": "delivery_id", "value": str(recipients[2].delivery_id)} in messages[2]["tags"]
    finally:
        t.close()
        fake.close()


def test_mailgun_body_once_with_recipient_variables(make_ctx, monkeypatch):
    fake, t, variant, recipients = _batch(make_ctx, monkeypatch, "mailgun")
    try:
        t.send_batch(variant, recipients, "key-1")
        req = fake.requests[0]
        assert req["path"] == "/v3/mg.example.com/messages"
        form = parse_form(req["body"], req["headers"]["Content-Type"])
        assert len(form["html"]) == 1 and len(form["to"]) == 3
        rvars = json.loads(form["recipient-variables"][0])
        for r in recipients:  # do what Mailgun does, then compare
            mine = rvars[r.email]
            body = form["html"][0]
            text = form["text"][0]
            for k, v in mine.items():
                body = body.replace(f"%recipient.{k}%", v)
                text = text.replace(f"%recipient.{k}%", v)
            assert body == variant.html_for(r) and text == variant.text_for(r)
            assert mine["delivery_id"] == str(r.delivery_id)
            assert mine["list_unsubscribe"] == f"<{r.unsubscribe_url}>"
        assert form["h:List-Unsubscribe"] == ["%recipient.list_unsubscribe%"]
        assert form["v:delivery_id"] == ["%recipient.delivery_id%"]
    finally:
        t.close()
        fake.close()


def _reference_rvars(variant, recipients):
    """recipient-variables as json.dumps writes the straightforward per-recipient dicts."""
    rvars = {}
    for r in recipients:
        values = r.values()
        v = {f"{f}_t": values[f] for f in variant.text.fields}
        v.update({f"{f}_h": html.escape(values[f]) for f in variant.html.fields})
        v["delivery_id"] = str(r.delivery_id)
        v["list_unsubscribe"] = variant.list_unsubscribe(r)
        rvars[r.email] = v
    return json.dumps(rvars, ensure_ascii=False, separators=(",", ":"))


NAMES = ["", "Ann", ODD_NAME, " padded ", "ctl\x00\u2028\x85 x", "\u3000wide", "b\\s {x}"]


@pytest.mark.parametrize("name", NAMES)
def test_mailgun_recipient_variables_are_the_json_of_each_recipients_values(make_ctx, monkeypatch, name):
    from pipeline.compose.message import Recipient
    from pipeline.compose.personalize import FIELDS, token
    from pipeline.compose.prepare import PreparedVariant

    fake, t, real, _ = _batch(make_ctx, monkeypatch, "mailgun", n=1)
    every = " ".join(token(real.key, f) for f in FIELDS)  # a template using every field
    full = PreparedVariant(real.cfg, real.issue_id, real.number, "all", real.key, real.subject,
                           f"<p>{every}</p>", every)
    u = "https://d.example/u/"
    people = [Recipient(1, "ann@example.com", name, f"{u}MQ.x?a=1&b=<2>", f"{u}MQ.y"),
              Recipient(2, "o'neil&co@exämple.de", name, f"{u}Mg.y", f"{u}\x01 "),
              Recipient(3, "ann@example.com", "again", f"{u}Mw.z", f"{u}Mw.z")]  # the last one wins
    try:
        for variant in (real, full):
            assert t.rvars.get(variant).encode(people) == _reference_rvars(variant, people)
    finally:
        t.close()
        fake.close()


def test_sendgrid_body_once_with_substitutions(make_ctx, monkeypatch):
    fake, t, variant, recipients = _batch(make_ctx, monkeypatch, "sendgrid")
    try:
        outcomes = t.send_batch(variant, recipients, "key-1")
        assert all(o.provider_message_id for o in outcomes)
        payload = json.loads(fake.requests[0]["body"])
        text, body = (c["value"] for c in payload["content"])
        for p, r in zip(payload["personalizations"], recipients, strict=True):
            b, x = body, text
            for k, v in p["substitutions"].items():
                b, x = b.replace(k, v), x.replace(k, v)
            assert b == variant.html_for(r) and x == variant.text_for(r)
            assert p["custom_args"]["delivery_id"] == str(r.delivery_id)
            assert p["headers"]["List-Unsubscribe"] == f"<{r.unsubscribe_url}>"
        assert fake.requests[0]["headers"]["Authorization"] == "Bearer test-key"
    finally:
        t.close()
        fake.close()


def test_missing_secret_names_its_variable(make_ctx, monkeypatch):
    from pipeline.deliver.engine import send_issue

    monkeypatch.delenv("KPDIGEST_POSTMARK_TOKEN", raising=False)
    fake = FakeProvider("postmark")
    ctx = make_ctx(transport={"name": "postmark", "postmark": {"base_url": fake.base}})
    number = make_issue(ctx, 2)
    with pytest.raises(ConfigError, match="KPDIGEST_POSTMARK_TOKEN"):
        send_issue(ctx, number, force=True)
    with ctx.engine.connect() as conn:  # nothing handed over, nothing lost: all still queued
        states = conn.execute(select(deliveries.c.state)).scalars().all()
    assert states == ["queued", "queued"] and not fake.requests
    fake.close()


def test_every_transport_states_its_contract(make_ctx):
    import importlib

    per_recipient, idempotent = set(), set()
    for name in ("outbox", "smtp", "postmark", "sendgrid", "mailgun", "resend", "ses"):
        cls = importlib.import_module(f"pipeline.deliver.transports.{name}").TRANSPORT
        assert cls.name == name and cls.max_batch >= 1 and cls.rate_limit_signal
        per_recipient |= {name} if cls.recipient_variables else set()
        idempotent |= {name} if cls.idempotent else set()
    assert per_recipient == {"sendgrid", "mailgun"} and idempotent == {"outbox", "resend"}
