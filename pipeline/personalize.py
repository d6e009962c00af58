"""Per-recipient values without re-rendering: a rendered template is split once at its
placeholders, and each recipient only costs a join.

Placeholders carry a random per-issue key, so text in an article that imitates a
placeholder is never substituted.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass

# The per-recipient values a template may use.
FIELDS = ("unsubscribe_url", "preferences_url", "name", "email")


def new_key() -> str:
    return secrets.token_hex(5).upper()


def token(key: str, field: str) -> str:
    """Upper-case letters and digits only: survives HTML escaping, premailer, URL encoding
    and quoted-printable unchanged."""
    return f"KPD{key}Z{field.replace('_', '').upper()}Z"


@dataclass(frozen=True)
class Placeholders:
    """What templates see as `recipient`: each attribute renders as its placeholder token."""

    key: str

    def __getattr__(self, field: str) -> str:
        if field in FIELDS:
            return token(self.key, field)
        raise AttributeError(field)

    def pattern(self) -> re.Pattern[str]:
        names = "|".join(f.replace("_", "").upper() for f in FIELDS)
        return re.compile(rf"KPD{re.escape(self.key)}Z({names})Z")

    def field_of(self, match_name: str) -> str:
        return next(f for f in FIELDS if f.replace("_", "").upper() == match_name)


class Personalizer:
    """A template string compiled into literal parts and slots."""

    __slots__ = ("literals", "slots")

    def __init__(self, template: str, key: str) -> None:
        ph = Placeholders(key)
        self.literals: list[str] = []
        self.slots: list[str] = []
        pos = 0
        for m in ph.pattern().finditer(template):
            self.literals.append(template[pos:m.start()])
            self.slots.append(ph.field_of(m.group(1)))
            pos = m.end()
        self.literals.append(template[pos:])

    def fill(self, values: Mapping[str, str], escape: Callable[[str], str] | None = None) -> str:
        """The template with each slot replaced by its (optionally escaped) value."""
        out = [self.literals[0]]
        for slot, lit in zip(self.slots, self.literals[1:], strict=True):
            v = values.get(slot, "")
            out.append(escape(v) if escape else v)
            out.append(lit)
        return "".join(out)

    def substitute(self, mapping: Mapping[str, str]) -> str:
        """Replace slots with fixed strings, e.g. a provider's own variable syntax."""
        return self.fill(mapping)
