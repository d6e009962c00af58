"""`kpdigest issue check`."""

from __future__ import annotations

import click


def register(issue: click.Group) -> None:
    """Adds this module's commands to the `issue` group."""
