"""The webhook provider contract and the event model every provider's verifier returns.

A provider checks a request its own way (basic auth, a signature, a certificate) and turns
the body into `Event`s; what an event does to a subscriber is decided once, in `apply`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from core.context import Context
from core.errors import InvalidInput, KpdigestError
from subscribers.ratelimit import hit


class WebhookRefused(KpdigestError):
    """Verification failed or cannot finish yet; `status` is the HTTP answer (401, 403, or
    429 with `retry_after` seconds when the provider should try again later)."""

    def __init__(self, status: int, message: str, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class Malformed(InvalidInput):
    """The body is not JSON, too deep, too large, or not the provider's documented shape."""


@dataclass
class Event:
    event_id: str
    # hard_bounce | soft_bounce | complaint | unsubscribe | delivered | subscription | other
    kind: str
    email: str | None
    payload: str


class Provider(ABC):
    """One mail provider's webhook: how it is verified, and how its body becomes events.

    `secrets` are the KPDIGEST_* environment variables it needs (lower case, without the
    prefix); `verification` and `replay` are the rules the docs' table shows.
    """

    name: ClassVar[str]
    secrets: ClassVar[tuple[str, ...]] = ()
    verification: ClassVar[str] = ""
    replay: ClassVar[str] = ""
    secret_note: ClassVar[str] = ""  # e.g. the secret's format, after the variable names

    @abstractmethod
    def verify(self, ctx: Context, headers: Mapping[str, str], body: bytes,
               secure: bool) -> list[Event]:
        """The request's events, or WebhookRefused / InvalidInput before anything is stored."""


MAX_DEPTH = 32  # the providers' documented events nest 5 levels at most
MAX_BYTES = 4 * 1024 * 1024  # a library-side bound; the web app's limit is lower


def nesting(value: Any, limit: int = MAX_DEPTH) -> int:
    """How deep a parsed value nests (a scalar 0, `[]` 1), level by level without
    recursion; stops counting past `limit`."""
    depth, level = 0, [value]
    while True:
        containers = [v for v in level if isinstance(v, dict | list)]
        if not containers or depth > limit:
            return depth
        depth += 1
        level = [c for v in containers for c in (v.values() if isinstance(v, dict) else v)]


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(body: bytes | str, max_depth: int = MAX_DEPTH, max_bytes: int = MAX_BYTES) -> Any:
    """JSON within bounds, or Malformed (a 400): the size is checked before parsing, the
    parser's own recursion guard stops a deep body early (1 MB of `[` is refused in well
    under a millisecond), and what parses may nest `max_depth` levels at most."""
    if len(body) > max_bytes:
        raise Malformed(f"the body is larger than {max_bytes} bytes")
    try:
        text = body.decode("utf-8") if isinstance(body, bytes) else body
    except UnicodeDecodeError as exc:
        raise Malformed("the body is not UTF-8") from exc
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except RecursionError as exc:
        raise Malformed(f"the JSON nests deeper than {max_depth} levels") from exc
    except ValueError as exc:
        raise Malformed("the body is not JSON") from exc
    if nesting(value, max_depth) > max_depth:
        raise Malformed(f"the JSON nests deeper than {max_depth} levels")
    return value


def secret(ctx: Context, name: str) -> str:
    value = ctx.config.secret(name, required=False)
    if not value:
        raise WebhookRefused(403, f"KPDIGEST_{name.upper()} is not set: this webhook is disabled")
    return value


def fresh(ctx: Context, timestamp: str | int | float, max_age: int | None = None) -> None:
    try:
        ts = float(timestamp)
    except (TypeError, ValueError, OverflowError) as exc:
        raise WebhookRefused(403, "bad timestamp") from exc
    limit = max_age or ctx.config.webhooks.max_age_seconds
    if not math.isfinite(ts) or abs(time.time() - ts) > limit:  # NaN compares false: refuse
        raise WebhookRefused(403, "stale timestamp: a replayed or delayed request")


def same(expected: str, given: str) -> bool:
    """Constant-time comparison that any text can go through (non-ASCII included)."""
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace"))


def once(ctx: Context, key: str, what: str) -> None:
    """Refuse a signed request seen before inside the replay window (a byte-for-byte replay;
    providers sign each retry anew, and a retry of a stored event is a duplicate anyway)."""
    window = 2 * max(ctx.config.webhooks.max_age_seconds, ctx.config.webhooks.sns_max_age_seconds)
    if not hit(ctx, f"webhook-once:{digest(key)}", 1, window):
        raise WebhookRefused(403, f"replayed {what}")


def digest(*parts: Any) -> str:
    return hashlib.sha256("\x00".join(str(p) for p in parts).encode()).hexdigest()[:40]


def dump(value: Any) -> str:
    return json.dumps(value, sort_keys=True)
