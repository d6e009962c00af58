"""`kpdigest doctor`: would the receivers' 2024-2025 bulk-sender rules pass a send from
this configuration? Each finding says what was found and the record or setting to fix.

Checks, in order: the provider's credentials and domain verification, SPF of the envelope
domain, our DKIM keys against their published records, DMARC (RFC 9989 tree walk) and
alignment for the chosen transport, the bounce domain's MX, for SMTP the host's PTR, TLS
and login, then the one-click unsubscribe URL and the secrets. A DNS server that does not
answer is a failure saying so, never a missing record.
"""

from __future__ import annotations

from collections.abc import Callable

import requests

from core.config import Config
from core.errors import CheckFailed, ConfigError
from core.states import FindingLevel
from pipeline.deliver.doctor.domain import (
    Passes,
    check_bounce_domain,
    check_dkim,
    check_dmarc,
    check_spf,
)
from pipeline.deliver.doctor.lookup import Dns, DnsUnavailable
from pipeline.deliver.doctor.providers import check_provider
from pipeline.deliver.doctor.relay import check_connection, check_ptr
from pipeline.deliver.doctor.report import DoctorReport, Finding
from pipeline.deliver.doctor.site import check_one_click, check_secrets

__all__ = ["DoctorReport", "Finding", "ensure_domain_ready", "run_doctor"]


def run_doctor(
    cfg: Config,
    *,
    dns: Dns | None = None,
    session: requests.Session | None = None,
    network: bool = True,
) -> DoctorReport:
    """Every check for the configured transport. `network=False` leaves out the ones that
    connect somewhere other than DNS (provider API, SMTP server, the site)."""
    dns = dns or Dns(cfg)
    report = DoctorReport(cfg.sender.domain, cfg.transport.name)
    passes = Passes()
    steps: list[tuple[str, Callable[[], None]]] = []
    if network:
        steps.append(("provider", lambda: check_provider(cfg, report, passes, session)))
    steps += [
        ("spf", lambda: check_spf(cfg, dns, report, passes)),
        ("dkim", lambda: check_dkim(cfg, dns, report, passes)),
        ("dmarc", lambda: check_dmarc(cfg, dns, report, passes)),
    ]
    if cfg.transport.name != "outbox":
        steps.append(("bounce", lambda: check_bounce_domain(cfg, dns, report)))
    if cfg.transport.name == "smtp":
        steps.append(("ptr", lambda: check_ptr(cfg, dns, report)))
        if network:
            steps.append(("tls", lambda: check_connection(cfg, report)))
    if network:
        steps.append(("one-click", lambda: check_one_click(cfg, report, session)))
    steps.append(("secrets", lambda: check_secrets(cfg, report)))
    for check, step in steps:
        try:
            step()
        except DnsUnavailable as exc:
            report.add(
                check,
                FindingLevel.FAIL,
                f"{exc}: nothing could be concluded (check doctor.nameservers)",
            )
        except ConfigError as exc:
            report.add(check, FindingLevel.FAIL, str(exc))
    return report


def ensure_domain_ready(cfg: Config, *, dns: Dns | None = None) -> DoctorReport | None:
    """The pre-send gate: raise CheckFailed when the doctor fails the sending domain.
    Skipped for the outbox (nothing leaves) and with `doctor.check_before_send = false`;
    `issue send --force` skips it too."""
    if cfg.transport.name == "outbox" or not cfg.doctor.check_before_send:
        return None
    report = run_doctor(cfg, dns=dns)
    if not report.ok:
        raise CheckFailed(
            f"sending domain {cfg.sender.domain} fails `kpdigest doctor`: "
            + "; ".join(f"{f.check}: {f.message}" for f in report.failures)
            + " (use --force to send anyway)"
        )
    return report
