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
    CheckConstraint,
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

from core.states import (
    DeliveryState,
    IssueStatus,
    JobOutcome,
    OrderState,
    Origin,
    OutboundState,
    QueueState,
    Role,
    SubscriptionStatus,
    SuppressionReason,
    check_constraint,
)

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
    CheckConstraint(check_constraint("origin", Origin), name="origin"),
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
    Index("ix_articles_score", "score", "id"),  # the inbox's and the selection's best first
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
    CheckConstraint(check_constraint("state", QueueState), name="state"),
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
    Column("summary_markdown", Text),  # the editor's Markdown of the summary, to edit again
    Column("section", String(100)),  # a topic slug: the pick leads that section, not "Editor's picks"
)

# Who changed what on a queue item, and when: the item page's history.
queue_item_events = Table(
    "queue_item_events", metadata,
    Column("id", Integer, primary_key=True),
    Column("item_id", Integer, ForeignKey("queue_items.id", ondelete="CASCADE"), nullable=False),
    Column("actor", String(320)),
    Column("action", String(20), nullable=False),  # added | edited | state | pinned | moved
    Column("detail", JSON, nullable=False, default=dict),  # edited: {field: [old, new]}
    Column("created_at", TS, nullable=False),
    Index("ix_queue_item_events_item", "item_id", "id"),
)

