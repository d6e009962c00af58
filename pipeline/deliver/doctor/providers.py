"""Each provider's own cheap authenticated call: the credentials are accepted, and the
sending domain is verified there (so the provider signs with d= the From domain).

| provider | call | verified when |
|---|---|---|
| postmark | `GET /server` (server token) | not visible to a server token: reported as a warning |
| sendgrid | `GET /v3/whitelabel/domains?domain=D` | an entry for D with `valid: true` |
| mailgun | `GET /v4/domains/{transport.mailgun.domain}` | `domain.state == "active"` |
| resend | `GET /domains` | an entry for D with `status: "verified"` |
| ses | `GetEmailIdentity(D)` (boto3) | `VerifiedForSendingStatus` and DKIM `SUCCESS` |
"""

from __future__ import annotations

from typing import Any

import requests

from core.config import Config
from core.errors import ConfigError
from core.states import FindingLevel
from pipeline.deliver.doctor.domain import Passes
from pipeline.deliver.doctor.report import DoctorReport

OK, WARN, FAIL = FindingLevel.OK, FindingLevel.WARN, FindingLevel.FAIL
SECRETS = {
    "postmark": "postmark_token",
    "sendgrid": "sendgrid_api_key",
    "mailgun": "mailgun_api_key",
    "resend": "resend_api_key",
}


def check_provider(
    cfg: Config, report: DoctorReport, passes: Passes, session: requests.Session | None = None
) -> None:
    name = cfg.transport.name
    if name == "ses":
        _ses(cfg, report, passes)
        return
    if name not in SECRETS:
        return
    secret = cfg.secret(SECRETS[name], required=False)
    if not secret:
        report.add("provider", FAIL, f"KPDIGEST_{SECRETS[name].upper()} is not set")
        return
    opts = cfg.transport.options()
    base = str(opts.get("base_url", "")).rstrip("/")
    http = session or requests.Session()
    try:
        {"postmark": _postmark, "sendgrid": _sendgrid, "mailgun": _mailgun, "resend": _resend}[
            name
        ](cfg, http, base, secret, report, passes)
    except requests.RequestException as exc:
        report.add(
            "provider", FAIL, f"{name} at {base} did not answer: {exc.__class__.__name__}: {exc}"
        )


def _get(http: requests.Session, url: str, **kw: Any) -> requests.Response:
    return http.get(
        url, timeout=15, headers={"Accept": "application/json", **kw.pop("headers", {})}, **kw
    )


def _refused(report: DoctorReport, name: str, r: requests.Response) -> bool:
    if r.status_code in (401, 403, 422) or (name == "postmark" and r.status_code == 401):
        report.add(
            "provider",
            FAIL,
            f"{name} refused the credentials (HTTP {r.status_code}: {r.text[:200]})",
        )
        return True
    if r.status_code >= 300:
        report.add("provider", FAIL, f"{name} answered HTTP {r.status_code}: {r.text[:200]}")
        return True
    return False


def _verified(
    report: DoctorReport, passes: Passes, name: str, domain: str, ok: bool, state: str
) -> None:
    if ok:
        passes.dkim_domains = (*passes.dkim_domains, domain)
        report.add("provider", OK, f"{name} has {domain} verified: it signs DKIM with d={domain}")
    else:
        report.add(
            "provider",
            FAIL,
            f"{name} does not have {domain} verified ({state})",
            fix=f"verify {domain} in {name}'s dashboard and publish the DKIM records it shows",
        )


def _postmark(
    cfg: Config,
    http: requests.Session,
    base: str,
    secret: str,
    report: DoctorReport,
    passes: Passes,
) -> None:
    r = _get(http, f"{base}/server", headers={"X-Postmark-Server-Token": secret})
    if _refused(report, "postmark", r):
        return
    report.add(
        "provider", OK, f"postmark accepted the server token (server {r.json().get('Name', '?')!r})"
    )
    report.add(
        "provider",
        WARN,
        f"a server token cannot see Sender Signatures: check that "
        f"{cfg.sender.domain} shows DKIM and Return-Path verified in Postmark",
    )
    passes.dkim_domains = (*passes.dkim_domains, cfg.sender.domain)


def _sendgrid(
    cfg: Config,
    http: requests.Session,
    base: str,
    secret: str,
    report: DoctorReport,
    passes: Passes,
) -> None:
    domain = cfg.sender.domain
    r = _get(
        http,
        f"{base}/v3/whitelabel/domains",
        params={"domain": domain},
        headers={"Authorization": f"Bearer {secret}"},
    )
    if _refused(report, "sendgrid", r):
        return
    entries = [e for e in r.json() if str(e.get("domain", "")).lower() == domain]
    valid = any(e.get("valid") for e in entries)
    _verified(
        report,
        passes,
        "sendgrid",
        domain,
        valid,
        "not authenticated" if not entries else "DNS records not valid yet",
    )


def _mailgun(
    cfg: Config,
    http: requests.Session,
    base: str,
    secret: str,
    report: DoctorReport,
    passes: Passes,
) -> None:
    domain = str(cfg.transport.options().get("domain", ""))
    if not domain:
        raise ConfigError("transport.mailgun.domain: required")
    r = _get(http, f"{base}/v4/domains/{domain}", auth=("api", secret))
    if r.status_code == 404:
        report.add(
            "provider",
            FAIL,
            f"mailgun has no domain {domain}",
            fix=f"add {domain} in Mailgun, or set transport.mailgun.domain",
        )
        return
    if _refused(report, "mailgun", r):
        return
    state = str((r.json().get("domain") or {}).get("state", "unknown"))
    _verified(report, passes, "mailgun", domain, state == "active", f"state {state}")


def _resend(
    cfg: Config,
    http: requests.Session,
    base: str,
    secret: str,
    report: DoctorReport,
    passes: Passes,
) -> None:
    domain = cfg.sender.domain
    r = _get(http, f"{base}/domains", headers={"Authorization": f"Bearer {secret}"})
    if _refused(report, "resend", r):
        return
    entries = [e for e in r.json().get("data", []) if str(e.get("name", "")).lower() == domain]
    status = entries[0].get("status", "unknown") if entries else "not added"
    _verified(report, passes, "resend", domain, status == "verified", f"status {status}")


def _ses(cfg: Config, report: DoctorReport, passes: Passes) -> None:
    try:
        import boto3  # optional extra, as in the SES transport
        from botocore.exceptions import BotoCoreError, ClientError
    except ModuleNotFoundError:
        report.add("provider", FAIL, "transport ses needs boto3: pip install 'kpdigest[ses]'")
        return
    opts = cfg.transport.options()
    client = boto3.client(
        "sesv2",
        region_name=str(opts.get("region", "us-east-1")),
        endpoint_url=opts.get("endpoint_url") or None,
    )
    domain = cfg.sender.domain
    try:
        ident = client.get_email_identity(EmailIdentity=domain)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        report.add(
            "provider",
            FAIL,
            f"ses: {code or exc}"
            + (f": {domain} is not an identity" if code == "NotFoundException" else ""),
        )
        return
    except BotoCoreError as exc:
        report.add("provider", FAIL, f"ses did not answer: {exc}")
        return
    dkim_status = (ident.get("DkimAttributes") or {}).get("Status", "NOT_STARTED")
    ok = bool(ident.get("VerifiedForSendingStatus")) and dkim_status == "SUCCESS"
    _verified(report, passes, "ses", domain, ok, f"DKIM {dkim_status}")
