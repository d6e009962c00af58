"""`kpdigest issue send/status/pause/resume/cancel/retry` as real processes: SIGTERM
finishes the batch in flight and leaves the rest queued; the check gate and --force."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from core.config import PROJECT_ROOT
from core.context import Context
from tests.fakes.config import use_provider
from tests.fakes.issue import make_issue
from tests.fakes.providers import FakeProvider


@pytest.fixture
def db_url(tmp_path):
    """SQLite only: the CLI is a shell; the engine runs on both databases in test_send.py."""
    return f"sqlite:///{tmp_path / 'kpdigest.db'}"


def kpd(config, *args: str, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kpdigest", "--config", str(config), *args],
                          cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
                          env=os.environ.copy(), **kw)


def test_send_stops_gracefully_on_sigterm_and_admin_commands(make_ctx, monkeypatch):
    monkeypatch.setenv("KPDIGEST_POSTMARK_TOKEN", "k")
    fake = FakeProvider("postmark", latency=0.25)
    config = use_provider(make_ctx().config.source, "postmark", fake.base, batch_size=2,
                          max_in_flight=1)
    ctx = Context.load(str(config))
    n = str(make_issue(ctx, 10))
    try:
        refused = kpd(config, "issue", "send", n)
        assert refused.returncode == 6 and "--force" in refused.stderr  # fake issue: no real footer
        with subprocess.Popen([sys.executable, "-m", "kpdigest", "--config", str(config), "issue",
                               "send", n, "--force", "--progress"], cwd=PROJECT_ROOT, env=os.environ.copy(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
            deadline = time.monotonic() + 60
            while fake.calls < 1 and time.monotonic() < deadline:
                time.sleep(0.02)
            proc.send_signal(signal.SIGTERM)
            _out, err = proc.communicate(timeout=60)
        assert proc.returncode == 10, err  # not finished: the rest is queued
        assert "stopped;" in err
        sent = len(fake.accepted)
        assert 2 <= sent < 10
        status = kpd(config, "issue", "status", n).stdout
        words = " ".join(status.split())
        assert f"sent {sent} " in words and f"queued {10 - sent}" in words
        assert "sending 0" in words and "unknown 0" in words
        assert "ETA" in status
        assert kpd(config, "issue", "pause", n, "--reason", "typo in the intro").returncode == 0
        blocked = kpd(config, "issue", "send", n, "--force")
        assert blocked.returncode == 4 and "typo in the intro" in blocked.stderr
        assert "paused (typo in the intro)" in kpd(config, "issue", "status", n).stdout
        assert kpd(config, "issue", "resume", n).returncode == 0
        done = kpd(config, "issue", "send", n, "--force", "--no-progress")
        assert done.returncode == 0 and "sent 10" in done.stdout
        assert sorted(fake.accepted) == sorted(set(fake.accepted)) and len(fake.accepted) == 10
        assert "0 recipients queued again" in kpd(config, "issue", "retry", n, "--failed").stdout
        assert kpd(config, "issue", "retry", n).returncode == 5  # say what to retry
        later = str(make_issue(ctx))
        assert kpd(config, "issue", "cancel", later, "--yes").returncode == 0
        assert "cancelled" in kpd(config, "issue", "status", later).stdout
    finally:
        fake.close()
        ctx.close()
