"""One scheduler at a time: schedulers on any number of hosts elect a leader in PostgreSQL.

The leader holds a session-level advisory lock on a connection of its own (outside the
pool, autocommit, so it never sits idle in a transaction); the others are standbys that
try the lock every `shared.leader_poll_seconds`. The lock lives exactly as long as the
leader's database session:

- the leader process dies (SIGKILL, OOM, crash): its socket closes, PostgreSQL ends the
  session at once, and a standby leads within one poll interval;
- the leader's host vanishes (power, network): PostgreSQL's TCP keepalives, set short on
  that session (KEEPALIVE_* below), end it within about KEEPALIVE_SECONDS; a standby
  leads one poll later. The old leader's own heartbeat fails within as long
  (`tcp_user_timeout`), and it stops running jobs and exits.

The key is per database schema, so deployments (and test schemas) sharing one database do
not elect each other. Who leads is on the session itself (`application_name`), so
`kpdigest schedule status` reads it from `pg_stat_activity`: no table, nothing to clean up
after a crash. SQLite is one host: there is no election and one scheduler runs as always.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from core.context import Context
from core.db import make_engine, utcnow
from core.models import job_runs

log = logging.getLogger("kpdigest.leader")

KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_COUNT = 5, 2, 3
#: how long a vanished host's session (and so its lock) outlives it, at most
KEEPALIVE_SECONDS = KEEPALIVE_IDLE + KEEPALIVE_INTERVAL * KEEPALIVE_COUNT
#: the client side: the leader's heartbeat fails as soon as the server may have let go
_KEEPALIVE_ARGS = {"keepalives": 1, "keepalives_idle": KEEPALIVE_IDLE,
                   "keepalives_interval": KEEPALIVE_INTERVAL, "keepalives_count": KEEPALIVE_COUNT,
                   "tcp_user_timeout": KEEPALIVE_SECONDS * 1000}
APP_PREFIX = "kps"  # application_name: "kps <tag> L<epoch> host:pid" or "kps <tag> S host:pid"


def me() -> str:
    return f"{socket.gethostname()[:36]}:{os.getpid()}"


def lock_key(schema: str) -> int:
    """A signed 64-bit advisory lock key for this deployment (database schema)."""
    digest = hashlib.blake2b(f"kpdigest.scheduler/{schema}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _tag(key: int) -> str:
    return f"{key & 0xFFFFFFFF:08x}"


class Leadership:
    """The election as one object: `wait_for_lead` blocks a standby until it leads,
    `still_leading` is the leader's heartbeat, `release` gives the lead up."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.poll = ctx.config.shared.leader_poll_seconds
        self.elected = ctx.engine.dialect.name == "postgresql"
        self._engine: Engine | None = None
        self._conn: Connection | None = None
        self._key = 0

    def _connect(self, role: str = "S") -> Connection:
        if self._conn is None:
            self._engine = make_engine(self.ctx.config.database_url, poolclass=NullPool,
                                       connect_args=_KEEPALIVE_ARGS)
            conn = self._engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            for name, value in (("tcp_keepalives_idle", KEEPALIVE_IDLE),
                                ("tcp_keepalives_interval", KEEPALIVE_INTERVAL),
                                ("tcp_keepalives_count", KEEPALIVE_COUNT)):
                conn.execute(text(f"SET {name} = {int(value)}"))
            self._key = lock_key(conn.execute(text("SELECT current_schema()")).scalar_one())
            self._name(conn, role)
            self._conn = conn
        return self._conn

    def _name(self, conn: Connection, role: str) -> None:
        name = f"{APP_PREFIX} {_tag(self._key)} {role} {me()}"[:63]
        conn.execute(text("SELECT set_config('application_name', :n, false)"), {"n": name})

    def present(self) -> None:
        """Be seen without leading (`schedule.py --once`): a session that says this process
        is alive, so a new leader does not close its job run as orphaned."""
        if self.elected:
            self._connect("O")

    def try_lead(self) -> bool:
        """One attempt; True when this process now leads."""
        if not self.elected:
            return True
        conn = self._connect()
        if not conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": self._key}).scalar_one():
            return False
        self._name(conn, f"L{int(time.time())}")
        return True

    def wait_for_lead(self, stop: threading.Event) -> bool:
        """Block until this process leads; False when `stop` was set first. A database that
        cannot be reached is retried (logged), not fatal: the standby is there for outages."""
        announced = False
        while not stop.is_set():
            try:
                if self.try_lead():
                    if self.elected:
                        log.info("leading: this scheduler (%s) runs the jobs", me())
                    return True
                if not announced:
                    current = leader_status(self.ctx).leader
                    log.info("standby: %s leads; trying to take over every %.0fs",
                             current or "another scheduler", self.poll)
                    announced = True
            except DBAPIError as exc:
                log.warning("standby: database unreachable (%s); retrying", exc.orig or exc)
                self._drop()
            stop.wait(self.poll)
        return False

    def still_leading(self) -> bool:
        """The leader's heartbeat: its lock session still answers (so still holds the lock)."""
        if not self.elected:
            return True
        try:
            return self._conn is not None and \
                self._conn.execute(text("SELECT 1")).scalar_one() == 1
        except DBAPIError:
            self._drop()
            return False

    def _drop(self) -> None:
        try:
            if self._conn is not None:
                self._conn.invalidate()
                self._conn.close()
        except DBAPIError:
            pass
        self._conn = None
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def release(self) -> None:
        """Give up the lead (clean stop): closing the session releases the lock."""
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


