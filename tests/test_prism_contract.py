"""Contract tests: each HTTP provider client sends real batches to Prism serving that
provider's published API description (../shared/provider-specs/), and every request
must validate (Prism answers 4xx with an `sl-violations` header when it does not).

Prism (`@stoplight/prism-cli` 5.14.2, `make node`) starts once per module, one process
per spec, in parallel.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from email.message import EmailMessage
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from core.config import PROJECT_ROOT
from core.models import deliveries
from pipeline.compose.issues import get_issue
from pipeline.deliver.engine import load_variants, recipients_for
from pipeline.deliver.transports import get_transport
from pipeline.deliver.transports.base import UnknownOutcome
from subscribers.links import Linker
from tests.conftest import REQUIRE_TOOLS
from tests.fakes.issue import make_issue

SPECS = PROJECT_ROOT.parent / "shared" / "provider-specs"
SPEC_FILES = {"postmark": "postmark/server.oas3.yml", "sendgrid": "sendgrid/tsg_mail_v3.yaml",
              "mailgun": "mailgun/openapi.prism-patched.yaml", "resend": "resend/resend.yaml"}
PRISM = PROJECT_ROOT / "node_modules" / ".bin" / "prism"
pytestmark = pytest.mark.xdist_group("prism")  # one worker starts the mocks, once


def _need(path: Path, what: str) -> None:
    if path.exists():
        return
    if REQUIRE_TOOLS:
        pytest.fail(f"{what} is missing ({path}); `make node` / .ci/run should provide it")
    pytest.skip(f"{what} is missing ({path})")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen, deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"prism exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"prism did not listen on {port}")


@pytest.fixture(scope="module")
def prism(tmp_path_factory):
    _need(PRISM, "Prism")
    _need(SPECS, "the provider specs")
    logs = tmp_path_factory.mktemp("prism")
    procs: dict[str, tuple[subprocess.Popen, int]] = {}
    try:
        for kind, spec in SPEC_FILES.items():
            port = _free_port()
            log = (logs / f"{kind}.log").open("wb")
            procs[kind] = (subprocess.Popen([str(PRISM), "mock", "-h", "127.0.0.1", "-p", str(port),
                                             str(SPECS / spec)], stdout=log, stderr=subprocess.STDOUT), port)
            log.close()
        deadline = time.monotonic() + 240  # a loaded 2-core machine starts Node slowly
        for p, port in procs.values():
            _wait_port(port, p, deadline)
        yield {k: f"http://127.0.0.1:{port}" for k, (_p, port) in procs.items()}
    finally:
        for p, _port in procs.values():
            p.terminate()
        for p, _port in procs.values():
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@pytest.fixture
def db_url(tmp_path):
    """The contract is about HTTP: SQLite is enough (overrides the two-database fixture)."""
    return f"sqlite:///{tmp_path / 'kpdigest.db'}"


def _transport(make_ctx, monkeypatch, kind: str, base: str):
    for var in ("POSTMARK_TOKEN", "SENDGRID_API_KEY", "MAILGUN_API_KEY", "RESEND_API_KEY"):
        monkeypatch.setenv(f"KPDIGEST_{var}", "test-key")
    ctx = make_ctx(transport={"name": kind, kind: {"base_url": base, "timeout": 30}})
    transport = get_transport(ctx.config)
    seen: list[requests.Response] = []
    transport.session.hooks["response"].append(lambda r, *a, **k: seen.append(r))
    return ctx, transport, seen


def _valid(resp: requests.Response) -> None:
    assert "sl-violations" not in resp.headers, resp.headers.get("sl-violations")
    assert 200 <= resp.status_code < 300, (resp.status_code, resp.text[:500])


@pytest.mark.parametrize("kind", list(SPEC_FILES))
def test_batches_validate_against_the_provider_spec(prism, make_ctx, monkeypatch, kind):
    ctx, transport, seen = _transport(make_ctx, monkeypatch, kind, prism[kind])
    number = make_issue(ctx, 7)
    with ctx.engine.connect() as conn:
        issue = get_issue(conn, number)
        rows = conn.execute(select(deliveries).where(deliveries.c.issue_id == issue.id)).all()
    variant = load_variants(ctx, issue)[""]
    recipients = recipients_for(Linker(ctx.config.site.base_url, "k", issue.frozen_at), rows)
    recipients[0].name = 'Zoë "Z" O\'Neil, <KP>'  # quoting, commas, non-ASCII
    try:
        outcomes = transport.send_batch(variant, recipients, "contract-batch-1")
        assert len(outcomes) == len(recipients)
    except UnknownOutcome:
        assert kind == "postmark"  # Prism's generated answer need not list every message
    assert len(seen) == 1
    _valid(seen[0])
    transport.close()


@pytest.mark.parametrize("kind", list(SPEC_FILES))
def test_single_messages_validate_against_the_provider_spec(prism, make_ctx, monkeypatch, kind):
    _ctx, transport, seen = _transport(make_ctx, monkeypatch, kind, prism[kind])
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = "Digest <digest@example.com>", "ann@example.org", "Confirm"
    m.set_content("Please confirm your subscription.")
    m.add_alternative("<p>Please confirm your subscription.</p>", subtype="html")
    with contextlib.suppress(Exception):  # the mock's answer may lack an id; the request matters
        transport.send_single(m)
    assert len(seen) == 1
    _valid(seen[0])
    transport.close()


def test_the_mock_does_reject_a_request_off_the_contract(prism):
    """Proof the contract has teeth: Postmark's `To` as an array is refused."""
    bad = [{"From": "a@example.com", "To": ["b@x.org"]}]
    resp = requests.post(prism["postmark"] + "/email/batch", json=bad,
                         headers={"X-Postmark-Server-Token": "k"}, timeout=30)
    assert resp.status_code == 422 and "sl-violations" in resp.headers


