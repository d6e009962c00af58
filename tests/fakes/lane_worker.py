"""A lane worker process for crash tests: `python -m tests.fakes.lane_worker CONFIG` prints
"ready", then sends everything the lane holds and exits."""

from __future__ import annotations

import sys

from core.context import Context
from pipeline.deliver.lane import drain


def main() -> None:
    ctx = Context.load(sys.argv[1])
    ctx.engine.connect().close()
    print("ready", flush=True)
    print(drain(ctx).summary(), flush=True)


if __name__ == "__main__":
    main()
