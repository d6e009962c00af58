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


def docs_table() -> str:
    """The providers' table of docs/web.md (a test holds the two equal)."""
    rows = ["| provider | verification | replay rule | secret (environment) |",
            "|---|---|---|---|"]
    for p in PROVIDERS.values():
        env = ", ".join(f"`KPDIGEST_{s.upper()}`" for s in p.secrets) or "none"
        rows.append(f"| {p.name} | {p.verification} | {p.replay} | {env}{p.secret_note} |")
    return "\n".join(rows)
