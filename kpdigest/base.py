"""What every command module shares: the error-to-exit-code group and the lazily opened context.

Library errors (KpdigestError) and usage errors become one clear line on stderr and a
distinct exit code (see the README's table); anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from core.context import Context
from core.errors import KpdigestError

USAGE_EXIT = 64  # sysexits' EX_USAGE: the command line itself is wrong
# An issue send's outcome as the exit code of `issue send` and `kpdigest run`.
OUTCOME_EXIT = {"sent": 0, "sent with failures": 7, "needs attention": 8, "failed": 9}
NOT_FINISHED_EXIT = 10  # paused, stopped, or waiting for the daily allowance


def outcome_exit_code(status: str) -> int:
    return OUTCOME_EXIT.get(status, NOT_FINISHED_EXIT)


def plural(n: int, word: str, many: str | None = None) -> str:
    """`1 recipient`, `2 recipients`."""
    return f"{n} {word if n == 1 else many or word + 's'}"


class Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KpdigestError as exc:
            click.echo(f"Error: {exc}", err=True)
            sys.exit(exc.exit_code)

    def main(self, *args: Any, **kwargs: Any) -> Any:
        """Usage errors as one line with their own exit code, not click's three."""
        kwargs.setdefault("standalone_mode", True)
        if not kwargs["standalone_mode"]:
            return super().main(*args, **kwargs)
        try:
            code = super().main(*args, **{**kwargs, "standalone_mode": False})
        except click.exceptions.NoArgsIsHelpError as exc:
            click.echo(exc.ctx.get_help() if exc.ctx else "")
            sys.exit(0)
        except click.UsageError as exc:
            where = exc.ctx.command_path if exc.ctx else self.name
            click.echo(f"Error: {exc.format_message()} (see `{where} --help`)", err=True)
            sys.exit(USAGE_EXIT)
        except click.Abort:
            click.echo("Aborted: nothing was changed (commands that ask accept --yes).", err=True)
            sys.exit(1)
        except click.ClickException as exc:
            exc.show()
            sys.exit(exc.exit_code)
        sys.exit(code if isinstance(code, int) else 0)  # ctx.exit(n) returns n here


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
