"""Body limits per route (forms and webhooks far below the CSV import's), and no NUL.

Flask's MAX_CONTENT_LENGTH is one number for the whole app; the desk's CSV import needs
`web.import_max_mb`, nothing else needs more than a few kilobytes (forms) or a provider's
largest batch (webhooks). Each request gets its own limit before anything reads the body,
so a body past it is a 413 without being read. A NUL character in a form field, a query
argument or the user agent is a 400: PostgreSQL cannot store one, and no person types it.
"""

from __future__ import annotations

from flask import Flask, abort, request

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


def _refuse_nul() -> None:
    texts = [request.headers.get("User-Agent", "")]
    sources = [request.args] if request.endpoint in WEBHOOK_ENDPOINTS \
        else [request.args, request.form]  # a webhook's body is the verifier's to read
    for values in sources:
        for key, items in values.lists():
            texts += [key, *items]
    if any("\x00" in t for t in texts):
        abort(400, "the request holds a NUL character")


def init_app(app: Flask) -> None:
    """Run first among the before-request hooks: the CSRF check reads the form."""
    app.before_request_funcs.setdefault(None, []).insert(0, _refuse_nul)
    app.before_request_funcs[None].insert(0, _limit_body)