# One-off sends an editor ordered from the composer: "send now" (run at once by the web app,
# else by the scheduler's next dispatch) or "send at" a time (the scheduler runs it).
send_orders = Table(
    "send_orders", metadata,
    CheckConstraint(check_constraint("state", OrderState), name="state"),
    Column("id", Integer, primary_key=True),
    Column("run_at", TS, nullable=False),
    Column("state", String(10), nullable=False),  # pending | running | done | failed | cancelled
    Column("requested_by", String(320)),
    Column("force", Boolean, nullable=False, default=False),  # an admin's: despite failed checks
    Column("number", Integer),  # the issue it built and sent
    Column("result", Text),
    Column("created_at", TS, nullable=False),
    Column("finished_at", TS),
    Index("ix_send_orders_state", "state", "run_at"),
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
    CheckConstraint(check_constraint("status", IssueStatus), name="status"),
    Column("id", Integer, primary_key=True),
    Column("number", Integer),  # null while skipped: skips do not use up a number
    Column("list_id", Integer, ForeignKey("lists.id"), nullable=False),
    Column("period", String(20), nullable=False),  # e.g. 2026-W48: one issue per list and period
    Column("status", String(24), nullable=False),
    # draft -> frozen -> sending -> sent | sent with failures | needs attention | failed;
    # paused, cancelled; skipped (no content): core.states.IssueStatus
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
    CheckConstraint(check_constraint("picked_by", Origin), name="picked_by"),
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
    CheckConstraint(check_constraint("status", SubscriptionStatus), name="status"),
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
    CheckConstraint(check_constraint("reason", SuppressionReason), name="reason"),
    Column("id", BigId, primary_key=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("reason", String(20), nullable=False),  # unsubscribed | bounced | complained | erased | manual
    Column("detail", Text),
    Column("created_at", TS, nullable=False),
)

deliveries = Table(
    "deliveries", metadata,
    CheckConstraint(check_constraint("state", DeliveryState), name="state"),
    Column("id", BigId, primary_key=True),
    Column("issue_id", Integer, ForeignKey("issues.id", ondelete="CASCADE"), nullable=False),
    Column("subscriber_id", BigId, ForeignKey("subscribers.id", ondelete="SET NULL")),
    Column("email", String(320), nullable=False),
    Column("name", String(200), nullable=False, default=""),
    Column("variant", String(100), nullable=False, default=""),  # content variant (topic set)
    Column("state", String(12), nullable=False, default="queued"),
    # queued -> sending (claimed) -> posted (on the wire) -> sent | failed | unknown |
    # suppressed: core.states.DeliveryState
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
    CheckConstraint(check_constraint("role", Role), name="role"),
    Column("id", Integer, primary_key=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("password_hash", Text, nullable=False),
    Column("role", String(10), nullable=False),  # admin | editor
    Column("created_at", TS, nullable=False),
    Column("last_login_at", TS),
)

job_runs = Table(
    "job_runs", metadata,
    CheckConstraint(check_constraint("result", JobOutcome), name="result"),
    Column("id", Integer, primary_key=True),
    Column("job", String(50), nullable=False),
    Column("started_at", TS, nullable=False),
    Column("finished_at", TS),
    Column("result", String(10), nullable=False, default="running"),  # ok | skipped | failed | running
    Column("message", Text),
    Index("ix_job_runs_job", "job", "id"),
)

#: A provider account's sending budget shared by all senders (pipeline/deliver/pacing.py).
#: Times are seconds since the epoch on the database's clock, never a sender host's.
pacing_budgets = Table(
    "pacing_budgets", metadata,
    Column("key", String(100), primary_key=True),  # the transport (provider account)
    Column("tat", Float, nullable=False),  # the per-second bucket: when it would be full again
    Column("day_start", Float, nullable=False),
    Column("day_used", Integer, nullable=False),
    Column("hold_until", Float, nullable=False),  # nobody hands over before this (a 429)
)

rate_limits = Table(
    "rate_limits", metadata,
    Column("key", String(200), primary_key=True),
    Column("window_start", TS, nullable=False),
    Column("count", Integer, nullable=False, default=0),
)

# --- measurement (#19, docs/measurement.md) -----------------------------------------------

issue_links = Table(
    "issue_links", metadata,
    # One row per counted link of one issue variant, written when the issue is frozen.
    # A redirect token names (issue_id, id); the URL comes from here, never from the token.
    Column("id", Integer, primary_key=True),
    Column("issue_id", Integer, ForeignKey("issues.id", ondelete="CASCADE"), nullable=False),
    Column("variant", String(100), nullable=False, default=""),
    Column("position", Integer, nullable=False),
    Column("article_id", Integer, ForeignKey("articles.id", ondelete="SET NULL")),
    Column("feed_id", Integer),
    Column("section", String(100), nullable=False, default=""),
    Column("source", String(200), nullable=False, default=""),
    Column("url", Text, nullable=False),
    UniqueConstraint("issue_id", "variant", "position", name="uq_issue_links_issue_variant_position"),
)

clicks = Table(
    "clicks", metadata,
    # One row per redirect answered, without the reader: `visitor` is a hash of address and
    # user agent under a salt that lives one day in memory only (unique clickers per day).
    Column("id", BigId, primary_key=True),
    Column("click_key", String(40), nullable=False, unique=True),  # makes a retried flush idempotent
    Column("issue_id", Integer, ForeignKey("issues.id", ondelete="CASCADE"), nullable=False),
    Column("link_id", Integer, ForeignKey("issue_links.id", ondelete="CASCADE"), nullable=False),
    Column("at", TS, nullable=False),
    Column("machine", Boolean, nullable=False, default=False),
    Column("reason", String(20)),  # why it counts as a machine: head | early | agent | network
    Column("visitor", String(16)),
    Column("vote", Integer),  # null: a click; +1 / -1: "more / less like this"
    Index("ix_clicks_issue_link", "issue_id", "link_id"),
)

analytics_consent = Table(
    "analytics_consent", metadata,
    # "Help us learn which stories you like": present while the reader agrees, deleted on withdrawal.
    Column("subscriber_id", BigId, ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True),
    Column("given_at", TS, nullable=False),
)

reader_clicks = Table(
    "reader_clicks", metadata,
    # Individual clicks, only of readers with a row in analytics_consent; withdrawal deletes them.
    Column("id", BigId, primary_key=True),
    Column("click_key", String(40), nullable=False, unique=True),
    Column("subscriber_id", BigId, ForeignKey("subscribers.id", ondelete="CASCADE"), nullable=False),
    Column("issue_id", Integer, ForeignKey("issues.id", ondelete="CASCADE"), nullable=False),
    Column("link_id", Integer, ForeignKey("issue_links.id", ondelete="CASCADE"), nullable=False),
    Column("at", TS, nullable=False),
    Index("ix_reader_clicks_subscriber", "subscriber_id"),
)

# The lane for people who are waiting: sign-ups, confirmations, emailed links, welcomes and
# test sends, sent one by one by pipeline/deliver/lane.py with a rate share of their own,
# never behind an issue. `dedupe_key` makes "once per subscriber" (the welcome) a unique key.
outbound_mail = Table(
    "outbound_mail", metadata,
    CheckConstraint(check_constraint("state", OutboundState), name="state"),
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
