"""Transports hand prepared messages to a mail provider (or a folder)."""

from __future__ import annotations

from core.config import Config
from core.errors import ConfigError
from pipeline.deliver.transports.base import Transport


def get_transport(cfg: Config, name: str | None = None) -> Transport:
    """The configured transport instance."""
    chosen = name or cfg.transport.name
    if chosen == "outbox":
        from pipeline.deliver.transports.outbox import OutboxTransport

        return OutboxTransport(cfg)
    try:
        module = __import__(f"pipeline.deliver.transports.{chosen}", fromlist=["TRANSPORT"])
    except ModuleNotFoundError as exc:
        raise ConfigError(f"transport.name: no transport named {chosen!r}") from exc
    return module.TRANSPORT(cfg)
