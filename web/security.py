"""Sessions, roles and CSRF for the desk and the public forms.

CSRF: one random token per session, compared in constant time on every POST, except the
RFC 8058 one-click unsubscribe (mail clients post it without cookies) and the provider
webhooks (verified by signature instead).
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import Flask, abort, current_app, g, redirect, request, session, url_for

from core.context import Context

F = TypeVar("F", bound=Callable[..., Any])
CSRF_EXEMPT: set[str] = {"public.unsubscribe_token", "webhooks.receive"}


def ctx() -> Context:
    return current_app.extensions["kpdigest"]


def csrf_token() -> str:
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return str(session["csrf"])


def _check_csrf() -> None:
    if request.method != "POST" or request.endpoint in CSRF_EXEMPT:
        return
    sent = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token") or ""
    expected = session.get("csrf", "")
    if not expected or not hmac.compare_digest(str(sent), str(expected)):
        abort(400, "missing or wrong CSRF token: reload the page and try again")


def _load_user() -> None:
    from core.accounts import get_user

    g.user = None
    uid = session.get("uid")
    if uid is not None:
        g.user = get_user(ctx(), int(uid))
        if g.user is None:
            session.clear()


def login(user: Any) -> None:
    """A fresh session (no fixation): new CSRF token, the user's id."""
    session.clear()
    session.permanent = True
    session["uid"] = int(user.id)
    csrf_token()


def requires(*roles: str) -> Callable[[F], F]:
    """Login required; with roles, only those roles (403 otherwise)."""
    def deco(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if g.get("user") is None:
                return redirect(url_for("auth.login", next=request.path))
            if roles and g.user.role not in roles:
                abort(403)
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return deco


def client_ip() -> str:
    return request.remote_addr or "unknown"


def init_app(app: Flask) -> None:
    app.before_request(_load_user)
    app.before_request(_check_csrf)
    app.jinja_env.globals["csrf_token"] = csrf_token

    @app.context_processor
    def _globals() -> dict[str, Any]:
        return {"site": ctx().config.site, "user": g.get("user"),
                "consent_text": ctx().config.web.consent_text}

    @app.errorhandler(400)
    def _bad(exc: Any) -> tuple[str, int]:
        from flask import render_template

        return render_template("message.html", title="Bad request",
                               message=getattr(exc, "description", "Bad request")), 400

    @app.errorhandler(403)
    def _forbidden(_exc: Any) -> tuple[str, int]:
        from flask import render_template

        return render_template("message.html", title="Not allowed",
                               message="Your role does not allow this page."), 403
