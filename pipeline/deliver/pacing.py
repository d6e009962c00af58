"""Pacing a provider account: a token bucket per second and per day, a shared hold after a
rate-limit answer, and exponential backoff with jitter.

Every sender thread takes its batch's tokens from one Pacer before handing the batch
over, so the configured rate holds however many batches are in flight. A 429 holds the
whole account, not just the thread that saw it: the provider limits the account.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable


class Pacer:
    """A token bucket (`per_second`, burst of one second) plus a daily allowance.

    `per_second=0` and `per_day=0` mean unlimited. `used_today` seeds the daily count
    from the ledger so a restarted sender does not start the day afresh.
    """

    def __init__(self, per_second: float = 0, per_day: int = 0, used_today: int = 0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.per_second = float(per_second)
        self.per_day = int(per_day)
        self.clock = clock
        self._lock = threading.Lock()
        self._tokens = self.per_second
        self._stamp = clock()
        self._day_start = clock()
        self._day_used = used_today
        self._hold_until = 0.0

    def hold(self, seconds: float) -> None:
        """Nobody hands anything over for `seconds` (the provider said so)."""
        with self._lock:
            self._hold_until = max(self._hold_until, self.clock() + max(0.0, seconds))

    def day_left(self) -> int | None:
        if not self.per_day:
            return None
        with self._lock:
            self._roll_day()
            return max(0, self.per_day - self._day_used)

    def _roll_day(self) -> None:
        if self.clock() - self._day_start >= 86400:
            self._day_start, self._day_used = self.clock(), 0

    def _wait_needed(self, n: int, reserved: bool = False) -> float:
        """Seconds to wait before `n` tokens are available; takes them when 0."""
        now = self.clock()
        if now < self._hold_until:
            return self._hold_until - now
        self._roll_day()
        if self.per_day and not reserved and self._day_used + n > self.per_day:
            return 86400 - (now - self._day_start)
        if self.per_second:
            self._tokens = min(max(self.per_second, n), self._tokens + (now - self._stamp) * self.per_second)
            self._stamp = now
            if self._tokens < n:
                return (n - self._tokens) / self.per_second
            self._tokens -= n
        if not reserved:
            self._day_used += n
        return 0.0

    def wait_hold(self, stop: threading.Event | None = None) -> bool:
        """Block while the account is held (after a 429); False if `stop` was set first."""
        stop = stop or threading.Event()
        while True:
            with self._lock:
                wait = self._hold_until - self.clock()
            if wait <= 0:
                return True
            if stop.wait(min(wait, 1.0)):
                return False

    def reserve(self, n: int) -> int:
        """Take up to `n` of today's allowance for a batch about to be claimed: `n`, fewer
        when less is left, 0 when it is used up. Checked and taken in one step, so parallel
        workers never claim rows for an allowance another one took meanwhile (and then
        wait for tomorrow holding them). `acquire(..., reserved=True)` then paces them."""
        if not self.per_day:
            return n
        with self._lock:
            self._roll_day()
            n = max(0, min(n, self.per_day - self._day_used))
            self._day_used += n
            return n

    def refund(self, n: int, paced: bool = False) -> None:
        """Give back allowance reserved for recipients that were not there to claim, and
        (`paced`) the per-second tokens `acquire` took for them."""
        if n <= 0:
            return
        with self._lock:
            if self.per_day:
                self._day_used = max(0, self._day_used - n)
            if paced and self.per_second:
                self._tokens += n

    def acquire(self, n: int, stop: threading.Event | None = None, reserved: bool = False) -> bool:
        """Block until `n` recipients may be handed over; False if `stop` was set first.
        `reserved`: their share of the daily allowance was taken by `reserve`."""
        stop = stop or threading.Event()
        while True:
            with self._lock:
                wait = self._wait_needed(n, reserved)
            if wait <= 0:
                return True
            if stop.wait(min(wait, 1.0)):
                return False


def backoff(attempt: int, retry_after: float | None = None, base: float = 0.5,
            cap: float = 60.0, rng: random.Random | None = None) -> float:
    """Seconds before retry `attempt` (1, 2, ...): the provider's own signal when it gave
    one, else exponential with full jitter so parallel senders do not retry in step."""
    if retry_after is not None and retry_after >= 0:
        return min(cap * 5, retry_after + (rng or random).uniform(0, 0.1 * retry_after + 0.05))
    return (rng or random).uniform(base / 2, min(cap, base * 2 ** (attempt - 1)))
