"""CSV import and export of subscribers, shared by the CLI and the web app.

Import is per-row isolated: a bad row is reported with its line number and reason and the
good rows land. Re-importing a file changes nothing; suppressed addresses stay suppressed.
Rows are written in chunks with set-based statements (one SELECT/INSERT per chunk and
table), because a million `add_subscriber` calls would take an hour. A writer thread
writes chunk N while this thread parses chunk N+1 (the database works while Python parses).
"""

from __future__ import annotations

import csv
import io
import json
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from core.addresses import normalize_fast
from core.context import Context
from core.db import utcnow
from core.errors import InvalidInput
from core.models import lists, subscribers
from subscribers.store import DEFAULT_LIST, iter_subscribers

EMAIL_COLUMNS = ("email", "e-mail", "email address", "email_address", "mail", "address")
NAME_COLUMNS = ("name", "full name", "full_name")
SOURCE_COLUMNS = ("consent_source", "consent source", "source")
KNOWN = {*EMAIL_COLUMNS, *NAME_COLUMNS, *SOURCE_COLUMNS, "lists", "list", "topics", "timezone"}
CHUNK = 20000


@dataclass
class ImportReport:
    rows: int = 0
    added: int = 0  # rows that created at least one subscription
    unchanged: int = 0  # rows already subscribed (or repeated in the file)
    suppressed: int = 0  # rows skipped because the address is on the suppression list
    errors: list[tuple[int, str]] = field(default_factory=list)  # (line, reason)

    def summary(self) -> str:
        return (f"{self.added} added, {self.unchanged} unchanged, {len(self.errors)} rejected, "
                f"{self.suppressed} suppressed")


@dataclass
class Row:
    line: int
    email: str
    name: str
    lists: tuple[str, ...]
    topics: str | None
    source: str
    timezone: str | None
    attributes: dict[str, str]


def decode(raw: bytes) -> str:
    """Text of an upload: UTF-8 (with or without BOM), UTF-16 with BOM, else Windows-1252."""
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return raw.decode("utf-16")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace")


def _dialect(text: str) -> type[csv.Dialect] | csv.Dialect:
    sample = text[:16384]
    if len(text) > len(sample) and "\n" in sample:
        sample = sample.rpartition("\n")[0]
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        return csv.excel


@dataclass
class Columns:
    """Where each known field sits in a row: resolved once from the header."""

    email: int
    name: int | None
    source: int | None
    lists: int | None
    topics: int | None
    timezone: int | None
    extra: list[tuple[str, int]]

    @classmethod
    def from_header(cls, header: list[str]) -> Columns:
        names = [(h or "").strip().lower() for h in header]

        def find(options: tuple[str, ...]) -> int | None:
            return next((names.index(o) for o in options if o in names), None)

        email = find(EMAIL_COLUMNS)
        if email is None:
            raise InvalidInput(f"no email column among {names}")
        return cls(email, find(NAME_COLUMNS), find(SOURCE_COLUMNS), find(("lists", "list")),
                   find(("topics",)), find(("timezone",)),
                   [(n, i) for i, n in enumerate(names) if n and n not in KNOWN])


def read_rows(text: str) -> tuple[Columns, Iterator[tuple[int, list[str]]]]:
    """The header's columns and (first line number, cells) pairs, in any common dialect."""
    reader = csv.reader(io.StringIO(text, newline=""), dialect=_dialect(text))
    try:
        cols = Columns.from_header(next(reader))
    except StopIteration as exc:
        raise InvalidInput("the file is empty") from exc

    def rows() -> Iterator[tuple[int, list[str]]]:
        end = reader.line_num
        for cells in reader:
            start, end = end + 1, reader.line_num
            if any(c.strip() for c in cells):
                yield start, cells

    return cols, rows()


def _split(value: str) -> list[str]:
    return [t.strip() for t in value.replace(";", ",").replace("|", ",").split(",") if t.strip()]


