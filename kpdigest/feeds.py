"""`kpdigest feeds ...`: every feed's health, and adding, removing, pausing, resuming."""

from __future__ import annotations

from datetime import datetime

import click

from kpdigest.base import Lazy, get, pass_ctx


@click.group()
def feeds() -> None:
    """List feeds with their health; add, remove, pause and resume them."""


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else "never"


@feeds.command(name="list")
@pass_ctx
def list_(obj: Lazy) -> None:
    """Every feed: state, articles, last success, last error, pause reason."""
    from pipeline.collect.feeds import feed_health, sync_config_feeds

    ctx = get(obj)
    ctx.require_schema()
    sync_config_feeds(ctx)
    for f in feed_health(ctx):
        click.echo(f"{f.id:>4}  {f.state:<11} {f.articles:>5} articles  "
                   f"last success {_when(f.last_success_at)}  {f.name} <{f.url}>")
        if f.last_error:
            retry = f", retry after {_when(f.next_attempt_at)}" if f.state == "backing off" else ""
            click.echo(f"      last error {_when(f.last_error_at)} ({f.consecutive_failures} in a row"
                       f"{retry}): {f.last_error}")
        if f.paused_reason:
            click.echo(f"      paused: {f.paused_reason}")
        if f.last_warning:
            click.echo(f"      warning: {f.last_warning}")


@feeds.command()
@click.argument("url")
@click.option("--name", help="Display name (default: the URL).")
@click.option("--topic", "topics", multiple=True, help="A topic the feed usually carries (repeatable).")
@pass_ctx
def add(obj: Lazy, url: str, name: str | None, topics: tuple[str, ...]) -> None:
    """Add a feed by URL (or a local file path); it is fetched on the next collect."""
    from pipeline.collect.feeds import add_feed, sync_config_feeds

    ctx = get(obj)
    ctx.require_schema()
    sync_config_feeds(ctx)
    click.echo(f"feed {add_feed(ctx, url, name, list(topics), allow_local=True)} added: {name or url}")


def _feed_command(name: str, verb: str) -> click.Command:
    @click.command(name=name, help=f"{verb.capitalize()} feed FEED (its id, URL or name).")
    @click.argument("feed")
    @pass_ctx
    def cmd(obj: Lazy, feed: str) -> None:
        from pipeline.collect import feeds as f

        ctx = get(obj)
        ctx.require_schema()
        action = {"remove": f.remove_feed, "pause": f.pause_feed, "resume": f.resume_feed}[name]
        click.echo(f"{action(ctx, feed)}: {verb}")

    return cmd


for _name, _verb in (("remove", "removed"), ("pause", "paused"), ("resume", "resumed")):
    feeds.add_command(_feed_command(_name, _verb))


def register(group: click.Group) -> None:
    group.add_command(feeds)
