"""The SMTP transport's host as Gmail sees the sender: forward-confirmed PTR (5.7.25), TLS
(5.7.29) and a login the server accepts."""

from __future__ import annotations

import smtplib
import ssl

from core.config import Config
from core.errors import ConfigError, TransportError
from core.states import FindingLevel
from pipeline.deliver.doctor.domain import smtp_addresses
from pipeline.deliver.doctor.lookup import Dns
from pipeline.deliver.doctor.report import DoctorReport
from pipeline.deliver.transports.smtp import SmtpTransport

OK, WARN, FAIL = FindingLevel.OK, FindingLevel.WARN, FindingLevel.FAIL


def check_ptr(cfg: Config, dns: Dns, report: DoctorReport) -> None:
    for address in smtp_addresses(cfg, dns):
        names = dns.ptr(address) or []
        if not names:
            report.add(
                "ptr",
                FAIL,
                f"{address} has no PTR record (Gmail rejects with 5.7.25)",
                fix=f"ask the owner of {address} for a PTR naming a host that resolves back",
            )
            continue
        confirmed = [n for n in names if address in dns.addresses(n)]
        if not confirmed:
            report.add(
                "ptr",
                FAIL,
                f"the PTR of {address} ({names[0]}) does not resolve back to it",
                fix=f"{names[0]} A {address}",
            )
        else:
            report.add("ptr", OK, f"{address} has PTR {confirmed[0]}, which resolves back")


def check_connection(cfg: Config, report: DoctorReport) -> None:
    """One connection: the TLS handshake the transport will make, then its login."""
    t = SmtpTransport(cfg)
    where = f"{t.host}:{t.port}"
    if t.security == "none":
        local = t.host in ("127.0.0.1", "::1", "localhost")
        report.add(
            "tls",
            WARN if local else FAIL,
            f"transport.smtp.security is 'none': the message and password cross {where} in clear",
            fix='transport.smtp.security = "starttls" (587) or "tls" (465)',
        )
    try:
        conn = _open(t)
    except (OSError, smtplib.SMTPException, ssl.SSLError) as exc:
        report.add(
            "tls" if t.security != "none" else "auth",
            FAIL,
            f"cannot open {t.security} session with {where}: {exc}",
        )
        return
    try:
        sock = conn.sock
        if isinstance(sock, ssl.SSLSocket):
            report.add(
                "tls",
                OK,
                f"{where}: {t.security} handshake done ({sock.version()}, "
                f"{(sock.cipher() or ('?',))[0]})",
            )
        _login(t, conn, report, where)
    finally:
        try:
            conn.quit()
        except (OSError, smtplib.SMTPException):
            conn.close()


def _open(t: SmtpTransport) -> smtplib.SMTP:
    if t.security == "tls":
        return smtplib.SMTP_SSL(t.host, t.port, timeout=t.timeout, context=t._tls())
    conn = smtplib.SMTP(t.host, t.port, timeout=t.timeout)
    if t.security == "starttls":
        conn.ehlo()
        if not conn.has_extn("starttls"):
            conn.close()
            raise smtplib.SMTPNotSupportedError("the server does not offer STARTTLS")
        conn.starttls(context=t._tls())
    return conn


def _auth_once(conn: smtplib.SMTP, username: str, password: str) -> None:
    """One AUTH with the best mechanism offered (smtplib's login tries every mechanism after
    a refusal, which some servers answer slowly or not at all)."""
    conn.ehlo_or_helo_if_needed()
    offered = conn.esmtp_features.get("auth", "").upper().split()
    mech = next((m for m in ("CRAM-MD5", "PLAIN", "LOGIN") if m in offered), None)
    if mech is None:
        raise smtplib.SMTPNotSupportedError("the server offers no AUTH mechanism smtplib knows")
    conn.user, conn.password = username, password
    conn.auth(
        mech, getattr(conn, "auth_" + mech.lower().replace("-", "_")), initial_response_ok=True
    )


def _login(t: SmtpTransport, conn: smtplib.SMTP, report: DoctorReport, where: str) -> None:
    if not t.username:
        report.add(
            "auth",
            WARN,
            f"no transport.smtp.username: {where} must accept mail from this "
            "address without a login",
        )
        return
    password = t.cfg.secret("smtp_password", required=False)
    if not password:
        report.add("auth", FAIL, "KPDIGEST_SMTP_PASSWORD is not set")
        return
    try:
        _auth_once(conn, t.username, password)
    except smtplib.SMTPAuthenticationError as exc:
        report.add(
            "auth",
            FAIL,
            f"{where} refused the login of {t.username!r}: {exc.smtp_code} "
            f"{exc.smtp_error.decode('utf-8', 'replace')}",
        )
        return
    except (smtplib.SMTPException, ConfigError, TransportError) as exc:
        report.add("auth", FAIL, f"{where}: login failed: {exc}")
        return
    report.add("auth", OK, f"{where} accepted the login of {t.username!r}")
