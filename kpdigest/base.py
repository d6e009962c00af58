"""What every command module shares: the error-to-exit-code group and the lazily opened context.

Library errors (KpdigestError) become one clear line on stderr and a distinct exit code;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from core.context import Context
from core.errors import KpdigestError


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
