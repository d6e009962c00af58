"""CSV import: how long a million rows take, on SQLite (and PostgreSQL when configured).

`python -m benchmarks.bench_import [ROWS]`; KPDIGEST_BENCH_DATABASE_URL adds a PostgreSQL run
(for example postgresql+psycopg://postgres@127.0.0.1:5432/test; a scratch schema is used).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import text

from core.config import DEFAULT_CONFIG, load_config
from core.context import Context
from core.db import make_engine, migrate
from subscribers.csvio import import_csv
from subscribers.store import ensure_default_list


def make_csv(path: Path, rows: int) -> None:
    """Semicolon-separated, quoted names, a BOM, and one bad row in a thousand."""
    with path.open("w", encoding="utf-8-sig", newline="") as fh:
        fh.write("email;name;topics\r\n")
        for i in range(rows):
            email = f"reader{i}@domain{i % 997}.example.com" if i % 1000 else f"bad-row-{i}"
            topic = "kp" if i % 3 else "kp,beauty-tips"
            fh.write(f'{email};"Reader {i}";"{topic}"\r\n')


def run(url: str, csv_path: Path, rows: int) -> tuple[float, float, float, str]:
    os.environ["KPDIGEST_DATABASE_URL"] = url
    ctx = Context(load_config(DEFAULT_CONFIG))
    migrate(ctx.engine)
    with ctx.engine.begin() as conn:
        ensure_default_list(conn, "bench")
    t0, c0 = time.perf_counter(), time.process_time()
    report = import_csv(ctx, csv_path)
    first, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert report.added == rows - len(report.errors), report.summary()
    t0 = time.perf_counter()
    again = import_csv(ctx, csv_path)
    second = time.perf_counter() - t0
    assert again.added == 0, again.summary()
    ctx.close()
    return first, cpu, second, report.summary()


def _pg_scratch(base: str) -> tuple[str, str]:
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    with make_engine(base).begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in base else "?"
    return schema, f"{base}{sep}options=-csearch_path%3D{schema}"


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 1_000_000
    os.environ.setdefault("KPDIGEST_SECRET_KEY", "bench")
    with tempfile.TemporaryDirectory() as tmp:
        csv_path = Path(tmp) / "subscribers.csv"
        make_csv(csv_path, rows)
        print(f"{rows} rows, {csv_path.stat().st_size / 1e6:.1f} MB")
        targets = [("sqlite", f"sqlite:///{Path(tmp) / 'bench.db'}")]
        pg = os.environ.get("KPDIGEST_BENCH_DATABASE_URL")
        schema = None
        if pg:
            schema, url = _pg_scratch(pg)
            targets.append(("postgresql", url))
        try:
            for name, url in targets:
                load = os.getloadavg()[0]  # the machine is shared: say how busy it was
                first, cpu, second, summary = run(url, csv_path, rows)
                print(f"{name:<11} import {first:6.1f} s ({rows / first:,.0f} rows/s, this process's CPU "
                      f"{cpu:.1f} s); re-import {second:6.1f} s; {summary}; load average "
                      f"{load:.1f} -> {os.getloadavg()[0]:.1f}")
        finally:
            if pg and schema:
                with make_engine(pg).begin() as conn:
                    conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))


if __name__ == "__main__":
    main()
