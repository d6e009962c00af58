"""Login and logout for the desk."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, session, url_for
from werkzeug.wrappers import Response

from core.accounts import authenticate
from subscribers.ratelimit import hit
from web.security import client_ip, ctx, login

bp = Blueprint("auth", __name__)
LOGIN_ATTEMPTS_PER_HOUR = 30


def _safe_next(target: str | None) -> str:
    """Only local paths: a login link can never bounce the user to another site."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return url_for("desk.dashboard")


@bp.route("/login", endpoint="login", methods=["GET", "POST"])
def login_page() -> Response | tuple[str, int]:
    if request.method == "GET":
        return render_template("login.html", error=None, next=request.args.get("next", "")), 200
    if not hit(ctx(), f"login:{client_ip()}", LOGIN_ATTEMPTS_PER_HOUR):
        return render_template("login.html", error="Too many attempts: try again later.", next=""), 429
    user = authenticate(ctx(), request.form.get("email", ""), request.form.get("password", ""))
    if user is None:
        return render_template("login.html", error="Wrong email or password.",
                               next=request.form.get("next", "")), 401
    login(user)
    return redirect(_safe_next(request.form.get("next")))


@bp.post("/logout")
def logout() -> Response:
    session.clear()
    return redirect(url_for("auth.login"))
