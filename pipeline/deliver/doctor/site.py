"""The web side of the rules: RFC 8058 one-click unsubscribe over HTTPS, and the secrets
that sign links and verify the provider's bounce and complaint reports."""

from __future__ import annotations

import os

import requests

from core.config import Config
from core.states import FindingLevel
from pipeline.deliver.doctor.report import DoctorReport

OK, WARN, FAIL = FindingLevel.OK, FindingLevel.WARN, FindingLevel.FAIL
WEBHOOK_SECRETS = {
    "postmark": ("KPDIGEST_POSTMARK_WEBHOOK_USER", "KPDIGEST_POSTMARK_WEBHOOK_PASSWORD"),
    "sendgrid": ("KPDIGEST_SENDGRID_WEBHOOK_PUBLIC_KEY",),
    "mailgun": ("KPDIGEST_MAILGUN_WEBHOOK_SIGNING_KEY",),
    "resend": ("KPDIGEST_RESEND_WEBHOOK_SECRET",),
}
PROBE_PATH = "/unsubscribe/kpdigest-doctor-probe"


def check_one_click(
    cfg: Config, report: DoctorReport, session: requests.Session | None = None
) -> None:
    base = cfg.site.base_url.rstrip("/")
    if not base.startswith("https://"):
        report.add(
            "one-click",
            FAIL,
            f"site.base_url {base} is not https: List-Unsubscribe one-click "
            "links must be HTTPS (RFC 8058)",
            fix='site.base_url = "https://..."',
        )
    url = base + PROBE_PATH
    try:
        r = (session or requests).post(
            url, data={"List-Unsubscribe": "One-Click"}, timeout=15, allow_redirects=False
        )
    except requests.RequestException as exc:
        report.add("one-click", FAIL, f"POST {url} got no answer: {exc.__class__.__name__}")
        return
    if 300 <= r.status_code < 400:
        report.add(
            "one-click",
            FAIL,
            f"POST {url} is redirected (HTTP {r.status_code} to "
            f"{r.headers.get('Location', '?')}): mailbox providers do not follow it",
            fix="set site.base_url to the final address",
        )
    elif r.status_code in (200, 400):  # 400: our app read the probe's token and refused it
        report.add(
            "one-click", OK, f"POST {base}/unsubscribe/<token> answers (HTTP {r.status_code})"
        )
    else:
        report.add(
            "one-click",
            FAIL,
            f"POST {url} answered HTTP {r.status_code}: is `kpdigest serve` behind site.base_url?",
        )


def check_secrets(cfg: Config, report: DoctorReport) -> None:
    if os.environ.get("KPDIGEST_SECRET_KEY"):
        report.add("secrets", OK, "KPDIGEST_SECRET_KEY is set")
    else:
        report.add(
            "secrets",
            WARN,
            "KPDIGEST_SECRET_KEY is not set: links are signed with the key "
            "generated in var/secret.key; every machine serving links needs that same key",
        )
    name = cfg.transport.name
    needed = WEBHOOK_SECRETS.get(name, ())
    missing = [v for v in needed if not os.environ.get(v)]
    if missing:
        report.add(
            "secrets",
            FAIL,
            f"{', '.join(missing)} not set: {name}'s bounce and complaint "
            "webhooks are refused, so complaint rates and suppressions stay blind",
        )
    elif needed:
        report.add("secrets", OK, f"{name} webhook secret set")
    elif name in ("smtp", "outbox"):
        report.add(
            "secrets",
            WARN,
            f"transport {name}: bounces and complaints come back by mail, "
            "not to kpdigest's webhooks; complaint rates cannot be watched",
        )
