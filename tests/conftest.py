"""Shared fixtures: a project context on SQLite and (when configured) PostgreSQL, a real
HTTP server on 127.0.0.1 for feeds, and helpers to find tools."""

from __future__ import annotations

import os
import shutil
import socket
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from core.config import PROJECT_ROOT, load_config
from core.context import Context
from core.db import make_engine, migrate
from tests.test_web_helpers import make_app

PG_URL = os.environ.get("KPDIGEST_TEST_DATABASE_URL")
FIXTURES = Path(__file__).parent / "fixtures"
REQUIRE_TOOLS = os.environ.get("KPDIGEST_REQUIRE_TOOLS") == "1"


def pytest_addoption(parser: pytest.Parser) -> None:
    """`make golden`: rewrite tests/golden/* from the current templates instead of comparing."""
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="rewrite the golden files of tests/test_render_golden.py")


def require_tool(name: str) -> str:
    """The tool's path; skip the test when it is absent (fail in CI, where .ci/run installs it)."""
    path = shutil.which(name)
    if path:
        return path
    if REQUIRE_TOOLS:
        pytest.fail(f"{name} is not installed; .ci/run should have installed it")
    pytest.skip(f"{name} is not installed")


def write_config(tmp_path: Path, extra: str = "",
                 feeds: list[tuple[str, str, list[str]]] | None = None) -> Path:
    """A config file in tmp_path: the project's topics and defaults, the test's feeds."""
    base = (PROJECT_ROOT / "config.toml").read_text(encoding="utf-8")
    # Drop the bundled sample feeds; tests name their own.
    kept: list[str] = []
    skip = False
    for line in base.splitlines():
        if line.strip() == "[[feeds]]":
            skip = True
            continue
        if skip and line.startswith("["):
            skip = False
        if not skip:
            kept.append(line)
    body = "\n".join(kept)
    # Tests send to loopback fakes: the doctor's pre-send gate is tested on its own.
    body = body.replace("check_before_send = true", "check_before_send = false")
    body = body.replace('templates = "templates"', f'templates = "{PROJECT_ROOT / "templates"}"')
    feed_toml = "".join(
        f'\n[[feeds]]\nname = "{n}"\nurl = "{u}"\ntopics = {t!r}\n'.replace("'", '"')
        for n, u, t in feeds or [])
    path = tmp_path / "config.toml"
    path.write_text(body + "\n" + feed_toml + "\n" + extra, encoding="utf-8")
    return path


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated database per test: a SQLite file, or a PostgreSQL schema of its own."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'kpdigest.db'}"
        return
    if not PG_URL:
        pytest.skip("KPDIGEST_TEST_DATABASE_URL is not set")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = make_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


@pytest.fixture
def make_ctx(tmp_path: Path, db_url: str,
             monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Context]]:
    """Build a migrated Context from config text; the database is per test."""
    made: list[Context] = []
    monkeypatch.setenv("KPDIGEST_DATABASE_URL", db_url)
    monkeypatch.setenv("KPDIGEST_SECRET_KEY", "test-secret-key")

    def factory(extra: str = "", feeds: list[tuple[str, str, list[str]]] | None = None,
                **overrides: Any) -> Context:
        path = write_config(tmp_path, extra, feeds)
        ctx = Context(load_config(path, overrides or None))
        migrate(ctx.engine)
        from subscribers.store import ensure_default_list

        with ctx.engine.begin() as conn:
            ensure_default_list(conn, ctx.config.site.name)
        made.append(ctx)
        return ctx

    yield factory
    for ctx in made:
        ctx.close()


@pytest.fixture
def ctx(make_ctx: Callable[..., Context]) -> Context:
    return make_ctx()


class FeedServer:
    """A real HTTP server on 127.0.0.1 whose routes tests set: path -> handler."""

    def __init__(self) -> None:
        self.routes: dict[str, Callable[[BaseHTTPRequestHandler], None]] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes: without TCP_NODELAY, Nagle holds the body
            # back until the client's delayed ACK, 40 ms per response (real servers set it too).
            disable_nagle_algorithm = True

            def do_GET(self) -> None:
                server.requests.append((self.path, dict(self.headers)))
                route = server.routes.get(self.path.split("?")[0])
                if route is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                route(self)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.handle_error = self._handle_error  # type: ignore[method-assign]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def _handle_error(self, request: Any, client_address: Any) -> None:
        """A collector that stops reading (size cap, deadline) resets the connection: expected,
        so not printed; anything else still is."""
        if isinstance(sys.exc_info()[1], ConnectionResetError | BrokenPipeError):
            return
        ThreadingHTTPServer.handle_error(self.httpd, request, client_address)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base + path

    def serve_bytes(self, path: str, body: bytes, content_type: str = "application/rss+xml",
                    status: int = 200, headers: dict[str, str] | None = None) -> None:
        def handler(h: BaseHTTPRequestHandler) -> None:
            h.send_response(status)
            h.send_header("Content-Type", content_type)
            h.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(body)

        self.routes[path] = handler

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    server = FeedServer()
    yield server
    server.close()


# Debian's Chromium, headless, with no background traffic (the machine has no internet).
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A Playwright browser on /usr/bin/chromium (never a downloaded one), per test module."""
    path = require_tool("chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield b
        b.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def site(request: pytest.FixtureRequest, make_ctx: Callable[..., Context]) -> Iterator[tuple[Context, str]]:
    """The app on a real WSGI server (waitress) for the browser tests; its base_url is where
    the browser finds it."""
    if "postgresql" in request.node.callspec.id:
        pytest.skip("browser flows run once, on SQLite; the same pages are tested on PostgreSQL")
    from waitress import create_server

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    ctx = make_ctx(site={"base_url": base})
    server = create_server(make_app(ctx), host="127.0.0.1", port=port, threads=4)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield ctx, base
    server.close()
    thread.join(timeout=5)


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context and page per test."""
    context = browser.new_context()
    pg = context.new_page()
    pg.set_default_timeout(15000)
    yield pg
    context.close()
