"""The webhook provider contract and the event model every provider's verifier returns.

A provider checks a request its own way (basic auth, a signature, a certificate) and turns
the body into `Event`s; what an event does to a subscriber is decided once, in `apply`.
"""

from __future__ import annotations

import hashlib
import json
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from core.context import Context
from core.errors import InvalidInput, KpdigestError


class WebhookRefused(KpdigestError):
    """Verification failed; `status` is the HTTP answer (401 or 403)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Event:
    event_id: str
    # hard_bounce | soft_bounce | complaint | unsubscribe | delivered | subscription | other
    kind: str
    email: str | None
    payload: str


class Provider(ABC):
    """One mail provider's webhook: how it is verified, and how its body becomes events.

    `secrets` are the KPDIGEST_* environment variables it needs; `verification` and
    `replay` are the one-line rules the docs' table shows.
    """

    name: ClassVar[str]
    secrets: ClassVar[tuple[str, ...]] = ()
    verification: ClassVar[str] = ""
    replay: ClassVar[str] = ""

    @abstractmethod
    def verify(self, ctx: Context, headers: Mapping[str, str], body: bytes,
               secure: bool) -> list[Event]:
        """The request's events, or WebhookRefused / InvalidInput before anything is stored."""


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput("the body is not JSON") from exc


def secret(ctx: Context, name: str) -> str:
    value = ctx.config.secret(name, required=False)
    if not value:
        raise WebhookRefused(403, f"KPDIGEST_{name.upper()} is not set: this webhook is disabled")
    return value


def fresh(ctx: Context, timestamp: str | int | float, max_age: int | None = None) -> None:
    try:
        ts = float(timestamp)
    except (TypeError, ValueError) as exc:
        raise WebhookRefused(403, "bad timestamp") from exc
    if abs(time.time() - ts) > (max_age or ctx.config.webhooks.max_age_seconds):
        raise WebhookRefused(403, "stale timestamp: a replayed or delayed request")


def digest(*parts: Any) -> str:
    return hashlib.sha256("\x00".join(str(p) for p in parts).encode()).hexdigest()[:40]


def dump(value: Any) -> str:
    return json.dumps(value, sort_keys=True)
