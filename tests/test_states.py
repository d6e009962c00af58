"""Named states: the database refuses a state the code does not name, and the
constraints the migrations wrote admit exactly the enums' values."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import insert, text, update
from sqlalchemy.exc import IntegrityError

from core.db import new_id, utcnow
from core.models import articles, deliveries, issues, lists, metadata, queue_items
from core.states import DeliveryState, IssueStatus, QueueState

STATE_COLUMNS = [(t.name, c.name, c) for t in metadata.sorted_tables for c in t.constraints
                 if c.__class__.__name__ == "CheckConstraint"]


def _constraint_sql(conn, table: str, name: str) -> str:
    """The rule as the database holds it: PostgreSQL's constraint, SQLite's triggers."""
    if conn.dialect.name == "postgresql":
        return conn.execute(text("SELECT pg_get_constraintdef(oid) FROM pg_constraint "
                                 "WHERE conname = :n AND conrelid = to_regclass(:t)"),
                            {"n": name, "t": table}).scalar_one()
    rules = conn.execute(text("SELECT sql FROM sqlite_master WHERE type = 'trigger' "
                              "AND tbl_name = :t AND name LIKE :n"),
                         {"t": table, "n": f"{name}_%"}).scalars().all()
    assert len(rules) == 2  # on insert and on update
    assert rules[0].split("BEGIN")[0].split("WHEN")[1] == rules[1].split("BEGIN")[0].split("WHEN")[1]
    return rules[0].split("BEGIN")[0]


def test_every_state_constraint_in_the_database_admits_exactly_its_enum(ctx):
    assert len(STATE_COLUMNS) >= 9
    with ctx.engine.connect() as conn:
        for table, _name, constraint in STATE_COLUMNS:
            in_db = set(re.findall(r"'([^']*)'", _constraint_sql(conn, table, constraint.name)))
            in_code = set(re.findall(r"'([^']*)'", str(constraint.sqltext)))
            assert in_db == in_code, (table, constraint.name)


def _issue(conn) -> int:
    list_id = new_id(conn.execute(insert(lists).values(slug="l", name="L", created_at=utcnow())))
    return new_id(conn.execute(insert(issues).values(
        list_id=list_id, period="2026-W01", created_at=utcnow(), status=IssueStatus.FROZEN)))


def test_a_misspelt_issue_status_is_refused(ctx):
    with ctx.engine.begin() as conn:
        issue_id = _issue(conn)
    with pytest.raises(IntegrityError), ctx.engine.begin() as conn:
        conn.execute(update(issues).where(issues.c.id == issue_id).values(status="snet"))


def test_a_misspelt_delivery_state_is_refused_and_a_named_one_accepted(ctx):
    with ctx.engine.begin() as conn:
        issue_id = _issue(conn)
        conn.execute(insert(deliveries).values(issue_id=issue_id, email="a@example.com",
                                               state=DeliveryState.QUEUED))
    with pytest.raises(IntegrityError), ctx.engine.begin() as conn:
        conn.execute(update(deliveries).values(state="queud"))


def test_a_misspelt_queue_state_is_refused(ctx):
    with ctx.engine.begin() as conn:
        article_id = conn.execute(insert(articles).values(
            identity="x", title="t", created_at=utcnow(), tags=[], topics=[])).inserted_primary_key[0]
        conn.execute(insert(queue_items).values(article_id=article_id, state=QueueState.QUEUED,
                                                created_at=utcnow(), updated_at=utcnow()))
    with pytest.raises(IntegrityError), ctx.engine.begin() as conn:
        conn.execute(update(queue_items).values(state="aproved"))
