"""Provider webhooks: verify each provider's own way, store raw events once, act on them.

One module per provider (`postmark`, `sendgrid`, `mailgun`, `resend`, `ses`), each a
`base.Provider`; `registry.PROVIDERS` names them all. A request that fails verification
raises WebhookRefused (401: no or wrong credentials, 403: forged, stale or replayed) before
anything is stored. Verified events are stored by (provider, event id), so a provider's
retry is stored and acted on once (`apply`): a hard bounce or a complaint suppresses the
address, soft bounces in a row count toward a threshold, and a provider-side unsubscribe
unsubscribes from every list. May import `core/` and the other `subscribers/` modules.
"""

from subscribers.webhooks.apply import receive, store_and_apply
from subscribers.webhooks.base import Event, Provider, WebhookRefused
from subscribers.webhooks.registry import PROVIDERS

__all__ = ["PROVIDERS", "Event", "Provider", "WebhookRefused", "receive", "store_and_apply"]
