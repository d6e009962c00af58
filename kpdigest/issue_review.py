"""`kpdigest issue approve/reject` (draft review)."""

from __future__ import annotations

import getpass

import click

from kpdigest.base import Lazy, get, pass_ctx


@click.command()
@click.argument("number", type=int)
@click.option("--by", default=None, help="Who approves (default: the login name).")
@click.option("--force", is_flag=True, help="Approve even if the issue fails its checks.")
@pass_ctx
def approve(obj: Lazy, number: int, by: str | None, force: bool) -> None:
    """Approve draft issue NUMBER; the scheduler sends it on its next dispatch."""
    from pipeline.deliver.review import approve_issue

    row = approve_issue(get(obj), number, by or getpass.getuser(), force=force)
    click.echo(f"issue #{number} approved by {row.approved_by}; the scheduler sends it next")


@click.command()
@click.argument("number", type=int)
@click.option("--by", default=None, help="Who rejects (default: the login name).")
@click.option("--reason", default="", help="Why, for the record.")
@pass_ctx
def reject(obj: Lazy, number: int, by: str | None, reason: str) -> None:
    """Reject draft issue NUMBER: its week is recorded as skipped, its articles freed."""
    from pipeline.deliver.review import reject_issue

    why = reject_issue(get(obj), number, by or getpass.getuser(), reason)
    click.echo(f"issue #{number} withdrawn: {why}")


def register(issue: click.Group) -> None:
    issue.add_command(approve)
    issue.add_command(reject)
