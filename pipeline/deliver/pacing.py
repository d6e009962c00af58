"""Pacing a provider account: a token bucket per second and per day, a shared hold after a
rate-limit answer, and exponential backoff with jitter.

Every sender thread takes its batch's tokens from one Pacer before handing the batch
over, so the configured rate holds however many batches are in flight. A 429 holds the
whole account, not just the thread that saw it: the provider limits the account.

`SharedPacer` is the same budget kept in the database (`pacing_budgets`, one row per
provider account), so N sender processes on N hosts together respect the provider's
limit; `pacer_for` picks it whenever a limit is set. Its times are the database's clock,
so hosts whose clocks disagree still share one budget.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from core.context import Context
from core.models import pacing_budgets

DAY = 86400.0
#: seconds of budget a shared pacer may catch up after senders fell behind their slots
#: (a slow database round trip, a busy host); more would be a burst
CATCH_UP = 0.1


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


class SharedPacer:
    """`Pacer`'s interface over one `pacing_budgets` row that every sender shares.

    Per second it is a virtual schedule (GCRA): `tat` is when the account's bucket would be
    full again. Taking `n` moves it `n / per_second` later, in one short transaction, and
    the caller waits until its slot (`tat - n / per_second`) in the database's clock, so
    parallel senders queue for slots instead of racing for tokens. The burst is one batch
    plus CATCH_UP: in any `t` seconds at most `per_second * (t + CATCH_UP)` plus one batch
    is handed over, however many senders there are. One statement per batch. The daily
    allowance and the 429 hold are counters on the same row.
    """

    def __init__(self, engine: Engine, key: str, per_second: float = 0, per_day: int = 0,
                 used_today: int = 0) -> None:
        self.engine, self.key = engine, key[:100]
        self.per_second, self.per_day = float(per_second), int(per_day)
        with self._tx() as (conn, now):
            row = self._row(conn, now, seed=used_today)
            if now - row.day_start >= DAY:  # a new day: the ledger's count is the truth
                conn.execute(self._set().values(day_start=now, day_used=used_today))

    # --- the row -----------------------------------------------------------------------

    def _tx(self) -> Any:
        return _Tx(self.engine)

    def _set(self) -> Any:
        return update(pacing_budgets).where(pacing_budgets.c.key == self.key)

    def _row(self, conn: Connection, now: float, seed: int = 0) -> Any:
        query = select(pacing_budgets).where(pacing_budgets.c.key == self.key)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        row = conn.execute(query).first()
        if row is None:
            try:
                with conn.begin_nested():
                    conn.execute(insert(pacing_budgets).values(
                        key=self.key, tat=now, day_start=now, day_used=seed, hold_until=0.0))
            except IntegrityError:  # another sender created it meanwhile: take theirs
                pass
            row = conn.execute(query).one()
        return row

    def _day(self, conn: Connection, now: float) -> tuple[Any, int]:
        """The row, locked, and today's use after rolling the day over when due."""
        row = self._row(conn, now)
        if now - row.day_start >= DAY:
            conn.execute(self._set().values(day_start=now, day_used=0))
            return row, 0
        return row, int(row.day_used)

    # --- Pacer's interface -------------------------------------------------------------

    def hold(self, seconds: float) -> None:
        """Nobody, in any sender, hands anything over for `seconds` (the provider said so)."""
        with self._tx() as (conn, now):
            row = self._row(conn, now)
            until = max(float(row.hold_until), now + max(0.0, seconds))
            conn.execute(self._set().values(hold_until=until))

    def day_left(self) -> int | None:
        if not self.per_day:
            return None
        with self._tx() as (conn, now):
            return max(0, self.per_day - self._day(conn, now)[1])

    def reserve(self, n: int) -> int:
        """Take up to `n` of today's shared allowance, in one locked step (see Pacer)."""
        if not self.per_day:
            return n
        with self._tx() as (conn, now):
            _, used = self._day(conn, now)
            n = max(0, min(n, self.per_day - used))
            if n:
                conn.execute(self._set().values(day_used=used + n))
            return n

    def refund(self, n: int, paced: bool = False) -> None:
        """Give back daily allowance. A shared slot already reserved (`paced`) is not given
        back: other senders may have queued behind it, and pacing a little slower is safe."""
        if n > 0 and self.per_day:
            with self._tx() as (conn, now):
                _, used = self._day(conn, now)
                conn.execute(self._set().values(day_used=max(0, used - n)))

    def _held(self) -> float:
        with self._tx() as (conn, now):
            return float(self._row(conn, now).hold_until) - now

    def wait_hold(self, stop: threading.Event | None = None) -> bool:
        """Block while the account is held by any sender; False if `stop` was set first."""
        stop = stop or threading.Event()
        while (wait := self._held()) > 0:
            if stop.wait(min(wait, 1.0)):
                return False
        return True

    def _slot(self, n: int) -> float | None:
        """Reserve the next `n` recipients' slot in one statement; seconds to wait for it
        (0 or less: go now), or None while the account is held (nothing reserved)."""
        cost = n / self.per_second
        c = pacing_budgets.c
        with self.engine.begin() as conn:
            now = _db_now(conn)
            latest = func.greatest if conn.dialect.name == "postgresql" else func.max
            return conn.execute(
                update(pacing_budgets).where(c.key == self.key, c.hold_until <= now)
                .values(tat=latest(c.tat, now - CATCH_UP) + cost)
                .returning(c.tat - cost - now)).scalar_one_or_none()

    def _day_wait(self, n: int) -> float:
        """0 after taking `n` of today's allowance; else seconds until the day rolls over."""
        with self._tx() as (conn, now):
            row, used = self._day(conn, now)
            if used + n > self.per_day:
                return max(0.01, DAY - (now - float(row.day_start)))
            conn.execute(self._set().values(day_used=used + n))
            return 0.0

    def acquire(self, n: int, stop: threading.Event | None = None, reserved: bool = False) -> bool:
        """Block until `n` recipients may be handed over; False if `stop` was set first.
        `reserved`: their share of the daily allowance was taken by `reserve`."""
        stop = stop or threading.Event()
        if not self.per_second and not self.wait_hold(stop):
            return False
        if self.per_day and not reserved:
            while (wait := self._day_wait(n)) > 0:
                if stop.wait(min(wait, 1.0)):
                    return False
        while self.per_second:
            wait = self._slot(n)
            if wait is None:  # held by a 429: wait for the hold, then queue again
                if not self.wait_hold(stop):
                    return False
                continue
            end = time.monotonic() + wait  # a duration on the database's clock: skew-free
            while (left := end - time.monotonic()) > 0:
                if stop.wait(min(left, 1.0)):
                    return False
            break
        return True


