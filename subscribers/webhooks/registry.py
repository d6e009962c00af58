"""The one list of webhook providers: the web route, the docs and the tests read it.

Adding a provider is one module with a `Provider` subclass and one line here.
"""

from __future__ import annotations

from subscribers.webhooks import mailgun, postmark, resend, sendgrid, ses
from subscribers.webhooks.base import Provider

PROVIDERS: dict[str, Provider] = {p.name: p for p in (
    postmark.PROVIDER,
    sendgrid.PROVIDER,
    mailgun.PROVIDER,
    resend.PROVIDER,
    ses.PROVIDER,
)}
