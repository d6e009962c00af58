"""The sending domain's DNS as receivers read it: SPF of the envelope domain, DKIM keys,
DMARC (RFC 9989 tree walk) and alignment for the chosen transport, and the bounce domain."""

from __future__ import annotations

from dataclasses import dataclass

from core.config import Config
from core.states import FindingLevel
from pipeline.deliver.dkim import SigningKey, load_key
from pipeline.deliver.doctor.lookup import Dns
from pipeline.deliver.doctor.records import (
    DMARC_GONE_TAGS,
    aligned,
    discover_dmarc,
    dkim_key_record,
    evaluate_spf,
)
from pipeline.deliver.doctor.report import DoctorReport

OK, WARN, FAIL = FindingLevel.OK, FindingLevel.WARN, FindingLevel.FAIL
# The include each provider's SPF needs (Resend sends through Amazon SES).
PROVIDER_SPF = {
    "postmark": "spf.mtasv.net",
    "sendgrid": "sendgrid.net",
    "mailgun": "mailgun.org",
    "resend": "amazonses.com",
    "ses": "amazonses.com",
}
RAW_MIME = ("smtp", "ses", "outbox")


@dataclass
class Passes:
    """What DMARC alignment can rest on, filled in by the SPF and DKIM checks."""

    spf_domain: str = ""
    spf_pass: bool = False
    dkim_domains: tuple[str, ...] = ()  # d= of signatures that will verify


def envelope_domain(cfg: Config) -> str:
    """The MAIL FROM (Return-Path) domain SPF is checked for."""
    if cfg.transport.name == "smtp":
        return cfg.sender.domain  # the SMTP transport's envelope sender is sender.from_email
    return cfg.doctor.bounce_domain or cfg.sender.domain


def smtp_addresses(cfg: Config, dns: Dns) -> list[str]:
    return dns.addresses(str(cfg.transport.options().get("host", "127.0.0.1")))


def check_spf(cfg: Config, dns: Dns, report: DoctorReport, passes: Passes) -> None:
    domain = envelope_domain(cfg)
    passes.spf_domain = domain
    name = cfg.transport.name
    if name == "smtp":
        host = str(cfg.transport.options().get("host", "127.0.0.1"))
        addresses = smtp_addresses(cfg, dns)
        if not addresses:
            report.add("spf", FAIL, f"the SMTP host {host} has no address in DNS")
            return
        results = {a: evaluate_spf(dns, domain, a) for a in addresses}
        spf = next(iter(results.values()))
        if _spf_errors(report, domain, spf):
            return
        bad = [a for a, r in results.items() if r.result != "pass"]
        if bad:
            report.add(
                "spf",
                FAIL,
                f"SPF of {domain} does not authorise the SMTP host {host} "
                f"({', '.join(bad)}: {results[bad[0]].result})",
                fix=f'{domain} TXT "v=spf1 ' + " ".join(_ip_mech(a) for a in addresses) + ' -all"'
                " (or add those mechanisms to the existing record)",
            )
            return
        passes.spf_pass = True
        report.add(
            "spf", OK, f"SPF of {domain} authorises the SMTP host {host} ({', '.join(addresses)})"
        )
        _all_qualifier(report, domain, spf.all_qualifier)
        return
    include = PROVIDER_SPF.get(name)
    if include is None:  # outbox: nothing leaves
        report.add("spf", OK, f"transport {name}: nothing leaves this machine, SPF not needed yet")
        return
    spf = evaluate_spf(dns, domain)
    if _spf_errors(report, domain, spf):
        return
    if include not in spf.includes:
        report.add(
            "spf",
            FAIL,
            f"SPF of {domain} does not include {include} ({name})",
            fix=f"add include:{include} to the v=spf1 record of {domain}",
        )
        return
    passes.spf_pass = True
    report.add("spf", OK, f"SPF of {domain} includes {include} ({name})")
    _all_qualifier(report, domain, spf.all_qualifier)


def _spf_errors(report: DoctorReport, domain: str, spf: object) -> bool:
    errors = getattr(spf, "errors", [])
    if errors:
        report.add(
            "spf",
            FAIL,
            "; ".join(errors),
            fix=f'{domain} TXT "v=spf1 <your provider\'s include or addresses> -all"',
        )
    return bool(errors)


def _all_qualifier(report: DoctorReport, domain: str, qualifier: str) -> None:
    if qualifier in ("pass", "neutral"):
        report.add(
            "spf",
            WARN,
            f"SPF of {domain} ends in {'+' if qualifier == 'pass' else '?'}all: "
            "anyone may send as this domain",
            fix="end the record with ~all or -all",
        )
    elif not qualifier:
        report.add(
            "spf", WARN, f"SPF of {domain} has no 'all' mechanism", fix="end it with ~all or -all"
        )


def _ip_mech(address: str) -> str:
    return f"ip6:{address}" if ":" in address else f"ip4:{address}"


def check_dkim(cfg: Config, dns: Dns, report: DoctorReport, passes: Passes) -> None:
    """Our own keys (raw-MIME transports) against the published records. A provider that
    signs for us is the provider check's business."""
    name = cfg.transport.name
    if not cfg.dkim.enabled:
        if name == "smtp":
            report.add(
                "dkim",
                FAIL,
                "the SMTP transport sends unsigned mail: Gmail, Yahoo and "
                "Outlook require DKIM from bulk senders",
                fix="add [dkim] enabled = true with a key (kpdigest doctor --keygen rsa-sha256)",
            )
        elif name == "outbox":
            report.add("dkim", WARN, "[dkim] is off: outbox files are unsigned")
        return
    if name not in RAW_MIME:
        report.add(
            "dkim",
            WARN,
            f"[dkim] signs only raw-MIME transports; {name} signs with the "
            "keys it publishes for your domain (see the provider check)",
        )
        return
    domain = cfg.dkim.domain or cfg.sender.domain
    good: list[str] = []
    for i, conf in enumerate(cfg.dkim.keys):
        key = load_key(cfg, i, conf)
        if _key_published(dns, report, key, domain):
            good.append(domain)
    if good and len(good) == len(cfg.dkim.keys):
        passes.dkim_domains = (domain,)


