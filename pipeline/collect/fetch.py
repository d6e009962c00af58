"""Getting feed bytes: over HTTP(S) with requests, or from a local file (bundled samples).

Redirects are followed here, hop by hop, rather than by requests: each hop can be checked
(the SSRF guard of the editor queue), a loop is named as such, and a chain of permanent
redirects is reported so that the stored feed URL can follow it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter

from core.config import Config
from core.errors import FetchError

ACCEPT = "application/rss+xml, application/atom+xml, application/xml;q=0.9, text/xml;q=0.8, */*;q=0.1"
PERMANENT = (301, 308)
REDIRECTS = (301, 302, 303, 307, 308)
# Headers that describe the transfer, not the bytes we hand on (requests already un-gzipped).
_TRANSFER_HEADERS = ("content-encoding", "content-length", "transfer-encoding")


@dataclass
class FetchResult:
    url: str
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    final_url: str | None = None
    permanent_redirect: bool = False
    moved_to: str | None = None  # where a chain of permanent redirects from `url` ends

    @property
    def not_modified(self) -> bool:
        return self.status == 304


class FetchGone(FetchError):
    """410 Gone: the publisher retired the feed; it is disabled, not retried."""

    def __init__(self) -> None:
        super().__init__("HTTP 410 Gone: feed disabled")


class RunSession(requests.Session):
    """A session for one run. What the environment says about a host (proxies, no_proxy, the
    CA bundle) is looked up once per host and run rather than on every request: requests
    reads and lower-cases the whole environment each time, a third of a millisecond."""

    def __init__(self) -> None:
        super().__init__()
        self._environment: dict[tuple[str, str, Any], dict[str, Any]] = {}

    def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any,
                                   cert: Any) -> dict[str, Any]:
        if proxies or verify is not None or cert is not None:
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc, stream)
        if key not in self._environment:
            self._environment[key] = super().merge_environment_settings(url, proxies, stream, verify, cert)
        settings = self._environment[key]
        return {**settings, "proxies": dict(settings["proxies"])}


def make_session(cfg: Config) -> requests.Session:
    """One session per run: connection reuse and one User-Agent for every request."""
    session = RunSession()
    session.headers["User-Agent"] = cfg.collect.user_agent
    session.headers["Accept"] = ACCEPT
    session.headers["Accept-Encoding"] = "gzip, deflate"
    # pool_connections is how many hosts keep their pool: enough for every publisher of a
    # run, so a connection is not torn down and redone when hosts outnumber the workers.
    adapter = HTTPAdapter(pool_connections=256, pool_maxsize=max(10, cfg.collect.workers), max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def is_http(url: str) -> bool:
    return urlsplit(url).scheme in ("http", "https")


def local_path(cfg: Config, url: str) -> Path:
    return cfg.path(url[len("file://"):] if url.startswith("file://") else url)


def fetch(session: requests.Session, url: str, cfg: Config, etag: str | None = None,
          last_modified: str | None = None, guard: Callable[[str], None] | None = None) -> FetchResult:
    """Fetch one feed or page, honouring timeouts, a size cap and conditional GET.

    `guard` is called with every URL before it is requested (first and each redirect) and
    raises to refuse it.
    """
    if not is_http(url):
        return _read_local(cfg, url)
    headers = {}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    deadline = time.monotonic() + cfg.collect.total_timeout
    current, seen, moved_to, permanent_so_far = url, [url], None, True
    for _hop in range(cfg.collect.max_redirects + 1):
        if guard:
            guard(current)
        resp = _get(session, current, headers, cfg)
        if resp.status_code not in REDIRECTS or not resp.headers.get("Location"):
            return _finish(resp, url, current, moved_to, cfg, deadline)
        resp.close()
        target = urljoin(current, resp.headers["Location"])
        if not is_http(target):
            raise FetchError(f"redirect to a non-HTTP URL: {target[:200]}")
        permanent_so_far = permanent_so_far and resp.status_code in PERMANENT
        if permanent_so_far:
            moved_to = target
        if target in seen:
            raise FetchError(f"redirect loop: {' -> '.join(seen[-3:])} -> {target}"[:500])
        seen.append(target)
        current = target
    raise FetchError(f"too many redirects (more than {cfg.collect.max_redirects})")


def _read_local(cfg: Config, url: str) -> FetchResult:
    path = local_path(cfg, url)
    try:
        with path.open("rb") as fh:
            body = fh.read(cfg.collect.max_bytes + 1)
    except OSError as exc:
        raise FetchError(f"cannot read {path}: {exc.strerror}") from exc
    if len(body) > cfg.collect.max_bytes:
        raise FetchError(f"file is over the {cfg.collect.max_bytes}-byte cap")
    return FetchResult(url=url, status=200, body=body)


def _get(session: requests.Session, url: str, headers: dict[str, str], cfg: Config) -> requests.Response:
    try:
        return session.get(url, headers=headers, stream=True, allow_redirects=False,
                           timeout=(cfg.collect.connect_timeout, cfg.collect.read_timeout))
    except requests.Timeout as exc:
        raise FetchError(f"timed out ({exc.__class__.__name__})") from exc
    except requests.ConnectionError as exc:
        raise FetchError(f"cannot connect to {urlsplit(url).netloc}: {_root_cause(exc)}") from exc
    except requests.RequestException as exc:
        raise FetchError(f"request failed: {exc.__class__.__name__}: {str(exc)[:300]}") from exc


def _root_cause(exc: Exception) -> str:
    """'[Errno 111] Connection refused' rather than urllib3's three nested reprs."""
    text = str(getattr(exc.args[0], "reason", None) or exc) if exc.args else str(exc)
    start = text.find("[Errno")
    return (text[start:].rstrip(")'\"") if start != -1 else text)[:300]


