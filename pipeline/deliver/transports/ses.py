"""Amazon SES v2 through boto3 (the optional `ses` extra: `pip install kpdigest[ses]`).

SES takes one raw MIME message per SendEmail call, so a batch is a loop over its
recipients on one client; credentials come from the usual AWS_* environment variables
or instance role. Throttling (`TooManyRequestsException`, `Throttling`) is retried later;
`MessageRejected` and other client errors fail that recipient.
"""

from __future__ import annotations

import threading
from email.message import EmailMessage
from typing import Any, ClassVar

from core.config import Config
from core.errors import ConfigError, TransportError
from pipeline.compose.message import Recipient
from pipeline.compose.prepare import PreparedVariant
from pipeline.deliver.transports.base import Outcome, RetryBatch, Transport

THROTTLED = {"TooManyRequestsException", "Throttling", "ThrottlingException", "LimitExceededException"}


class SesTransport(Transport):
    name: ClassVar[str] = "ses"
    max_batch: ClassVar[int] = 50
    recipient_variables: ClassVar[bool] = False
    idempotent: ClassVar[bool] = False
    rate_limit_signal: ClassVar[str] = "TooManyRequestsException / Throttling error codes"

    def __init__(self, cfg: Config) -> None:
        super().__init__(cfg)
        try:
            import boto3  # noqa: F401
        except ModuleNotFoundError as exc:
            raise ConfigError("transport.name: 'ses' needs boto3: pip install 'kpdigest[ses]'") from exc
        self.region = str(self.options.get("region", "us-east-1"))
        self.endpoint_url = self.options.get("endpoint_url") or None
        self.configuration_set = str(self.options.get("configuration_set", ""))
        self._local = threading.local()

    @property
    def client(self) -> Any:
        c = getattr(self._local, "client", None)
        if c is None:
            import boto3
            from botocore.config import Config as BotoConfig

            # Our engine owns retries and backoff; botocore's own would hide throttling.
            c = boto3.client("sesv2", region_name=self.region, endpoint_url=self.endpoint_url,
                             config=BotoConfig(retries={"total_max_attempts": 1},
                                               connect_timeout=5, read_timeout=60))
            self._local.client = c
        return c

    def _send_raw(self, data: bytes, to: str | None = None) -> str:
        kwargs: dict[str, Any] = {"Content": {"Raw": {"Data": data}},
                                  "FromEmailAddress": self.cfg.sender.from_email}
        if to:
            kwargs["Destination"] = {"ToAddresses": [to]}
        if self.configuration_set:
            kwargs["ConfigurationSetName"] = self.configuration_set
        return str(self.client.send_email(**kwargs).get("MessageId", ""))

    def send_batch(self, variant: PreparedVariant, recipients: list[Recipient],
                   batch_key: str) -> list[Outcome]:
        from botocore.exceptions import BotoCoreError, ClientError, ConnectionError, ReadTimeoutError

        out: list[Outcome] = []
        for i, r in enumerate(recipients):
            try:
                mid = self._send_raw(self.raw_message(variant, r), r.email)
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code in THROTTLED and not out:
                    raise RetryBatch(f"ses: {code}") from exc
                state = "retry" if code in THROTTLED else "failed"
                out.append(Outcome(r.delivery_id, state, error=f"ses {code}: {exc}"))
                continue
            except (ReadTimeoutError, ConnectionError) as exc:
                out.append(Outcome(r.delivery_id, "unknown", error=f"ses: {exc}"))
                out += [Outcome(x.delivery_id, "retry", error="ses: not handed over")
                        for x in recipients[i + 1:]]
                return out
            except BotoCoreError as exc:
                out.append(Outcome(r.delivery_id, "unknown", error=f"ses: {exc}"))
                continue
            out.append(Outcome(r.delivery_id, "sent", provider_message_id=mid))
        return out

    def send_single(self, message: EmailMessage) -> str:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return self._send_raw(self.raw_single(message))
        except (ClientError, BotoCoreError) as exc:
            raise TransportError(f"ses: {exc}") from exc


TRANSPORT = SesTransport
