"""The Alembic migrations build exactly the schema kpdigest/models.py describes."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from kpdigest.db import current_revision, make_engine, migrate
from kpdigest.models import metadata

OWN_TABLES_OF_OTHERS = {"apscheduler_jobs", "alembic_version"}


def _diff(engine):
    with engine.connect() as conn:
        mc = MigrationContext.configure(conn, opts={"compare_type": False})
        diffs = compare_metadata(mc, metadata)
    return [d for d in diffs
            if not (d[0] == "remove_table" and d[1].name in OWN_TABLES_OF_OTHERS)]


def test_migrations_match_models(db_url):
    engine = make_engine(db_url)
    try:
        first = migrate(engine)
        assert _diff(engine) == []
        assert migrate(engine) == first == current_revision(engine)  # safe to run twice
    finally:
        engine.dispose()
