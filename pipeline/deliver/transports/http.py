"""What the HTTP providers share: one keep-alive session per sender thread, the mapping of
network failures and status codes onto the ledger's outcomes, and JSON bodies filled per
recipient without re-encoding the digest.

Failure mapping, the same for every provider:
- about our configuration, not a recipient (401/403, a sender domain not verified, a host
  that does not resolve or refuses connections, a TLS failure) -> AccountError: the
  issue stops at once, nobody's attempts spent;
- the connection could not be opened in time: nothing was handed over -> RetryBatch;
- 429 and 5xx: refused for now -> RetryBatch with the provider's own retry signal;
- a timeout or a reset after the request went out: maybe accepted -> UnknownOutcome;
- any other 4xx: refused for good -> each recipient `failed` with the provider's reason.
"""

from __future__ import annotations

import html
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import MaxRetryError, NameResolutionError

from core.config import Config
from core.errors import AccountError, ConfigError, TransportError
from pipeline.compose.message import Recipient, address
from pipeline.compose.personalize import Personalizer
from pipeline.compose.prepare import PreparedVariant
from pipeline.deliver.transports.base import Outcome, RetryBatch, Transport, UnknownOutcome

# ASCII-only JSON: strings stay one byte per character in memory and encode for free.
_json_str = json.JSONEncoder(ensure_ascii=True).encode
CONNECT_TIMEOUT = 5.0  # seconds; a provider that cannot be reached is retried later


def json_escape(value: str) -> str:
    """The inside of a JSON string literal for `value`."""
    return _json_str(value)[1:-1]


class JsonFiller:
    """A Personalizer whose literal parts are JSON-escaped once, so a recipient's body
    costs a join of pre-escaped parts and the escaping of a few short values."""

    __slots__ = ("bparts", "escape", "parts", "slots")

    def __init__(self, p: Personalizer, escape: Callable[[str], str] | None = None) -> None:
        self.slots = list(p.slots)
        self.escape = escape
        self.parts = ['"' + json_escape(p.literals[0])]
        for lit in p.literals[1:]:
            self.parts += ["", json_escape(lit)]
        self.parts[-1] += '"'
        self.bparts = [part.encode("ascii") for part in self.parts]

    def fill(self, values: dict[str, str]) -> str:
        """A complete JSON string literal (quotes included)."""
        parts = self.parts.copy()
        esc = self.escape
        for i, slot in enumerate(self.slots):
            v = values.get(slot, "")
            parts[2 * i + 1] = json_escape(esc(v) if esc else v)
        return "".join(parts)

    def fill_bytes(self, values: dict[str, str]) -> list[bytes]:
        """The same literal as ASCII byte pieces, for a caller that joins a whole message
        once (a 20 KB body is then copied once, not three times)."""
        parts = self.bparts.copy()
        esc = self.escape
        for i, slot in enumerate(self.slots):
            v = values.get(slot, "")
            parts[2 * i + 1] = _json_str(esc(v) if esc else v)[1:-1].encode("ascii")
        return parts


class Fillers:
    """JSON fillers for a variant's HTML (values HTML-escaped) and text, built once."""

    def __init__(self) -> None:
        self._cache: dict[tuple[int, str], tuple[JsonFiller, JsonFiller]] = {}
        self._lock = threading.Lock()

    def get(self, variant: PreparedVariant) -> tuple[JsonFiller, JsonFiller]:
        key = (variant.issue_id, variant.variant)
        with self._lock:
            if key not in self._cache:
                self._cache[key] = (JsonFiller(variant.html, html.escape), JsonFiller(variant.text))
            return self._cache[key]


_PLAIN_NAME = re.compile(r"[A-Za-z0-9 _-]+\Z")


def to_address(name: str, email: str) -> str:
    """`Name <email>`: a fast path for plain names, RFC 5322 quoting/encoding otherwise."""
    if not name:
        return email
    if _PLAIN_NAME.match(name):
        return f"{name} <{email}>"
    return address(name, email)


