"""The database schema (SQLAlchemy Core). Alembic migrations in migrations/ must match it.

Core rather than the ORM: the hot paths (freezing an audience, claiming delivery batches,
importing a million rows) are set-based statements, and rows stay plain tuples.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.types import TypeDecorator

# Stable constraint names so migrations work the same on SQLite and PostgreSQL.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# BIGINT on PostgreSQL, INTEGER (rowid alias) on SQLite.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite hands back naive values otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database; use core.db.utcnow()")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


TS = UTCDateTime()

feeds = Table(
    "feeds", metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("url", Text, nullable=False, unique=True),
    Column("topics", JSON, nullable=False, default=list),
    Column("enabled", Boolean, nullable=False, default=True),
    Column("paused", Boolean, nullable=False, default=False),
    Column("paused_reason", Text),
    Column("etag", Text),
    Column("last_modified", Text),
    Column("last_fetched_at", TS),
    Column("last_success_at", TS),
    Column("last_error", Text),
    Column("last_error_at", TS),
    Column("last_warning", Text),
    Column("consecutive_failures", Integer, nullable=False, default=0),
    Column("next_attempt_at", TS),
    Column("created_at", TS, nullable=False),
)

articles = Table(
    "articles", metadata,
    Column("id", Integer, primary_key=True),
    Column("identity", String(300), nullable=False, unique=True),
    Column("feed_id", Integer, ForeignKey("feeds.id", ondelete="SET NULL")),
    Column("origin", String(10), nullable=False, default="feed"),  # feed | editor
    Column("source", String(200), nullable=False, default=""),
    Column("title", Text, nullable=False),
    Column("link", Text),
    Column("author", Text),
    Column("published_at", TS),
    Column("summary_html", Text, nullable=False, default=""),
    Column("excerpt", Text, nullable=False, default=""),
    Column("image_url", Text),
    Column("image_alt", Text),
    Column("tags", JSON, nullable=False, default=list),
    Column("topics", JSON, nullable=False, default=list),
    Column("score", Float, nullable=False, default=0.0),
    Column("content_hash", String(64)),
    Column("minhash", Text),  # serialised signature for near-duplicate grouping
    Column("story_id", Integer),  # id of the first article of its near-duplicate group
    Column("created_at", TS, nullable=False),
    Index("ix_articles_story", "story_id"),
    Index("ix_articles_published", "published_at"),
    Index("ix_articles_feed", "feed_id", "id"),  # a feed's latest identities, for the parser to skip
)

# Articles not yet compared with the others for near-duplicates: grouping reads and empties
# it. A new article is stored as a story of its own (story_id = id) by the transaction that
# inserts it, while its pages are being written anyway, so that grouping rewrites only the
# few rows that join another story.
articles_ungrouped = Table(
    "articles_ungrouped", metadata,
    Column("article_id", Integer, ForeignKey("articles.id", ondelete="CASCADE"), primary_key=True),
)

queue_items = Table(
    "queue_items", metadata,
    Column("id", Integer, primary_key=True),
    Column("article_id", Integer, ForeignKey("articles.id", ondelete="CASCADE"), nullable=False,
           unique=True),
    Column("state", String(12), nullable=False, default="queued"),  # queued|approved|rejected|used
    Column("pinned", Boolean, nullable=False, default=False),
    Column("position", Integer, nullable=False, default=0),
    Column("note", Text),
    Column("added_by", String(200)),
    Column("issue_id", Integer, ForeignKey("issues.id", ondelete="SET NULL")),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
)

lists = Table(
    "lists", metadata,
    Column("id", Integer, primary_key=True),
    Column("slug", String(100), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("public", Boolean, nullable=False, default=True),
    Column("double_optin", Boolean, nullable=False, default=True),
    Column("created_at", TS, nullable=False),
)

issues = Table(
    "issues", metadata,
    Column("id", Integer, primary_key=True),
    Column("number", Integer),  # null while skipped: skips do not use up a number
    Column("list_id", Integer, ForeignKey("lists.id"), nullable=False),
    Column("period", String(20), nullable=False),  # e.g. 2026-W48: one issue per list and period
    Column("status", String(12), nullable=False),
    # draft -> frozen -> sending -> sent; paused, cancelled; skipped (no content)
    Column("subject", Text, nullable=False, default=""),
    Column("preheader", Text, nullable=False, default=""),
    Column("intro", Text, nullable=False, default=""),
    Column("placeholder_key", String(40), nullable=False, default=""),
    Column("web_html", Text),  # archive version: no per-recipient data
    Column("skip_reason", Text),
    Column("pause_reason", Text),
    Column("approved_by", String(200)),
    Column("approved_at", TS),
    Column("review_deadline", TS),
    Column("created_at", TS, nullable=False),
    Column("frozen_at", TS),
    Column("send_started_at", TS),
    Column("sent_at", TS),
    UniqueConstraint("list_id", "period", name="uq_issues_list_period"),
    UniqueConstraint("list_id", "number", name="uq_issues_list_number"),
)

issue_variants = Table(
    "issue_variants", metadata,
    # One rendering per content variant (a set of topic preferences; "" = every topic).
    Column("issue_id", Integer, ForeignKey("issues.id", ondelete="CASCADE"), primary_key=True),
    Column("variant", String(100), primary_key=True),
    Column("article_ids", JSON, nullable=False, default=list),
    Column("html_template", Text, nullable=False),  # inlined HTML with per-recipient placeholders
    Column("text_template", Text, nullable=False),
    Column("html_bytes", Integer, nullable=False),
    Column("notes", JSON, nullable=False, default=list),  # what the size budget trimmed
)

issue_articles = Table(
    "issue_articles", metadata,
    Column("issue_id", Integer, ForeignKey("issues.id", ondelete="CASCADE"), primary_key=True),
    Column("article_id", Integer, ForeignKey("articles.id"), primary_key=True),
    Column("position", Integer, nullable=False),
    Column("section", String(100), nullable=False, default=""),
    Column("picked_by", String(10), nullable=False, default="feed"),  # editor | feed
)

subscribers = Table(
    "subscribers", metadata,
    Column("id", BigId, primary_key=True),
    Column("email", String(320), nullable=False, unique=True),  # normalised: see subscribers.store
    Column("name", String(200), nullable=False, default=""),
    Column("timezone", String(64)),
    Column("attributes", JSON, nullable=False, default=dict),
    Column("soft_bounces", Integer, nullable=False, default=0),
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
)

subscriptions = Table(
    "subscriptions", metadata,
    Column("id", BigId, primary_key=True),
    Column("subscriber_id", BigId, ForeignKey("subscribers.id", ondelete="CASCADE"), nullable=False),
    Column("list_id", Integer, ForeignKey("lists.id", ondelete="CASCADE"), nullable=False),
    Column("status", String(14), nullable=False),  # pending | active | paused | unsubscribed
    Column("topics", String(200)),  # sorted comma-separated topic slugs; null: every topic
    Column("consent_at", TS),
    Column("consent_source", String(200)),  # page or import file
    Column("consent_ip", String(64)),
    Column("consent_user_agent", Text),
    Column("consent_text", Text),
    Column("consent_version", String(40)),
    Column("confirmed_at", TS),
    Column("unsubscribed_at", TS),
    Column("paused_until", TS),  # status paused: back to active by itself at this time
    Column("created_at", TS, nullable=False),
    Column("updated_at", TS, nullable=False),
    UniqueConstraint("subscriber_id", "list_id", name="uq_subscriptions_subscriber_list"),
    Index("ix_subscriptions_list_status", "list_id", "status", "subscriber_id"),
)

suppressions = Table(
    "suppressions", metadata,
    Column("id", BigId, primary_key=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("reason", String(20), nullable=False),  # unsubscribed | bounced | complained | erased | manual
    Column("detail", Text),
    Column("created_at", TS, nullable=False),
)

deliveries = Table(
    "deliveries", metadata,
    Column("id", BigId, primary_key=True),
    Column("issue_id", Integer, ForeignKey("issues.id", ondelete="CASCADE"), nullable=False),
    Column("subscriber_id", BigId, ForeignKey("subscribers.id", ondelete="SET NULL")),
    Column("email", String(320), nullable=False),
    Column("name", String(200), nullable=False, default=""),
    Column("variant", String(100), nullable=False, default=""),  # content variant (topic set)
    Column("state", String(10), nullable=False, default="queued"),
    # queued -> sending -> sent | failed | unknown | suppressed
    Column("attempts", Integer, nullable=False, default=0),
    Column("claimed_by", String(100)),  # the sender that claimed it; kept once recorded
    Column("claimed_at", TS),
    Column("batch_key", String(64)),  # idempotency key of the batch it was handed in
    Column("provider_message_id", String(200)),
    Column("last_error", Text),
    Column("sent_at", TS),
    UniqueConstraint("issue_id", "subscriber_id", name="uq_deliveries_issue_subscriber"),
    # Claims read a keyset page of one variant's unclaimed rows without a batch key in id
    # order, and find batches waiting for a retry with their idempotency key, both here.
    # Unclaimed rows only, keyed on columns recording leaves alone (it keeps claimed_by and
    # batch_key): a claim adds two index entries (primary key, unique), and recording a
    # result is a HOT update in PostgreSQL, none at all, on pages left half free for it.
    Index("ix_deliveries_unclaimed", "issue_id", "variant", "batch_key", "id",
          postgresql_where=text("claimed_by IS NULL"), sqlite_where=text("claimed_by IS NULL")),
    postgresql_with={"fillfactor": 50},
)

events = Table(
    "events", metadata,
    Column("id", BigId, primary_key=True),
    Column("subscriber_id", BigId, ForeignKey("subscribers.id", ondelete="CASCADE")),
    Column("kind", String(40), nullable=False),
    Column("detail", JSON, nullable=False, default=dict),
    Column("actor", String(200)),
    Column("created_at", TS, nullable=False),
    Index("ix_events_subscriber", "subscriber_id", "id"),
)

webhook_events = Table(
    "webhook_events", metadata,
    Column("id", BigId, primary_key=True),
    Column("provider", String(20), nullable=False),
    Column("event_id", String(200), nullable=False),
    Column("kind", String(40), nullable=False),
    Column("email", String(320)),
    Column("payload", Text, nullable=False),
    Column("received_at", TS, nullable=False),
    UniqueConstraint("provider", "event_id", name="uq_webhook_events_provider_event"),
)

users = Table(
    "users", metadata,
    Column("id", Integer, primary_key=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("password_hash", Text, nullable=False),
    Column("role", String(10), nullable=False),  # admin | editor
    Column("created_at", TS, nullable=False),
    Column("last_login_at", TS),
)

job_runs = Table(
    "job_runs", metadata,
    Column("id", Integer, primary_key=True),
    Column("job", String(50), nullable=False),
    Column("started_at", TS, nullable=False),
    Column("finished_at", TS),
    Column("result", String(10), nullable=False, default="running"),  # ok | skipped | failed | running
    Column("message", Text),
    Index("ix_job_runs_job", "job", "id"),
)

rate_limits = Table(
    "rate_limits", metadata,
    Column("key", String(200), primary_key=True),
    Column("window_start", TS, nullable=False),
    Column("count", Integer, nullable=False, default=0),
)

# The lane for people who are waiting: sign-ups, confirmations, emailed links, welcomes and
# test sends, sent one by one by pipeline/deliver/lane.py with a rate share of their own,
# never behind an issue. `dedupe_key` makes "once per subscriber" (the welcome) a unique key.
outbound_mail = Table(
    "outbound_mail", metadata,
    Column("id", BigId, primary_key=True),
    Column("kind", String(20), nullable=False),  # core.states.OutboundKind
    Column("subscriber_id", BigId, ForeignKey("subscribers.id", ondelete="CASCADE")),
    Column("dedupe_key", String(100), unique=True),
    Column("payload", JSON),  # a sign-up's form and evidence, a test send's address; cleared
    Column("state", String(10), nullable=False, default="queued"),  # core.states.OutboundState
    Column("attempts", Integer, nullable=False, default=0),
    Column("claimed_by", String(100)),
    Column("claimed_at", TS),
    Column("next_attempt_at", TS, nullable=False),
    Column("provider_message_id", String(200)),
    Column("last_error", Text),
    Column("created_at", TS, nullable=False),
    Column("sent_at", TS),
    Index("ix_outbound_mail_due", "state", "next_attempt_at", "id"),
)
