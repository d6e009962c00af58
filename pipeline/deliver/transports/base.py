"""The transport contract shared by the outbox, SMTP and the HTTP providers."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP
from functools import cached_property
from typing import Any, ClassVar

from core.config import Config
from core.errors import TransportError
from pipeline.compose.message import Recipient
from pipeline.compose.prepare import PreparedVariant
from pipeline.deliver.dkim import Signer, VariantSigner


@dataclass
class Outcome:
    """What the provider said about one recipient of a batch."""

    delivery_id: int
    state: str  # sent | failed | suppressed | retry
    provider_message_id: str | None = None
    error: str | None = None


class RetryBatch(TransportError):
    """Nothing in the batch was accepted (429, 5xx before acceptance): safe to send again."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UnknownOutcome(TransportError):
    """The batch may or may not have been accepted (timeout or reset after hand-off)."""


class Transport(ABC):
    """A way out. Each one states its batch size, whether it takes per-recipient variables
    (one body per call), whether it has idempotency keys, and how it signals rate limits."""

    name: ClassVar[str]
    max_batch: ClassVar[int] = 1
    recipient_variables: ClassVar[bool] = False
    idempotent: ClassVar[bool] = False
    rate_limit_signal: ClassVar[str] = "none"

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.options: dict[str, Any] = cfg.transport.options() if cfg.transport.name == self.name \
            else dict(getattr(cfg.transport, self.name, {}) or {})

    # How `issue reconcile` learns what the provider accepted (shown in the docs).
    reconcile: ClassVar[str] = "cannot tell: the outcome stays unknown"
    idempotency_hours: ClassVar[float | None] = None  # how long a key is honoured

    def lookup(self, issue_number: int, rows: list[Any]) -> dict[int, str] | None:
        """Which of these `unknown` rows (id, email) the provider accepted: delivery id ->
        provider message id. None when the provider's API cannot tell. Raises
        TransportError when the provider could not be asked."""
        return None
    def raw_message(self, variant: PreparedVariant, r: Recipient) -> bytes:
        """One recipient's complete MIME message, DKIM-signed when `[dkim]` is enabled
        (the variant's canonical form is prepared on its first message)."""
        if not self.cfg.dkim.enabled:
            return variant.mime.build(r)
        ident = (variant.issue_id, variant.variant, variant.key)
        signer = self._dkim_variants.get(ident)
        if signer is None:
            signer = self._dkim_variants[ident] = self.dkim_signer.for_template(variant.mime)
        return signer.sign(variant.mime.build_parts(r))

    def raw_single(self, message: EmailMessage) -> bytes:
        """A transactional message as bytes, DKIM-signed when `[dkim]` is enabled."""
        data = message.as_bytes(policy=SMTP)
        return self.dkim_signer.sign_bytes(data) if self.cfg.dkim.enabled else data

    @cached_property
    def dkim_signer(self) -> Signer:
        """The keys, read once per transport (a bad key is a ConfigError naming it)."""
        return Signer(self.cfg)

    @cached_property
    def _dkim_variants(self) -> dict[tuple[int, str, str], VariantSigner]:
        return {}

    def open(self) -> None:
        """Acquire connections; called once before the first batch."""

    def close(self) -> None:
        """Release connections; called once after the last batch."""

    def send_single(self, message: EmailMessage) -> str:
        """Send one transactional message (a sign-up confirmation, a test issue).

        Returns the provider's message id. Transports that cannot do this raise
        TransportError; digests always go through send_batch.
        """
        raise TransportError(f"the {self.name} transport cannot send single messages")

    @abstractmethod
    def send_batch(self, variant: PreparedVariant, recipients: list[Recipient],
                   batch_key: str) -> list[Outcome]:
        """Hand one batch over and return one Outcome per recipient.

        Raise RetryBatch when nothing was accepted, UnknownOutcome when acceptance is
        unknowable. `batch_key` is stable across retries of the same batch.
        """