@pytest.mark.parametrize("kind", ["postmark", "mailgun"])
def test_reconcile_searches_validate_against_the_provider_spec(prism, make_ctx, monkeypatch, kind):
    """Postmark's outbound message search and Mailgun's events API, as `issue reconcile`
    calls them."""
    ctx, transport, seen = _transport(make_ctx, monkeypatch, kind, prism[kind])
    number = make_issue(ctx, 2)
    with ctx.engine.connect() as conn:
        issue = get_issue(conn, number)
        rows = conn.execute(select(deliveries.c.id, deliveries.c.email)
                            .where(deliveries.c.issue_id == issue.id)).all()
    found = transport.lookup(number, rows)
    assert isinstance(found, dict)  # the mock's example data need not name our rows
    assert len(seen) == 2
    for resp in seen:
        _valid(resp)
    transport.close()


@pytest.mark.parametrize(("kind", "code"), [("sendgrid", "401"), ("sendgrid", "403"),
                                             ("mailgun", "401")])
def test_a_declared_auth_refusal_is_an_account_error(prism, make_ctx, monkeypatch, kind, code):
    """Where the spec defines the answer to a bad key, it stops the issue (no retry, no
    per-recipient failure)."""
    from core.errors import AccountError

    ctx, transport, seen = _transport(make_ctx, monkeypatch, kind, prism[kind])
    transport.session.headers["Prefer"] = f"code={code}"
    number = make_issue(ctx, 2)
    with ctx.engine.connect() as conn:
        issue = get_issue(conn, number)
        rows = conn.execute(select(deliveries).where(deliveries.c.issue_id == issue.id)).all()
    variant = load_variants(ctx, issue)[""]
    recipients = recipients_for(Linker(ctx.config.site.base_url, "k", issue.frozen_at), rows)
    with pytest.raises(AccountError, match=f"HTTP {code}"):
        transport.send_batch(variant, recipients, "contract-batch-2")
    assert seen[0].status_code == int(code) and "sl-violations" not in seen[0].headers
    transport.close()
