"""`kpdigest issue ...`: build, preview, send, status."""

from __future__ import annotations

from pathlib import Path

import click

from kpdigest import issue_check, issue_clicks, issue_review, issue_send
from kpdigest.base import Lazy, get, pass_ctx


@click.group()
def issue() -> None:
    """Build, preview and send issues."""


@issue.command()
@click.option("--period", help="ISO week, e.g. 2026-W48 (default: this week).")
@pass_ctx
def build(obj: Lazy, period: str | None) -> None:
    """Select articles and freeze the next issue; prints its number."""
    from pipeline.compose.issues import build_issue

    r = build_issue(get(obj), period=period)
    if r.status == "skipped":
        click.echo(f"skipped {r.period}: {r.reason}")
        raise SystemExit(0)
    for note in r.notes:
        click.echo(f"note: {note}", err=True)
    click.echo(r.number)
    if not r.created:
        click.echo(f"issue #{r.number} already exists for {r.period} ({r.status})", err=True)
    else:
        click.echo(f"issue #{r.number} frozen for {r.recipients} recipients", err=True)


@issue.command()
@click.argument("number", type=int, required=False)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the HTML (default: var/preview.html).")
@pass_ctx
def preview(obj: Lazy, number: int | None, out: Path | None) -> None:
    """Write the digest HTML for a browser: issue NUMBER, or the next one unfrozen."""
    from pipeline.compose.issues import get_issue, preview_next

    ctx = get(obj)
    if number is None:
        html, sel = preview_next(ctx)
        click.echo(f"next issue: {len(sel.picked)} articles", err=True)
    else:
        ctx.require_schema()
        with ctx.engine.connect() as conn:
            html = get_issue(conn, number).web_html or ""
    target = out or ctx.config.var_dir / "preview.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(html, encoding="utf-8")
    click.echo(str(target))


@issue.command(name="list")
@pass_ctx
def list_(obj: Lazy) -> None:
    """Recent issues, skipped ones with their reason."""
    from pipeline.compose.issues import list_issues

    ctx = get(obj)
    ctx.require_schema()
    rows = list_issues(ctx)
    for row in rows:
        num = f"#{row.number}" if row.number else "-"
        extra = f"  ({row.skip_reason})" if row.skip_reason else f"  {row.subject}"
        click.echo(f"{num:>5}  {row.period}  {row.status:<9}{extra}")
    if not rows:
        click.echo("no issues yet (`kpdigest issue build` makes this week's)")


def register(group: click.Group) -> None:
    for module in (issue_check, issue_clicks, issue_review, issue_send):
        module.register(issue)
    group.add_command(issue)
