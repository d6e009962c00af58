"""`kpdigest doctor` against a loopback authoritative DNS server: a correct zone passes, and
each fixture zone carrying one mistake gives its exact finding. SMTP checks run against
aiosmtpd (STARTTLS, login), the one-click probe against a loopback web server."""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from click.testing import CliRunner

from core.config import Config
from core.errors import CheckFailed
from core.states import FindingLevel
from kpdigest.main import main
from pipeline.deliver import dkim as kdkim
from pipeline.deliver.doctor import ensure_domain_ready, run_doctor
from pipeline.deliver.doctor.lookup import Dns
from pipeline.deliver.doctor.records import walk_names
from pipeline.deliver.engine import send_issue
from tests.conftest import require_tool, write_config
from tests.fakes.dns import FakeDns
from tests.fakes.issue import make_issue
from tests.golden import fixed_issue

D = "kpmail.test"
FAIL, WARN, OK = FindingLevel.FAIL, FindingLevel.WARN, FindingLevel.OK


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


def settings(keys: dict[str, Path], port: int, via: str = "smtp", **extra: Any) -> dict[str, Any]:
    s: dict[str, Any] = {
        "sender": {"from_email": f"digest@{D}", "list_id": f"weekly.{D}"},
        "dkim": {
            "enabled": True,
            "keys": [
                {
                    "selector": "sel-rsa",
                    "algorithm": "rsa-sha256",
                    "key_file": str(keys["rsa-sha256"]),
                },
                {
                    "selector": "sel-ed",
                    "algorithm": "ed25519-sha256",
                    "key_file": str(keys["ed25519-sha256"]),
                },
            ],
        },
        "doctor": {"nameservers": ["127.0.0.1"], "dns_port": port, "timeout": 2.0},
        "transport": {"name": via, "smtp": {"host": "127.0.0.1", "port": 2525}},
    }
    for section, values in extra.items():
        s.setdefault(section, {}).update(values)
    return s


def config(keys: dict[str, Path], fake_dns: FakeDns, **extra: Any) -> Config:
    return fixed_issue.config(**settings(keys, fake_dns.port, **extra))


def good_zone(z: FakeDns, cfg: Config) -> None:
    z.zones.clear()
    z.add(D, "TXT", "v=spf1 ip4:127.0.0.1 include:spf.mtasv.net -all")
    z.add("spf.mtasv.net", "TXT", "v=spf1 ip4:50.31.156.0/24 -all")
    z.add(D, "MX", (10, f"mx.{D}"))
    z.add(f"mx.{D}", "A", "127.0.0.2")
    z.add(f"_dmarc.{D}", "TXT", f"v=DMARC1; p=quarantine; rua=mailto:dmarc@{D}")
    for key in kdkim.Signer(cfg).keys:
        z.add(f"{key.selector}._domainkey.{D}", "TXT", key.public_record)
    z.add("1.0.0.127.in-addr.arpa", "PTR", f"mail.{D}")
    z.add(f"mail.{D}", "A", "127.0.0.1")


def dns_report(cfg: Config) -> Any:
    return run_doctor(cfg, dns=Dns(cfg), network=False)


def test_a_correct_domain_passes(keys, fake_dns):
    cfg = config(keys, fake_dns)
    good_zone(fake_dns, cfg)
    report = dns_report(cfg)
    assert report.ok, [f.line() for f in report.failures]
    got = {f.check for f in report.findings if f.level == OK}
    assert {"spf", "dkim", "dmarc", "alignment", "bounce", "ptr"} <= got
    assert any(
        "DKIM (d=kpmail.test)" in f.message and "SPF (kpmail.test)" in f.message
        for f in report.by_check("alignment")
    )


def _replace(name: str, rtype: str, value: Any) -> Callable[[FakeDns], None]:
    def change(z: FakeDns) -> None:
        from dnslib import QTYPE, DNSLabel

        label = DNSLabel(name)
        z.zones.records[label] = [
            r for r in z.zones.records[label] if r.rtype != getattr(QTYPE, rtype)
        ]
        for v in value if isinstance(value, list) else [value] if value is not None else []:
            z.add(name, rtype, v)

    return change


def _chain(n: int) -> Callable[[FakeDns], None]:
    def change(z: FakeDns) -> None:
        _replace(D, "TXT", "v=spf1 ip4:127.0.0.1 include:c0.kpmail.test -all")(z)
        for i in range(n):
            z.add(f"c{i}.{D}", "TXT", f"v=spf1 include:c{i + 1}.{D} ~all")
        z.add(f"c{n}.{D}", "TXT", "v=spf1 -all")

    return change


