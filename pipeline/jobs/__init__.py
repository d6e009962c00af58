"""Jobs: what the scheduler runs (collect, the weekly issue, review deadlines, daily
maintenance), their triggers and the `job_runs` record.

The top stage: may import every other stage and `core`, never a shell.
"""

from pipeline.jobs.registry import scheduled

# The scheduler's job store keeps this reference ("pipeline.jobs:scheduled") in the
# database: it must keep resolving across releases.
__all__ = ["scheduled"]