def _db_now(conn: Connection) -> Any:
    """The database's clock in epoch seconds, as an SQL expression (see _Tx)."""
    if conn.dialect.name == "postgresql":
        return func.extract("epoch", func.clock_timestamp())
    return (func.julianday("now") - 2440587.5) * 86400.0


class _Tx:
    """One transaction and the database's clock in seconds since the epoch. PostgreSQL
    reads `clock_timestamp()` (hosts' clocks may disagree, the server's is one); SQLite
    lives on one host, whose clock is the database's."""

    def __init__(self, engine: Engine) -> None:
        self._cm = engine.begin()

    def __enter__(self) -> tuple[Connection, float]:
        conn = self._cm.__enter__()
        if conn.dialect.name == "postgresql":
            now = float(conn.execute(select(_db_now(conn))).scalar_one())
        else:
            now = time.time()
        return conn, now

    def __exit__(self, *exc: Any) -> Any:
        return self._cm.__exit__(*exc)


def pacer_for(ctx: Context, key: str, used_today: int = 0) -> Pacer | SharedPacer:
    """The pacer for one provider account (`key`: the transport's name): on PostgreSQL,
    when a limit is set, shared through the database, so every sender on every host draws
    on one budget. Unlimited, or on SQLite (one host, one writer: the budget's writes would
    queue behind the ledger's), the in-process Pacer as before."""
    s = ctx.config.sending
    if ctx.engine.dialect.name != "postgresql" or not (s.rate_per_second or s.rate_per_day):
        return Pacer(s.rate_per_second, s.rate_per_day, used_today)
    return SharedPacer(ctx.engine, key, s.rate_per_second, s.rate_per_day, used_today)


def backoff(attempt: int, retry_after: float | None = None, base: float = 0.5,
            cap: float = 60.0, rng: random.Random | None = None) -> float:
    """Seconds before retry `attempt` (1, 2, ...): the provider's own signal when it gave
    one, else exponential with full jitter so parallel senders do not retry in step."""
    if retry_after is not None and retry_after >= 0:
        return min(cap * 5, retry_after + (rng or random).uniform(0, 0.1 * retry_after + 0.05))
    return (rng or random).uniform(base / 2, min(cap, base * 2 ** (attempt - 1)))