def _other_key(z: FakeDns) -> None:
    other = kdkim.SigningKey(
        "sel-rsa",
        "rsa-sha256",
        kdkim.parse_private_key(kdkim.generate_key("rsa-sha256"), "rsa-sha256", "test"),
    )
    _replace(f"sel-rsa._domainkey.{D}", "TXT", other.public_record)(z)


def _test_mode(z: FakeDns) -> None:
    name = f"sel-rsa._domainkey.{D}"
    (record,) = Dns(
        fixed_issue.config(doctor={"nameservers": ["127.0.0.1"], "dns_port": z.port})
    ).txt(name)
    _replace(name, "TXT", "t=y; " + record)(z)


MISTAKES: dict[str, tuple[Callable[[FakeDns], None], str, FindingLevel, str]] = {
    "no-spf": (_replace(D, "TXT", None), "spf", FAIL, f"{D} publishes no SPF record"),
    "two-spf": (
        _replace(D, "TXT", ["v=spf1 ip4:127.0.0.1 -all", "v=spf1 -all"]),
        "spf",
        FAIL,
        f"{D} publishes 2 SPF records; receivers treat that as an error",
    ),
    "spf-lacks-host": (
        _replace(D, "TXT", "v=spf1 ip4:192.0.2.1 -all"),
        "spf",
        FAIL,
        f"SPF of {D} does not authorise the SMTP host 127.0.0.1 (127.0.0.1: fail)",
    ),
    "spf-softfail-host": (
        _replace(D, "TXT", "v=spf1 ip4:192.0.2.1 ~all"),
        "spf",
        FAIL,
        "(127.0.0.1: softfail)",
    ),
    "spf-by-a-record": (
        _replace(D, "TXT", f"v=spf1 a:mail.{D} -all"),
        "spf",
        OK,
        f"SPF of {D} authorises the SMTP host 127.0.0.1",
    ),
    "spf-dead-include": (
        _replace(D, "TXT", f"v=spf1 ip4:127.0.0.1 include:gone.{D} -all"),
        "spf",
        FAIL,
        f"include:gone.{D}: gone.{D} does not exist in DNS (permerror)",
    ),
    "spf-11-lookups": (
        _chain(11),
        "spf",
        FAIL,
        "the SPF record needs 12 DNS look-ups; receivers stop at 10",
    ),
    "spf-plus-all": (
        _replace(D, "TXT", "v=spf1 ip4:127.0.0.1 +all"),
        "spf",
        WARN,
        f"SPF of {D} ends in +all: anyone may send as this domain",
    ),
    "dkim-missing": (
        _replace(f"sel-rsa._domainkey.{D}", "TXT", None),
        "dkim",
        FAIL,
        f"no DKIM key record at sel-rsa._domainkey.{D}: receivers cannot verify the "
        "rsa-sha256 signature",
    ),
    "dkim-other-key": (
        _other_key,
        "dkim",
        FAIL,
        f"sel-rsa._domainkey.{D} publishes a different public key than the configured private key",
    ),
    "dkim-revoked": (
        _replace(f"sel-ed._domainkey.{D}", "TXT", "v=DKIM1; k=ed25519; p="),
        "dkim",
        FAIL,
        f"sel-ed._domainkey.{D} is revoked (empty p=)",
    ),
    "dkim-wrong-type": (
        _replace(f"sel-ed._domainkey.{D}", "TXT", "v=DKIM1; p=AAAA"),
        "dkim",
        FAIL,
        f"sel-ed._domainkey.{D} is a k=rsa key; the configured key is ed25519",
    ),
    "dkim-test-mode": (
        lambda z: _test_mode(z),
        "dkim",
        WARN,
        f"sel-rsa._domainkey.{D} is in test mode (t=y): receivers may ignore failures",
    ),
    "no-dmarc": (
        _replace(f"_dmarc.{D}", "TXT", None),
        "dmarc",
        FAIL,
        f"no DMARC record for {D} or any parent domain",
    ),
    "two-dmarc": (
        _replace(f"_dmarc.{D}", "TXT", ["v=DMARC1; p=none", "v=DMARC1; p=reject"]),
        "dmarc",
        FAIL,
        f"_dmarc.{D} publishes 2 DMARC records; receivers ignore them all",
    ),
    "dmarc-bad-policy": (
        _replace(f"_dmarc.{D}", "TXT", "v=DMARC1; p=block"),
        "dmarc",
        FAIL,
        f"_dmarc.{D}: p='block' is not one of none, quarantine, reject",
    ),
    "dmarc-pct": (
        _replace(f"_dmarc.{D}", "TXT", f"v=DMARC1; p=reject; pct=50; rua=mailto:d@{D}"),
        "dmarc",
        WARN,
        f"_dmarc.{D} carries pct=, removed by RFC 9989",
    ),
    "dmarc-none": (
        _replace(f"_dmarc.{D}", "TXT", f"v=DMARC1; p=none; rua=mailto:d@{D}"),
        "dmarc",
        OK,
        f"DMARC p=none for {D}: meets the bulk-sender rule",
    ),
    "bounce-no-mx": (
        _replace(D, "MX", None),
        "bounce",
        FAIL,
        f"the bounce (Return-Path) domain {D} has no MX record",
    ),
    "no-ptr": (
        _replace("1.0.0.127.in-addr.arpa", "PTR", None),
        "ptr",
        FAIL,
        "127.0.0.1 has no PTR record (Gmail rejects with 5.7.25)",
    ),
    "ptr-not-confirmed": (
        _replace(f"mail.{D}", "A", "192.0.2.9"),
        "ptr",
        FAIL,
        f"the PTR of 127.0.0.1 (mail.{D}) does not resolve back to it",
    ),
}