class Parser:
    """Validates rows; topic and list spellings are checked once each."""

    def __init__(self, cols: Columns, topics: set[str], list_ids: dict[str, int],
                 default_list: str, default_source: str) -> None:
        self.cols, self.topics, self.list_ids = cols, topics, list_ids
        self.default_list, self.default_source = default_list, default_source
        self._topic_keys: dict[str, str | None] = {}
        self._list_keys: dict[str, tuple[str, ...]] = {}
        # Absent columns read a padding cell past the row's end: one index per field, no ifs.
        self.width = max([cols.email, *(i for _, i in cols.extra)] +
                         [i for i in (cols.name, cols.source, cols.lists, cols.topics, cols.timezone)
                          if i is not None]) + 1
        pad = self.width
        fields = (cols.email, cols.name, cols.source, cols.lists, cols.topics, cols.timezone)
        self.idx = tuple(pad if i is None else i for i in fields)
        self.pad = [""] * (pad + 1)

    def topic_key(self, raw: str) -> str | None:
        if raw not in self._topic_keys:
            chosen = _split(raw)
            unknown = [t for t in chosen if t not in self.topics]
            if unknown:
                raise InvalidInput(f"unknown topic {unknown[0]!r}")
            self._topic_keys[raw] = ",".join(sorted(set(chosen))) or None
        return self._topic_keys[raw]

    def list_key(self, raw: str) -> tuple[str, ...]:
        if raw not in self._list_keys:
            wanted = tuple(dict.fromkeys(_split(raw))) or (self.default_list,)
            missing = [s for s in wanted if s not in self.list_ids]
            if missing:
                raise InvalidInput(f"unknown list {missing[0]!r}")
            self._list_keys[raw] = wanted
        return self._list_keys[raw]

    def parse(self, line: int, cells: list[str]) -> Row:
        """One row, or InvalidInput with the reason."""
        if len(cells) <= self.width:
            cells = cells + self.pad[len(cells):]
        e, n, s, li, t, tz = self.idx
        addr = normalize_fast(cells[e])
        raw_topics = cells[t].strip()
        known_topics = self._topic_keys
        topics = known_topics[raw_topics] if raw_topics in known_topics else self.topic_key(raw_topics)
        raw_lists = cells[li].strip()
        wanted = self._list_keys[raw_lists] if raw_lists in self._list_keys else self.list_key(raw_lists)
        name = cells[n].strip()
        if len(name) > 200:
            raise InvalidInput("name is longer than 200 characters")
        extra = {k: cells[i].strip() for k, i in self.cols.extra if cells[i].strip()}
        source = cells[s].strip()[:200] or self.default_source
        return Row(line, addr, name, wanted, topics, source, cells[tz].strip()[:64] or None, extra)


def import_csv(ctx: Context, source: Path | IO[bytes] | bytes, *, source_name: str | None = None,
               list_slug: str = DEFAULT_LIST, actor: str | None = None,
               progress: Callable[[ImportReport], None] | None = None,
               report: ImportReport | None = None) -> ImportReport:
    """Import subscribers who consented elsewhere: new rows become active subscriptions.

    `report` (filled in place) lets another thread watch the counts while this one works.
    """
    if isinstance(source, bytes):
        raw = source
    elif isinstance(source, (str, Path)):
        raw = Path(source).read_bytes()
    else:
        raw = source.read()
    name = source_name or (Path(source).name if isinstance(source, (str, Path)) else "upload")
    with ctx.engine.connect() as conn:
        list_ids = {r.slug: int(r.id) for r in conn.execute(select(lists.c.slug, lists.c.id))}
    if list_slug not in list_ids:
        raise InvalidInput(f"unknown list {list_slug!r}")
    cols, rows = read_rows(decode(raw))
    parser = Parser(cols, set(ctx.config.topics), list_ids, list_slug, f"import:{name}")
    report = report if report is not None else ImportReport()
    seen: set[str] = set()
    chunk: list[Row] = []
    repeats = 0  # counted by the writer: only one thread adds to report.unchanged
    with Background(BulkWriter(ctx, list_ids, actor), report) as sink:
        for line, cells in rows:
            report.rows += 1
            try:
                parsed = parser.parse(line, cells)
            except InvalidInput as exc:
                report.errors.append((line, str(exc)))
                continue
            if parsed.email in seen:
                repeats += 1
                continue
            seen.add(parsed.email)
            chunk.append(parsed)
            if len(chunk) >= CHUNK:
                sink.put(chunk, repeats)
                chunk, repeats = [], 0
                if progress:
                    progress(report)
        if chunk or repeats:
            sink.put(chunk, repeats)
    if progress:
        progress(report)
    return report


