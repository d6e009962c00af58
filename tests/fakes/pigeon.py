"""A transport that lives outside the project: what a plug-in author writes (one module)."""

from __future__ import annotations

from typing import ClassVar

from pipeline.deliver.transports.outbox import OutboxTransport


class PigeonTransport(OutboxTransport):
    name: ClassVar[str] = "pigeon"


TRANSPORT = PigeonTransport
