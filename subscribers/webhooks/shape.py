"""Small checks of a provider's JSON shape: each names the field that is wrong.

Every value read from a body goes through one of these before a verifier acts on it, so a
number where text belongs, a list where an object belongs or a missing field is a 400 that
names the field, never a TypeError deep inside.
"""

from __future__ import annotations

from typing import Any

from subscribers.webhooks.base import Malformed

MAX_TEXT = 2000  # ids, addresses, types: far longer than any provider sends
MAX_EVENTS = 10_000  # SendGrid batches are the largest, at most a few thousand events


def obj(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Malformed(f"{where}: expected an object")
    return value


def opt_obj(d: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    """An optional nested object; absent or null reads as empty."""
    value = d.get(key)
    return {} if value is None else obj(value, f"{where}.{key}")


def objects(value: Any, where: str, single: bool = True) -> list[dict[str, Any]]:
    """A list of objects (or, when `single`, one object standing for a list of one)."""
    if single and isinstance(value, dict):
        return [value]
    if not isinstance(value, list):
        raise Malformed(f"{where}: expected a list of objects")
    if len(value) > MAX_EVENTS:
        raise Malformed(f"{where}: more than {MAX_EVENTS} events")
    return [obj(v, f"{where}[{i}]") for i, v in enumerate(value)]


def text(d: dict[str, Any], key: str, where: str, required: bool = False) -> str | None:
    value = d.get(key)
    if value is None:
        if required:
            raise Malformed(f"{where}.{key}: missing")
        return None
    if not isinstance(value, str) or len(value) > MAX_TEXT or "\x00" in value:
        raise Malformed(f"{where}.{key}: expected text")
    if required and not value:
        raise Malformed(f"{where}.{key}: empty")
    return value


def need(d: dict[str, Any], key: str, where: str) -> str:
    return text(d, key, where, required=True) or ""  # required: never None or empty


def ident(d: dict[str, Any], key: str, where: str) -> str | None:
    """An id that providers send as text or as an integer."""
    value = d.get(key)
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return text(d, key, where)


def flag(d: dict[str, Any], key: str, where: str) -> bool:
    value = d.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise Malformed(f"{where}.{key}: expected true or false")
    return value


def texts(d: dict[str, Any], key: str, where: str) -> list[str]:
    """A list of text, or one text standing for a list of one; absent reads as empty."""
    value = d.get(key)
    if value is None:
        return []
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or len(items) > MAX_EVENTS:
        raise Malformed(f"{where}.{key}: expected a list of text")
    for i, v in enumerate(items):
        if not isinstance(v, str) or len(v) > MAX_TEXT or "\x00" in v:
            raise Malformed(f"{where}.{key}[{i}]: expected text")
    return items
