"""`kpdigest subscribers ...`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from core.errors import InvalidInput
from kpdigest.base import Lazy, get, pass_ctx, plural


@click.group()
def subscribers() -> None:
    """Add, import, export, list and remove subscribers."""


@subscribers.command()
@click.argument("email")
@click.option("--name", default="", help="Display name.")
@click.option("--topic", "topics", multiple=True, help="Only these topics (repeatable).")
@pass_ctx
def add(obj: Lazy, email: str, name: str, topics: tuple[str, ...]) -> None:
    """Add a subscriber who already consented (admins); the web form does double opt-in."""
    from subscribers.store import add_subscriber

    ctx = get(obj)
    ctx.require_schema()
    unknown = [t for t in topics if t not in ctx.config.topics]
    if unknown:
        raise InvalidInput(f"unknown topic {unknown[0]!r} (known: {', '.join(ctx.config.topics)})")
    sid = add_subscriber(ctx, email, name, confirmed=True, topics=list(topics) or None,
                         source="cli")
    click.echo(f"subscriber {sid}: {email}")


@subscribers.command(name="import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--list", "list_slug", default="weekly", show_default=True,
              help="List for rows without a `lists` column.")
@pass_ctx
def import_(obj: Lazy, file: Path, list_slug: str) -> None:
    """Import a CSV of people who consented (any common dialect and encoding).

    Bad rows are reported by line and the good ones land; importing the same file again
    changes nothing; suppressed addresses stay suppressed.
    """
    from subscribers.csvio import import_csv

    ctx = get(obj)
    ctx.require_schema()
    report = import_csv(ctx, file, list_slug=list_slug, actor="cli")
    for line, reason in report.errors:
        click.echo(f"line {line}: {reason}", err=True)
    click.echo(report.summary())
    if report.errors and not (report.added or report.unchanged or report.suppressed):
        sys.exit(InvalidInput.exit_code)


@subscribers.command()
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="File (default: stdout).")
@pass_ctx
def export(obj: Lazy, out: Path | None) -> None:
    """Export every subscriber as CSV."""
    from subscribers.csvio import export_csv

    ctx = get(obj)
    ctx.require_schema()
    if out:
        with out.open("w", newline="", encoding="utf-8") as fh:
            n = export_csv(ctx, fh)
        click.echo(f"{plural(n, 'subscriber')} written to {out}", err=True)
    else:
        export_csv(ctx, sys.stdout)


@subscribers.command(name="list")
@pass_ctx
def list_(obj: Lazy) -> None:
    """Every subscriber with their status."""
    from subscribers.store import iter_subscribers

    ctx = get(obj)
    ctx.require_schema()
    empty = True
    for row in iter_subscribers(ctx):
        empty = False
        until = f" until {row.paused_until:%Y-%m-%d}" if row.paused_until else ""
        click.echo(f"{row.id:>7}  {row.status + until:<13} {row.email}  {row.name}")
    if empty:
        click.echo("no subscribers yet (`kpdigest subscribers add` or `subscribers import`)")


@subscribers.command()
@click.argument("email")
@pass_ctx
def remove(obj: Lazy, email: str) -> None:
    """Unsubscribe from everything and suppress the address."""
    from subscribers.store import remove_subscriber

    ctx = get(obj)
    ctx.require_schema()
    remove_subscriber(ctx, email)
    click.echo(f"{email}: unsubscribed and suppressed")


def register(group: click.Group) -> None:
    group.add_command(subscribers)
