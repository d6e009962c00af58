"""DKIM signing held to dkimpy's verifier: every message the outbox, SMTP and single-message
paths hand over verifies against the public key served by a loopback DNS server, for
RSA-2048 and Ed25519; a changed byte in the body or a signed header fails."""

from __future__ import annotations

import base64
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dkim
import pytest
from aiosmtpd.controller import Controller

from core.config import Config
from core.errors import ConfigError
from pipeline.compose.message import Recipient, confirmation_message
from pipeline.deliver import dkim as kdkim
from pipeline.deliver.transports.outbox import OutboxTransport
from pipeline.deliver.transports.smtp import SmtpTransport
from tests.fakes.dns import FakeDns
from tests.golden import fixed_issue

DOMAIN = "example.com"  # the fixed issue's From domain


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("keys")
    out = {}
    for alg in kdkim.ALGORITHMS:
        out[alg] = folder / f"{alg}.pem"
        out[alg].write_bytes(kdkim.generate_key(alg))
    return out


@pytest.fixture(scope="module")
def fake_dns() -> Iterator[FakeDns]:
    server = FakeDns()
    yield server
    server.stop()


def publish(server: FakeDns, cfg: Config) -> None:
    server.zones.clear()
    for key in kdkim.Signer(cfg).keys:
        server.add(f"{key.selector}._domainkey.{DOMAIN}", "TXT", key.public_record)


def dkim_config(
    keys: dict[str, Path], algs: tuple[str, ...] = kdkim.ALGORITHMS, **sender: Any
) -> Config:
    entries = [
        {"selector": f"sel-{alg.split('-')[0]}", "algorithm": alg, "key_file": str(keys[alg])}
        for alg in algs
    ]
    return fixed_issue.config(dkim={"enabled": True, "keys": entries}, sender=sender)


def verify_all(server: FakeDns, message: bytes) -> list[bool]:
    """dkimpy's verdict on each DKIM-Signature of the message, top to bottom."""
    d = dkim.DKIM(message)
    count = sum(1 for name, _ in d.headers if name.lower() == b"dkim-signature")
    return [_verify(d, i, server) for i in range(count)]


def _verify(d: dkim.DKIM, idx: int, server: FakeDns) -> bool:
    try:
        return bool(d.verify(idx=idx, dnsfunc=server.dkimpy_dnsfunc()))
    except dkim.ValidationError:  # dkimpy raises on a body-hash mismatch
        return False


def readers() -> list[Recipient]:
    """Adversarial names: runs of spaces and tabs, non-ASCII, empty, very long."""
    names = [
        "Ann Example",
        "",
        "  Two   Spaces  ",
        "Tab\there",
        "Zoë Ünïcødé 日本",
        "x" * 300,
        "Trailing space ",
        "=?utf-8?q?looks_encoded?=",
    ]
    return [
        fixed_issue.recipient(i + 1, name=n, email=f"r{i}@example.org") for i, n in enumerate(names)
    ]


@pytest.mark.parametrize("algs", [("rsa-sha256",), ("ed25519-sha256",), kdkim.ALGORITHMS])
def test_outbox_messages_verify_with_dkimpy(keys, fake_dns, tmp_path, algs):
    cfg = dkim_config(keys, algs)
    cfg.transport.tables["outbox"] = {"dir": str(tmp_path / "out")}
    publish(fake_dns, cfg)
    variant = fixed_issue.prepared(cfg)
    transport = OutboxTransport(cfg)
    transport.open()
    outcomes = transport.send_batch(variant, readers(), "k")
    assert [o.state for o in outcomes] == ["sent"] * len(readers())
    for o in outcomes:
        message = (tmp_path / "out" / o.provider_message_id).read_bytes()
        assert message.startswith(b"DKIM-Signature: v=1; a=")
        assert verify_all(fake_dns, message) == [True] * len(algs), o.provider_message_id
    assert transport._dkim_variants[(variant.issue_id, "", variant.key)].exact


def test_template_canonicalisation_equals_whole_message(keys):
    """The per-variant canonical form gives the body hash and signed headers that
    canonicalising each complete message gives."""
    cfg = dkim_config(keys, ("ed25519-sha256",), unsubscribe_mailto="unsub@example.com")
    cfg.dkim.timestamp = False  # no t=: the two signatures must be byte for byte the same
    variant = fixed_issue.prepared(cfg)
    signer = kdkim.Signer(cfg)
    vs = signer.for_template(variant.mime)
    assert vs.exact
    for r in readers():
        parts = variant.mime.build_parts(r, fixed_issue.MESSAGE_DATE)
        whole = b"".join(parts)
        _, _, body = whole.partition(b"\r\n\r\n")
        assert vs.body_hash(parts) == kdkim.hashlib.sha256(kdkim.relaxed_body(body)).digest()
        # Ed25519 signatures are deterministic: both paths sign the same bytes.
        assert vs.sign(parts).split(b"bh=")[1] == signer.sign_bytes(whole).split(b"bh=")[1]


