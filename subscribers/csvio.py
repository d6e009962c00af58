"""CSV import and export of subscribers, shared by the CLI and the web app.

Import is per-row isolated: a bad row is reported with its line number and reason and the
good rows land. Re-importing a file changes nothing; suppressed addresses stay suppressed.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from kpdigest.context import Context
from kpdigest.errors import InvalidInput, KpdigestError
from subscribers.addresses import normalize_email
from subscribers.store import add_subscriber, iter_subscribers

EMAIL_COLUMNS = ("email", "e-mail", "email address", "mail", "address")


@dataclass
class ImportReport:
    added: int = 0
    unchanged: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)  # (line, reason)


def _decode(raw: bytes) -> str:
    for enc in ("utf-8-sig", "utf-16") if raw[:2] not in (b"\xff\xfe", b"\xfe\xff") else ("utf-16",):
        try:
            return raw.decode(enc)
        except UnicodeDecodeError:
            continue
    return raw.decode("cp1252", errors="replace")


def read_rows(text: str) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) pairs in any common dialect; header names are case-folded."""
    sample = text[:8192]
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(sample, delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    reader = csv.DictReader(io.StringIO(text), dialect=dialect)
    reader.fieldnames = [(f or "").strip().lower() for f in reader.fieldnames or []]
    if not any(f in EMAIL_COLUMNS for f in reader.fieldnames):
        raise InvalidInput(f"no email column among {reader.fieldnames}")
    for row in reader:
        yield reader.line_num, {k: (v or "").strip() for k, v in row.items() if k}


def import_csv(ctx: Context, source: Path | IO[bytes], *, source_name: str | None = None) -> ImportReport:
    raw = Path(source).read_bytes() if isinstance(source, (str, Path)) else source.read()
    report = ImportReport()
    name = source_name or (str(source) if isinstance(source, (str, Path)) else "upload")
    for line, row in read_rows(_decode(raw)):
        email = next((row[c] for c in EMAIL_COLUMNS if row.get(c)), "")
        try:
            addr = normalize_email(email)
            topics = [t.strip() for t in row.get("topics", "").replace(";", ",").split(",") if t.strip()]
            unknown = [t for t in topics if t not in ctx.config.topics]
            if unknown:
                raise InvalidInput(f"unknown topic {unknown[0]!r}")
            before = report.added
            sid_existed = _exists(ctx, addr)
            add_subscriber(ctx, addr, row.get("name", ""), confirmed=True, topics=topics or None,
                           source=row.get("consent_source") or f"import:{name}")
            report.added += 0 if sid_existed else 1
            report.unchanged += 1 if sid_existed and report.added == before else 0
        except KpdigestError as exc:
            report.errors.append((line, str(exc)))
    return report


def _exists(ctx: Context, addr: str) -> bool:
    from sqlalchemy import select

    from kpdigest.models import subscribers

    with ctx.engine.connect() as conn:
        return conn.execute(select(subscribers.c.id).where(subscribers.c.email == addr)).first() is not None


def export_csv(ctx: Context, out: IO[str]) -> int:
    writer = csv.writer(out)
    writer.writerow(["email", "name", "status", "topics", "created_at"])
    n = 0
    for row in iter_subscribers(ctx):
        writer.writerow([row.email, row.name, row.status, row.topics or "",
                         row.created_at.isoformat()])
        n += 1
    return n
