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
    if csv_path is not None:
        csv_path.write_text(issue_csv(r), encoding="utf-8")
        click.echo(f"wrote {csv_path}", err=True)


def register(issue: click.Group) -> None:
    """Adds this module's commands to the `issue` group."""
    issue.add_command(clicks)
