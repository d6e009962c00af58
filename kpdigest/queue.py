"""`kpdigest queue ...`: the editor queue."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from kpdigest.base import Lazy, get, pass_ctx


@click.group()
def queue() -> None:
    """The editor queue: add, list, approve, reject, pin, move."""


def _edit_options(func: Callable[..., Any]) -> Callable[..., Any]:
    for opt in reversed((
        click.option("--title", help="Title (required with --file; overrides the page's own)."),
        click.option("--summary", help="Summary text (overrides the extracted description)."),
        click.option("--image", help="Image URL."),
        click.option("--source", help="Source name shown in the digest."),
        click.option("--author", help="Author."),
        click.option("--published", help="Publication date, YYYY-MM-DD."),
    )):
        func = opt(func)
    return func


def _edits(**values: str | None) -> dict[str, str]:
    return {k: v for k, v in values.items() if v}


@queue.command()
@click.argument("url", required=False)
@click.option("--file", "file_", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="An original tip written in Markdown.")
@click.option("--article", type=int, help="Queue an article already collected from a feed, by id.")
@click.option("--note", help="Editor's note (not mailed).")
@click.option("--approve", is_flag=True, help="Approve at once.")
@_edit_options
@pass_ctx
def add(obj: Lazy, url: str | None, file_: Path | None, article: int | None, note: str | None,
        approve: bool, **fields: str | None) -> None:
    """Queue a web page by URL, a Markdown tip with --title and --file, or a feed article."""
    from pipeline.curate import queue as q

    ctx = get(obj)
    ctx.require_schema()
    if not file_ and not url and article is None:
        raise click.UsageError("give a URL, --article ID, or --title and --file")
    if file_ and not fields.get("title"):
        raise click.UsageError("--file needs --title")
    try:
        if article is not None:
            item = q.add_article(ctx, article, approve=approve, note=note, added_by="cli")
        elif file_:
            item = q.add_file(ctx, fields["title"] or "", file_, link=url, approve=approve, note=note,
                              added_by="cli")
        else:
            item = q.add_url(ctx, url or "", approve=approve, note=note, added_by="cli", **_edits(**fields))
    except q.AlreadyQueued as exc:
        click.echo(f"already queued as item {exc.item_id}")
        return
    click.echo(f"queued item {item}" + (" (approved)" if approve else ""))


@queue.command()
@click.argument("item_id", type=int)
@click.option("--link", help="Link of the article.")
@_edit_options
@pass_ctx
def edit(obj: Lazy, item_id: int, link: str | None, **fields: str | None) -> None:
    """Change fields of queue item ITEM_ID before it is used."""
    from pipeline.curate import queue as q

    changes = _edits(link=link, **fields)
    if not changes:
        raise click.UsageError("nothing to change: give --title, --summary, --image, ...")
    q.edit_item(get(obj), item_id, **changes)
    click.echo(f"item {item_id}: edited {', '.join(sorted(changes))}")


@queue.command(name="list")
@click.option("--all", "all_", is_flag=True, help="Include rejected and used items.")
@pass_ctx
def list_(obj: Lazy, all_: bool) -> None:
    """Open queue items in editor order."""
    from pipeline.curate import queue as q

    ctx = get(obj)
    ctx.require_schema()
    states = q.STATES if all_ else ("queued", "approved")
    rows = q.list_items(ctx, states)
    for row in rows:
        pin = "*" if row.pinned else " "
        click.echo(f"{row.id:>5}{pin} {row.state:<9} {row.score:>5.1f}  {row.title}"
                   + (f"  [{row.note}]" if row.note else ""))
    if not rows:
        click.echo("the queue is empty" if all_ else
                   "no open items in the queue (`queue list --all` shows rejected and used ones)")


def _state_command(name: str, state: str) -> click.Command:
    @click.command(name=name, help=f"Mark queue item ID {state}.")
    @click.argument("item_id", type=int)
    @click.option("--note", help="Editor's note.")
    @pass_ctx
    def cmd(obj: Lazy, item_id: int, note: str | None) -> None:
        from pipeline.curate import queue as q

        q.set_state(get(obj), item_id, state, note)
        click.echo(f"item {item_id}: {state}")

    return cmd


@queue.command()
@click.argument("item_id", type=int)
@click.option("--off", is_flag=True, help="Unpin.")
@pass_ctx
def pin(obj: Lazy, item_id: int, off: bool) -> None:
    """Pin an item to the top of the issue."""
    from pipeline.curate import queue as q

    q.pin(get(obj), item_id, not off)
    click.echo(f"item {item_id}: {'unpinned' if off else 'pinned'}")


@queue.command()
@click.argument("item_id", type=int)
@click.argument("position", type=click.IntRange(min=1))
@pass_ctx
def move(obj: Lazy, item_id: int, position: int) -> None:
    """Move an item to POSITION (1 = first)."""
    from pipeline.curate import queue as q

    q.move(get(obj), item_id, position)
    click.echo(f"item {item_id}: position {position}")


queue.add_command(_state_command("approve", "approved"))
queue.add_command(_state_command("reject", "rejected"))
queue.add_command(_state_command("requeue", "queued"))


def register(group: click.Group) -> None:
    group.add_command(queue)
