"""CSV imports started from the desk run in a background thread; the page polls progress.

Jobs live in this process's memory: `kpdigest serve` runs one waitress process, and a
restart only loses the progress display, never imported rows (each chunk commits).
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass, field

from core.context import Context
from core.errors import KpdigestError
from subscribers.csvio import ImportReport, import_csv

log = logging.getLogger(__name__)
_jobs: dict[str, ImportJob] = {}
_lock = threading.Lock()
KEEP = 20  # finished jobs remembered


@dataclass
class ImportJob:
    id: str
    filename: str
    total_lines: int
    report: ImportReport = field(default_factory=ImportReport)
    done: bool = False
    error: str | None = None

    @property
    def percent(self) -> int:
        if self.done:
            return 100
        return min(99, int(100 * self.report.rows / max(1, self.total_lines)))


def start(ctx: Context, raw: bytes, filename: str, list_slug: str, actor: str) -> ImportJob:
    job = ImportJob(uuid.uuid4().hex, filename, max(1, raw.count(b"\n")))
    with _lock:
        finished = [k for k, j in _jobs.items() if j.done]
        for k in finished[:-KEEP]:
            del _jobs[k]
        _jobs[job.id] = job

    def run() -> None:
        try:
            import_csv(ctx, raw, source_name=filename, list_slug=list_slug, actor=actor, report=job.report)
        except KpdigestError as exc:
            job.error = str(exc)
        except Exception as exc:  # a bug: keep it visible on the page and in the log
            log.exception("import %s failed", job.id)
            job.error = f"internal error: {exc}"
        finally:
            job.done = True

    threading.Thread(target=run, name=f"import-{job.id[:8]}", daemon=True).start()
    return job


def get(job_id: str) -> ImportJob | None:
    return _jobs.get(job_id)
