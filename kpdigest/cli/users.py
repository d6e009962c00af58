"""`kpdigest users ...`."""

from __future__ import annotations

import click


def register(group: click.Group) -> None:
    """Commands of this group arrive with their issue; nothing is registered yet."""
