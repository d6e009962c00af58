"""init, collect, run, serve."""

from __future__ import annotations

import logging
import sys

import click

from kpdigest.base import Lazy, get, outcome_exit_code, pass_ctx, plural


@click.command()
@pass_ctx
def init(obj: Lazy) -> None:
    """Create or migrate the database (safe to run twice)."""
    from core.db import migrate
    from subscribers.store import ensure_default_list

    ctx = get(obj)
    rev = migrate(ctx.engine)
    with ctx.engine.begin() as conn:
        ensure_default_list(conn, ctx.config.site.name)
    click.echo(f"database ready at revision {rev}: {ctx.engine.url.render_as_string(hide_password=True)}")


@click.command()
@click.option("--force", is_flag=True, help="Also fetch feeds that are backing off after failures.")
@pass_ctx
def collect(obj: Lazy, force: bool) -> None:
    """Fetch every due feed (concurrently) and store new articles."""
    from pipeline.collect.run import collect as run_collect

    ctx = get(obj)
    ctx.require_schema()
    # Each feed's error is printed below; the library's warning would print it twice.
    if not logging.getLogger().isEnabledFor(logging.INFO):
        logging.getLogger("pipeline.collect.run").setLevel(logging.ERROR)
    report = run_collect(ctx, force=force)
    for o in report.outcomes:
        if o.error:
            state = f"error: {o.error}" + (" (feed paused)" if o.paused else "")
        elif o.not_modified:
            state = "not modified"
        else:
            state = f"{o.new} new, {o.seen} seen"
        click.echo(f"{o.name}: {state}" + (f" (warning: {o.warning})" if o.warning else "")
                   + (f" (moved to {o.moved_to})" if o.moved_to else ""))
    for name, until in report.waiting:
        click.echo(f"{name}: backing off until {until:%Y-%m-%d %H:%M} UTC (--force to try now)")
    for name, count in report.clusters:
        click.echo(f"{name}: {count} near-identical entries grouped into one story")
    click.echo(f"{plural(report.new, 'new article')} from {plural(len(report.outcomes), 'feed')}, "
               f"{len(report.failed)} failed" + (f", {report.grouped} joined a story as near-duplicates"
                                                 if report.grouped else "")
               + (f", {report.full} began a new story (theirs was full)" if report.full else ""))


@click.command()
@click.option("--force", is_flag=True, help="Send even if the issue fails its checks.")
@pass_ctx
def run(obj: Lazy, force: bool) -> None:
    """Collect, build and send once: what the scheduler does each week.

    Exits 0 for a clean send (or nothing to send this period), else with the issue's
    outcome code (see the README)."""
    from pipeline.jobs.weekly import run_weekly

    result = run_weekly(get(obj), force=force, echo=click.echo)
    click.echo(result.summary)
    if result.status:  # the status: exit 0 only for a clean send
        code = outcome_exit_code(result.status)
        if code:
            sys.exit(code)


@click.command()
@click.option("--host", default=None, help="Address to listen on (default: web.host).")
@click.option("--port", default=None, type=int, help="Port (default: web.port).")
@pass_ctx
def serve(obj: Lazy, host: str | None, port: int | None) -> None:
    """Serve the web app on a production WSGI server (waitress)."""
    import threading

    from waitress import serve as waitress_serve

    from pipeline.deliver import lane
    from subscribers.webhooks.sns_certs import start_fetcher
    from web import create_app
    from web.server import waitress_options

    ctx = get(obj)
    app = create_app(ctx)
    h, p = host or ctx.config.web.host, port or ctx.config.web.port
    options = waitress_options(ctx.config)
    proxy = (f"behind {ctx.config.web.trusted_proxies} trusted proxy(ies) at "
             f"{options['trusted_proxy']}") if "trusted_proxy" in options else "no proxy trusted"
    start_fetcher(ctx)
    stop = threading.Event()
    lane.start_worker(ctx, stop)  # sign-up mail goes out from here, never inside a request
    click.echo(f"serving on http://{h}:{p} ({proxy})")
    try:
        waitress_serve(app, host=h, port=p, **options)
    finally:
        stop.set()
        lane.WAKE.set()


def register(group: click.Group) -> None:
    for cmd in (init, collect, run, serve):
        group.add_command(cmd)
