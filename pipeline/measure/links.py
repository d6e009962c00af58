"""Counted links: the link table of an issue variant and the signed `/r/<token>` that
names one of its rows.

A token carries (issue id, link id) and a timestamp under an HMAC whose salt is this
purpose alone, so an unsubscribe or preferences token is never a valid click token, and
back. The URL a redirect answers with comes from the link table, never from the token or
the request: a redirect can only ever lead to one of the issue's own links.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import Engine, create_engine, insert, select
from sqlalchemy.engine import Connection
from werkzeug.urls import iri_to_uri

from core.config import Config
from core.errors import InvalidInput
from core.models import issue_links

SALT = "kpdigest.click"
VOTE_SALT = "kpdigest.vote"  # "more / less like this": [issue id, link id, +1 or -1]
MAX_TOKEN_CHARS = 200  # ours are about 50; anything longer is refused before any work


class InvalidLink(InvalidInput):
    """A click token that is forged, truncated, for another purpose, expired or unknown."""


def serializer(secret: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret, salt=SALT)


def make_link_token(secret: str, issue_id: int, link_id: int) -> str:
    return serializer(secret).dumps([int(issue_id), int(link_id)])


def read_link_token(secret: str, token: str, max_age: int | None,
                    signer: URLSafeTimedSerializer | None = None) -> tuple[int, int]:
    """(issue id, link id) of a valid token, else InvalidLink. `signer`: this secret's
    `serializer`, made once by a caller that reads many tokens."""
    if not token or len(token) > MAX_TOKEN_CHARS:
        raise InvalidLink("this link is not valid")
    try:
        value = (signer or serializer(secret)).loads(token, max_age=max_age)
    except SignatureExpired as exc:
        raise InvalidLink("this link has expired") from exc
    except (BadSignature, ValueError, UnicodeError) as exc:
        raise InvalidLink("this link is not valid") from exc
    if not (isinstance(value, list) and len(value) == 2
            and all(type(v) is int for v in value)):
        raise InvalidLink("this link is not valid")
    return value[0], value[1]


def vote_serializer(secret: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret, salt=VOTE_SALT)


def read_vote_token(secret: str, token: str, max_age: int | None) -> tuple[int, int, int]:
    """(issue id, link id, +1 or -1) of a valid vote token, else InvalidLink."""
    if not token or len(token) > MAX_TOKEN_CHARS:
        raise InvalidLink("this link is not valid")
    try:
        value = vote_serializer(secret).loads(token, max_age=max_age)
    except SignatureExpired as exc:
        raise InvalidLink("this link has expired") from exc
    except (BadSignature, ValueError, UnicodeError) as exc:
        raise InvalidLink("this link is not valid") from exc
    if not (isinstance(value, list) and len(value) == 3 and all(type(v) is int for v in value)
            and value[2] in (1, -1)):
        raise InvalidLink("this link is not valid")
    return value[0], value[1], value[2]


def web_link(url: str | None) -> str | None:
    """An http(s) URL with a host, else None: only such links are counted or shown."""
    try:
        parts = urlsplit(url or "")
    except ValueError:
        return None
    return url if parts.scheme in ("http", "https") and parts.hostname else None


def section_of(article: Mapping[str, Any]) -> str:
    """The digest section an article sits in (pipeline.compose.render.sections)."""
    if article.get("picked_by") == "editor":
        return "editors-picks"
    return (article.get("topics") or ["more"])[0]


def record_links(conn: Connection, cfg: Config, issue_id: int, variant: str,
                 articles: list[Mapping[str, Any]]) -> dict[int, dict[str, str]] | None:
    """Write the link table of one issue variant and return, per article id, its counted
    `link` and its `more` / `less` (like this) vote links; None when counting is off (the
    templates then show the articles' own URLs and no vote links)."""
    if not cfg.analytics.enabled:
        return None
    rows = [{"issue_id": issue_id, "variant": variant, "position": i, "article_id": a["id"],
             "feed_id": a.get("feed_id"), "section": section_of(a)[:100],
             "source": (a.get("source") or "")[:200], "url": url}
            for i, a in enumerate(articles) if (url := web_link(a.get("link")))]
    if not rows:
        return {}
    conn.execute(insert(issue_links), rows)
    ids = conn.execute(select(issue_links.c.article_id, issue_links.c.id).where(
        issue_links.c.issue_id == issue_id, issue_links.c.variant == variant)).all()
    s, v = serializer(cfg.secret_key), vote_serializer(cfg.secret_key)
    base = cfg.site.base_url.rstrip("/")
    return {aid: {"link": f"{base}/r/{s.dumps([issue_id, lid])}",
                  "more": f"{base}/f/{v.dumps([issue_id, lid, 1])}",
                  "less": f"{base}/f/{v.dumps([issue_id, lid, -1])}"} for aid, lid in ids}


@dataclass(frozen=True, slots=True)
class Target:
    link_id: int
    issue_id: int
    location: str  # the URL as a Location header value (IRI encoded as URI, no controls)


def reading_engine(engine: Engine) -> Engine:
    """An engine for plain reads. The project's SQLite engine opens every transaction with
    BEGIN IMMEDIATE (the write lock), so a read would wait behind any writer; in WAL mode
    a plain SELECT needs no lock at all, so reads here use a driver-default engine."""
    if engine.dialect.name != "sqlite":
        return engine
    return create_engine(engine.url, connect_args={"timeout": 5})


class LinkCache:
    """The link tables of recent issues in memory, loaded one issue per query on first
    use (or by `warm` when the app starts) and never changed after: a frozen issue's links
    are fixed. Bounded: the `max_issues` issues loaded most recently."""

    def __init__(self, engine: Engine, max_issues: int = 256) -> None:
        self.engine = reading_engine(engine)
        self.max_issues = max_issues
        self._issues: OrderedDict[int, dict[int, str]] = OrderedDict()
        self._lock = threading.Lock()

    def close(self) -> None:
        self.engine.dispose()

    def warm(self, last: int = 20) -> int:
        """Load the links of the newest `last` issues that have any: the first click on a
        recent issue then needs no database either. Returns the number of links loaded."""
        with self.engine.connect() as conn:
            ids = conn.execute(select(issue_links.c.issue_id).distinct()
                               .order_by(issue_links.c.issue_id.desc()).limit(last)).scalars().all()
        return sum(len(self._load(i)) for i in reversed(ids))

    def target(self, issue_id: int, link_id: int) -> Target | None:
        links = self._issues.get(issue_id)
        if links is None:
            links = self._load(issue_id)
        url = links.get(link_id)
        return Target(link_id, issue_id, url) if url else None

    def _load(self, issue_id: int) -> dict[int, str]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(issue_links.c.id, issue_links.c.url)
                                .where(issue_links.c.issue_id == issue_id)).all()
        links = {lid: iri_to_uri(url) for lid, url in rows}
        with self._lock:
            self._issues[issue_id] = links
            self._issues.move_to_end(issue_id)
            while len(self._issues) > self.max_issues:
                self._issues.popitem(last=False)
        return links