@dataclass
class LeaderStatus:
    mode: str  # "single" (SQLite: one process, no election) or "elected" (PostgreSQL)
    leader: str | None = None  # host:pid
    since: datetime | None = None
    standbys: list[str] = field(default_factory=list)


def leader_status(ctx: Context) -> LeaderStatus:
    """Who leads, since when, and which standbys wait, read from the live sessions."""
    if ctx.engine.dialect.name != "postgresql":
        return LeaderStatus("single")
    with ctx.engine.connect() as conn:
        tag = _tag(lock_key(conn.execute(text("SELECT current_schema()")).scalar_one()))
        names = conn.execute(text(
            "SELECT application_name FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name LIKE :p"),
            {"p": f"{APP_PREFIX} {tag} %"}).scalars().all()
    return _parse(names)


def _who(owner: str) -> str:
    """host:pid as sessions name it (the host cut to fit `application_name`)."""
    host, _, pid = owner.rpartition(":")
    return f"{host[:36]}:{pid}"


def close_orphaned_runs(ctx: Context) -> int:
    """Job runs left `running` by a scheduler on another host that is gone: its process
    had a named session (leader, standby or `--once`) as long as it lived, so a run whose
    owner has none was cut off. Recorded as failed; returns how many. (Runs of this
    host's dead processes are `registry.close_interrupted`'s: it can ask the kernel.)"""
    if ctx.engine.dialect.name != "postgresql":
        return 0
    with ctx.engine.connect() as conn:
        tag = _tag(lock_key(conn.execute(text("SELECT current_schema()")).scalar_one()))
        names = conn.execute(text(
            "SELECT application_name FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name LIKE :p"),
            {"p": f"{APP_PREFIX} {tag} %"}).scalars().all()
    alive = {str(n).split(" ", 3)[-1] for n in names}
    here = socket.gethostname()[:36]
    with ctx.engine.begin() as conn:
        rows = conn.execute(select(job_runs.c.id, job_runs.c.message)
                            .where(job_runs.c.result == "running")).all()
        gone = {}
        for r in rows:
            owner = _who((r.message or "").removeprefix("running in "))
            if not owner.startswith(here + ":") and owner not in alive:
                gone[r.id] = owner
        for run_id, owner in gone.items():
            conn.execute(update(job_runs).where(job_runs.c.id == run_id).values(
                finished_at=utcnow(), result="failed",
                message=f"interrupted: the scheduler {owner} stopped (its database session "
                        "ended) before the job finished"))
    return len(gone)


def _parse(names: list[Any]) -> LeaderStatus:
    status = LeaderStatus("elected")
    for name in names:
        parts = str(name).split(" ", 3)
        if len(parts) != 4:
            continue
        role, who = parts[2], parts[3]
        if role.startswith("L") and role[1:].isdigit():
            status.leader, status.since = who, datetime.fromtimestamp(int(role[1:]), UTC)
        elif role == "S":
            status.standbys.append(who)
    status.standbys.sort()
    return status
