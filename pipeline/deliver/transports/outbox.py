"""The default transport: one RFC 5322 .eml file per recipient in a folder.

Files are named by delivery id and written atomically, so re-sending a batch rewrites the
same files: the outbox is naturally idempotent.
"""

from __future__ import annotations

import os
import uuid
from email.message import EmailMessage
from pathlib import Path
from typing import ClassVar

from core.config import Config
from pipeline.compose.message import Recipient
from pipeline.compose.prepare import PreparedVariant
from pipeline.deliver.transports.base import Outcome, Transport


class OutboxTransport(Transport):
    name: ClassVar[str] = "outbox"
    max_batch: ClassVar[int] = 500
    recipient_variables: ClassVar[bool] = False
    idempotent: ClassVar[bool] = True
    rate_limit_signal: ClassVar[str] = "none (local folder)"

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        self.dir: Path = cfg.path(self.options.get("dir", "var/outbox"))

    def open(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)

    def path_for(self, variant: PreparedVariant, r: Recipient) -> Path:
        return self.dir / f"issue-{variant.number:04d}-{r.delivery_id:08d}.eml"

    def send_single(self, message: EmailMessage, idempotency_key: str | None = None) -> str:
        """`idempotency_key` names the file, so the same key writes the same message once."""
        self.dir.mkdir(parents=True, exist_ok=True)
        name = f"single-{idempotency_key or uuid.uuid4().hex}.eml"
        tmp = self.dir / (name + ".tmp")
        tmp.write_bytes(self.raw_single(message))
        os.replace(tmp, self.dir / name)
        return name

    def send_batch(self, variant: PreparedVariant, recipients: list[Recipient],
                   batch_key: str) -> list[Outcome]:
        self.dir.mkdir(parents=True, exist_ok=True)
        out = []
        for r in recipients:
            path = self.path_for(variant, r)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(self.raw_message(variant, r))
            os.replace(tmp, path)
            out.append(Outcome(r.delivery_id, "sent", provider_message_id=path.name))
        return out


TRANSPORT = OutboxTransport