@pytest.mark.parametrize("alg", kdkim.ALGORITHMS)
@pytest.mark.parametrize("where", ["body", "subject", "to", "list-unsubscribe", "signature-tag"])
def test_a_changed_byte_fails(keys, fake_dns, alg, where):
    cfg = dkim_config(keys, (alg,))
    publish(fake_dns, cfg)
    variant = fixed_issue.prepared(cfg)
    transport = OutboxTransport(cfg)
    message = transport.raw_message(variant, fixed_issue.recipient())
    assert verify_all(fake_dns, message) == [True]
    old, new = {
        "body": (b"Preferences", b"Preferencez"),
        "subject": (b"Subject: The", b"Subject: Th3"),
        "to": (b"<ann@example.com>", b"<anm@example.com>"),
        "list-unsubscribe": (b"/unsubscribe/tok1", b"/unsubscribe/tok2"),
        "signature-tag": (b"c=relaxed/relaxed; d=example.com", b"c=relaxed/relaxed; d=Example.com"),
    }[where]
    assert old in message
    changed = message.replace(old, new, 1)
    assert verify_all(fake_dns, changed) == [False]


def test_relaxed_canonicalisation_tolerates_whitespace_and_refolding(keys, fake_dns):
    """What relaxed/relaxed exists for: a relay re-wrapping headers or padding spaces."""
    cfg = dkim_config(keys, ("rsa-sha256",))
    publish(fake_dns, cfg)
    message = OutboxTransport(cfg).raw_message(fixed_issue.prepared(cfg), fixed_issue.recipient())
    relayed = message.replace(b"List-Unsubscribe-Post: List", b"List-Unsubscribe-Post:   List")
    relayed = relayed.replace(b"\r\n\r\n", b"  \r\n\r\n", 1)  # trailing space on the last header
    assert relayed != message
    assert verify_all(fake_dns, relayed) == [True]


def test_wrong_published_key_fails(keys, fake_dns, tmp_path):
    cfg = dkim_config(keys, ("rsa-sha256",))
    other = tmp_path / "other.pem"
    other.write_bytes(kdkim.generate_key("rsa-sha256"))
    fake_dns.zones.clear()
    fake_dns.add(
        f"sel-rsa._domainkey.{DOMAIN}",
        "TXT",
        kdkim.Signer(dkim_config({"rsa-sha256": other}, ("rsa-sha256",))).keys[0].public_record,
    )
    message = OutboxTransport(cfg).raw_message(fixed_issue.prepared(cfg), fixed_issue.recipient())
    assert verify_all(fake_dns, message) == [False]


def test_confirmation_email_is_signed_through_send_single(keys, fake_dns, tmp_path):
    cfg = dkim_config(keys)
    cfg.transport.tables["outbox"] = {"dir": str(tmp_path / "out")}
    publish(fake_dns, cfg)
    msg = confirmation_message(
        cfg,
        to_email="new@example.org",
        name="Zoë",
        confirm_url="https://digest.example.com/confirm/abc",
    )
    name = OutboxTransport(cfg).send_single(msg)
    assert verify_all(fake_dns, (tmp_path / "out" / name).read_bytes()) == [True, True]


def test_key_from_environment_and_dkimpy_seed_format(keys, fake_dns, monkeypatch):
    pem = keys["rsa-sha256"].read_text()
    seed = base64.b64encode(kdkim.ed25519.Ed25519PrivateKey.generate().private_bytes_raw())
    monkeypatch.setenv("KPDIGEST_DKIM_RSA", pem.replace("\n", "\\n"))  # one-line form
    monkeypatch.setenv("KPDIGEST_DKIM_ED", seed.decode())
    cfg = fixed_issue.config(
        dkim={
            "enabled": True,
            "keys": [
                {"selector": "env-rsa", "key_env": "KPDIGEST_DKIM_RSA"},
                {
                    "selector": "env-ed",
                    "algorithm": "ed25519-sha256",
                    "key_env": "KPDIGEST_DKIM_ED",
                },
            ],
        }
    )
    publish(fake_dns, cfg)
    message = OutboxTransport(cfg).raw_message(fixed_issue.prepared(cfg), fixed_issue.recipient())
    assert verify_all(fake_dns, message) == [True, True]


