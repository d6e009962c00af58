"""`kpdigest issue approve/reject (draft review)`."""

from __future__ import annotations

import click


def register(issue: click.Group) -> None:
    """Adds this module's commands to the `issue` group."""
