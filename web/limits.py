"""Body limits per route: forms and webhooks far below the CSV import's limit.

Flask's MAX_CONTENT_LENGTH is one number for the whole app; the desk's CSV import needs
`web.import_max_mb`, nothing else needs more than a few kilobytes (forms) or a provider's
largest batch (webhooks). Each request gets its own limit before anything reads the body,
so a body past it is a 413 without being read.
"""

from __future__ import annotations

from flask import Flask, request

from web.security import ctx

IMPORT_ENDPOINTS = frozenset({"admin.import_page"})
WEBHOOK_ENDPOINTS = frozenset({"webhooks.receive"})
KB = 1024


def body_limit(endpoint: str | None) -> int:
    """The largest body, in bytes, that `endpoint` accepts."""
    cfg = ctx().config
    if endpoint in IMPORT_ENDPOINTS:
        return cfg.web.import_max_mb * KB * KB
    if endpoint in WEBHOOK_ENDPOINTS:
        return cfg.webhooks.body_max_kb * KB
    return cfg.web.form_max_kb * KB


def _limit_body() -> None:
    limit = body_limit(request.endpoint)
    request.max_content_length = limit
    if request.endpoint not in IMPORT_ENDPOINTS:  # the import's parser buffers file chunks
        request.max_form_memory_size = min(limit, ctx().config.web.form_max_kb * KB)


def init_app(app: Flask) -> None:
    """Run first among the before-request hooks: the CSRF check reads the form."""
    app.before_request_funcs.setdefault(None, []).insert(0, _limit_body)
