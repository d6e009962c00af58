"""Address validation and normalisation: one spelling per mailbox, so uniqueness holds."""

from __future__ import annotations

import re
from functools import lru_cache

from email_validator import EmailNotValidError, validate_email

from core.errors import InvalidInput


def normalize_email(raw: str) -> str:
    """Validate syntax (no DNS) and return the case-folded, IDNA-normalised address."""
    candidate = (raw or "").strip()
    if not candidate:
        raise InvalidInput("empty email address")
    try:
        info = validate_email(candidate, check_deliverability=False, allow_smtputf8=True)
    except EmailNotValidError as exc:
        raise InvalidInput(f"invalid email address {candidate!r}: {exc}") from exc
    return info.normalized.lower()


# A plain ASCII dot-atom local part: every address of this shape is valid syntax, so only
# its domain needs the validator, and a domain is checked once per import.
_PLAIN = re.compile(r"^([A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*)"
                    r"@([A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)$")


@lru_cache(maxsize=65536)
def _domain(domain: str) -> str:
    """The normalised domain as email-validator decides it (raises InvalidInput)."""
    return normalize_email(f"x@{domain}").rpartition("@")[2]


def normalize_fast(raw: str) -> str:
    """`normalize_email` for bulk imports: same answers, the validator runs once per domain.

    Addresses outside the plain ASCII shape (quoted, internationalised) take the full path.
    """
    candidate = (raw or "").strip()
    m = _PLAIN.match(candidate)
    if m is None or len(m.group(1)) > 64 or len(candidate) > 254:
        return normalize_email(candidate)
    try:
        domain = _domain(m.group(2).lower())
    except InvalidInput as exc:
        raise InvalidInput(f"invalid email address {candidate!r}: {str(exc).partition(': ')[2]}") from exc
    return f"{m.group(1).lower()}@{domain}"