def _finish(resp: requests.Response, url: str, final: str, moved_to: str | None, cfg: Config,
            deadline: float) -> FetchResult:
    with resp:
        if resp.status_code == 410:
            raise FetchGone()
        if resp.status_code >= 400 or resp.status_code in REDIRECTS:
            raise FetchError(f"HTTP {resp.status_code} {resp.reason or ''}".strip())
        headers = {k: v for k, v in resp.headers.items() if k.lower() not in _TRANSFER_HEADERS}
        result = FetchResult(url=url, status=resp.status_code, headers=headers, final_url=final,
                             permanent_redirect=moved_to is not None, moved_to=moved_to)
        if resp.status_code == 304:
            return result
        result.body = _read_capped(resp, cfg.collect.max_bytes, deadline)
    return result


def _read_capped(resp: requests.Response, cap: int, deadline: float) -> bytes:
    """Stream the body, stopping at `cap` bytes (after decompression: no gzip bombs) or at
    the deadline. read1 returns whatever has arrived, so the deadline is checked as bytes
    trickle in: a server sending one byte per second never trips the read timeout."""
    declared = resp.headers.get("Content-Length")
    if declared and declared.isdigit() and int(declared) > cap and "Content-Encoding" not in resp.headers:
        raise FetchError(f"body of {declared} bytes is over the {cap}-byte cap")
    chunks: list[bytes] = []
    size = 0
    try:
        while chunk := resp.raw.read1(64 * 1024, decode_content=True):
            size += len(chunk)
            if size > cap:
                raise FetchError(f"body is over the {cap}-byte cap")
            if time.monotonic() > deadline:
                raise FetchError("timed out: the whole response took too long")
            chunks.append(chunk)
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
        if isinstance(exc, urllib3.exceptions.ReadTimeoutError | TimeoutError):
            raise FetchError("timed out reading the body") from exc
        raise FetchError(f"reading the body failed: {exc.__class__.__name__}: {str(exc)[:200]}") from exc
    return b"".join(chunks)
