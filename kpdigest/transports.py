"""`kpdigest transports`: the ways out, from the one registry."""

from __future__ import annotations

import click

from core.transports import TRANSPORTS
from kpdigest.base import Lazy, get, pass_ctx


@click.command()
@pass_ctx
def transports(obj: Lazy) -> None:
    """List the transports, each with its credential; `*` marks the configured one."""
    chosen = get(obj).config.transport.name
    for spec in TRANSPORTS.values():
        mark = "*" if spec.name == chosen else " "
        secret = f"  [{spec.secret}]" if spec.secret else ""
        click.echo(f"{mark} {spec.name:<9} {spec.summary}{secret}")


def register(group: click.Group) -> None:
    group.add_command(transports)
