"""`kpdigest schedule status`."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import click

from kpdigest.base import Lazy, get, pass_ctx


@click.group()
def schedule() -> None:
    """What the scheduler (python schedule.py) runs and how it went."""


def _when(value: datetime | None, tz: ZoneInfo) -> str:
    return value.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z") if value else "-"


@schedule.command()
@pass_ctx
def status(obj: Lazy) -> None:
    """Each job's next run and last result (ok, skipped with reason, failed with error);
    the weekly job by what happened to its issue (sent, sent with failures, needs attention,
    failed; resuming while dispatch continues a send whose run was interrupted)."""
    from pipeline.jobs.registry import schedule_status

    ctx = get(obj)
    tz = ZoneInfo(ctx.config.schedule.timezone)
    _leader(ctx, tz)
    for job in schedule_status(ctx):
        source = "" if job["next_run_source"] == "store" else " (from config; scheduler not started yet)"
        click.echo(f"{job['id']}: {job['description']}")
        click.echo(f"  next run:    {_when(job['next_run'], tz)}{source}")
        if job["last_result"] is None:
            click.echo("  last run:    never")
            continue
        took = f" in {job['last_duration']:.1f}s" if job["last_duration"] is not None else ""
        click.echo(f"  last run:    {_when(job['last_run'], tz)}{took}: {job['last_result']}")
        if job["last_message"]:
            click.echo(f"               {job['last_message']}")


def _leader(ctx: Any, tz: ZoneInfo) -> None:
    """Which scheduler runs the jobs (PostgreSQL elects one; docs/scaling.md)."""
    from pipeline.jobs.leader import leader_status

    lead = leader_status(ctx)
    if lead.mode == "single":
        click.echo("leader:      one scheduler (SQLite: no election)")
        return
    who = f"{lead.leader} since {_when(lead.since, tz)}" if lead.leader else \
        "none: no scheduler is running, the jobs do not run"
    click.echo(f"leader:      {who}")
    click.echo(f"standbys:    {', '.join(lead.standbys) or 'none'}")


def register(group: click.Group) -> None:
    group.add_command(schedule)
