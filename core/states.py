"""Named states: every state column and derived state as a StrEnum, in one place.

A StrEnum member is its own string value, so rows read back from the database compare
equal to members and values stay readable in SQL. Each state column has a CHECK
constraint built from these members (see `check_constraint`), so the database refuses a
misspelt state too.
"""

from __future__ import annotations

from enum import StrEnum


class IssueStatus(StrEnum):
    """draft -> frozen -> sending -> one of the four outcomes; paused, cancelled; skipped.

    The outcome says what happened: `sent` (everyone accepted or suppressed), `sent with
    failures` (some refused), `needs attention` (some `unknown`: nobody knows whether
    they got it), `failed` (nothing accepted, or a configuration error stopped it).
    """

    DRAFT = "draft"
    FROZEN = "frozen"
    SENDING = "sending"
    SENT = "sent"
    SENT_WITH_FAILURES = "sent with failures"
    NEEDS_ATTENTION = "needs attention"
    FAILED = "failed"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"


SENDABLE = (IssueStatus.FROZEN, IssueStatus.SENDING)  # a sender may claim
# Finished: the issue went out (to some at least); the archive shows it.
DELIVERED = (IssueStatus.SENT, IssueStatus.SENT_WITH_FAILURES, IssueStatus.NEEDS_ATTENTION)
FINISHED = (*DELIVERED, IssueStatus.FAILED)


class DeliveryState(StrEnum):
    """queued -> sending (claimed) -> posted (the request started) -> sent | failed |
    unknown | suppressed. A dead sender's `sending` rows were never on the wire and go
    back to the queue; its `posted` rows may have been accepted and become `unknown`."""

    QUEUED = "queued"
    SENDING = "sending"
    POSTED = "posted"
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


class Role(StrEnum):
    """Who may do what on the desk."""

    ADMIN = "admin"
    EDITOR = "editor"
class FindingLevel(StrEnum):
    """A `kpdigest doctor` finding: ok, a warning (sending passes), or a failure (it does not)."""

    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


class RateLevel(StrEnum):
    """A sending domain's complaint and hard-bounce rates against the configured lines."""

    OK = "ok"
    WARN = "warn"
    PAUSE = "pause"


def check_constraint(column: str, states: type[StrEnum]) -> str:
    """The SQL of a CHECK constraint that admits exactly the enum's values."""
    values = ", ".join(f"'{s.value}'" for s in states)
    return f"{column} IN ({values})"


class Verdict(StrEnum):
    """What the automatic selection does with an article now (`pipeline.curate.select`)."""

    PICKED = "picked"
    WAITING = "waiting for approval"  # an editor's own item, queued but not approved
    REJECTED = "rejected by an editor"
    CARRIED = "already carried"
    BELOW_THRESHOLD = "below threshold"
    TOO_OLD = "too old"
    SAME_STORY = "same story as a pick"
    SOURCE_CAP = "per-source cap"
    ISSUE_FULL = "issue full"


class ArticleState(StrEnum):
    """An article's place in the editors' inbox (its filter)."""

    NEW = "new"
    QUEUED = "queued"
    USED = "used"
    REJECTED = "rejected"
    BELOW_THRESHOLD = "below threshold"


class OrderState(StrEnum):
    """A one-off send order from the composer: pending -> running -> done | failed; cancelled."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