class PerVariant:
    """What a transport computes once per issue variant: the recipient-independent part
    of every message, pre-encoded."""

    def __init__(self, build: Callable[[PreparedVariant], Any]) -> None:
        self.build = build
        self._cache: dict[tuple[int, str], Any] = {}
        self._lock = threading.Lock()

    def get(self, variant: PreparedVariant) -> Any:
        key = (variant.issue_id, variant.variant)
        with self._lock:
            if key not in self._cache:
                self._cache[key] = self.build(variant)
            return self._cache[key]


def fixed_headers(variant: PreparedVariant) -> dict[str, str]:
    """The digest headers that do not depend on the recipient (all but List-Unsubscribe)."""
    probe = Recipient(0, "probe@example.com", "", "https://probe.invalid/u", "https://probe.invalid/p")
    return {k: v for k, v in variant.headers_for(probe).items() if k != "List-Unsubscribe"}


def json_str(value: str) -> str:
    """A complete JSON string literal."""
    return _json_str(value)


class JsonArray:
    """A request body that is a JSON array of pre-encoded items, streamed item by item:
    a 500-message batch is never joined into one more copy of itself. `separated`: every
    item but the first already starts with its comma."""

    def __init__(self, items: list[bytes], separated: bool = False) -> None:
        self.items = items
        self.separated = separated
        self.length = 2 + sum(len(i) for i in items) + (0 if separated else max(0, len(items) - 1))

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[bytes]:
        yield b"["
        if self.separated:
            yield from self.items
        else:
            for i, item in enumerate(self.items):
                yield (b"," + item) if i else item
        yield b"]"


def retry_after_header(resp: requests.Response, name: str = "Retry-After") -> float | None:
    """Seconds from a Retry-After-style header: delta seconds or an HTTP date."""
    value = resp.headers.get(name)
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def reason(resp: requests.Response) -> str:
    """A short, single-line reason from an error response."""
    text = resp.text[:300].replace("\n", " ").strip()
    return f"HTTP {resp.status_code}: {text}" if text else f"HTTP {resp.status_code}"


