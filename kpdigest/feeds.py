"""`kpdigest feeds ...`: every feed's health, and adding, removing, pausing, resuming."""

from __future__ import annotations

import contextlib
from datetime import datetime

import click

from core.context import Context
from core.errors import FetchError, InvalidInput, NotFound, StateError
from kpdigest.base import Lazy, get, pass_ctx, plural


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
@click.option("--no-check", is_flag=True, help="Add it without fetching it once first.")
@pass_ctx
def add(obj: Lazy, url: str, name: str | None, topics: tuple[str, ...], no_check: bool) -> None:
    """Add a feed by URL (or a local file path). It is fetched once first to check that it
    is a feed (`--no-check` skips that); articles come with the next collect."""
    from pipeline.collect.feeds import add_feed, find_feed, sync_config_feeds

    ctx = get(obj)
    ctx.require_schema()
    sync_config_feeds(ctx)
    unknown = [t for t in topics if t not in ctx.config.topics]
    if unknown:  # the cheap refusals first, before any fetch
        raise InvalidInput(f"unknown topic {unknown[0]!r} (known: {', '.join(ctx.config.topics)})")
    with ctx.engine.connect() as conn, contextlib.suppress(NotFound):
        raise StateError(f"feed {find_feed(conn, url.strip()).id} already has this URL")
    found = None if no_check else _check_feed(ctx, url.strip())
    click.echo(f"feed {add_feed(ctx, url, name, list(topics), allow_local=True)} added: "
               f"{name or url}" + (f" ({found})" if found else ""))


def _check_feed(ctx: Context, url: str) -> str:
    """Fetch and parse `url` once: what it found, or InvalidInput saying what is wrong."""
    from core.db import utcnow
    from pipeline.collect.fetch import fetch, is_http, local_path, make_session
    from pipeline.collect.parse import parse_feed

    if not is_http(url):
        if "://" in url and not url.startswith("file://"):
            raise InvalidInput(f"not an http(s) URL: {url!r}")
        if not local_path(ctx.config, url).is_file():
            raise InvalidInput(f"not an http(s) URL, nor a file here: {url!r}")
    try:
        with make_session(ctx.config) as session:
            got = fetch(session, url, ctx.config)
        if got.status != 200 and is_http(url):
            raise FetchError(f"HTTP {got.status}")
        parsed = parse_feed(got.body, got.headers, got.final_url or url, ctx.config, url,
                            utcnow())
    except FetchError as exc:
        raise InvalidInput(f"{url}: {exc} (`--no-check` adds it anyway)") from exc
    title = f"{parsed.title!r}, " if parsed.title else ""
    return f"a feed: {title}{plural(parsed.raw_entries, 'entry', 'entries')}"


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
