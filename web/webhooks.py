"""`/webhooks/<provider>`: a thin shell over subscribers.webhooks (one module per provider)."""

from __future__ import annotations

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue

from core.errors import InvalidInput
from subscribers.webhooks import WebhookRefused, receive
from web.security import ctx

bp = Blueprint("webhooks", __name__)


@bp.post("/webhooks/<provider>", endpoint="receive")
def receive_view(provider: str) -> ResponseReturnValue:
    try:
        counts = receive(ctx(), provider, request.headers, request.get_data(cache=False), request.is_secure)
    except WebhookRefused as exc:
        return jsonify(error=str(exc)), exc.status
    except InvalidInput as exc:
        return jsonify(error=str(exc)), 400
    return jsonify(ok=True, **counts), 200