class Background:
    """Flushes chunks in one writer thread, in order, at most two chunks behind the parser.

    A writer error stops the import: the next `put` (or the end of the `with`) raises it;
    an error in the parsing thread drops the chunks not yet written. Chunks already written
    stay written, as before: each chunk is its own transaction and re-importing the file
    only adds what is missing.
    """

    def __init__(self, writer: BulkWriter, report: ImportReport) -> None:
        self.writer, self.report = writer, report
        self.todo: queue.Queue[tuple[list[Row], int] | None] = queue.Queue(maxsize=2)
        self.error: BaseException | None = None
        self.stopped = False
        self.thread = threading.Thread(target=self._run, name="csv-import-writer", daemon=True)

    def _run(self) -> None:
        while (item := self.todo.get()) is not None:
            if self.error is None and not self.stopped:
                chunk, repeats = item
                try:
                    self.report.unchanged += repeats
                    if chunk:
                        self.writer.flush(chunk, self.report)
                except BaseException as exc:  # handed to the parsing thread
                    self.error = exc

    def put(self, chunk: list[Row], repeats: int = 0) -> None:
        """Queue a chunk (and the count of repeated addresses parsed since the last one)."""
        if self.error is not None:
            raise self.error
        self.todo.put((chunk, repeats))

    def __enter__(self) -> Background:
        self.thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stopped = kind is not None
        self.todo.put(None)
        self.thread.join()
        if kind is None and self.error is not None:
            raise self.error


STAGE = "kpd_import_stage"
STAGE_COLUMNS = ("line", "email", "first", "name", "timezone", "attributes", "list_id", "topics",
                 "source", "consent_text", "detail")


