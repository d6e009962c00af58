"""A sender process for crash and concurrency tests:
`python -m tests.fakes.sender CONFIG NUMBER [--wait]` prints "ready", optionally waits
for a line on stdin, sends the issue (checks skipped: fake issues have no real footer)
and prints its report as JSON."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from core.context import Context
from pipeline.deliver.engine import send_issue


def main() -> None:
    ctx = Context.load(sys.argv[1])
    ctx.engine.connect().close()
    print("ready", flush=True)
    if "--wait" in sys.argv:
        sys.stdin.readline()
    r = send_issue(ctx, int(sys.argv[2]), force=True)
    out = {"sent_now": r.sent_now, "counts": r.counts, "unknown": r.recovered_unknown}
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()


def run(config: str, number: int, env: dict[str, str], ready: Any) -> None:
    """The same, as a multiprocessing target (forkserver: no interpreter start per run)."""
    os.environ.update(env)
    ctx = Context.load(config)
    ctx.engine.connect().close()
    ready.set()
    send_issue(ctx, number, force=True)
