"""The SMTP transport against a real SMTP server on 127.0.0.1 (aiosmtpd): STARTTLS with a
self-signed certificate, login, connections reused, per-recipient replies (5xx fails,
4xx retries) and a connection dropped after the server took a message."""

from __future__ import annotations

import email
import email.policy
import socket
import ssl
import subprocess
from collections import Counter

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from tests.conftest import require_tool
from tests.fakes.issue import emails, make_issue

pytest.importorskip("aiosmtpd")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Recorder:
    """Takes messages; refuses or drops some on cue."""

    def __init__(self, refuse: dict[str, str], drop_after: set[str]) -> None:
        self.refuse, self.drop_after = refuse, drop_after
        self.messages: list[tuple[list[str], bytes]] = []
        self.logins = 0
        self.seen: Counter[str] = Counter()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        self.seen[address] += 1
        reply = self.refuse.get(address)
        if reply and not (reply.startswith("451") and self.seen[address] > 1):
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((list(envelope.rcpt_tos), envelope.content))
        if set(envelope.rcpt_tos) & self.drop_after:
            self.drop_after.clear()
            server.transport.close()  # accepted, but the client never hears so
            return "250 queued"
        return "250 Message accepted"

    def auth(self, server, session, envelope, mechanism, auth_data):
        self.logins += 1
        return AuthResult(success=auth_data.login == b"digest" and auth_data.password == b"pw")


@pytest.fixture
def smtp_server(tmp_path):
    require_tool("openssl")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                    "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"],
                   check=True, capture_output=True)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    e = emails(12)
    handler = Recorder(refuse={e[1]: "550 5.1.1 no such user", e[2]: "451 4.7.1 try later"},
                       drop_after={e[7]})
    port = _free_port()
    ctl = Controller(handler, hostname="127.0.0.1", port=port, tls_context=tls, require_starttls=True,
                     authenticator=handler.auth, auth_required=True)
    ctl.start()
    yield handler, port
    ctl.stop()


def test_smtp_starttls_login_reuse_and_per_recipient_replies(make_ctx, monkeypatch, smtp_server):
    from pipeline.deliver.engine import send_issue

    handler, port = smtp_server
    monkeypatch.setenv("KPDIGEST_SMTP_PASSWORD", "pw")
    ctx = make_ctx(transport={"name": "smtp", "smtp": {
        "host": "127.0.0.1", "port": port, "security": "starttls", "username": "digest",
        "connections": 2, "verify_tls": False, "timeout": 10}},
        sending={"batch_size": 3, "max_in_flight": 2, "backoff_seconds": 0.05})
    number = make_issue(ctx, 12)
    report = send_issue(ctx, number, force=True)
    e = emails(12)
    c = report.counts
    assert c["failed"] == 1 and c["unknown"] == 1 and c["sent"] == 10, c
    delivered = Counter(rcpt for rcpts, _ in handler.messages for rcpt in rcpts)
    assert delivered[e[1]] == 0 and delivered[e[2]] == 1  # 550 never, 451 on its retry
    assert delivered[e[7]] == 1  # taken once, outcome unknown to us, never resent
    assert max(delivered.values()) == 1 and len(delivered) == 11
    assert handler.logins <= 3  # two pooled connections (+1 after the drop), not one per batch
    msg = email.message_from_bytes(handler.messages[0][1], policy=email.policy.default)
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert "/unsubscribe/" in msg.get_body(("plain",)).get_content()


def test_smtp_send_single(make_ctx, monkeypatch, smtp_server):
    from email.message import EmailMessage

    from pipeline.deliver.transports import get_transport

    handler, port = smtp_server
    monkeypatch.setenv("KPDIGEST_SMTP_PASSWORD", "pw")
    ctx = make_ctx(transport={"name": "smtp", "smtp": {
        "host": "127.0.0.1", "port": port, "security": "starttls", "username": "digest",
        "verify_tls": False}})
    m = EmailMessage()
    m["From"], m["To"], m["Subject"], m["Message-ID"] = "d@example.com", "x@example.org", "Hi", "<1@x>"
    m.set_content("Please confirm")
    t = get_transport(ctx.config)
    assert t.send_single(m) == "<1@x>"
    t.close()
    assert handler.messages[0][0] == ["x@example.org"]
