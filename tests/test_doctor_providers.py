"""The doctor's provider calls: contract-tested in Prism against each provider's published
spec where it has the call (Postmark `GET /server`, Mailgun `GET /v4/domains/{name}`,
Resend `GET /domains`), and SendGrid's domain-authentication list (absent from its spec)
against a loopback fake that answers as SendGrid documents it."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from core.states import FindingLevel
from pipeline.deliver.doctor.domain import Passes
from pipeline.deliver.doctor.providers import check_provider
from pipeline.deliver.doctor.report import DoctorReport
from tests.golden import fixed_issue
from tests.test_prism_contract import PRISM, SPECS, _free_port, _need, _wait_port

SPEC_FILES = {
    "postmark": "postmark/server.oas3.yml",
    "mailgun": "mailgun/openapi.prism-patched.yaml",
    "resend": "resend/resend.yaml",
}
pytestmark = pytest.mark.xdist_group("prism")


@pytest.fixture(scope="module")
def prism(tmp_path_factory) -> Iterator[dict[str, str]]:
    _need(PRISM, "Prism")
    _need(SPECS, "the provider specs")
    logs = tmp_path_factory.mktemp("prism-doctor")
    procs: dict[str, tuple[subprocess.Popen, int]] = {}
    try:
        for kind, spec in SPEC_FILES.items():
            port = _free_port()
            with (logs / f"{kind}.log").open("wb") as log:
                procs[kind] = (
                    subprocess.Popen(
                        [str(PRISM), "mock", "-h", "127.0.0.1", "-p", str(port), str(SPECS / spec)],
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    ),
                    port,
                )
        deadline = time.monotonic() + 90
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


def _run(kind: str, base: str, **opts: Any) -> tuple[DoctorReport, Passes, list[requests.Response]]:
    cfg = fixed_issue.config(transport={"name": kind, kind: {"base_url": base, **opts}})
    report, passes = DoctorReport(cfg.sender.domain, kind), Passes()
    session = requests.Session()
    seen: list[requests.Response] = []
    session.hooks["response"].append(lambda r, *a, **k: seen.append(r))
    check_provider(cfg, report, passes, session)
    return report, passes, seen


EXPECTED = {
    "postmark": (FindingLevel.OK, "postmark accepted the server token"),
    "mailgun": (
        FindingLevel.OK,
        "mailgun has mg.example.com verified: it signs DKIM with d=mg.example.com",
    ),
    # Prism's answer: example.com, in the spec's first status (not "verified")
    "resend": (FindingLevel.FAIL, "resend does not have example.com verified (status "),
}


@pytest.mark.parametrize("kind", list(SPEC_FILES))
def test_provider_calls_validate_against_the_spec(prism, monkeypatch, kind):
    for var in ("POSTMARK_TOKEN", "MAILGUN_API_KEY", "RESEND_API_KEY"):
        monkeypatch.setenv(f"KPDIGEST_{var}", "test-key")
    opts = {"domain": "mg.example.com"} if kind == "mailgun" else {}
    report, _passes, seen = _run(kind, prism[kind], **opts)
    assert len(seen) == 1
    # Our request must satisfy the spec; Prism also flags its own example answers (Mailgun's
    # misses required fields of its schema), which is the spec's business, not ours.
    violations = json.loads(seen[0].headers.get("sl-violations", "[]"))
    assert [v for v in violations if v["location"][0] == "request"] == []
    assert 200 <= seen[0].status_code < 300, (seen[0].status_code, seen[0].text[:300])
    level, message = EXPECTED[kind]
    assert any(f.level == level and f.message.startswith(message) for f in report.findings), [
        f.line() for f in report.findings
    ]


def test_missing_credentials_are_a_failure_without_a_call(monkeypatch):
    monkeypatch.delenv("KPDIGEST_RESEND_API_KEY", raising=False)
    report, _passes, seen = _run("resend", "http://127.0.0.1:9")
    assert seen == []
    assert [f.message for f in report.findings] == ["KPDIGEST_RESEND_API_KEY is not set"]


@pytest.fixture
def sendgrid() -> Iterator[tuple[str, dict[str, Any]]]:
    state: dict[str, Any] = {"domains": [], "asked": []}

    class H(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state["asked"].append(self.path)
            ok = self.headers.get("Authorization") == "Bearer SG.good"
            body = json.dumps(
                state["domains"] if ok else {"errors": [{"message": "authorization required"}]}
            )
            self.send_response(200 if ok else 401)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, *a: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", state
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize(
    ("key", "domains", "level", "message"),
    [
        (
            "SG.good",
            [{"domain": "example.com", "valid": True}],
            FindingLevel.OK,
            "sendgrid has example.com verified",
        ),
        (
            "SG.good",
            [{"domain": "example.com", "valid": False}],
            FindingLevel.FAIL,
            "sendgrid does not have example.com verified (DNS records not valid yet)",
        ),
        (
            "SG.good",
            [],
            FindingLevel.FAIL,
            "sendgrid does not have example.com verified (not authenticated)",
        ),
        ("SG.bad", [], FindingLevel.FAIL, "sendgrid refused the credentials (HTTP 401"),
    ],
)
def test_sendgrid_domain_authentication(sendgrid, monkeypatch, key, domains, level, message):
    base, state = sendgrid
    state["domains"] = domains
    monkeypatch.setenv("KPDIGEST_SENDGRID_API_KEY", key)
    report, passes, _seen = _run("sendgrid", base)
    assert state["asked"] == ["/v3/whitelabel/domains?domain=example.com"]
    (f,) = report.findings
    assert f.level == level and f.message.startswith(message), f.line()
    assert passes.dkim_domains == (("example.com",) if level == FindingLevel.OK else ())