@pytest.mark.parametrize(
    ("dkim_conf", "error"),
    [
        ({"enabled": True}, "dkim.keys: DKIM is enabled but no key is configured"),
        (
            {"keys": [{"selector": "s", "algorithm": "rsa-sha1", "key_file": "k"}]},
            "dkim.keys[0].algorithm: 'rsa-sha1' is not one of rsa-sha256, ed25519-sha256",
        ),
        (
            {"keys": [{"selector": "s", "key_file": "k", "key_env": "K"}]},
            "dkim.keys[0]: set exactly one of key_file and key_env",
        ),
        (
            {"keys": [{"selector": "bad selector", "key_file": "k"}]},
            "dkim.keys[0].selector: 'bad selector' is not a DNS label",
        ),
        ({"domain": "not a domain"}, "dkim.domain: 'not a domain' is not a domain name"),
        ({"headers": ["from", "to"]}, "dkim.headers: must sign subject, date"),
    ],
)
def test_config_errors_name_the_key(dkim_conf, error):
    with pytest.raises(ConfigError, match=error.replace("[", r"\[").replace("]", r"\]")):
        fixed_issue.config(dkim=dkim_conf)


def test_unreadable_or_mismatched_keys_name_the_key(keys, tmp_path, monkeypatch):
    cfg = fixed_issue.config(
        dkim={
            "enabled": True,
            "keys": [{"selector": "s", "key_file": str(tmp_path / "missing.pem")}],
        }
    )
    with pytest.raises(ConfigError, match=r"dkim.keys\[0\].key_file: cannot read"):
        kdkim.Signer(cfg)
    cfg = fixed_issue.config(
        dkim={"enabled": True, "keys": [{"selector": "s", "key_file": str(keys["ed25519-sha256"])}]}
    )
    with pytest.raises(ConfigError, match=r"dkim.keys\[0\]: rsa-sha256 needs an RSA key"):
        kdkim.Signer(cfg)
    (tmp_path / "junk.pem").write_text("not a key")
    cfg = fixed_issue.config(
        dkim={
            "enabled": True,
            "keys": [
                {
                    "selector": "s",
                    "algorithm": "ed25519-sha256",
                    "key_file": str(tmp_path / "junk.pem"),
                }
            ],
        }
    )
    with pytest.raises(ConfigError, match="not a readable unencrypted PEM private key"):
        kdkim.Signer(cfg)
    monkeypatch.delenv("KPDIGEST_DKIM_NONE", raising=False)
    cfg = fixed_issue.config(
        dkim={"enabled": True, "keys": [{"selector": "s", "key_env": "KPDIGEST_DKIM_NONE"}]}
    )
    with pytest.raises(ConfigError, match="KPDIGEST_DKIM_NONE is not set"):
        kdkim.Signer(cfg)


def test_template_that_breaks_line_framing_falls_back_to_whole_message(keys, fake_dns):
    """A body slot not at a line start cannot be canonicalised apart: the signer notices
    once and canonicalises each whole message, which still verifies."""
    cfg = dkim_config(keys, ("ed25519-sha256",))
    publish(fake_dns, cfg)
    variant = fixed_issue.prepared(cfg)
    mime = variant.mime
    index = len(mime.literals) - 2  # the literal before the last slot (a body slot)
    assert mime.literals[index].endswith(b"=\r\n")
    mime._literals[index] = mime._literals[index] + b"  "  # whitespace before the next slot
    mime._parts[2 * index] = mime._literals[index]
    vs = kdkim.Signer(cfg).for_template(mime)
    assert not vs.exact
    for r in readers()[:3]:
        assert verify_all(fake_dns, vs.sign(mime.build_parts(r))) == [True]


# --- SMTP: what the server receives verifies ----------------------------------------------


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[bytes] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope.original_content or envelope.content)
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_smtp_transport_hands_over_signed_messages(keys, fake_dns):
    inbox = _Inbox()
    port = _free_port()
    ctl = Controller(inbox, hostname="127.0.0.1", port=port)
    ctl.start()
    try:
        cfg = dkim_config(keys)
        cfg.transport.name = "smtp"
        cfg.transport.tables["smtp"] = {"host": "127.0.0.1", "port": port, "security": "none"}
        publish(fake_dns, cfg)
        transport = SmtpTransport(cfg)
        outcomes = transport.send_batch(fixed_issue.prepared(cfg), readers()[:4], "k")
        transport.send_single(
            confirmation_message(
                cfg,
                to_email="c@example.org",
                name="C",
                confirm_url="https://digest.example.com/c/1",
            )
        )
        transport.close()
    finally:
        ctl.stop()
    assert [o.state for o in outcomes] == ["sent"] * 4
    assert len(inbox.messages) == 5
    for m in inbox.messages:
        assert verify_all(fake_dns, m) == [True, True]
