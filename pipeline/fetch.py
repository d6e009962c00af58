"""Getting feed bytes: over HTTP(S) with requests, or from a local file (bundled samples)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import requests

from kpdigest.config import Config
from kpdigest.errors import FetchError


@dataclass
class FetchResult:
    url: str
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    final_url: str | None = None
    permanent_redirect: bool = False

    @property
    def not_modified(self) -> bool:
        return self.status == 304


def make_session(cfg: Config) -> requests.Session:
    """One session per run: connection reuse and one User-Agent for every request."""
    session = requests.Session()
    session.headers["User-Agent"] = cfg.collect.user_agent
    session.headers["Accept"] = (
        "application/rss+xml, application/atom+xml, application/xml;q=0.9, text/xml;q=0.8, */*;q=0.1"
    )
    return session


def is_http(url: str) -> bool:
    return urlsplit(url).scheme in ("http", "https")


def fetch(session: requests.Session, url: str, cfg: Config, etag: str | None = None,
          last_modified: str | None = None) -> FetchResult:
    """Fetch one feed, honouring timeouts, a size cap and conditional GET."""
    if not is_http(url):
        path = cfg.path(url[len("file://"):] if url.startswith("file://") else url)
        try:
            return FetchResult(url=url, status=200, body=path.read_bytes()[: cfg.collect.max_bytes + 1])
        except OSError as exc:
            raise FetchError(f"cannot read {path}: {exc.strerror}") from exc
    headers = {}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    try:
        resp = session.get(url, headers=headers, stream=True,
                           timeout=(cfg.collect.connect_timeout, cfg.collect.read_timeout))
    except requests.TooManyRedirects as exc:
        raise FetchError("too many redirects") from exc
    except requests.Timeout as exc:
        raise FetchError(f"timed out: {exc.__class__.__name__}") from exc
    except requests.RequestException as exc:
        raise FetchError(f"request failed: {exc.__class__.__name__}: {exc}") from exc
    with resp:
        permanent = any(r.status_code in (301, 308) for r in resp.history)
        result = FetchResult(url=url, status=resp.status_code, headers=dict(resp.headers),
                             final_url=resp.url, permanent_redirect=permanent)
        if resp.status_code == 304:
            return result
        if resp.status_code == 410:
            raise FetchGone()
        if resp.status_code >= 400:
            raise FetchError(f"HTTP {resp.status_code}")
        result.body = _read_capped(resp, cfg.collect.max_bytes)
    return result


class FetchGone(FetchError):
    """410 Gone: the publisher retired the feed; it is disabled, not retried."""

    def __init__(self) -> None:
        super().__init__("HTTP 410 Gone: feed disabled")


def _read_capped(resp: requests.Response, cap: int) -> bytes:
    declared = resp.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > cap:
        raise FetchError(f"body of {declared} bytes is over the {cap}-byte cap")
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in resp.iter_content(64 * 1024):
            size += len(chunk)
            if size > cap:
                raise FetchError(f"body is over the {cap}-byte cap")
            chunks.append(chunk)
    except requests.RequestException as exc:
        raise FetchError(f"reading the body failed: {exc.__class__.__name__}") from exc
    return b"".join(chunks)


def local_path(cfg: Config, url: str) -> Path:
    return cfg.path(url[len("file://"):] if url.startswith("file://") else url)
