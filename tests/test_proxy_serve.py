"""`kpdigest serve` as a real process behind nginx (the site in docs/web.md, as written but
for ports and certificate paths), over HTTPS on loopback.

Clients connect from different loopback addresses (127.0.0.2, .3, ...), so the proxy sees
different peers the way it sees different readers: the sign-up limit counts per address,
the consent evidence records the reader's address, and Postmark's basic auth works over
the forwarded https. A genuine event from each of the five providers suppresses its
address; forged, replayed and malformed ones get 4xx and change nothing.
"""

from __future__ import annotations

import datetime as dt
import http.client
import ipaddress
import json
import os
import re
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path
from urllib.parse import urlencode

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import func, select

from core.config import PROJECT_ROOT, load_config
from core.models import events, subscriptions, suppressions, webhook_events
from subscribers.store import add_subscriber
from tests.conftest import require_tool
from tests.fakes.webhooks import PROVIDERS, WebhookSigners
from web.server import waitress_options

pytestmark = pytest.mark.slow
DEADLINE = 60.0
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode}: {log.read_text(errors='replace')}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"port {port} did not open: {log.read_text(errors='replace')}")


def _certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (the client trusts exactly this one)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=2))
            .add_extension(san, critical=False).sign(key, hashes.SHA256()))
    crt, pem = folder / "site.crt", folder / "site.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    return crt, pem


def nginx_site_from_docs() -> str:
    doc = (PROJECT_ROOT / "docs" / "web.md").read_text(encoding="utf-8")
    (site,) = re.findall(r"```nginx\n(.*?)```", doc, re.S)
    return site


def _nginx_conf(folder: Path, port: int, upstream: int, crt: Path, key: Path) -> Path:
    site = nginx_site_from_docs()
    for old, new in (("listen 443 ssl;", f"listen 127.0.0.1:{port} ssl;"),
                     ("/etc/letsencrypt/live/digest.example.com/fullchain.pem", str(crt)),
                     ("/etc/letsencrypt/live/digest.example.com/privkey.pem", str(key)),
                     ("http://127.0.0.1:8000", f"http://127.0.0.1:{upstream}")):
        assert old in site, f"the docs' nginx site no longer has {old!r}"
        site = site.replace(old, new)
    temp = "\n".join(f"    {kind}_temp_path {folder / kind};"
                     for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf = folder / "nginx.conf"
    conf.write_text(f"daemon off;\nmaster_process off;\npid {folder / 'nginx.pid'};\n"
                    f"error_log {folder / 'error.log'} warn;\nevents {{}}\n"
                    f"http {{\n    access_log off;\n{temp}\n{site}\n}}\n")
    return conf


@dataclass
class Answer:
    status: int
    body: str
    headers: dict[str, str]


class Reader:
    """An HTTPS client on its own loopback address, with its own cookies."""

    def __init__(self, port: int, cafile: Path, source: str) -> None:
        self.port, self.source = port, source
        self.tls = ssl.create_default_context(cafile=str(cafile))
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, body: bytes = b"",
                headers: dict[str, str] | None = None) -> Answer:
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.tls,
                                           source_address=(self.source, 0), timeout=30)
        sent = dict(headers or {})
        if self.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        try:
            conn.request(method, path, body=body, headers=sent)
            resp = conn.getresponse()
            text = resp.read().decode("utf-8", "replace")
            for value in resp.headers.get_all("Set-Cookie") or []:
                jar = SimpleCookie()
                jar.load(value)
                self.cookies.update({k: m.value for k, m in jar.items()})
            return Answer(resp.status, text, dict(resp.headers))
        finally:
            conn.close()

    def sign_up(self, email: str, spoof: str | None = None) -> Answer:
        token = CSRF_RE.search(self.request("GET", "/").body)
        assert token, "no CSRF field on the sign-up page"
        form = urlencode({"email": email, "name": "Reader", "consent": "yes",
                          "csrf_token": token.group(1)}).encode()
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if spoof:
            headers["X-Forwarded-For"] = spoof
        return self.request("POST", "/subscribe", form, headers)


