"""Transports hand prepared messages to a mail provider (or a folder).

Which transports exist is `core.transports.TRANSPORTS`; each lives in the module of its
name here and exposes `TRANSPORT`, its class. Modules load on first use, so a provider's
client library (boto3 for SES) is imported only by those who chose it.
"""

from __future__ import annotations

from importlib import import_module

from core.config import Config
from core.errors import ConfigError
from core.transports import TRANSPORTS
from pipeline.deliver.transports.base import Transport


def transport_class(name: str) -> type[Transport]:
    """The class registered under `name` (ConfigError naming transport.name if none)."""
    spec = TRANSPORTS.get(name)
    if spec is None:
        raise ConfigError(f"transport.name: no transport named {name!r}")
    cls: type[Transport] = import_module(spec.module).TRANSPORT
    return cls


def get_transport(cfg: Config, name: str | None = None) -> Transport:
    """The configured transport instance."""
    return transport_class(name or cfg.transport.name)(cfg)
