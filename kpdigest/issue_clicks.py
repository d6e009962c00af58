"""`kpdigest issue clicks`: what readers clicked, in aggregate (docs/measurement.md)."""

from __future__ import annotations

from pathlib import Path

import click

from kpdigest.base import Lazy, get, pass_ctx


@click.command()
@click.argument("number", type=int)
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the figures as CSV to this file ('-': standard output only).")
@pass_ctx
def clicks(obj: Lazy, number: int, csv_path: Path | None) -> None:
    """Clicks of issue NUMBER: readers and machines apart, by link, section and source."""
    from pipeline.measure.report import issue_clicks, issue_csv

    r = issue_clicks(get(obj), number)
    if csv_path is not None and str(csv_path) == "-":
        click.echo(issue_csv(r), nl=False)
        return
    rate = 100 * r.unique / r.recipients if r.recipients else 0.0
    click.echo(f"issue #{r.number}: {r.clicks} clicks by {r.unique} readers of {r.recipients} "
               f"({rate:.1f} % click-through); machine traffic apart: {r.machine}"
               + (f" ({', '.join(f'{k} {n}' for k, n in sorted(r.machine_reasons.items()))})"
                  if r.machine_reasons else ""))
    for title, rows in (("links", r.links), ("sections", r.sections), ("sources", r.sources)):
        click.echo(f"{title}:")
        for row in rows:
            click.echo(f"  {row.clicks:>6} {100 * row.share:5.1f} %  {row.unique:>5} readers "
                       f"{100 * row.rate:5.1f} %  machine {row.machine:<5} {row.key}")
    if r.votes:
        click.echo("more / less like this (readers):")
        for v in r.votes:
            click.echo(f"  {v.kind:<7} {v.key:<30} more {v.more:<5} less {v.less}")
    if csv_path is not None:
        csv_path.write_text(issue_csv(r), encoding="utf-8")
        click.echo(f"wrote {csv_path}", err=True)


@click.command()
@click.option("--last", type=int, default=4, show_default=True, help="Issues whose votes count.")
@click.option("--apply", "topic", default=None, help="Approve: set this topic's weight as suggested.")
@click.option("--by", "approved_by", default="cli", show_default=True, help="Who approves (audit).")
@pass_ctx
def weights(obj: Lazy, last: int, topic: str | None, approved_by: str) -> None:
    """Topic weights suggested by "more / less like this"; --apply TOPIC approves one."""
    from pipeline.measure.report import weight_suggestions
    from pipeline.measure.weights import apply_suggestion

    ctx = get(obj)
    if topic is not None:
        s = apply_suggestion(ctx, topic, approved_by, last)
        click.echo(f"{s.topic}: weight {s.current:g} -> {s.suggested:g} in "
                   f"{ctx.config.source} (more {s.more}, less {s.less})")
        return
    rows = weight_suggestions(ctx, last)
    if not rows:
        click.echo(f"no votes in the last {last} issues")
    for s in rows:
        click.echo(f"{s.topic:<20} more {s.more:<5} less {s.less:<5} weight {s.current:g} "
                   f"-> suggested {s.suggested:g}")


def register(issue: click.Group) -> None:
    """Adds this module's commands to the `issue` group."""
    issue.add_command(clicks)
    issue.add_command(weights)
