"""Jobs: what the scheduler runs (collect, the weekly issue, review deadlines, daily
maintenance), their triggers and the `job_runs` record.

The top stage: may import every other stage and `core`, never a shell.
"""
