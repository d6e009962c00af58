"""The `kpdigest` command: a thin shell over the library.

Library errors (KpdigestError) become one clear line on stderr and a distinct exit code;
anything else is a bug and keeps its traceback. Command modules import the library inside
each command, so `kpdigest --help` starts without loading SQLAlchemy, numpy or Flask.
"""

from __future__ import annotations

import logging

import click

from kpdigest import (
    articles,
    commands,
    doctor,
    feeds,
    issue,
    queue,
    schedule,
    subscribers,
    transports,
    users,
)
from kpdigest.base import Group, Lazy


@click.group(cls=Group)
@click.option("--config", "config_path", envvar="KPDIGEST_CONFIG", type=click.Path(dir_okay=False),
              help="Settings file (default: the project's config.toml).")
@click.option("-v", "--verbose", is_flag=True, help="Log what happens.")
@click.version_option(package_name="kpdigest")
@click.pass_context
def main(click_ctx: click.Context, config_path: str | None, verbose: bool) -> None:
    """kpdigest: collect articles, build the weekly digest, send it to every subscriber."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    click_ctx.obj = Lazy(config_path)
    click_ctx.call_on_close(lambda: click_ctx.obj._ctx and click_ctx.obj._ctx.close())


for _module in (articles, commands, doctor, feeds, issue, queue, schedule, subscribers, transports, users):
    _module.register(main)