@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_each_mistake_gives_its_finding(keys, fake_dns, mistake):
    cfg = config(keys, fake_dns)
    good_zone(fake_dns, cfg)
    change, check, level, message = MISTAKES[mistake]
    change(fake_dns)
    report = dns_report(cfg)
    found = [f for f in report.by_check(check) if f.level == level and message in f.message]
    assert found, [f.line() for f in report.findings]
    assert report.ok == (level != FAIL)


def test_neither_spf_nor_dkim_aligned_fails_dmarc(keys, fake_dns):
    cfg = config(keys, fake_dns)
    good_zone(fake_dns, cfg)
    _replace(D, "TXT", "v=spf1 -all")(fake_dns)
    _other_key(fake_dns)
    report = dns_report(cfg)
    (f,) = report.by_check("alignment")
    assert f.level == FAIL
    assert f.message == (
        f"neither SPF nor DKIM aligns with From {D} for the smtp transport: "
        "DMARC fails at the receiver"
    )


def test_dmarc_tree_walk_inherits_the_parents_subdomain_policy(keys, fake_dns):
    cfg = config(keys, fake_dns, sender={"from_email": f"digest@news.{D}"}, dkim={"domain": D})
    good_zone(fake_dns, cfg)
    _replace(f"_dmarc.{D}", "TXT", f"v=DMARC1; p=reject; sp=quarantine; rua=mailto:d@{D}")(fake_dns)
    fake_dns.add(f"news.{D}", "TXT", "v=spf1 ip4:127.0.0.1 -all")
    fake_dns.add(f"news.{D}", "MX", (10, f"mx.{D}"))
    report = dns_report(cfg)
    assert any(
        f.message == f"DMARC p=quarantine for news.{D} (inherited from {D})"
        for f in report.by_check("dmarc")
    ), [f.line() for f in report.findings]
    assert ("_dmarc", "TXT") not in fake_dns.zones.queries
    assert report.ok, [f.line() for f in report.failures]


def test_walk_names_follows_rfc_9989():
    assert walk_names("a.b.example.com") == [
        "a.b.example.com",
        "b.example.com",
        "example.com",
        "com",
    ]
    long = ".".join(f"l{i}" for i in range(10)) + ".example.com"  # 12 labels
    names = walk_names(long)
    assert names[0] == long
    assert names[1:] == [
        "l5.l6.l7.l8.l9.example.com",
        "l6.l7.l8.l9.example.com",
        "l7.l8.l9.example.com",
        "l8.l9.example.com",
        "l9.example.com",
        "example.com",
        "com",
    ]


def test_strict_alignment_refuses_a_parent_domain_signature(keys, fake_dns):
    cfg = config(keys, fake_dns, sender={"from_email": f"digest@news.{D}"}, dkim={"domain": D})
    good_zone(fake_dns, cfg)
    _replace(f"_dmarc.{D}", "TXT", f"v=DMARC1; p=reject; adkim=s; aspf=s; rua=mailto:d@{D}")(
        fake_dns
    )
    report = dns_report(cfg)  # news.kpmail.test has no SPF, and d=kpmail.test is not strict-aligned
    assert [f.level for f in report.by_check("alignment")] == [FAIL]


