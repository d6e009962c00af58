"""Helpers shared by the web tests: an app on the per-test database, CSRF tokens, logins,
and reading the outbox. (No tests here; the module name keeps it with its owners.)"""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from core.accounts import add_user
from core.context import Context
from pipeline.deliver.lane import drain
from web import create_app

PASSWORD = "correct horse battery"
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def make_app(ctx: Context) -> Flask:
    return create_app(ctx, {"TESTING": True})


@pytest.fixture
def app(ctx: Context) -> Flask:
    return make_app(ctx)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def csrf(client: FlaskClient, path: str = "/") -> str:
    """The CSRF token of the client's session, read from a page's form like a browser does."""
    page = client.get(path).get_data(as_text=True)
    m = CSRF_RE.search(page)
    assert m, f"no CSRF field on {path}"
    return m.group(1)


def login_as(client: FlaskClient, ctx: Context, role: str, email_addr: str | None = None) -> str:
    addr = email_addr or f"{role}@example.com"
    add_user(ctx, addr, PASSWORD, role)
    token = csrf(client, "/login")
    resp = client.post("/login", data={"email": addr, "password": PASSWORD, "csrf_token": token})
    assert resp.status_code == 302, resp.get_data(as_text=True)
    return addr


def outbox(ctx: Context) -> list[email.message.EmailMessage]:
    """Every single message the outbox transport wrote, oldest first."""
    folder = ctx.config.path("var/outbox")
    files = sorted(folder.glob("single-*.eml"), key=lambda p: p.stat().st_mtime_ns) if folder.exists() else []
    return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default) for p in files]


def body(msg: email.message.EmailMessage) -> str:
    part = msg.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def link_in(msg: email.message.EmailMessage, base_url: str) -> str:
    """The path of the one link to our site in a message."""
    m = re.search(re.escape(base_url.rstrip("/")) + r"(/[^\s]+)", body(msg))
    assert m, body(msg)
    return m.group(1)


def fresh_outbox(ctx: Context) -> Callable[[], list[Any]]:
    """A reader of messages that arrived after this call."""
    seen = {p.name for p in Path(ctx.config.path("var/outbox")).glob("*.eml")} \
        if ctx.config.path("var/outbox").exists() else set()

    def new() -> list[Any]:
        drain(ctx)  # what the lane worker of `kpdigest serve` does in the background
        folder = ctx.config.path("var/outbox")
        files = sorted((p for p in folder.glob("single-*.eml") if p.name not in seen),
                       key=lambda p: p.stat().st_mtime_ns)
        return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default) for p in files]

    return new
