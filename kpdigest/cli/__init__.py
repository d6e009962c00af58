"""The `kpdigest` command: a thin shell over the library.

Library errors (KpdigestError) become one clear line on stderr and a distinct exit code;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import click

from kpdigest.context import Context
from kpdigest.errors import KpdigestError


class Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KpdigestError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(exc.exit_code)


class Lazy:
    """Loads settings and opens the database only when a command needs them."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self._ctx: Context | None = None

    @property
    def ctx(self) -> Context:
        if self._ctx is None:
            self._ctx = Context.load(self.path)
        return self._ctx


pass_ctx = click.make_pass_decorator(Lazy)


def get(obj: Lazy) -> Context:
    return obj.ctx


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


def _register() -> None:
    from kpdigest.cli import core, feeds, issue, queue, schedule, subscribers, users

    for module in (core, feeds, issue, queue, schedule, subscribers, users):
        module.register(main)


_register()