class BulkWriter:
    """Writes a chunk set-based: rows go into a temporary staging table (COPY on
    PostgreSQL, one executemany on SQLite), then a few INSERT ... SELECT statements (one
    on PostgreSQL) do the look-ups and inserts inside the database. Per-row Python or
    per-row SQL would cost minutes at a million rows; this costs seconds."""

    def __init__(self, ctx: Context, list_ids: dict[str, int], actor: str | None) -> None:
        self.ctx, self.list_ids, self.actor = ctx, list_ids, actor
        self.dialect = ctx.engine.dialect
        self.pg = self.dialect.name == "postgresql"
        self.mark = "?" if self.dialect.paramstyle == "qmark" else "%s"
        self._json_cache: dict[str, str] = {}

    def _detail(self, slug: str, source: str) -> str:
        """The event's JSON detail; it repeats (one source per file), so it is built once."""
        key = f"{slug}\x00{source}"
        if key not in self._json_cache:
            self._json_cache[key] = json.dumps({"list": slug, "source": source}, ensure_ascii=False)
        return self._json_cache[key]

    def _stage_rows(self, chunk: list[Row]) -> list[tuple[Any, ...]]:
        out = []
        ids = self.list_ids
        for r in chunk:
            attrs = json.dumps(r.attributes, ensure_ascii=False) if r.attributes else "{}"
            first = 1
            for slug in r.lists:
                out.append((r.line, r.email, first, r.name, r.timezone, attrs, ids[slug], r.topics,
                            r.source, f"imported (line {r.line})", self._detail(slug, r.source)))
                first = 0
        return out

    def _prepare(self, conn: Connection) -> None:
        """An empty staging table on this connection (PostgreSQL empties it at each commit)."""
        conn.exec_driver_sql(
            f"CREATE TEMP TABLE IF NOT EXISTS {STAGE} (line INTEGER, email VARCHAR(320), first INTEGER, "
            "name VARCHAR(200), timezone VARCHAR(64), attributes TEXT, list_id INTEGER, topics VARCHAR(200), "
            "source VARCHAR(200), consent_text TEXT, detail TEXT, sid BIGINT, is_new INTEGER DEFAULT 0)"
            + (" ON COMMIT DELETE ROWS" if self.pg else ""))
        if not self.pg:
            conn.exec_driver_sql(f"DELETE FROM {STAGE}")

    def _stage(self, conn: Connection, rows: list[tuple[Any, ...]]) -> None:
        """Fill the staging table: COPY on PostgreSQL, executemany on SQLite."""
        if self.pg:
            cur = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            with cur.copy(f"COPY {STAGE} ({', '.join(STAGE_COLUMNS)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            cur.close()
            return
        marks = ", ".join([self.mark] * len(STAGE_COLUMNS))
        conn.exec_driver_sql(f"INSERT INTO {STAGE} ({', '.join(STAGE_COLUMNS)}) VALUES ({marks})", rows)

    def flush(self, chunk: list[Row], report: ImportReport) -> None:
        """Write one chunk in one transaction."""
        bind = subscribers.c.created_at.type._cached_bind_processor(self.dialect)
        now = bind(utcnow()) if bind else utcnow()
        with self.ctx.engine.begin() as conn:
            if self.pg:
                # The import can be re-run (it only adds what is missing), so a crash may lose
                # the last chunks' commits rather than wait for a WAL flush at each one.
                conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
            self._prepare(conn)
            self._stage(conn, self._stage_rows(chunk))
            blocked = f"EXISTS (SELECT 1 FROM suppressions p WHERE p.email = {STAGE}.email)"
            report.suppressed += conn.exec_driver_sql(
                f"SELECT COUNT(*) FROM {STAGE} WHERE first = 1 AND {blocked}").scalar_one()
            conn.exec_driver_sql(f"DELETE FROM {STAGE} WHERE {blocked}")
            added, kept = (self._subscribe_pg if self.pg else self._subscribe)(conn, now)
            if not self.pg:
                conn.exec_driver_sql(f"DELETE FROM {STAGE}")
        report.added += added
        report.unchanged += kept - added

    def _subscribe(self, conn: Connection, now: Any) -> tuple[int, int]:
        """New subscribers, then subscriptions and their events for the staged rows that
        lack one (SQLite)."""
        m = self.mark
        conn.exec_driver_sql(
            f"INSERT INTO subscribers (email, name, timezone, attributes, soft_bounces, created_at, "
            f"updated_at) SELECT email, name, timezone, attributes, 0, {m}, {m} FROM {STAGE} WHERE first = 1 "
            f"AND NOT EXISTS (SELECT 1 FROM subscribers s WHERE s.email = {STAGE}.email)", (now, now))
        conn.exec_driver_sql(
            f"UPDATE {STAGE} SET sid = s.id, is_new = CASE WHEN EXISTS (SELECT 1 FROM subscriptions x "
            f"WHERE x.subscriber_id = s.id AND x.list_id = {STAGE}.list_id) THEN 0 ELSE 1 END "
            f"FROM subscribers s WHERE s.email = {STAGE}.email")
        conn.exec_driver_sql(
            "INSERT INTO subscriptions (subscriber_id, list_id, status, topics, consent_at, "
            "consent_source, consent_text, consent_version, confirmed_at, created_at, updated_at) "
            f"SELECT sid, list_id, 'active', topics, {m}, source, consent_text, 'import', {m}, {m}, {m} "
            f"FROM {STAGE} WHERE is_new = 1", (now, now, now, now))
        conn.exec_driver_sql(
            "INSERT INTO events (subscriber_id, kind, detail, actor, created_at) "
            f"SELECT sid, 'subscribed', detail, {m}, {m} FROM {STAGE} "
            "WHERE is_new = 1 ORDER BY line, list_id", (self.actor, now))
        added = conn.exec_driver_sql(
            f"SELECT COUNT(DISTINCT email) FROM {STAGE} WHERE is_new = 1").scalar_one()
        kept = conn.exec_driver_sql(f"SELECT COUNT(*) FROM {STAGE} WHERE first = 1").scalar_one()
        return int(added), int(kept)

    def _subscribe_pg(self, conn: Connection, now: Any) -> tuple[int, int]:
        """The same in one statement. New subscribers come back from their INSERT with
        their ids (RETURNING), so only the addresses seen before are looked up again, and
        only those need the "already subscribed?" probe; the rows picked feed both the
        subscriptions and the events INSERT. No staging UPDATE, no counting passes."""
        row = conn.exec_driver_sql(
            "WITH new AS (INSERT INTO subscribers (email, name, timezone, attributes, soft_bounces, "
            "created_at, updated_at) SELECT email, name, timezone, CAST(attributes AS JSON), 0, %s, %s "
            f"FROM {STAGE} st WHERE first = 1 "
            "AND NOT EXISTS (SELECT 1 FROM subscribers s WHERE s.email = st.email) RETURNING id, email), "
            "s AS MATERIALIZED ("
            f"SELECT st.line, st.list_id, st.topics, st.source, st.consent_text, st.detail, new.id AS sid "
            f"FROM {STAGE} st JOIN new ON new.email = st.email "
            "UNION ALL "
            f"SELECT st.line, st.list_id, st.topics, st.source, st.consent_text, st.detail, sub.id "
            f"FROM {STAGE} st JOIN subscribers sub ON sub.email = st.email "  # rows before this statement
            "WHERE st.email NOT IN (SELECT email FROM new) AND NOT EXISTS (SELECT 1 FROM subscriptions x "
            "WHERE x.subscriber_id = sub.id AND x.list_id = st.list_id)), "
            "ins AS (INSERT INTO subscriptions (subscriber_id, list_id, status, topics, consent_at, "
            "consent_source, consent_text, consent_version, confirmed_at, created_at, updated_at) "
            "SELECT sid, list_id, 'active', topics, %s, source, consent_text, 'import', %s, %s, %s FROM s), "
            "ev AS (INSERT INTO events (subscriber_id, kind, detail, actor, created_at) "
            "SELECT sid, 'subscribed', CAST(detail AS JSON), %s, %s FROM s ORDER BY line, list_id) "
            f"SELECT (SELECT COUNT(DISTINCT sid) FROM s), (SELECT COUNT(*) FROM {STAGE} WHERE first = 1)",
            (now, now, now, now, now, now, self.actor, now)).one()
        return int(row[0]), int(row[1])


def export_rows(ctx: Context) -> Iterator[list[str]]:
    """The header, then one row per subscriber with their weekly-list status (keyset pages)."""
    yield ["email", "name", "status", "topics", "created_at"]
    for row in iter_subscribers(ctx):
        yield [_safe_cell(row.email), _safe_cell(row.name), row.status, row.topics or "",
               row.created_at.isoformat()]


def export_csv(ctx: Context, out: IO[str]) -> int:
    """Write every subscriber as CSV; returns how many."""
    writer = csv.writer(out)
    n = -1
    for row in export_rows(ctx):
        writer.writerow(row)
        n += 1
    return n


def _safe_cell(value: str) -> str:
    """Defuse spreadsheet formula injection (a name like '=HYPERLINK(...)')."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value
