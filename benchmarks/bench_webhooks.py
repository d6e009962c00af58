"""The bounded JSON parse of webhook bodies against plain json.loads.

`python -m benchmarks.bench_webhooks` prints the median time of each over a SendGrid-sized
batch (768 KB, SendGrid's largest) and the time to refuse 1 MB of `[`.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from subscribers.webhooks.base import Malformed, parse_json


def batch(size: int = 768 * 1024) -> bytes:
    events, out = [], b"[]"
    while len(out) < size:
        i = len(events)
        events.append({"email": f"reader{i}@example.com", "event": "delivered",
                       "sg_event_id": f"ev{i:012d}", "timestamp": 1765000000 + i,
                       "category": ["weekly", "kp"], "smtp-id": f"<{i}@example.com>"})
        if i % 500 == 0:
            out = json.dumps(events).encode()
    return json.dumps(events).encode()


def median_ms(fn: Callable[[], Any], runs: int = 15) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def refuse(body: bytes) -> None:
    try:
        parse_json(body)
    except Malformed:
        return


def main() -> None:
    body = batch()
    print(f"batch {len(body) / 1024:.0f} KB, {body.count(b'sg_event_id')} events")
    print(f"json.loads        {median_ms(lambda: json.loads(body)):7.1f} ms")
    print(f"parse_json        {median_ms(lambda: parse_json(body)):7.1f} ms")
    brackets = b"[" * 1_000_000
    print(f"refuse 1 MB of [  {median_ms(lambda: refuse(brackets)):7.3f} ms")


if __name__ == "__main__":
    main()
