"""`kpdigest issue send/status`."""

from __future__ import annotations

import click

from kpdigest.cli import Lazy, get, pass_ctx


@click.command()
@click.argument("number", type=int)
@pass_ctx
def send(obj: Lazy, number: int) -> None:
    """Send a frozen issue through the configured transport (resumes where it stopped)."""
    from pipeline.send import send_issue

    r = send_issue(get(obj), number)
    c = r.counts
    click.echo(f"issue #{number}: sent now {r.sent_now}; totals: "
               + ", ".join(f"{k} {v}" for k, v in c.items()))


@click.command()
@click.argument("number", type=int, required=False)
@pass_ctx
def status(obj: Lazy, number: int | None) -> None:
    """Counts per delivery state."""
    from pipeline.issues import delivery_counts, get_issue

    ctx = get(obj)
    ctx.require_schema()
    with ctx.engine.connect() as conn:
        row = get_issue(conn, number)
        counts = delivery_counts(conn, row.id)
    click.echo(f"issue #{row.number} ({row.period}): {row.status}")
    for state, n in counts.items():
        click.echo(f"  {state:<11}{n:>9}")



def register(issue: click.Group) -> None:
    issue.add_command(send)
    issue.add_command(status)