@pytest.fixture
def served(make_ctx, tmp_path):
    """nginx on an HTTPS port in front of `kpdigest serve`, both real processes."""
    nginx = require_tool("nginx")
    ctx = make_ctx()
    config = Path(ctx.config.source or "")
    text = config.read_text(encoding="utf-8")
    text = text.replace("trusted_proxies = 0 ", "trusted_proxies = 1 ")
    text = text.replace("subscribe_rate_per_hour = 10 ", "subscribe_rate_per_hour = 2 ")
    config.write_text(text, encoding="utf-8")
    assert load_config(config).web.trusted_proxies == 1
    signers = WebhookSigners()
    signers.pin_sns_cert(ctx)
    app_port, proxy_port = _free_port(), _free_port()
    env = {**os.environ, **signers.env(), "KPDIGEST_CONFIG": str(config),
           "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), os.environ.get("PYTHONPATH", "")])}
    log = tmp_path / "serve.log"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        with log.open("wb") as out:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "kpdigest", "serve", "--host", "127.0.0.1",
                 "--port", str(app_port)], env=env, cwd=tmp_path, stdout=out, stderr=out))
        _wait_port(app_port, procs[0], log)
        crt, key = _certificate(tmp_path)
        conf = _nginx_conf(tmp_path, proxy_port, app_port, crt, key)
        procs.append(subprocess.Popen([nginx, "-p", str(tmp_path), "-c", str(conf)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        _wait_port(proxy_port, procs[1], tmp_path / "error.log")
        yield ctx, signers, (lambda source: Reader(proxy_port, crt, source)), app_port, log
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=DEADLINE)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _forged(signers: WebhookSigners, provider: str) -> tuple[dict[str, str], bytes]:
    """A hard bounce for one@example.com, forged the way each provider's check must catch."""
    headers, body = signers.hard_bounce(provider, "one@example.com")
    if provider == "postmark":  # basic auth: a guessed password
        return {**headers, "Authorization": "Basic cG0tdXNlcjpndWVzcw=="}, body
    if provider == "mailgun":  # the signature covers timestamp + token: change the token
        data = json.loads(body)
        data["signature"]["token"] = "f" * 50
        return headers, json.dumps(data).encode()
    return headers, body.replace(b"one@example.com", b"two@example.com")  # a signed body


def _state(ctx) -> tuple[int, ...]:
    with ctx.engine.connect() as conn:
        counts = [conn.execute(select(func.count()).select_from(t)).scalar_one()
                  for t in (webhook_events, suppressions, events)]
        counts.append(conn.execute(select(func.count()).select_from(subscriptions).where(
            subscriptions.c.status == "unsubscribed")).scalar_one())
    return tuple(counts)


def test_serve_behind_nginx_addresses_scheme_and_every_provider(served):
    ctx, signers, reader, _app_port, log = served
    assert "behind 1 trusted proxy(ies) at 127.0.0.1" in log.read_text()

    # Sign-ups: the limit (2 an hour) counts each reader's own address, and the consent
    # evidence records it, whatever X-Forwarded-For the reader sends.
    first, second = reader("127.0.0.2"), reader("127.0.0.3")
    assert first.sign_up("one@example.com", spoof="203.0.113.9").status == 200
    assert first.sign_up("two@example.com").status == 200
    assert first.sign_up("three@example.com").status == 429
    assert second.sign_up("four@example.com").status == 200
    deadline = time.monotonic() + 60  # the lane records sign-ups in serve's own thread
    while True:
        with ctx.engine.connect() as conn:
            ips = sorted(conn.execute(select(subscriptions.c.consent_ip)).scalars())
        if len(ips) >= 3 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert ips == ["127.0.0.2", "127.0.0.2", "127.0.0.3"]

    # A genuine hard bounce from each provider, through the proxy, suppresses its address.
    people = {p: f"{p}-reader@example.com" for p in PROVIDERS}
    for addr in people.values():
        add_subscriber(ctx, addr)
    hook = reader("127.0.0.4")
    for p, addr in people.items():
        headers, body = signers.hard_bounce(p, addr)
        answer = hook.request("POST", f"/webhooks/{p}", body, headers)
        assert answer.status == 200, (p, answer.body)
        assert json.loads(answer.body)["stored"] >= 1
    with ctx.engine.connect() as conn:
        found = dict(conn.execute(select(suppressions.c.email, suppressions.c.reason)).all())
    assert found == {addr: "bounced" for addr in people.values()}

    # Replayed, forged and malformed requests: 4xx (or a stored duplicate), no change.
    sent = {p: signers.hard_bounce(p, people[p]) for p in PROVIDERS}
    for p, (headers, body) in sent.items():
        assert hook.request("POST", f"/webhooks/{p}", body, headers).status == 200, p
    before = _state(ctx)
    for p, (headers, body) in sent.items():
        again = hook.request("POST", f"/webhooks/{p}", body, headers)
        if p in ("sendgrid", "mailgun", "resend"):  # a signature or token is accepted once
            assert again.status == 403, (p, again.body)
        else:  # Postmark and SNS sign nothing per attempt: a replay is a stored duplicate
            assert again.status == 200 and json.loads(again.body)["duplicates"] >= 1, p
    for p in PROVIDERS:
        headers, body = _forged(signers, p)
        answer = hook.request("POST", f"/webhooks/{p}", body, headers)
        assert answer.status in (401, 403), (p, answer.status, answer.body)
        malformed = hook.request("POST", f"/webhooks/{p}", b"[" * 5000, headers)
        assert 400 <= malformed.status < 500, p
    assert _state(ctx) == before
    too_big = b"x" * (ctx.config.webhooks.body_max_kb * 1024 + 1)
    assert hook.request("POST", "/webhooks/sendgrid", too_big).status == 413


def test_without_the_proxy_nothing_forwarded_is_trusted(served):
    """A peer that is not the proxy (here 127.0.0.5 straight to waitress) cannot claim https
    or another address."""
    ctx, signers, _reader, app_port, _log = served
    headers, body = signers.hard_bounce("postmark", "direct@example.com")
    conn = http.client.HTTPConnection("127.0.0.1", app_port, source_address=("127.0.0.5", 0),
                                      timeout=30)
    try:
        conn.request("POST", "/webhooks/postmark", body=body,
                     headers={**headers, "X-Forwarded-Proto": "https",
                              "X-Forwarded-For": "127.0.0.1"})
        resp = conn.getresponse()
        answer = resp.status, resp.read()
    finally:
        conn.close()
    assert answer[0] == 403 and b"HTTPS" in answer[1]
    assert _state(ctx) == (0, 0, 0, 0)


def test_waitress_trusts_headers_only_with_a_proxy(tmp_path):
    cfg = load_config(overrides={"web": {"trusted_proxies": 0}})
    assert "trusted_proxy" not in waitress_options(cfg)
    assert waitress_options(cfg)["clear_untrusted_proxy_headers"] is True
    cfg = load_config(overrides={"web": {"trusted_proxies": 2, "proxy_address": "10.0.0.7"}})
    options = waitress_options(cfg)
    assert (options["trusted_proxy"], options["trusted_proxy_count"]) == ("10.0.0.7", 2)
    assert options["trusted_proxy_headers"] == {"x-forwarded-for", "x-forwarded-proto",
                                                "x-forwarded-host"}
