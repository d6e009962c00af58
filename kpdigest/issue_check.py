"""`kpdigest issue check`: the pre-send report."""

from __future__ import annotations

import click

from kpdigest.base import Lazy, get, pass_ctx


@click.command()
@click.argument("number", type=int)
@click.option("--links", "fetch_links", is_flag=True, help="Also request every link (needs the network).")
@click.option("--no-spam", is_flag=True, help="Skip the SpamAssassin run.")
@pass_ctx
def check(obj: Lazy, number: int, fetch_links: bool, no_spam: bool) -> None:
    """Check issue NUMBER before sending: size, alt text, links, footer, spam score."""
    from core.errors import CheckFailed
    from pipeline.compose.check import check_issue

    ctx = get(obj)
    ctx.require_schema()
    report = check_issue(ctx, number, spam=not no_spam, fetch_links=fetch_links)
    for line in report.info:
        click.echo(f"  {line}")
    for label, result in report.spam.items():
        click.echo(f"  SpamAssassin rules that fired, {label}:")
        for pts, name, desc in result.rules:
            click.echo(f"    {pts + 0.0:5.1f} {name:<24} {desc}")
    for line in report.warnings:
        click.echo(f"warning: {line}")
    for line in report.problems:
        click.echo(f"problem: {line}")
    if not report.ok:
        raise CheckFailed(f"issue #{number}: {len(report.problems)} problem(s); `issue send` refuses it "
                          "unless --force")
    click.echo(f"issue #{number}: ready to send ({len(report.warnings)} warning(s))")


def register(issue: click.Group) -> None:
    """Adds this module's commands to the `issue` group."""
    issue.add_command(check)
