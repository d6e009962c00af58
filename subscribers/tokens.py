"""Signed tokens bound to a subscriber and a purpose (unsubscribe, preferences, confirm...).

The purpose is the itsdangerous salt, so a preferences token can never be replayed as an
unsubscribe or confirm token. Unsubscribe tokens never expire (RFC 8058 links live in old
mail); time-limited purposes are checked with `max_age`.
"""

from __future__ import annotations

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from core.errors import InvalidInput

PURPOSES = ("unsubscribe", "preferences", "confirm", "export", "erase", "archive")


class InvalidToken(InvalidInput):
    """A token that is forged, for another purpose, or expired."""


def _serializer(secret: str, purpose: str) -> URLSafeTimedSerializer:
    if purpose not in PURPOSES:
        raise ValueError(f"unknown token purpose {purpose!r}")
    return URLSafeTimedSerializer(secret, salt=f"kpdigest.{purpose}")


def make_token(secret: str, purpose: str, subscriber_id: int) -> str:
    return _serializer(secret, purpose).dumps(int(subscriber_id))


def read_token(secret: str, purpose: str, token: str, max_age: int | None = None) -> int:
    """The subscriber id inside a valid token, else InvalidToken."""
    try:
        value = _serializer(secret, purpose).loads(token, max_age=max_age)
    except SignatureExpired as exc:
        raise InvalidToken("this link has expired") from exc
    except BadSignature as exc:
        raise InvalidToken("this link is not valid") from exc
    if not isinstance(value, int):
        raise InvalidToken("this link is not valid")
    return value


def link(base_url: str, secret: str, purpose: str, subscriber_id: int) -> str:
    """The public URL carrying a token, e.g. https://site/unsubscribe/<token>."""
    return f"{base_url.rstrip('/')}/{purpose}/{make_token(secret, purpose, subscriber_id)}"
