"""`kpdigest articles ...`: the editors' inbox of collected articles."""

from __future__ import annotations

from typing import Any

import click

from kpdigest.base import Lazy, get, pass_ctx

STATES = ("new", "queued", "used", "rejected", "below threshold")  # core.states.ArticleState


@click.group()
def articles() -> None:
    """Collected articles: list, show, search, and what the selection would do with each."""


def _filter_options(func: Any) -> Any:
    for opt in reversed((
        click.option("--topic", help="Only articles of this topic (its slug)."),
        click.option("--feed", type=int, help="Only articles of this feed (its id)."),
        click.option("--state", type=click.Choice(STATES), help="Only articles in this state."),
        click.option("--since", help="Published on or after this date, YYYY-MM-DD."),
        click.option("--until", help="Published on or before this date, YYYY-MM-DD."),
        click.option("--sort", type=click.Choice(("score", "date")), default="score",
                     show_default=True),
        click.option("--page", type=int, default=1, show_default=True, help="50 a page."),
    )):
        func = opt(func)
    return func


def _when(ctx: Any, value: Any) -> str:
    from zoneinfo import ZoneInfo

    return value.astimezone(ZoneInfo(ctx.config.schedule.timezone)).strftime("%Y-%m-%d %H:%M %Z")


def _print_page(ctx: Any, args: dict[str, Any]) -> None:
    from pipeline.curate import inbox

    page = inbox.list_articles(ctx, inbox.parse_filters(ctx.config, args))
    if page.skip_warning:
        click.echo(page.skip_warning)
    for e in page.entries:
        topics = ", ".join(ctx.config.topics[t].label for t in e.topics if t in ctx.config.topics)
        click.echo(f"{e.id:>7} {e.score:>5.1f} {e.state:<15} {e.title}")
        click.echo(f"{'':>14}{e.feed or e.source} · {_when(ctx, e.when)} · {topics or 'no topic'}"
                   f" · {e.verdict}: {e.why}")
    if not page.entries:
        click.echo("no articles match")
    elif page.has_next:
        click.echo(f"more: --page {page.filters.page + 1}")


@articles.command(name="list")
@_filter_options
@pass_ctx
def list_(obj: Lazy, **args: Any) -> None:
    """Collected articles, best-scoring (or newest) first, with the selection's verdict."""
    _print_page(get(obj), args)


@articles.command()
@click.argument("words")
@_filter_options
@pass_ctx
def search(obj: Lazy, words: str, **args: Any) -> None:
    """Articles whose title or summary has every one of WORDS (full-text, stemmed)."""
    _print_page(get(obj), {**args, "q": words})


@articles.command()
@click.argument("article_id", type=int)
@pass_ctx
def show(obj: Lazy, article_id: int) -> None:
    """One article: source, topics, the keywords that earned its score, its story, verdict."""
    from pipeline.curate import inbox

    ctx = get(obj)
    e = inbox.show_article(ctx, article_id)
    topics = ctx.config.topics
    lines = [f"{e.title}", f"  link:      {e.link or '-'}",
             f"  source:    {e.source} (feed: {e.feed or 'none: an editor added it'})",
             f"  date:      {_when(ctx, e.when)}",
             f"  topics:    {', '.join(topics[t].label for t in e.topics if t in topics) or '-'}",
             f"  score:     {e.score:g}"]
    for slug, words in e.keywords.items():
        label = topics[slug].label if slug in topics else slug
        lines.append(f"    {label}: " + ", ".join(f"{w} x{n}" for w, n in words.items()))
    lines += [f"  story:     {e.copies} cop{'y' if e.copies == 1 else 'ies'}"
              f" from {', '.join(e.copy_sources) or e.source}",
              f"  state:     {e.state}" + (f" (queue item {e.queue_id}: {e.queue_state}"
                                           f"{', pinned' if e.pinned else ''})" if e.queue_id else ""),
              f"  selection: {e.verdict}: {e.why}"]
    click.echo("\n".join(lines))


def register(group: click.Group) -> None:
    group.add_command(articles)
