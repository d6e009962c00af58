"""Two sender processes on one issue at the same time (PostgreSQL: FOR UPDATE SKIP
LOCKED; SQLite: serialised claims): both do part of the work, nobody is claimed or
mailed twice, and the issue completes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import pytest

from core.config import PROJECT_ROOT
from core.context import Context
from pipeline.compose.issues import get_issue
from tests.fakes.config import use_provider
from tests.fakes.issue import emails, make_issue
from tests.fakes.providers import FakeProvider


@pytest.mark.slow
def test_two_processes_share_one_issue_without_duplicates(make_ctx, monkeypatch):
    monkeypatch.setenv("KPDIGEST_MAILGUN_API_KEY", "k")
    fake = FakeProvider("mailgun", latency=0.02)
    config = use_provider(make_ctx().config.source, "mailgun", fake.base, batch_size=5,
                          max_in_flight=2)
    ctx = Context.load(str(config))
    number = make_issue(ctx, 200)
    cmd = [sys.executable, "-m", "tests.fakes.sender", str(config), str(number), "--wait"]
    procs = [subprocess.Popen(cmd, cwd=PROJECT_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              env=os.environ.copy(), text=True) for _ in range(2)]
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "ready"
        for p in procs:  # start both at once
            p.stdin.write("go\n")
            p.stdin.flush()
        reports = [json.loads(p.communicate(timeout=120)[0].splitlines()[-1]) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        fake.close()
    assert all(p.returncode == 0 for p in procs)
    assert all(r["sent_now"] > 0 for r in reports), reports
    assert sum(r["sent_now"] for r in reports) == 200
    assert fake.counts() == Counter(emails(200))
    with ctx.engine.connect() as conn:
        assert get_issue(conn, number).status == "sent"
    ctx.close()
