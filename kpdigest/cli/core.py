"""init, collect, run, serve."""

from __future__ import annotations

import click

from kpdigest.cli import Lazy, get, pass_ctx


@click.command()
@pass_ctx
def init(obj: Lazy) -> None:
    """Create or migrate the database (safe to run twice)."""
    from kpdigest.db import migrate
    from subscribers.store import ensure_default_list

    ctx = get(obj)
    rev = migrate(ctx.engine)
    with ctx.engine.begin() as conn:
        ensure_default_list(conn, ctx.config.site.name)
    click.echo(f"database ready at revision {rev}: {ctx.engine.url.render_as_string(hide_password=True)}")


@click.command()
@pass_ctx
def collect(obj: Lazy) -> None:
    """Fetch every enabled feed and store new articles."""
    from pipeline.collect import collect as run_collect

    report = run_collect(get(obj))
    for o in report.outcomes:
        state = f"error: {o.error}" if o.error else ("not modified" if o.not_modified else
                                                     f"{o.new} new, {o.seen} seen")
        click.echo(f"{o.name}: {state}" + (f" (warning: {o.warning})" if o.warning else ""))
    click.echo(f"{report.new} new articles from {len(report.outcomes)} feeds, "
               f"{len(report.failed)} failed")


@click.command()
@click.option("--force", is_flag=True, help="Send even if the issue fails its checks.")
@pass_ctx
def run(obj: Lazy, force: bool) -> None:
    """Collect, build and send once: what the scheduler does each week."""
    from pipeline.weekly import run_weekly

    result = run_weekly(get(obj), force=force, echo=click.echo)
    click.echo(result.summary)


@click.command()
@click.option("--host", default=None, help="Address to listen on (default: web.host).")
@click.option("--port", default=None, type=int, help="Port (default: web.port).")
@pass_ctx
def serve(obj: Lazy, host: str | None, port: int | None) -> None:
    """Serve the web app on a production WSGI server (waitress)."""
    from waitress import serve as waitress_serve

    from web import create_app

    ctx = get(obj)
    app = create_app(ctx)
    h, p = host or ctx.config.web.host, port or ctx.config.web.port
    click.echo(f"serving on http://{h}:{p}")
    waitress_serve(app, host=h, port=p)


def register(group: click.Group) -> None:
    for cmd in (init, collect, run, serve):
        group.add_command(cmd)
