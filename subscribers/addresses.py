"""Address validation and normalisation: one spelling per mailbox, so uniqueness holds."""

from __future__ import annotations

from email_validator import EmailNotValidError, validate_email

from kpdigest.errors import InvalidInput


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