def _key_published(dns: Dns, report: DoctorReport, key: SigningKey, domain: str) -> bool:
    name = f"{key.selector}._domainkey.{domain}"
    fix = f'{name} TXT "{key.public_record}"'
    record, why = dkim_key_record(dns, key.selector, domain)
    if record is None:
        report.add(
            "dkim", FAIL, f"{why}: receivers cannot verify the {key.algorithm} signature", fix
        )
        return False
    want_k = "rsa" if key.algorithm == "rsa-sha256" else "ed25519"
    if record.get("k", "rsa") != want_k:
        report.add(
            "dkim",
            FAIL,
            f"{name} is a k={record.get('k', 'rsa')} key; the configured key is {want_k}",
            fix,
        )
        return False
    if not record.get("p"):
        report.add("dkim", FAIL, f"{name} is revoked (empty p=)", fix)
        return False
    if record["p"] != key.public_b64:
        report.add(
            "dkim",
            FAIL,
            f"{name} publishes a different public key than the configured "
            "private key: every signature would fail",
            fix,
        )
        return False
    if key.algorithm == "rsa-sha256" and key.private.key_size < 2048:
        report.add("dkim", WARN, f"{name}: RSA key of {key.private.key_size} bits; use 2048")
    if "y" in record.get("t", "").split(":"):
        report.add("dkim", WARN, f"{name} is in test mode (t=y): receivers may ignore failures")
    report.add("dkim", OK, f"{name} publishes the configured {key.algorithm} key")
    return True


def check_dmarc(cfg: Config, dns: Dns, report: DoctorReport, passes: Passes) -> None:
    author = cfg.sender.domain
    d = discover_dmarc(dns, author)
    fix = f'_dmarc.{author} TXT "v=DMARC1; p=none; rua=mailto:dmarc@{author}"'
    if d.errors:
        report.add("dmarc", FAIL, "; ".join(d.errors), fix)
        return
    if d.found_at is None:
        report.add(
            "dmarc",
            FAIL,
            f"no DMARC record for {author} or any parent domain "
            "(Gmail and Yahoo require one from bulk senders: 5.7.26)",
            fix,
        )
        return
    where = "" if d.found_at == author else f" (inherited from {d.found_at})"
    policy = d.policy
    if policy == "none":
        report.add(
            "dmarc",
            OK,
            f"DMARC p=none for {author}{where}: meets the bulk-sender rule; "
            "quarantine or reject also protects the domain from spoofing",
        )
    else:
        report.add("dmarc", OK, f"DMARC p={policy} for {author}{where}")
    gone = [t for t in DMARC_GONE_TAGS if t in d.tags]
    if gone:
        report.add(
            "dmarc",
            WARN,
            f"_dmarc.{d.found_at} carries {', '.join(gone)}=, removed by "
            "RFC 9989 (ignored by receivers)",
            fix="remove " + ", ".join(f"{t}=" for t in gone),
        )
    if "rua" not in d.tags:
        report.add(
            "dmarc",
            WARN,
            f"_dmarc.{d.found_at} has no rua=: no aggregate reports",
            fix=f"add rua=mailto:dmarc@{author}",
        )
    _alignment(cfg, report, passes, d.tags, d.found_at)


def _alignment(
    cfg: Config, report: DoctorReport, passes: Passes, tags: dict[str, str], org: str
) -> None:
    author = cfg.sender.domain
    spf_ok = passes.spf_pass and aligned(passes.spf_domain, author, tags.get("aspf", "r"), org)
    dkim_ok = [d for d in passes.dkim_domains if aligned(d, author, tags.get("adkim", "r"), org)]
    how = []
    if spf_ok:
        how.append(f"SPF ({passes.spf_domain})")
    if dkim_ok:
        how.append(f"DKIM (d={dkim_ok[0]})")
    if how:
        report.add(
            "alignment",
            OK,
            f"DMARC passes for From {author} with the {cfg.transport.name} "
            f"transport through {' and '.join(how)}",
        )
    elif cfg.transport.name != "outbox":
        report.add(
            "alignment",
            FAIL,
            f"neither SPF nor DKIM aligns with From {author} for the "
            f"{cfg.transport.name} transport: DMARC fails at the receiver",
            fix="publish the DKIM record (or verify the domain at the provider) for "
            f"{author}, or set a return-path under {author}",
        )


def check_bounce_domain(cfg: Config, dns: Dns, report: DoctorReport) -> None:
    domain = envelope_domain(cfg)
    mx = dns.mx(domain)
    if mx is None:
        report.add(
            "bounce", FAIL, f"the bounce (Return-Path) domain {domain} does not exist in DNS"
        )
    elif not mx:
        has_address = bool(dns.addresses(domain))
        report.add(
            "bounce",
            FAIL,
            f"the bounce (Return-Path) domain {domain} has no MX record"
            + ("" if has_address else " and no address"),
            fix=f"{domain} MX 10 <your mail host>",
        )
    else:
        report.add("bounce", OK, f"bounces to {domain} go to {mx[0][1]} (MX)")
