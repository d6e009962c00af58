"""Engines, migrations and small helpers shared by every module that touches the database."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import Connection, CursorResult
from sqlalchemy.exc import ArgumentError

from core.config import PROJECT_ROOT
from core.errors import DatabaseUnavailable

MIGRATIONS = PROJECT_ROOT / "migrations"


def utcnow() -> datetime:
    return datetime.now(UTC)


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine with the per-backend settings the pipeline relies on.

    SQLite gets WAL (readers never block the sender), foreign keys and a busy timeout so
    that a second process waits for the write lock instead of failing.
    """
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 60}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy's BEGIN (below) control transactions, not the driver.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Connection) -> None:
            # IMMEDIATE takes the write lock up front: no deadlock between two writers
            # that both started as readers.
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    try:
        engine = create_engine(url, pool_pre_ping=True, **kwargs)
    except ArgumentError as exc:  # also NoSuchModuleError: no such dialect
        raise DatabaseUnavailable(f"database_url: {_first_line(exc)} "
                                  "(supported: sqlite:///path, postgresql://...)") from exc
    except ImportError as exc:  # a dialect whose driver is not installed (mysql://)
        raise DatabaseUnavailable(f"database_url: the {url.split(':', 1)[0]} driver is not "
                                  f"installed ({exc}); supported: sqlite, postgresql") from exc
    event.listen(engine, "handle_error", _unreachable)
    return engine


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _unreachable(context: Any) -> BaseException | None:
    """A failure to connect at all becomes one clear line instead of a driver traceback
    (a failed pre-ping is left alone: the pool reconnects)."""
    if context.connection is not None or context.is_pre_ping:
        return None
    url = context.engine.url.render_as_string(hide_password=True) if context.engine else "?"
    return DatabaseUnavailable(f"cannot connect to the database {url}: "
                               f"{_first_line(context.original_exception)}")


def new_id(result: CursorResult[Any]) -> int:
    """The primary key an INSERT of one row created."""
    key = result.inserted_primary_key
    if key is None:
        raise RuntimeError("the statement inserted no row")
    return int(key[0])


def is_postgres(conn: Connection | Engine) -> bool:
    return conn.dialect.name == "postgresql"


def alembic_config(url: str) -> Any:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate(engine: Engine) -> str:
    """Create or upgrade the schema to the newest migration; safe to run twice."""
    from alembic import command

    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    return current_revision(engine) or ""


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def has_schema(engine: Engine) -> bool:
    return inspect(engine).has_table("issues")


def batched(rows: Iterator[Any], size: int) -> Iterator[list[Any]]:
    """Yield lists of at most `size` items without materialising the iterator."""
    batch: list[Any] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch
