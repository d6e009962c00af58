"""`/webhooks/<provider>`: a thin shell over subscribers.webhooks (one module per provider).

Every refusal is a 4xx with a one-line JSON reason: 401/403 unverified, 400 malformed,
413 too large (the body limit is `webhooks.body_max_kb`, set in `web.limits`), 429 with
Retry-After when SES must wait for its certificate.
"""

from __future__ import annotations

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import RequestEntityTooLarge

from core.errors import InvalidInput
from subscribers.webhooks import WebhookRefused, receive
from web.security import ctx

bp = Blueprint("webhooks", __name__)


@bp.post("/webhooks/<provider>", endpoint="receive")
def receive_view(provider: str) -> ResponseReturnValue:
    try:
        body = request.get_data(cache=False)
        counts = receive(ctx(), provider, request.headers, body, request.is_secure)
    except RequestEntityTooLarge:
        return jsonify(error="the body is larger than this webhook accepts"), 413
    except WebhookRefused as exc:
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else {}
        return jsonify(error=str(exc)), exc.status, headers
    except InvalidInput as exc:
        return jsonify(error=str(exc)), 400
    return jsonify(ok=True, **counts), 200
