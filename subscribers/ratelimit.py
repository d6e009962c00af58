"""Fixed-window counters shared by every web server: the sign-up and login limits per IP
and the webhook replay guard (a Mailgun token counts once).

The counters live where every `kpdigest serve` process (on any host) sees them: in Redis
when `shared.redis_url` is set (one round trip, keys expire by themselves), else in the
database's `rate_limits` table. A Redis that does not answer is logged and the database
takes over, so an outage of the optional piece never takes sign-ups or webhooks down.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from core.context import Context
from core.db import utcnow
from core.errors import ConfigError
from core.models import rate_limits

log = logging.getLogger(__name__)
KEY_CHARS = 200
_clients: dict[str, Any] = {}
_clients_lock = threading.Lock()


def hit(ctx: Context, key: str, limit: int, window_seconds: int = 3600) -> bool:
    """Count one attempt for `key`; False when the window's limit is already used up."""
    if limit <= 0:
        return True
    key = key[:KEY_CHARS]
    shared = ctx.config.shared
    if shared.redis_url:
        counted = _redis_hit(shared.redis_url, shared.redis_prefix + key, window_seconds)
        if counted is not None:
            return counted <= limit
    for _ in range(2):
        try:
            return _hit(ctx, key, limit, window_seconds)
        except IntegrityError:  # two first hits raced on the insert; the second one counts again
            continue
    return False


def redis_client(url: str) -> Any:
    """One client (a thread-safe connection pool) per URL and process."""
    with _clients_lock:
        if url not in _clients:
            try:
                import redis  # optional: only deployments that set shared.redis_url need it
            except ImportError as exc:
                raise ConfigError("shared.redis_url is set but the redis package is not "
                                  "installed: pip install 'kpdigest[redis]'") from exc
            _clients[url] = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        return _clients[url]


def _redis_hit(url: str, key: str, window_seconds: int) -> int | None:
    """The count after this hit; None when Redis did not answer (the database decides)."""
    client = redis_client(url)
    from redis import exceptions as rex  # the optional package, see redis_client

    try:
        pipe = client.pipeline(transaction=True)  # MULTI/EXEC: one atomic step
        pipe.set(key, 0, ex=max(1, window_seconds), nx=True)  # a new window starts at 0
        pipe.incr(key)
        return int(pipe.execute()[1])
    except (rex.ConnectionError, rex.TimeoutError) as exc:
        log.warning("rate limit: Redis at %s did not answer (%s); counting in the database",
                    url.rpartition("@")[2], exc)
        return None


def _hit(ctx: Context, key: str, limit: int, window_seconds: int) -> bool:
    now = utcnow()
    with ctx.engine.begin() as conn:
        row = conn.execute(select(rate_limits).where(rate_limits.c.key == key)).first()
        if row is None:
            conn.execute(insert(rate_limits).values(key=key, window_start=now, count=1))
            return True
        if row.window_start <= now - timedelta(seconds=window_seconds):
            conn.execute(update(rate_limits).where(rate_limits.c.key == key)
                         .values(window_start=now, count=1))
            return True
        if row.count >= limit:
            return False
        conn.execute(update(rate_limits).where(rate_limits.c.key == key)
                     .values(count=rate_limits.c.count + 1))
        return True


def purge(ctx: Context, older_than: timedelta = timedelta(days=1),
          now: datetime | None = None) -> int:
    """Forget database windows that started before `older_than` (every limit's window is
    shorter), so one row per IP and per webhook token does not pile up; returns how many."""
    cutoff = (now or utcnow()) - older_than
    with ctx.engine.begin() as conn:
        return conn.execute(delete(rate_limits)
                            .where(rate_limits.c.window_start < cutoff)).rowcount or 0