def test_unsigned_smtp_fails_and_provider_spf_needs_its_include(keys, fake_dns):
    good_zone(fake_dns, config(keys, fake_dns))
    cfg = config(keys, fake_dns, dkim={"enabled": False, "keys": []})
    report = dns_report(cfg)
    assert any(
        f.level == FAIL and f.message.startswith("the SMTP transport sends unsigned mail")
        for f in report.by_check("dkim")
    )
    cfg = config(keys, fake_dns, via="resend")
    report = dns_report(cfg)
    assert [f.message for f in report.by_check("spf") if f.level == FAIL] == [
        f"SPF of {D} does not include amazonses.com (resend)"
    ]
    cfg = config(keys, fake_dns, via="postmark")
    assert any(
        f.level == OK and f.message == f"SPF of {D} includes spf.mtasv.net (postmark)"
        for f in dns_report(cfg).by_check("spf")
    )


def test_a_silent_dns_server_is_reported_as_such(keys, fake_dns):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))  # bound, never answers
        cfg = fixed_issue.config(**settings(keys, s.getsockname()[1], doctor={"timeout": 0.3}))
        report = dns_report(cfg)
    assert not report.ok
    assert report.by_check("spf")[0].message.startswith("DNS lookup of")
    assert "nothing could be concluded" in report.by_check("spf")[0].message


# --- SMTP host: STARTTLS and login ------------------------------------------------------------


class _Auth:
    async def handle_DATA(self, server, session, envelope):
        return "250 OK"

    def auth(self, server, session, envelope, mechanism, auth_data):
        ok = auth_data.login == b"digest" and auth_data.password == b"pw"
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def cert(tmp_path_factory) -> tuple[Path, Path]:
    require_tool("openssl")
    folder = tmp_path_factory.mktemp("tls")
    key, crt = folder / "key.pem", folder / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(crt),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return key, crt


@pytest.fixture
def smtp_server(cert) -> Iterator[int]:
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert[1], cert[0])
    handler = _Auth()
    port = _port()
    ctl = Controller(
        handler,
        hostname="127.0.0.1",
        port=port,
        tls_context=tls,
        require_starttls=True,
        authenticator=handler.auth,
        auth_required=True,
    )
    ctl.start()
    yield port
    ctl.stop()


@pytest.mark.parametrize(
    ("password", "level", "message"),
    [
        ("pw", OK, "accepted the login of 'digest'"),
        ("wrong", FAIL, "refused the login of 'digest': 535"),
    ],
)
def test_smtp_starttls_and_login(
    keys, fake_dns, smtp_server, monkeypatch, cert, password, level, message
):
    monkeypatch.setenv("KPDIGEST_SMTP_PASSWORD", password)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert[1]))
    cfg = config(
        keys,
        fake_dns,
        transport={"smtp": {"host": "127.0.0.1", "port": smtp_server, "username": "digest"}},
    )
    good_zone(fake_dns, cfg)
    report = run_doctor(cfg, dns=Dns(cfg), network=True)
    assert any(
        f.level == OK and "starttls handshake done (TLSv1.3" in f.message
        for f in report.by_check("tls")
    ), [f.line() for f in report.findings]
    assert any(f.level == level and message in f.message for f in report.by_check("auth")), [
        f.line() for f in report.findings
    ]


def test_smtp_server_without_starttls(keys, fake_dns):
    port = _port()
    ctl = Controller(_Auth(), hostname="127.0.0.1", port=port)
    ctl.start()
    try:
        cfg = config(keys, fake_dns, transport={"smtp": {"host": "127.0.0.1", "port": port}})
        report = run_doctor(cfg, dns=Dns(cfg), network=True)
    finally:
        ctl.stop()
    assert [f.message for f in report.by_check("tls") if f.level == FAIL] == [
        f"cannot open starttls session with 127.0.0.1:{port}: the server does not offer STARTTLS"
    ]


# --- one-click unsubscribe ---------------------------------------------------------------------


