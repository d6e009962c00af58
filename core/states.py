"""Named states: every state column and derived state as a StrEnum, in one place.

A StrEnum member is its own string value, so rows read back from the database compare
equal to members and values stay readable in SQL. Each state column has a CHECK
constraint built from these members (see `check_constraint`), so the database refuses a
misspelt state too.
"""

from __future__ import annotations

from enum import StrEnum


class IssueStatus(StrEnum):
    """draft -> frozen -> sending -> sent; paused, cancelled; skipped (no content)."""

    DRAFT = "draft"
    FROZEN = "frozen"
    SENDING = "sending"
    SENT = "sent"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"


class DeliveryState(StrEnum):
    """queued -> sending -> sent | failed | unknown | suppressed."""

    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    UNKNOWN = "unknown"
    SUPPRESSED = "suppressed"


class QueueState(StrEnum):
    """An editor queue item: queued -> approved -> used; or rejected."""

    QUEUED = "queued"
    APPROVED = "approved"
    REJECTED = "rejected"
    USED = "used"


class SubscriptionStatus(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    PAUSED = "paused"
    UNSUBSCRIBED = "unsubscribed"


class OutboundKind(StrEnum):
    """What the lane sends (or, for a sign-up, first records and then sends)."""

    SIGNUP = "signup"
    CONFIRM = "confirm"
    PREFERENCES = "preferences"
    EXPORT = "export"
    ERASE = "erase"
    WELCOME = "welcome"
    TEST_WELCOME = "test-welcome"


class OutboundState(StrEnum):
    """queued -> sending -> sent | failed | unknown | dropped (nobody left to mail)."""

    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    UNKNOWN = "unknown"
    DROPPED = "dropped"


class SuppressionReason(StrEnum):
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"
    ERASED = "erased"
    MANUAL = "manual"


class FeedState(StrEnum):
    """A feed's health, derived from its row (no column of its own)."""

    OK = "ok"
    FAILING = "failing"
    BACKING_OFF = "backing off"
    PAUSED = "paused"
    DISABLED = "disabled"
    NEW = "new"


class JobOutcome(StrEnum):
    """How one run of a scheduled job ended (`job_runs.result`); `running` while it runs."""

    RUNNING = "running"
    OK = "ok"
    SKIPPED = "skipped"
    FAILED = "failed"


class Origin(StrEnum):
    """Where an article came from, and who picked it for an issue."""

    FEED = "feed"
    EDITOR = "editor"


def check_constraint(column: str, states: type[StrEnum]) -> str:
    """The SQL of a CHECK constraint that admits exactly the enum's values."""
    values = ", ".join(f"'{s.value}'" for s in states)
    return f"{column} IN ({values})"
