"""Per-recipient values without re-rendering: a rendered template is split once at its
placeholders, and each recipient only costs a join.

Placeholders carry a random per-issue key, so text in an article that imitates a
placeholder is never substituted (and `defuse` breaks the rare text that carries the
real key before it reaches a template).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass

# The per-recipient values a template may use. `greeting` is a whole phrase ("Hello Ann,"
# or "Hello,") so that a template never shows a dangling comma for a reader without a name.
FIELDS = ("unsubscribe_url", "preferences_url", "name", "email", "greeting")
_NAMES = {f.replace("_", "").upper(): f for f in FIELDS}


def new_key() -> str:
    return secrets.token_hex(5).upper()


def token(key: str, field: str) -> str:
    """Upper-case letters and digits only: survives HTML escaping, premailer, URL encoding
    and quoted-printable unchanged."""
    return f"KPD{key}Z{field.replace('_', '').upper()}Z"


def defuse(text: str, key: str) -> str:
    """Article text can never become a slot: the case-sensitive prefix is lowered."""
    marker = f"KPD{key}"
    return text.replace(marker, f"kpd{key}") if marker in text else text


@dataclass(frozen=True)
class Placeholders:
    """What templates see as `recipient`: each attribute renders as its placeholder token."""

    key: str

    def __getattr__(self, field: str) -> str:
        if field in FIELDS:
            return token(self.key, field)
        raise AttributeError(field)

    def pattern(self) -> re.Pattern[str]:
        return re.compile(rf"KPD{re.escape(self.key)}Z({'|'.join(_NAMES)})Z")

    def field_of(self, match_name: str) -> str:
        return _NAMES[match_name]


class Personalizer:
    """A template string compiled into literal parts and slots.

    `fill` escapes each distinct value once and joins a pre-sized list: a few
    microseconds for a whole digest body.
    """

    __slots__ = ("_parts", "fields", "literals", "slots")

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
        self.fields = tuple(dict.fromkeys(self.slots))
        # Interleaved literals and slot positions; slot positions are filled per recipient.
        self._parts: list[str] = [self.literals[0]]
        for lit in self.literals[1:]:
            self._parts += ["", lit]

    def fill(self, values: Mapping[str, str], escape: Callable[[str], str] | None = None) -> str:
        """The template with each slot replaced by its (optionally escaped) value."""
        if escape is None:
            done = {f: values.get(f, "") for f in self.fields}
        else:
            done = {f: escape(values.get(f, "")) for f in self.fields}
        parts = self._parts.copy()
        for i, slot in enumerate(self.slots):
            parts[2 * i + 1] = done[slot]
        return "".join(parts)

    def substitute(self, mapping: Mapping[str, str]) -> str:
        """Replace slots with fixed strings, e.g. a provider's own variable syntax."""
        return self.fill(mapping)
