"""Process-wide garbage-collector tuning while a send runs: one concept, kept apart
from the engine because it changes the whole process's settings."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_gc_lock = threading.Lock()
_gc_users: list[tuple[int, int, int]] = []  # the thresholds to restore, one per running send


@contextmanager
def rare_collections(young: int = 10_000) -> Iterator[None]:
    """Collect the youngest generation every `young` net allocations instead of 700 while
    sending: a batch's rows, recipients and strings (tens of thousands of objects, freed
    when it is recorded) then die young instead of being traversed again and again and
    promoted; collections took about 6 % of a sending process. Cycles are still found.
    Sends overlapping in one process restore the original thresholds when the last ends."""
    with _gc_lock:
        _gc_users.append(gc.get_threshold())
        gc.set_threshold(max(young, _gc_users[0][0]), *_gc_users[0][1:])
    try:
        yield
    finally:
        with _gc_lock:
            first = _gc_users[0]
            _gc_users.pop()
            if not _gc_users:
                gc.set_threshold(*first)

