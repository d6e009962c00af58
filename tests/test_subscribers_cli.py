"""`kpdigest users add` and `kpdigest serve` as real subprocesses, and the user store."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from click.testing import CliRunner

from core.accounts import add_user, authenticate, set_password
from core.errors import InvalidInput, StateError
from kpdigest.main import main

KPDIGEST = [sys.executable, "-c", "from kpdigest.main import main; main()"]


def _run(ctx, *args, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([*KPDIGEST, "--config", str(ctx.config.source), *args], input=stdin,
                          capture_output=True, text=True, timeout=60, env=os.environ.copy())


def test_users_add_reads_the_password_from_stdin(ctx):
    ok = _run(ctx, "users", "add", "Boss@Example.com", "--role", "admin", stdin="a long passphrase\n")
    assert ok.returncode == 0, ok.stderr
    assert authenticate(ctx, "boss@example.com", "a long passphrase").role == "admin"
    assert authenticate(ctx, "boss@example.com", "wrong") is None
    dup = _run(ctx, "users", "add", "boss@example.com", "--role", "editor", stdin="another passphrase\n")
    assert dup.returncode == 4 and "exists already" in dup.stderr
    runner, cfg = CliRunner(), ["--config", str(ctx.config.source)]
    short = runner.invoke(main, [*cfg, "users", "add", "ed@example.com", "--role", "editor"], input="short\n")
    assert short.exit_code == 5 and "at least" in short.stderr
    bad_role = runner.invoke(main, [*cfg, "users", "add", "ed@example.com", "--role", "owner"], input="x\n")
    assert bad_role.exit_code == 2
    listed = runner.invoke(main, [*cfg, "users", "list"])
    assert "boss@example.com" in listed.stdout and "never" not in listed.stdout


def test_user_store_rules(ctx):
    with pytest.raises(InvalidInput):
        add_user(ctx, "x@example.com", "a long passphrase", "owner")
    add_user(ctx, "x@example.com", "a long passphrase", "editor")
    with pytest.raises(StateError):
        add_user(ctx, "X@example.com", "a long passphrase", "editor")
    set_password(ctx, "x@example.com", "a new long passphrase", "admin")
    assert authenticate(ctx, "x@example.com", "a long passphrase") is None
    assert authenticate(ctx, "x@example.com", "a new long passphrase").role == "admin"
    assert authenticate(ctx, "nobody@example.com", "a new long passphrase") is None


def test_serve_answers_on_waitress(ctx):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([*KPDIGEST, "--config", str(ctx.config.source), "serve", "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ.copy())
    try:
        body = ""
        deadline = time.monotonic() + 60  # a loaded machine takes 6-10 s to start serve
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as resp:
                    body = resp.read().decode()
                    server = resp.headers.get("Server", "")
                break
            except OSError:
                time.sleep(0.1)
        assert "Subscribe" in body and "waitress" in server
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
