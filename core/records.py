"""The records that cross stage boundaries, typed: what a parsed entry or an editor's
item carries into storage, and what the selection hands to composing.

TypedDicts rather than classes: these records go straight into SQLAlchemy inserts and
Jinja2 templates as mappings, millions of them in a large collect, so they stay dicts.
"""

from __future__ import annotations

from datetime import datetime
from typing import TypedDict


class ArticleRecord(TypedDict):
    """One article as collected (a feed entry) or added by an editor, before storage."""

    identity: str
    source: str
    title: str
    link: str | None
    author: str | None
    published_at: datetime | None
    summary_html: str
    excerpt: str
    image_url: str | None
    image_alt: str
    tags: list[str]
    topics: list[str]
    score: float
    content_hash: str | None
    minhash: str | None


class PickedArticle(TypedDict, total=False):
    """A stored article chosen for an issue: its columns plus who picked it."""

    id: int
    story_id: int | None
    feed_id: int | None
    origin: str
    source: str
    title: str
    link: str | None
    author: str | None
    published_at: datetime | None
    summary_html: str
    excerpt: str
    image_url: str | None
    image_alt: str | None
    topics: list[str]
    score: float
    section: str
    picked_by: str