class HttpTransport(Transport):
    """Base of the HTTP API transports."""

    secret_name: ClassVar[str] = ""

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        base = self.options.get("base_url")
        if not base:
            raise ConfigError(f"transport.{self.name}.base_url: required setting is missing")
        self.base_url = str(base).rstrip("/")
        self.timeout = (CONNECT_TIMEOUT, float(self.options.get("timeout", 60.0)))
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()
        self.fillers = Fillers()
        self.fixed = PerVariant(self.fixed_part)

    def fixed_part(self, variant: PreparedVariant) -> Any:
        """The recipient-independent part of a message, pre-encoded once per variant."""
        return None

    def secret(self) -> str:
        return self.cfg.secret(self.secret_name) or ""

    @property
    def session(self) -> requests.Session:
        s = getattr(self._local, "session", None)
        if s is None:
            s = requests.Session()
            s.trust_env = False  # never route provider calls through an environment proxy
            s.mount("http://", HTTPAdapter(pool_connections=1, pool_maxsize=1, max_retries=0))
            s.mount("https://", HTTPAdapter(pool_connections=1, pool_maxsize=1, max_retries=0))
            s.headers.update(self.auth_headers())
            self._local.session = s
            with self._lock:
                self._sessions.append(s)
        return s

    def auth_headers(self) -> dict[str, str]:
        return {}

    def close(self) -> None:
        with self._lock:
            for s in self._sessions:
                s.close()
            self._sessions.clear()
        self._local = threading.local()

    def retry_after(self, resp: requests.Response) -> float | None:
        """The provider's rate-limit signal; Retry-After unless a transport knows better."""
        return retry_after_header(resp)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        """POST and map failures: RetryBatch (nothing accepted) or UnknownOutcome."""
        url = self.base_url + path
        try:
            resp = self.session.post(url, timeout=self.timeout, **kwargs)
        except requests.exceptions.SSLError as exc:
            raise AccountError(f"{self.name}: TLS failure talking to {self.base_url}: "
                               f"{_root(exc)}") from exc
        except requests.ConnectTimeout as exc:
            raise RetryBatch(f"{self.name}: could not connect: {exc}") from exc
        except requests.ConnectionError as exc:
            unreachable = _unreachable(exc)
            if unreachable:
                raise AccountError(f"{self.name}: {unreachable} ({self.base_url}): "
                                   f"check transport.{self.name}.base_url and the network") from exc
            if _never_connected(exc):
                raise RetryBatch(f"{self.name}: could not connect: {exc}") from exc
            raise UnknownOutcome(f"{self.name}: connection lost after hand-off: {exc}") from exc
        except requests.Timeout as exc:
            raise UnknownOutcome(f"{self.name}: no answer in {self.timeout[1]}s: {exc}") from exc
        if resp.status_code == 429 or resp.status_code >= 500:
            raise RetryBatch(f"{self.name}: {reason(resp)}", self.retry_after(resp))
        if resp.status_code in (401, 403) or (400 <= resp.status_code < 500
                                              and NOT_VERIFIED.search(resp.text[:2000])):
            raise AccountError(f"{self.name}: {reason(resp)} (check KPDIGEST_"
                               f"{self.secret_name.upper()} and the sender domain)")
        return resp

    def search(self, path: str, params: dict[str, Any]) -> Any:
        """GET a provider's search API and return its JSON; TransportError otherwise."""
        try:
            resp = self.session.get(self.base_url + path, params=params, timeout=self.timeout)
        except requests.RequestException as exc:
            raise TransportError(f"{self.name}: could not ask the provider: {_root(exc)}") from exc
        if resp.status_code != 200:
            raise TransportError(f"{self.name}: {path}: {reason(resp)}")
        try:
            return resp.json()
        except ValueError as exc:
            raise TransportError(f"{self.name}: {path}: unreadable answer") from exc

    def all_failed(self, recipients: list[Recipient], resp: requests.Response) -> list[Outcome]:
        """A 4xx other than 429: the provider refused the batch for good."""
        why = f"{self.name}: {reason(resp)}"
        return [Outcome(r.delivery_id, "failed", error=why) for r in recipients]

    def single_failed(self, resp: requests.Response) -> TransportError:
        return TransportError(f"{self.name}: {reason(resp)}")


# A 4xx that is about the sending domain or identity, not the recipient.
NOT_VERIFIED = re.compile(r"not (?:yet )?verified|unverified|sender signature|sender identity"
                          r"|domain not found|not allowed to send", re.I)


def _root(exc: BaseException) -> str:
    """The innermost cause's message: what actually went wrong, on one line."""
    while exc.__cause__ is not None or exc.__context__ is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return str(exc).replace("\n", " ")[:300]


def _unreachable(exc: requests.ConnectionError) -> str | None:
    """'does not resolve' / 'refuses connections' when the provider's host cannot be
    reached for a reason waiting will not fix; None for anything else."""
    inner = exc.args[0] if exc.args else None
    cause = inner.reason if isinstance(inner, MaxRetryError) else inner
    if isinstance(cause, NameResolutionError) or isinstance(
            getattr(cause, "__context__", None), socket.gaierror):
        return "the host does not resolve"
    if isinstance(getattr(cause, "__context__", None), ConnectionRefusedError) or \
            "Connection refused" in str(cause):
        return "the host refuses connections"
    return None


def _never_connected(exc: requests.ConnectionError) -> bool:
    from urllib3.exceptions import MaxRetryError, NewConnectionError

    inner = exc.args[0] if exc.args else None
    return isinstance(inner, MaxRetryError) and isinstance(inner.reason, NewConnectionError)


def plain_parts(message: EmailMessage) -> tuple[str, str]:
    """The text and HTML bodies of a transactional message (either may be empty)."""
    text = message.get_body(("plain",))
    body_html = message.get_body(("html",))
    return (text.get_content() if text else "", body_html.get_content() if body_html else "")
