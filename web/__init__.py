"""The Flask web app: public pages, the editors' and admins' desk, provider webhooks."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Flask, Response, render_template

from core.context import Context
from core.errors import InvalidInput, KpdigestError, NotFound, StateError


def create_app(ctx: Context | None = None, test_config: dict[str, Any] | None = None) -> Flask:
    """App factory: settings from kpdigest's config, then `test_config` on top."""
    ctx = ctx or Context.load()
    cfg = ctx.config
    app = Flask(__name__, template_folder=str(cfg.templates_dir / "web"))
    app.config.from_mapping(
        SECRET_KEY=cfg.secret_key,
        SESSION_COOKIE_NAME="kpdigest_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=cfg.site.base_url.startswith("https://"),
        PERMANENT_SESSION_LIFETIME=timedelta(hours=12),
        # The largest body of all (the CSV import); each route lowers it (web.limits).
        MAX_CONTENT_LENGTH=cfg.web.import_max_mb * 1024 * 1024,
    )
    if test_config:
        app.config.update(test_config)
    app.extensions["kpdigest"] = ctx
    if cfg.web.trusted_proxies:
        from werkzeug.middleware.proxy_fix import ProxyFix

        n = cfg.web.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)  # type: ignore[method-assign]
    _register(app)
    return app


def _register(app: Flask) -> None:
    from web import admin, auth, desk, limits, public, security, webhooks

    security.init_app(app)
    limits.init_app(app)
    for bp in (public.bp, auth.bp, desk.bp, admin.bp, webhooks.bp):
        app.register_blueprint(bp)
    from web import redirect  # #19: counted links, analytics consent, click report

    app.register_blueprint(redirect.bp)

    @app.errorhandler(KpdigestError)
    def _library_error(exc: KpdigestError) -> tuple[str, int]:
        status = 404 if isinstance(exc, NotFound) else 409 if isinstance(exc, StateError) \
            else 400 if isinstance(exc, InvalidInput) else 500
        return render_template("message.html", title="That did not work", message=str(exc)), status

    @app.errorhandler(404)
    def _not_found(_exc: Exception) -> tuple[str, int]:
        return render_template("message.html", title="Not found",
                               message="There is no page at this address."), 404

    @app.errorhandler(413)
    def _too_large(_exc: Exception) -> tuple[str, int]:
        return render_template("message.html", title="Too large",
                               message="The request is larger than this page accepts."), 413

    @app.after_request
    def _headers(resp: Response) -> Response:
        resp.headers.setdefault("Content-Security-Policy",
                                "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                                "frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        resp.headers.setdefault("Referrer-Policy", "no-referrer")
        resp.headers.setdefault("X-Frame-Options", "DENY")
        return resp
