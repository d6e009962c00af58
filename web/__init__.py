"""The Flask web app: public pages, the editors' and admins' desk, provider webhooks."""

from __future__ import annotations

from typing import Any

from flask import Flask

from kpdigest.context import Context


def create_app(ctx: Context | None = None, test_config: dict[str, Any] | None = None) -> Flask:
    """App factory: settings from kpdigest's config, then `test_config` on top."""
    ctx = ctx or Context.load()
    app = Flask(__name__, template_folder=str(ctx.config.templates_dir / "web"))
    app.config.from_mapping(SECRET_KEY=ctx.config.secret_key)
    if test_config:
        app.config.update(test_config)
    app.extensions["kpdigest"] = ctx
    return app
