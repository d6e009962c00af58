"""SNS signing certificates, never fetched inside a request.

A request names its certificate by `SigningCertURL`. When the certificate is in the cache
(`var/sns-certs/`, where operators may also pin certificates by hand) it is used; when it
is not, the URL is written to `var/sns-certs/wanted/` and the request is answered 429 so
that SNS tries again. `fetch_wanted`, run by a background thread of `kpdigest serve`,
fetches each wanted URL and caches the answer only when it is a certificate whose names
match the SNS host pattern and which is valid today; anything else is left out of the
cache with its reason, so a bad answer is never trusted later.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.x509.oid import NameOID

from core.context import Context
from subscribers.webhooks.base import WebhookRefused

log = logging.getLogger(__name__)
MAX_PEM = 16 * 1024  # an SNS certificate is about 2 KB
MAX_WANTED = 50  # pending URLs kept: unsigned requests cannot fill the disk
RETRY_AFTER = 30  # seconds; the fetcher runs every FETCH_EVERY seconds
FETCH_EVERY = 10
SNS_NAME = re.compile(r"sns\.([a-z0-9-]+\.)?amazonaws\.com(\.cn)?")


def cache_dir(ctx: Context) -> Path:
    return ctx.config.var_dir / "sns-certs"


def trusted_cert_path(ctx: Context, url: str) -> Path:
    """Where a pinned SNS certificate for `url` is looked up (operators may pre-seed it)."""
    return cache_dir(ctx) / (hashlib.sha256(url.encode()).hexdigest() + ".pem")


def _wanted_path(ctx: Context, url: str) -> Path:
    return cache_dir(ctx) / "wanted" / (hashlib.sha256(url.encode()).hexdigest() + ".url")


def check_url(ctx: Context, url: str) -> None:
    """Only https, a host matching `webhooks.ses_cert_host`, a .pem path, no port or user."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise WebhookRefused(403, "untrusted SigningCertURL") from exc
    host_ok = re.fullmatch(ctx.config.webhooks.ses_cert_host, parts.hostname or "")
    if parts.scheme != "https" or not host_ok or not parts.path.endswith(".pem") \
            or port not in (None, 443) or parts.username or parts.query or parts.fragment:
        raise WebhookRefused(403, f"untrusted SigningCertURL {url[:200]!r}")


def cached_cert(ctx: Context, url: str) -> x509.Certificate:
    """The certificate for `url` from the cache; 429 (try again) after asking for it."""
    check_url(ctx, url)
    path = trusted_cert_path(ctx, url)
    if path.exists():
        try:
            return x509.load_pem_x509_certificate(path.read_bytes())
        except ValueError as exc:  # a pinned file that is no certificate: the operator's to fix
            log.error("%s is not a PEM certificate; SES webhooks using it are refused", path)
            raise WebhookRefused(403, "the pinned signing certificate is unreadable") from exc
    _want(ctx, url)
    raise WebhookRefused(429, "the signing certificate is being fetched: try again",
                         retry_after=RETRY_AFTER)


def _want(ctx: Context, url: str) -> None:
    path = _wanted_path(ctx, url)
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    if sum(1 for _ in path.parent.glob("*.url")) >= MAX_WANTED:
        log.warning("%d SNS certificates already wanted; not queueing %s", MAX_WANTED, url)
        return
    _write_atomic(path, url.encode())


def wanted(ctx: Context) -> list[str]:
    folder = cache_dir(ctx) / "wanted"
    return sorted(p.read_text() for p in folder.glob("*.url")) if folder.exists() else []


def certificate_for(pem: bytes, now: dt.datetime | None = None) -> x509.Certificate:
    """The certificate in `pem`, if it is one for an SNS host and valid now; else ValueError."""
    if len(pem) > MAX_PEM:
        raise ValueError("larger than a certificate")
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise ValueError("the answer is not a PEM certificate") from exc
    names = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names += san.value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        pass
    if not any(isinstance(n, str) and SNS_NAME.fullmatch(n) for n in names):
        raise ValueError(f"not a certificate for an SNS host (names: {names})")
    when = now or dt.datetime.now(dt.UTC)
    if not cert.not_valid_before_utc <= when <= cert.not_valid_after_utc:
        raise ValueError("the certificate is not valid today")
    return cert


@dataclass
class Fetched:
    url: str
    error: str | None = None


def fetch_wanted(ctx: Context, fetch: Callable[[str], bytes] | None = None) -> list[Fetched]:
    """Fetch each wanted certificate once; cache only those that check out."""
    results = []
    for url in wanted(ctx):
        results.append(_fetch_one(ctx, url, fetch or download))
    return results


def _fetch_one(ctx: Context, url: str, fetch: Callable[[str], bytes]) -> Fetched:
    try:
        check_url(ctx, url)
        pem = fetch(url)
        certificate_for(pem)
    except (ValueError, OSError, WebhookRefused) as exc:  # network errors are OSErrors
        # any failure leaves the cache untouched; the next SNS retry asks again
        log.warning("SNS certificate %s not cached: %s", url, exc)
        _wanted_path(ctx, url).unlink(missing_ok=True)
        return Fetched(url, str(exc) or type(exc).__name__)
    _write_atomic(trusted_cert_path(ctx, url), pem)
    _wanted_path(ctx, url).unlink(missing_ok=True)
    return Fetched(url)


def download(url: str) -> bytes:
    """GET with a timeout, no redirects and a size cap (outside any request)."""
    import requests  # lazy: only the background fetcher needs it

    with requests.get(url, timeout=10, allow_redirects=False, stream=True) as resp:
        resp.raise_for_status()
        body = resp.raw.read(MAX_PEM + 1, decode_content=True)
    if len(body) > MAX_PEM:
        raise ValueError("larger than a certificate")
    return body


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + f".{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def start_fetcher(ctx: Context, every: float = FETCH_EVERY) -> threading.Thread:
    """The background step of `kpdigest serve`: fetch wanted certificates every few seconds."""
    def loop() -> None:
        while True:
            time.sleep(every)
            try:
                if wanted(ctx):
                    fetch_wanted(ctx)
            except Exception:  # a bug: log it and keep the thread alive for the next round
                log.exception("the SNS certificate fetcher failed")

    thread = threading.Thread(target=loop, name="sns-cert-fetcher", daemon=True)
    thread.start()
    return thread