@pytest.fixture
def site() -> Iterator[tuple[str, dict[str, int]]]:
    answer = {"status": 400}

    class H(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(answer["status"])
            if answer["status"] == 301:
                self.send_header("Location", "https://elsewhere.test/")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", answer
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize(
    ("status", "level", "message"),
    [
        (400, OK, "/unsubscribe/<token> answers (HTTP 400)"),
        (301, FAIL, "is redirected (HTTP 301 to https://elsewhere.test/)"),
        (404, FAIL, "answered HTTP 404: is `kpdigest serve` behind site.base_url?"),
    ],
)
def test_one_click_probe(keys, fake_dns, site, status, level, message):
    base, answer = site
    answer["status"] = status
    cfg = config(keys, fake_dns, via="outbox", site={"base_url": base})
    report = run_doctor(cfg, dns=Dns(cfg), network=True)
    found = report.by_check("one-click")
    assert found[0].level == FAIL and "is not https" in found[0].message
    assert any(f.level == level and message in f.message for f in found[1:]), [
        f.line() for f in found
    ]


def test_secrets_for_the_provider(keys, fake_dns, monkeypatch):
    monkeypatch.delenv("KPDIGEST_RESEND_WEBHOOK_SECRET", raising=False)
    cfg = config(keys, fake_dns, via="resend")
    report = run_doctor(cfg, dns=Dns(cfg), network=False)
    assert any(
        f.level == FAIL and f.message.startswith("KPDIGEST_RESEND_WEBHOOK_SECRET not set")
        for f in report.by_check("secrets")
    )
    monkeypatch.setenv("KPDIGEST_RESEND_WEBHOOK_SECRET", "whsec_x")
    report = run_doctor(cfg, dns=Dns(cfg), network=False)
    assert not [f for f in report.by_check("secrets") if f.level == FAIL]


# --- the command and the send gate -------------------------------------------------------------


def _cli_config(tmp_path: Path, keys: dict[str, Path], port: int, transport: str = "smtp") -> Path:
    s = settings(keys, port, transport)
    keys_toml = ", ".join(
        f'{{ selector = "{k["selector"]}", algorithm = "{k["algorithm"]}", '
        f'key_file = "{k["key_file"]}" }}'
        for k in s["dkim"]["keys"]
    )
    path = write_config(tmp_path)
    text = path.read_text()
    text = text.replace('from_email = "', f'from_email = "digest@{D}" # ', 1)
    text = text.replace("[dkim]\nenabled = false", "[dkim]\nenabled = true")
    text = text.replace("\nkeys = []", f"\nkeys = [{keys_toml}]", 1)
    text = text.replace("nameservers = []", 'nameservers = ["127.0.0.1"]', 1)
    text = text.replace("dns_port = 53", f"dns_port = {port}", 1)
    text = text.replace('name = "outbox"', f'name = "{transport}"', 1)
    path.write_text(text)
    return path


def test_cli_exit_codes(keys, fake_dns, tmp_path):
    path = _cli_config(tmp_path, keys, fake_dns.port)
    cfg = config(keys, fake_dns)
    good_zone(fake_dns, cfg)
    ok = CliRunner().invoke(main, ["--config", str(path), "doctor", "--offline"])
    assert ok.exit_code == 0, ok.output
    assert "a send would pass the rules" in ok.output
    _replace(f"_dmarc.{D}", "TXT", None)(fake_dns)
    bad = CliRunner().invoke(main, ["--config", str(path), "doctor", "--offline"])
    assert bad.exit_code == 6, bad.output
    assert f"[fail] dmarc: no DMARC record for {D}" in bad.output
    assert f'fix: _dmarc.{D} TXT "v=DMARC1; p=none; rua=mailto:dmarc@{D}"' in bad.output


def test_keygen_prints_a_key_and_its_record(tmp_path):
    path = write_config(tmp_path)
    r = CliRunner().invoke(
        main, ["--config", str(path), "doctor", "--keygen", "ed25519-sha256", "--selector", "s1"]
    )
    assert r.exit_code == 0, r.output
    assert r.stdout.startswith("-----BEGIN PRIVATE KEY-----")
    assert '# publish: s1._domainkey.example.com TXT "v=DKIM1; k=ed25519; p=' in r.stderr


@pytest.fixture
def db_url(tmp_path):
    return f"sqlite:///{tmp_path / 'kpdigest.db'}"


def test_issue_send_refuses_a_failing_domain_unless_forced(make_ctx, keys, fake_dns, monkeypatch):
    monkeypatch.setattr("pipeline.deliver.engine.ensure_sendable", lambda ctx, number: None)
    port = _port()
    inbox = _Auth()
    ctl = Controller(inbox, hostname="127.0.0.1", port=port)
    ctl.start()
    try:
        s = settings(
            keys,
            fake_dns.port,
            doctor={"check_before_send": True},
            transport={"smtp": {"host": "127.0.0.1", "port": port, "security": "none"}},
        )
        ctx = make_ctx(**s)
        fake_dns.zones.clear()  # nothing published
        number = make_issue(ctx, 3)
        with pytest.raises(
            CheckFailed, match=f"sending domain {D} fails `kpdigest doctor`: provider|spf"
        ):
            send_issue(ctx, number)
        with pytest.raises(CheckFailed, match="use --force to send anyway"):
            ensure_domain_ready(ctx.config)
        report = send_issue(ctx, number, force=True)
        assert report.counts["sent"] == 3
    finally:
        ctl.stop()
