"""Web servers without local state: two real `kpdigest serve` processes on one database
enforce one sign-up limit and one webhook replay guard together, with the counters in the
database (SQLite, PostgreSQL) or in Redis (127.0.0.1:6379)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from datetime import timedelta

import pytest
import requests
from sqlalchemy import func, select

from core.db import utcnow
from core.models import rate_limits
from subscribers import ratelimit
from tests.test_webhooks import _mailgun

KPDIGEST = [sys.executable, "-c", "from kpdigest.main import main; main()"]
REDIS_URL = "redis://127.0.0.1:6379/0"
REQUIRE_TOOLS = os.environ.get("KPDIGEST_REQUIRE_TOOLS") == "1"


def _redis_or_skip() -> None:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=2).close()
    except OSError:
        if REQUIRE_TOOLS:  # CI: .ci/run starts Redis
            pytest.fail("no Redis on 127.0.0.1:6379; .ci/run should have started it")
        pytest.skip("no Redis on 127.0.0.1:6379")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(ctx, port: int, log) -> subprocess.Popen:
    return subprocess.Popen([*KPDIGEST, "--config", str(ctx.config.source), "serve",
                             "--port", str(port)], stdout=log, stderr=subprocess.STDOUT,
                            env=os.environ.copy())


def _up(base: str, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"kpdigest serve exited with {proc.returncode}")
        try:
            requests.get(base + "/", timeout=10)
            return
        except requests.RequestException:  # not listening yet, or slow to answer its first
            time.sleep(0.1)
    raise AssertionError(f"{base} did not answer")


def _configured(make_ctx, settings: dict[str, dict]) -> object:
    """A context with `settings`, written into its config file too (for the processes)."""
    ctx = make_ctx(**settings)
    text = ctx.config.source.read_text()
    for values in settings.values():
        for key, value in values.items():
            text, n = re.subn(rf"(?m)^{key} = \S*", f"{key} = {json.dumps(value)}", text, count=1)
            assert n == 1, key
    ctx.config.source.write_text(text)
    return ctx


@pytest.fixture(params=["database", "redis"])
def two_servers(request, make_ctx, tmp_path, monkeypatch):
    """Two `kpdigest serve` processes on one config and database; yields (ctx, [base URLs])."""
    prefix = f"kpdigest-test-{uuid.uuid4().hex[:12]}:"
    settings = {"web": {"subscribe_rate_per_hour": 3},
                "site": {"base_url": "http://127.0.0.1"}}  # a session cookie over http
    if request.param == "redis":
        _redis_or_skip()
        settings["shared"] = {"redis_url": REDIS_URL, "redis_prefix": prefix}
    monkeypatch.setenv("KPDIGEST_MAILGUN_WEBHOOK_SIGNING_KEY", "mg-key")
    ctx = _configured(make_ctx, settings)
    ports = [_free_port(), _free_port()]
    procs, logs = [], []
    try:
        for i, port in enumerate(ports):
            logs.append((tmp_path / f"serve{i}.log").open("w"))
            procs.append(_serve(ctx, port, logs[-1]))
        bases = [f"http://127.0.0.1:{p}" for p in ports]
        for base, proc in zip(bases, procs, strict=True):
            _up(base, proc)
        yield ctx, bases, request.param, prefix
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
        for log in logs:
            log.close()
        if request.param == "redis":
            client = ratelimit.redis_client(REDIS_URL)
            for key in client.scan_iter(prefix + "*"):
                client.delete(key)


def _signup(session: requests.Session, base: str, email: str) -> int:
    page = session.get(base + "/", timeout=10).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    resp = session.post(base + "/subscribe", timeout=10,
                        data={"email": email, "consent": "yes", "csrf_token": token})
    return resp.status_code


def test_two_web_servers_enforce_one_signup_limit_and_one_replay_guard(two_servers):
    ctx, (a, b), store, prefix = two_servers
    session = requests.Session()
    # alternate between the servers: each alone would allow 3, together they allow 3
    codes = [_signup(session, base, f"p{i}@example.com") for i, base in enumerate([a, b] * 3)]
    assert codes == [200, 200, 200, 429, 429, 429]

    body = _mailgun({"id": "mg1", "event": "delivered", "recipient": "p0@example.com"})
    post = lambda base: requests.post(base + "/webhooks/mailgun", data=body, timeout=10,  # noqa: E731
                                      headers={"Content-Type": "application/json"})
    assert post(a).status_code == 200
    replayed = post(b)  # the same signed token through the other server
    assert replayed.status_code == 403 and "replayed token" in replayed.text

    with ctx.engine.connect() as conn:
        rows = conn.execute(select(func.count()).select_from(rate_limits)).scalar_one()
    if store == "redis":  # the counters are in Redis, none in the database
        keys = {k.decode() for k in ratelimit.redis_client(REDIS_URL).scan_iter(prefix + "*")}
        assert f"{prefix}subscribe:127.0.0.1" in keys and rows == 0
        token = json.loads(body)["signature"]["token"]
        assert f"{prefix}mailgun-token:{token}" in keys
    else:
        assert rows == 2  # subscribe:127.0.0.1 and the mailgun token


def test_redis_windows_expire_and_count_atomically(make_ctx):
    _redis_or_skip()
    prefix = f"kpdigest-test-{uuid.uuid4().hex[:12]}:"
    ctx = make_ctx(shared={"redis_url": REDIS_URL, "redis_prefix": prefix})
    assert [ratelimit.hit(ctx, "k", 2, window_seconds=1) for _ in range(3)] == [True, True, False]
    ttl = ratelimit.redis_client(REDIS_URL).ttl(prefix + "k")
    assert 0 < ttl <= 1
    deadline = time.monotonic() + 30
    while ratelimit.redis_client(REDIS_URL).exists(prefix + "k"):
        assert time.monotonic() < deadline, "the window never expired"
        time.sleep(0.1)
    assert ratelimit.hit(ctx, "k", 2, window_seconds=1)  # a new window
    ratelimit.redis_client(REDIS_URL).delete(prefix + "k")


def test_a_redis_that_does_not_answer_falls_back_to_the_database(make_ctx, caplog):
    ctx = make_ctx(shared={"redis_url": f"redis://127.0.0.1:{_free_port()}/0"})
    assert [ratelimit.hit(ctx, "signup:x", 1) for _ in range(2)] == [True, False]
    assert "did not answer" in caplog.text and "counting in the database" in caplog.text
    with ctx.engine.connect() as conn:
        assert conn.execute(select(rate_limits.c.count)).scalar_one() == 1


def test_purge_forgets_old_windows_only(ctx):
    assert ratelimit.hit(ctx, "old", 5) and ratelimit.hit(ctx, "new", 5)
    assert ratelimit.purge(ctx, now=utcnow() + timedelta(hours=25)) == 2
    assert ratelimit.hit(ctx, "new", 5)
    assert ratelimit.purge(ctx) == 0


def test_a_bad_redis_url_is_a_config_error(make_ctx):
    from core.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^shared\.redis_url: "):
        make_ctx(shared={"redis_url": "http://127.0.0.1:6379"})
